//! The HTTP+SSE face of protocol 2024-11-05, for clients that speak only it: `GET /sse`
//! opens an event stream whose first `endpoint` event names the URL to POST to
//! (`/messages?sessionId=…`); each POST is accepted with 202 and its answer, like every
//! notification and server→client request of the session, travels on that stream.
//!
//! It is a legacy session like any other (`face::session`): opened by `initialize`, kept
//! in the same store (same limits per client address and in all, idle expiry), bound to
//! the identity that opened the stream, served by the same pipeline. The stream is the
//! session: when it closes, the session ends and its calls in flight are cancelled.
//!
//! Bounded: one queue of frames per stream (`STREAM_QUEUE`); a request whose frames do not
//! fit waits (a slow reader slows its own calls, it does not grow the gateway), and at most
//! `MAX_INFLIGHT` requests per stream run at once (a further POST is refused, 503).

use std::collections::HashMap;
use std::sync::OnceLock;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::*;
use crate::gateway::ClientChoice;

/// Frames waiting for a stream's reader.
const STREAM_QUEUE: usize = 64;
/// Requests running at once per stream.
const MAX_INFLIGHT: usize = 256;
/// Open event streams in all (each also holds a connection, bounded per client address).
const MAX_STREAMS: usize = MAX_SESSIONS;

/// The open event streams, by session id.
#[derive(Default)]
pub(super) struct SseStreams {
    streams: parking_lot::Mutex<HashMap<String, Arc<SseStream>>>,
}

impl SseStreams {
    fn insert(&self, stream: Arc<SseStream>) -> bool {
        let mut streams = self.streams.lock();
        if streams.len() >= MAX_STREAMS {
            return false;
        }
        streams.insert(stream.id.clone(), stream);
        true
    }

    /// The stream `id`, when the request's identity is the one that opened it.
    fn get(&self, id: &str, identity: Option<&Identity>) -> Option<Arc<SseStream>> {
        self.streams
            .lock()
            .get(id)
            .filter(|stream| stream.principal.is(identity))
            .cloned()
    }

    fn remove(&self, id: &str) {
        self.streams.lock().remove(id);
    }
}

/// One open event stream and, once `initialize` came, its session.
pub(super) struct SseStream {
    id: String,
    principal: Principal,
    choice: ClientChoice,
    out: mpsc::Sender<Bytes>,
    session: OnceLock<Arc<LegacySession>>,
    /// Cancelled when `session` is set.
    opened: CancellationToken,
    /// Where the roots of this client are asked (joined when it declares `roots`).
    roots: mpsc::Sender<PeerRequest>,
    inflight: Arc<Semaphore>,
}

impl SseStream {
    /// Queues a frame; `false` once the stream is gone.
    async fn send(&self, frame: Bytes) -> bool {
        self.out.send(frame).await.is_ok()
    }
}

