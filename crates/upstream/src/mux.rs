//! Request/response multiplexing over one message stream (a child's stdio, or a 2024-11-05
//! SSE stream): ids and progress tokens are ours upstream and mapped back to the caller's,
//! replies are routed by id, and a dead stream fails every waiting caller at once.
//!
//! # Concurrency note
//! `MuxState` is behind a `parking_lot::Mutex` held only for map operations, never across
//! an await. The inbound side is driven by exactly one reader task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_protocol::{Message, RequestId, meta};
use tokio::sync::{mpsc, oneshot};

use crate::idscan::IdScanner;
use crate::{CallError, CallEvent, CallOptions, ServerRequest, UpstreamEvent};

struct Pending {
    progress: std::sync::Arc<tokio::sync::Notify>,
    reply: oneshot::Sender<Result<Value, CallError>>,
    events: Option<mpsc::Sender<CallEvent>>,
    caller_token: Option<Value>,
    caller: Option<String>,
}

#[derive(Default)]
struct MuxState {
    pending: HashMap<u64, Pending>,
    /// Our progress token → our request id.
    progress: HashMap<String, u64>,
}

pub(crate) struct Mux {
    pub(crate) server: String,
    out: mpsc::Sender<Vec<u8>>,
    state: Mutex<MuxState>,
    alive: AtomicBool,
    next_id: AtomicU64,
    events: mpsc::Sender<UpstreamEvent>,
}

