//! The inner calls of a script or a batch: each one a `tools/call` of its own through
//! `Gateway::run`, under the caller's identity — its view resolves the name (a hidden
//! tool is unknown), and every step (allow-lists, rules, rate limits, approvals, audit)
//! sees the real tool, exactly as for a direct call. This module also holds the per-run
//! budget: calls counted before they are made, the run's deadline, its cancellation.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gateway::{ClientCtx, Gateway};

/// Meta-tools a script or batch may not call: a script starting scripts would hold
/// interpreter threads while it waits for itself.
const NOT_FROM_SCRIPTS: [&str; 2] = ["switchboard__run", "switchboard__batch"];

/// Why an inner call gave no result.
#[derive(Clone, Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The run already made `max_calls` calls (or this `parallel` would pass it); nothing
    /// was sent.
    #[error("call limit reached: at most {max} tool calls per run (scripts.max_calls)")]
    TooManyCalls { max: usize },
    /// The run's wall time is over.
    #[error("time limit reached: the run may take {ms} ms (scripts.timeout_ms)")]
    Timeout { ms: u128 },
    /// The client cancelled the request, or went away.
    #[error("cancelled by the client")]
    Cancelled,
    /// The gateway refused or failed the call (unknown tool, denied, rate limited, …).
    #[error("`{tool}`: {message}")]
    Refused {
        tool: String,
        code: i64,
        message: String,
        data: Option<Box<Value>>,
    },
    /// The tool ran and answered with `isError: true`.
    #[error("`{tool}` failed: {message}")]
    ToolFailed {
        tool: String,
        message: String,
        result: Box<Value>,
    },
    /// The call needs input from the client (an elicitation), which a run cannot give.
    #[error("`{tool}` asks the client for input, which a script cannot give")]
    NeedsInput { tool: String },
    /// The result is larger than a script may hold.
    #[error("`{tool}` returned {bytes} bytes, over {max} (scripts.max_result_bytes)")]
    TooLarge {
        tool: String,
        bytes: usize,
        max: usize,
    },
    /// A script or batch tried to start another one.
    #[error("`{tool}` cannot be called from a script or batch")]
    Nested { tool: String },
}

impl CallError {
    /// Whether the error ends the run whatever the script does: a limit, a cancellation.
    pub(crate) fn ends_run(&self) -> bool {
        matches!(
            self,
            CallError::TooManyCalls { .. } | CallError::Timeout { .. } | CallError::Cancelled
        )
    }

    /// The limit's name in `[scripts]`, for a limit error.
    pub(crate) fn limit(&self) -> Option<&'static str> {
        match self {
            CallError::TooManyCalls { .. } => Some("max_calls"),
            CallError::Timeout { .. } => Some("timeout_ms"),
            CallError::TooLarge { .. } => Some("max_result_bytes"),
            _ => None,
        }
    }

    /// The tool the failed call named, for errors of one call.
    pub(crate) fn tool(&self) -> Option<&str> {
        match self {
            CallError::Refused { tool, .. }
            | CallError::ToolFailed { tool, .. }
            | CallError::NeedsInput { tool }
            | CallError::TooLarge { tool, .. }
            | CallError::Nested { tool } => Some(tool),
            CallError::TooManyCalls { .. } | CallError::Timeout { .. } | CallError::Cancelled => {
                None
            }
        }
    }

    /// The error as a batch entry (or a caught script error) shows it.
    pub(crate) fn to_json(&self) -> Value {
        let mut error = json!({ "message": self.to_string() });
        if let Some(tool) = self.tool() {
            error["tool"] = json!(tool);
        }
        match self {
            CallError::Refused { code, data, .. } => {
                error["code"] = json!(code);
                if let Some(data) = data {
                    error["data"] = (**data).clone();
                }
            }
            CallError::ToolFailed { result, .. } => error["result"] = (**result).clone(),
            _ => {}
        }
        if let Some(limit) = self.limit() {
            error["limit"] = json!(limit);
        }
        error
    }
}

/// What one run may still do: its calls, its time, its cancellation.
pub(crate) struct Budget {
    pub(crate) max_calls: usize,
    made: AtomicUsize,
    pub(crate) deadline: Instant,
    pub(crate) timeout_ms: u128,
    pub(crate) max_parallel: usize,
    pub(crate) max_result_bytes: usize,
    pub(crate) cancel: CancellationToken,
}

impl Budget {
    pub(crate) fn new(
        settings: &switchboard_config::ScriptSettings,
        cancel: CancellationToken,
    ) -> Budget {
        Budget {
            max_calls: settings.max_calls,
            made: AtomicUsize::new(0),
            deadline: Instant::now() + settings.timeout,
            timeout_ms: settings.timeout.as_millis(),
            max_parallel: settings.max_parallel,
            max_result_bytes: settings.max_result_bytes,
            cancel,
        }
    }

    /// Calls made so far.
    pub(crate) fn made(&self) -> usize {
        self.made.load(Ordering::Relaxed)
    }

    /// Counts `n` calls about to be made, or refuses them all when they would pass the
    /// limit (then nothing is counted, and nothing may be sent).
    fn reserve(&self, n: usize) -> Result<(), CallError> {
        self.made
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |made| {
                made.checked_add(n).filter(|total| *total <= self.max_calls)
            })
            .map(|_| ())
            .map_err(|_| CallError::TooManyCalls {
                max: self.max_calls,
            })
    }

    /// Whether the run must stop now, and why.
    pub(crate) fn stopped(&self) -> Option<CallError> {
        if self.cancel.is_cancelled() {
            Some(CallError::Cancelled)
        } else if Instant::now() >= self.deadline {
            Some(CallError::Timeout {
                ms: self.timeout_ms,
            })
        } else {
            None
        }
    }
}

