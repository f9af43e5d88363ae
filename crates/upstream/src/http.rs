//! Streamable HTTP upstreams, both eras: modern stateless POSTs carrying `Mcp-*` headers,
//! and legacy sessions (`Mcp-Session-Id`, server→client requests on response streams and
//! on the standalone GET stream). Each call is its own POST; its answer is a JSON body or
//! an SSE stream of related notifications ending with the response. Dropping the stream
//! is the modern cancellation; legacy calls also get `notifications/cancelled`.

use crate::oauth::Credential;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use switchboard_protocol::{Era, Message, RequestId, RpcError, headers, meta};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::sse::SseParser;
use crate::{CallError, CallEvent, CallOptions, ServerRequest, UpstreamEvent};

/// One HTTP client for all upstreams: shared connection pool, `TCP_NODELAY` on.
pub(crate) fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(90))
                .build()
                .expect("HTTP client builds")
        })
        .clone()
}

/// The configured headers of a server, marked sensitive: HTTP libraries print
/// `Sensitive` for them in any `Debug` (a request logged at trace level included).
pub(crate) fn header_map(
    headers: &BTreeMap<String, switchboard_config::Secret<String>>,
) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
        // The value is not echoed: it usually is a credential.
        let mut value = HeaderValue::from_str(value.expose_str())
            .map_err(|_| format!("header {name}: invalid value"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// Authorization challenges answered for one request before its refusal stands.
const MAX_CHALLENGES: usize = 3;

/// `builder` (a `method` request to `url`) with the OAuth token, if there is one.
fn with_bearer(
    builder: reqwest::RequestBuilder,
    bearer: Option<&Credential>,
    method: &str,
    url: &reqwest::Url,
) -> reqwest::RequestBuilder {
    match bearer {
        Some(credential) => credential.apply(builder, method, url),
        None => builder,
    }
}

/// Reconnections of one legacy response stream before the call is given up.
const MAX_RESUMPTIONS: usize = 32;
/// Reconnection delay when the server sent no `retry` field.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);

/// How reading one response stream ended.
enum StreamEnd {
    Answer(Result<Value, RpcError>),
    /// The stream ended (or broke) before the answer; the reason.
    Ended(String),
}

/// How an HTTP exchange ended, before it is mapped to a call outcome.
pub(crate) enum Exchange {
    /// A JSON-RPC response or error for our request.
    Answer(Result<Value, RpcError>),
    /// An HTTP error status with its body (for era detection and error mapping).
    Status { status: u16, body: String },
    /// 202: a notification was accepted.
    Accepted,
}

/// Registers a call's event sink for messages that arrive outside its own stream, and
/// unregisters it when the call ends (also when its future is dropped).
struct CallRegistration<'a> {
    calls: &'a Mutex<BTreeMap<u64, mpsc::Sender<CallEvent>>>,
    id: u64,
}

impl Drop for CallRegistration<'_> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.id);
    }
}

pub(crate) struct HttpLink {
    pub(crate) server: String,
    /// Parsed once: reqwest would parse a string on every request.
    url: reqwest::Url,
    headers: HeaderMap,
    pub(crate) era: Era,
    pub(crate) protocol_version: Mutex<String>,
    session_id: Mutex<Option<String>>,
    next_id: AtomicU64,
    alive: AtomicBool,
    limit: usize,
    events: mpsc::Sender<UpstreamEvent>,
    stop: CancellationToken,
    /// Event sinks of the calls in flight, by our request id.
    calls: Mutex<BTreeMap<u64, mpsc::Sender<CallEvent>>>,
    /// OAuth, unless the server is configured with its own `Authorization` header.
    auth: Option<Arc<crate::oauth::Authorizer>>,
}

