//! `approval`: approval gates (`[approvals]`). A tool call the policy marks waits for a
//! person's yes before anything runs upstream, and the yes covers exactly that call: an
//! approval is bound to `{principal, server, tool, digest of the canonical arguments,
//! policy version}`, expires, and is used once (`binding`, `store`).
//!
//! Channels, chosen by the rule and by what the client can do:
//!
//! | approver | client | channel |
//! |---|---|---|
//! | caller | modern, declared `elicitation` | `input_required` (MRTR) with an elicitation form; the retry carries the answer |
//! | caller | legacy, declared `elicitation` | `elicitation/create` sent to the client during the call |
//! | caller | neither | out of band, as for an admin |
//! | admin | any | out of band: pending in `/admin/approvals`, announced to the webhook; the call waits up to `wait_ms`, then fails with the approval id; a retry with `_meta["dev.switchboard/approval"]` = id goes through once approved |
//!
//! An approved call whose upstream itself asks for input (a modern `input_required`, or a
//! legacy server's request parked for a modern client) is continued by the client's retry
//! with the bridge's sealed `requestState`: that retry is the same approved call, so the
//! step keeps a single-use grant for exactly that state and binding (`Continuations`) and
//! lets it pass without asking again.
//!
//! Step order 6 (after validation, before the result cache and redaction): the arguments a
//! person approves are the ones that were checked, and nothing after it forwards earlier.
//! Every request (pending), decision (approved or denied, by whom) and expiry is in the
//! audit log: the call's own record carries its decision through `call.notes`, and what
//! happens outside a call (an administrator's decision, an expiry) is appended through
//! [`crate::audit::Log::append`].

pub mod binding;
pub mod policy;
pub mod store;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use switchboard_config::{ApprovalSettings, Approver};
use switchboard_protocol::Era;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::binding::Binding;
use self::policy::{Need, Policy};
use self::store::{Channel, Entry, State, Store, StoreError, UseError};
use super::{BackgroundTask, Call, Flow, Hooks, Step, StepFuture, Target};
use crate::audit::time::{format_ms, now_ms};
use crate::audit::{Decision, Log, Record};
use crate::db::Db;
use crate::error::Error;
use crate::reply::Reply;

/// The `_meta` key a retry names its out-of-band approval with.
pub const META_KEY: &str = "dev.switchboard/approval";
/// Our `requestState` for an in-band (MRTR) approval: this prefix and the approval id.
const STATE_PREFIX: &str = "switchboard-approval:";
/// The key of the approval's input request in `inputRequests` / `inputResponses`.
const INPUT_KEY: &str = "switchboard_approval";
/// Largest argument text kept for approvers to see (the digest covers all of it).
const MAX_SHOWN_ARGUMENTS: usize = 16 * 1024;
/// How often expired approvals are swept, at most.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// How long an approved call's continuation grant lives (the bridge's parked-call TTL).
const CONTINUATION_TTL_MS: u64 = 300_000;
/// Continuation grants kept at most; over it, a continuation asks for approval again.
const MAX_CONTINUATIONS: usize = 4096;

/// Single-use grants for the retries of approved calls that came back `input_required`,
/// keyed by the SHA-256 of the `requestState` the client must present.
#[derive(Default)]
struct Continuations(Mutex<HashMap<[u8; 32], Continuation>>);

struct Continuation {
    binding: Binding,
    approval: String,
    by: String,
    expires_ms: u64,
}

impl Continuations {
    fn grant(&self, state: &str, continuation: Continuation) {
        let mut grants = self.0.lock();
        if grants.len() >= MAX_CONTINUATIONS {
            let now = now_ms();
            grants.retain(|_, grant| grant.expires_ms > now);
        }
        if grants.len() >= MAX_CONTINUATIONS {
            tracing::warn!(approval = %continuation.approval, "too many approved calls waiting for input: this one's retry will ask for approval again");
            return;
        }
        grants.insert(state_key(state), continuation);
    }

