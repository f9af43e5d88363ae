//! `GET /admin/audit?principal=&server=&tool=&decision=&outcome=&since=&before=&limit=`:
//! the audit log's records, newest first, as stored (each with its `hash` and `sig`).
//! `since` is an RFC 3339 time or Unix milliseconds; `before` a seq (paging: the answer's
//! `next_before`); `limit` at most 1,000 (default 100). 404 when no `[audit]` is
//! configured, 400 for an unknown or malformed parameter.
//!
//! `GET /admin/audit/verify`: the whole log verified now (order, hash chain, signatures
//! against this gateway's own signing key, the signed head): `{"ok", "verified",
//! "first", "last", "keys", "first_bad_seq", "problem", "summary"}`; 404 without
//! `[audit]`.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::audit::query::{Filter, query};
use crate::audit::store::Snapshot;
use crate::gateway::Gateway;

const DEFAULT_LIMIT: usize = 100;

fn filter(params: BTreeMap<String, String>) -> Result<Filter, String> {
    let mut filter = Filter {
        limit: DEFAULT_LIMIT,
        ..Filter::default()
    };
    for (name, value) in params {
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("`{name}` must be {what}"))
        };
        match name.as_str() {
            "principal" => filter.principal = Some(value),
            "server" => filter.server = Some(value),
            "tool" => filter.tool = Some(value),
            "decision" => filter.decision = Some(value),
            "outcome" => filter.outcome = Some(value),
            "since" => {
                filter.since_ms = Some(crate::audit::time::parse_ms(&value).ok_or(
                    "`since` must be an RFC 3339 time (2026-12-08T10:00:00Z) or Unix milliseconds",
                )?);
            }
            "before" => filter.before = Some(number("a sequence number")?),
            "limit" => {
                filter.limit = usize::try_from(number("a number")?)
                    .unwrap_or(usize::MAX)
                    .clamp(1, crate::audit::query::MAX_LIMIT);
            }
            _ => return Err(format!("unknown parameter `{name}`")),
        }
    }
    Ok(filter)
}

/// The answer to `GET /admin/audit`.
pub(super) async fn records(
    gateway: &Gateway,
    params: BTreeMap<String, String>,
) -> (StatusCode, Value) {
    if !gateway.audits() {
        return (
            StatusCode::NOT_FOUND,
            json!({ "error": "no audit log: add an [audit] section to the config" }),
        );
    }
    let filter = match filter(params) {
        Ok(filter) => filter,
        Err(message) => return (StatusCode::BAD_REQUEST, json!({ "error": message })),
    };
    let db = gateway.db().clone();
    let page = tokio::task::spawn_blocking(move || {
        let snapshot = Snapshot::of(db.database())?;
        query(&snapshot, &filter)
    })
    .await;
    match page {
        Ok(Ok(page)) => (
            StatusCode::OK,
            json!({ "records": page.records, "next_before": page.next_before }),
        ),
        Ok(Err(error)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": error.to_string() }),
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": error.to_string() }),
        ),
    }
}

/// The answer to `GET /admin/audit/verify`.
pub(super) async fn verify(gateway: &Gateway) -> (StatusCode, Value) {
    let Some(log) = gateway.audit_log() else {
        return (
            StatusCode::NOT_FOUND,
            json!({ "error": "no audit log: add an [audit] section to the config" }),
        );
    };
    let public = log.public_key();
    let db = gateway.db().clone();
    let report = tokio::task::spawn_blocking(move || {
        let trust =
            crate::audit::verify::Trust::new(ed25519_dalek::VerifyingKey::from_bytes(&public).ok());
        let snapshot = Snapshot::of(db.database())?;
        crate::audit::verify::verify_snapshot(&snapshot, Some(&trust))
    })
    .await;
    match report {
        Ok(Ok(report)) => {
            let (seq, problem) = match &report.problem {
                Some((seq, problem)) => (Some(*seq), Some(problem.to_string())),
                None => (None, None),
            };
            (
                StatusCode::OK,
                json!({
                    "ok": report.is_ok(),
                    "verified": report.verified,
                    "first": report.first,
                    "last": report.last,
                    "keys": report.keys,
                    "first_bad_seq": seq,
                    "problem": problem,
                    "summary": report.to_string(),
                }),
            )
        }
        Ok(Err(error)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": error.to_string() }),
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": error.to_string() }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked() {
        let params = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        let parsed = filter(params(&[
            ("decision", "denied"),
            ("since", "1970-01-01T00:00:01Z"),
            ("limit", "5000"),
        ]))
        .unwrap();
        assert_eq!(parsed.decision.as_deref(), Some("denied"));
        assert_eq!(parsed.since_ms, Some(1000));
        assert_eq!(parsed.limit, crate::audit::query::MAX_LIMIT);
        assert!(filter(params(&[("since", "yesterday")])).is_err());
        assert!(
            filter(params(&[("principle", "x")]))
                .unwrap_err()
                .contains("principle")
        );
    }
}
