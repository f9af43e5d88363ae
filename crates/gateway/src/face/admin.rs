//! The admin REST API under `/admin`, on the serve listener. Who may use it: the static
//! bearer token (`[gateway] admin_token`), or any identity of `[access]` (API key, JWT)
//! holding the admin role (`[access] admin_role`, default `admin`): 401 without a valid
//! credential, 403 for a valid one without the role. Without either the API is not
//! mounted. JSON in and out.
//!
//! - `GET /admin/servers` — every server with state, era, last error, in-flight calls
//! - `POST /admin/servers` — `{"name", "server": {.mcp.json entry}}`: register (persisted
//!   before it is applied; 507 and not applied when the state file cannot be written)
//! - `DELETE /admin/servers/{name}` — remove (calls in flight finish first; 507 and not
//!   removed when the state file cannot be written)
//! - `POST /admin/servers/{name}/reload` — restart without losing calls
//! - `POST /admin/servers/{name}/stop` — finish the calls in flight (up to the drain
//!   deadline), stop the instances; the server stays registered, dormant (its next call
//!   starts it)
//! - `POST /admin/servers/{name}/start` — start it now (502 when it does not start)
//! - `GET /admin/tools` — the merged catalog (exposed name → server, tool)
//! - `GET /admin/config` — the watched file's status (valid, last error, reloads), with the
//!   discovery sources' (`discovery`)
//! - `GET /admin/discovery` — each `[[discovery]]` source: servers held, errors by file,
//!   name conflicts, servers that did not start
//! - `GET /admin/audit` — the audit log's records, filtered; `GET /admin/audit/verify` —
//!   the whole log verified now (`admin_audit.rs`)
//! - `GET /admin/events` — live calls as Server-Sent Events; `GET /admin/events/errors` —
//!   recent failures (`admin_events.rs`)
//! - `GET /admin/tools/{name}` — one catalog tool as clients see it (schemas included)
//! - `GET /admin/agent` — whether `[agent]` is configured (always 200);
//!   `POST /admin/agent/query`, `GET|DELETE /admin/agent/conversations/{id}` — the router
//!   agent for the console's chat page, as the admin's identity (`agent.rs`)
//! - `/admin/registry…` — versions, diffs, drift, quarantine and approval of servers'
//!   lists (`admin_registry.rs`)
//! - `GET /admin/approvals`, `POST /admin/approvals/{id}/approve|deny` — approvals
//!   (`admin_approvals.rs`)
//! - `GET /admin/secrets`, `PUT|DELETE /admin/secrets/{name}`, `POST
//!   /admin/secrets/rotate` — the encrypted secret store (`admin_secrets.rs`)
//! - `GET /ui/` — the web console (`console/`), which uses this API under `/ui/admin/…`

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchboard_config::ListenSettings;

use super::serve::{BodyError, read_body};
use crate::gateway::Gateway;
use crate::roster::RosterError;

#[derive(Clone)]
struct AdminState {
    gateway: Gateway,
    /// The static admin token's digest, when one is configured.
    token_digest: Option<[u8; 32]>,
    max_body_bytes: usize,
    body_read_timeout: std::time::Duration,
}

impl AdminState {
    /// A request body within the admin API's size and time bounds, or the refusal to
    /// answer with (408 too slow, 413 too large).
    async fn read(&self, body: axum::body::Body) -> Result<bytes::Bytes, Response> {
        read_body(body, self.max_body_bytes, self.body_read_timeout)
            .await
            .map_err(|error| match error {
                BodyError::TooSlow(_) => {
                    problem(StatusCode::REQUEST_TIMEOUT, "request body too slow")
                }
                error => problem(StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
            })
    }
}

fn json_reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    json_reply(status, json!({ "error": message.into() }))
}

