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

mod legacy;
mod modern;
mod sse;
mod stream;

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
use crate::access::AuthError;
use crate::gateway::{ClientCtx, Gateway, PeerRequest};
use crate::principal::{Face, Identity, Peer, Principal};
use crate::reply::Reply;

use legacy::*;
use modern::*;
use sse::*;
use stream::*;

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
    /// The 2024-11-05 HTTP+SSE face's open event streams (`GET /sse`).
    sse: SseStreams,
}

/// Builds the `/mcp` router (callers may merge more routes, e.g. admin and metrics).
pub fn router(gateway: Gateway, listen: &ListenSettings) -> Router {
    let state = Arc::new(FaceState {
        sessions: Box::new(MemorySessions::default()),
        origin: OriginPolicy::new(listen),
        max_body_bytes: listen.max_body_bytes,
        body_read_timeout: listen.body_read_timeout,
        max_sessions_per_client: listen.max_sessions_per_client,
        sse: SseStreams::default(),
        gateway,
    });
    spawn_session_reaper(&state);
    // The metadata answers 404 while no `[access]` is in force.
    Router::new()
        .route("/mcp", any(mcp))
        .route("/sse", axum::routing::get(sse_open))
        .route("/messages", axum::routing::post(sse_post))
        .route(
            "/.well-known/oauth-protected-resource",
            axum::routing::get(resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            axum::routing::get(resource_metadata),
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
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
    let Some(auth) = state.gateway.authenticator() else {
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
    let Some(auth) = state.gateway.authenticator() else {
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
        Method::GET => return get_stream(&state, session_id.as_deref(), identity.as_ref()).await,
        Method::DELETE => {
            return delete_session(&state, session_id.as_deref(), identity.as_ref()).await;
        }
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
    let choice = match client_choice(&state, query, identity.as_ref()) {
        Ok(choice) => choice,
        Err(error) => return reject(StatusCode::BAD_REQUEST, None, error),
    };
    let body = match read_limited(&state, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut message = match Message::parse(&body) {
        Ok(message) => message,
        Err(error) => return reject(StatusCode::BAD_REQUEST, None, error.to_rpc_error()),
    };
    // Traced: the `traceparent` header continues the client's trace (read from `_meta`
    // by the pipeline, like a stdio client's). Untraced, the request passes untouched.
    if state.gateway.traces()
        && let Message::Request { params, .. } = &mut message
    {
        crate::telemetry::carry_headers(&request_headers, params);
    }
    // Run snapshots: the `Switchboard-Snapshot` header is the `_meta` ask (snapshot/).
    if let Some(value) = header_str(&request_headers, crate::snapshot::HEADER)
        && let Message::Request { params, .. } = &mut message
    {
        crate::snapshot::carry_header(value, params);
    }
    let params = match &message {
        Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
        _ => None,
    };
    let header_version = header_str(&request_headers, headers::PROTOCOL_VERSION);
    let modern = declared_version(params).is_some()
        || header_version.is_some_and(ProtocolVersion::is_modern);
    if modern {
        modern_post(&state, &request_headers, message, choice, peer, identity).await
    } else {
        legacy_post(
            &state,
            &request_headers,
            session_id,
            message,
            choice,
            peer,
            identity,
        )
        .await
    }
}

/// The client's choice of tools mode in the endpoint's query (`/mcp?tools=search`), if it
/// made one.
fn tools_choice(query: Option<&str>) -> Result<Option<crate::gateway::ToolsMode>, RpcError> {
    let Some(query) = query else { return Ok(None) };
    let mut choice = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "tools" {
            continue;
        }
        let mode = crate::gateway::ToolsMode::parse(value)
            .map_err(|reason| RpcError::invalid_params(format!("tools in the URL: {reason}")))?;
        choice = Some(mode);
    }
    Ok(choice)
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

/// The client's choice of meta-tools and tools mode: its own in the endpoint's query,
/// else its key's (`[[access.keys]] tools`), else the gateway's default.
fn client_choice(
    state: &FaceState,
    query: Option<&str>,
    identity: Option<&Identity>,
) -> Result<crate::gateway::ClientChoice, RpcError> {
    let meta_tools = meta_tools_choice(query)?;
    let tools = tools_choice(query)?;
    let configured = identity.and_then(|identity| {
        state
            .gateway
            .inner
            .access
            .load()
            .as_ref()
            .and_then(|access| access.tools_mode(identity))
    });
    Ok(state.gateway.choice_for(meta_tools, tools.or(configured)))
}

/// A request body within the listener's size and time bounds, or the response (413, 408,
/// 400) that refuses it.
async fn read_limited(state: &FaceState, body: Body) -> Result<Bytes, Response> {
    read_body(body, state.max_body_bytes, state.body_read_timeout)
        .await
        .map_err(|error| {
            let status = match error {
                BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
                BodyError::Broken(_) => StatusCode::BAD_REQUEST,
            };
            let code = match error {
                BodyError::TooLarge(_) => switchboard_protocol::error::gateway::MESSAGE_TOO_LARGE,
                _ => switchboard_protocol::error::INVALID_REQUEST,
            };
            reject(status, None, RpcError::new(code, error.to_string()))
        })
}
