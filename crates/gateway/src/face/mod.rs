//! Downstream faces: how clients reach the gateway. Both faces serve legacy sessions and
//! modern stateless requests side by side and share the era rules below.

pub mod admin;
mod admin_approvals;
mod admin_audit;
mod admin_events;
mod admin_registry;
mod admin_secrets;
mod agent;
mod app;
mod cluster;
mod console;
pub mod http;
mod origin;
mod probes;
pub mod serve;
mod session;

pub use app::app;
pub mod stdio;
mod ws;

use serde_json::{Value, json};
use switchboard_protocol::{Message, ProtocolVersion, RequestId, RpcError, meta};

use crate::catalog::ListKind;
use crate::gateway::Change;

/// The per-request identity of a modern request, validated.
pub(crate) struct ModernMeta {
    pub(crate) version: String,
    pub(crate) capabilities: Value,
    pub(crate) client_info: Option<Value>,
}

/// Whether a request is modern: it declares a protocol version in `_meta`.
/// A client's on/off choice (`meta_tools` in the HTTP face's URL, `--meta-tools` for
/// `switchboard stdio`): `on`, `true`, `1` or `off`, `false`, `0`.
pub fn parse_switch(value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(format!("expected on or off, not `{other}`")),
    }
}

pub(crate) fn declared_version(params: Option<&Value>) -> Option<&str> {
    meta::get_str(params, meta::PROTOCOL_VERSION)
}

/// Validates the required modern `_meta` fields.
pub(crate) fn modern_meta(params: Option<&Value>) -> Result<ModernMeta, RpcError> {
    let version = declared_version(params).ok_or_else(|| {
        RpcError::invalid_params(format!("missing _meta[\"{}\"]", meta::PROTOCOL_VERSION))
    })?;
    if !ProtocolVersion::is_modern(version) {
        return Err(RpcError::unsupported_version(
            version,
            &ProtocolVersion::MODERN_ALL,
        ));
    }
    let meta = meta::get(params).expect("a declared version implies _meta");
    let capabilities = meta
        .get(meta::CLIENT_CAPABILITIES)
        .filter(|c| c.is_object())
        .cloned()
        .ok_or_else(|| {
            RpcError::invalid_params(format!("missing _meta[\"{}\"]", meta::CLIENT_CAPABILITIES))
        })?;
    Ok(ModernMeta {
        version: version.to_owned(),
        capabilities,
        client_info: meta.get(meta::CLIENT_INFO).cloned(),
    })
}

/// Methods the modern era defines: anything else (including the removed `initialize`,
/// `ping`, `logging/setLevel` and `resources/(un)subscribe`) is -32601, and 404 over HTTP.
/// The tasks extension's methods are routed (the pipeline checks the negotiation).
pub(crate) fn is_modern_method(method: &str) -> bool {
    matches!(
        method,
        "server/discover"
            | "tools/list"
            | "tools/call"
            | "prompts/list"
            | "prompts/get"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "completion/complete"
            | "subscriptions/listen"
    ) || crate::task_ext::METHODS.contains(&method)
}

/// Legacy sessions set their log level once (`logging/setLevel`); modern servers take it
/// per request (`_meta["io.modelcontextprotocol/logLevel"]`) and MUST NOT log without it.
/// Records the level of a `logging/setLevel`, and stamps it on every other request of the
/// session that does not carry one, so modern upstreams log to legacy clients too.
pub(crate) fn apply_log_level(
    level: &parking_lot::Mutex<Option<String>>,
    method: &str,
    params: &mut Option<Value>,
) {
    if method == "logging/setLevel" {
        let requested = params
            .as_ref()
            .and_then(|p| p.get("level"))
            .and_then(Value::as_str);
        if let Some(requested) = requested {
            *level.lock() = Some(requested.to_owned());
        }
        return;
    }
    let Some(current) = level.lock().clone() else {
        return;
    };
    let params = params.get_or_insert_with(|| json!({}));
    if params.is_object() {
        meta::get_mut(params)
            .entry(meta::LOG_LEVEL)
            .or_insert(Value::String(current));
    }
}

