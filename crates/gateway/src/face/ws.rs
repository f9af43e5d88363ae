//! The WebSocket face: JSON-RPC over a WebSocket on the HTTP listener (`GET /ws`), for
//! browser agents. One text message is one JSON-RPC message, each way.
//!
//! A WebSocket is a client's own bidirectional stream, like the stdio face's pipe, so the
//! connection is served by the stdio face's loop (`stdio::serve_client`): the same legacy
//! session after `initialize`, modern stateless requests with `_meta`, cancellation,
//! server→client requests, list-change notifications and the in-flight bound. What is the
//! HTTP face's is checked at the upgrade: Origin/Host (`origin`, 403), the client's
//! identity (API key or bearer token, 401), and its choices in the query
//! (`?meta_tools=on&tools=search`); the connection's principal is that identity's (or an
//! anonymous one) with its own session id, `ws:<uuid>`.
//!
//! Bounds: a message is at most `[listen] max_body_bytes` (a larger one closes the
//! connection with 1009); at most [`MAX_CONNECTIONS`] WebSockets at once (503 after); each
//! message sent must be taken by the client within [`SEND_TIMEOUT`], else the connection
//! closes (a client that stops reading cannot hold the gateway's answers). Between the
//! socket and the loop, two in-memory pipes of [`PIPE_BYTES`] each carry newline-framed
//! messages; a full pipe stops reading the socket (backpressure to the client).
//!
//! Tasks: none spawned here. The upgraded connection's future (axum spawns it, untracked)
//! runs the face loop, the inbound and the outbound pumps joined; it ends when the client
//! closes, the send deadline passes or the gateway shuts down.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use std::net::SocketAddr;
use switchboard_config::ListenSettings;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::origin::OriginPolicy;
use crate::gateway::{ClientChoice, Gateway};
use crate::principal::{Face, Peer, Principal};

/// WebSockets open at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// How long one outgoing message may wait for the client to take it.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes buffered in each in-memory pipe between the socket and the face loop.
const PIPE_BYTES: usize = 64 * 1024;

struct WsState {
    gateway: Gateway,
    origin: OriginPolicy,
    max_message_bytes: usize,
    slots: Arc<Semaphore>,
}

/// The `/ws` route.
pub(crate) fn router(gateway: Gateway, listen: &ListenSettings) -> Router {
    let state = Arc::new(WsState {
        gateway,
        origin: OriginPolicy::new(listen),
        max_message_bytes: listen.max_body_bytes,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    });
    Router::new().route("/ws", get(upgrade)).with_state(state)
}

/// A refusal before the upgrade, as a JSON-RPC error body like the HTTP face's.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let error = switchboard_protocol::RpcError::invalid_request(message);
    let body = switchboard_protocol::Message::error(None, error).to_bytes();
    (status, [("content-type", "application/json")], body).into_response()
}

async fn upgrade(
    State(state): State<Arc<WsState>>,
    parts: axum::http::request::Parts,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let request_headers = &parts.headers;
    if let Err(reason) = state.origin.check(request_headers) {
        return refuse(StatusCode::FORBIDDEN, reason);
    }
    let identity = match state.gateway.authenticator() {
        None => None,
        Some(auth) => match auth.authenticate(request_headers).await {
            Ok(identity) => identity,
            Err(error) => return refuse(StatusCode::UNAUTHORIZED, error.to_string()),
        },
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let choice = match client_choice(&state.gateway, parts.uri.query(), identity.as_ref()) {
        Ok(choice) => choice,
        Err(reason) => return refuse(StatusCode::BAD_REQUEST, reason),
    };
    let Ok(slot) = state.slots.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many WebSocket connections (at most {MAX_CONNECTIONS})"),
        );
    };
    let session = format!("ws:{}", uuid::Uuid::new_v4());
    let peer = Peer {
        addr: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0),
        user: None,
    };
    let principal = match &identity {
        Some(identity) => Principal::authenticated(Face::WebSocket, session, peer, identity),
        None => Principal::anonymous(Face::WebSocket, session, peer),
    };
    let max = state.max_message_bytes;
    let gateway = state.gateway.clone();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            serve_socket(gateway, socket, max, choice, principal).await;
        })
}