    /// Takes the grant for `state` if it covers `binding` (once).
    fn take(&self, state: &str, binding: &Binding) -> Option<Continuation> {
        let key = state_key(state);
        let mut grants = self.0.lock();
        let grant = grants.get(&key)?;
        if grant.expires_ms <= now_ms() || grant.binding.mismatch(binding).is_some() {
            return None;
        }
        grants.remove(&key)
    }
}

fn state_key(state: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(state.as_bytes()).into()
}

/// The approvals' shared state: policy, store, waiting calls, audit log, webhook. One per
/// gateway (built at start; `[approvals]` changes apply at restart); the admin API reaches
/// it through `Gateway::approvals`.
pub struct Desk {
    settings: ApprovalSettings,
    policy: Policy,
    store: Store,
    log: Option<Log>,
    /// Calls waiting out of band for a decision, by approval id.
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    announcer: Option<webhook::Announcer>,
    sender: Mutex<Option<webhook::Sender>>,
    continuations: Continuations,
}

/// Why an administrator's decision was not taken.
#[derive(Debug)]
pub struct DecideError(pub UseError);

impl Desk {
    pub fn new(settings: &ApprovalSettings, db: Arc<Db>, log: Option<Log>) -> Arc<Desk> {
        let (announcer, sender) = match &settings.webhook {
            Some(url) => {
                let (announcer, sender) = webhook::channel(url.clone(), settings.webhook_timeout);
                (Some(announcer), Some(sender))
            }
            None => (None, None),
        };
        Arc::new(Desk {
            settings: settings.clone(),
            policy: Policy::new(&settings.rules),
            store: Store::new(db),
            log,
            waiting: Mutex::new(HashMap::new()),
            announcer,
            sender: Mutex::new(sender),
            continuations: Continuations::default(),
        })
    }

    /// The policy's version (part of every binding).
    pub fn policy_version(&self) -> &str {
        self.policy.version()
    }

    /// Every approval kept, oldest first, as the admin API shows them (expired ones stay
    /// listed for one more expiry period).
    pub fn list(&self) -> Result<Vec<Value>, UseError> {
        let now = now_ms();
        Ok(self
            .store
            .list()?
            .iter()
            .map(|entry| {
                let mut value = describe(entry);
                if entry.is_expired(now) {
                    value["state"] = json!("expired");
                }
                value
            })
            .collect())
    }

    /// How many approvals are kept in each state (an expired one as `expired`), every
    /// state listed, for the `switchboard_approvals` gauge read at scrape time (one read
    /// transaction over at most `max_approvals` entries).
    pub fn counts(&self) -> Result<[(&'static str, i64); 5], StoreError> {
        let now = now_ms();
        let mut counts = [
            ("pending", 0),
            ("approved", 0),
            ("denied", 0),
            ("used", 0),
            ("expired", 0),
        ];
        for entry in self.store.list()? {
            let label = if entry.is_expired(now) {
                "expired"
            } else {
                entry.state.label()
            };
            if let Some((_, count)) = counts.iter_mut().find(|(known, _)| *known == label) {
                *count += 1;
            }
        }
        Ok(counts)
    }

    /// An administrator's decision (`by`: who). Wakes the call waiting for it, if any, and
    /// audits the decision.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<String>,
    ) -> Result<Value, DecideError> {
        let (owned, by_owned) = (id.to_owned(), by.to_owned());
        let entry = self
            .store
            .blocking(move |store| store.decide(&owned, approve, &by_owned, reason, now_ms()))
            .await
            .map_err(DecideError)?;
        if let Some(waiter) = self.waiting.lock().get(id) {
            waiter.notify_one();
        }
        let decision = match &entry.state {
            State::Approved { by } => Decision::Approved {
                approval: entry.id.clone(),
                by: by.clone(),
            },
            State::Denied { by, reason } => Decision::DeniedBy {
                approval: Some(entry.id.clone()),
                by: by.clone(),
                reason: reason.clone(),
            },
            _ => unreachable!("a decision approves or denies"),
        };
        tracing::info!(approval = %entry.id, by, approve, tool = %entry.binding.tool, "approval decided");
        self.audit(&entry, decision, "admin").await;
        Ok(describe(&entry))
    }