/// A modern `subscriptions/listen` filter.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListenFilter {
    tools: bool,
    prompts: bool,
    resources: bool,
    uris: Vec<String>,
    /// Task ids asked for (`taskIds`), as the client sent them.
    task_ids: Vec<String>,
    /// Those the caller may watch, with where each leads (`resolve_tasks`).
    tasks: Vec<(String, crate::task_ext::TaskRoute)>,
}

impl ListenFilter {
    pub(crate) fn parse(params: Option<&Value>) -> ListenFilter {
        let notifications = params.and_then(|p| p.get("notifications"));
        let flag = |name: &str| {
            notifications
                .and_then(|n| n.get(name))
                .and_then(Value::as_bool)
                == Some(true)
        };
        let strings = |name: &str| -> Vec<String> {
            notifications
                .and_then(|n| n.get(name))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        ListenFilter {
            tools: flag("toolsListChanged"),
            prompts: flag("promptsListChanged"),
            resources: flag("resourcesListChanged"),
            uris: strings("resourceSubscriptions"),
            task_ids: strings("taskIds"),
            tasks: Vec::new(),
        }
    }

    /// Keeps the task ids the caller may watch and starts relaying their upstreams'
    /// status (`task_notify`); the relay lasts as long as the returned value.
    pub(crate) fn resolve_tasks(
        &mut self,
        gateway: &crate::Gateway,
        ctx: &crate::ClientCtx,
    ) -> Option<crate::task_notify::TaskRelay> {
        self.tasks = gateway.resolve_task_ids(ctx, &self.task_ids);
        gateway.relay_task_status(ctx, &self.tasks)
    }

    pub(crate) fn uris(&self) -> &[String] {
        &self.uris
    }

    /// The acknowledgement: what we agreed to send.
    pub(crate) fn acknowledgement(&self, subscription: &RequestId) -> Message {
        let mut agreed = serde_json::Map::new();
        for (key, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                agreed.insert(key.into(), Value::Bool(true));
            }
        }
        if !self.uris.is_empty() {
            agreed.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        if !self.tasks.is_empty() {
            let ids: Vec<&str> = self.tasks.iter().map(|(id, _)| id.as_str()).collect();
            agreed.insert("taskIds".into(), json!(ids));
        }
        Message::notification(
            "notifications/subscriptions/acknowledged",
            Some(
                json!({ "_meta": { meta::SUBSCRIPTION_ID: subscription.to_value() }, "notifications": agreed }),
            ),
        )
    }

    /// The notification for a change, if the subscription (held by `principal`) asked
    /// for it.
    pub(crate) fn render(
        &self,
        change: &Change,
        subscription: &RequestId,
        principal: &str,
    ) -> Option<Message> {
        let (method, mut params) = match change {
            Change::SessionListChanged { session, .. } if session != principal => return None,
            Change::ListChanged { kind, .. } | Change::SessionListChanged { kind, .. } => {
                let wanted = match kind {
                    ListKind::Tools => self.tools,
                    ListKind::Prompts => self.prompts,
                    ListKind::Resources => self.resources,
                };
                if !wanted {
                    return None;
                }
                (kind.changed_notification(), json!({}))
            }
            Change::ResourceUpdated { uri, params } => {
                if !self.uris.iter().any(|u| u == uri) {
                    return None;
                }
                ("notifications/resources/updated", params.clone())
            }
            Change::Log { .. } => return None,
            Change::TaskStatus {
                server,
                task_id,
                params,
            } => {
                let (exposed, _) = self.tasks.iter().find(|(_, route)| {
                    crate::task_notify::is_route(route, server.as_deref(), task_id)
                })?;
                let mut params = params.clone();
                params["taskId"] = Value::String(exposed.clone());
                (crate::task_notify::METHOD, params)
            }
        };
        meta::get_mut(&mut params).insert(meta::SUBSCRIPTION_ID.into(), subscription.to_value());
        Some(Message::notification(method, Some(params)))
    }

    /// The graceful end of a subscription.
    pub(crate) fn completion(subscription: &RequestId) -> Message {
        Message::response(
            subscription.clone(),
            json!({ "resultType": "complete", "_meta": { meta::SUBSCRIPTION_ID: subscription.to_value() } }),
        )
    }
}

/// The notification legacy session `principal` gets for a change (resource updates only
/// when it subscribed to the URI; its own list changes and log messages only).
pub(crate) fn legacy_notification(
    change: &Change,
    subscribed: &std::collections::HashSet<String>,
    principal: &str,
) -> Option<Message> {
    match change {
        Change::ListChanged { kind, .. } => {
            Some(Message::notification(kind.changed_notification(), None))
        }
        Change::SessionListChanged { kind, session } if session == principal => {
            Some(Message::notification(kind.changed_notification(), None))
        }
        Change::SessionListChanged { .. } => None,
        Change::ResourceUpdated { uri, params } if subscribed.contains(uri) => Some(
            Message::notification("notifications/resources/updated", Some(params.clone())),
        ),
        Change::ResourceUpdated { .. } => None,
        Change::Log { params, to } if to.contains(principal) => Some(Message::notification(
            "notifications/message",
            Some(params.clone()),
        )),
        Change::Log { .. } => None,
        // Task status goes only to modern listen streams that named the task.
        Change::TaskStatus { .. } => None,
    }
}

/// Server→client requests sent to one legacy client, awaiting its answers: ids are ours
/// (`sb-N`), so they never collide with the client's own request ids.
#[derive(Default)]
pub(crate) struct PeerTable {
    pending: parking_lot::Mutex<
        std::collections::HashMap<u64, tokio::sync::oneshot::Sender<Result<Value, RpcError>>>,
    >,
    next: std::sync::atomic::AtomicU64,
}

impl PeerTable {
    /// Registers a request and returns the message to send the client.
    pub(crate) fn request(&self, request: crate::gateway::PeerRequest) -> Message {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.pending.lock().insert(id, request.reply);
        Message::request(
            RequestId::String(format!("sb-{id}")),
            request.method,
            request.params,
        )
    }

