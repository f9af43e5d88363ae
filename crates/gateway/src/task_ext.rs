//! The tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) passed through: which
//! requests negotiated it, whether any upstream offers it, and the task ids clients see.
//!
//! An upstream's `CreateTaskResult` reaches the client with a task id of ours: the
//! upstream's id sealed (`state::Sealer`, HMAC-SHA256 with the gateway's key) together
//! with the server's name and the caller's principal binding, expiring with the task's
//! `ttlMs` (capped). `tasks/get`, `tasks/update` and `tasks/cancel` open it, check the
//! caller, and go to the owning server under the upstream's id. A forged id, one issued
//! to another principal, one for a removed server and an expired one all get the same
//! not-found error, so a client learns nothing about other clients' tasks.

use serde_json::{Value, json};
use switchboard_protocol::RpcError;
use switchboard_protocol::error::MISSING_REQUIRED_CLIENT_CAPABILITY;

use crate::error::Error;
use crate::gateway::{ClientCtx, Gateway};
use crate::roster::now_ms;

pub(crate) const EXTENSION: &str = "io.modelcontextprotocol/tasks";
/// The methods that address a task by id.
pub(crate) const METHODS: [&str; 3] = ["tasks/get", "tasks/update", "tasks/cancel"];
/// How long an id stays valid when the upstream gave no TTL (or an unbounded one).
const MAX_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// Longest task id accepted before trying to open it.
const MAX_ID_LEN: usize = 2048;

/// Whether this request declared the extension (per request: modern `_meta`
/// capabilities, or the legacy session's).
pub(crate) fn declared(ctx: &ClientCtx) -> bool {
    ctx.capabilities
        .get("extensions")
        .and_then(|extensions| extensions.get(EXTENSION))
        .is_some_and(|v| !v.is_null())
}

/// -32021 naming the extension, as SEP-2575 "Missing Required Capabilities" shows it.
pub(crate) fn missing_extension() -> Error {
    Error::Rpc(
        RpcError::new(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            format!("this request needs the {EXTENSION} extension"),
        )
        .with_data(json!({ "requiredCapabilities": { "extensions": { EXTENSION: {} } } })),
    )
}

/// The one answer for every task id the caller cannot use.
pub(crate) fn not_found() -> Error {
    Error::invalid_params("task not found")
}

/// Where a client's task id leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskRoute {
    /// An upstream's task, under its own id.
    Upstream { server: String, upstream_id: String },
    /// A gateway-made task (`owned_tasks`), by record id.
    Owned { id: String },
}

impl Gateway {
    /// Whether some upstream offers the extension (its handshake says so).
    pub(crate) fn tasks_offered(&self) -> bool {
        self.servers()
            .iter()
            .any(|server| server.offers_extension(EXTENSION))
    }

    /// The client's id for an upstream task of `server`.
    pub(crate) fn seal_task_id(
        &self,
        ctx: &ClientCtx,
        server: &str,
        upstream_id: &str,
        ttl_ms: Option<u64>,
    ) -> String {
        let ttl = ttl_ms.unwrap_or(MAX_TTL_MS).min(MAX_TTL_MS);
        let payload = json!({
            "k": "task",
            "s": server,
            "t": upstream_id,
            "p": ctx.principal.binding(),
        });
        // A second of slack: the upstream's clock started before ours.
        self.inner
            .sealer
            .seal(&payload, now_ms().saturating_add(ttl).saturating_add(1000))
    }

