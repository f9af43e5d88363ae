//! The Streamable HTTP face: one `/mcp` endpoint serving legacy sessions (2025-03-26 to
//! 2025-11-25: `initialize`, `Mcp-Session-Id`, GET stream, DELETE) and modern stateless
//! requests (2026-07-28: per-request `_meta`, mirrored headers, `subscriptions/listen`)
//! side by side. Origin and Host are validated on every request (403); with `[access]`,
//! the credential is verified next, before anything else (401 with an RFC 9728
//! `WWW-Authenticate` challenge), and a legacy session stays bound to the identity that
//! initialized it.
//!
//! Each request answers with JSON when nothing precedes its result, and switches to an SSE
//! stream the moment a related notification or a server→client request must go first.
//! The client closing the stream (or disconnecting) cancels the request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt;
use serde_json::Value;
use switchboard_config::ListenSettings;
use switchboard_protocol::{Era, Message, ProtocolVersion, RequestId, RpcError, headers};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::origin::OriginPolicy;
use super::serve::{BodyError, read_body};
use super::session::{Capacity, LegacySession, MemorySessions, SessionStore};
use super::{ListenFilter, declared_version, is_modern_method, modern_meta, parse_switch};
use crate::access::{AuthError, Authenticator};
use crate::gateway::{ClientCtx, Gateway, PeerRequest};
use crate::principal::{Face, Identity, Peer, Principal};
use crate::reply::Reply;

/// Legacy sessions idle longer than this are forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// At most this many legacy sessions at once (the oldest idle one is shed for a new one).
const MAX_SESSIONS: usize = 10_000;
/// Keep-alive comment interval on long-lived streams.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct FaceState {
    gateway: Gateway,
    sessions: Box<dyn SessionStore>,
    origin: OriginPolicy,
    max_body_bytes: usize,
    body_read_timeout: Duration,
    max_sessions_per_client: usize,
    auth: Option<Arc<Authenticator>>,
}

/// Builds the `/mcp` router (callers may merge more routes, e.g. admin and metrics).
pub fn router(gateway: Gateway, listen: &ListenSettings) -> Router {
    let state = Arc::new(FaceState {
        sessions: Box::new(MemorySessions::default()),
        origin: OriginPolicy::new(listen),
        max_body_bytes: listen.max_body_bytes,
        body_read_timeout: listen.body_read_timeout,
        max_sessions_per_client: listen.max_sessions_per_client,
        auth: gateway.authenticator().cloned(),
        gateway,
    });
    spawn_session_reaper(&state);
    let mut router = Router::new().route("/mcp", any(mcp));
    if state.auth.is_some() {
        router = router
            .route(
                "/.well-known/oauth-protected-resource",
                axum::routing::get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                axum::routing::get(resource_metadata),
            );
    }
    router.layer(DefaultBodyLimit::disable()).with_state(state)
}

fn request_host(request_headers: &HeaderMap) -> &str {
    request_headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
}

/// RFC 9728 protected resource metadata.
async fn resource_metadata(
    State(state): State<Arc<FaceState>>,
    request_headers: HeaderMap,
) -> Response {
    if let Err(reason) = state.origin.check(&request_headers) {
        return reject(
            StatusCode::FORBIDDEN,
            None,
            RpcError::invalid_request(reason),
        );
    }
    let Some(auth) = &state.auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let document = auth.metadata(request_host(&request_headers));
    json_body(StatusCode::OK, document.to_string().into_bytes())
}

/// The request's identity (`None`: anonymous), or the 401 that answers it.
async fn authenticate(
    state: &FaceState,
    request_headers: &HeaderMap,
) -> Result<Option<Identity>, Response> {
    let Some(auth) = &state.auth else {
        return Ok(None);
    };
    auth.authenticate(request_headers).await.map_err(|error| {
        let challenge = auth.challenge(request_host(request_headers), &error);
        let message = match &error {
            AuthError::Missing => error.to_string(),
            AuthError::Invalid(reason) => format!("invalid credential: {reason}"),
        };
        let mut response = reject(
            StatusCode::UNAUTHORIZED,
            None,
            RpcError::invalid_request(message),
        );
        if let Ok(value) = header::HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    })
}

