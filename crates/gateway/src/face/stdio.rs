//! The stdio face: `switchboard stdio`, for clients that spawn the gateway (Claude Desktop,
//! Claude Code). One client per process; it may open a legacy session with `initialize` or
//! send modern requests with per-request `_meta`, or both.
//!
//! Tasks: the reader (this function) owns stdin; one writer task owns stdout; each request
//! runs in its own task, cancelled by `notifications/cancelled` or when stdin closes. At
//! most `MAX_INFLIGHT` requests run at once: at the bound the reader stops reading stdin
//! (backpressure). Lines are framed with the upstream crate's bounded `Framer`, so an
//! oversized line is skipped without being buffered.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::Value;
use switchboard_protocol::{Era, Message, RequestId, RpcError};
use switchboard_upstream::framing::{Frame, Framer};
use switchboard_upstream::lines::write_lines;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::session::LegacySession;
use super::{ListenFilter, PeerTable, declared_version, is_modern_method, modern_meta};
use crate::gateway::{ClientCtx, Gateway, PeerRequest};
use crate::principal::{Face, Peer, Principal};

const OUT_QUEUE: usize = 1024;
/// Requests of the one client running at once; at the bound stdin is not read, so a client
/// that writes without reading its answers cannot make the gateway hold more.
const MAX_INFLIGHT: usize = 256;
/// The principal of the one client a stdio face serves.
const STDIO_SESSION: &str = "stdio";

/// State shared by the reader and the request tasks.
struct Shared {
    out: mpsc::Sender<Message>,
    /// Whether this client sees the meta-tools, and its tools mode.
    choice: crate::gateway::ClientChoice,
    /// The one client's principal.
    principal: Principal,
    /// Modern (stateless) requests in flight, for `notifications/cancelled`; legacy ones
    /// are tracked by their session.
    inflight: Mutex<HashMap<RequestId, CancellationToken>>,
    peers: PeerTable,
}

/// The stdio client's principal: the one `[access.stdio]` names (default: the local
/// user), or an anonymous one without `[access]`.
pub(crate) fn stdio_principal(gateway: &Gateway) -> Principal {
    let peer = Peer {
        addr: None,
        user: std::env::var("USER").ok(),
    };
    match gateway.authenticator() {
        Some(auth) => {
            Principal::authenticated(Face::Stdio, STDIO_SESSION, peer, auth.stdio_identity())
        }
        None => Principal::anonymous(Face::Stdio, STDIO_SESSION, peer),
    }
}

/// Serves one client over a byte stream pair until the input closes. `meta_tools` and
/// `tools` are the client's choices (`switchboard stdio --meta-tools on|off --tools
/// catalog|search`), if it made them.
pub async fn serve<R, W>(
    gateway: Gateway,
    input: R,
    output: W,
    max_message_bytes: usize,
    meta_tools: Option<bool>,
    tools: Option<crate::gateway::ToolsMode>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let choice = gateway.choice_for(meta_tools, tools);
    let principal = stdio_principal(&gateway);
    serve_client(gateway, input, output, max_message_bytes, choice, principal).await;
}

