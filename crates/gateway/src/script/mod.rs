//! Orchestration: the meta-tools `switchboard__run` (a short script in an embedded,
//! sandboxed interpreter that calls tools, loops, branches and returns JSON) and
//! `switchboard__batch` (independent calls answered together).
//!
//! - `calls`: each inner call a `tools/call` through `Gateway::run` under the caller's
//!   identity, and the run's budget (calls, deadline, cancellation);
//! - `engine`: one script's Rhai engine (limits, the script API, errors with their line);
//! - `convert`: JSON ↔ script values.
//!
//! A script runs on the blocking pool, never on an async worker, and at most
//! `[scripts] max_running` run at once (a further one is refused, retryable). Its thread
//! keeps the slot until the script has really ended, so an abandoned request cannot
//! leave more interpreters running than the bound. Enabled like every meta-tool, in
//! `[gateway] meta_tools`; bounds in `[scripts]`.

pub(crate) mod calls;
pub(crate) mod convert;
pub(crate) mod engine;

use std::sync::Arc;
use std::time::Duration;

use rhai::packages::Package;
use serde_json::{Value, json};
use switchboard_config::ScriptSettings;
use switchboard_protocol::RpcError;
use tokio::sync::Semaphore;

use crate::error::Error;
use crate::gateway::{ClientCtx, Gateway};
use calls::{Budget, Caller};

/// Time a script's thread may take past its deadline before the request is answered
/// without it (the thread still ends on its own, and keeps its slot until then).
const GRACE: Duration = Duration::from_secs(5);

/// The scripts' shared state: bounds, the slots of running scripts, and the standard
/// library every script's engine shares (built once).
pub(crate) struct Scripts {
    settings: ScriptSettings,
    running: Arc<Semaphore>,
    std: rhai::Shared<rhai::Module>,
}

impl Scripts {
    pub(crate) fn new(settings: &ScriptSettings) -> Scripts {
        Scripts {
            settings: settings.clone(),
            running: Arc::new(Semaphore::new(settings.max_running)),
            std: rhai::packages::StandardPackage::new().as_shared_module(),
        }
    }
}

fn tool_result(value: Value, structured: Value, is_error: bool) -> Value {
    let text = match &value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut result =
        json!({ "content": [{ "type": "text", "text": text }], "structuredContent": structured });
    if is_error {
        result["isError"] = json!(true);
    }
    result
}

impl Gateway {
    /// `switchboard__run`: runs `arguments.script` and answers its value, or its error
    /// with the line, as a tool error.
    pub(crate) async fn run_script(
        &self,
        ctx: &ClientCtx,
        arguments: &Value,
    ) -> Result<Value, RpcError> {
        let source = arguments
            .get("script")
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("missing `script` (the script's text)"))?
            .to_owned();
        let scripts = &self.inner.scripts;
        let settings = scripts.settings.clone();
        let permit = Arc::clone(&scripts.running)
            .try_acquire_owned()
            .map_err(|_| {
                Error::limited(
                    "scripts",
                    format!(
                        "{} scripts are running, the most at once (scripts.max_running); retry shortly",
                        settings.max_running
                    ),
                    None,
                )
                .to_rpc(ctx.era)
            })?;
        // The script stops when the client cancels, or when this request is dropped.
        let cancel = ctx.cancel.child_token();
        let _stop_on_drop = cancel.clone().drop_guard();
        let caller = Arc::new(Caller::new(
            self.clone(),
            ctx,
            Budget::new(&settings, cancel),
        ));
        let std = scripts.std.clone();
        let handle = tokio::runtime::Handle::current();
        let thread_caller = Arc::clone(&caller);
        let thread_settings = settings.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _slot = permit;
            engine::run(&source, &thread_settings, &std, thread_caller, handle)
        });
        let outcome = match tokio::time::timeout(settings.timeout + GRACE, job).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) => {
                tracing::error!(error = %join, "script thread failed");
                return Err(RpcError::internal("the script's interpreter failed"));
            }
            Err(_) => engine::Outcome {
                result: Err(engine::Failure {
                    kind: engine::FailureKind::Limit,
                    message: format!(
                        "time limit reached: the run may take {} ms (scripts.timeout_ms)",
                        settings.timeout.as_millis()
                    ),
                    line: None,
                    column: None,
                    limit: Some("timeout_ms"),
                    detail: None,
                }),
                log: Vec::new(),
            },
        };
        let calls = caller.budget.made();
        let mut structured = json!({ "calls": calls });
        if !outcome.log.is_empty() {
            structured["log"] = json!(outcome.log);
        }
        Ok(match outcome.result {
            Ok(value) => {
                structured["result"] = value.clone();
                tool_result(value, structured, false)
            }
            Err(failure) => {
                tracing::debug!(kind = ?failure.kind, line = ?failure.line, calls, "script failed");
                structured["error"] = failure.to_json();
                tool_result(
                    Value::String(format!("script error: {}", failure.describe())),
                    structured,
                    true,
                )
            }
        })
    }

    /// `switchboard__batch`: `arguments.calls` (`[{name, arguments}]`), made at once
    /// (at most `max_parallel` in flight) and answered together, in order, each with its
    /// result or its error. One failing call does not fail the others.
    pub(crate) async fn run_batch(
        &self,
        ctx: &ClientCtx,
        arguments: &Value,
    ) -> Result<Value, RpcError> {
        let settings = &self.inner.scripts.settings;
        let entries = arguments
            .get("calls")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                RpcError::invalid_params("missing `calls` (an array of {name, arguments})")
            })?;
        if entries.is_empty() {
            return Err(RpcError::invalid_params("`calls` is empty"));
        }
        if entries.len() > settings.max_calls {
            return Err(RpcError::invalid_params(format!(
                "{} calls, over {} per batch (scripts.max_calls)",
                entries.len(),
                settings.max_calls
            )));
        }
        let calls = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let name = entry.get("name").and_then(Value::as_str).ok_or_else(|| {
                    RpcError::invalid_params(format!("calls[{index}]: missing `name`"))
                })?;
                let arguments = match entry.get("arguments") {
                    None | Some(Value::Null) => json!({}),
                    Some(object @ Value::Object(_)) => object.clone(),
                    Some(_) => {
                        return Err(RpcError::invalid_params(format!(
                            "calls[{index}]: `arguments` must be an object"
                        )));
                    }
                };
                Ok((name.to_owned(), arguments))
            })
            .collect::<Result<Vec<_>, RpcError>>()?;
        let names: Vec<String> = calls.iter().map(|(name, _)| name.clone()).collect();
        let cancel = ctx.cancel.child_token();
        let _stop_on_drop = cancel.clone().drop_guard();
        let caller = Caller::new(self.clone(), ctx, Budget::new(settings, cancel));
        let answers = match caller.call_all(calls).await {
            Ok(answers) => answers,
            Err(stop) => {
                return Ok(tool_result(
                    json!(stop.to_string()),
                    json!({ "error": stop.to_json() }),
                    true,
                ));
            }
        };
        let mut failed = 0;
        let results: Vec<Value> = names
            .into_iter()
            .zip(answers)
            .map(|(name, answer)| match answer {
                Ok(result) => json!({ "name": name, "ok": true, "result": result }),
                Err(error) => {
                    failed += 1;
                    json!({ "name": name, "ok": false, "error": error.to_json() })
                }
            })
            .collect();
        let structured = json!({ "results": results, "failed": failed });
        Ok(tool_result(structured.clone(), structured, false))
    }
}

#[cfg(test)]
mod tests;