/// The legacy session `session_id`, when the request's identity is the one that opened it
/// (a session of another identity does not exist for this caller).
fn owned_session(
    state: &FaceState,
    session_id: &str,
    identity: Option<&Identity>,
) -> Option<Arc<LegacySession>> {
    state
        .sessions
        .get(session_id)
        .filter(|session| session.principal().is(identity))
}

fn spawn_session_reaper(state: &Arc<FaceState>) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let Some(state) = weak.upgrade() else { return };
            for session in state.sessions.expire(SESSION_IDLE) {
                session.end();
                end_session(&state.gateway, session.id());
            }
        }
    });
}

/// Releases what the gateway holds for a session (its per-session upstream instances).
/// The task is owned by the gateway's drain of those instances and ends with it.
fn end_session(gateway: &Gateway, session_id: &str) {
    let gateway = gateway.clone();
    let session_id = session_id.to_owned();
    let owner = gateway.clone();
    owner.spawn(async move { gateway.session_ended(&session_id).await });
}

/// The one place face-level failures become HTTP responses.
fn reject(status: StatusCode, id: Option<RequestId>, error: RpcError) -> Response {
    let body = Message::error(id, error).to_bytes();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn header_str<'a>(request_headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    request_headers.get(name).and_then(|v| v.to_str().ok())
}

async fn mcp(State(state): State<Arc<FaceState>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, query, request_headers) = (parts.method, parts.uri.query(), parts.headers);
    // The connection's remote address, when the server was built with connect info.
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    if let Err(reason) = state.origin.check(&request_headers) {
        return reject(
            StatusCode::FORBIDDEN,
            None,
            RpcError::invalid_request(reason),
        );
    }
    let identity = match authenticate(&state, &request_headers).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let session_id = header_str(&request_headers, headers::SESSION_ID).map(str::to_owned);
    match method {
        Method::POST => {}
        Method::GET => return get_stream(&state, session_id.as_deref(), identity.as_ref()),
        Method::DELETE => {
            return delete_session(&state, session_id.as_deref(), identity.as_ref());
        }
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
    let meta_tools = match meta_tools_choice(query) {
        Ok(choice) => state.gateway.meta_tools_for(choice),
        Err(error) => return reject(StatusCode::BAD_REQUEST, None, error),
    };
    let body = match read_body(body, state.max_body_bytes, state.body_read_timeout).await {
        Ok(body) => body,
        Err(error) => {
            let status = match error {
                BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
                BodyError::Broken(_) => StatusCode::BAD_REQUEST,
            };
            let code = match error {
                BodyError::TooLarge(_) => switchboard_protocol::error::gateway::MESSAGE_TOO_LARGE,
                _ => switchboard_protocol::error::INVALID_REQUEST,
            };
            return reject(status, None, RpcError::new(code, error.to_string()));
        }
    };
    let message = match Message::parse(&body) {
        Ok(message) => message,
        Err(error) => return reject(StatusCode::BAD_REQUEST, None, error.to_rpc_error()),
    };
    let params = match &message {
        Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
        _ => None,
    };
    let header_version = header_str(&request_headers, headers::PROTOCOL_VERSION);
    let modern = declared_version(params).is_some()
        || header_version.is_some_and(ProtocolVersion::is_modern);
    if modern {
        modern_post(
            &state,
            &request_headers,
            message,
            meta_tools,
            peer,
            identity,
        )
        .await
    } else {
        legacy_post(
            &state,
            &request_headers,
            session_id,
            message,
            meta_tools,
            peer,
            identity,
        )
        .await
    }
}

/// The client's choice of meta-tools in the endpoint's query (`/mcp?meta_tools=on`), if
/// it made one. A client configures one URL, so every request of a session carries it.
fn meta_tools_choice(query: Option<&str>) -> Result<Option<bool>, RpcError> {
    let Some(query) = query else { return Ok(None) };
    let mut choice = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "meta_tools" {
            continue;
        }
        let on = parse_switch(value).map_err(|reason| {
            RpcError::invalid_params(format!("meta_tools in the URL: {reason}"))
        })?;
        choice = Some(on);
    }
    Ok(choice)
}

