//! `GET /admin/audit?principal=&server=&tool=&decision=&outcome=&since=&before=&limit=`:
//! the audit log's records, newest first, as stored (each with its `hash` and `sig`).
//! `since` is an RFC 3339 time or Unix milliseconds; `before` a seq (paging: the answer's
//! `next_before`); `limit` at most 1,000 (default 100). 404 when no `[audit]` is
//! configured, 400 for an unknown or malformed parameter.
//!
//! `GET /admin/audit/verify[?public_key=K1,K2]`: the whole log verified now (order, hash
//! chain, signatures, the signed head; [`verify`]); 404 without `[audit]`.

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

/// The answer to `GET /admin/audit/verify[?public_key=K1,K2]`: the whole log checked
/// (order, chain, signatures, signed head) as `audit verify` does on the state dir, as
/// [`Report::to_json`](crate::audit::verify::Report::to_json) plus `summary` and
/// `trusted`: `"given"` when keys were passed, else `"gateway"` (this gateway's own
/// signing key: a log re-signed whole with another key fails), or `"log"` (the keys the
/// log lists itself, when the gateway has none: catches edits only).
pub(super) async fn verify(
    gateway: &Gateway,
    params: BTreeMap<String, String>,
) -> (StatusCode, Value) {
    use crate::audit::verify::{Trust, verify_snapshot};
    let Some(log) = gateway.audit_log() else {
        return (
            StatusCode::NOT_FOUND,
            json!({ "error": "no audit log: add an [audit] section to the config" }),
        );
    };
    let mut keys = Vec::new();
    for (name, value) in params {
        if name != "public_key" {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("unknown parameter `{name}`") }),
            );
        }
        for text in value.split(',').filter(|t| !t.trim().is_empty()) {
            match crate::audit::key::parse_public(text.trim()) {
                Some(key) => keys.push(key),
                None => {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "public_key: not an Ed25519 public key (base64 or hex)" }),
                    );
                }
            }
        }
    }
    let own = ed25519_dalek::VerifyingKey::from_bytes(&log.public_key()).ok();
    let (trusted, trust) = match (keys.is_empty(), own) {
        (false, _) => ("given", Some(Trust::new(keys))),
        (true, Some(own)) => ("gateway", Some(Trust::new(Some(own)))),
        (true, None) => ("log", None),
    };
    let db = gateway.db().clone();
    let report = tokio::task::spawn_blocking(move || {
        let snapshot = Snapshot::of(db.database())?;
        verify_snapshot(&snapshot, trust.as_ref())
    })
    .await;
    match report {
        Ok(Ok(report)) => {
            let mut body = report.to_json();
            body["summary"] = json!(report.to_string());
            body["trusted"] = json!(trusted);
            (StatusCode::OK, body)
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
