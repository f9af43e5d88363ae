//! Task status notifications (`notifications/tasks`, the tasks extension): a client opts
//! in by naming its task ids in a `subscriptions/listen` filter (`notifications.taskIds`)
//! and then gets the whole task, under its own id, on that stream at each status change.
//!
//! The ids are opened like any task id (`task_ext`): only the caller's own live ids are
//! taken (and acknowledged); any other is left out, as a poll would answer not-found, so
//! a listen learns nothing about other callers' tasks. For upstream tasks the listen
//! opens, per owning server, a `subscriptions/listen` of its own on that server naming
//! the upstream's ids, held as long as the client's stream ([`TaskRelay`]); what the
//! upstream sends (on that stream, or on its stdio stream, unsolicited) becomes one
//! [`Change::TaskStatus`] on the gateway's broadcast, which every listen stream renders
//! for the tasks it resolved (`face::ListenFilter`). Gateway-made tasks publish theirs
//! when their record changes (`owned_tasks`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_protocol::Era;
use switchboard_upstream::{CallEvent, CallOptions};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::gateway::{Change, ClientCtx, Gateway};
use crate::task_ext::{self, TaskRoute};

/// The notification's method.
pub(crate) const METHOD: &str = "notifications/tasks";
/// Task ids one listen may name (more are left out of the acknowledgement).
pub(crate) const MAX_TASK_IDS: usize = 100;

/// The upstream listens a client's listen stream holds; dropping it ends them.
pub(crate) struct TaskRelay {
    _stop: DropGuard,
}

impl Gateway {
    /// The caller's task ids among `ids` (at most [`MAX_TASK_IDS`]), each with where it
    /// leads; ids the caller cannot use are left out.
    pub(crate) fn resolve_task_ids(
        &self,
        ctx: &ClientCtx,
        ids: &[String],
    ) -> Vec<(String, TaskRoute)> {
        if !task_ext::declared(ctx) {
            return Vec::new();
        }
        ids.iter()
            .take(MAX_TASK_IDS)
            .filter_map(|id| Some((id.clone(), self.open_task_id(ctx, id).ok()?)))
            .collect()
    }

    /// A task changed: its notification params (the task under the owner's id) go to the
    /// listen streams. `server` is the owning upstream, `None` a gateway-made task.
    pub(crate) fn task_status_changed(&self, server: Option<String>, params: Value) {
        let Some(task_id) = params.get("taskId").and_then(Value::as_str) else {
            return;
        };
        let task_id = task_id.to_owned();
        let _ = self.inner.changes.send(Change::TaskStatus {
            server,
            task_id,
            params,
        });
    }

    /// Opens, per server owning some of `tasks`, a listen on that server for their
    /// status; they end when the returned relay is dropped (with the client's stream).
    pub(crate) fn relay_task_status(
        &self,
        ctx: &ClientCtx,
        tasks: &[(String, TaskRoute)],
    ) -> Option<TaskRelay> {
        let mut by_server: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, route) in tasks {
            if let TaskRoute::Upstream {
                server,
                upstream_id,
            } = route
            {
                by_server
                    .entry(server.clone())
                    .or_default()
                    .push(upstream_id.clone());
            }
        }
        if by_server.is_empty() {
            return None;
        }
        let stop = ctx.cancel.child_token();
        for (server, upstream_ids) in by_server {
            let gateway = self.clone();
            let stop = stop.clone();
            // Tracked, and ends with the client's stream (`stop`).
            self.spawn(async move { gateway.listen_upstream(server, upstream_ids, stop).await });
        }
        Some(TaskRelay {
            _stop: stop.drop_guard(),
        })
    }

    async fn listen_upstream(
        &self,
        name: String,
        upstream_ids: Vec<String>,
        stop: CancellationToken,
    ) {
        let Some(server) = self.server(&name) else {
            return;
        };
        let upstream = tokio::select! {
            upstream = server.upstream(&self.inner.era_cache) => match upstream {
                Ok(upstream) if upstream.era() == Era::Modern => upstream,
                _ => return,
            },
            () = stop.cancelled() => return,
        };
        let (events_tx, mut events) = mpsc::channel(16);
        let mut options = CallOptions::new(Duration::from_secs(365 * 24 * 3600));
        options.cancel = stop.clone();
        options.events = Some(events_tx);
        options.client_capabilities = Some(json!({ "extensions": { task_ext::EXTENSION: {} } }));
        let listen = upstream.request(
            "subscriptions/listen",
            Some(json!({ "notifications": { "taskIds": upstream_ids } })),
            options,
        );
        tokio::pin!(listen);
        loop {
            tokio::select! {
                _ = &mut listen => break,
                () = stop.cancelled() => break,
                Some(event) = events.recv() => {
                    if let CallEvent::Notification { method, params: Some(params) } = event
                        && method == METHOD
                    {
                        self.task_status_changed(Some(name.clone()), params);
                    }
                }
            }
        }
    }
}

/// Whether a change about (`server`, `task_id`) is the task `route` leads to.
pub(crate) fn is_route(route: &TaskRoute, server: Option<&str>, task_id: &str) -> bool {
    match route {
        TaskRoute::Upstream {
            server: owner,
            upstream_id,
        } => server == Some(owner.as_str()) && upstream_id == task_id,
        TaskRoute::Owned { id } => server.is_none() && id == task_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_their_own_changes_only() {
        let upstream = TaskRoute::Upstream {
            server: "fx".into(),
            upstream_id: "t1".into(),
        };
        assert!(is_route(&upstream, Some("fx"), "t1"));
        assert!(!is_route(&upstream, Some("other"), "t1"));
        assert!(!is_route(&upstream, None, "t1"));
        let owned = TaskRoute::Owned { id: "r1".into() };
        assert!(is_route(&owned, None, "r1"));
        assert!(!is_route(&owned, Some("fx"), "r1"));
    }
}