    /// Appends a record of `entry` outside any call's hooks; a log that will not take it
    /// is logged (the decision itself stands).
    async fn audit(&self, entry: &Entry, decision: Decision, face: &'static str) {
        let Some(log) = &self.log else {
            return;
        };
        let record = Record {
            time_ms: now_ms(),
            principal: entry.caller.clone(),
            tenant: entry.tenant.clone(),
            session: String::new(),
            face,
            method: "tools/call".into(),
            server: Some(entry.binding.server.clone()),
            tool: Some(entry.binding.tool.clone()),
            decision,
            arguments_sha256: unhex(&entry.binding.arguments_sha256),
            ..Record::default()
        };
        if let Err(error) = log.append(record).await {
            tracing::error!(approval = %entry.id, %error, "approval not audited");
        }
    }

    /// Removes expired approvals and audits those that were never used.
    async fn expire(&self, expired: Vec<Entry>) {
        for entry in expired {
            if matches!(entry.state, State::Pending | State::Approved { .. }) {
                tracing::info!(approval = %entry.id, tool = %entry.binding.tool, "approval expired");
                self.audit(
                    &entry,
                    Decision::Expired {
                        approval: entry.id.clone(),
                    },
                    "gateway",
                )
                .await;
            }
        }
    }

    async fn sweep_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let every =
            (self.settings.expiry / 2).clamp(Duration::from_millis(250), MAX_SWEEP_INTERVAL);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
            let keep = self.settings.expiry.as_millis() as u64;
            match self
                .store
                .blocking(move |store| store.sweep(now_ms(), keep))
                .await
            {
                Ok(expired) => self.expire(expired).await,
                Err(error) => tracing::warn!(%error, "sweeping expired approvals failed"),
            }
        }
    }

    /// A new approval for `call`, stored before anyone can decide it.
    async fn open(
        &self,
        call: &Call<'_>,
        binding: &Binding,
        need: &Need,
        channel: Channel,
    ) -> Result<Entry, Error> {
        let now = now_ms();
        let entry = Entry {
            id: uuid::Uuid::new_v4().simple().to_string(),
            binding: binding.clone(),
            caller: call.ctx.principal.id().to_owned(),
            tenant: call.ctx.principal.tenant().map(str::to_owned),
            arguments: shown_arguments(call.arguments()),
            rule: need.rule.clone(),
            channel,
            state: State::Pending,
            created_ms: now,
            expires_ms: now.saturating_add(self.settings.expiry.as_millis() as u64),
        };
        let (created, max) = (entry.clone(), self.settings.max_approvals);
        let expired = match self
            .store
            .blocking(move |store| store.create(&created, max, now))
            .await
        {
            Ok(expired) => expired,
            Err(error) => {
                call.notes.decide(Decision::Denied {
                    step: "approval",
                    rule: Some(error.status().into()),
                });
                return Err(refusal(&error, None, &binding.tool));
            }
        };
        self.expire(expired).await;
        self.audit(
            &entry,
            Decision::Pending {
                approval: entry.id.clone(),
            },
            call.ctx.principal.face().as_str(),
        )
        .await;
        Ok(entry)
    }

    /// Uses an approval the call names (out-of-band retry, or an in-band answer).
    fn used(call: &Call<'_>, entry: &Entry) -> Flow {
        let by = match &entry.state {
            State::Used { by } => by.clone(),
            _ => String::new(),
        };
        call.notes.decide(Decision::Approved {
            approval: entry.id.clone(),
            by,
        });
        Flow::Continue
    }

    fn refuse(call: &Call<'_>, error: &UseError, id: &str, tool: &str) -> Error {
        call.notes.decide(match error {
            UseError::Denied { by, reason } => Decision::DeniedBy {
                approval: Some(id.to_owned()),
                by: by.clone(),
                reason: reason.clone(),
            },
            UseError::Pending => Decision::Pending {
                approval: id.to_owned(),
            },
            other => Decision::Denied {
                step: "approval",
                rule: Some(match other {
                    UseError::Mismatch(mismatch) => format!("mismatch:{}", mismatch.label()),
                    other => other.status().to_owned(),
                }),
            },
        });
        refusal(error, Some(id), tool)
    }

    /// Out of band: announce, wait up to `wait_ms` for a decision, then go on, refuse, or
    /// hand the client the id to retry with.
    async fn wait(&self, call: &Call<'_>, entry: Entry) -> Result<Flow, Error> {
        let notify = Arc::new(Notify::new());
        self.waiting.lock().insert(entry.id.clone(), notify.clone());
        if let Some(announcer) = &self.announcer {
            let mut body = describe(&entry);
            body["event"] = json!("approval.pending");
            announcer.announce(body);
        }
        let cancelled = tokio::select! {
            () = notify.notified() => false,
            () = tokio::time::sleep(self.settings.wait) => false,
            () = call.ctx.cancel.cancelled() => true,
        };
        self.waiting.lock().remove(&entry.id);
        if cancelled {
            // The approval stays pending; the client may retry with its id.
            return Err(Error::Cancelled);
        }
        let (id, binding) = (entry.id.clone(), entry.binding.clone());
        match self
            .store
            .blocking(move |store| store.consume(&id, &binding, now_ms()))
            .await
        {
            Ok(used) => Ok(Desk::used(call, &used)),
            Err(error) => Err(Desk::refuse(call, &error, &entry.id, &entry.binding.tool)),
        }
    }

    /// In band, legacy: ask the calling user with `elicitation/create`, bounded by
    /// `wait_ms`. A client that cannot answer leaves the approval pending (out of band).
    async fn elicit(&self, call: &Call<'_>, entry: Entry) -> Result<Flow, Error> {
        let params = form(&entry);
        let asked = crate::bridge::ask_peer(call.ctx, "elicitation/create".into(), Some(params));
        let answer = match tokio::time::timeout(self.settings.wait, asked).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                tracing::info!(approval = %entry.id, error = %error.message, "the client did not answer the approval request: left pending");
                let error = UseError::Pending;
                return Err(Desk::refuse(call, &error, &entry.id, &entry.binding.tool));
            }
            Err(_) => {
                let error = UseError::Pending;
                return Err(Desk::refuse(call, &error, &entry.id, &entry.binding.tool));
            }
        };
        let approve = approves(&answer);
        let by = call.ctx.principal.id().to_owned();
        match self
            .store
            .answer(&entry.id, &entry.binding, approve, &by, now_ms())
        {
            Ok(
                used @ Entry {
                    state: State::Used { .. },
                    ..
                },
            ) => Ok(Desk::used(call, &used)),
            Ok(denied) => Err(denial(call, &denied)),
            Err(error) => Err(Desk::refuse(call, &error, &entry.id, &entry.binding.tool)),
        }
    }

    /// In band, modern: `input_required` with the form; the retry carries the answer.
    fn ask_modern(call: &Call<'_>, entry: &Entry) -> Flow {
        call.notes.decide(Decision::Pending {
            approval: entry.id.clone(),
        });
        let mut requests = Map::new();
        requests.insert(
            INPUT_KEY.into(),
            json!({ "method": "elicitation/create", "params": form(entry) }),
        );
        Flow::Respond(Reply::Value(json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": format!("{STATE_PREFIX}{}", entry.id),
        })))
    }

    /// The retry of an in-band (MRTR) approval: the user's answer decides it.
    async fn answered(
        &self,
        call: &Call<'_>,
        id: &str,
        responses: Option<Value>,
        binding: &Binding,
    ) -> Result<Flow, Error> {
        let approve = responses
            .as_ref()
            .and_then(|responses| responses.get(INPUT_KEY))
            .is_some_and(approves);
        let by = call.ctx.principal.id().to_owned();
        let (owned, bound) = (id.to_owned(), binding.clone());
        match self
            .store
            .blocking(move |store| store.answer(&owned, &bound, approve, &by, now_ms()))
            .await
        {
            Ok(
                used @ Entry {
                    state: State::Used { .. },
                    ..
                },
            ) => Ok(Desk::used(call, &used)),
            Ok(denied) => Err(denial(call, &denied)),
            Err(error) => Err(Desk::refuse(call, &error, id, &binding.tool)),
        }
    }

    /// Takes the step's background work (sweeper, webhook sender), once.
    fn background(self: &Arc<Self>, shutdown: CancellationToken) -> BackgroundTask {
        let sender = self.sender.lock().take();
        let sweeper = self.clone().sweep_loop(shutdown.clone());
        Box::pin(async move {
            match sender {
                Some(sender) => {
                    tokio::join!(sweeper, sender.run(shutdown));
                }
                None => sweeper.await,
            }
        })
    }
}