/// Validates the mirrored headers of a modern request against its body.
fn validate_mirrors(
    state: &FaceState,
    request_headers: &HeaderMap,
    method: &str,
    params: Option<&Value>,
) -> Result<(), RpcError> {
    // A repeated mirror header is ambiguous: intermediaries may read either copy.
    for name in [headers::PROTOCOL_VERSION, headers::METHOD, headers::NAME] {
        if request_headers.get_all(name).iter().count() > 1 {
            return Err(RpcError::header_mismatch(format!(
                "duplicate {name} header"
            )));
        }
    }
    let body_version = declared_version(params).unwrap_or_default();
    match header_str(request_headers, headers::PROTOCOL_VERSION) {
        None => {
            return Err(RpcError::header_mismatch(
                "missing MCP-Protocol-Version header",
            ));
        }
        Some(v) if v != body_version => {
            return Err(RpcError::header_mismatch(format!(
                "MCP-Protocol-Version header `{v}` does not match body `{body_version}`"
            )));
        }
        Some(_) => {}
    }
    match header_str(request_headers, headers::METHOD) {
        None => return Err(RpcError::header_mismatch("missing Mcp-Method header")),
        Some(m) if m != method => {
            return Err(RpcError::header_mismatch(format!(
                "Mcp-Method header `{m}` does not match body `{method}`"
            )));
        }
        Some(_) => {}
    }
    if let Some(field) = headers::name_field(method) {
        let body_name = params.and_then(|p| p.get(field)).and_then(Value::as_str);
        let raw = request_headers.get(headers::NAME).map(|v| v.as_bytes());
        let header_name = match raw {
            None => return Err(RpcError::header_mismatch("missing Mcp-Name header")),
            Some(raw) => headers::decode_value(raw)
                .ok_or_else(|| RpcError::header_mismatch("invalid Mcp-Name header"))?,
        };
        if Some(header_name.as_str()) != body_name {
            return Err(RpcError::header_mismatch(format!(
                "Mcp-Name header value '{header_name}' does not match body value '{}'",
                body_name.unwrap_or_default()
            )));
        }
    }
    if method == "tools/call" {
        let tool = params
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let catalog = state.gateway.catalog();
        let expected = headers::param_header_values(
            catalog.tool_param_headers(tool),
            params.and_then(|p| p.get("arguments")),
        );
        for (name, encoded) in expected {
            let decoded_expected = headers::decode_value(encoded.as_bytes()).unwrap_or_default();
            let got = request_headers
                .get(name.as_str())
                .map(|v| headers::decode_value(v.as_bytes()));
            match got {
                None => return Err(RpcError::header_mismatch(format!("missing {name} header"))),
                Some(None) => {
                    return Err(RpcError::header_mismatch(format!(
                        "invalid characters in {name} header"
                    )));
                }
                Some(Some(value)) if !values_match(&value, &decoded_expected) => {
                    return Err(RpcError::header_mismatch(format!(
                        "{name} header does not match the body"
                    )));
                }
                Some(Some(_)) => {}
            }
        }
    }
    Ok(())
}

/// Header/body comparison; integers compare numerically (`42.0` equals `42`).
fn values_match(header_value: &str, body_value: &str) -> bool {
    if header_value == body_value {
        return true;
    }
    matches!((header_value.parse::<f64>(), body_value.parse::<f64>()), (Ok(a), Ok(b)) if a == b)
}

/// A modern (stateless) client's principal. Until clients authenticate, its session is
/// the TCP connection it sends on: two clients never share one `per_session` instance.
fn modern_principal(peer: Option<SocketAddr>, identity: Option<&Identity>) -> Principal {
    let session = match peer {
        Some(addr) => format!("conn:{addr}"),
        None => "conn:unknown".to_owned(),
    };
    let peer = Peer {
        addr: peer,
        user: None,
    };
    match identity {
        Some(identity) => Principal::authenticated(Face::Http, session, peer, identity),
        None => Principal::anonymous_stateless(Face::Http, session, peer),
    }
}