impl Mux {
    pub(crate) fn new(
        server: String,
        out: mpsc::Sender<Vec<u8>>,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Mux {
        Mux {
            server,
            out,
            state: Mutex::new(MuxState::default()),
            alive: AtomicBool::new(true),
            next_id: AtomicU64::new(1),
            events,
        }
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    async fn send(&self, message: &Message) -> Result<(), CallError> {
        if !self.is_alive() {
            return Err(CallError::Closed("connection closed".into()));
        }
        self.out
            .send(message.to_bytes())
            .await
            .map_err(|_| CallError::Closed("connection closed".into()))
    }

    pub(crate) async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<(), CallError> {
        self.send(&Message::notification(method, params)).await
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        mut params: Option<Value>,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let our_token = options.progress_token.as_ref().map(|_| format!("sb-{id}"));
        if let Some(token) = &our_token {
            let params = params.get_or_insert_with(|| json!({}));
            meta::get_mut(params).insert(meta::PROGRESS_TOKEN.into(), Value::String(token.clone()));
        }
        let deadline = crate::deadline::Deadline::new(&options);
        let (reply_tx, reply_rx) = oneshot::channel();
        {
            let mut state = self.state.lock();
            if !self.is_alive() {
                return Err(CallError::Closed("connection closed".into()));
            }
            state.pending.insert(
                id,
                Pending {
                    progress: deadline.progress.clone(),
                    reply: reply_tx,
                    events: options.events.clone(),
                    caller_token: options.progress_token.clone(),
                    caller: options.caller.clone(),
                },
            );
            if let Some(token) = &our_token {
                state.progress.insert(token.clone(), id);
            }
        }
        let message = Message::request(RequestId::from(id), method, params);
        if let Err(error) = self.send(&message).await {
            self.forget(id, our_token.as_deref());
            return Err(error);
        }
        let outcome = tokio::select! {
            reply = reply_rx => reply.unwrap_or_else(|_| Err(CallError::Closed("connection closed".into()))),
            error = deadline.expired() => Err(error),
            () = options.cancel.cancelled() => Err(CallError::Cancelled),
        };
        if let Err(CallError::Timeout(_) | CallError::Cancelled) = &outcome {
            let reason = match &outcome {
                Err(CallError::Timeout(_)) => "timeout",
                _ => "cancelled by client",
            };
            self.cancel_upstream(id, our_token.as_deref(), reason).await;
        } else if let Some(token) = &our_token {
            self.state.lock().progress.remove(token);
        }
        outcome
    }

    /// Drops a call's entries and, if it was still pending, tells the upstream to cancel
    /// it. The notification is queued under the same lock `close_with` takes, so a stop
    /// running at the same time either finds the call pending (and cancels it itself) or
    /// finds its cancellation already queued ahead of the close.
    async fn cancel_upstream(&self, id: u64, token: Option<&str>, reason: &str) {
        let cancel = Message::notification(
            "notifications/cancelled",
            Some(json!({ "requestId": id, "reason": reason })),
        );
        let queue_full = {
            let mut state = self.state.lock();
            if let Some(token) = token {
                state.progress.remove(token);
            }
            if state.pending.remove(&id).is_none() {
                return;
            }
            match self.out.try_send(cancel.to_bytes()) {
                Err(mpsc::error::TrySendError::Full(bytes)) => Some(bytes),
                _ => None,
            }
        };
        if let Some(bytes) = queue_full {
            // Best effort: the upstream may be gone by the time there is room.
            let _ = self.out.send(bytes).await;
        }
    }

    fn forget(&self, id: u64, token: Option<&str>) {
        let mut state = self.state.lock();
        state.pending.remove(&id);
        if let Some(token) = token {
            state.progress.remove(token);
        }
    }

    /// The events sink of the single call a message without correlation most plausibly
    /// belongs to: the newest in-flight call that listens for events.
    fn plausible_owner(&self) -> Option<mpsc::Sender<CallEvent>> {
        let state = self.state.lock();
        state
            .pending
            .iter()
            .filter_map(|(id, pending)| pending.events.as_ref().map(|events| (*id, events)))
            .max_by_key(|(id, _)| *id)
            .map(|(_, events)| events.clone())
    }

    /// The events sink a log message belongs to. Tied to a call by the progress token it
    /// carries in `_meta`; otherwise only unambiguously: the newest call that listens for
    /// events, provided every such call has the same caller (a shared server's message is
    /// never put into another principal's call). `None`: the message is unowned.
    fn log_owner(&self, params: Option<&Value>) -> Option<mpsc::Sender<CallEvent>> {
        let state = self.state.lock();
        let token = meta::progress_token(params).and_then(Value::as_str);
        if let Some(pending) = token
            .and_then(|token| state.progress.get(token))
            .and_then(|id| state.pending.get(id))
        {
            return pending.events.clone();
        }
        // Calls someone still listens to, made for a client: a call abandoned by its
        // client (finishing its cancellation) or the gateway's own (a probe, a re-list)
        // neither receives the message nor stands in the way of the one that can.
        let mut listening = state.pending.iter().filter(|(_, pending)| {
            pending.caller.is_some() && pending.events.as_ref().is_some_and(|e| !e.is_closed())
        });
        let (first_id, first) = listening.next()?;
        let caller = first.caller.as_ref()?;
        let mut newest = (*first_id, first);
        for (id, pending) in listening {
            if pending.caller.as_ref() != Some(caller) {
                return None;
            }
            if *id > newest.0 {
                newest = (*id, pending);
            }
        }
        newest.1.events.clone()
    }

    /// Dispatches one inbound message.
    pub(crate) async fn handle(&self, message: Message) {
        match message {
            Message::Response { id, result } => self.complete(&id, Ok(result)),
            Message::Error {
                id: Some(id),
                error,
            } => self.complete(&id, Err(CallError::Rpc(error))),
            Message::Error { id: None, error } => {
                tracing::warn!(server = %self.server, %error, "upstream sent an error without id");
            }
            Message::Notification { method, params } => self.on_notification(method, params).await,
            Message::Request { id, method, params } => self.on_request(id, method, params).await,
        }
    }

    fn complete(&self, id: &RequestId, outcome: Result<Value, CallError>) {
        let Some(id) = id.as_u64() else {
            tracing::warn!(server = %self.server, %id, "upstream answered an id we never sent");
            return;
        };
        let pending = self.state.lock().pending.remove(&id);
        match pending {
            Some(pending) => {
                let _ = pending.reply.send(outcome);
            }
            None => tracing::debug!(server = %self.server, id, "late or unknown response dropped"),
        }
    }

    async fn on_notification(&self, method: String, mut params: Option<Value>) {
        if method == "notifications/progress" {
            let token = params
                .as_ref()
                .and_then(|p| p.get("progressToken"))
                .and_then(Value::as_str);
            let target = token.and_then(|token| {
                let state = self.state.lock();
                let id = state.progress.get(token)?;
                let pending = state.pending.get(id)?;
                pending.progress.notify_one();
                Some((pending.events.clone()?, pending.caller_token.clone()?))
            });
            if let Some((events, caller_token)) = target {
                if let Some(object) = params.as_mut().and_then(Value::as_object_mut) {
                    object.insert("progressToken".into(), caller_token);
                }
                // Progress is advisory: a slow reader loses some, never blocks the stream.
                let _ = events.try_send(CallEvent::Notification { method, params });
            }
            return;
        }
        if method == "notifications/message"
            && let Some(events) = self.log_owner(params.as_ref())
        {
            let _ = events.try_send(CallEvent::Notification { method, params });
            return;
        }
        if method == "notifications/cancelled" {
            return; // we never leave server requests running long enough to matter
        }
        let _ = self
            .events
            .try_send(UpstreamEvent::Notification { method, params });
    }

    async fn on_request(&self, id: RequestId, method: String, params: Option<Value>) {
        if method == "ping" {
            let _ = self
                .out
                .send(Message::response(id, json!({})).to_bytes())
                .await;
            return;
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let kept = params.clone();
        let request = ServerRequest {
            method: method.clone(),
            params,
            reply: reply_tx,
        };
        let delivered = match self.plausible_owner() {
            Some(events) => events
                .send(CallEvent::Request(request))
                .await
                .map_err(|e| match e.0 {
                    CallEvent::Request(request) => request,
                    CallEvent::Notification { .. } => unreachable!("sent a request"),
                }),
            None => Err(request),
        };
        let handed_to_call = match delivered {
            Ok(()) => Some(kept),
            Err(request) => {
                if self
                    .events
                    .send(UpstreamEvent::Request(request))
                    .await
                    .is_err()
                {
                    return;
                }
                None
            }
        };
        let out = self.out.clone();
        let events = self.events.clone();
        // Owned by the reply channel: ends when the gateway answers or drops the request.
        tokio::spawn(async move {
            let outcome = crate::answer_of(reply_rx, method, handed_to_call, &events).await;
            let _ = out.send(Message::reply(id, outcome).to_bytes()).await;
        });
    }

    /// A line longer than the bound arrived; fail the call it answered, if we can tell.
    pub(crate) fn fail_oversized(&self, id: Option<&Value>, limit: usize) {
        tracing::warn!(server = %self.server, limit, "upstream message over the size bound discarded");
        self.fail_answer(id, CallError::TooLarge { limit });
    }

    /// A line that is not a valid message arrived: if it names a call of ours, that call
    /// fails now (its answer will never come in a readable form).
    pub(crate) fn fail_unparseable(&self, line: &[u8], error: &str) {
        let id = IdScanner::scan(line);
        self.fail_answer(
            id.as_ref(),
            CallError::Protocol(format!("unreadable answer: {error}")),
        );
    }

    fn fail_answer(&self, id: Option<&Value>, error: CallError) {
        let Some(id) = id.and_then(Value::as_u64) else {
            return;
        };
        let pending = self.state.lock().pending.remove(&id);
        if let Some(pending) = pending {
            let _ = pending.reply.send(Err(error));
        }
    }

    /// We are stopping the connection: every call still waiting is cancelled upstream
    /// first (queued ahead of the close, so the writer flushes them before stdin closes),
    /// then closed for its caller.
    pub(crate) fn close_cancelling(&self, reason: &str) {
        self.close_with(reason, true, &CallError::Closed(reason.to_owned()));
    }

    /// The stream is gone: every waiting caller learns it now.
    pub(crate) fn close(&self, reason: &str) {
        self.close_with(reason, false, &CallError::Closed(reason.to_owned()));
    }

    /// The process was ended by a limit of its sandbox: waiting callers learn which.
    pub(crate) fn close_killed(&self, hit: &crate::sandbox::LimitHit) {
        self.close_with(
            &hit.to_string(),
            false,
            &CallError::SandboxLimit(hit.clone()),
        );
    }

    fn close_with(&self, reason: &str, cancel_upstream: bool, error: &CallError) {
        // Taken under the lock: a call cancelled concurrently either finds itself still
        // pending (and sends its own cancellation) or finds itself gone (and we send it).
        let pending: Vec<(u64, Pending)> = {
            let mut state = self.state.lock();
            if !self.alive.swap(false, Ordering::AcqRel) {
                return;
            }
            state.progress.clear();
            state.pending.drain().collect()
        };
        if cancel_upstream {
            for (id, _) in &pending {
                let cancel = json!({ "requestId": id, "reason": reason });
                let message = Message::notification("notifications/cancelled", Some(cancel));
                if self.out.try_send(message.to_bytes()).is_err() {
                    tracing::warn!(server = %self.server, id, "write queue full: cancellation not sent");
                }
            }
        }
        for (_, call) in pending {
            let _ = call.reply.send(Err(error.clone()));
        }
        let _ = self.events.try_send(UpstreamEvent::Closed {
            reason: reason.to_owned(),
        });
    }
}
