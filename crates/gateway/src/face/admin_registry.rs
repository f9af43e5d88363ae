//! The registry under `/admin/registry` (`admin.rs` mounts it behind the same
//! authorization):
//!
//! - `GET /admin/registry` — per server: pin mode, newest and approved version, drift
//!   (approved → live, with the diff), quarantined tools and why;
//! - `GET /admin/registry/{server}/history` — the kept versions, oldest first, each with
//!   its diff from the one before (no lists);
//! - `GET /admin/registry/{server}/versions/{n}` — one version with its lists;
//! - `GET /admin/registry/{server}/diff?from=A&to=B` — the diff between two versions;
//! - `POST /admin/registry/{server}/approve` — `{"version": N}`: approve version N
//!   (committed before the answer); quarantined tools it has come back, and clients are
//!   told through `list_changed`. The version is required, so an approval never covers a
//!   change that arrived after the admin looked.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::registry::{ApproveError, StoreError};

/// An answer: status and JSON body.
pub(super) type Answer = (StatusCode, Value);

fn problem(status: StatusCode, message: impl Into<String>) -> Answer {
    (status, json!({ "error": message.into() }))
}

fn storage(error: &StoreError) -> Answer {
    problem(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

pub(super) fn status(gateway: &Gateway) -> Answer {
    (StatusCode::OK, gateway.registry().status(|_| true))
}

pub(super) fn history(gateway: &Gateway, server: &str) -> Answer {
    match gateway.registry().history(server) {
        Ok(versions) if versions.is_empty() => problem(
            StatusCode::NOT_FOUND,
            format!("server {server} has no recorded version"),
        ),
        Ok(versions) => (
            StatusCode::OK,
            json!({ "server": server, "versions": versions }),
        ),
        Err(error) => storage(&error),
    }
}

pub(super) fn version(gateway: &Gateway, server: &str, number: u64) -> Answer {
    match gateway.registry().version(server, number) {
        Ok(Some(version)) => (
            StatusCode::OK,
            serde_json::to_value(&version).expect("a version serializes"),
        ),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            format!("server {server} has no version {number}"),
        ),
        Err(error) => storage(&error),
    }
}

pub(super) fn diff(gateway: &Gateway, server: &str, params: &BTreeMap<String, String>) -> Answer {
    let number = |key: &str| {
        params
            .get(key)
            .and_then(|value| value.parse::<u64>().ok())
            .ok_or_else(|| format!("`{key}` must be a version number"))
    };
    let (from, to) = match (number("from"), number("to")) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(message), _) | (_, Err(message)) => {
            return problem(StatusCode::BAD_REQUEST, message);
        }
    };
    match gateway.registry().diff(server, from, to) {
        Ok(Some(diff)) => (
            StatusCode::OK,
            json!({ "server": server, "from": from, "to": to, "diff": diff }),
        ),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            format!("server {server} does not keep versions {from} and {to}"),
        ),
        Err(error) => storage(&error),
    }
}

pub(super) async fn approve(gateway: &Gateway, server: &str, body: &[u8]) -> Answer {
    let version = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body.get("version").and_then(Value::as_u64));
    let Some(version) = version else {
        return problem(
            StatusCode::BAD_REQUEST,
            "body must be {\"version\": N} (see GET /admin/registry/{server}/history)",
        );
    };
    match gateway.approve_version(server, Some(version)).await {
        Ok(approved) => (
            StatusCode::OK,
            json!({ "server": server, "approvedVersion": approved }),
        ),
        Err(error @ (ApproveError::UnknownServer(_) | ApproveError::UnknownVersion { .. })) => {
            problem(StatusCode::NOT_FOUND, error.to_string())
        }
        // Not committed: not applied.
        Err(ApproveError::Store(error)) => {
            problem(StatusCode::INSUFFICIENT_STORAGE, error.to_string())
        }
        Err(error @ ApproveError::Interrupted(_)) => {
            problem(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
        }
    }
}
