//! Forwarding one call upstream and bridging what the two eras do differently while it is
//! in flight:
//!
//! | upstream asks for input by…        | legacy client                   | modern client                         |
//! |------------------------------------|---------------------------------|---------------------------------------|
//! | a server→client request (legacy)   | relayed with our id, answered   | call parked; `input_required` + sealed `requestState`; the retry resumes it |
//! | `input_required` (modern MRTR)     | each input request relayed to the client, then the upstream call retried | passed through, `requestState` wrapped and sealed |
//!
//! Sealed state binds the principal and expires; a parked call is dropped (and cancelled
//! upstream) when its deadline passes without a retry.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Map, Value, json};
use switchboard_protocol::error::gateway as codes;
use switchboard_protocol::{Era, Message, RpcError, meta};
use switchboard_upstream::{CallError, CallEvent, CallOptions, ServerRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::gateway::{ClientCtx, Gateway, PeerRequest};
use crate::roster::now_ms;
use crate::server::{CallGuard, Lease};

/// How long a client has to answer an `input_required` result.
const PARK_TTL: Duration = Duration::from_secs(300);
/// Rounds of `input_required` a legacy client is walked through before giving up.
const MAX_INPUT_ROUNDS: usize = 16;

/// An upstream call in flight, owned by whoever drives it.
pub(crate) struct Flight {
    server: String,
    work: Work,
    events: mpsc::Receiver<CallEvent>,
    cancel: CancellationToken,
}

type CallFuture = Pin<Box<dyn Future<Output = Result<Value, CallError>> + Send>>;

/// Where a flight's upstream call runs. It runs inside the future that drives the flight
/// (no task per call); only a flight that must go on without a driver — parked for a
/// modern client's input, or abandoned and finishing its cancellation — gets a task.
enum Work {
    Driven(CallFuture),
    Detached(oneshot::Receiver<Result<Value, CallError>>),
    Done,
}

impl Work {
    /// The call's outcome; cancel-safe (dropping it leaves the call where it was).
    async fn outcome(&mut self) -> Result<Value, CallError> {
        let outcome = match self {
            Work::Driven(call) => call.as_mut().await,
            Work::Detached(result) => result
                .await
                .unwrap_or(Err(CallError::Closed("call task ended".into()))),
            Work::Done => std::future::pending().await,
        };
        *self = Work::Done;
        outcome
    }

    /// Moves a call nobody will drive into a task of its own.
    fn detach(&mut self) {
        if !matches!(self, Work::Driven(_)) {
            return;
        }
        let Work::Driven(call) = std::mem::replace(self, Work::Done) else {
            unreachable!("checked above")
        };
        let (result_tx, result_rx) = oneshot::channel();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // Owned by the result channel: ends when the upstream call does.
            runtime.spawn(async move {
                let _ = result_tx.send(call.await);
            });
        }
        *self = Work::Detached(result_rx);
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // Nobody will read the answer any more: stop the upstream work, and let a call that
        // was driven here finish its cancellation (the upstream hears it) on its own.
        self.cancel.cancel();
        self.work.detach();
    }
}

/// Time and attempts a call may use.
pub(crate) struct Budget {
    timeout: Duration,
    reset_on_progress: bool,
    max_total: Option<Duration>,
    attempts: u32,
}

impl Gateway {
    /// The timeout and retry budget of one call: the tool's own settings, else the
    /// server's; retries only for what is safe to repeat (configured per tool, or a
    /// read-only hint from a server trusted with `trust_annotations`).
    fn call_budget(&self, server: &crate::server::Server, method: &str, tool: &str) -> Budget {
        let policy = server.policy();
        let tool_policy = (method == "tools/call")
            .then(|| policy.tools.get(tool))
            .flatten();
        let read_only = match method {
            "tools/call" => {
                policy.trust_annotations
                    && server.lists().tools.iter().any(|t| {
                        t.get("name").and_then(Value::as_str) == Some(tool)
                            && t.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true))
                    })
            }
            "resources/read" | "prompts/get" | "completion/complete" => true,
            _ => false,
        };
        let attempts = tool_policy.and_then(|p| p.retries).unwrap_or(if read_only {
            policy.read_only_retries
        } else {
            1
        });
        Budget {
            timeout: tool_policy
                .and_then(|p| p.timeout)
                .unwrap_or(server.request_timeout),
            reset_on_progress: policy.timeout_reset_on_progress,
            max_total: policy.max_total_timeout,
            attempts,
        }
    }
}