async fn modern_post(
    state: &Arc<FaceState>,
    request_headers: &HeaderMap,
    message: Message,
    meta_tools: bool,
    peer: Option<SocketAddr>,
    identity: Option<Identity>,
) -> Response {
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (Some(id), method, params),
        Message::Notification { method, params } => (None, method, params),
        _ => {
            return reject(
                StatusCode::BAD_REQUEST,
                None,
                RpcError::invalid_request("clients must not send responses"),
            );
        }
    };
    // A request whose body names no version is malformed (-32602) whatever its headers
    // say; only then can the header be compared with the body (-32020).
    if id.is_some() && declared_version(params.as_ref()).is_none() {
        let error = modern_meta(params.as_ref())
            .err()
            .unwrap_or_else(|| RpcError::invalid_params("missing _meta"));
        return reject(StatusCode::BAD_REQUEST, id, error);
    }
    if let Err(error) = validate_mirrors(state, request_headers, &method, params.as_ref()) {
        return reject(StatusCode::BAD_REQUEST, id, error);
    }
    let meta = match modern_meta(params.as_ref()) {
        Ok(meta) => meta,
        Err(error) => return reject(StatusCode::BAD_REQUEST, id, error),
    };
    let Some(id) = id else {
        // Modern notifications carry nothing we act on (cancellation is closing a stream).
        return StatusCode::ACCEPTED.into_response();
    };
    if !is_modern_method(&method) {
        return reject(
            StatusCode::NOT_FOUND,
            Some(id),
            RpcError::method_not_found(&method),
        );
    }
    let (notify_tx, notify_rx) = mpsc::channel(64);
    let ctx = ClientCtx {
        era: Era::Modern,
        protocol_version: meta.version,
        capabilities: meta.capabilities,
        client_info: meta.client_info,
        principal: modern_principal(peer, identity.as_ref()),
        notify: Some(notify_tx),
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools,
    };
    if method == "subscriptions/listen" {
        // The subscription itself passes the pipeline (who may listen) before its stream opens.
        if let Err(error) = state
            .gateway
            .handle(&ctx, "subscriptions/listen", params.clone())
            .await
        {
            return reject(StatusCode::OK, Some(id), error);
        }
        return listen_stream(state, ctx, id, params);
    }
    respond(
        state.gateway.clone(),
        ctx,
        id,
        method,
        params,
        notify_rx,
        None,
        None,
    )
    .await
}

async fn legacy_post(
    state: &Arc<FaceState>,
    request_headers: &HeaderMap,
    session_id: Option<String>,
    message: Message,
    meta_tools: bool,
    peer: Option<SocketAddr>,
    identity: Option<Identity>,
) -> Response {
    if let Message::Request { id, method, params } = &message
        && method == "initialize"
    {
        return initialize(
            state,
            id.clone(),
            params.as_ref(),
            meta_tools,
            peer,
            identity.as_ref(),
        );
    }
    let Some(session_id) = session_id else {
        let id = match &message {
            Message::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        return reject(
            StatusCode::BAD_REQUEST,
            id,
            RpcError::invalid_request("missing Mcp-Session-Id header (send initialize first)"),
        );
    };
    let Some(session) = owned_session(state, &session_id, identity.as_ref()) else {
        return reject(
            StatusCode::NOT_FOUND,
            None,
            RpcError::invalid_request("unknown or expired session"),
        );
    };
    session.touch();
    if let Some(version) = header_str(request_headers, headers::PROTOCOL_VERSION)
        && version != session.version
        && ProtocolVersion::is_legacy(&session.version)
        && session.version != "2025-03-26"
    {
        let error = RpcError::invalid_request(format!(
            "MCP-Protocol-Version `{version}` does not match the session's `{}`",
            session.version
        ));
        return reject(StatusCode::BAD_REQUEST, None, error);
    }
    match message {
        Message::Request {
            id,
            method,
            mut params,
        } => {
            let (notify_tx, notify_rx) = mpsc::channel(64);
            let (peer_tx, peer_rx) = mpsc::channel(8);
            let ctx = session.begin(&id, &method, &mut params, notify_tx, peer_tx);
            respond(
                state.gateway.clone(),
                ctx,
                id,
                method,
                params,
                notify_rx,
                Some(peer_rx),
                Some(session),
            )
            .await
        }
        Message::Notification { method, .. } if method == "notifications/roots/list_changed" => {
            state.gateway.roots_changed();
            StatusCode::ACCEPTED.into_response()
        }
        Message::Notification { method, params } => {
            if method == "notifications/cancelled" {
                session.cancel(params.as_ref());
            }
            StatusCode::ACCEPTED.into_response()
        }
        Message::Response { id, result } => {
            session.answer(&id, Ok(result));
            StatusCode::ACCEPTED.into_response()
        }
        Message::Error { id, error } => {
            if let Some(id) = id {
                session.answer(&id, Err(error));
            }
            StatusCode::ACCEPTED.into_response()
        }
    }
}

fn initialize(
    state: &Arc<FaceState>,
    id: RequestId,
    params: Option<&Value>,
    meta_tools: bool,
    peer: Option<SocketAddr>,
    identity: Option<&Identity>,
) -> Response {
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let peer = Peer {
        addr: peer,
        user: None,
    };
    // Fixed for the session's life: every later request must present the same identity.
    let principal = match identity {
        Some(identity) => Principal::authenticated(Face::Http, session_id.as_str(), peer, identity),
        None => Principal::anonymous(Face::Http, session_id.as_str(), peer),
    };
    let (session, result) = LegacySession::open(
        &state.gateway,
        session_id.clone(),
        principal,
        meta_tools,
        params,
    );
    let capacity = Capacity {
        total: MAX_SESSIONS,
        per_client: state.max_sessions_per_client,
    };
    match state.sessions.insert(session, capacity) {
        Ok(None) => {}
        Ok(Some(shed)) => {
            tracing::debug!(
                session = shed.id(),
                "session shed to make room for a new one"
            );
            shed.end();
            end_session(&state.gateway, shed.id());
        }
        Err(full) => {
            let error = RpcError::new(switchboard_protocol::error::gateway::OVERLOADED, full.0);
            return reject(StatusCode::SERVICE_UNAVAILABLE, Some(id), error);
        }
    }
    let body = Message::response(id, result).to_bytes();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::HeaderName::from_static(headers::SESSION_ID),
                session_id,
            ),
        ],
        body,
    )
        .into_response()
}