/// A refusal the caller's own answer (or an approver) gave.
fn denial(call: &Call<'_>, entry: &Entry) -> Error {
    let (by, reason) = match &entry.state {
        State::Denied { by, reason } => (by.clone(), reason.clone()),
        _ => (String::new(), None),
    };
    let error = UseError::Denied { by, reason };
    Desk::refuse(call, &error, &entry.id, &entry.binding.tool)
}

/// Whether an elicitation answer approves: `accept`, unless the form's `approve` says no.
fn approves(answer: &Value) -> bool {
    answer.get("action").and_then(Value::as_str) == Some("accept")
        && answer.pointer("/content/approve").and_then(Value::as_bool) != Some(false)
}

/// The elicitation form shown to the user: server, tool and arguments in the message, one
/// boolean to confirm.
fn form(entry: &Entry) -> Value {
    let arguments = serde_json::to_string_pretty(&entry.arguments).unwrap_or_default();
    json!({
        "mode": "form",
        "message": format!(
            "Approve this tool call?\n\nserver: {}\ntool: {}\narguments:\n{}\n\n(approval {}, expires {})",
            entry.binding.server,
            entry.binding.tool,
            arguments,
            entry.id,
            format_ms(entry.expires_ms),
        ),
        "requestedSchema": {
            "type": "object",
            "properties": {
                "approve": {
                    "type": "boolean",
                    "title": "Approve",
                    "description": format!("Run {} with these arguments once", entry.binding.tool),
                    "default": true,
                },
            },
            "required": ["approve"],
        },
    })
}