/// The `/admin` routes, or `None` when neither an admin token nor `[access]` identities
/// are configured.
pub fn router(gateway: Gateway, listen: &ListenSettings) -> Option<Router> {
    let token = gateway.settings().admin_token.clone();
    if token.is_none() && gateway.authenticator().is_none() {
        return None;
    }
    let state = AdminState {
        gateway,
        token_digest: token.map(|token| Sha256::digest(token.expose().as_bytes()).into()),
        max_body_bytes: listen.max_body_bytes,
        body_read_timeout: listen.body_read_timeout,
    };
    let api = Router::new()
        .route("/admin/servers", get(list_servers).post(register_server))
        .route(
            "/admin/servers/{name}",
            axum::routing::delete(remove_server),
        )
        .route("/admin/servers/{name}/reload", post(reload_server))
        .route("/admin/servers/{name}/stop", post(stop_server))
        .route("/admin/servers/{name}/start", post(start_server))
        .route("/admin/events", get(events_stream))
        .route("/admin/events/errors", get(events_errors))
        .route("/admin/agent", get(agent_status))
        .route("/admin/agent/query", post(agent_query))
        .route(
            "/admin/agent/conversations/{id}",
            get(agent_conversation).delete(agent_forget),
        )
        .route("/admin/tools", get(list_tools))
        .route("/admin/rollouts", get(list_rollouts))
        .route("/admin/tools/search", get(search_tools))
        .route("/admin/tools/{name}", get(one_tool))
        .route("/admin/config", get(config_status))
        .route("/admin/discovery", get(discovery_status))
        .route("/admin/audit", get(audit_records))
        .route("/admin/audit/verify", get(audit_verify))
        .route("/admin/registry", get(registry_status))
        .route("/admin/registry/{server}/history", get(registry_history))
        .route(
            "/admin/registry/{server}/versions/{version}",
            get(registry_version),
        )
        .route("/admin/registry/{server}/diff", get(registry_diff))
        .route("/admin/registry/{server}/approve", post(registry_approve))
        .route("/admin/approvals", get(list_approvals))
        .route("/admin/approvals/{id}/approve", post(approve))
        .route("/admin/approvals/{id}/deny", post(deny))
        .route("/admin/secrets", get(list_secrets))
        .route("/admin/secrets/rotate", post(rotate_secrets))
        .route(
            "/admin/secrets/{name}",
            axum::routing::put(put_secret).delete(delete_secret),
        );
    // The web console: its page, and the same API again under `/ui/admin/…`, all behind
    // the same authorization (`console::edge` admits HTTP Basic there).
    let routes = api
        .clone()
        .merge(super::console::assets())
        .nest(super::console::PREFIX, api)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn(super::console::edge))
        .with_state(state);
    Some(routes)
}

/// Who passed [`authorize`]: `admin_token`, or the `[access]` identity's name (recorded as
/// who decided an approval).
#[derive(Clone, Debug)]
struct Admin(String);

