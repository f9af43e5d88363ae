//! The agent's HTTP routes: `POST /query` (`{query, conversation_id?}` → the answer and
//! its trace), `GET`/`DELETE /conversations/{id}`. Same Origin/Host check and the same
//! identity as `/mcp` (with `[access]`, a credential or 401); the caller is the principal
//! every tool call runs as. Errors are `{"error": {code, message}}` with an HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchboard_config::ListenSettings;

use super::origin::{OriginPolicy, guard};
use super::serve::{BodyError, read_body};
use crate::agent::{AgentError, memory};
use crate::gateway::Gateway;
use crate::principal::{Face, Peer, Principal};

struct AgentFace {
    gateway: Gateway,
    max_body_bytes: usize,
    body_read_timeout: Duration,
}

/// The agent's routes (answered with a clear error while `[agent]` is not configured).
pub(crate) fn router(gateway: Gateway, listen: &ListenSettings) -> Router {
    let state = Arc::new(AgentFace {
        gateway,
        max_body_bytes: listen.max_body_bytes,
        body_read_timeout: listen.body_read_timeout,
    });
    Router::new()
        .route("/query", post(query))
        .route(
            "/conversations/{id}",
            get(get_conversation).delete(delete_conversation),
        )
        .with_state(state)
        .layer(middleware::from_fn_with_state(
            Arc::new(OriginPolicy::new(listen)),
            guard,
        ))
}

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn refuse(error: &AgentError) -> Response {
    reply(error.http_status(), error.to_json())
}

/// The caller, as `/mcp` would see it; `Err` is the 401.
async fn principal(
    state: &AgentFace,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Principal, Response> {
    let session = match peer {
        Some(addr) => format!("agent:{addr}"),
        None => "agent:unknown".to_owned(),
    };
    let peer = Peer {
        addr: peer,
        user: None,
    };
    let Some(auth) = state.gateway.authenticator() else {
        return Ok(Principal::anonymous_stateless(Face::Http, session, peer));
    };
    match auth.authenticate(headers).await {
        Ok(Some(identity)) => Ok(Principal::authenticated(
            Face::Http,
            session,
            peer,
            &identity,
        )),
        Ok(None) => Ok(Principal::anonymous_stateless(Face::Http, session, peer)),
        Err(error) => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            let mut response = reply(
                401,
                json!({ "error": { "code": "unauthorized", "message": error.to_string() } }),
            );
            if let Ok(value) = header::HeaderValue::from_str(&auth.challenge(host, &error)) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            Err(response)
        }
    }
}

fn peer_of(request: &axum::extract::Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

async fn query(State(state): State<Arc<AgentFace>>, request: axum::extract::Request) -> Response {
    let peer = peer_of(&request);
    let (parts, body) = request.into_parts();
    let principal = match principal(&state, &parts.headers, peer).await {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    if state.gateway.agent().is_none() {
        return refuse(&AgentError::NotConfigured);
    }
    let body = match read_body(body, state.max_body_bytes, state.body_read_timeout).await {
        Ok(body) => body,
        Err(error) => {
            let status = match error {
                BodyError::TooLarge(_) => 413,
                BodyError::TooSlow(_) => 408,
                BodyError::Broken(_) => 400,
            };
            return reply(
                status,
                json!({ "error": { "code": "bad_request", "message": error.to_string() } }),
            );
        }
    };
    query_as(&state.gateway, principal, &body).await
}

/// Answers a query body as `principal` (also the console's chat, `admin.rs`).
pub(super) async fn query_as(gateway: &Gateway, principal: Principal, body: &[u8]) -> Response {
    if gateway.agent().is_none() {
        return refuse(&AgentError::NotConfigured);
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Value::Object(object),
        Ok(_) => {
            return refuse(&AgentError::BadRequest(
                "the body must be a JSON object: {\"query\": \"…\", \"conversation_id\": \"…\"}"
                    .into(),
            ));
        }
        Err(error) => {
            return refuse(&AgentError::BadRequest(format!(
                "the body is not JSON: {error}"
            )));
        }
    };
    let Some(text) = request.get("query").and_then(Value::as_str) else {
        return refuse(&AgentError::BadRequest(
            "`query` (a string) is required".into(),
        ));
    };
    let conversation = match request.get("conversation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.as_str()),
        Some(_) => {
            return refuse(&AgentError::BadRequest(
                "`conversation_id` must be a string".into(),
            ));
        }
    };
    let ctx = crate::agent::agent_ctx(principal, tokio_util::sync::CancellationToken::new());
    // The client going away drops this future, and with it the calls in flight.
    match gateway.ask(&ctx, text, conversation).await {
        Ok(answer) => reply(200, answer.to_json()),
        Err(error) => refuse(&error),
    }
}

async fn conversation_principal(
    state: &AgentFace,
    request: axum::extract::Request,
    id: &str,
) -> Result<(Principal, Arc<crate::agent::Agent>), Response> {
    let peer = peer_of(&request);
    let (parts, _) = request.into_parts();
    let principal = principal(state, &parts.headers, peer).await?;
    let Some(agent) = state.gateway.agent().cloned() else {
        return Err(refuse(&AgentError::NotConfigured));
    };
    if !memory::valid_id(id) {
        return Err(refuse(&AgentError::NotFound(id.to_owned())));
    }
    Ok((principal, agent))
}

async fn get_conversation(
    State(state): State<Arc<AgentFace>>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (principal, agent) = match conversation_principal(&state, request, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    conversation_as(&agent, &principal, id, false).await
}

/// Shows (`delete`: forgets) `principal`'s conversation `id`.
pub(super) async fn conversation_as(
    agent: &crate::agent::Agent,
    principal: &Principal,
    id: String,
    delete: bool,
) -> Response {
    if !memory::valid_id(&id) {
        return refuse(&AgentError::NotFound(id));
    }
    if delete {
        return match agent.memory().delete(principal.id(), &id).await {
            Ok(true) => reply(200, json!({ "deleted": id })),
            Ok(false) => refuse(&AgentError::NotFound(id)),
            Err(error) => refuse(&AgentError::Memory(error)),
        };
    }
    match agent.memory().load(principal.id(), &id).await {
        Ok(Some(messages)) => reply(
            200,
            json!({
                "conversation_id": id,
                "messages": messages.iter().map(memory::Message::to_json).collect::<Vec<_>>(),
            }),
        ),
        Ok(None) => refuse(&AgentError::NotFound(id)),
        Err(error) => refuse(&AgentError::Memory(error)),
    }
}

async fn delete_conversation(
    State(state): State<Arc<AgentFace>>,
    Path(id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (principal, agent) = match conversation_principal(&state, request, &id).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    conversation_as(&agent, &principal, id, true).await
}
