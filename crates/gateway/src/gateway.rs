//! The gateway core: owns the servers and the catalog snapshot, turns upstream signals
//! into catalog rebuilds and client-visible changes, and answers the handshake methods.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use switchboard_config::{Config, GatewaySettings};
use switchboard_protocol::state::Sealer;
use switchboard_protocol::{Era, Message, ProtocolVersion, RpcError, meta};
use switchboard_upstream::EraCache;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The registry's digest of each server's shown lists, by server name.
pub(crate) type Digests = HashMap<String, crate::registry::hash::Digest>;
use tokio_util::sync::CancellationToken;

use crate::bridge::Parked;
use crate::catalog::{Catalog, ListKind};
use crate::pipeline::{Chain, Step};
use crate::principal::Principal;
use crate::roster::ConfigStatus;
use crate::server::{Server, ServerSignal};

/// What changed, for every connected client session.
#[derive(Clone, Debug)]
pub enum Change {
    /// A merged list changed: the snapshots before and after, so that a caller whose
    /// view shows nothing different is not told (hidden means nonexistent).
    ListChanged {
        kind: ListKind,
        before: Arc<Catalog>,
        after: Arc<Catalog>,
    },
    /// A list changed in one session's view only (its own per-session instance).
    SessionListChanged { kind: ListKind, session: String },
    /// A subscribed resource changed; `params` carry the exposed URI.
    ResourceUpdated { uri: String, params: Value },
    /// An upstream log message not tied to a call (`notifications/message` params), for
    /// the sessions in `to` (see `subscriptions.rs`).
    Log {
        params: Value,
        to: Arc<std::collections::BTreeSet<String>>,
    },
    /// A task's status changed: `notifications/tasks` params (the full task) under the
    /// task's own id, for the listen streams that asked for it (`task_notify.rs`).
    /// `server` names the upstream that owns it; `None` is a gateway-made task.
    TaskStatus {
        server: Option<String>,
        task_id: String,
        params: Value,
    },
}

/// A server→client request for a legacy client, served by its face.
#[derive(Debug)]
pub struct PeerRequest {
    pub method: String,
    pub params: Option<Value>,
    pub reply: oneshot::Sender<Result<Value, RpcError>>,
}

/// Who is asking, in the terms the router needs: era, declared capabilities, and the
/// channels the face offers for messages related to this request.
#[derive(Clone, Debug)]
pub struct ClientCtx {
    pub era: Era,
    pub protocol_version: String,
    pub capabilities: Value,
    pub client_info: Option<Value>,
    /// Who is calling, and in which client session (per-session instances and sealed
    /// request state are bound to it).
    pub principal: Principal,
    /// Notifications related to the current request (progress, logging).
    pub notify: Option<mpsc::Sender<Message>>,
    /// Server→client requests (legacy clients only).
    pub peer: Option<mpsc::Sender<PeerRequest>>,
    /// Cancelled when the client cancels the request or goes away.
    pub cancel: CancellationToken,
    /// Whether this client sees the meta-tools the config enables (its own choice, else
    /// `meta_tools_by_default`; see [`Gateway::meta_tools_for`]).
    pub meta_tools: bool,
    /// How this client sees the tools: the catalog, or meta mode (`search::meta_mode`).
    pub tools_mode: ToolsMode,
}

pub use switchboard_config::ToolsMode;

/// What a client chose when it connected: whether it sees the meta-tools, and how it
/// sees the tools. Faces keep it for the session (or the request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientChoice {
    pub meta_tools: bool,
    pub tools_mode: ToolsMode,
}

impl ClientCtx {
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.get(name).is_some_and(|v| !v.is_null())
    }
}