/// The static token (digests compared so timing does not leak it), else an `[access]`
/// identity with the admin role.
async fn authorize(State(state): State<AdminState>, mut request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(|token| -> [u8; 32] { Sha256::digest(token.as_bytes()).into() });
    let by_token = match (presented, state.token_digest) {
        (Some(presented), Some(expected)) => {
            presented
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        }
        _ => false,
    };
    if by_token {
        request.extensions_mut().insert(Admin("admin_token".into()));
        request.extensions_mut().insert(crate::principal::Identity {
            id: "admin_token".into(),
            tenant: None,
            roles: Vec::new(),
        });
        return next.run(request).await;
    }
    let Some(access) = state.gateway.authenticator() else {
        return problem(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    };
    match access.authenticate(request.headers()).await {
        Ok(Some(identity)) if identity.roles.iter().any(|r| r == access.admin_role()) => {
            request.extensions_mut().insert(Admin(identity.id.clone()));
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Ok(Some(identity)) => problem(
            StatusCode::FORBIDDEN,
            format!(
                "`{}` lacks the `{}` role the admin API requires",
                identity.id,
                access.admin_role()
            ),
        ),
        Ok(None) => problem(
            StatusCode::UNAUTHORIZED,
            "the admin API requires a credential",
        ),
        Err(error) => problem(StatusCode::UNAUTHORIZED, error.to_string()),
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive (RFC 9110 §11.1) and may be followed by more than one space.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn list_servers(State(state): State<AdminState>) -> Response {
    json_reply(
        StatusCode::OK,
        json!({ "servers": state.gateway.describe_servers_for_operators() }),
    )
}

async fn register_server(State(state): State<AdminState>, body: axum::body::Body) -> Response {
    let body = match state.read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "body must be JSON: {\"name\": ..., \"server\": {...}}",
        );
    };
    let (Some(name), Some(definition)) =
        (body.get("name").and_then(Value::as_str), body.get("server"))
    else {
        return problem(StatusCode::BAD_REQUEST, "body needs `name` and `server`");
    };
    match state.gateway.register_server(name, definition).await {
        Ok(persisted) => {
            let server = state
                .gateway
                .describe_servers_for_operators()
                .into_iter()
                .find(|s| s["name"] == name);
            json_reply(
                StatusCode::CREATED,
                json!({ "server": server, "persisted": persisted }),
            )
        }
        Err(error) => roster_problem(&error),
    }
}

async fn remove_server(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.gateway.remove_server(&name).await {
        Ok(()) => json_reply(StatusCode::OK, json!({ "removed": name })),
        Err(error) => roster_problem(&error),
    }
}

/// The one mapping of roster failures to admin API statuses. A change that could not be
/// persisted was not applied: 507 Insufficient Storage.
fn roster_problem(error: &RosterError) -> Response {
    let status = match error {
        RosterError::Invalid(_) => StatusCode::BAD_REQUEST,
        RosterError::Exists(_) => StatusCode::CONFLICT,
        RosterError::Unknown(_) => StatusCode::NOT_FOUND,
        RosterError::Start(_) => StatusCode::BAD_GATEWAY,
        RosterError::NotPersisted { .. } => StatusCode::INSUFFICIENT_STORAGE,
    };
    problem(status, error.to_string())
}

async fn reload_server(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    if state.gateway.server_state(&name).is_none() {
        return problem(StatusCode::NOT_FOUND, format!("unknown server `{name}`"));
    }
    match state.gateway.reload_server(&name, None).await {
        Ok(()) => json_reply(StatusCode::OK, json!({ "reloaded": name })),
        Err(error) => problem(StatusCode::BAD_GATEWAY, error.message),
    }
}

async fn stop_server(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.gateway.stop_server(&name).await {
        Ok(()) => json_reply(StatusCode::OK, json!({ "stopped": name })),
        Err(error) => roster_problem(&error),
    }
}

async fn start_server(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    match state.gateway.start_server(&name).await {
        Ok(()) => json_reply(StatusCode::OK, json!({ "started": name })),
        Err(error) => roster_problem(&error),
    }
}

async fn events_stream(State(state): State<AdminState>) -> Response {
    super::admin_events::stream(&state.gateway)
}

async fn events_errors(State(state): State<AdminState>) -> Response {
    let (status, body) = super::admin_events::errors(&state.gateway);
    json_reply(status, body)
}

/// The admin as the agent's caller: the `[access]` identity that passed, or
/// `admin_token` (no tenant, no roles) for the static token.
fn console_principal(identity: &crate::principal::Identity) -> crate::principal::Principal {
    crate::principal::Principal::authenticated(
        crate::principal::Face::Http,
        "console",
        crate::principal::Peer {
            addr: None,
            user: None,
        },
        identity,
    )
}

async fn agent_status(State(state): State<AdminState>) -> Response {
    let body = match state.gateway.agent() {
        Some(_) => json!({ "configured": true }),
        None => json!({
            "configured": false,
            "error": crate::agent::AgentError::NotConfigured.to_string(),
        }),
    };
    json_reply(StatusCode::OK, body)
}

async fn agent_query(
    State(state): State<AdminState>,
    axum::Extension(identity): axum::Extension<crate::principal::Identity>,
    body: axum::body::Body,
) -> Response {
    let body = match state.read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    super::agent::query_as(&state.gateway, console_principal(&identity), &body).await
}

async fn agent_conversation(
    State(state): State<AdminState>,
    axum::Extension(identity): axum::Extension<crate::principal::Identity>,
    Path(id): Path<String>,
) -> Response {
    agent_memory(&state, identity, id, false).await
}

async fn agent_forget(
    State(state): State<AdminState>,
    axum::Extension(identity): axum::Extension<crate::principal::Identity>,
    Path(id): Path<String>,
) -> Response {
    agent_memory(&state, identity, id, true).await
}

async fn agent_memory(
    state: &AdminState,
    identity: crate::principal::Identity,
    id: String,
    delete: bool,
) -> Response {
    let Some(agent) = state.gateway.agent().cloned() else {
        return super::agent::refuse(&crate::agent::AgentError::NotConfigured);
    };
    let principal = console_principal(&identity);
    super::agent::conversation_as(&agent, &principal, id, delete).await
}

async fn list_tools(State(state): State<AdminState>) -> Response {
    let catalog = state.gateway.catalog();
    let tools: Vec<Value> = catalog
        .tools
        .iter()
        .filter_map(|tool| {
            let exposed = tool.name();
            let target = catalog.resolve_tool(exposed)?;
            Some(json!({ "name": exposed, "server": target.server, "tool": target.name, "description": tool.get("description") }))
        })
        .collect();
    json_reply(StatusCode::OK, json!({ "tools": tools }))
}

/// `GET /admin/tools/{name}`: the tool as the catalog shows it, with its server.
async fn one_tool(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let catalog = state.gateway.catalog();
    let found = catalog.tools.iter().find(|tool| tool.name() == name);
    let (Some(tool), Some(target)) = (found, catalog.resolve_tool(&name)) else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no tool `{name}` in the catalog"),
        );
    };
    json_reply(
        StatusCode::OK,
        json!({ "name": name, "server": target.server, "tool": target.name, "definition": tool.to_value() }),
    )
}