/// How driving a flight ended.
enum Driven {
    /// The upstream's answer (which may itself be a modern `input_required`).
    Answer(Value),
    /// The flight was parked for a modern client: our own `input_required`.
    Parked(Value),
}

/// A flight waiting for a modern client to supply input.
pub(crate) struct Parked {
    flight: Flight,
    principal: String,
    waiting: HashMap<String, oneshot::Sender<Result<Value, RpcError>>>,
}

/// What the caller-facing side needs to know about one forwarded request.
pub(crate) struct Forward<'a> {
    pub(crate) server: &'a str,
    pub(crate) method: &'a str,
    pub(crate) params: Value,
    pub(crate) headers: Vec<(String, String)>,
}

impl Gateway {
    /// Forwards a call (tools/call, prompts/get, resources/read, or any simple request)
    /// and bridges server→client interaction across eras.
    pub(crate) async fn forward(
        &self,
        ctx: &ClientCtx,
        mut call: Forward<'_>,
    ) -> Result<Value, Error> {
        // A modern client retrying after `input_required`: resume what its state names.
        let presented = call
            .params
            .as_object_mut()
            .and_then(|p| p.remove("requestState"));
        let mut upstream_state = None;
        if let Some(state) = presented {
            let state = state
                .as_str()
                .ok_or_else(|| Error::StateRejected("it must be a string".into()))?;
            let opened = self
                .inner
                .sealer
                .open(state, now_ms())
                .map_err(|e| Error::StateRejected(e.to_string()))?;
            if opened.get("p").and_then(Value::as_str) != Some(ctx.principal.binding()) {
                return Err(Error::StateRejected("issued to another client".into()));
            }
            match opened.get("k").and_then(Value::as_str) {
                Some("flight") => {
                    let id = opened.get("id").and_then(Value::as_str).unwrap_or_default();
                    let responses = call
                        .params
                        .get("inputResponses")
                        .cloned()
                        .unwrap_or_else(|| json!({}));
                    return self.resume(ctx, id, responses).await;
                }
                Some("wrap") => {
                    if opened.get("s").and_then(Value::as_str) != Some(call.server) {
                        return Err(Error::StateRejected("issued for another server".into()));
                    }
                    upstream_state = opened.get("rs").filter(|s| s.is_string()).cloned();
                }
                _ => {
                    return Err(Error::StateRejected("unknown kind".into()));
                }
            }
        }
        if let (Some(state), Some(object)) = (upstream_state, call.params.as_object_mut()) {
            object.insert("requestState".into(), state);
        }
        // The guard counts this call against the server until it ends, so a reload or a
        // removal drains it instead of cutting it off.
        let (server, guard) = self
            .server_for_call(call.server)
            .ok_or_else(|| Error::invalid_params(format!("unknown server `{}`", call.server)))?;
        meta::strip_protocol_fields(&mut call.params);
        let progress_token = meta::progress_token(Some(&call.params)).cloned();
        if progress_token.is_some()
            && let Some(meta) = call.params.get_mut("_meta").and_then(Value::as_object_mut)
        {
            meta.remove(meta::PROGRESS_TOKEN);
        }
        let tool = match call.method {
            "tools/call" => call
                .params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            other => other.to_owned(),
        };
        let budget = self.call_budget(&server, call.method, &tool);
        let mut rounds = 0;
        let mut attempt = 1;
        loop {
            let lease = server
                .acquire(&self.inner.era_cache, server.borrower_for(&ctx.principal))
                .await?;
            let flight = launch(
                lease,
                guard.clone(),
                &tool,
                call.server,
                call.method,
                call.params.clone(),
                ctx,
                progress_token.clone(),
                &call.headers,
                &budget,
                self.inner.telemetry.as_deref(),
            );
            let driven = match self.drive(ctx, flight).await {
                Err(error)
                    if error.is_retryable()
                        && attempt < budget.attempts
                        && !ctx.cancel.is_cancelled() =>
                {
                    // Safe to repeat (configured, or a trusted read-only hint): back off, retry.
                    let policy = server.policy();
                    let delay = crate::server::backoff_delay(
                        policy.retry_backoff,
                        policy.retry_backoff_max,
                        attempt,
                    );
                    tracing::info!(server = %server.name, tool, attempt, delay_ms = delay.as_millis() as u64, %error, "retrying");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    continue;
                }
                other => other.map_err(|error| error_for_client(ctx, call.method, error))?,
            };
            let result = match driven {
                Driven::Answer(result) => result,
                Driven::Parked(input_required) => return Ok(input_required),
            };
            if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
                return Ok(result);
            }
            // A modern upstream asked for input.
            match ctx.era {
                Era::Modern => return Ok(self.wrap_input_required(ctx, call.server, result)),
                Era::Legacy => {
                    rounds += 1;
                    if rounds > MAX_INPUT_ROUNDS {
                        return Err(Error::UpstreamProtocol(
                            "upstream kept asking for input".into(),
                        ));
                    }
                    let responses = self.fulfil_for_legacy(ctx, &result).await?;
                    let object = call.params.as_object_mut().expect("params are an object");
                    object.insert("inputResponses".into(), responses);
                    match result.get("requestState") {
                        Some(state) => object.insert("requestState".into(), state.clone()),
                        None => object.remove("requestState"),
                    };
                }
            }
        }
    }

    /// Waits for a flight's answer, relaying its notifications, bridging its server→client
    /// requests, and propagating the client's cancellation.
    async fn drive(&self, ctx: &ClientCtx, mut flight: Flight) -> Result<Driven, Error> {
        loop {
            tokio::select! {
                outcome = flight.work.outcome() => {
                    // Notifications sent before the answer are delivered before it.
                    while let Ok(CallEvent::Notification { method, params }) = flight.events.try_recv() {
                        if let Some(notify) = &ctx.notify {
                            let _ = notify.try_send(Message::notification(method, params));
                        }
                    }
                    return outcome
                        .map(Driven::Answer)
                        .map_err(|e| Error::Rpc(e.to_rpc_error(&flight.server)));
                }
                event = flight.events.recv() => match event {
                    Some(CallEvent::Notification { method, params }) => {
                        if let Some(notify) = &ctx.notify {
                            let _ = notify.try_send(Message::notification(method, params));
                        }
                    }
                    Some(CallEvent::Request(request)) => match ctx.era {
                        Era::Legacy => self.relay_to_peer(ctx, &flight.server, request),
                        Era::Modern => {
                            if let Err(request) = check_capability(ctx, request) {
                                return Ok(Driven::Parked(self.park(ctx, flight, request)));
                            }
                        }
                    },
                    None => {}
                },
                () = ctx.cancel.cancelled() => {
                    flight.cancel.cancel();
                    return Err(Error::Cancelled);
                }
            }
        }
    }

    /// Parks a flight for a modern client and returns `input_required`.
    fn park(&self, ctx: &ClientCtx, mut flight: Flight, request: ServerRequest) -> Value {
        // Nobody drives it until the client retries: the call goes on in a task.
        flight.work.detach();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let key = format!("{}-1", request.method.replace('/', "-"));
        let input_request = json!({ "method": request.method, "params": request.params.clone().unwrap_or_else(|| json!({})) });
        let mut waiting = HashMap::new();
        waiting.insert(key.clone(), request.reply);
        self.inner.parked.lock().insert(
            id.clone(),
            Parked {
                flight,
                principal: ctx.principal.binding().to_owned(),
                waiting,
            },
        );
        // The deadline owns the parked flight: no retry in time, and it is dropped.
        let gateway = self.clone();
        let expiring = id.clone();
        self.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(PARK_TTL) => {}
                () = gateway.inner.shutdown.cancelled() => {}
            }
            gateway.inner.parked.lock().remove(&expiring);
        });
        let state = self.inner.sealer.seal(
            &json!({ "k": "flight", "id": id, "p": ctx.principal.binding() }),
            now_ms() + PARK_TTL.as_millis() as u64,
        );
        let mut input_requests = Map::new();
        input_requests.insert(key, input_request);
        json!({ "resultType": "input_required", "inputRequests": input_requests, "requestState": state })
    }

    /// Resumes a parked flight with the client's input responses.
    async fn resume(&self, ctx: &ClientCtx, id: &str, responses: Value) -> Result<Value, Error> {
        let parked = self
            .inner
            .parked
            .lock()
            .remove(id)
            .ok_or_else(|| Error::StateRejected("the call it resumes has expired".into()))?;
        if parked.principal != ctx.principal.binding() {
            return Err(Error::StateRejected("issued to another client".into()));
        }
        for (key, reply) in parked.waiting {
            let outcome = match responses.get(&key) {
                Some(response) => Ok(response.clone()),
                None => Err(RpcError::new(
                    -32600,
                    format!("client did not provide input `{key}`"),
                )),
            };
            let _ = reply.send(outcome);
        }
        match self.drive(ctx, parked.flight).await? {
            Driven::Answer(result) | Driven::Parked(result) => Ok(result),
        }
    }

    /// Rewrites a modern upstream's `input_required` for a modern client: the upstream's
    /// state travels sealed inside ours, bound to the server and the client.
    fn wrap_input_required(&self, ctx: &ClientCtx, server: &str, mut result: Value) -> Value {
        let inner_state = result.get("requestState").cloned();
        let state = self.inner.sealer.seal(
            &json!({ "k": "wrap", "s": server, "rs": inner_state, "p": ctx.principal.binding() }),
            now_ms() + PARK_TTL.as_millis() as u64,
        );
        result["requestState"] = Value::String(state);
        result
    }

    /// Walks a legacy client through a modern upstream's input requests.
    async fn fulfil_for_legacy(&self, ctx: &ClientCtx, result: &Value) -> Result<Value, Error> {
        let mut responses = Map::new();
        let Some(requests) = result.get("inputRequests").and_then(Value::as_object) else {
            return Ok(Value::Object(responses));
        };
        for (key, request) in requests {
            let method = request
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let params = request.get("params").cloned();
            let answer = ask_peer(ctx, method, params).await?;
            responses.insert(key.clone(), answer);
        }
        Ok(Value::Object(responses))
    }
}

