//! Legacy sessions on the HTTP face: `initialize` (a session in the store, bound to its
//! identity), requests of a session, the GET stream, DELETE and idle expiry.

use super::*;
use crate::gateway::ClientChoice;
use serde_json::json;

/// The legacy session `session_id`, when the request's identity is the one that opened it
/// (a session of another identity does not exist for this caller).
pub(super) fn owned_session(
    state: &FaceState,
    session_id: &str,
    identity: Option<&Identity>,
) -> Option<Arc<LegacySession>> {
    state
        .sessions
        .get(session_id)
        .filter(|session| session.principal().is(identity))
}

/// [`owned_session`], across the cluster (`[cluster]`): a session this replica holds is
/// renewed in Redis (and forgotten here if it ended elsewhere); one it does not hold is
/// rebuilt from its record. `Err` answers the request: Redis could not be asked about a
/// session this replica does not hold.
pub(super) async fn find_session(
    state: &FaceState,
    session_id: &str,
    identity: Option<&Identity>,
) -> Result<Option<Arc<LegacySession>>, Response> {
    let local = owned_session(state, session_id, identity);
    let Some(shared) = state.gateway.cluster_sessions() else {
        return Ok(local);
    };
    if let Some(session) = local {
        return match shared.renew(session_id).await {
            Ok(true) => Ok(Some(session)),
            Ok(false) => {
                // Deleted (or expired) through another replica.
                if let Some(session) = state.sessions.remove(session_id) {
                    session.end();
                    end_session(&state.gateway, session_id);
                }
                Ok(None)
            }
            Err(error) => {
                tracing::warn!(event = "cluster.session_unrenewed", %error, "session served locally without renewal");
                Ok(Some(session))
            }
        };
    }
    if state.sessions.get(session_id).is_some() {
        return Ok(None); // held here, for another identity
    }
    let record = match shared.fetch(session_id).await {
        Ok(Some(record)) if record.belongs_to(identity) => record,
        Ok(_) => return Ok(None),
        Err(error) => return Err(cluster_unavailable(&error)),
    };
    let principal = match identity {
        Some(identity) => {
            Principal::authenticated(Face::Http, session_id, Peer::default(), identity)
        }
        None => Principal::anonymous(Face::Http, session_id, Peer::default()),
    };
    let choice = ClientChoice {
        meta_tools: record.meta_tools,
        tools_mode: if record.search {
            switchboard_config::ToolsMode::Search
        } else {
            switchboard_config::ToolsMode::Catalog
        },
    };
    let params = json!({
        "protocolVersion": record.version,
        "capabilities": record.capabilities,
        "clientInfo": record.client_info,
    });
    let (session, _) = LegacySession::open(
        &state.gateway,
        session_id.to_owned(),
        principal,
        choice,
        Some(&params),
    );
    let capacity = Capacity {
        total: MAX_SESSIONS,
        per_client: state.max_sessions_per_client,
    };
    match state.sessions.insert(session.clone(), capacity) {
        Ok(shed) => {
            if let Some(shed) = shed {
                shed.end();
                end_session(&state.gateway, shed.id());
            }
            tracing::debug!(
                session = session_id,
                "session continued from another replica"
            );
            Ok(Some(session))
        }
        Err(full) => {
            let error = RpcError::new(switchboard_protocol::error::gateway::OVERLOADED, full.0);
            Err(reject(StatusCode::SERVICE_UNAVAILABLE, None, error))
        }
    }
}

/// The 503 of a shared session operation while Redis is away.
fn cluster_unavailable(error: &crate::cluster::pool::Unavailable) -> Response {
    let error = RpcError::new(
        switchboard_protocol::error::gateway::UPSTREAM_UNAVAILABLE,
        format!("session not available: {error}"),
    )
    .with_data(json!({ "reason": "cluster store unavailable", "retryable": true }));
    reject(StatusCode::SERVICE_UNAVAILABLE, None, error)
}

pub(super) fn spawn_session_reaper(state: &Arc<FaceState>) {
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
pub(super) fn end_session(gateway: &Gateway, session_id: &str) {
    let gateway = gateway.clone();
    let session_id = session_id.to_owned();
    let owner = gateway.clone();
    owner.spawn(async move { gateway.session_ended(&session_id).await });
}

pub(super) async fn legacy_post(
    state: &Arc<FaceState>,
    request_headers: &HeaderMap,
    session_id: Option<String>,
    message: Message,
    choice: ClientChoice,
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
            choice,
            peer,
            identity.as_ref(),
        )
        .await;
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
    let session = match find_session(state, &session_id, identity.as_ref()).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let Some(session) = session else {
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

pub(super) async fn initialize(
    state: &Arc<FaceState>,
    id: RequestId,
    params: Option<&Value>,
    choice: ClientChoice,
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
        choice,
        params,
    );
    if let Some(shared) = state.gateway.cluster_sessions() {
        let record = crate::cluster::sessions::Record {
            version: session.version.clone(),
            capabilities: session.capabilities.clone(),
            client_info: params.and_then(|p| p.get("clientInfo")).cloned(),
            identity: identity.map(crate::cluster::sessions::StoredIdentity::of),
            meta_tools: choice.meta_tools,
            search: choice.tools_mode == switchboard_config::ToolsMode::Search,
        };
        if let Err(error) = shared.create(&session_id, &record).await {
            tracing::warn!(event = "cluster.session_refused", %error, "session not opened");
            return cluster_unavailable(&error);
        }
    }
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

pub(super) async fn delete_session(
    state: &FaceState,
    session_id: Option<&str>,
    identity: Option<&Identity>,
) -> Response {
    let Some(session_id) = session_id else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    match find_session(state, session_id, identity).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return reject(
                StatusCode::NOT_FOUND,
                None,
                RpcError::invalid_request("unknown or expired session"),
            );
        }
        Err(response) => return response,
    }
    // Ended for the whole cluster first: a replay on any replica is refused from now on.
    if let Some(shared) = state.gateway.cluster_sessions()
        && let Err(error) = shared.delete(session_id).await
    {
        return cluster_unavailable(&error);
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

/// Legacy GET: the session's stream of server-initiated notifications.
pub(super) async fn get_stream(
    state: &Arc<FaceState>,
    session_id: Option<&str>,
    identity: Option<&Identity>,
) -> Response {
    let Some(session_id) = session_id else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let session = match find_session(state, session_id, identity).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let Some(session) = session else {
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
        gateway.roots_peer_joined(&session_id, session.principal().tenant(), roots_tx);
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
            let message = session.notification(&gateway, &change);
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