fn delete_session(
    state: &FaceState,
    session_id: Option<&str>,
    identity: Option<&Identity>,
) -> Response {
    let Some(session_id) = session_id else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    if owned_session(state, session_id, identity).is_none() {
        return reject(
            StatusCode::NOT_FOUND,
            None,
            RpcError::invalid_request("unknown or expired session"),
        );
    }
    match state.sessions.remove(session_id) {
        Some(session) => {
            session.end();
            end_session(&state.gateway, session_id);
            StatusCode::OK.into_response()
        }
        None => reject(
            StatusCode::NOT_FOUND,
            None,
            RpcError::invalid_request("unknown or expired session"),
        ),
    }
}

fn sse_frame(message: &Message) -> Bytes {
    sse_frame_of(&message.to_bytes())
}

fn sse_frame_of(json: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(json.len() + 24);
    frame.extend_from_slice(b"event: message\ndata: ");
    frame.extend_from_slice(json);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// A finished request's answer: a message, or a list page's response already rendered.
enum Answer {
    Message(Message),
    Rendered(Vec<u8>),
}

impl Answer {
    fn into_response(self, era: Era) -> Response {
        match self {
            Answer::Message(message) => json_response(status_for(era, &message), &message),
            Answer::Rendered(body) => json_body(StatusCode::OK, body),
        }
    }

    fn sse_frame(&self) -> Bytes {
        match self {
            Answer::Message(message) => sse_frame(message),
            Answer::Rendered(body) => sse_frame_of(body),
        }
    }
}

fn sse_response(rx: mpsc::Receiver<Bytes>, guard: Option<tokio_util::sync::DropGuard>) -> Response {
    // The guard lives as long as the body: the client going away cancels the work.
    let stream = ReceiverStream::new(rx).map(move |frame| {
        let _keep = &guard;
        Ok::<_, Infallible>(frame)
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .expect("valid response")
}

/// Legacy GET: the session's stream of server-initiated notifications.
fn get_stream(
    state: &Arc<FaceState>,
    session_id: Option<&str>,
    identity: Option<&Identity>,
) -> Response {
    let Some(session_id) = session_id else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let Some(session) = owned_session(state, session_id, identity) else {
        return reject(
            StatusCode::NOT_FOUND,
            None,
            RpcError::invalid_request("unknown or expired session"),
        );
    };
    let (tx, rx) = mpsc::channel(64);
    let mut changes = state.gateway.subscribe();
    let closed = CancellationToken::new();
    let guard = closed.clone().drop_guard();
    // While this stream is open the client can be asked for its roots at any time.
    let wants_roots = session
        .capabilities
        .get("roots")
        .is_some_and(|r| !r.is_null());
    let (roots_tx, mut roots_rx) = mpsc::channel::<PeerRequest>(8);
    let gateway = state.gateway.clone();
    let session_id = session_id.to_owned();
    if wants_roots {
        gateway.roots_peer_joined(&session_id, roots_tx);
    }
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b": stream open\n\n")).await;
        loop {
            let change = tokio::select! {
                Some(request) = roots_rx.recv() => {
                    let message = session.peers.request(request);
                    if tx.send(sse_frame(&message)).await.is_err() { break }
                    continue;
                }
                change = changes.recv() => change,
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() { break }
                    continue;
                }
                () = session.ended.cancelled() => break,
                () = closed.cancelled() => break,
            };
            let change = match change {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let message = session.notification(&change);
            if let Some(message) = message
                && tx.send(sse_frame(&message)).await.is_err()
            {
                break;
            }
        }
        if wants_roots {
            gateway.roots_peer_left(&session_id);
        }
    });
    sse_response(rx, Some(guard))
}

