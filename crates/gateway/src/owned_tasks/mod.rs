//! Gateway-made tasks: a `tools/call` from a client that declared the tasks extension,
//! to a tool configured with `task_after_ms`, that is still running after that long
//! becomes a task owned by the gateway, whether or not the upstream knows of tasks.
//!
//! The upstream call runs from the start in a tracked task of its own (`Gateway::spawn`)
//! with a cancellation token of its own, so it outlives the client's request; the request
//! waits for it up to the threshold (a client cancelling before then cancels the call, as
//! for any call). Past the threshold the task's record is written to the embedded
//! database (`store`: `tasks.owned`, id → JSON [`Record`], with an expiry index) and
//! committed before the client gets its `CreateTaskResult`; the call's outcome is written
//! there when it ends. `tasks/get`
//! reads the record, `tasks/cancel` cancels the running call (the upstream hears
//! `notifications/cancelled`) and settles the record. Records expire with their TTL; at
//! most [`MAX_KEPT`] are kept and a result over [`MAX_RESULT_BYTES`] is kept as a failure
//! saying so. The client's id seals the record id and the caller's principal binding
//! (`task_ext`), and the record names its owner again: another principal's poll, a forged
//! or an expired id get the same not-found error.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use switchboard_protocol::Era;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::gateway::{ClientCtx, Gateway};
use crate::roster::now_ms;
use crate::task_ext;

mod store;

pub use store::{MAX_KEPT, Record, SWEEP_PER_CREATE, Store, StoreError};

/// The largest result kept (its JSON); a larger one is kept as a failure saying so.
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// How long a task is kept when its tool sets no `task_ttl_ms`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The polling interval suggested to clients.
const POLL_MS: u64 = 1000;

/// The calls of gateway-made tasks still running, by record id: what `tasks/cancel` stops.
#[derive(Default)]
pub(crate) struct Running(Mutex<HashMap<String, CancellationToken>>);

/// How [`Gateway::run_or_own`] ended.
pub(crate) enum Ran {
    /// The call's own answer, before the threshold (or the store could take no task).
    Answer(Value),
    /// The call became a gateway-made task: its `CreateTaskResult`.
    Made(Value),
}

/// When a call may become a task, and for how long it is kept.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) after: Duration,
    pub(crate) ttl: Duration,
}

/// What a finished call leaves in its record: status, result, error.
pub fn outcome_record(
    outcome: Result<Value, Error>,
) -> (&'static str, Option<Value>, Option<Value>) {
    match outcome {
        Ok(result)
            if result.get("resultType").and_then(Value::as_str) == Some("input_required") =>
        {
            (
                "failed",
                None,
                Some(
                    json!({ "code": -32603, "message": "the call asked for input, which a gateway-made task cannot relay" }),
                ),
            )
        }
        Ok(result) => {
            let size = serde_json::to_vec(&result).map_or(usize::MAX, |bytes| bytes.len());
            if size > MAX_RESULT_BYTES {
                let message = format!(
                    "the result ({size} bytes) exceeds the {MAX_RESULT_BYTES} bytes a task keeps"
                );
                (
                    "failed",
                    None,
                    Some(json!({ "code": -32603, "message": message })),
                )
            } else {
                ("completed", Some(result), None)
            }
        }
        Err(Error::Cancelled) => ("cancelled", None, None),
        Err(error) => {
            let rpc = error.to_rpc(Era::Modern);
            (
                "failed",
                None,
                Some(serde_json::to_value(rpc).unwrap_or_else(|_| json!({}))),
            )
        }
    }
}

/// RFC 3339 for a millisecond timestamp.
fn rfc3339(ms: u64) -> String {
    task_ext::rfc3339_at(ms)
}

/// The task envelope of a record, under the client's id.
pub fn envelope(exposed_id: &str, record: &Record) -> Map<String, Value> {
    let mut task = Map::new();
    task.insert("taskId".into(), exposed_id.into());
    task.insert("status".into(), record.status.clone().into());
    task.insert("createdAt".into(), rfc3339(record.created_ms).into());
    task.insert("lastUpdatedAt".into(), rfc3339(record.updated_ms).into());
    task.insert("ttlMs".into(), record.ttl_ms.into());
    task.insert("pollIntervalMs".into(), POLL_MS.into());
    task
}

/// The task as `tasks/get` and `notifications/tasks` show it: the envelope, and the
/// result or error once there is one.
pub fn detailed(exposed_id: &str, record: &Record) -> Map<String, Value> {
    let mut task = envelope(exposed_id, record);
    if let Some(result) = &record.result {
        task.insert("result".into(), result.clone());
    }
    if let Some(error) = &record.error {
        task.insert("error".into(), error.clone());
    }
    task
}

impl Gateway {
    fn owned_store(&self) -> Store {
        Store::new(Arc::clone(self.db()))
    }

    /// A gateway-made task's record changed: listen streams that named it hear so.
    fn owned_task_changed(&self, id: &str, record: &Record) {
        self.task_status_changed(None, Value::Object(detailed(id, record)));
    }

