//! The gateway's side of the capability registry (`registry/`): every list a server
//! reads is observed there, drift alerts go out (log, metric, webhook on the task
//! tracker), an admin's approval reaches the catalog and the clients (`list_changed`), and
//! lists older than `[registry] list_ttl_ms` are re-read from running servers.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::{Decision, Record};
use crate::catalog::{ListKind, ServerLists};
use crate::gateway::Gateway;
use crate::registry::{ApproveError, Observed, Quarantined, StoreError};
use crate::server::Server;

impl Gateway {
    /// Hands `server`'s current lists to the registry (`fresh`: just read from its
    /// upstream; otherwise seeded from the last known version). Sends the drift webhook
    /// when the server drifted to a new version. The caller rebuilds the catalog.
    ///
    /// A new version is committed to the database before this returns: the observation
    /// runs on the blocking pool, not on a runtime thread.
    pub(crate) async fn observe_lists(&self, server: &Arc<Server>, fresh: bool) -> Observed {
        if fresh {
            self.inner.registry.count_upstream_read(&server.name);
        }
        let gateway = self.clone();
        let (name, pin, lists) = (server.name.clone(), server.policy().pin, server.lists());
        let observed = tokio::task::spawn_blocking(move || {
            gateway.inner.registry.observe(&name, pin, lists, fresh)
        })
        .await
        .unwrap_or_else(|error| {
            tracing::error!(server = %server.name, %error, "registry observation failed");
            Observed::default()
        });
        let registry = &self.inner.registry;
        for held in &observed.quarantined {
            self.audit_registry(quarantine_record(held));
        }
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
    /// lists that changes. Returns the approved version. The approval is committed on the
    /// blocking pool, not on a runtime thread.
    pub async fn approve_version(
        &self,
        server: &str,
        version: Option<u64>,
    ) -> Result<u64, ApproveError> {
        let gateway = self.clone();
        let name = server.to_owned();
        let approved =
            tokio::task::spawn_blocking(move || gateway.inner.registry.approve(&name, version))
                .await
                .map_err(|error| ApproveError::Interrupted(error.to_string()))??;
        self.audit_registry(approval_record(server, approved));
        self.announce_lists(&[ListKind::Tools]);
        Ok(approved)
    }

    /// Appends a registry decision to the audit log, when there is one (in the background:
    /// the decision is already committed in the registry).
    fn audit_registry(&self, record: Record) {
        let Some(log) = self.inner.chain_parts.audit_log().cloned() else {
            return;
        };
        drop(self.spawn(async move {
            if let Err(error) = log.append(record).await {
                tracing::error!(%error, "registry decision not recorded in the audit log");
            }
        }));
    }

    /// Runs a registry write on the blocking pool: a redb commit waits on the disk and
    /// must not hold a runtime thread.
    pub(crate) async fn registry_write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&crate::registry::Registry) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let gateway = self.clone();
        tokio::task::spawn_blocking(move || write(&gateway.inner.registry))
            .await
            .map_err(|error| StoreError::Interrupted(error.to_string()))?
    }

    /// The registry (history, diffs, status).
    pub fn registry(&self) -> &crate::registry::Registry {
        &self.inner.registry
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The audit record of a tool quarantined by pinning (method `registry/quarantine`).
fn quarantine_record(held: &Quarantined) -> Record {
    Record {
        time_ms: now_ms(),
        principal: "gateway".into(),
        session: "registry".into(),
        face: "registry",
        method: "registry/quarantine".into(),
        server: Some(held.server.clone()),
        tool: Some(held.tool.clone()),
        decision: Decision::Denied {
            step: "registry",
            rule: Some(held.reason()),
        },
        ..Record::default()
    }
}

/// The audit record of an admin's approval (method `registry/approve`; the approval is
/// named `SERVER@VERSION`).
fn approval_record(server: &str, version: u64) -> Record {
    Record {
        time_ms: now_ms(),
        principal: "admin".into(),
        session: "registry".into(),
        face: "admin",
        method: "registry/approve".into(),
        server: Some(server.to_owned()),
        decision: Decision::Approved {
            approval: format!("{server}@{version}"),
            by: "admin".into(),
        },
        ..Record::default()
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
