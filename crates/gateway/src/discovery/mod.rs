//! Discovery: watched sources of servers besides the config file (`[[discovery]]`).
//!
//! - `server_json` maps an MCP Registry `server.json` document to a server definition;
//! - `registry_file` watches a file or a directory of them;
//! - `kubernetes` watches Services carrying a label through the API server.
//!
//! Each source is a **layer** of its own in the roster: the servers it added carry
//! [`Origin::Discovered`] and are remembered by the source ([`Layer`]), so the config
//! file, the admin API and discovery never overwrite one another's servers. Precedence on
//! a name collision:
//! 1. the config file wins: a name it defines is taken over from any other origin (as it
//!    already is from runtime registrations), and the source reports the name as held
//!    by `config` until the file lets it go, when the source takes it back;
//! 2. a name held by a runtime registration (admin API, meta-tools) or by another source
//!    is never taken: the source reports the conflict and retries at its next look
//!    (every poll for files, the next event or resync for Kubernetes);
//! 3. the admin API cannot register a name a source holds (`409`, like any taken name);
//!    removing a discovered server through the admin API lasts until its source changes.
//!
//! A source whose content cannot be read or understood keeps its last good servers and
//! reports the error in `GET /admin/discovery` (and `/admin/config`'s `discovery`).

pub(crate) mod kubernetes;
pub(crate) mod registry_file;
pub(crate) mod server_json;

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_config::{DiscoveryKind, DiscoverySource, ServerSpec};

use crate::gateway::Gateway;
use crate::roster::now_ms;
use crate::server::Origin;

/// How often a source is looked at again without an event (file sources), and how often
/// a layer with conflicts or failed servers retries them.
pub(crate) const POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Starts every configured source, each in a task the gateway owns.
pub(crate) fn start(gateway: &Gateway, sources: &[DiscoverySource]) {
    for source in sources {
        gateway.inner.discovery.insert(SourceStatus::new(source));
        match &source.kind {
            DiscoveryKind::Registry(registry) => {
                registry_file::spawn(gateway, source.clone(), registry.clone());
            }
            DiscoveryKind::Kubernetes(kube) => {
                kubernetes::spawn(gateway, source.clone(), kube.clone());
            }
        }
    }
}

/// Every source's status, for operators.
#[derive(Default)]
pub(crate) struct Statuses(Mutex<BTreeMap<String, SourceStatus>>);

impl Statuses {
    fn insert(&self, status: SourceStatus) {
        self.0.lock().insert(status.name.clone(), status);
    }

    /// Changes one source's status.
    pub(crate) fn update(&self, source: &str, change: impl FnOnce(&mut SourceStatus)) {
        if let Some(status) = self.0.lock().get_mut(source) {
            change(status);
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        Value::Array(self.0.lock().values().map(SourceStatus::to_json).collect())
    }
}

/// What operators see of one source.
#[derive(Clone, Debug)]
pub(crate) struct SourceStatus {
    pub(crate) name: String,
    pub(crate) kind: &'static str,
    /// The path or the API server watched.
    pub(crate) target: String,
    /// Errors by file (or `list`/`watch` for Kubernetes); empty when everything read.
    pub(crate) errors: BTreeMap<String, String>,
    /// The servers this source holds in the roster.
    pub(crate) servers: Vec<String>,
    /// Names the source wants but another origin holds: name → holder.
    pub(crate) conflicts: BTreeMap<String, String>,
    /// Servers that did not start: name → error.
    pub(crate) failed: BTreeMap<String, String>,
    /// Kubernetes: whether the watch stream is open now.
    pub(crate) connected: Option<bool>,
    pub(crate) syncs: u64,
    pub(crate) synced_at_ms: u64,
}

impl SourceStatus {
    fn new(source: &DiscoverySource) -> SourceStatus {
        let target = match &source.kind {
            DiscoveryKind::Registry(registry) => registry.path.display().to_string(),
            DiscoveryKind::Kubernetes(kube) => kube
                .api_url
                .clone()
                .unwrap_or_else(|| "in-cluster".to_owned()),
        };
        SourceStatus {
            name: source.name.clone(),
            kind: source.kind.as_str(),
            target,
            errors: BTreeMap::new(),
            servers: Vec::new(),
            conflicts: BTreeMap::new(),
            failed: BTreeMap::new(),
            connected: matches!(source.kind, DiscoveryKind::Kubernetes(_)).then_some(false),
            syncs: 0,
            synced_at_ms: 0,
        }
    }