    /// Whether this call may become a gateway-made task: a `tools/call` from a client
    /// that declared the extension, to a tool (or a server's `*`) with `task_after_ms`.
    pub(crate) fn task_plan(
        &self,
        ctx: &ClientCtx,
        method: &str,
        server: &str,
        tool: &str,
    ) -> Option<Plan> {
        if method != "tools/call" || !task_ext::declared(ctx) {
            return None;
        }
        let server = self.server(server)?;
        let policy = server.policy();
        let tool = policy.tools.get(tool).or_else(|| policy.tools.get("*"))?;
        Some(Plan {
            after: tool.task_after?,
            ttl: tool.task_ttl.unwrap_or(DEFAULT_TTL),
        })
    }

    /// Runs `call` (already bound to `cancel`, its own token) in a tracked task and waits
    /// for it up to the plan's threshold; past it, the call becomes a gateway-made task
    /// and its `CreateTaskResult` is the answer. A store that cannot take the record
    /// (full, failing) leaves the client waiting for the call as if no task was planned.
    pub(crate) async fn run_or_own<F>(
        &self,
        ctx: &ClientCtx,
        plan: Plan,
        server: &str,
        tool: &str,
        cancel: CancellationToken,
        call: F,
    ) -> Result<Ran, Error>
    where
        F: Future<Output = Result<Value, Error>> + Send + 'static,
    {
        let (done_tx, mut done) = oneshot::channel();
        self.spawn(async move {
            let _ = done_tx.send(call.await);
        });
        let gone = || {
            Error::Rpc(switchboard_protocol::RpcError::new(
                -32603,
                "the call ended without an answer",
            ))
        };
        tokio::select! {
            outcome = &mut done => return outcome.unwrap_or_else(|_| Err(gone())).map(Ran::Answer),
            () = tokio::time::sleep(plan.after) => {}
            () = ctx.cancel.cancelled() => {
                cancel.cancel();
                return Err(Error::Cancelled);
            }
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let now = now_ms();
        let record = Record {
            owner: ctx.principal.binding().to_owned(),
            server: server.to_owned(),
            tool: tool.to_owned(),
            status: "working".into(),
            created_ms: now,
            updated_ms: now,
            ttl_ms: plan.ttl.as_millis() as u64,
            result: None,
            error: None,
        };
        let store = self.owned_store();
        if let Err(error) = store.create(&id, &record, now) {
            tracing::warn!(server, tool, %error, "the call could not become a task; the client waits for it");
            return tokio::select! {
                outcome = done => outcome.unwrap_or_else(|_| Err(gone())).map(Ran::Answer),
                () = ctx.cancel.cancelled() => {
                    cancel.cancel();
                    Err(Error::Cancelled)
                }
            };
        }
        self.inner.owned_tasks.0.lock().insert(id.clone(), cancel);
        let gateway = self.clone();
        let settling = id.clone();
        self.spawn(async move {
            let outcome = done.await.unwrap_or_else(|_| Err(Error::Cancelled));
            gateway.inner.owned_tasks.0.lock().remove(&settling);
            let (status, result, error) = outcome_record(outcome);
            match gateway
                .owned_store()
                .settle(&settling, status, result, error, now_ms())
            {
                Ok(Some(record)) => gateway.owned_task_changed(&settling, &record),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(task = %settling, %error, "a gateway-made task's outcome was not kept");
                }
            }
        });
        let exposed = self.seal_owned_task_id(ctx, &id, plan.ttl.as_millis() as u64);
        let mut created = envelope(&exposed, &record);
        created.insert("resultType".into(), "task".into());
        Ok(Ran::Made(Value::Object(created)))
    }

    /// `tasks/get`, `tasks/update` and `tasks/cancel` on a gateway-made task.
    pub(crate) fn owned_task_method(
        &self,
        ctx: &ClientCtx,
        method: &str,
        exposed: &str,
        id: &str,
    ) -> Result<Value, Error> {
        let store = self.owned_store();
        let record = store
            .get(id, now_ms())
            .map_err(|error| {
                Error::Rpc(switchboard_protocol::RpcError::new(
                    -32603,
                    error.to_string(),
                ))
            })?
            .filter(|record| record.owner == ctx.principal.binding())
            .ok_or_else(task_ext::not_found)?;
        match method {
            "tasks/get" => Ok(Value::Object(detailed(exposed, &record))),
            "tasks/cancel" => {
                if let Some(cancel) = self.inner.owned_tasks.0.lock().remove(id) {
                    cancel.cancel();
                }
                let settled = store
                    .settle(id, "cancelled", None, None, now_ms())
                    .map_err(|error| {
                        Error::Rpc(switchboard_protocol::RpcError::new(
                            -32603,
                            error.to_string(),
                        ))
                    })?;
                if let Some(record) = settled {
                    self.owned_task_changed(id, &record);
                }
                Ok(json!({}))
            }
            // A gateway-made task never asks for input: responses are for unknown keys,
            // which the extension says to ignore.
            _ => Ok(json!({})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_statuses() {
        assert_eq!(outcome_record(Ok(json!({ "content": [] }))).0, "completed");
        assert_eq!(outcome_record(Err(Error::Cancelled)).0, "cancelled");
        let huge = json!({ "content": [{ "type": "text", "text": "x".repeat(MAX_RESULT_BYTES) }] });
        let (status, result, error) = outcome_record(Ok(huge));
        assert_eq!((status, result.is_none()), ("failed", true));
        assert!(
            error.unwrap()["message"]
                .as_str()
                .unwrap()
                .contains("exceeds")
        );
    }
}