/// `GET /admin/rollouts`: each rollout's versions, rule, tenants seen and calls per
/// version (`rollouts.rs`).
async fn list_rollouts(State(state): State<AdminState>) -> Response {
    json_reply(StatusCode::OK, state.gateway.rollouts_status())
}

/// `GET /admin/tools/search?q=…&limit=…`: ranked tool search over the whole catalog.
async fn search_tools(
    State(state): State<AdminState>,
    axum::extract::Query(params): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let Some(query) = params.get("q").filter(|q| !q.trim().is_empty()) else {
        return json_reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": "missing query: /admin/tools/search?q=…" }),
        );
    };
    let limit = match params.get("limit").map(|l| l.parse::<u64>()) {
        None => None,
        Some(Ok(limit)) => Some(limit),
        Some(Err(_)) => {
            return json_reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "limit must be a number" }),
            );
        }
    };
    let limit = crate::search::clamp_limit(limit);
    let tools: Vec<Value> = state
        .gateway
        .search_tools(query, limit)
        .await
        .iter()
        .map(crate::search::Found::to_admin_json)
        .collect();
    json_reply(StatusCode::OK, json!({ "query": query, "tools": tools }))
}

async fn config_status(State(state): State<AdminState>) -> Response {
    let mut status = state.gateway.config_status().to_json();
    status["discovery"] = state.gateway.discovery_status();
    json_reply(StatusCode::OK, status)
}

async fn discovery_status(State(state): State<AdminState>) -> Response {
    json_reply(
        StatusCode::OK,
        json!({ "sources": state.gateway.discovery_status() }),
    )
}

fn answer((status, body): super::admin_registry::Answer) -> Response {
    json_reply(status, body)
}

async fn registry_status(State(state): State<AdminState>) -> Response {
    answer(super::admin_registry::status(&state.gateway))
}

async fn registry_history(State(state): State<AdminState>, Path(server): Path<String>) -> Response {
    answer(super::admin_registry::history(&state.gateway, &server))
}

async fn registry_version(
    State(state): State<AdminState>,
    Path((server, version)): Path<(String, u64)>,
) -> Response {
    answer(super::admin_registry::version(
        &state.gateway,
        &server,
        version,
    ))
}

async fn registry_diff(
    State(state): State<AdminState>,
    Path(server): Path<String>,
    axum::extract::Query(params): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    answer(super::admin_registry::diff(
        &state.gateway,
        &server,
        &params,
    ))
}

async fn registry_approve(
    State(state): State<AdminState>,
    Path(server): Path<String>,
    body: axum::body::Body,
) -> Response {
    let body = match state.read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    answer(super::admin_registry::approve(&state.gateway, &server, &body).await)
}

async fn audit_records(
    State(state): State<AdminState>,
    axum::extract::Query(params): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let (status, body) = super::admin_audit::records(&state.gateway, params).await;
    json_reply(status, body)
}

async fn audit_verify(
    State(state): State<AdminState>,
    axum::extract::Query(params): axum::extract::Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let (status, body) = super::admin_audit::verify(&state.gateway, params).await;
    json_reply(status, body)
}

async fn list_approvals(State(state): State<AdminState>) -> Response {
    let (status, body) = super::admin_approvals::list(&state.gateway);
    json_reply(status, body)
}

async fn approve(
    State(state): State<AdminState>,
    axum::Extension(admin): axum::Extension<Admin>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Response {
    decide(state, admin, id, true, body).await
}

async fn deny(
    State(state): State<AdminState>,
    axum::Extension(admin): axum::Extension<Admin>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Response {
    decide(state, admin, id, false, body).await
}

async fn decide(
    state: AdminState,
    admin: Admin,
    id: String,
    approve: bool,
    body: axum::body::Body,
) -> Response {
    let body = match state.read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let (status, body) =
        super::admin_approvals::decide(&state.gateway, &id, approve, &admin.0, &body).await;
    json_reply(status, body)
}

async fn list_secrets(State(state): State<AdminState>) -> Response {
    let (status, body) = super::admin_secrets::list(&state.gateway).await;
    json_reply(status, body)
}

async fn put_secret(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> Response {
    let body = match state.read(body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let (status, body) = super::admin_secrets::put(&state.gateway, name, &body).await;
    json_reply(status, body)
}

async fn delete_secret(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let (status, body) = super::admin_secrets::delete(&state.gateway, name).await;
    json_reply(status, body)
}

async fn rotate_secrets(State(state): State<AdminState>) -> Response {
    let (status, body) = super::admin_secrets::rotate(&state.gateway).await;
    json_reply(status, body)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER  abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }
}