    fn to_json(&self) -> Value {
        let mut json = json!({
            "name": self.name, "kind": self.kind, "target": self.target,
            "valid": self.errors.is_empty(), "errors": self.errors,
            "servers": self.servers, "conflicts": self.conflicts, "failed": self.failed,
            "syncs": self.syncs, "synced_at_ms": self.synced_at_ms,
        });
        if let Some(connected) = self.connected {
            json["connected"] = Value::Bool(connected);
        }
        json
    }
}

/// What applying a layer left undone.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct LayerOutcome {
    pub(crate) conflicts: BTreeMap<String, String>,
    pub(crate) failed: BTreeMap<String, String>,
}

impl LayerOutcome {
    /// Whether the next poll should apply the same set again.
    pub(crate) fn unsettled(&self) -> bool {
        !self.conflicts.is_empty() || !self.failed.is_empty()
    }
}

/// One source's servers in the roster: adds, reloads and withdraws exactly what changed
/// in the source, never a server of another origin or source.
pub(crate) struct Layer {
    source: String,
    /// The names this source added that are still its own.
    owned: BTreeSet<String>,
}

impl Layer {
    pub(crate) fn new(source: &str) -> Layer {
        Layer {
            source: source.to_owned(),
            owned: BTreeSet::new(),
        }
    }

    /// The names this source holds now.
    pub(crate) fn servers(&self) -> Vec<String> {
        self.owned.iter().cloned().collect()
    }

    /// Makes the roster hold `wanted` for this source (see the module's precedence).
    pub(crate) async fn apply(
        &mut self,
        gateway: &Gateway,
        wanted: &BTreeMap<String, ServerSpec>,
    ) -> LayerOutcome {
        // A name the file took over, or one removed through the admin API, is no longer
        // this source's.
        self.owned.retain(|name| {
            gateway
                .server(name)
                .is_some_and(|server| server.origin == Origin::Discovered)
        });
        let gone: Vec<String> = self
            .owned
            .iter()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            if gateway.withdraw(&name, Origin::Discovered) {
                tracing::info!(source = %self.source, server = %name, "discovered server removed");
            }
            self.owned.remove(&name);
        }
        let mut outcome = LayerOutcome::default();
        let mut changes = Vec::new();
        for (name, spec) in wanted {
            if self.owned.contains(name) {
                if gateway
                    .server(name)
                    .is_some_and(|server| server.spec() != spec)
                {
                    changes.push((name.clone(), spec.clone(), true));
                }
                continue;
            }
            match gateway.server(name) {
                Some(holder) => {
                    let held_by = match holder.origin {
                        Origin::Discovered => "another discovery source",
                        other => other.as_str(),
                    };
                    outcome.conflicts.insert(name.clone(), held_by.to_owned());
                }
                None => changes.push((name.clone(), spec.clone(), false)),
            }
        }
        let results =
            futures::future::join_all(changes.iter().map(|(name, spec, reload)| async move {
                if *reload {
                    gateway
                        .reload_as(name, spec.clone(), Origin::Discovered)
                        .await
                        .map_err(|error| error.message)
                } else {
                    gateway
                        .add_server(name, spec.clone(), Origin::Discovered)
                        .await
                        .map_err(|error| error.to_string())
                }
            }))
            .await;
        for ((name, _, reload), result) in changes.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    tracing::info!(source = %self.source, server = %name, reload, "discovered server applied");
                    self.owned.insert(name);
                }
                Err(error) => {
                    tracing::warn!(source = %self.source, server = %name, %error, "discovered server not applied");
                    outcome.failed.insert(name, error);
                }
            }
        }
        outcome
    }
}

/// Records one sync's result in the source's status.
pub(crate) fn record(
    gateway: &Gateway,
    source: &str,
    layer: &Layer,
    outcome: &LayerOutcome,
    errors: BTreeMap<String, String>,
) {
    gateway.inner.discovery.update(source, |status| {
        status.errors = errors;
        status.servers = layer.servers();
        status.conflicts = outcome.conflicts.clone();
        status.failed = outcome.failed.clone();
        status.syncs += 1;
        status.synced_at_ms = now_ms();
    });
}

impl Gateway {
    /// Every discovery source's status (`GET /admin/discovery`).
    pub fn discovery_status(&self) -> Value {
        self.inner.discovery.to_json()
    }
}