/// Serves one client speaking newline-delimited JSON-RPC over a byte stream pair, as
/// `principal` (whose session id names its legacy session and roots peer), until the
/// input closes. The stdio face's loop, shared with the WebSocket face (`face::ws`).
pub(crate) async fn serve_client<R, W>(
    gateway: Gateway,
    input: R,
    output: W,
    max_message_bytes: usize,
    choice: crate::gateway::ClientChoice,
    principal: Principal,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_lines(
        output,
        out_rx,
        CancellationToken::new(),
        |message: &Message, batch| {
            serde_json::to_writer(batch, message).expect("a message serializes")
        },
    ));
    let shared = Arc::new(Shared {
        out: out_tx,
        choice,
        principal,
        inflight: Mutex::new(HashMap::new()),
        peers: PeerTable::default(),
    });
    let mut session: Option<Arc<LegacySession>> = None;
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut framer = Framer::new(max_message_bytes);
    let inflight_bound = Arc::new(Semaphore::new(MAX_INFLIGHT));
    loop {
        let line = match framer.next(&mut reader).await {
            Ok(Frame::Line(line)) => line,
            Ok(Frame::Oversized { id }) => {
                // Skipped without being buffered; answered with its id when it had one.
                let error = RpcError::new(
                    switchboard_protocol::error::gateway::MESSAGE_TOO_LARGE,
                    format!("message exceeds {max_message_bytes} bytes"),
                );
                let id = id.as_ref().and_then(RequestId::from_value);
                let _ = shared.out.send(Message::error(id, error)).await;
                continue;
            }
            Ok(Frame::Eof) | Err(_) => break,
        };
        let message = match Message::parse(&line) {
            Ok(message) => message,
            Err(error) => {
                let _ = shared
                    .out
                    .send(Message::error(None, error.to_rpc_error()))
                    .await;
                continue;
            }
        };
        match message {
            Message::Request {
                id,
                method,
                mut params,
            } => {
                if method == "initialize" && declared_version(params.as_ref()).is_none() {
                    let (opened, result) = LegacySession::open(
                        &gateway,
                        shared.principal.session(),
                        shared.principal.clone(),
                        shared.choice,
                        params.as_ref(),
                    );
                    // A second initialize replaces the session (and its change pump).
                    if let Some(old) = session.replace(opened.clone()) {
                        old.end();
                    }
                    spawn_change_pump(&gateway, shared.clone(), opened);
                    let _ = shared.out.send(Message::response(id, result)).await;
                    continue;
                }
                let ctx = match build_ctx(&shared, session.as_deref(), &id, &method, &mut params) {
                    Ok(ctx) => ctx,
                    Err(error) => {
                        let _ = shared.out.send(Message::error(Some(id), error)).await;
                        continue;
                    }
                };
                if ctx.era == Era::Modern && !is_modern_method(&method) {
                    let error = RpcError::method_not_found(&method);
                    let _ = shared.out.send(Message::error(Some(id), error)).await;
                    continue;
                }
                // Backpressure: at the bound, stdin is not read until a request finishes.
                let Ok(permit) = inflight_bound.clone().acquire_owned().await else {
                    break;
                };
                // A legacy request is tracked (for cancellation) by its session; a modern one
                // here.
                let request_session = session.clone().filter(|_| ctx.era == Era::Legacy);
                if request_session.is_none() {
                    shared
                        .inflight
                        .lock()
                        .insert(id.clone(), ctx.cancel.clone());
                }
                let gateway = gateway.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let reply = if method == "subscriptions/listen" {
                        listen(&gateway, &shared, &ctx, &id, params.as_ref()).await
                    } else {
                        Some(Message::reply(
                            id.clone(),
                            gateway.handle(&ctx, &method, params).await,
                        ))
                    };
                    let cancelled = ctx.cancel.is_cancelled();
                    match request_session {
                        Some(session) => session.finish(&id),
                        None => {
                            shared.inflight.lock().remove(&id);
                        }
                    }
                    // A cancelled request gets no answer (the client stopped waiting).
                    if let (Some(reply), false) = (reply, cancelled) {
                        let _ = shared.out.send(reply).await;
                    }
                    drop(permit);
                });
            }
            Message::Notification { method, .. }
                if method == "notifications/initialized"
                    && session.as_ref().is_some_and(|s| {
                        s.capabilities.get("roots").is_some_and(|r| !r.is_null())
                    }) =>
            {
                // A client with roots can be asked at any time on this pipe.
                let (roots_tx, roots_rx) = mpsc::channel(8);
                spawn_peer(roots_rx, shared.clone());
                gateway.roots_peer_joined(
                    shared.principal.session(),
                    shared.principal.tenant(),
                    roots_tx,
                );
            }
            Message::Notification { method, .. }
                if method == "notifications/roots/list_changed" =>
            {
                gateway.roots_changed();
            }
            Message::Notification { method, params } => {
                if method == "notifications/cancelled" {
                    let id = params
                        .as_ref()
                        .and_then(|p| p.get("requestId"))
                        .and_then(RequestId::from_value);
                    let modern = id.and_then(|id| shared.inflight.lock().get(&id).cloned());
                    match (modern, &session) {
                        (Some(token), _) => token.cancel(),
                        (None, Some(session)) => session.cancel(params.as_ref()),
                        (None, None) => {}
                    }
                }
            }
            Message::Response { id, result } => shared.peers.answer(&id, Ok(result)),
            Message::Error {
                id: Some(id),
                error,
            } => shared.peers.answer(&id, Err(error)),
            Message::Error { id: None, .. } => {}
        }
    }
    // Input closed: cancel everything still running (the session's requests and the
    // modern ones), let the writer drain, stop.
    gateway.roots_peer_left(shared.principal.session());
    if let Some(session) = &session {
        session.end();
    }
    for token in shared.inflight.lock().values() {
        token.cancel();
    }
    drop(shared);
    let _ = writer.await;
}