/// Modern `subscriptions/listen`: an SSE stream of acknowledged, filtered notifications.
fn listen_stream(
    state: &Arc<FaceState>,
    ctx: ClientCtx,
    id: RequestId,
    params: Option<Value>,
) -> Response {
    let filter = ListenFilter::parse(params.as_ref());
    let gateway = state.gateway.clone();
    let (tx, rx) = mpsc::channel(64);
    let guard = ctx.cancel.clone().drop_guard();
    tokio::spawn(async move {
        let mut changes = gateway.subscribe();
        let holder = format!("listen-{}", uuid::Uuid::new_v4().simple());
        gateway.watch_resources(&holder, filter.uris(), true).await;
        let mut open = tx
            .send(sse_frame(&filter.acknowledgement(&id)))
            .await
            .is_ok();
        while open {
            let change = tokio::select! {
                change = changes.recv() => change,
                () = tokio::time::sleep(KEEP_ALIVE) => {
                    open = tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_ok();
                    continue;
                }
                () = ctx.cancel.cancelled() => break,
            };
            match change {
                Ok(change) => {
                    if let Some(message) = filter.render(&change, &id, ctx.principal.session()) {
                        open = tx.send(sse_frame(&message)).await.is_ok();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = tx.send(sse_frame(&ListenFilter::completion(&id))).await;
                    break;
                }
            }
        }
        gateway.watch_resources(&holder, filter.uris(), false).await;
    });
    sse_response(rx, Some(guard))
}

/// Runs a request and answers with JSON, or with SSE once something must precede the
/// result (a notification, or a server→client request for a legacy client).
///
/// The request runs inside this handler until it answers (the common case: no task is
/// spawned); only when a stream is needed does the rest move to a task that feeds it.
#[allow(clippy::too_many_arguments)]
async fn respond(
    gateway: Gateway,
    ctx: ClientCtx,
    id: RequestId,
    method: String,
    params: Option<Value>,
    mut notify_rx: mpsc::Receiver<Message>,
    mut peer_rx: Option<mpsc::Receiver<PeerRequest>>,
    session: Option<Arc<LegacySession>>,
) -> Response {
    let era = ctx.era;
    // Dropped with this future (or later, with the stream): the client going away cancels
    // the work.
    let guard = ctx.cancel.clone().drop_guard();
    let entry = InflightEntry {
        session: session.clone(),
        id: id.clone(),
    };
    let mut work = Box::pin(async move {
        let _entry = entry; // however the work ends
        match gateway.handle_reply(&ctx, &method, params).await {
            Ok(Reply::Page(page)) => Answer::Rendered(page.response_bytes(&id)),
            outcome => Answer::Message(Message::reply(id, outcome.map(Reply::into_value))),
        }
    });
    // Until the result, or the first thing that forces a stream.
    let mut frames = Vec::new();
    let finished = match next_progress(&mut work, &mut notify_rx, &mut peer_rx).await {
        Progress::Done(answer) => {
            // Anything queued before the result goes first, on a stream.
            if notify_rx.is_empty() {
                let _disarmed = guard.disarm();
                return answer.into_response(era);
            }
            frames.extend(closing_frames(answer, &mut notify_rx));
            true
        }
        progress => {
            frames.extend(progress_frame(progress, session.as_deref()));
            false
        }
    };
    let (frames_tx, frames_rx) = mpsc::channel::<Bytes>(64);
    // Owned by the stream: ends with the result or when the client goes away.
    tokio::spawn(async move {
        let mut finished = finished;
        loop {
            for frame in frames.drain(..) {
                if frames_tx.send(frame).await.is_err() {
                    return;
                }
            }
            if finished {
                return;
            }
            match next_progress(&mut work, &mut notify_rx, &mut peer_rx).await {
                Progress::Done(answer) => {
                    frames.extend(closing_frames(answer, &mut notify_rx));
                    finished = true;
                }
                progress => frames.extend(progress_frame(progress, session.as_deref())),
            }
        }
    });
    sse_response(frames_rx, Some(guard))
}

/// What happens next while a request runs.
enum Progress {
    /// A notification related to the request.
    Note(Message),
    /// A server→client request for a legacy client.
    Peer(PeerRequest),
    /// The answer.
    Done(Answer),
}

/// Waits for the next thing a running request produces; notifications sent before the
/// answer come first.
async fn next_progress(
    work: &mut (impl Future<Output = Answer> + Unpin),
    notify_rx: &mut mpsc::Receiver<Message>,
    peer_rx: &mut Option<mpsc::Receiver<PeerRequest>>,
) -> Progress {
    tokio::select! {
        biased;
        Some(note) = notify_rx.recv() => Progress::Note(note),
        answer = work => Progress::Done(answer),
        Some(request) = recv_peer(peer_rx) => Progress::Peer(request),
    }
}

/// The stream frame of a notification or a server→client request (legacy sessions only).
fn progress_frame(progress: Progress, session: Option<&LegacySession>) -> Option<Bytes> {
    match progress {
        Progress::Note(note) => Some(sse_frame(&note)),
        Progress::Peer(request) => Some(sse_frame(&session?.peers.request(request))),
        Progress::Done(answer) => Some(answer.sse_frame()),
    }
}

/// The last frames of a stream: whatever was queued before the answer, then the answer.
fn closing_frames(answer: Answer, notify_rx: &mut mpsc::Receiver<Message>) -> Vec<Bytes> {
    let mut frames = Vec::new();
    while let Ok(note) = notify_rx.try_recv() {
        frames.push(sse_frame(&note));
    }
    frames.push(answer.sse_frame());
    frames
}

/// A legacy session's record of one request in flight (for `notifications/cancelled`),
/// removed when the request ends however it ends.
struct InflightEntry {
    session: Option<Arc<LegacySession>>,
    id: RequestId,
}

impl Drop for InflightEntry {
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            session.finish(&self.id);
        }
    }
}

async fn recv_peer(peer_rx: &mut Option<mpsc::Receiver<PeerRequest>>) -> Option<PeerRequest> {
    match peer_rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The HTTP status of a JSON answer. Legacy errors travel in 200 responses; the modern
/// transport gives some errors their own status (2026-07-28 streamable-http "Request
/// Metadata" and basic "_meta"): unknown methods 404, header mismatch, missing client
/// capability and unsupported version 400 — also when the error came from upstream.
fn status_for(era: Era, message: &Message) -> StatusCode {
    use switchboard_protocol::error::{
        HEADER_MISMATCH, METHOD_NOT_FOUND, MISSING_REQUIRED_CLIENT_CAPABILITY,
        UNSUPPORTED_PROTOCOL_VERSION,
    };
    match (era, message) {
        (Era::Modern, Message::Error { error, .. }) => match error.code {
            METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
            HEADER_MISMATCH | MISSING_REQUIRED_CLIENT_CAPABILITY | UNSUPPORTED_PROTOCOL_VERSION => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::OK,
        },
        _ => StatusCode::OK,
    }
}

fn json_response(status: StatusCode, message: &Message) -> Response {
    json_body(status, message.to_bytes())
}

fn json_body(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