/// An approval as the admin API and the webhook show it.
fn describe(entry: &Entry) -> Value {
    let mut value = json!({
        "id": entry.id,
        "state": entry.state.label(),
        "principal": entry.caller,
        "server": entry.binding.server,
        "tool": entry.binding.tool,
        "arguments": entry.arguments,
        "arguments_sha256": entry.binding.arguments_sha256,
        "policy_version": entry.binding.policy_version,
        "rule": entry.rule,
        "channel": entry.channel,
        "created": format_ms(entry.created_ms),
        "expires": format_ms(entry.expires_ms),
    });
    if let Some(tenant) = &entry.tenant {
        value["tenant"] = json!(tenant);
    }
    match &entry.state {
        State::Approved { by } | State::Used { by } => value["by"] = json!(by),
        State::Denied { by, reason } => {
            value["by"] = json!(by);
            if let Some(reason) = reason {
                value["reason"] = json!(reason);
            }
        }
        State::Pending | State::Expired => {}
    }
    value
}

/// The arguments approvers see: as given, or a note when they are too large to show.
fn shown_arguments(arguments: Option<&Value>) -> Value {
    let arguments = arguments.cloned().unwrap_or_else(|| json!({}));
    let size = serde_json::to_vec(&arguments).map_or(0, |bytes| bytes.len());
    if size > MAX_SHOWN_ARGUMENTS {
        json!({ "_truncated": format!("{size} bytes of arguments; compare arguments_sha256") })
    } else {
        arguments
    }
}