pub(crate) struct Inner {
    /// With `[cluster]`: legacy sessions' records in Redis (any replica continues one).
    pub(crate) cluster_sessions: Option<Arc<crate::cluster::sessions::SharedSessions>>,
    /// With `[cluster]` and `cluster = "owned"` servers: their leases and where they run.
    pub(crate) ownership: Option<Arc<crate::cluster::owned::Ownership>>,
    pub(crate) settings: GatewaySettings,
    pub(crate) servers: RwLock<BTreeMap<String, Arc<Server>>>,
    pub(crate) catalog: ArcSwap<Catalog>,
    pub(crate) changes: broadcast::Sender<Change>,
    pub(crate) era_cache: EraCache,
    pub(crate) sealer: Sealer,
    pub(crate) parked: Mutex<HashMap<String, Parked>>,
    /// Gateway-made tasks whose call still runs (`owned_tasks`).
    pub(crate) owned_tasks: crate::owned_tasks::Running,
    pub(crate) signals: mpsc::Sender<ServerSignal>,
    pub(crate) shutdown: CancellationToken,
    /// The capability registry: every server's lists, versions, approvals
    /// (`registry/`); the catalog is built from what it shows.
    pub(crate) registry: crate::registry::Registry,
    pub(crate) roots_peers: Mutex<HashMap<String, crate::roots::RootsPeer>>,
    pub(crate) config_status: Mutex<ConfigStatus>,
    /// `[[discovery]]` sources' status (`discovery/`).
    pub(crate) discovery: crate::discovery::Statuses,
    /// The call pipeline's steps, in their declared order; swapped whole when a reload
    /// changes `[access]`.
    pub(crate) chain: ArcSwap<Chain>,
    /// The steps that stay across such a reload (`chain::Parts`).
    pub(crate) chain_parts: crate::pipeline::chain::Parts,
    /// The `[access]` settings in force, to tell whether a reload changes them.
    pub(crate) access_settings: Mutex<Option<switchboard_config::AccessSettings>>,
    pub(crate) metrics: crate::metrics::Metrics,
    /// Names of servers being added (see `roster`'s reservation).
    pub(crate) adding: Mutex<std::collections::HashSet<String>>,
    /// Server → sessions that asked it for log messages (`logging/setLevel`).
    /// Sessions that asked each server for log messages, with their tenant.
    pub(crate) log_subscribers: Mutex<HashMap<String, crate::subscriptions::LogSubscribers>>,
    /// Per-session catalog views (`views.rs`), and whether any session has one.
    pub(crate) views: Mutex<HashMap<String, crate::views::View>>,
    pub(crate) has_views: std::sync::atomic::AtomicBool,
    pub(crate) retiring: crate::roster::Retiring,
    /// Client identity at the faces (`[access]`); `None`: everyone is anonymous.
    pub(crate) access: arc_swap::ArcSwapOption<crate::access::Authenticator>,
    /// Every background task the gateway owns (`tasks.rs`); shutdown waits for them.
    pub(crate) tasks: tokio_util::task::TaskTracker,
    /// Traces (`[telemetry]`); `None`: nothing traced, every hook one branch.
    pub(crate) telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    /// The embedded database (`db.rs`): durable state of budgets, audit, registry.
    pub(crate) db: Arc<crate::db::Db>,
    /// Tool-description screening at catalog build (`screen.rs`).
    pub(crate) screen: crate::screen::Screen,
    /// Tool search's documents per server list (`search::memo`).
    pub(crate) search_memo: crate::search::memo::Memo,
    /// Meta mode's tools selected per session (`search::meta_mode`).
    pub(crate) selections: crate::search::meta_mode::Selections,
    /// Run snapshots and the legacy sessions pinned to them (`snapshot/`).
    pub(crate) snapshots: crate::snapshot::Snapshots,
    /// The injected secrets the redaction step masks (`[redaction]` only); servers added
    /// while running teach it theirs.
    pub(crate) secrets: Option<Arc<crate::redact::Secrets>>,
    /// `/readyz`'s draining flag and its restarts of failed required servers.
    pub(crate) readiness: crate::readiness::Flags,
    /// The encrypted secret store (`[secrets]`, `vault/`); `None` without the section.
    pub(crate) vault: Option<Arc<crate::vault::Vault>>,
    /// The router agent (`[agent]`, `agent/`); `None` without the section.
    pub(crate) agent: Option<Arc<crate::agent::Agent>>,
    /// Tool search's semantic side (`[search] model`); `None`: lexical search only.
    pub(crate) semantic: Option<Arc<crate::search::semantic::Semantic>>,
    /// Completed requests for the admin event stream, and recent failures (`events.rs`).
    pub(crate) events: Arc<crate::events::Events>,
    /// Version rollouts in force (`[rollouts]`, `rollouts.rs`); `None` without any.
    pub(crate) rollouts: arc_swap::ArcSwapOption<crate::rollouts::Rollouts>,
    /// Orchestration scripts and batches (`script/`, `[scripts]`): bounds and the slots
    /// of running scripts.
    pub(crate) scripts: crate::script::Scripts,
}

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Chain(#[from] crate::pipeline::chain::ChainError),
    #[error(transparent)]
    Registry(#[from] crate::registry::StoreError),
    #[error("secrets: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("agent: {0}")]
    Agent(#[from] crate::agent::llm::LlmError),
    #[error(transparent)]
    Search(#[from] crate::search::semantic::SemanticError),
}

/// The gateway. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Gateway {
    pub(crate) inner: Arc<Inner>,
}

/// Capabilities declared to legacy upstreams, so that their server→client requests can be
/// bridged to clients that have them (clients without them get a clear error instead).
pub(crate) fn upstream_client_capabilities() -> Value {
    json!({ "roots": { "listChanged": true }, "sampling": {}, "elicitation": { "form": {}, "url": {} } })
}

impl Gateway {
    /// Client identity, when `[access]` is configured (the one in force: a reload may
    /// replace it).
    pub fn authenticator(&self) -> Option<Arc<crate::access::Authenticator>> {
        self.inner.access.load_full()
    }

    /// Builds the gateway and connects every enabled server concurrently; a server that
    /// fails to start is reported in its status and retried on its next call.
    pub async fn start(config: &Config) -> Result<Gateway, StartError> {
        Gateway::start_with_steps(config, Vec::new()).await
    }

    /// [`Gateway::start`], with `steps` of the embedder's own running first in the call
    /// pipeline (before the configured ones).
    pub async fn start_with_steps(
        config: &Config,
        steps: Vec<Arc<dyn Step>>,
    ) -> Result<Gateway, StartError> {
        let db = crate::db::Db::open(config.gateway.state_dir.as_deref())?;
        // The exporter's blocking HTTP client is built off the runtime's threads.
        let telemetry = match config.telemetry.clone() {
            None => None,
            Some(settings) => Some(Arc::new(
                tokio::task::spawn_blocking(move || crate::telemetry::Telemetry::start(&settings))
                    .await
                    .expect("telemetry start does not panic")?,
            )),
        };
        let (signals_tx, signals_rx) = mpsc::channel(1024);
        let (changes, _) = broadcast::channel(1024);
        let sealer = match &config.gateway.state_secret {
            Some(secret) => Sealer::new(secret.expose().as_bytes().to_vec()),
            None => Sealer::random(),
        };
        let metrics = crate::metrics::Metrics::default();
        let secrets = config
            .redaction
            .as_ref()
            .map(|_| Arc::new(crate::redact::Secrets::from_config(config)));
        let vault = match &config.secrets {
            Some(settings) => {
                let vault = crate::vault::Vault::open(db.clone(), settings)?;
                if !db.is_durable() {
                    tracing::warn!(
                        "secrets: no state_dir, so stored secrets live in memory and are lost at exit"
                    );
                }
                tracing::info!(keys = %vault.describe(), "secrets: encrypted store open");
                if let Some(secrets) = &secrets {
                    // Stored values must not come back to clients either.
                    for entry in vault.list()? {
                        if let Some(value) = vault.get(&entry.name)? {
                            secrets.learn_value(&value);
                        }
                    }
                }
                Some(Arc::new(vault))
            }
            None => None,
        };
        let hide_poisoned = config.redaction.as_ref().is_some_and(|r| r.hide_poisoned);
        let (registry, cluster) = match &config.cluster {
            None => (
                crate::registry::Registry::open(
                    db.clone(),
                    config.gateway.state_dir.as_deref(),
                    &config.registry,
                )?,
                None,
            ),
            Some(settings) => crate::cluster::open_registry(settings, &config.registry)?,
        };
        let ownership = match (&config.cluster, &cluster) {
            (Some(settings), Some(membership)) => crate::cluster::owned::Ownership::open(
                settings,
                membership.replica().to_owned(),
                config,
            )?,
            _ => None,
        };
        let cluster_sessions = match &config.cluster {
            Some(settings) => Some(crate::cluster::open_sessions(settings)?),
            None => None,
        };
        let (chain_parts, chain) =
            crate::pipeline::chain::declared(config, steps, &metrics, &db, secrets.as_ref())?;
        let agent = match &config.agent {
            Some(settings) => {
                let keep = settings.memory_messages;
                let memory = match &config.cluster {
                    Some(cluster) => crate::agent::memory::Memory::shared(
                        crate::cluster::open_memory(cluster, settings.memory_ttl)?,
                        keep,
                    ),
                    None => crate::agent::memory::Memory::new(db.clone(), keep),
                };
                Some(Arc::new(crate::agent::Agent::new(settings, memory)?))
            }
            None => None,
        };
        let semantic = match &config.search {
            Some(settings) => Some(Arc::new(crate::search::semantic::Semantic::load(settings)?)),
            None => None,
        };
        let inner = Arc::new(Inner {
            agent,
            semantic,
            scripts: crate::script::Scripts::new(&config.scripts),
            settings: config.gateway.clone(),
            servers: RwLock::new(BTreeMap::new()),
            retiring: Default::default(),
            catalog: ArcSwap::from_pointee(Catalog::default()),
            changes,
            era_cache: EraCache::new(),
            sealer,
            parked: Mutex::new(HashMap::new()),
            owned_tasks: Default::default(),
            signals: signals_tx,
            shutdown: CancellationToken::new(),
            registry,
            roots_peers: Mutex::new(HashMap::new()),
            config_status: Mutex::new(ConfigStatus::loaded(config)),
            discovery: Default::default(),
            chain: ArcSwap::from_pointee(chain),
            chain_parts,
            access_settings: Mutex::new(config.access.clone()),
            db,
            screen: crate::screen::Screen::new(hide_poisoned),
            search_memo: Default::default(),
            selections: Default::default(),
            snapshots: crate::snapshot::Snapshots::new(&config.registry),
            secrets,
            readiness: Default::default(),
            events: Default::default(),
            vault,
            metrics,
            adding: Mutex::default(),
            log_subscribers: Mutex::new(HashMap::new()),
            views: Mutex::new(HashMap::new()),
            has_views: std::sync::atomic::AtomicBool::new(false),
            access: arc_swap::ArcSwapOption::from(
                config
                    .access
                    .as_ref()
                    .map(|access| Arc::new(crate::access::Authenticator::new(access))),
            ),
            tasks: tokio_util::task::TaskTracker::new(),
            telemetry,
            cluster_sessions,
            ownership,
            rollouts: arc_swap::ArcSwapOption::new(crate::rollouts::Rollouts::from_config(config)),
        });
        let gateway = Gateway { inner };
        if let Some(semantic) = &gateway.inner.semantic {
            gateway.spawn(crate::search::semantic::warm(
                Arc::downgrade(&gateway.inner),
                semantic.clone(),
                gateway.inner.shutdown.clone(),
            ));
        }
        gateway.spawn(signal_loop(
            Arc::downgrade(&gateway.inner),
            signals_rx,
            gateway.inner.shutdown.clone(),
        ));
        for task in gateway
            .inner
            .chain
            .load()
            .background(&gateway.inner.shutdown)
            .into_iter()
            .chain(
                gateway
                    .inner
                    .chain_parts
                    .background(&gateway.inner.shutdown, &gateway.inner.metrics),
            )
        {
            gateway.spawn(task);
        }
        if let Some(cluster) = cluster {
            cluster.spawn_events(&gateway);
        }
        crate::inventory::spawn_ttl_refresher(&gateway);
        gateway.start_servers(config).await;
        crate::discovery::start(&gateway, &config.discovery);
        if let Some(ownership) = gateway.inner.ownership.clone() {
            crate::cluster::owned::spawn(&gateway, ownership);
        }
        gateway.spawn_idle_reaper();
        gateway.rebuild_catalog();
        Ok(gateway)
    }

    /// Tells the cluster where this replica's HTTP listener is bound: from then on it may
    /// own `cluster = "owned"` servers (other replicas forward their calls here). Without
    /// `[cluster]`, nothing.
    pub fn cluster_listening(&self, bound: std::net::SocketAddr) {
        if let Some(ownership) = &self.inner.ownership {
            ownership.set_listening(bound);
        }
    }

    /// With `[cluster]`: where legacy sessions are shared with the other replicas.
    pub(crate) fn cluster_sessions(
        &self,
    ) -> Option<&Arc<crate::cluster::sessions::SharedSessions>> {
        self.inner.cluster_sessions.as_ref()
    }

    /// Whether the call pipeline keeps an audit log (`[audit]`).
    pub fn audits(&self) -> bool {
        self.inner.chain.load().names().contains(&"audit")
    }

    /// The audit log (`[audit]`), for the admin API's verification.
    pub fn audit_log(&self) -> Option<&crate::audit::Log> {
        self.inner.chain_parts.audit_log()
    }

    /// The approvals' state (`[approvals]`), for the admin API.
    pub fn approvals(&self) -> Option<&Arc<crate::pipeline::approval::Desk>> {
        self.inner.chain_parts.approvals()
    }

    /// The embedded database (`db.rs`), shared by the parts with durable state.
    pub fn db(&self) -> &Arc<crate::db::Db> {
        &self.inner.db
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.inner.settings
    }

    /// Subscribes to catalog and resource changes.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.catalog.load_full()
    }

    pub fn servers(&self) -> Vec<Arc<Server>> {
        self.inner.servers.read().values().cloned().collect()
    }

    /// The server for a call, counted as in flight from this moment (under the roster
    /// lock, so a reload's drain cannot miss it).
    pub(crate) fn server_for_call(
        &self,
        name: &str,
    ) -> Option<(Arc<Server>, Arc<crate::server::CallGuard>)> {
        let roster = self.inner.servers.read();
        let server = roster.get(name)?.clone();
        let guard = Arc::new(server.call_guard());
        Some((server, guard))
    }

    pub(crate) fn server(&self, name: &str) -> Option<Arc<Server>> {
        self.inner.servers.read().get(name).cloned()
    }

    /// Every server's last known lists, by name, as the catalog shows them (screened for
    /// poisoned tool descriptions: `screen.rs`).
    ///
    /// With them, the registry's digest of each server's shown lists (the lists before
    /// screening, which is a function of them), for [`crate::catalog::ServerFacts`].
    pub(crate) fn server_lists(
        &self,
    ) -> (BTreeMap<String, Arc<crate::catalog::ServerLists>>, Digests) {
        let mut digests = Digests::new();
        let lists: BTreeMap<String, Arc<crate::catalog::ServerLists>> = self
            .inner
            .servers
            .read()
            .iter()
            .map(
                |(name, server)| match self.inner.registry.shown_with_digest(name) {
                    Some((shown, digest)) => {
                        digests.insert(name.clone(), digest);
                        (name.clone(), shown)
                    }
                    None => (name.clone(), server.lists()),
                },
            )
            .collect();
        let screen = &self.inner.screen;
        screen.retain(|name| lists.contains_key(name));
        let lists = lists
            .into_iter()
            .map(|(name, lists)| {
                let shown = screen.lists(&name, lists);
                (name, shown)
            })
            .collect();
        (lists, digests)
    }

    /// A snapshot of `lists`, with the tools of servers whose `validate = false` marked
    /// as not checked.
    /// `digests`: the registry's digest of a server's lists, where it has one (others are
    /// hashed here).
    ///
    /// With rollouts, the snapshot lists every rollout on its stable version and carries
    /// the builder of the other arms' snapshots, from the same inputs (`rollouts.rs`).
    pub(crate) fn build_catalog(
        &self,
        lists: &BTreeMap<String, Arc<crate::catalog::ServerLists>>,
        digests: &Digests,
    ) -> Catalog {
        let inputs = self.catalog_inputs(lists, digests);
        let Some(rollouts) = self.inner.rollouts.load_full() else {
            return inputs.build(None, crate::rollouts::Arms::STABLE);
        };
        let base = inputs.build(Some(&rollouts), crate::rollouts::Arms::STABLE);
        let rules = rollouts.clone();
        base.with_variants(crate::rollouts::Variants::new(
            rollouts,
            Box::new(move |arms| inputs.build(Some(&rules), arms)),
        ))
    }

    /// What a snapshot is built from, read from the roster and the registry once.
    fn catalog_inputs(
        &self,
        lists: &BTreeMap<String, Arc<crate::catalog::ServerLists>>,
        digests: &Digests,
    ) -> CatalogInputs {
        let servers = self.inner.servers.read();
        let groups = crate::groups::of_servers(servers.iter());
        let folded = crate::groups::fold(lists, &groups);
        let mut unchecked: std::collections::HashSet<String> = servers
            .values()
            .filter(|server| !server.policy().validate)
            .map(|server| server.name.clone())
            .collect();
        // A group stands for its first member (by name) wherever its policy matters; its
        // version moves with any member's.
        let stand_in = |name: &String| match groups.get(name) {
            Some(members) => members.iter().find_map(|member| servers.get(member)),
            None => servers.get(name),
        };
        let generation = |name: &String| match groups.get(name) {
            Some(members) => members
                .iter()
                .filter_map(|member| servers.get(member))
                .fold(0u64, |sum, server| {
                    sum.wrapping_mul(31).wrapping_add(server.instance)
                }),
            None => servers.get(name).map_or(0, |server| server.instance),
        };
        for (group, members) in &groups {
            if members.iter().any(|member| unchecked.contains(member)) {
                unchecked.insert(group.clone());
            }
        }
        let facts = folded
            .lists
            .iter()
            .filter_map(|(name, lists)| {
                let server = stand_in(name)?;
                let policy = Arc::new(server.policy().clone());
                let facts = match digests.get(name) {
                    Some(digest) if !groups.contains_key(name) => {
                        crate::catalog::ServerFacts::of_digest(policy, server.instance, digest)
                    }
                    _ => crate::catalog::ServerFacts::new(policy, generation(name), lists),
                };
                Some((name.clone(), facts))
            })
            .collect();
        let quarantined = self
            .inner
            .registry
            .quarantined(|server| lists.contains_key(server));
        drop(servers);
        CatalogInputs {
            lists: folded.lists,
            passthrough: self.inner.settings.passthrough,
            unchecked,
            facts,
            quarantined,
            groups,
            unlisted: folded.unlisted,
            rollout_calls: self.inner.metrics.rollout_calls().clone(),
        }
    }

    /// Rebuilds the catalog snapshot from every server's last known lists.
    pub(crate) fn rebuild_catalog(&self) -> Arc<Catalog> {
        self.swap_catalog().1
    }

    /// Rebuilds the catalog; returns the snapshots before and after.
    fn swap_catalog(&self) -> (Arc<Catalog>, Arc<Catalog>) {
        let (lists, digests) = self.server_lists();
        let catalog = Arc::new(self.build_catalog(&lists, &digests));
        let before = self.inner.catalog.swap(catalog.clone());
        if let Some(semantic) = &self.inner.semantic {
            semantic.nudge();
        }
        (before, catalog)
    }

    /// Rebuilds the catalog and announces that lists of `kinds` changed.
    pub(crate) fn announce_lists(&self, kinds: &[ListKind]) {
        let (before, after) = self.swap_catalog();
        for &kind in kinds {
            let _ = self.inner.changes.send(Change::ListChanged {
                kind,
                before: before.clone(),
                after: after.clone(),
            });
        }
    }

    /// Whether `principal` is told about `change`: a list change is announced to a
    /// caller whose view filters the lists only when its view of that list changed, so
    /// a change to something hidden from it does not reveal that it exists.
    pub(crate) fn sees(&self, principal: &crate::principal::Principal, change: &Change) -> bool {
        let Change::ListChanged {
            kind,
            before,
            after,
        } = change
        else {
            return true;
        };
        // A session pinned to a run snapshot keeps its tool list: nothing to tell it.
        if *kind == ListKind::Tools && self.inner.snapshots.session_pinned(principal.session()) {
            return false;
        }
        let filter = self.inner.chain.load().filter(principal);
        let rolled = before.rollouts().is_some() || after.rollouts().is_some();
        let Some(filter) = filter.or_else(|| {
            // With rollouts a caller is told only when its own arm's lists changed.
            rolled.then(|| crate::pipeline::Filter::new("", |_, _, _| true))
        }) else {
            return true;
        };
        let (before, after) = if rolled {
            let tenant = principal.tenant();
            (before.for_tenant(tenant), after.for_tenant(tenant))
        } else {
            (before.clone(), after.clone())
        };
        let (old, new) = (
            before.view(&filter.key, &filter.admit),
            after.view(&filter.key, &filter.admit),
        );
        crate::catalog::listings_of(*kind)
            .iter()
            .any(|&listing| Catalog::view_differs(&before, &old, &after, &new, listing))
    }

    /// The capabilities switchboard declares to clients.
    pub fn capabilities(&self) -> Value {
        let mut capabilities = json!({
            "tools": { "listChanged": true },
            "prompts": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "completions": {},
            "logging": {},
        });
        // The tasks extension is passed through, so offered only when an upstream does.
        if self.tasks_offered() {
            capabilities["extensions"] = json!({ crate::task_ext::EXTENSION: {} });
        }
        capabilities
    }

    pub fn server_info(&self) -> Value {
        json!({ "name": self.inner.settings.name, "version": env!("CARGO_PKG_VERSION") })
    }

    fn instructions(&self) -> Option<String> {
        if self.inner.settings.passthrough {
            let servers = self.servers();
            let server = servers.first()?;
            return server.instructions();
        }
        None
    }

    /// The result of a legacy `initialize`.
    pub fn initialize_result(&self, requested: Option<&str>) -> Value {
        let mut result = json!({
            "protocolVersion": ProtocolVersion::negotiate_legacy(requested),
            "capabilities": self.capabilities(),
            "serverInfo": self.server_info(),
        });
        if let Some(instructions) = self.instructions() {
            result["instructions"] = Value::String(instructions);
        }
        result
    }

    /// The result of a modern `server/discover`.
    pub fn discover_result(&self) -> Value {
        let mut result = json!({
            "resultType": "complete",
            "ttlMs": 60_000,
            "cacheScope": "public",
            "supportedVersions": ProtocolVersion::supported(),
            "capabilities": self.capabilities(),
            "_meta": { meta::SERVER_INFO: self.server_info() },
        });
        if let Some(instructions) = self.instructions() {
            result["instructions"] = Value::String(instructions);
        }
        result
    }

    /// Stops every server (graceful stop sequence), ends background tasks and waits for
    /// them (bounded).
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.parked.lock().clear();
        let mut servers = self.servers();
        servers.extend(self.inner.retiring.list());
        futures::future::join_all(servers.iter().map(|s| s.stop())).await;
        // Only once the owned servers' processes are stopped may another replica start them.
        self.release_owned().await;
        crate::tasks::close_and_wait(&self.inner.tasks, crate::tasks::TASKS_DEADLINE).await;
        if let Some(telemetry) = self.inner.telemetry.clone() {
            // Exports the spans still buffered (blocking: off the runtime's threads).
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
    }

    /// Whether requests are traced (`[telemetry]`).
    pub fn traces(&self) -> bool {
        self.inner.telemetry.is_some()
    }
}

/// The inputs of a catalog snapshot, kept by a base snapshot with rollouts so that its
/// other arms' snapshots are built from exactly what it was.
struct CatalogInputs {
    /// Every server's lists, failover groups folded.
    lists: BTreeMap<String, Arc<crate::catalog::ServerLists>>,
    passthrough: bool,
    /// Servers (and groups) whose tools are not checked (`validate = false`).
    unchecked: std::collections::HashSet<String>,
    facts: HashMap<String, crate::catalog::ServerFacts>,
    quarantined: Vec<crate::registry::Quarantined>,
    groups: BTreeMap<String, Vec<String>>,
    unlisted: Vec<(String, usize)>,
    rollout_calls: crate::metrics::RolloutCalls,
}

impl CatalogInputs {
    /// The snapshot for `arms`: each rollout's chosen member listed under the rollout's
    /// name (with its policy, version, validation and quarantined tools), the other
    /// member not listed. A version that is not running (removed, disabled) gives way
    /// to the other; a rollout whose name a running server has (a runtime
    /// registration) is not formed.
    fn build(
        &self,
        rollouts: Option<&crate::rollouts::Rollouts>,
        arms: crate::rollouts::Arms,
    ) -> Catalog {
        let Some(rollouts) = rollouts else {
            return Catalog::build(&self.lists, self.passthrough)
                .without_validation(&self.unchecked)
                .with_servers(self.facts.clone())
                .with_quarantine(self.quarantined.clone())
                .with_groups(self.groups.clone(), self.unlisted.clone());
        };
        use crate::rollouts::Version;
        let mut lists = self.lists.clone();
        let mut unchecked = self.unchecked.clone();
        let mut facts = self.facts.clone();
        let mut quarantined: Vec<(String, crate::registry::Quarantined)> = self
            .quarantined
            .iter()
            .map(|q| (q.server.clone(), q.clone()))
            .collect();
        let mut routed = HashMap::new();
        for (index, rule) in rollouts.rules().iter().enumerate() {
            if self.lists.contains_key(&rule.name) {
                continue;
            }
            let wanted = arms.version(index);
            let version = if self.lists.contains_key(rule.member(wanted)) {
                wanted
            } else {
                match wanted {
                    Version::Stable => Version::Candidate,
                    Version::Candidate => Version::Stable,
                }
            };
            let member = rule.member(version).to_owned();
            let Some(member_lists) = lists.get(&member).cloned() else {
                continue;
            };
            for version in [&rule.stable, &rule.candidate] {
                lists.remove(version);
                facts.remove(version);
            }
            lists.insert(rule.name.clone(), member_lists);
            if let Some(member_facts) = self.facts.get(&member) {
                facts.insert(rule.name.clone(), member_facts.clone());
            }
            if self.unchecked.contains(&member) {
                unchecked.insert(rule.name.clone());
            }
            let other = if member == rule.stable {
                &rule.candidate
            } else {
                &rule.stable
            };
            quarantined.retain(|(listed, _)| listed != other);
            for (listed, _) in &mut quarantined {
                if *listed == member {
                    listed.clone_from(&rule.name);
                }
            }
            let calls = self.rollout_calls.counter(&rule.name, &member);
            routed.insert(
                rule.name.clone(),
                crate::rollouts::Routed {
                    member,
                    version,
                    calls,
                },
            );
        }
        Catalog::build(&lists, self.passthrough)
            .without_validation(&unchecked)
            .with_servers(facts)
            .with_quarantine_as(quarantined)
            .with_groups(self.groups.clone(), self.unlisted.clone())
            .with_routes(routed)
    }
}

/// Acts on upstream signals: list changes rebuild the catalog and reach every session.
async fn signal_loop(
    inner: std::sync::Weak<Inner>,
    mut signals: mpsc::Receiver<ServerSignal>,
    shutdown: CancellationToken,
) {
    loop {
        let signal = tokio::select! {
            signal = signals.recv() => signal,
            () = shutdown.cancelled() => None,
        };
        let Some(signal) = signal else { break };
        let Some(inner) = inner.upgrade() else { break };
        let gateway = Gateway { inner };
        // Signals that arrive together (hundreds of servers starting at once) cost one
        // catalog rebuild, not one each.
        let mut connected = false;
        let mut next = Some(signal);
        while let Some(signal) = next.take() {
            handle_signal(&gateway, signal, &mut connected).await;
            next = signals.try_recv().ok();
        }
        if connected {
            gateway.announce_lists(&[ListKind::Tools, ListKind::Prompts, ListKind::Resources]);
        }
    }
}

async fn handle_signal(gateway: &Gateway, signal: ServerSignal, connected: &mut bool) {
    match signal {
        ServerSignal::Connected(server, instance) => {
            // Only an instance in the roster changes what clients see; a reload's
            // replacement is announced when it is swapped in.
            let Some(server) = gateway.server(&server).filter(|s| s.instance == instance) else {
                return;
            };
            gateway.observe_lists(&server, true).await;
            gateway.resubscribe(server);
            *connected = true;
        }
        ServerSignal::ListChanged(server, kind, source) => {
            let Some(server) = gateway.server(&server) else {
                return;
            };
            if server.policy().sharing == switchboard_config::Sharing::PerSession
                && let Some(session) = source.owner
            {
                gateway.session_list_changed(server, kind, source.instance, session);
                return;
            }
            crate::relist::list_changed(gateway, server, kind);
        }
        ServerSignal::ResourceUpdated(server, mut params) => {
            let catalog = gateway.catalog();
            // A rollout's version is listed under the rollout's name.
            let listed = catalog
                .rollouts()
                .and_then(|rollouts| rollouts.logical_name(&server))
                .unwrap_or(&server);
            let uri = params
                .get("uri")
                .and_then(Value::as_str)
                .map(|u| catalog.expose_uri(listed, u));
            if let Some(uri) = uri {
                params["uri"] = Value::String(uri.clone());
                let _ = gateway
                    .inner
                    .changes
                    .send(Change::ResourceUpdated { uri, params });
            }
        }
        ServerSignal::Log(server, source, Some(mut params)) => {
            let to = gateway.log_audience(&server, &source);
            if to.is_empty() {
                return;
            }
            if let Some(object) = params.as_object_mut() {
                object
                    .entry("logger")
                    .or_insert_with(|| Value::String(server));
            }
            let to = Arc::new(to);
            let _ = gateway.inner.changes.send(Change::Log { params, to });
        }
        ServerSignal::Log(_, _, None) => {}
        ServerSignal::TaskStatus(server, params) => {
            gateway.task_status_changed(Some(server), params)
        }
        ServerSignal::Request(server, source, request) if request.method == "roots/list" => {
            // No call owns it: the union of the roots of the clients we can ask (a tenant's
            // instance: of that tenant's clients).
            let owner = gateway.clone();
            gateway.spawn(async move {
                let outcome = owner.union_of_roots(source.tenant.as_ref()).await;
                tracing::debug!(server, "answered an upstream's roots/list");
                let _ = request.reply.send(outcome);
            });
        }
        ServerSignal::Request(server, _, request) => {
            // No call owns it and the gateway cannot answer it itself.
            let outcome = Err(RpcError::method_not_found(&request.method));
            tracing::debug!(
                server,
                method = request.method,
                "answered an unowned server request"
            );
            let _ = request.reply.send(outcome);
        }
        ServerSignal::SandboxEnded(server, hits, killed) => {
            if let Some(server) = gateway.server(&server) {
                server.record_sandbox(hits, killed);
            }
        }
        ServerSignal::Closed(server, reason) => {
            tracing::warn!(server, reason, "upstream connection closed");
            if let Some(server) = gateway.server(&server) {
                server.connection_lost(&reason);
            }
        }
    }
}

impl Gateway {
    /// Waits until no call is in flight on any server, or `deadline` passes; says which.
    pub async fn drain(&self, deadline: std::time::Duration) -> bool {
        self.begin_draining();
        let mut servers = self.servers();
        // Servers being retired after a remove or reload finish their calls too.
        servers.extend(self.inner.retiring.list());
        let all = futures::future::join_all(servers.iter().map(|server| server.drained()));
        tokio::time::timeout(deadline, all).await.is_ok()
    }

    /// A client session ended: its subscriptions are released and instances it owned
    /// (per-session sharing) are stopped.
    pub async fn session_ended(&self, session: &str) {
        self.inner.selections.forget(session);
        self.inner.snapshots.forget(session);
        self.drop_subscriptions(session).await;
        let servers = self.servers();
        futures::future::join_all(servers.iter().map(|server| server.session_ended(session))).await;
    }
}