/// `GET /sse`: opens the stream, announces the endpoint, then carries the session's
/// messages until either side ends it.
pub(super) async fn sse_open(
    State(state): State<Arc<FaceState>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    if let Err(reason) = state.origin.check(&parts.headers) {
        return reject(
            StatusCode::FORBIDDEN,
            None,
            RpcError::invalid_request(reason),
        );
    }
    let identity = match authenticate(&state, &parts.headers).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let choice = match client_choice(&state, parts.uri.query(), identity.as_ref()) {
        Ok(choice) => choice,
        Err(error) => return reject(StatusCode::BAD_REQUEST, None, error),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let peer = Peer {
        addr: peer,
        user: None,
    };
    let principal = match &identity {
        Some(identity) => Principal::authenticated(Face::Http, id.as_str(), peer, identity),
        None => Principal::anonymous(Face::Http, id.as_str(), peer),
    };
    let (out, frames) = mpsc::channel(STREAM_QUEUE);
    let (roots, mut roots_rx) = mpsc::channel::<PeerRequest>(8);
    let stream = Arc::new(SseStream {
        id: id.clone(),
        principal,
        choice,
        out,
        session: OnceLock::new(),
        opened: CancellationToken::new(),
        roots,
        inflight: Arc::new(Semaphore::new(MAX_INFLIGHT)),
    });
    if !state.sse.insert(stream.clone()) {
        let error = RpcError::new(
            switchboard_protocol::error::gateway::OVERLOADED,
            "too many open event streams",
        );
        return reject(StatusCode::SERVICE_UNAVAILABLE, None, error);
    }
    // The endpoint is relative: the client resolves it against the URL it opened.
    let endpoint = format!("event: endpoint\ndata: /messages?sessionId={id}\n\n");
    let _ = stream.out.try_send(Bytes::from(endpoint));
    let closed = CancellationToken::new();
    let guard = closed.clone().drop_guard();
    let mut changes = state.gateway.subscribe();
    let pump_state = state.clone();
    state.gateway.spawn(async move {
        let state = pump_state;
        let mut opened = false;
        loop {
            let session_ended = async {
                match stream.session.get() {
                    Some(session) => session.ended.cancelled().await,
                    None => std::future::pending().await,
                }
            };
            let frame = tokio::select! {
                () = closed.cancelled() => break,
                () = session_ended => break,
                // Loop again to watch the new session's end.
                () = stream.opened.cancelled(), if !opened => {
                    opened = true;
                    None
                }
                Some(request) = roots_rx.recv() => stream
                    .session
                    .get()
                    .map(|session| sse_frame(&session.peers.request(request))),
                change = changes.recv() => match change {
                    Ok(change) => stream
                        .session
                        .get()
                        .and_then(|session| session.notification(&state.gateway, &change))
                        .map(|message| sse_frame(&message)),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = tokio::time::sleep(KEEP_ALIVE) => Some(Bytes::from_static(b": keep-alive\n\n")),
            };
            if let Some(frame) = frame {
                tokio::select! {
                    sent = stream.send(frame) => if !sent { break },
                    () = closed.cancelled() => break,
                }
            }
        }
        close(&state, &stream);
    });
    sse_response(frames, Some(guard))
}

/// The stream is gone (the client closed it) or its session ended: the session ends
/// everywhere, its calls in flight are cancelled, its per-session instances released.
fn close(state: &FaceState, stream: &SseStream) {
    state.sse.remove(&stream.id);
    if let Some(session) = stream.session.get() {
        state.sessions.remove(&stream.id);
        session.end();
        state.gateway.roots_peer_left(&stream.id);
        end_session(&state.gateway, &stream.id);
    }
}

/// The stream's session id in the POST URL's query.
fn session_of(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "sessionId")
        .map(|(_, value)| value)
}

/// `POST /messages?sessionId=…`: one message of the stream's session, accepted with 202;
/// what answers it goes on the stream.
pub(super) async fn sse_post(
    State(state): State<Arc<FaceState>>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(reason) = state.origin.check(&parts.headers) {
        return reject(
            StatusCode::FORBIDDEN,
            None,
            RpcError::invalid_request(reason),
        );
    }
    let identity = match authenticate(&state, &parts.headers).await {
        Ok(identity) => identity,
        Err(response) => return response,
    };
    let Some(session_id) = session_of(parts.uri.query()) else {
        return reject(
            StatusCode::BAD_REQUEST,
            None,
            RpcError::invalid_request("missing sessionId in the URL (open GET /sse first)"),
        );
    };
    let Some(stream) = state.sse.get(session_id, identity.as_ref()) else {
        return reject(
            StatusCode::NOT_FOUND,
            None,
            RpcError::invalid_request("unknown or expired session"),
        );
    };
    let body = match read_limited(&state, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut message = match Message::parse(&body) {
        Ok(message) => message,
        Err(error) => return reject(StatusCode::BAD_REQUEST, None, error.to_rpc_error()),
    };
    if state.gateway.traces()
        && let Message::Request { params, .. } = &mut message
    {
        crate::telemetry::carry_headers(&parts.headers, params);
    }
    if let Message::Request { id, method, params } = &message
        && method == "initialize"
    {
        return initialize(&state, &stream, id.clone(), params.as_ref()).await;
    }
    let Some(session) = stream.session.get().cloned() else {
        let id = match &message {
            Message::Request { id, .. } => Some(id.clone()),
            _ => None,
        };
        return reject(
            StatusCode::BAD_REQUEST,
            id,
            RpcError::invalid_request("send initialize first"),
        );
    };
    session.touch();
    match message {
        Message::Request { id, method, params } => {
            let Ok(permit) = stream.inflight.clone().try_acquire_owned() else {
                let error = RpcError::new(
                    switchboard_protocol::error::gateway::OVERLOADED,
                    format!("more than {MAX_INFLIGHT} requests in flight on this stream"),
                );
                return reject(StatusCode::SERVICE_UNAVAILABLE, Some(id), error);
            };
            run(&state.gateway, stream, session, permit, id, method, params);
        }
        Message::Notification { method, .. } if method == "notifications/roots/list_changed" => {
            state.gateway.roots_changed();
        }
        Message::Notification { method, params } => {
            if method == "notifications/cancelled" {
                session.cancel(params.as_ref());
            }
        }
        Message::Response { id, result } => session.answer(&id, Ok(result)),
        Message::Error { id, error } => {
            if let Some(id) = id {
                session.answer(&id, Err(error));
            }
        }
    }
    StatusCode::ACCEPTED.into_response()
}

/// `initialize` on a stream: opens its legacy session (in the face's session store, with
/// its limits) and answers on the stream.
async fn initialize(
    state: &FaceState,
    stream: &SseStream,
    id: RequestId,
    params: Option<&Value>,
) -> Response {
    if stream.session.get().is_some() {
        return reject(
            StatusCode::BAD_REQUEST,
            Some(id),
            RpcError::invalid_request("the session is already initialized"),
        );
    }
    let (session, result) = LegacySession::open(
        &state.gateway,
        stream.id.clone(),
        stream.principal.clone(),
        stream.choice,
        params,
    );
    let capacity = Capacity {
        total: MAX_SESSIONS,
        per_client: state.max_sessions_per_client,
    };
    match state.sessions.insert(session.clone(), capacity) {
        Ok(None) => {}
        Ok(Some(shed)) => {
            shed.end();
            end_session(&state.gateway, shed.id());
        }
        Err(full) => {
            let error = RpcError::new(switchboard_protocol::error::gateway::OVERLOADED, full.0);
            return reject(StatusCode::SERVICE_UNAVAILABLE, Some(id), error);
        }
    }
    if stream.session.set(session.clone()).is_err() {
        // Two initialize POSTs raced: the first one won.
        state.sessions.remove(&stream.id);
        return reject(
            StatusCode::BAD_REQUEST,
            Some(id),
            RpcError::invalid_request("the session is already initialized"),
        );
    }
    stream.opened.cancel();
    if session
        .capabilities
        .get("roots")
        .is_some_and(|roots| !roots.is_null())
    {
        // While this stream is open the client can be asked for its roots at any time.
        state.gateway.roots_peer_joined(
            &stream.id,
            session.principal().tenant(),
            stream.roots.clone(),
        );
    }
    stream.send(sse_frame(&Message::response(id, result))).await;
    StatusCode::ACCEPTED.into_response()
}

/// Runs one request of the session in its own task (owned by the gateway's tracker):
/// related notifications and server→client requests go on the stream as they come, then
/// the answer — none when the client cancelled it.
fn run(
    gateway: &Gateway,
    stream: Arc<SseStream>,
    session: Arc<LegacySession>,
    permit: OwnedSemaphorePermit,
    id: RequestId,
    method: String,
    mut params: Option<Value>,
) {
    let (notify_tx, mut notify_rx) = mpsc::channel(64);
    let (peer_tx, peer_rx) = mpsc::channel(8);
    let ctx = session.begin(&id, &method, &mut params, notify_tx, peer_tx);
    let cancelled = ctx.cancel.clone();
    let task_gateway = gateway.clone();
    gateway.spawn(async move {
        let _permit = permit;
        // However the task ends (also when the stream is gone), the request is over.
        let _guard = cancelled.clone().drop_guard();
        let mut peer_rx = Some(peer_rx);
        let answer_id = id.clone();
        let gateway = task_gateway;
        let mut work = Box::pin(async move {
            match gateway.handle_reply(&ctx, &method, params).await {
                Ok(Reply::Page(page)) => Answer::Rendered(page.response_bytes(&answer_id)),
                outcome => {
                    Answer::Message(Message::reply(answer_id, outcome.map(Reply::into_value)))
                }
            }
        });
        loop {
            let frames = match next_progress(&mut work, &mut notify_rx, &mut peer_rx).await {
                // Cancelled: no answer (the client stopped waiting), as on every face.
                Progress::Done(_) if cancelled.is_cancelled() => break,
                Progress::Done(answer) => {
                    for frame in closing_frames(answer, &mut notify_rx) {
                        if !stream.send(frame).await {
                            break;
                        }
                    }
                    break;
                }
                progress => progress_frame(progress, Some(&session)),
            };
            if let Some(frame) = frames
                && !stream.send(frame).await
            {
                break;
            }
        }
        session.finish(&id);
    });
}