/// An upstream error in the client's era. 2026-07-28 server/resources: "Resource not
/// found" is -32602 where earlier revisions (and so legacy upstreams) used -32002.
pub(crate) fn error_for_client(ctx: &ClientCtx, method: &str, error: Error) -> Error {
    match error {
        Error::Rpc(mut error)
            if ctx.era == Era::Modern
                && method == "resources/read"
                && error.code == switchboard_protocol::error::RESOURCE_NOT_FOUND =>
        {
            error.code = switchboard_protocol::error::INVALID_PARAMS;
            Error::Rpc(error)
        }
        other => other,
    }
}

/// Starts the upstream call in its own task, so it can outlive the client request that
/// started it (a parked flight) while staying owned by the returned [`Flight`].
#[allow(clippy::too_many_arguments)]
fn launch(
    lease: Lease,
    guard: std::sync::Arc<CallGuard>,
    tool: &str,
    server: &str,
    method: &str,
    mut params: Value,
    ctx: &ClientCtx,
    progress_token: Option<Value>,
    headers: &[(String, String)],
    budget: &Budget,
    telemetry: Option<&crate::telemetry::Telemetry>,
) -> Flight {
    let (events_tx, events_rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let mut options = CallOptions::new(budget.timeout);
    options.reset_timeout_on_progress = budget.reset_on_progress;
    options.max_total_timeout = budget.max_total;
    options.cancel = cancel.clone();
    options.events = Some(events_tx);
    options.progress_token = progress_token;
    options.headers = headers.to_vec();
    // Traced: the upstream call's span, a child of the ambient step or request span; its
    // context travels to the server in `_meta` (and headers for HTTP upstreams). None for
    // an unsampled request that continues no trace: the params go up untouched.
    let span = telemetry.and_then(|telemetry| {
        let upstream = &lease.upstream;
        let call = crate::telemetry::UpstreamCall {
            server,
            tool,
            method,
            era: upstream.era().as_str(),
            transport: upstream.transport(),
            instance: lease.instance_id(),
        };
        telemetry.upstream(call, &mut params, &mut options.headers)
    });
    options.client_capabilities = Some(ctx.capabilities.clone());
    options.client_info = ctx.client_info.clone();
    options.caller = Some(ctx.principal.session().to_owned());
    let method = method.to_owned();
    let tool = tool.to_owned();
    // The call owns the lease: a parked flight still holds its instance, permit and
    // in-flight count until the upstream answers or the flight is dropped.
    let call = Box::pin(async move {
        let _counted = guard; // one logical call, however many flights it takes
        let started = std::time::Instant::now();
        let outcome = lease.upstream.request(&method, Some(params), options).await;
        if let Some(span) = &span {
            crate::telemetry::end_upstream(span, &outcome);
        }
        lease.finish(&tool, &outcome, started.elapsed());
        outcome
    });
    Flight {
        server: server.to_owned(),
        work: Work::Driven(call),
        events: events_rx,
        cancel,
    }
}

/// The client capability a server→client method needs.
fn required_capability(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// Refuses (answering the upstream) a request the client cannot serve; hands back the
/// ones it can.
fn check_capability(ctx: &ClientCtx, request: ServerRequest) -> Result<(), ServerRequest> {
    match required_capability(&request.method) {
        Some(capability) if ctx.has_capability(capability) => Err(request),
        Some(capability) => {
            let error = RpcError::method_not_found(&request.method)
                .with_data(json!({ "reason": format!("the client did not declare the `{capability}` capability") }));
            let _ = request.reply.send(Err(error));
            Ok(())
        }
        None => {
            let _ = request
                .reply
                .send(Err(RpcError::method_not_found(&request.method)));
            Ok(())
        }
    }
}

/// Relays a server→client request to a legacy client without blocking the flight.
impl Gateway {
    /// Hands a server→client request to the calling legacy client. A `roots/list` that
    /// outlives its call (a legacy server asks on its own schedule, and the gateway can only
    /// guess the call it belongs to), whether the call was cancelled or completed first, is
    /// answered with the roots of every reachable client, as an unowned one would be (of
    /// the caller's tenant's clients, on a `per_tenant` server).
    fn relay_to_peer(&self, ctx: &ClientCtx, server: &str, request: ServerRequest) {
        let Err(request) = check_capability(ctx, request) else {
            return;
        };
        let tenant = self
            .server(server)
            .and_then(|server| server.borrower_for(&ctx.principal).tenant().cloned());
        let ctx = ctx.clone();
        let gateway = self.clone();
        tokio::spawn(async move {
            let roots = request.method == "roots/list";
            let outcome = match ask_peer(&ctx, request.method, request.params).await {
                Err(error) if roots && error.code == codes::UPSTREAM_UNAVAILABLE => {
                    gateway.union_of_roots(tenant.as_ref()).await
                }
                outcome => outcome,
            };
            let _ = request.reply.send(outcome);
        });
    }
}

pub(crate) async fn ask_peer(
    ctx: &ClientCtx,
    method: String,
    params: Option<Value>,
) -> Result<Value, RpcError> {
    if let Some(capability) = required_capability(&method)
        && !ctx.has_capability(capability)
    {
        return Err(RpcError::new(
            codes::NOT_BRIDGEABLE,
            format!("the server needs `{capability}`, which the client did not declare"),
        ));
    }
    let peer = ctx.peer.as_ref().ok_or_else(|| {
        RpcError::new(
            codes::NOT_BRIDGEABLE,
            format!("the client cannot answer {method}"),
        )
    })?;
    let (reply_tx, reply_rx) = oneshot::channel();
    peer.send(PeerRequest {
        method,
        params,
        reply: reply_tx,
    })
    .await
    .map_err(|_| RpcError::new(codes::UPSTREAM_UNAVAILABLE, "client went away"))?;
    tokio::select! {
        reply = reply_rx => reply.unwrap_or_else(|_| Err(RpcError::new(codes::UPSTREAM_UNAVAILABLE, "client went away"))),
        () = ctx.cancel.cancelled() => Err(RpcError::new(codes::UPSTREAM_UNAVAILABLE, "request cancelled")),
    }
}
