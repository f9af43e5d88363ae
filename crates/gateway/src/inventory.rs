//! The gateway's side of the capability registry (`registry/`): every list a server
//! reads is observed there, drift alerts go out (log, metric, webhook on the task
//! tracker), an admin's approval reaches the catalog and the clients (`list_changed`), and
//! lists older than `[registry] list_ttl_ms` are re-read from running servers.

use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{ListKind, ServerLists};
use crate::gateway::Gateway;
use crate::registry::{ApproveError, Observed};
use crate::server::Server;

impl Gateway {
    /// Hands `server`'s current lists to the registry (`fresh`: just read from its
    /// upstream; otherwise seeded from the last known version). Sends the drift webhook
    /// when the server drifted to a new version. The caller rebuilds the catalog.
    pub(crate) fn observe_lists(&self, server: &Arc<Server>, fresh: bool) -> Observed {
        let registry = &self.inner.registry;
        if fresh {
            registry.count_upstream_read(&server.name);
        }
        let observed = registry.observe(&server.name, server.policy().pin, server.lists(), fresh);
        if let Some(drift) = &observed.drift
            && let Some(call) = registry.webhook().and_then(|hook| hook.call(drift))
        {
            drop(self.spawn(call));
        }
        observed
    }

    /// What the catalog shows of `server` (the registry's view, or the server's own lists
    /// before the registry saw any).
    pub(crate) fn shown_lists(&self, server: &Server) -> Arc<ServerLists> {
        self.inner
            .registry
            .shown(&server.name)
            .unwrap_or_else(|| server.lists())
    }

    /// Approves `version` of `server` (its newest without one) and tells clients whose
    /// lists that changes. Returns the approved version.
    pub fn approve_version(&self, server: &str, version: Option<u64>) -> Result<u64, ApproveError> {
        let approved = self.inner.registry.approve(server, version)?;
        self.announce_lists(&[ListKind::Tools]);
        Ok(approved)
    }

    /// The registry (history, diffs, status).
    pub fn registry(&self) -> &crate::registry::Registry {
        &self.inner.registry
    }
}

/// With `[registry] list_ttl_ms`, re-reads the lists of running servers whose lists are
/// older than the TTL, through the same coalescing re-list path as `list_changed`
/// (`relist.rs`). Dormant servers are not started for it. Owned by the gateway's tracker
/// and shutdown token.
pub(crate) fn spawn_ttl_refresher(gateway: &Gateway) {
    let Some(ttl) = gateway.inner.registry.settings().list_ttl else {
        return;
    };
    let inner = Arc::downgrade(&gateway.inner);
    let shutdown = gateway.inner.shutdown.clone();
    let tick = (ttl / 4).max(Duration::from_millis(250));
    gateway.spawn(async move {
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let Some(inner) = inner.upgrade() else { return };
            let gateway = Gateway { inner };
            for name in gateway.inner.registry.stale(ttl) {
                let Some(server) = gateway.server(&name).filter(|s| s.is_connected()) else {
                    continue;
                };
                // Tools always; prompts and resources when the server has some (a server
                // without the capability would answer every re-read with an error).
                let lists = server.lists();
                let kinds = [
                    (ListKind::Tools, true),
                    (ListKind::Prompts, !lists.prompts.is_empty()),
                    (
                        ListKind::Resources,
                        !lists.resources.is_empty() || !lists.templates.is_empty(),
                    ),
                ];
                for (kind, _) in kinds.into_iter().filter(|(_, has)| *has) {
                    crate::relist::list_changed(&gateway, server.clone(), kind);
                }
            }
        }
    });
}