    /// Opens a client's task id: only the principal it was issued to, only while it
    /// lives, only for a server that still exists.
    pub(crate) fn open_task_id(&self, ctx: &ClientCtx, id: &str) -> Result<TaskRoute, Error> {
        if id.len() > MAX_ID_LEN {
            return Err(not_found());
        }
        let opened = self
            .inner
            .sealer
            .open(id, now_ms())
            .map_err(|_| not_found())?;
        let field = |key: &str| opened.get(key).and_then(Value::as_str);
        if field("p") != Some(ctx.principal.binding()) {
            return Err(not_found());
        }
        match (field("k"), field("s"), field("t")) {
            (Some("task"), Some(server), Some(upstream_id)) if self.server(server).is_some() => {
                Ok(TaskRoute::Upstream {
                    server: server.to_owned(),
                    upstream_id: upstream_id.to_owned(),
                })
            }
            (Some("own"), _, Some(id)) => Ok(TaskRoute::Owned { id: id.to_owned() }),
            _ => Err(not_found()),
        }
    }

    /// The client's id for a gateway-made task.
    pub(crate) fn seal_owned_task_id(&self, ctx: &ClientCtx, id: &str, ttl_ms: u64) -> String {
        let payload = json!({ "k": "own", "t": id, "p": ctx.principal.binding() });
        self.inner
            .sealer
            .seal(&payload, now_ms().saturating_add(ttl_ms))
    }

    /// Rewrites an upstream's `CreateTaskResult` (a `tools/call` answer with
    /// `resultType: "task"`) to carry our id. Other results are left alone.
    pub(crate) fn expose_created_task(&self, ctx: &ClientCtx, server: &str, result: &mut Value) {
        if result.get("resultType").and_then(Value::as_str) != Some("task") {
            return;
        }
        let Some(upstream_id) = result.get("taskId").and_then(Value::as_str) else {
            return;
        };
        let ttl = result.get("ttlMs").and_then(Value::as_u64);
        let id = self.seal_task_id(ctx, server, upstream_id, ttl);
        result["taskId"] = Value::String(id);
    }
}

/// A `tasks/*` answer for the client: the task id it used, never the upstream's.
pub(crate) fn expose_task_answer(exposed_id: &str, result: &mut Value) {
    if let Some(object) = result.as_object_mut()
        && object.contains_key("taskId")
    {
        object.insert("taskId".into(), Value::String(exposed_id.to_owned()));
    }
}

/// What `tasks/get` reports when the upstream that owned the task is gone (it lost the
/// task, or cannot be reached): a terminal `failed`, so a client stops polling.
pub(crate) fn lost_task(exposed_id: &str, error: &Error) -> Option<Value> {
    let reason = match error {
        // The upstream does not know the id any more (it restarted): -32602.
        Error::Rpc(rpc) if rpc.code == switchboard_protocol::error::INVALID_PARAMS => {
            "the server that ran this task no longer knows it"
        }
        // Gone (exited, unreachable): whatever it kept in memory went with it.
        error
            if error.to_rpc(switchboard_protocol::Era::Modern).code
                == switchboard_protocol::error::gateway::UPSTREAM_UNAVAILABLE =>
        {
            "the server that ran this task is unavailable"
        }
        _ => return None,
    };
    let now = crate::task_ext::rfc3339_now();
    Some(json!({
        "taskId": exposed_id,
        "status": "failed",
        "statusMessage": reason,
        "createdAt": now,
        "lastUpdatedAt": now,
        "ttlMs": 0,
        "error": { "code": switchboard_protocol::error::gateway::UPSTREAM_UNAVAILABLE, "message": reason },
    }))
}

/// Now as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339_now() -> String {
    rfc3339_at(now_ms())
}

/// A Unix time in milliseconds as RFC 3339 UTC with milliseconds.
pub(crate) fn rfc3339_at(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Hinnant's days-to-civil).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_429), (2025, 12, 7));
        assert!(rfc3339_now().ends_with('Z'));
    }

    #[test]
    fn lost_tasks_fail() {
        let gone = Error::Rpc(RpcError::invalid_params("task not found"));
        let task = lost_task("abc", &gone).expect("a failed task");
        assert_eq!(task["status"], "failed");
        assert_eq!(task["taskId"], "abc");
        assert!(task.get("result").is_none());
        assert!(lost_task("abc", &Error::invalid_params("x")).is_none());
    }
}