/// The context of one request: modern (stateless, its own `_meta`) or of the legacy
/// session.
fn build_ctx(
    shared: &Arc<Shared>,
    session: Option<&LegacySession>,
    id: &RequestId,
    method: &str,
    params: &mut Option<Value>,
) -> Result<ClientCtx, RpcError> {
    // Related notifications share the output queue with the reply, so they stay ahead of it.
    let notify_tx = shared.out.clone();
    if declared_version(params.as_ref()).is_some() {
        let meta = modern_meta(params.as_ref())?;
        return Ok(ClientCtx {
            era: Era::Modern,
            protocol_version: meta.version,
            capabilities: meta.capabilities,
            client_info: meta.client_info,
            principal: shared.principal.clone(),
            notify: Some(notify_tx),
            peer: None,
            cancel: CancellationToken::new(),
            meta_tools: shared.choice.meta_tools,
            tools_mode: shared.choice.tools_mode,
        });
    }
    let session = session.ok_or_else(|| {
        RpcError::invalid_request("no session: send `initialize` first, or use protocol 2026-07-28 with per-request _meta")
    })?;
    let (peer_tx, peer_rx) = mpsc::channel(8);
    spawn_peer(peer_rx, shared.clone());
    Ok(session.begin(id, method, params, notify_tx, peer_tx))
}

/// Server→client requests: our own ids, answered through `PeerTable::answer`.
fn spawn_peer(mut requests: mpsc::Receiver<PeerRequest>, shared: Arc<Shared>) {
    tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let message = shared.peers.request(request);
            if shared.out.send(message).await.is_err() {
                break;
            }
        }
    });
}

/// Pushes catalog changes to the legacy session.
fn spawn_change_pump(gateway: &Gateway, shared: Arc<Shared>, session: Arc<LegacySession>) {
    let mut changes = gateway.subscribe();
    let gateway = gateway.clone();
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                () = session.ended.cancelled() => break,
            };
            let change = match change {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            };
            let message = session.notification(&gateway, &change);
            if let Some(message) = message
                && shared.out.send(message).await.is_err()
            {
                break;
            }
        }
    });
}

/// A modern `subscriptions/listen` on stdio: acknowledgement, then matching changes, each
/// tagged with the subscription id, until cancelled.
async fn listen(
    gateway: &Gateway,
    shared: &Shared,
    ctx: &ClientCtx,
    id: &RequestId,
    params: Option<&Value>,
) -> Option<Message> {
    // The subscription itself passes the pipeline (who may listen) before it opens.
    if let Err(error) = gateway
        .handle(ctx, "subscriptions/listen", params.cloned())
        .await
    {
        return Some(Message::error(Some(id.clone()), error));
    }
    let mut filter = ListenFilter::parse(params);
    let mut changes = gateway.subscribe();
    let _relay = filter.resolve_tasks(gateway, ctx);
    let holder = format!("listen-{}", uuid::Uuid::new_v4().simple());
    gateway.watch_resources(&holder, filter.uris(), true).await;
    let _ = shared.out.send(filter.acknowledgement(id)).await;
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            () = ctx.cancel.cancelled() => break,
        };
        match change {
            Ok(change) if gateway.sees(&ctx.principal, &change) => {
                if let Some(message) = filter.render(&change, id, ctx.principal.session()) {
                    let _ = shared.out.send(message).await;
                }
            }
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    gateway.watch_resources(&holder, filter.uris(), false).await;
    Some(ListenFilter::completion(id))
}