/// The client's error for an approval that does not let the call run.
fn refusal(error: &UseError, id: Option<&str>, tool: &str) -> Error {
    let reason = match (error, id) {
        (UseError::Pending, Some(id)) => format!(
            "approval required: the call of {tool} is waiting for approval {id}; retry the same call with _meta[\"{META_KEY}\"] = \"{id}\" once it is approved"
        ),
        (UseError::Full(_) | UseError::Store(_), _) => {
            format!("approval required for {tool}, but it cannot be requested now: {error}")
        }
        (_, Some(id)) => format!("approval {id} refused for {tool}: {error}"),
        (_, None) => format!("approval refused for {tool}: {error}"),
    };
    Error::Approval {
        status: error.status(),
        reason,
        approval: id.map(str::to_owned),
        retryable: matches!(
            error,
            UseError::Pending | UseError::Full(_) | UseError::Store(_)
        ),
    }
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// Takes the out-of-band approval id a retry names, from `_meta`.
fn take_named(params: &mut Value) -> Option<String> {
    let meta = params.get_mut("_meta")?.as_object_mut()?;
    let id = meta.remove(META_KEY)?;
    Some(id.as_str().map(str::to_owned).unwrap_or_default())
}

/// Takes our `requestState` (and the input responses) from an MRTR retry; another
/// `requestState` (the upstream's, sealed by the bridge) is left alone.
fn take_answer(params: &mut Value) -> Option<(String, Option<Value>)> {
    let object = params.as_object_mut()?;
    let id = object
        .get("requestState")?
        .as_str()?
        .strip_prefix(STATE_PREFIX)?
        .to_owned();
    object.remove("requestState");
    let responses = object.remove("inputResponses");
    Some((id, responses))
}

/// The pipeline step.
pub struct Approval {
    desk: Arc<Desk>,
}

impl Approval {
    pub fn new(desk: Arc<Desk>) -> Approval {
        Approval { desk }
    }
}

impl Step for Approval {
    fn name(&self) -> &'static str {
        "approval"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BOTH
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        // What needs no approval passes without awaiting anything.
        let need = match (&call.target, call.method) {
            (Target::Upstream(route), "tools/call") => {
                let tool = call
                    .catalog
                    .tool(&route.exposed)
                    .map(|(_, tool)| tool.upstream());
                self.desk
                    .policy
                    .need(&call.ctx.principal, &route.server, &route.exposed, tool)
            }
            _ => None,
        };
        let Some(need) = need else {
            return Box::pin(std::future::ready(Ok(Flow::Continue)));
        };
        Box::pin(async move {
            let desk = &self.desk;
            let Target::Upstream(route) = &call.target else {
                unreachable!("checked above")
            };
            let (server, tool) = (route.server.clone(), route.exposed.clone());
            let named = take_named(&mut call.params);
            let answered = take_answer(&mut call.params);
            let binding = Binding::new(
                call.ctx.principal.binding(),
                &server,
                &tool,
                call.arguments(),
                desk.policy.version(),
            );
            if let Some(id) = named {
                let (owned, bound) = (id.clone(), binding.clone());
                let consumed = desk
                    .store
                    .blocking(move |store| store.consume(&owned, &bound, now_ms()))
                    .await;
                return match consumed {
                    Ok(used) => Ok(Desk::used(call, &used)),
                    Err(error) => Err(Desk::refuse(call, &error, &id, &tool)),
                };
            }
            if let Some((id, responses)) = answered {
                return desk.answered(call, &id, responses, &binding).await;
            }
            // The retry of an approved call its upstream asked input for.
            if let Some(state) = call.params.get("requestState").and_then(Value::as_str)
                && let Some(grant) = desk.continuations.take(state, &binding)
            {
                call.notes.decide(Decision::Approved {
                    approval: grant.approval,
                    by: grant.by,
                });
                return Ok(Flow::Continue);
            }
            let elicits = call.ctx.has_capability("elicitation");
            let channel = match (need.approver, call.ctx.era) {
                (Approver::Caller, Era::Modern) if elicits => Channel::Mrtr,
                (Approver::Caller, Era::Legacy) if elicits && call.ctx.peer.is_some() => {
                    Channel::Elicitation
                }
                _ => Channel::Admin,
            };
            let entry = desk.open(call, &binding, &need, channel).await?;
            match channel {
                Channel::Mrtr => Ok(Desk::ask_modern(call, &entry)),
                Channel::Elicitation => desk.elicit(call, entry).await,
                Channel::Admin => desk.wait(call, entry).await,
            }
        })
    }

    /// An approved call that came back `input_required` (from its upstream): its retry,
    /// with that `requestState`, is the same call and passes once without a new approval.
    fn after<'a>(
        &'a self,
        call: &'a Call<'_>,
        outcome: &'a mut Result<Reply, Error>,
    ) -> StepFuture<'a, ()> {
        // Checked in order of cost: most calls stop at the first test.
        if let Ok(Reply::Value(result)) = &*outcome
            && result.get("resultType").and_then(Value::as_str) == Some("input_required")
            && let Some(state) = result.get("requestState").and_then(Value::as_str)
            && let Some(Decision::Approved { approval, by }) = call.notes.decision()
            && let Target::Upstream(route) = &call.target
        {
            let binding = Binding::new(
                call.ctx.principal.binding(),
                &route.server,
                &route.exposed,
                call.arguments(),
                self.desk.policy.version(),
            );
            self.desk.continuations.grant(
                state,
                Continuation {
                    binding,
                    approval,
                    by,
                    expires_ms: now_ms().saturating_add(CONTINUATION_TTL_MS),
                },
            );
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn background(&self, shutdown: CancellationToken) -> Option<BackgroundTask> {
        Some(self.desk.background(shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_request_state_is_taken_and_others_are_left() {
        let mut params = json!({
            "name": "fx__add",
            "requestState": "switchboard-approval:abc",
            "inputResponses": { INPUT_KEY: { "action": "accept" } },
        });
        let (id, responses) = take_answer(&mut params).unwrap();
        assert_eq!(id, "abc");
        assert!(approves(&responses.unwrap()[INPUT_KEY]));
        assert_eq!(params, json!({ "name": "fx__add" }));

        let mut sealed = json!({ "requestState": "v1.sealed", "inputResponses": {} });
        assert!(take_answer(&mut sealed).is_none());
        assert!(sealed.get("requestState").is_some());

        let mut named = json!({ "_meta": { META_KEY: "id1", "other": 1 } });
        assert_eq!(take_named(&mut named).as_deref(), Some("id1"));
        assert_eq!(named, json!({ "_meta": { "other": 1 } }));
    }

    #[test]
    fn only_an_accept_that_does_not_say_no_approves() {
        assert!(approves(&json!({ "action": "accept" })));
        assert!(approves(
            &json!({ "action": "accept", "content": { "approve": true } })
        ));
        assert!(!approves(
            &json!({ "action": "accept", "content": { "approve": false } })
        ));
        assert!(!approves(&json!({ "action": "decline" })));
        assert!(!approves(&json!({ "action": "cancel" })));
        assert!(!approves(&json!({})));
    }

    #[test]
    fn digests_round_trip_for_audit_records() {
        let digest = binding::arguments_digest(Some(&json!({ "a": 1 })));
        let bytes = unhex(&digest).unwrap();
        assert_eq!(crate::audit::digest::hex(&bytes), digest);
        assert!(unhex("zz").is_none());
    }
}
