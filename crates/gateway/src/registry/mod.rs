//! The capability registry: the single owner of every server's capability sets (tools,
//! prompts, resources, resource templates), their history and their approval.
//!
//! - `hash`: canonical item and set digests;
//! - `diff`: structured diffs between versions (added, removed, changed fields);
//! - `store`: the [`RegistryStore`] seam and its redb implementation (registrations,
//!   versions, approvals);
//! - `migrate`: the one-time move of the JSON state file of earlier releases;
//! - `pin`: which live tools are shown under a server's `pin`, which are quarantined;
//! - `drift`: a live version that differs from the approved one (metric, log, webhook).
//!
//! Servers read their lists from upstreams; every read is *observed* here
//! ([`Registry::observe`]): a set that differs from the newest version (by digest) is
//! recorded as a new version with its diff, committed before `observe` returns. The
//! catalog is built from what the registry shows ([`Registry::shown`]): the live lists,
//! less the tools pinning holds back. A dormant (`lazy`) server is listed from its newest
//! version without starting. Versions are numbered per server from 1 and never reused,
//! so "version N of server S" names one exact set — what a session could later pin to.

pub mod diff;
pub mod drift;
pub mod hash;
pub mod migrate;
pub mod pin;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};
use switchboard_config::{Pin, RegistrySettings};
use tokio::time::Instant;

pub use diff::Diff;
pub use drift::Drift;
pub use pin::Quarantined;
pub use store::{RedbStore, RegistryStore, StoreError, StoredVersion};

use crate::catalog::ServerLists;
use hash::Digest;

/// An admin's approval could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("server {0} has no recorded version")]
    UnknownServer(String),
    #[error("server {server} has no version {version}")]
    UnknownVersion { server: String, version: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blocking task that commits the approval ended without an answer.
    #[error("approval interrupted: {0}")]
    Interrupted(String),
}

/// The newest recorded version of a server.
#[derive(Clone, Debug)]
struct Head {
    version: u64,
    digest: Digest,
    recorded_at: u64,
    lists: Arc<ServerLists>,
}

/// What the registry holds for one server.
#[derive(Debug)]
struct Entry {
    head: Option<Head>,
    approved: Option<Arc<pin::Approved>>,
    pin: Pin,
    /// The lists last observed (the head's, unless the head could not be written).
    live: Option<Arc<ServerLists>>,
    /// The digest of `live` (`hash::lists`), taken when it was observed.
    live_digest: Option<Digest>,
    shown: Option<Arc<ServerLists>>,
    /// The digest of `shown`: `live`'s when pinning holds nothing back, else taken when
    /// `shown` was worked out (a catalog build reads it instead of hashing every tool).
    shown_digest: Option<Digest>,
    quarantined: Vec<Quarantined>,
    drift: Option<Drift>,
    /// When the lists were last read from the upstream (the inventory TTL).
    refreshed: Option<Instant>,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            head: None,
            approved: None,
            pin: Pin::Off,
            live: None,
            live_digest: None,
            shown: None,
            shown_digest: None,
            quarantined: Vec::new(),
            drift: None,
            refreshed: None,
        }
    }
}

