//! `/admin/approvals`: approvals waiting for (or given by) an administrator.
//!
//! - `GET /admin/approvals` — every approval not yet expired, oldest first: id, state
//!   (`pending`, `approved`, `denied`, `used`), caller, server, tool, arguments and their
//!   digest, policy version, rule, channel, created/expires, and who decided
//! - `POST /admin/approvals/{id}/approve` — grant a pending approval (the waiting call goes
//!   on; otherwise the caller's retry with the id goes through, once)
//! - `POST /admin/approvals/{id}/deny` — refuse it; body `{"reason": "..."}` (optional)
//!
//! 404 without `[approvals]` or for an unknown id, 409 for one already decided, 410 for an
//! expired one. The administrator's name (`admin_token`, or the `[access]` identity) is
//! recorded as who decided, in the approval and in the audit log.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::gateway::Gateway;
use crate::pipeline::approval::DecideError;
use crate::pipeline::approval::store::UseError;

/// Longest reason kept, in bytes.
const MAX_REASON: usize = 512;

fn no_approvals() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({ "error": "no approvals: add an [approvals] section to the config" }),
    )
}

pub(super) fn list(gateway: &Gateway) -> (StatusCode, Value) {
    let Some(desk) = gateway.approvals() else {
        return no_approvals();
    };
    match desk.list() {
        Ok(approvals) => (
            StatusCode::OK,
            json!({ "approvals": approvals, "policy_version": desk.policy_version() }),
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "error": error.to_string() }),
        ),
    }
}

pub(super) async fn decide(
    gateway: &Gateway,
    id: &str,
    approve: bool,
    by: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    let Some(desk) = gateway.approvals() else {
        return no_approvals();
    };
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => match object.get("reason") {
                None | Some(Value::Null) => None,
                Some(Value::String(reason)) => Some(cut(reason)),
                Some(_) => {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "`reason` must be a string" }),
                    );
                }
            },
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "body must be a JSON object: {\"reason\": \"...\"}" }),
                );
            }
        }
    };
    match desk.decide(id, approve, by, reason).await {
        Ok(approval) => (StatusCode::OK, json!({ "approval": approval })),
        Err(DecideError(error)) => {
            let status = match error {
                UseError::Unknown => StatusCode::NOT_FOUND,
                UseError::Decided(_) => StatusCode::CONFLICT,
                UseError::Expired => StatusCode::GONE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (
                status,
                json!({ "error": error.to_string(), "status": error.status() }),
            )
        }
    }
}

fn cut(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
