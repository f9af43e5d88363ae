//! The owner's side of the internal channel between replicas (`[cluster]` with a
//! `secret`): `POST /cluster/call` runs a call another replica forwarded to a
//! `cluster = "owned"` server this replica owns, and streams its frames back
//! (`cluster::wire`); `POST /cluster/answer` brings back the caller's answer to a
//! server→client request of such a call.
//!
//! Both need `Authorization: Bearer <[cluster] secret>` (compared in constant time, as
//! digests). The Origin/Host check does not apply (replicas reach each other by address,
//! no browser is involved). The call enters the pipeline at the terminal forward
//! (`Gateway::forward_for_owner`): the calling replica ran the steps — access, limits,
//! budgets, approvals, audit, validation, redaction — once, so none runs twice and no
//! rate limit or budget counts a call twice. A call names the epoch of the lease it was
//! routed by; any other epoch than the one held here is refused with `409`, and the
//! calling replica asks Redis for the owner again.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::cluster::owned::{MAX_ASKS, Ownership};
use crate::cluster::relay::KEEPALIVE;
use crate::cluster::wire::{Answer, Ask, CallRequest, Frame};
use crate::gateway::{ClientCtx, Gateway, PeerRequest};

#[derive(Clone)]
struct Peer {
    gateway: Gateway,
    ownership: Arc<Ownership>,
    digest: [u8; 32],
}

/// The internal routes, when this replica is in a cluster with a secret.
pub(crate) fn router(gateway: Gateway, max_body_bytes: usize) -> Router {
    let Some(ownership) = gateway.inner.ownership.clone() else {
        return Router::new();
    };
    let Some(secret) = &ownership.secret else {
        return Router::new();
    };
    let digest = Sha256::digest(secret.expose().as_bytes()).into();
    let state = Peer {
        gateway,
        ownership,
        digest,
    };
    Router::new()
        .route("/cluster/call", post(call))
        .route("/cluster/answer", post(answer))
        .layer(DefaultBodyLimit::max(
            max_body_bytes.saturating_add(64 * 1024),
        ))
        .with_state(state)
}

fn authorized(peer: &Peer, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    presented.ct_eq(&peer.digest).into()
}

async fn call(State(peer): State<Peer>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&peer, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(request) = serde_json::from_slice::<CallRequest>(&body) else {
        return (StatusCode::BAD_REQUEST, "unreadable call").into_response();
    };
    if peer.ownership.held_epoch(&request.server) != Some(request.epoch) {
        // Not (or no longer) the owner under that epoch: the caller asks Redis again.
        return StatusCode::CONFLICT.into_response();
    }
    let (frames, body) = mpsc::channel::<Bytes>(64);
    let gateway = peer.gateway.clone();
    drop(
        peer.gateway
            .spawn(serve_call(gateway, peer.ownership, request, frames)),
    );
    let stream = ReceiverStream::new(body).map(Ok::<_, Infallible>);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Runs one forwarded call, writing its frames until it ends or the caller goes away
/// (which cancels it, upstream too).
async fn serve_call(
    gateway: Gateway,
    ownership: Arc<Ownership>,
    request: CallRequest,
    frames: mpsc::Sender<Bytes>,
) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    if frames.send(Frame::Call(id.clone()).line()).await.is_err() {
        return;
    }
    let cancel = CancellationToken::new();
    let (notify_tx, mut notify_rx) = mpsc::channel(64);
    let (peer_tx, mut peer_rx) = mpsc::channel::<PeerRequest>(8);
    let caller = &request.caller;
    let ctx = ClientCtx {
        era: caller.era(),
        protocol_version: caller.protocol_version.clone(),
        capabilities: caller.capabilities.clone(),
        client_info: caller.client_info.clone(),
        principal: caller.principal(),
        notify: Some(notify_tx),
        peer: caller.peer.then_some(peer_tx),
        cancel: cancel.clone(),
        meta_tools: false,
        tools_mode: Default::default(),
    };
    let work = gateway.forward_for_owner(
        &ctx,
        &request.server,
        &request.method,
        request.params.clone(),
        request.headers.clone(),
    );
    tokio::pin!(work);
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.reset();
    let mut asked = 0u64;
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break Some(outcome),
            Some(message) = notify_rx.recv() => {
                if frames.send(Frame::Notify(message.to_value()).line()).await.is_err() {
                    break None;
                }
            }
            Some(request) = peer_rx.recv() => {
                asked += 1;
                let ask = Frame::Ask(Ask { id: asked, method: request.method, params: request.params });
                {
                    let mut asks = ownership.asks.lock();
                    if asks.len() >= MAX_ASKS {
                        let _ = request.reply.send(Err(switchboard_protocol::RpcError::new(
                            switchboard_protocol::error::gateway::OVERLOADED,
                            "too many server requests waiting across replicas",
                        )));
                        continue;
                    }
                    asks.insert((id.clone(), asked), request.reply);
                }
                if frames.send(ask.line()).await.is_err() {
                    break None;
                }
            }
            _ = keepalive.tick() => {
                if frames.send(Frame::Ping.line()).await.is_err() {
                    break None;
                }
            }
            () = frames.closed() => break None,
        }
    };
    ownership.asks.lock().retain(|(call, _), _| *call != id);
    let Some(outcome) = outcome else {
        // The caller went away: the call is cancelled (its flight, dropped with `work`,
        // cancels upstream).
        cancel.cancel();
        return;
    };
    while let Ok(message) = notify_rx.try_recv() {
        let _ = frames.send(Frame::Notify(message.to_value()).line()).await;
    }
    let last = match outcome {
        Ok(result) => Frame::Result(result),
        Err(error) => Frame::Error(error.to_rpc(ctx.era)),
    };
    let _ = frames.send(last.line()).await;
}

async fn answer(State(peer): State<Peer>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&peer, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(&body) else {
        return (StatusCode::BAD_REQUEST, "unreadable answer").into_response();
    };
    let waiting = peer.ownership.asks.lock().remove(&(answer.call, answer.id));
    match waiting {
        Some(reply) => {
            let _ = reply.send(answer.outcome);
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