/// What an observation changed.
#[derive(Debug, Default)]
pub struct Observed {
    /// The version recorded for this set, if it is new.
    pub recorded: Option<u64>,
    /// Tools quarantined by this observation that were not before.
    pub quarantined: Vec<Quarantined>,
    /// A drift to announce (a new live version that differs from the approved one).
    pub drift: Option<Drift>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerLabel {
    server: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// The registry's metric families (registered at scrape: [`Registry::register_metrics`]).
#[derive(Debug, Default)]
struct RegistryMetrics {
    versions: Family<ServerLabel, Counter>,
    drift: Family<ServerLabel, Gauge>,
    drift_events: Family<ServerLabel, Counter>,
    quarantined: Family<ServerLabel, Gauge>,
    lists: Family<ResultLabel, Counter>,
    upstream_reads: Family<ServerLabel, Counter>,
}

/// The capability registry.
pub struct Registry {
    store: Arc<dyn RegistryStore>,
    durable: bool,
    settings: RegistrySettings,
    entries: Mutex<HashMap<String, Entry>>,
    webhook: Option<drift::Webhook>,
    metrics: RegistryMetrics,
    hits: Counter,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Registry {
    /// Opens the registry on the shared database, migrating a JSON state file found in
    /// `state_dir` first, and loads every server's newest version and approval.
    pub fn open(
        db: Arc<crate::db::Db>,
        state_dir: Option<&Path>,
        settings: &RegistrySettings,
    ) -> Result<Registry, StoreError> {
        let durable = db.is_durable();
        let store = RedbStore::open(db)?;
        if let Some(dir) = state_dir {
            migrate::migrate(dir, &store, now_ms())?;
        }
        Registry::with_store(Arc::new(store), durable, settings)
    }

    /// The registry on any [`RegistryStore`].
    pub fn with_store(
        store: Arc<dyn RegistryStore>,
        durable: bool,
        settings: &RegistrySettings,
    ) -> Result<Registry, StoreError> {
        let mut entries = HashMap::new();
        for (server, (head, approved)) in store.heads()? {
            let mut entry = Entry::new();
            if let Some(approved) = approved {
                let lists = if approved == head.version {
                    Some(head.lists.clone())
                } else {
                    store.version(&server, approved)?.map(|v| v.lists)
                };
                entry.approved = lists.map(|lists| Arc::new(pin::Approved::of(approved, &lists)));
            }
            entry.head = Some(Head {
                version: head.version,
                digest: hash::lists(&head.lists),
                recorded_at: head.recorded_at,
                lists: head.lists,
            });
            entries.insert(server, entry);
        }
        let metrics = RegistryMetrics::default();
        let hits = metrics
            .lists
            .get_or_create_owned(&ResultLabel { result: "hit" });
        Ok(Registry {
            store,
            durable,
            settings: settings.clone(),
            entries: Mutex::new(entries),
            webhook: settings
                .drift_webhook
                .as_deref()
                .map(|url| drift::Webhook::new(url, settings.webhook_timeout)),
            metrics,
            hits,
        })
    }

    /// Whether what is written survives a restart.
    pub fn is_persistent(&self) -> bool {
        self.durable
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// Adds the registry's families to a scrape.
    pub(crate) fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let metrics = &self.metrics;
        registry.register(
            "switchboard_registry_versions",
            "New versions of a server's lists recorded by the registry",
            metrics.versions.clone(),
        );
        registry.register(
            "switchboard_registry_drift",
            "1 while a server's live lists differ from its approved version",
            metrics.drift.clone(),
        );
        registry.register(
            "switchboard_registry_drift_events",
            "Drifts to a new live version (each logged and sent to the drift webhook)",
            metrics.drift_events.clone(),
        );
        registry.register(
            "switchboard_registry_quarantined_tools",
            "Tools held back by pinning until an admin approves their version",
            metrics.quarantined.clone(),
        );
        registry.register(
            "switchboard_registry_list_cache",
            "List inventory: hit = a client list answered from the registry, miss = a server's lists read from its upstream",
            metrics.lists.clone(),
        );
        registry.register(
            "switchboard_registry_upstream_list_reads",
            "Reads of a server's lists from its upstream (start, list_changed, reload, TTL)",
            metrics.upstream_reads.clone(),
        );
    }

    /// The drift webhook, if configured.
    pub(crate) fn webhook(&self) -> Option<&drift::Webhook> {
        self.webhook.as_ref()
    }

    // --- Runtime registrations --------------------------------------------------------

    /// Servers registered at runtime. A store that cannot be read is logged and reads as
    /// none (the file's servers still start).
    pub fn registered(&self) -> BTreeMap<String, Value> {
        self.store.registered().unwrap_or_else(|error| {
            tracing::error!(%error, "runtime registrations unreadable");
            BTreeMap::new()
        })
    }

    /// Servers registered at runtime, or why the store could not say (the cluster's
    /// reconciliation must not read an unreachable store as "none registered").
    pub fn try_registered(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        self.store.registered()
    }

    /// Re-reads `server`'s approved version from the store (another replica approved
    /// it); `Ok(true)` when what is shown may have changed.
    pub fn adopt_approval(&self, server: &str) -> Result<bool, StoreError> {
        let Some((head, Some(approved))) = self.store.heads()?.remove(server) else {
            return Ok(false);
        };
        let lists = if approved == head.version {
            Some(head.lists)
        } else {
            self.store.version(server, approved)?.map(|v| v.lists)
        };
        let Some(lists) = lists else { return Ok(false) };
        let mut entries = self.entries.lock();
        let entry = entries.entry(server.to_owned()).or_insert_with(Entry::new);
        if entry
            .approved
            .as_ref()
            .is_some_and(|a| a.version == approved)
        {
            return Ok(false);
        }
        entry.approved = Some(Arc::new(pin::Approved::of(approved, &lists)));
        self.settle(server, entry);
        self.drift_of(server, entry);
        Ok(true)
    }

    /// Records a runtime registration; returns once it is committed.
    pub fn put_registered(&self, name: &str, definition: &Value) -> Result<(), StoreError> {
        self.store.put_registered(name, definition)
    }

    /// Forgets a runtime registration; `Ok(false)` when there was none.
    pub fn remove_registered(&self, name: &str) -> Result<bool, StoreError> {
        self.store.remove_registered(name)
    }

    // --- Lists ------------------------------------------------------------------------

    /// A server's last known lists (for a dormant server: listed without starting).
    /// Takes the newest version of `server` the shared store holds (recorded by the
    /// replica that runs it) as this registry's head, and returns its lists. For a
    /// server that runs elsewhere (`cluster = "owned"`); blocking (a store read).
    pub fn adopt_head(&self, server: &str) -> Result<Option<Arc<ServerLists>>, StoreError> {
        let Some((head, _)) = self.store.heads()?.remove(server) else {
            return Ok(None);
        };
        let mut entries = self.entries.lock();
        let entry = entries.entry(server.to_owned()).or_insert_with(Entry::new);
        if entry
            .head
            .as_ref()
            .is_none_or(|known| known.version < head.version)
        {
            entry.head = Some(Head {
                version: head.version,
                digest: hash::lists(&head.lists),
                recorded_at: head.recorded_at,
                lists: head.lists,
            });
        }
        Ok(entry.head.as_ref().map(|head| head.lists.clone()))
    }

    pub fn last_known(&self, server: &str) -> Option<Arc<ServerLists>> {
        let entries = self.entries.lock();
        let entry = entries.get(server)?;
        entry
            .live
            .clone()
            .or_else(|| entry.head.as_ref().map(|head| head.lists.clone()))
    }

    /// What the catalog shows of `server`: its live lists less quarantined tools; `None`
    /// before it was observed.
    pub fn shown(&self, server: &str) -> Option<Arc<ServerLists>> {
        self.entries.lock().get(server)?.shown.clone()
    }

    /// What the catalog shows of `server` with its digest (`hash::lists`), read together;
    /// `None` before it was observed.
    pub fn shown_with_digest(&self, server: &str) -> Option<(Arc<ServerLists>, Digest)> {
        let entries = self.entries.lock();
        let entry = entries.get(server)?;
        Some((entry.shown.clone()?, entry.shown_digest?))
    }

    /// The tools held back, of the servers `keep` admits.
    pub fn quarantined(&self, keep: impl Fn(&str) -> bool) -> Vec<Quarantined> {
        self.entries
            .lock()
            .iter()
            .filter(|(server, _)| keep(server))
            .flat_map(|(_, entry)| entry.quarantined.iter().cloned())
            .collect()
    }

    /// Counts a list request answered from the registry (every list request is).
    pub fn count_hit(&self) {
        self.hits.inc();
    }

    /// Counts a read of a server's lists from its upstream (start, `list_changed`,
    /// reload, TTL).
    pub fn count_upstream_read(&self, server: &str) {
        self.metrics
            .upstream_reads
            .get_or_create(&ServerLabel {
                server: server.to_owned(),
            })
            .inc();
        self.metrics
            .lists
            .get_or_create(&ResultLabel { result: "miss" })
            .inc();
    }

    /// Servers whose lists were last read from the upstream longer than `ttl` ago.
    pub fn stale(&self, ttl: Duration) -> Vec<String> {
        let now = Instant::now();
        self.entries
            .lock()
            .iter()
            .filter(|(_, entry)| entry.refreshed.is_some_and(|at| now - at >= ttl))
            .map(|(server, _)| server.clone())
            .collect()
    }

    /// Takes `live`, just read from `server`'s upstream (`fresh`) or seeded from the last
    /// known version, as the server's lists under `pin`: records a new version when the
    /// set changed (committed before this returns; a failed write is logged and retried
    /// at the next observation), approves it when `trust_first` finds nothing approved,
    /// and works out what is shown, what is quarantined and whether the server drifts.
    pub fn observe(&self, server: &str, pin: Pin, live: Arc<ServerLists>, fresh: bool) -> Observed {
        let digest = hash::lists(&live);
        let mut entries = self.entries.lock();
        let entry = entries.entry(server.to_owned()).or_insert_with(Entry::new);
        let mut observed = Observed::default();
        if fresh {
            entry.refreshed = Some(Instant::now());
        }
        let changed = entry.head.as_ref().is_none_or(|head| head.digest != digest);
        let approve_first = pin == Pin::TrustFirst && entry.approved.is_none();
        if changed {
            let previous = entry.head.as_ref().map(|head| head.lists.clone());
            let number = entry.head.as_ref().map_or(1, |head| head.version + 1);
            let recorded_at = now_ms();
            let version = StoredVersion {
                version: number,
                recorded_at,
                digest: crate::audit::digest::hex(&digest),
                diff: Diff::between(&previous.unwrap_or_default(), &live),
                lists: live.clone(),
            };
            let retention = store::Retention {
                max_versions: self.settings.max_versions,
                min_recorded_at: recorded_at.saturating_sub(
                    u64::try_from(self.settings.max_age.as_millis()).unwrap_or(u64::MAX),
                ),
            };
            match self
                .store
                .append(server, &version, approve_first, retention)
            {
                Ok(()) => {
                    tracing::info!(event = "registry.version", server, version = number, diff = %serde_json::to_string(&version.diff).unwrap_or_default(), "new version of a server's lists");
                    self.metrics
                        .versions
                        .get_or_create(&ServerLabel {
                            server: server.to_owned(),
                        })
                        .inc();
                    entry.head = Some(Head {
                        version: number,
                        digest,
                        recorded_at,
                        lists: live.clone(),
                    });
                    if approve_first {
                        entry.approved = Some(Arc::new(pin::Approved::of(number, &live)));
                        tracing::info!(
                            event = "registry.approved",
                            server,
                            version = number,
                            by = "trust_first",
                            "version approved"
                        );
                    }
                    observed.recorded = Some(number);
                }
                Err(error) => {
                    tracing::error!(server, %error, "new version of a server's lists not recorded; retried at the next listing");
                }
            }
        } else if approve_first && let Some(head) = &entry.head {
            // `trust_first` set on a server whose versions predate it (a reload, a
            // migrated catalog): what it has now is what it first sees.
            match self.store.approve(server, head.version) {
                Ok(()) => {
                    entry.approved = Some(Arc::new(pin::Approved::of(head.version, &head.lists)));
                    tracing::info!(
                        event = "registry.approved",
                        server,
                        version = head.version,
                        by = "trust_first",
                        "version approved"
                    );
                }
                Err(error) => tracing::error!(server, %error, "trust_first approval not recorded"),
            }
        }
        entry.pin = pin;
        entry.live = Some(live);
        entry.live_digest = Some(digest);
        observed.quarantined = self.settle(server, entry);
        observed.drift = self.drift_of(server, entry);
        observed
    }

    /// Works out what `entry` shows under its pin and approval; returns the tools newly
    /// quarantined.
    fn settle(&self, server: &str, entry: &mut Entry) -> Vec<Quarantined> {
        let Some(live) = entry.live.clone() else {
            return Vec::new();
        };
        let version = entry.head.as_ref().map_or(0, |head| head.version);
        let (shown, quarantined) =
            pin::apply(server, entry.pin, &live, version, entry.approved.as_deref());
        let new: Vec<Quarantined> = quarantined
            .iter()
            .filter(|q| !entry.quarantined.contains(q))
            .cloned()
            .collect();
        if new.len() > 8 {
            // A whole server waiting for its first approval: one line, not one per tool.
            let first = &new[0];
            tracing::warn!(event = "registry.quarantined", server, tools = new.len(), version = first.version, approved_version = ?first.approved, "{} tools of server {server} are quarantined, e.g. {}", new.len(), first.reason());
        } else {
            for q in &new {
                tracing::warn!(event = "registry.quarantined", server, tool = %q.tool, changed = ?q.changed, version = q.version, approved_version = ?q.approved, "{}", q.reason());
            }
        }
        self.metrics
            .quarantined
            .get_or_create(&ServerLabel {
                server: server.to_owned(),
            })
            .set(i64::try_from(quarantined.len()).unwrap_or(i64::MAX));
        entry.shown_digest = match entry.live_digest {
            Some(digest) if Arc::ptr_eq(&shown, &live) => Some(digest),
            _ => Some(hash::lists(&shown)),
        };
        entry.shown = Some(shown);
        entry.quarantined = quarantined;
        new
    }

    /// Updates `entry`'s drift; returns it when it is new (a live version not alerted
    /// yet).
    fn drift_of(&self, server: &str, entry: &mut Entry) -> Option<Drift> {
        let gauge = self.metrics.drift.get_or_create(&ServerLabel {
            server: server.to_owned(),
        });
        let (Some(approved), Some(head)) = (&entry.approved, &entry.head) else {
            entry.drift = None;
            gauge.set(0);
            return None;
        };
        let live_is_head = entry
            .live
            .as_ref()
            .is_some_and(|live| Arc::ptr_eq(live, &head.lists) || hash::lists(live) == head.digest);
        if approved.version == head.version || !live_is_head {
            entry.drift = None;
            gauge.set(0);
            return None;
        }
        if entry
            .drift
            .as_ref()
            .is_some_and(|d| d.live == head.version && d.approved == approved.version)
        {
            return None;
        }
        let approved_lists = self
            .store
            .version(server, approved.version)
            .ok()
            .flatten()
            .map(|v| v.lists)
            .unwrap_or_default();
        let drift = Drift {
            server: server.to_owned(),
            approved: approved.version,
            live: head.version,
            since: head.recorded_at,
            diff: Diff::between(&approved_lists, &head.lists),
        };
        gauge.set(1);
        self.metrics
            .drift_events
            .get_or_create(&ServerLabel {
                server: server.to_owned(),
            })
            .inc();
        drift.log();
        entry.drift = Some(drift.clone());
        Some(drift)
    }

    /// Approves `version` of `server` (committed before this returns) and re-works what
    /// it shows. `None` for the newest version.
    pub fn approve(&self, server: &str, version: Option<u64>) -> Result<u64, ApproveError> {
        let mut entries = self.entries.lock();
        let entry = entries
            .get_mut(server)
            .filter(|entry| entry.head.is_some())
            .ok_or_else(|| ApproveError::UnknownServer(server.to_owned()))?;
        let head = entry.head.as_ref().expect("checked");
        let version = version.unwrap_or(head.version);
        let lists = if version == head.version {
            head.lists.clone()
        } else {
            self.store
                .version(server, version)?
                .ok_or_else(|| ApproveError::UnknownVersion {
                    server: server.to_owned(),
                    version,
                })?
                .lists
        };
        self.store.approve(server, version)?;
        tracing::info!(
            event = "registry.approved",
            server,
            version,
            by = "admin",
            "version approved"
        );
        entry.approved = Some(Arc::new(pin::Approved::of(version, &lists)));
        self.settle(server, entry);
        self.drift_of(server, entry);
        Ok(version)
    }

    // --- History ----------------------------------------------------------------------

    /// Every kept version of `server`, oldest first, without their lists.
    pub fn history(&self, server: &str) -> Result<Vec<Value>, StoreError> {
        let approved = self
            .entries
            .lock()
            .get(server)
            .and_then(|entry| entry.approved.as_ref().map(|a| a.version));
        Ok(self
            .store
            .versions(server)?
            .iter()
            .map(|version| summary(version, approved))
            .collect())
    }

    /// One version of `server`, lists included.
    pub fn version(&self, server: &str, version: u64) -> Result<Option<StoredVersion>, StoreError> {
        self.store.version(server, version)
    }

    /// The diff from version `from` to version `to`; `None` when either is not kept.
    pub fn diff(&self, server: &str, from: u64, to: u64) -> Result<Option<Diff>, StoreError> {
        let (Some(from), Some(to)) = (
            self.store.version(server, from)?,
            self.store.version(server, to)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Diff::between(&from.lists, &to.lists)))
    }

    /// What `/admin/registry` shows of the servers `keep` admits.
    pub fn status(&self, keep: impl Fn(&str) -> bool) -> Value {
        let entries = self.entries.lock();
        let mut servers: Vec<(&String, &Entry)> =
            entries.iter().filter(|(server, _)| keep(server)).collect();
        servers.sort_by(|a, b| a.0.cmp(b.0));
        let servers: Vec<Value> = servers
            .into_iter()
            .map(|(server, entry)| {
                json!({
                    "server": server,
                    "pin": entry.pin.as_str(),
                    "version": entry.head.as_ref().map(|h| h.version),
                    "approvedVersion": entry.approved.as_ref().map(|a| a.version),
                    "drift": entry.drift,
                    "quarantined": entry.quarantined.iter().map(pin::describe).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "servers": servers })
    }
}

/// A version without its lists, for history listings.
pub fn summary(version: &StoredVersion, approved: Option<u64>) -> Value {
    let counts: serde_json::Map<String, Value> = hash::kinds(&version.lists)
        .iter()
        .map(|(kind, items, _)| ((*kind).to_owned(), json!(items.len())))
        .collect();
    json!({
        "version": version.version,
        "recordedAt": version.recorded_at,
        "digest": version.digest,
        "approved": approved == Some(version.version),
        "counts": counts,
        "diff": version.diff,
    })
}

#[cfg(test)]
mod tests;