    /// Routes the client's answer to the request it answers (unknown ids are ignored).
    pub(crate) fn answer(&self, id: &RequestId, outcome: Result<Value, RpcError>) {
        let key = match id {
            RequestId::String(s) => s.strip_prefix("sb-").and_then(|n| n.parse::<u64>().ok()),
            RequestId::Number(_) => None,
        };
        if let Some(reply) = key.and_then(|k| self.pending.lock().remove(&k)) {
            let _ = reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn session_scoped_changes_reach_their_session_only() {
        let subscribed = HashSet::new();
        let log = Change::Log {
            params: json!({ "level": "info", "data": "x" }),
            to: Arc::new(BTreeSet::from(["a".to_owned()])),
        };
        assert!(legacy_notification(&log, &subscribed, "a").is_some());
        assert!(legacy_notification(&log, &subscribed, "b").is_none());
        let own = Change::SessionListChanged {
            kind: ListKind::Tools,
            session: "a".into(),
        };
        assert!(legacy_notification(&own, &subscribed, "a").is_some());
        assert!(legacy_notification(&own, &subscribed, "b").is_none());
        let filter = ListenFilter::parse(Some(
            &json!({ "notifications": { "toolsListChanged": true } }),
        ));
        let id = RequestId::Number(1.into());
        assert!(filter.render(&own, &id, "a").is_some());
        assert!(filter.render(&own, &id, "b").is_none());
        assert!(filter.render(&log, &id, "a").is_none());
    }
}
