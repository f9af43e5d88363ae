//! The gateway's own error: what went wrong inside the router, typed, with exactly one
//! mapping to each edge — the JSON-RPC error a client sees ([`Error::to_rpc`]), the HTTP
//! status a face answers with ([`Error::http_status`]), the metric outcome label
//! ([`Error::outcome`]) and whether a caller may retry ([`Error::is_retryable`]).
//!
//! Errors that already arrive as JSON-RPC errors (an upstream's own error object, an
//! admission failure of a server) travel as [`Error::Rpc`] and keep their code.

use serde_json::json;
use switchboard_protocol::error::{self as codes, gateway};
use switchboard_protocol::{Era, RpcError};

/// What an exposed name or URI was looked up as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tool,
    Prompt,
    Resource,
    ResourceTemplate,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
            Kind::ResourceTemplate => "resource template",
        }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The request's params are malformed (missing name, params not an object, …).
    #[error("{0}")]
    InvalidParams(String),
    /// The method is not one the gateway serves.
    #[error("Method not found: {0}")]
    MethodNotFound(String),
    /// The named tool, prompt or resource does not exist *for this caller*; `suggestions`
    /// are the closest names it can see (did-you-mean), never one hidden from it.
    #[error("Unknown {}: {name}{}", kind.as_str(), did_you_mean(suggestions))]
    Unknown {
        kind: Kind,
        name: String,
        suggestions: Vec<String>,
    },
    /// A pipeline step refused the call.
    #[error("{reason}")]
    Denied { step: &'static str, reason: String },
    /// A presented MRTR `requestState` was refused (forged, expired, another caller's or
    /// another server's).
    #[error("requestState rejected: {0}")]
    StateRejected(String),
    /// The client cancelled the request, or went away, while it was in flight.
    #[error("request cancelled")]
    Cancelled,
    /// The upstream broke the protocol in a way the gateway cannot bridge.
    #[error("{0}")]
    UpstreamProtocol(String),
    /// A rate limit, daily budget or concurrency cap (the access step `step`) refused the
    /// call; the same call may pass later: after `retry_after` when the step knows when.
    #[error("{reason}")]
    Limited {
        step: &'static str,
        reason: String,
        retry_after: Option<std::time::Duration>,
    },
    /// The tool is quarantined by the registry (pinning): it changed after approval,
    /// or no version with it is approved yet.
    #[error("{}", .0.reason())]
    Quarantined(std::sync::Arc<crate::registry::Quarantined>),
    /// A request pinned to a run snapshot cannot be served from it: the snapshot expired,
    /// or the called tool changed incompatibly or was removed since (`snapshot/`).
    #[error("{0}")]
    Snapshot(std::sync::Arc<crate::snapshot::Refusal>),
    /// The approval step did not let the call run: pending (with the approval's id, to
    /// retry with), denied, expired, already used, not covering this call, or no room.
    #[error("{reason}")]
    Approval {
        /// `pending`, `denied`, `expired`, `used`, `mismatch`, `unknown`, `full`, …
        status: &'static str,
        reason: String,
        approval: Option<String>,
        retryable: bool,
    },
    /// An error that is already a JSON-RPC error (an upstream's answer, admission).
    #[error("{0}")]
    Rpc(RpcError),
}

/// ` (did you mean a, b?)`, or nothing without suggestions.
fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", suggestions.join(", "))
    }
}

impl From<RpcError> for Error {
    fn from(error: RpcError) -> Self {
        Error::Rpc(error)
    }
}

impl Error {
    pub fn invalid_params(message: impl Into<String>) -> Error {
        Error::InvalidParams(message.into())
    }

    pub fn unknown(kind: Kind, name: impl Into<String>) -> Error {
        Error::Unknown {
            kind,
            name: name.into(),
            suggestions: Vec::new(),
        }
    }

    /// An unknown name, with the closest names the caller can see.
    pub fn unknown_with(kind: Kind, name: impl Into<String>, suggestions: Vec<String>) -> Error {
        Error::Unknown {
            kind,
            name: name.into(),
            suggestions,
        }
    }

    pub fn denied(step: &'static str, reason: impl Into<String>) -> Error {
        Error::Denied {
            step,
            reason: reason.into(),
        }
    }