impl HttpLink {
    pub(crate) fn new(
        server: String,
        url: reqwest::Url,
        headers: HeaderMap,
        auth: Option<Arc<crate::oauth::Authorizer>>,
        era: Era,
        limit: usize,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> HttpLink {
        let version = match era {
            Era::Modern => switchboard_protocol::ProtocolVersion::MODERN,
            Era::Legacy => switchboard_protocol::ProtocolVersion::LEGACY_LATEST,
        };
        HttpLink {
            server,
            url,
            headers,
            era,
            protocol_version: Mutex::new(version.to_owned()),
            session_id: Mutex::new(None),
            next_id: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            limit,
            events,
            stop: CancellationToken::new(),
            calls: Mutex::new(BTreeMap::new()),
            auth,
        }
    }

    /// The OAuth access token to present, if there is one.
    fn bearer(&self) -> Option<Credential> {
        self.auth.as_ref().and_then(Credential::current)
    }

    /// The latest call in flight that takes events.
    fn plausible_owner(&self) -> Option<mpsc::Sender<CallEvent>> {
        self.calls.lock().values().next_back().cloned()
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    pub(crate) fn set_session(&self, session: Option<String>) {
        *self.session_id.lock() = session;
    }

    fn request_builder(
        &self,
        message: &Message,
        extra: &[(String, String)],
        bearer: Option<&Credential>,
    ) -> reqwest::RequestBuilder {
        let mut builder = with_bearer(client().post(self.url.clone()), bearer, "POST", &self.url)
            .headers(self.headers.clone())
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header(
                headers::PROTOCOL_VERSION,
                self.protocol_version.lock().as_str(),
            );
        if let Some(session) = self.session_id.lock().as_deref() {
            builder = builder.header(headers::SESSION_ID, session);
        }
        if self.era == Era::Modern
            && let Message::Request { method, params, .. }
            | Message::Notification { method, params } = message
        {
            builder = builder.header(headers::METHOD, method.as_str());
            let name =
                headers::name_field(method).and_then(|field| params.as_ref()?.get(field)?.as_str());
            if let Some(name) = name {
                builder = builder.header(headers::NAME, headers::encode_value(name));
            }
        }
        for (name, value) in extra {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.body(message.to_bytes())
    }

    /// Sends one message and reads the HTTP answer to completion (or until our response
    /// arrives on the stream). `events` receives the request-related messages.
    pub(crate) async fn exchange(
        &self,
        message: &Message,
        extra: &[(String, String)],
        events: Option<&StreamRouting>,
    ) -> Result<(Exchange, Option<String>), CallError> {
        // Authorization challenges are answered, then the request is sent again.
        let mut challenges = 0;
        if let Some(auth) = &self.auth {
            auth.renew_if_expiring().await;
        }
        let response = loop {
            let bearer = self.bearer();
            let response = self
                .request_builder(message, extra, bearer.as_ref())
                .send()
                .await
                .map_err(|e| CallError::Http(e.to_string()))?;
            let status = response.status().as_u16();
            if let Some(auth) = &self.auth {
                auth.observe(response.headers());
            }
            let Some(auth) = self.auth.as_ref().filter(|_| matches!(status, 401 | 403)) else {
                break response;
            };
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if challenges == MAX_CHALLENGES || (status == 403 && challenge.is_none()) {
                break response;
            }
            challenges += 1;
            // Only a DPoP nonce wanted: the same token again, with a proof carrying it.
            if bearer.as_ref().is_some_and(|b| b.is_dpop())
                && auth.is_nonce_challenge(status, challenge.as_deref(), response.headers())
            {
                continue;
            }
            match auth
                .on_challenge(
                    status,
                    challenge.as_deref(),
                    bearer.as_ref().map(Credential::token),
                )
                .await
            {
                Ok(()) => continue,
                // A refused step-up leaves the refusal as the answer.
                Err(error) if status == 403 => {
                    tracing::warn!(server = %self.server, %error, "scope step-up refused");
                    break response;
                }
                Err(error) => {
                    return Err(CallError::Http(format!(
                        "status 401, authorization failed: {error}"
                    )));
                }
            }
        };
        let status = response.status();
        let session = response
            .headers()
            .get(headers::SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok((Exchange::Accepted, session));
        }
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() {
            let body = read_limited(response, self.limit.min(64 * 1024))
                .await
                .unwrap_or_default();
            return Ok((
                Exchange::Status {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                },
                session,
            ));
        }
        let expected = match message {
            Message::Request { id, .. } => id.clone(),
            _ => return Ok((Exchange::Accepted, session)),
        };
        if !is_sse {
            let body = read_limited(response, self.limit).await?;
            let answer =
                match Message::parse(&body).map_err(|e| CallError::Protocol(e.to_string()))? {
                    Message::Response { id, result } if id == expected => Ok(result),
                    Message::Error { error, .. } => Err(error),
                    other => {
                        return Err(CallError::Protocol(format!(
                            "unexpected answer: {:?}",
                            other.method()
                        )));
                    }
                };
            return Ok((Exchange::Answer(answer), session));
        }
        let mut parser = SseParser::new(self.limit);
        let mut response = response;
        let mut resumptions = 0;
        loop {
            let ended = match self
                .read_answer(response, &mut parser, &expected, events)
                .await?
            {
                StreamEnd::Answer(answer) => return Ok((Exchange::Answer(answer), session)),
                StreamEnd::Ended(reason) => reason,
            };
            // Legacy servers may close a response stream before answering and expect the
            // client to resume it: GET with `Last-Event-ID` after the `retry` delay
            // (2025-11-25 transports, "Resumability and Redelivery"). Modern streams are
            // not resumable: the answer is lost with the stream.
            let last_event_id = match (self.era, parser.last_event_id()) {
                (Era::Legacy, Some(id)) if resumptions < MAX_RESUMPTIONS => id.to_owned(),
                _ => return Err(CallError::Closed(ended)),
            };
            resumptions += 1;
            tokio::time::sleep(parser.retry().unwrap_or(DEFAULT_RETRY)).await;
            response = self.resume(&last_event_id).await?;
            parser = SseParser::resumed(&parser);
        }
    }

    /// Reads one SSE stream until our answer or its end, routing everything else.
    async fn read_answer(
        &self,
        response: reqwest::Response,
        parser: &mut SseParser,
        expected: &RequestId,
        events: Option<&StreamRouting>,
    ) -> Result<StreamEnd, CallError> {
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    return Ok(StreamEnd::Ended(format!("response stream broke: {error}")));
                }
            };
            let parsed = parser
                .push(&chunk)
                .map_err(|_| CallError::TooLarge { limit: self.limit })?;
            for event in parsed.into_iter().filter(|e| e.event == "message") {
                if event.data.trim().is_empty() {
                    continue; // a priming event: only its id matters
                }
                let message = match Message::parse(event.data.as_bytes()) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(server = %self.server, %error, "bad message on response stream");
                        continue;
                    }
                };
                match message {
                    Message::Response { id, result } if id == *expected => {
                        return Ok(StreamEnd::Answer(Ok(result)));
                    }
                    Message::Error {
                        id: Some(id),
                        error,
                    } if id == *expected => {
                        return Ok(StreamEnd::Answer(Err(error)));
                    }
                    other => self.route_stream_message(other, events).await,
                }
            }
        }
        Ok(StreamEnd::Ended(
            "response stream ended without an answer".into(),
        ))
    }

    /// Resumes a legacy stream: GET with `Last-Event-ID`.
    async fn resume(&self, last_event_id: &str) -> Result<reqwest::Response, CallError> {
        let mut request = with_bearer(
            client().get(self.url.clone()),
            self.bearer().as_ref(),
            "GET",
            &self.url,
        )
        .headers(self.headers.clone())
        .header("accept", "text/event-stream")
        .header(
            headers::PROTOCOL_VERSION,
            self.protocol_version.lock().as_str(),
        )
        .header("last-event-id", last_event_id);
        if let Some(session) = self.session_id.lock().as_deref() {
            request = request.header(headers::SESSION_ID, session);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Http(e.to_string()))?;
        let is_sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !response.status().is_success() || !is_sse {
            return Err(CallError::Closed(format!(
                "response stream ended and could not be resumed (GET answered {})",
                response.status()
            )));
        }
        Ok(response)
    }

    async fn route_stream_message(
        self: &HttpLink,
        message: Message,
        routing: Option<&StreamRouting>,
    ) {
        match message {
            Message::Notification { method, mut params } => {
                if method == "notifications/progress"
                    && let Some(progress) = routing.and_then(|r| r.progress.as_ref())
                {
                    progress.notify_one();
                }
                if let Some(routing) = routing
                    && let Some(sink) = &routing.events
                {
                    if method == "notifications/progress"
                        && let (Some(token), Some(object)) = (
                            &routing.caller_token,
                            params.as_mut().and_then(Value::as_object_mut),
                        )
                    {
                        object.insert("progressToken".into(), token.clone());
                    }
                    let _ = sink.try_send(CallEvent::Notification { method, params });
                    return;
                }
                let _ = self
                    .events
                    .try_send(UpstreamEvent::Notification { method, params });
            }
            Message::Request { id, method, params } => {
                let (reply_tx, reply_rx) = oneshot::channel();
                let kept = params.clone();
                let request = ServerRequest {
                    method: method.clone(),
                    params,
                    reply: reply_tx,
                };
                // A request on the standalone GET stream belongs to no call; like the stdio
                // mux, hand it to the latest call in flight that can take one, so the
                // client whose call is waiting is asked (servers commonly elicit this way).
                let sink = routing
                    .and_then(|r| r.events.clone())
                    .or_else(|| self.plausible_owner());
                let undelivered = match sink {
                    Some(sink) => {
                        sink.send(CallEvent::Request(request))
                            .await
                            .err()
                            .map(|e| match e.0 {
                                CallEvent::Request(request) => request,
                                CallEvent::Notification { .. } => unreachable!("sent a request"),
                            })
                    }
                    None => Some(request),
                };
                let handed_to_call = match undelivered {
                    Some(request) => {
                        let _ = self.events.send(UpstreamEvent::Request(request)).await;
                        None
                    }
                    None => Some(kept),
                };
                self.answer_later(id, method, reply_rx, handed_to_call);
            }
            other => {
                tracing::debug!(server = %self.server, ?other, "unexpected message on a stream")
            }
        }
    }

    /// POSTs the reply to a server→client request once the gateway has it. The task is
    /// owned by the reply channel and ends with it.
    fn answer_later(
        &self,
        id: RequestId,
        method: String,
        reply: oneshot::Receiver<Result<Value, RpcError>>,
        handed_to_call: Option<Option<Value>>,
    ) {
        let events = self.events.clone();
        let builder_link = LinkSnapshot {
            bearer: self.bearer(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            version: self.protocol_version.lock().clone(),
            session: self.session_id.lock().clone(),
        };
        tokio::spawn(async move {
            let outcome = crate::answer_of(reply, method, handed_to_call, &events).await;
            let body = Message::reply(id, outcome).to_bytes();
            let mut request = with_bearer(
                client().post(builder_link.url.clone()),
                builder_link.bearer.as_ref(),
                "POST",
                &builder_link.url,
            )
            .headers(builder_link.headers)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header(headers::PROTOCOL_VERSION, builder_link.version);
            if let Some(session) = builder_link.session {
                request = request.header(headers::SESSION_ID, session);
            }
            let _ = request.body(body).send().await;
        });
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        mut params: Option<Value>,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        if !self.is_alive() {
            return Err(CallError::Closed("session ended".into()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if options.progress_token.is_some() {
            let params = params.get_or_insert_with(|| json!({}));
            meta::get_mut(params).insert(
                meta::PROGRESS_TOKEN.into(),
                Value::String(format!("sb-{id}")),
            );
        }
        let message = Message::request(RequestId::from(id), method, params);
        let _registration = options.events.clone().map(|events| {
            self.calls.lock().insert(id, events);
            CallRegistration {
                calls: &self.calls,
                id,
            }
        });
        let deadline = crate::deadline::Deadline::new(&options);
        let routing = StreamRouting {
            progress: Some(deadline.progress.clone()),
            events: options.events.clone(),
            caller_token: options.progress_token.clone(),
        };
        let exchange = self.exchange(&message, &options.headers, Some(&routing));
        let outcome = tokio::select! {
            result = exchange => result,
            error = deadline.expired() => Err(error),
            () = options.cancel.cancelled() => Err(CallError::Cancelled),
        };
        if matches!(outcome, Err(CallError::Timeout(_) | CallError::Cancelled))
            && self.era == Era::Legacy
        {
            // Modern: dropping the stream above was the cancellation. Legacy: say it too.
            let _ = self
                .notify(
                    "notifications/cancelled",
                    Some(json!({ "requestId": id, "reason": "cancelled" })),
                )
                .await;
        }
        match outcome? {
            (Exchange::Answer(answer), _) => answer.map_err(CallError::Rpc),
            (Exchange::Accepted, _) => Err(CallError::Protocol("request answered with 202".into())),
            (Exchange::Status { status, body }, _) => Err(self.status_error(status, &body)),
        }
    }

    /// Maps an HTTP error status to a call error; a JSON-RPC error body wins.
    fn status_error(&self, status: u16, body: &str) -> CallError {
        if let Ok(Message::Error { error, .. }) = Message::parse(body.as_bytes()) {
            return CallError::Rpc(error);
        }
        if status == 404 && self.era == Era::Legacy && self.session_id.lock().is_some() {
            self.alive.store(false, Ordering::Release);
            let _ = self.events.try_send(UpstreamEvent::Closed {
                reason: "session expired (404)".into(),
            });
            return CallError::Closed("session expired".into());
        }
        CallError::Http(format!("status {status}"))
    }

    pub(crate) async fn notify(
        &self,
        method: &str,
        params: Option<Value>,
    ) -> Result<(), CallError> {
        let message = Message::notification(method, params);
        match self.exchange(&message, &[], None).await? {
            (Exchange::Status { status, body }, _) => Err(self.status_error(status, &body)),
            _ => Ok(()),
        }
    }

    /// Legacy sessions: listens on the standalone GET stream for server-initiated messages
    /// until the link stops. A 405 means the server offers none.
    pub(crate) fn spawn_get_stream(self: &Arc<Self>) {
        let link = Arc::downgrade(self);
        let stop = self.stop.clone();
        let limit = self.limit;
        tokio::spawn(async move {
            let mut failures = 0u32;
            // Carried across reconnections: the last event id and the server's `retry`.
            let mut parser = SseParser::new(limit);
            loop {
                let Some(strong) = link.upgrade() else { return };
                let mut request = with_bearer(
                    client().get(strong.url.clone()),
                    strong.bearer().as_ref(),
                    "GET",
                    &strong.url,
                )
                .headers(strong.headers.clone())
                .header("accept", "text/event-stream")
                .header(
                    headers::PROTOCOL_VERSION,
                    strong.protocol_version.lock().as_str(),
                );
                if let Some(session) = strong.session_id.lock().as_deref() {
                    request = request.header(headers::SESSION_ID, session);
                }
                if let Some(last_event_id) = parser.last_event_id() {
                    request = request.header("last-event-id", last_event_id);
                }
                drop(strong);
                let response = tokio::select! {
                    response = request.send() => response,
                    () = stop.cancelled() => return,
                };
                let response = match response {
                    Ok(r) if r.status().is_success() => r,
                    Ok(r) if r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED => return,
                    _ => {
                        failures += 1;
                        if failures > 5 {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(failures))).await;
                        continue;
                    }
                };
                failures = 0;
                let mut stream = response.bytes_stream();
                parser = SseParser::resumed(&parser);
                loop {
                    let chunk = tokio::select! {
                        chunk = stream.next() => chunk,
                        () = stop.cancelled() => return,
                    };
                    let Some(Ok(chunk)) = chunk else { break };
                    let Ok(events) = parser.push(&chunk) else {
                        break;
                    };
                    let Some(strong) = link.upgrade() else { return };
                    for event in events.into_iter().filter(|e| e.event == "message") {
                        if let Ok(message) = Message::parse(event.data.as_bytes()) {
                            strong.route_stream_message(message, None).await;
                        }
                    }
                }
                let delay = parser.retry().unwrap_or(Duration::from_millis(200));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        self.alive.store(false, Ordering::Release);
        let session = self.session_id.lock().clone();
        if let Some(session) = session {
            let _ = with_bearer(
                client().delete(self.url.clone()),
                self.bearer().as_ref(),
                "DELETE",
                &self.url,
            )
            .headers(self.headers.clone())
            .header(headers::SESSION_ID, session)
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        }
    }
}

impl Drop for HttpLink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct LinkSnapshot {
    bearer: Option<Credential>,
    url: reqwest::Url,
    headers: HeaderMap,
    version: String,
    session: Option<String>,
}

/// Where a call's stream messages go.
pub(crate) struct StreamRouting {
    progress: Option<std::sync::Arc<tokio::sync::Notify>>,
    events: Option<mpsc::Sender<CallEvent>>,
    caller_token: Option<Value>,
}

async fn read_limited(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, CallError> {
    if response
        .content_length()
        .is_some_and(|length| length as usize > limit)
    {
        return Err(CallError::TooLarge { limit });
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CallError::Http(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(CallError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use switchboard_config::Secret;

    use super::*;

    #[test]
    fn configured_headers_are_sent_but_never_printed() {
        let configured = BTreeMap::from([(
            "Authorization".to_owned(),
            Secret::new("Bearer upstream-token-value".to_owned()),
        )]);
        let map = header_map(&configured).unwrap();
        assert_eq!(map["authorization"], "Bearer upstream-token-value");
        assert!(map["authorization"].is_sensitive());
        let printed = format!("{map:?}");
        assert!(!printed.contains("upstream-token-value"), "{printed}");
        // An invalid value is reported by name, without the value.
        let bad = BTreeMap::from([(
            "X-Key".to_owned(),
            Secret::new("bad\u{1}secret-part".to_owned()),
        )]);
        let error = header_map(&bad).unwrap_err();
        assert!(
            error.contains("x-key") && !error.contains("secret-part"),
            "{error}"
        );
    }
}
