//! Gateway-made tasks: a `tools/call` from a client that declared the tasks extension,
//! to a tool configured with `task_after_ms`, that is still running after that long
//! becomes a task owned by the gateway, whether or not the upstream knows of tasks.
//!
//! The upstream call runs from the start in a tracked task of its own (`Gateway::spawn`)
//! with a cancellation token of its own, so it outlives the client's request; the request
//! waits for it up to the threshold (a client cancelling before then cancels the call, as
//! for any call). Past the threshold the task's record is written to the embedded
//! database (`tasks.owned`: id → JSON [`Record`]) and committed before the client gets
//! its `CreateTaskResult`; the call's outcome is written there when it ends. `tasks/get`
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
use redb::{
    ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _, TableDefinition,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use switchboard_protocol::Era;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::Error;
use crate::gateway::{ClientCtx, Gateway};
use crate::roster::now_ms;
use crate::task_ext;

const TABLE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tasks.owned");
/// The largest result kept (its JSON); a larger one is kept as a failure saying so.
pub const MAX_RESULT_BYTES: usize = 1 << 20;
/// Records kept at most (expired ones are swept to make room).
pub const MAX_KEPT: usize = 10_000;
/// How long a task is kept when its tool sets no `task_ttl_ms`.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// The polling interval suggested to clients.
const POLL_MS: u64 = 1000;

/// One gateway-made task as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The principal binding it belongs to.
    pub owner: String,
    pub server: String,
    pub tool: String,
    /// `working`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub ttl_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl Record {
    fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.created_ms.saturating_add(self.ttl_ms)
    }

    fn terminal(&self) -> bool {
        self.status != "working"
    }
}

/// The store failed, or is full.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task store: {0}")]
    Db(String),
    #[error("too many kept tasks ({0})")]
    Full(usize),
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(error: E) -> Self {
        StoreError::Db(error.into().to_string())
    }
}

/// The `tasks.owned` table of the shared database.
pub struct Store {
    db: Arc<Db>,
}

impl Store {
    pub fn new(db: Arc<Db>) -> Store {
        Store { db }
    }

    /// Writes a new record (committed on return); sweeps expired ones when at the bound.
    pub fn create(&self, id: &str, record: &Record, now_ms: u64) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Db(e.to_string()))?;
        let write = self.db.database().begin_write()?;
        {
            let mut table = write.open_table(TABLE)?;
            if table.len()? as usize >= MAX_KEPT {
                let mut expired = Vec::new();
                for entry in table.iter()? {
                    let (key, value) = entry?;
                    let gone = serde_json::from_slice::<Record>(value.value())
                        .map_or(true, |record| record.expired(now_ms));
                    if gone {
                        expired.push(key.value().to_owned());
                    }
                }
                for key in expired {
                    table.remove(key.as_str())?;
                }
                if table.len()? as usize >= MAX_KEPT {
                    return Err(StoreError::Full(MAX_KEPT));
                }
            }
            table.insert(id, bytes.as_slice())?;
        }
        write.commit()?;
        Ok(())
    }

    /// A live record (an expired one is as good as absent).
    pub fn get(&self, id: &str, now_ms: u64) -> Result<Option<Record>, StoreError> {
        let read = self.db.database().begin_read()?;
        let table = match read.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let Some(value) = table.get(id)? else {
            return Ok(None);
        };
        let record: Record =
            serde_json::from_slice(value.value()).map_err(|e| StoreError::Db(e.to_string()))?;
        Ok((!record.expired(now_ms)).then_some(record))
    }

    /// Moves a working record to a terminal status (a terminal one stays as it is).
    pub fn settle(
        &self,
        id: &str,
        status: &str,
        result: Option<Value>,
        error: Option<Value>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let write = self.db.database().begin_write()?;
        {
            let mut table = write.open_table(TABLE)?;
            let current = table
                .get(id)?
                .and_then(|value| serde_json::from_slice::<Record>(value.value()).ok());
            if let Some(mut record) = current
                && !record.terminal()
            {
                record.status = status.to_owned();
                record.result = result;
                record.error = error;
                record.updated_ms = now_ms;
                let bytes =
                    serde_json::to_vec(&record).map_err(|e| StoreError::Db(e.to_string()))?;
                table.insert(id, bytes.as_slice())?;
            }
        }
        write.commit()?;
        Ok(())
    }
}

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

impl Gateway {
    fn owned_store(&self) -> Store {
        Store::new(Arc::clone(self.db()))
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
            if let Err(error) = gateway
                .owned_store()
                .settle(&settling, status, result, error, now_ms())
            {
                tracing::warn!(task = %settling, %error, "a gateway-made task's outcome was not kept");
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
            "tasks/get" => {
                let mut task = envelope(exposed, &record);
                if let Some(result) = record.result {
                    task.insert("result".into(), result);
                }
                if let Some(error) = record.error {
                    task.insert("error".into(), error);
                }
                Ok(Value::Object(task))
            }
            "tasks/cancel" => {
                if let Some(cancel) = self.inner.owned_tasks.0.lock().remove(id) {
                    cancel.cancel();
                }
                store
                    .settle(id, "cancelled", None, None, now_ms())
                    .map_err(|error| {
                        Error::Rpc(switchboard_protocol::RpcError::new(
                            -32603,
                            error.to_string(),
                        ))
                    })?;
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

    fn record(now: u64, ttl_ms: u64) -> Record {
        Record {
            owner: "key:a".into(),
            server: "s".into(),
            tool: "t".into(),
            status: "working".into(),
            created_ms: now,
            updated_ms: now,
            ttl_ms,
            result: None,
            error: None,
        }
    }

    #[test]
    fn records_live_settle_and_expire() {
        let store = Store::new(Arc::new(Db::memory()));
        assert_eq!(store.get("x", 0).unwrap(), None);
        store.create("x", &record(1000, 500), 1000).unwrap();
        assert_eq!(store.get("x", 1200).unwrap().unwrap().status, "working");
        store
            .settle("x", "completed", Some(json!({ "content": [] })), None, 1300)
            .unwrap();
        let settled = store.get("x", 1400).unwrap().unwrap();
        assert_eq!(settled.status, "completed");
        // Terminal stays terminal.
        store.settle("x", "cancelled", None, None, 1410).unwrap();
        assert_eq!(store.get("x", 1420).unwrap().unwrap().status, "completed");
        assert_eq!(store.get("x", 1500).unwrap(), None, "expired with its TTL");
    }

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
