//! `audit`: one record per decision and per executed call, in the tamper-evident log
//! (`crate::audit`). Second in the chain, so its `after` sees every outcome, the denials
//! of the steps after it included; requests that fail resolution (unknown names, names
//! the caller's view hides, malformed params) reach it through `unresolved`.
//!
//! Audited: requests that address an upstream (tool calls, prompts, resources,
//! completions) and meta-tools; lists, `ping` and the handshake are not.
//!
//! `before` takes the record's queue slot first, so a full queue refuses the call before
//! anything runs (`-31006`, retryable, after `queue_wait_ms`) and a call that ran always
//! has room for its record. If the request is dropped between `before` and `after` (the
//! client went away), its [`Ticket`] records it as cancelled.

use serde_json::Value;
use switchboard_protocol::RpcError;
use switchboard_protocol::error::gateway;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BackgroundTask, Call, Flow, Hooks, Step, StepFuture, Target};
use crate::audit::digest::canonical_sha256;
use crate::audit::{AuditError, Decision, ErrorInfo, Log, Outcome, Record, Slot};
use crate::error::Error;
use crate::gateway::ClientCtx;
use crate::reply::Reply;

/// Methods whose unresolved requests are recorded (those that address something).
const ADDRESSING: [&str; 6] = [
    "tools/call",
    "prompts/get",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
];

pub struct Audit {
    log: Log,
}

impl Audit {
    pub fn new(log: Log) -> Audit {
        Audit { log }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// A record of who asks for what; decision and outcome are filled in later.
    fn record(
        &self,
        ctx: &ClientCtx,
        method: &str,
        params: &Value,
        target: Option<&Target>,
    ) -> Record {
        let principal = &ctx.principal;
        let (server, tool) = match target {
            Some(Target::Upstream(route)) => {
                (Some(route.server.clone()), Some(route.exposed.clone()))
            }
            _ => (None, addressed_name(method, params).map(str::to_owned)),
        };
        let arguments = params
            .get("arguments")
            .or_else(|| params.get("argument"))
            .map(|arguments| crate::meta_policy::recordable(params, arguments));
        Record {
            time_ms: 0,
            principal: principal.id().to_owned(),
            tenant: principal.tenant().map(str::to_owned),
            roles: principal.roles().to_vec(),
            session: principal.session().to_owned(),
            face: principal.face().as_str(),
            peer: principal.peer().addr.map(|addr| addr.to_string()),
            method: method.to_owned(),
            server,
            tool,
            arguments_sha256: arguments.as_deref().map(canonical_sha256),
            arguments: arguments
                .filter(|_| self.log.records_arguments())
                .map(std::borrow::Cow::into_owned),
            ..Record::default()
        }
    }

    async fn submit(&self, slot: Slot, record: Record) -> Result<(), Error> {
        match self.log.submit(slot, record) {
            Ok(receiver) => Log::committed(receiver).await.map_err(refusal),
            // Shutdown: the record is counted and logged as lost; the call is not undone.
            Err(_) => Ok(()),
        }
    }
}

/// The error a client gets when the audit log cannot take its call's record.
fn refusal(error: AuditError) -> Error {
    Error::Rpc(RpcError::new(
        gateway::OVERLOADED,
        format!("{error}: the call was refused, retry later"),
    ))
}

/// The tool or prompt name, or the URI, a request addresses.
fn addressed_name<'a>(method: &str, params: &'a Value) -> Option<&'a str> {
    let field = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "completion/complete" => params
            .get("ref")
            .and_then(|r| r.get("name").or_else(|| r.get("uri"))),
        _ => params.get("uri"),
    };
    field.and_then(Value::as_str)
}