/// One run's way into the pipeline: the gateway, the caller as its inner calls present
/// it, and the budget.
pub(crate) struct Caller {
    gateway: Gateway,
    ctx: ClientCtx,
    pub(crate) budget: Budget,
}

impl Caller {
    /// The caller `ctx` making a run's inner calls. They resolve in the catalog (never as
    /// meta-mode tools); a modern client's MRTR `input_required` cannot be answered from
    /// inside a run, so approvals it would have been asked for go out of band.
    pub(crate) fn new(gateway: Gateway, ctx: &ClientCtx, budget: Budget) -> Caller {
        let mut inner = ctx.clone();
        inner.tools_mode = switchboard_config::ToolsMode::Catalog;
        inner.cancel = budget.cancel.clone();
        if inner.era == switchboard_protocol::Era::Modern
            && let Some(capabilities) = inner.capabilities.as_object_mut()
        {
            capabilities.remove("elicitation");
        }
        Caller {
            gateway,
            ctx: inner,
            budget,
        }
    }

    /// One call, counted against the budget first.
    pub(crate) async fn call(&self, tool: &str, arguments: Value) -> Result<Value, CallError> {
        if let Some(stop) = self.budget.stopped() {
            return Err(stop);
        }
        self.budget.reserve(1)?;
        self.send(tool, arguments).await
    }

    /// Independent calls, at most `max_parallel` in flight, answered in order. All are
    /// counted first: if they would pass `max_calls`, none is made.
    pub(crate) async fn call_all(
        &self,
        calls: Vec<(String, Value)>,
    ) -> Result<Vec<Result<Value, CallError>>, CallError> {
        if let Some(stop) = self.budget.stopped() {
            return Err(stop);
        }
        self.budget.reserve(calls.len())?;
        Ok(futures::stream::iter(calls)
            .map(|(tool, arguments)| async move { self.send(&tool, arguments).await })
            .buffered(self.budget.max_parallel)
            .collect()
            .await)
    }

    /// Sends one counted call through the pipeline, bounded by the deadline and the
    /// cancellation.
    async fn send(&self, tool: &str, arguments: Value) -> Result<Value, CallError> {
        if NOT_FROM_SCRIPTS.contains(&tool) {
            return Err(CallError::Nested {
                tool: tool.to_owned(),
            });
        }
        let arguments = match arguments {
            Value::Null => json!({}),
            other => other,
        };
        let params = json!({ "name": tool, "arguments": arguments });
        let run = Box::pin(self.gateway.run(&self.ctx, "tools/call", Some(params)));
        let outcome = tokio::select! {
            outcome = tokio::time::timeout_at(self.budget.deadline, run) => outcome,
            () = self.budget.cancel.cancelled() => return Err(CallError::Cancelled),
        };
        let result = match outcome {
            Err(_elapsed) => {
                return Err(CallError::Timeout {
                    ms: self.budget.timeout_ms,
                });
            }
            Ok(Err(error)) => {
                let rpc = error.to_rpc(self.ctx.era);
                return Err(CallError::Refused {
                    tool: tool.to_owned(),
                    code: rpc.code,
                    message: rpc.message.clone(),
                    data: rpc.data.clone().map(Box::new),
                });
            }
            Ok(Ok(reply)) => reply.into_value(),
        };
        self.check(tool, result)
    }

    /// A result as a run takes it: a tool error, a request for input and an oversized
    /// result are errors.
    fn check(&self, tool: &str, result: Value) -> Result<Value, CallError> {
        if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
            return Err(CallError::NeedsInput {
                tool: tool.to_owned(),
            });
        }
        let bytes = serde_json::to_vec(&result).map_or(usize::MAX, |b| b.len());
        if bytes > self.budget.max_result_bytes {
            return Err(CallError::TooLarge {
                tool: tool.to_owned(),
                bytes,
                max: self.budget.max_result_bytes,
            });
        }
        if result.get("isError").and_then(Value::as_bool) == Some(true) {
            return Err(CallError::ToolFailed {
                tool: tool.to_owned(),
                message: text_of(&result),
                result: Box::new(result),
            });
        }
        Ok(result)
    }
}

/// The text blocks of a tool result, joined by newlines.
pub(crate) fn text_of(result: &Value) -> String {
    result
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|block| block.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(max_calls: usize, timeout: Duration) -> Budget {
        let settings = switchboard_config::ScriptSettings {
            max_calls,
            timeout,
            ..Default::default()
        };
        Budget::new(&settings, CancellationToken::new())
    }

    #[test]
    fn reservations_are_all_or_nothing() {
        let budget = budget(3, Duration::from_secs(5));
        budget.reserve(2).unwrap();
        assert!(matches!(
            budget.reserve(2),
            Err(CallError::TooManyCalls { max: 3 })
        ));
        assert_eq!(budget.made(), 2, "a refused reservation counts nothing");
        budget.reserve(1).unwrap();
        assert!(budget.reserve(1).is_err());
        assert_eq!(budget.made(), 3);
    }

    #[tokio::test]
    async fn stops_on_deadline_and_cancel() {
        let budget = budget(3, Duration::from_millis(0));
        assert!(matches!(budget.stopped(), Some(CallError::Timeout { .. })));
        let budget = self::budget(3, Duration::from_secs(60));
        assert!(budget.stopped().is_none());
        budget.cancel.cancel();
        assert!(matches!(budget.stopped(), Some(CallError::Cancelled)));
    }

    #[test]
    fn text_of_joins_text_blocks() {
        let result = json!({ "content": [
            { "type": "text", "text": "a" }, { "type": "image", "data": "" },
            { "type": "text", "text": "b" }
        ] });
        assert_eq!(text_of(&result), "a\nb");
        assert_eq!(text_of(&json!({})), "");
    }
}