/// The client's tools choices: from the query (`meta_tools`, `tools`), else its key's,
/// else the gateway's defaults (as on `/mcp`).
fn client_choice(
    gateway: &Gateway,
    query: Option<&str>,
    identity: Option<&crate::principal::Identity>,
) -> Result<ClientChoice, String> {
    let mut meta_tools = None;
    let mut tools = None;
    for pair in query.unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "meta_tools" => {
                meta_tools = Some(
                    super::parse_switch(value).map_err(|reason| format!("meta_tools: {reason}"))?,
                );
            }
            "tools" => {
                tools = Some(
                    crate::gateway::ToolsMode::parse(value)
                        .map_err(|reason| format!("tools: {reason}"))?,
                );
            }
            _ => {}
        }
    }
    let configured = identity.and_then(|identity| {
        gateway
            .inner
            .access
            .load()
            .as_ref()
            .and_then(|access| access.tools_mode(identity))
    });
    Ok(gateway.choice_for(meta_tools, tools.or(configured)))
}

/// Serves one upgraded connection until the client closes, a send is not taken in time or
/// the gateway shuts down.
async fn serve_socket(
    gateway: Gateway,
    socket: WebSocket,
    max_message_bytes: usize,
    choice: ClientChoice,
    principal: Principal,
) {
    let (mut sink, mut stream) = socket.split();
    // client → face loop, and face loop → client.
    let (mut inbound_pipe, face_input) = tokio::io::duplex(PIPE_BYTES);
    let (face_output, outbound_pipe) = tokio::io::duplex(PIPE_BYTES);
    // Why the gateway closes the connection, when it is the one closing.
    let close: Mutex<Option<CloseFrame>> = Mutex::new(None);
    let stop = CancellationToken::new();
    let shutdown = gateway.inner.shutdown.clone();

    let face = super::stdio::serve_client(
        gateway,
        face_input,
        face_output,
        max_message_bytes,
        choice,
        principal,
    );

    let inbound = async {
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => break,
                () = shutdown.cancelled() => {
                    *close.lock() = Some(frame(close_code::AWAY, "gateway shutting down"));
                    break;
                }
                message = stream.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    *close.lock() = Some(frame(
                        close_code::UNSUPPORTED,
                        "JSON-RPC messages are text messages",
                    ));
                    break;
                }
                // Pings are answered by the socket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(error)) => {
                    // Oversized messages end here (the socket refuses to buffer them).
                    tracing::debug!(%error, "WebSocket read ended");
                    *close.lock() = Some(frame(close_code::SIZE, "message too large or broken"));
                    break;
                }
            };
            // The face loop frames by newlines. Inside JSON strings a newline is always
            // escaped, so raw ones are whitespace between tokens: spaces read the same.
            let line: Vec<u8> = text
                .as_bytes()
                .iter()
                .map(|&byte| {
                    if byte == b'\n' || byte == b'\r' {
                        b' '
                    } else {
                        byte
                    }
                })
                .chain(std::iter::once(b'\n'))
                .collect();
            if inbound_pipe.write_all(&line).await.is_err() {
                break;
            }
        }
        // End of input: the face loop cancels what is still running and stops.
        drop(inbound_pipe);
    };

    let outbound = async {
        let mut lines = BufReader::new(outbound_pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match lines.read_until(b'\n', &mut line).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            let Ok(text) = String::from_utf8(std::mem::take(&mut line)) else {
                continue;
            };
            let message = Message::Text(Utf8Bytes::from(text));
            match tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::debug!("WebSocket client did not take a message in time");
                    *close.lock() = Some(frame(close_code::POLICY, "client too slow"));
                    break;
                }
            }
        }
        stop.cancel();
        // Dropping the pipe makes the face loop's writes fail, so it cannot wait on us.
        drop(lines);
        let reason = close.lock().take();
        let _ = tokio::time::timeout(SEND_TIMEOUT, async {
            let _ = sink.send(Message::Close(reason)).await;
            let _ = sink.close().await;
        })
        .await;
    };

    // The inbound pump ending closes the face loop's input; the loop ending closes the
    // outbound pump's pipe; the outbound pump ending stops the inbound one.
    let ((), (), ()) = tokio::join!(
        face,
        async {
            inbound.await;
        },
        outbound
    );
}

fn frame(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}