/// What the outcome says about the decision and how the call ended.
fn classify(
    outcome: &Result<Reply, Error>,
    era: switchboard_protocol::Era,
) -> (Decision, Option<Outcome>, Option<ErrorInfo>) {
    let error = match outcome {
        Ok(Reply::Value(result)) => {
            let ended = if result.get("isError").and_then(Value::as_bool) == Some(true) {
                Outcome::ToolError
            } else if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
                Outcome::InputRequired
            } else {
                Outcome::Ok
            };
            return (Decision::Allowed, Some(ended), None);
        }
        Ok(Reply::Page(_)) => return (Decision::Allowed, Some(Outcome::Ok), None),
        Err(error) => error,
    };
    let rpc = error.to_rpc(era);
    let info = Some(ErrorInfo::new(rpc.code, &rpc.message));
    match error {
        Error::Denied { step, .. } => (Decision::Denied { step, rule: None }, None, info),
        Error::Limited { .. } => (Decision::RateLimited { rule: None }, None, info),
        // A call to a tool the registry quarantined (pinning).
        Error::Quarantined(_) => (
            Decision::Denied {
                step: "registry",
                rule: None,
            },
            None,
            info,
        ),
        // A pinned session's call refused by its run snapshot.
        Error::Snapshot(_) => (
            Decision::Denied {
                step: "snapshot",
                rule: None,
            },
            None,
            info,
        ),
        Error::Approval { status, .. } => (
            Decision::Denied {
                step: "approval",
                rule: Some((*status).to_owned()),
            },
            None,
            info,
        ),
        Error::Cancelled => (Decision::Allowed, Some(Outcome::Cancelled), info),
        Error::Rpc(rpc) if rpc.code == gateway::UPSTREAM_TIMEOUT => {
            (Decision::Allowed, Some(Outcome::Timeout), info)
        }
        Error::Rpc(_) | Error::UpstreamProtocol(_) => {
            (Decision::Allowed, Some(Outcome::UpstreamError), info)
        }
        Error::InvalidParams(_)
        | Error::MethodNotFound(_)
        | Error::Unknown { .. }
        | Error::StateRejected(_) => (Decision::Allowed, Some(Outcome::Rejected), info),
    }
}

/// One call's record between `before` and `after`. Dropped without `after` (the request
/// was dropped), it records the call as cancelled.
pub(crate) struct Ticket {
    log: Log,
    pending: Option<(Slot, Record)>,
    started: Instant,
}

impl Ticket {
    fn take(&mut self) -> Option<(Slot, Record)> {
        self.pending.take()
    }

    fn elapsed_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((slot, mut record)) = self.pending.take() {
            record.time_ms = crate::audit::time::now_ms();
            record.latency_us = self.elapsed_us();
            record.outcome = Some(Outcome::Cancelled);
            let _ = self.log.submit(slot, record);
        }
    }
}