    pub fn limited(
        step: &'static str,
        reason: impl Into<String>,
        retry_after: Option<std::time::Duration>,
    ) -> Error {
        Error::Limited {
            step,
            reason: reason.into(),
            retry_after,
        }
    }

    /// The JSON-RPC error a client of `era` sees. 2026-07-28 answers an unknown resource
    /// with -32602 where earlier revisions used -32002.
    pub fn to_rpc(&self, era: Era) -> RpcError {
        match self {
            Error::InvalidParams(message) => RpcError::invalid_params(message.clone()),
            Error::MethodNotFound(method) => RpcError::method_not_found(method),
            Error::Unknown {
                kind: Kind::Resource,
                name,
                ..
            } => {
                let code = match era {
                    Era::Modern => codes::INVALID_PARAMS,
                    Era::Legacy => codes::RESOURCE_NOT_FOUND,
                };
                RpcError::new(code, "Resource not found").with_data(json!({ "uri": name }))
            }
            Error::Unknown { suggestions, .. } if !suggestions.is_empty() => {
                RpcError::invalid_params(self.to_string())
                    .with_data(json!({ "suggestions": suggestions }))
            }
            Error::Unknown { .. } => RpcError::invalid_params(self.to_string()),
            Error::Denied { step, reason } => RpcError::new(gateway::DENIED, reason.clone())
                .with_data(json!({ "reason": reason, "step": step })),
            Error::StateRejected(_) => RpcError::invalid_params(self.to_string()),
            Error::Cancelled => RpcError::new(gateway::REQUEST_CANCELLED, self.to_string()),
            Error::UpstreamProtocol(message) => {
                RpcError::new(gateway::UPSTREAM_PROTOCOL, message.clone())
            }
            Error::Limited {
                step,
                reason,
                retry_after,
            } => {
                let mut data = json!({ "reason": reason, "step": step, "retryable": true });
                if let Some(wait) = retry_after {
                    // Whole seconds, rounded up (HTTP `Retry-After` style), and milliseconds.
                    let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                    data["retryAfter"] = json!(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
                    data["retryAfterMs"] = json!(ms);
                }
                RpcError::new(gateway::DENIED, reason.clone()).with_data(data)
            }
            Error::Quarantined(held) => {
                RpcError::new(gateway::DENIED, self.to_string()).with_data(json!({
                    "step": "registry",
                    "reason": "quarantined",
                    "server": held.server,
                    "tool": held.tool,
                    "changed": held.changed,
                    "approvedVersion": held.approved,
                    "version": held.version,
                }))
            }
            Error::Snapshot(refusal) => {
                RpcError::new(gateway::DENIED, self.to_string()).with_data(refusal.data())
            }
            Error::Approval {
                status,
                reason,
                approval,
                retryable,
            } => {
                let mut data = json!({ "reason": reason, "step": "approval", "status": status });
                if let Some(id) = approval {
                    data["approval"] = json!(id);
                }
                if *retryable {
                    data["retryable"] = json!(true);
                }
                if *status == "pending" {
                    data["retryWith"] =
                        json!({ "_meta": { crate::pipeline::approval::META_KEY: approval } });
                }
                RpcError::new(gateway::DENIED, reason.clone()).with_data(data)
            }
            Error::Rpc(error) => error.clone(),
        }
    }

    /// The HTTP status of a response that carries only this error. MCP answers JSON-RPC
    /// errors with 200 on a stream; faces use this where the error is the whole answer
    /// before any stream (modern requests).
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Error::MethodNotFound(_) => http::StatusCode::NOT_FOUND,
            Error::InvalidParams(_)
            | Error::Unknown { .. }
            | Error::Denied { .. }
            | Error::StateRejected(_)
            | Error::Cancelled
            | Error::UpstreamProtocol(_)
            | Error::Limited { .. }
            | Error::Quarantined(_)
            | Error::Snapshot(_)
            | Error::Approval { .. }
            | Error::Rpc(_) => http::StatusCode::OK,
        }
    }

    /// The `outcome` label of the call metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Error::InvalidParams(_)
            | Error::MethodNotFound(_)
            | Error::Unknown { .. }
            | Error::StateRejected(_) => "rejected",
            Error::Denied { .. }
            | Error::Quarantined(_)
            | Error::Snapshot(_)
            | Error::Approval { .. } => "denied",
            Error::Cancelled => "cancelled",
            Error::UpstreamProtocol(_) => "rpc_error",
            Error::Limited { .. } => "limited",
            Error::Rpc(error) => match error.code {
                gateway::UPSTREAM_TIMEOUT => "timeout",
                gateway::UPSTREAM_UNAVAILABLE => "unavailable",
                gateway::OVERLOADED => "rejected",
                gateway::SANDBOX_LIMIT => "sandbox_limit",
                _ => "rpc_error",
            },
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Rpc(error) => error.is_retryable(),
            Error::Limited { .. } => true,
            Error::Approval { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_once_per_edge() {
        let denied = Error::denied("allow", "not allowed: fixture__echo");
        let rpc = denied.to_rpc(Era::Legacy);
        assert_eq!(rpc.code, gateway::DENIED);
        assert_eq!(rpc.data.unwrap()["step"], "allow");
        assert_eq!(denied.outcome(), "denied");
        assert!(!denied.is_retryable());

        let missing = Error::unknown(Kind::Resource, "x://y");
        assert_eq!(missing.to_rpc(Era::Legacy).code, codes::RESOURCE_NOT_FOUND);
        assert_eq!(missing.to_rpc(Era::Modern).code, codes::INVALID_PARAMS);

        let tool = Error::unknown(Kind::Tool, "a__b");
        assert_eq!(tool.to_rpc(Era::Modern).message, "Unknown tool: a__b");
        assert!(tool.to_rpc(Era::Modern).data.is_none());
        let close = Error::unknown_with(Kind::Tool, "a__b", vec!["a__bb".into(), "a__c".into()]);
        let rpc = close.to_rpc(Era::Legacy);
        assert_eq!(rpc.code, codes::INVALID_PARAMS);
        assert_eq!(
            rpc.message,
            "Unknown tool: a__b (did you mean a__bb, a__c?)"
        );
        assert_eq!(rpc.data.unwrap()["suggestions"], json!(["a__bb", "a__c"]));

        let limited = Error::limited(
            "limits",
            "slow down",
            Some(std::time::Duration::from_millis(1500)),
        );
        let rpc = limited.to_rpc(Era::Modern);
        assert_eq!(rpc.code, gateway::DENIED);
        let data = rpc.data.unwrap();
        assert_eq!(data["retryAfterMs"], 1500);
        assert_eq!(data["retryAfter"], 2, "seconds, rounded up");
        assert_eq!(data["step"], "limits");
        assert!(limited.is_retryable());
        assert_eq!(limited.outcome(), "limited");
        let busy = Error::limited("concurrency", "too many calls in flight", None);
        let data = busy.to_rpc(Era::Legacy).data.unwrap();
        assert_eq!(data["step"], "concurrency");
        assert!(data.get("retryAfter").is_none(), "{data}");

        // A cancelled call is never retryable (the client chose to stop it).
        let cancelled = Error::Cancelled;
        assert_eq!(
            cancelled.to_rpc(Era::Legacy).code,
            gateway::REQUEST_CANCELLED
        );
        assert!(!cancelled.is_retryable());
        assert!(!cancelled.to_rpc(Era::Modern).is_retryable());
        assert_eq!(cancelled.outcome(), "cancelled");

        // A server killed by its sandbox: counted apart, and not retried as is.
        let hit = switchboard_upstream::sandbox::LimitHit {
            control: switchboard_upstream::sandbox::Control::Memory,
            limit: "64 MiB".into(),
            evidence: "the kernel's OOM killer stopped it".into(),
        };
        let killed =
            Error::from(switchboard_upstream::CallError::SandboxLimit(hit).to_rpc_error("boxed"));
        let rpc = killed.to_rpc(Era::Modern);
        assert_eq!(rpc.code, gateway::SANDBOX_LIMIT);
        assert_eq!(rpc.data.unwrap()["sandboxLimit"], "memory");
        assert!(
            rpc.message.contains("memory limit (64 MiB)"),
            "{}",
            rpc.message
        );
        assert_eq!(killed.outcome(), "sandbox_limit");
        assert!(!killed.is_retryable());

        let timeout = Error::from(RpcError::new(gateway::UPSTREAM_TIMEOUT, "slow"));
        assert!(timeout.is_retryable());
        assert_eq!(timeout.outcome(), "timeout");
        assert_eq!(
            Error::MethodNotFound("x".into()).http_status(),
            http::StatusCode::NOT_FOUND
        );
    }
}