impl Step for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BOTH
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        Box::pin(async move {
            if !matches!(call.target, Target::Upstream(_) | Target::Meta(_)) {
                return Ok(Flow::Continue);
            }
            let started = Instant::now();
            let slot = self.log.reserve().await.map_err(refusal)?;
            let record = self.record(call.ctx, call.method, &call.params, Some(&call.target));
            call.notes.hold_ticket(Ticket {
                log: self.log.clone(),
                pending: Some((slot, record)),
                started,
            });
            Ok(Flow::Continue)
        })
    }

    fn after<'a>(
        &'a self,
        call: &'a Call<'_>,
        outcome: &'a mut Result<Reply, Error>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let Some(mut ticket) = call.notes.take_ticket() else {
                return Ok(());
            };
            let Some((slot, mut record)) = ticket.take() else {
                return Ok(());
            };
            record.latency_us = ticket.elapsed_us();
            record.time_ms = crate::audit::time::now_ms();
            let (decision, ended, error) = classify(outcome, call.ctx.era);
            record.decision = call.notes.decision().unwrap_or(decision);
            record.outcome = if record.decision.executes() {
                ended
            } else {
                None
            };
            record.error = error;
            if let Ok(Reply::Value(result)) = &*outcome {
                record.result_sha256 = Some(canonical_sha256(result));
                if self.log.records_results() {
                    record.result = Some(result.clone());
                }
            }
            record.redactions = call.notes.redactions();
            self.submit(slot, record).await
        })
    }

    fn unresolved<'a>(
        &'a self,
        ctx: &'a ClientCtx,
        method: &'a str,
        params: &'a Value,
        error: &'a Error,
        hidden: Option<&'a Target>,
    ) -> StepFuture<'a, ()> {
        Box::pin(async move {
            if !ADDRESSING.contains(&method) {
                return Ok(());
            }
            let slot = self.log.reserve().await.map_err(refusal)?;
            let mut record = self.record(ctx, method, params, hidden);
            record.time_ms = crate::audit::time::now_ms();
            record.decision = match (hidden, error) {
                // Only the allow-lists shape views today.
                (Some(_), _) => Decision::Denied {
                    step: "allow",
                    rule: Some("hidden".into()),
                },
                (None, Error::Unknown { .. }) => Decision::Unknown,
                // A tool the registry quarantined (pinning): refused, naming the change.
                (None, Error::Quarantined(held)) => {
                    record.server = Some(held.server.clone());
                    Decision::Denied {
                        step: "registry",
                        rule: Some("quarantined".into()),
                    }
                }
                // A pinned session's call refused by its run snapshot.
                (None, Error::Snapshot(refusal)) => Decision::Denied {
                    step: "snapshot",
                    rule: Some(
                        match refusal.as_ref() {
                            crate::snapshot::Refusal::Expired { .. } => "expired",
                            crate::snapshot::Refusal::Incompatible { .. } => "incompatible",
                            crate::snapshot::Refusal::Removed { .. } => "removed",
                        }
                        .into(),
                    ),
                },
                (None, _) => Decision::Invalid,
            };
            let rpc = error.to_rpc(ctx.era);
            record.error = Some(ErrorInfo::new(rpc.code, &rpc.message));
            self.submit(slot, record).await
        })
    }

    fn background(&self, shutdown: CancellationToken) -> Option<BackgroundTask> {
        self.log
            .take_writer(shutdown)
            .map(|task| Box::pin(task) as BackgroundTask)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use switchboard_config::{AuditSettings, SigningSeed};
    use switchboard_protocol::Era;

    use super::*;
    use crate::audit::store::Snapshot;
    use crate::db::Db;

    #[test]
    fn outcomes_are_told_apart() {
        let value = |v: Value| Ok(Reply::Value(v));
        let cases: Vec<(Result<Reply, Error>, Decision, Option<Outcome>)> = vec![
            (
                value(json!({"content": []})),
                Decision::Allowed,
                Some(Outcome::Ok),
            ),
            (
                value(json!({"content": [], "isError": true})),
                Decision::Allowed,
                Some(Outcome::ToolError),
            ),
            (
                value(json!({"resultType": "input_required"})),
                Decision::Allowed,
                Some(Outcome::InputRequired),
            ),
            (
                Err(Error::denied("rules", "no")),
                Decision::Denied {
                    step: "rules",
                    rule: None,
                },
                None,
            ),
            (
                Err(Error::limited(
                    "limits",
                    "slow",
                    Some(std::time::Duration::from_secs(1)),
                )),
                Decision::RateLimited { rule: None },
                None,
            ),
            (
                Err(Error::Cancelled),
                Decision::Allowed,
                Some(Outcome::Cancelled),
            ),
            (
                Err(Error::Rpc(RpcError::new(gateway::UPSTREAM_TIMEOUT, "late"))),
                Decision::Allowed,
                Some(Outcome::Timeout),
            ),
            (
                Err(Error::Rpc(RpcError::new(-32603, "boom"))),
                Decision::Allowed,
                Some(Outcome::UpstreamError),
            ),
            (
                Err(Error::invalid_params("bad")),
                Decision::Allowed,
                Some(Outcome::Rejected),
            ),
        ];
        for (outcome, decision, ended) in cases {
            let (got_decision, got_ended, error) = classify(&outcome, Era::Modern);
            assert_eq!(
                (&got_decision, got_ended),
                (&decision, ended),
                "{decision:?}"
            );
            assert_eq!(error.is_some(), outcome.is_err());
        }
    }

    #[tokio::test]
    async fn a_call_dropped_between_before_and_after_is_recorded_as_cancelled() {
        let db = Arc::new(Db::memory());
        let settings = AuditSettings {
            key: switchboard_config::AuditKey::Inline(SigningSeed([3; 32])),
            ..AuditSettings::default()
        };
        let log = Log::open(&settings, &db, &crate::metrics::Metrics::default()).unwrap();
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(log.take_writer(shutdown.clone()).unwrap());
        let slot = log.reserve().await.unwrap();
        let ticket = Ticket {
            log: log.clone(),
            pending: Some((
                slot,
                Record {
                    principal: "p".into(),
                    method: "tools/call".into(),
                    face: "http",
                    ..Record::default()
                },
            )),
            started: Instant::now(),
        };
        drop(ticket);
        shutdown.cancel();
        writer.await.unwrap();
        let snapshot = Snapshot::of(db.database()).unwrap();
        let lines = snapshot.last(5).unwrap();
        assert_eq!(lines.len(), 1);
        let record: Value = serde_json::from_slice(&lines[0].1).unwrap();
        assert_eq!(record["outcome"], "cancelled");
        assert_eq!(record["decision"], "allowed");
    }
}
