//! Hot-loading: servers added, reloaded and removed at runtime — from the watched config
//! file, the admin API or meta-tools — without restarting the gateway or disturbing
//! connected clients.
//!
//! Invariants:
//! - A reload starts the new instance first; only once it is ready do new calls move to
//!   it, and the old instance finishes its calls in flight (up to the drain deadline)
//!   before it is stopped. A new instance that fails leaves the old one serving.
//! - A config change is validated completely before anything is touched; only servers
//!   whose definition changed are touched; servers registered at runtime are the store's,
//!   not the file's.
//! - Every roster change rebuilds the catalog and tells every session (`list_changed`).
//! - A runtime registration (admin API, meta-tools: both through
//!   [`Gateway::register_server`]) is applied only once it is persisted: a failed write
//!   stops the new server and refuses the registration (`RosterError::NotPersisted`), so
//!   nothing is answered as registered that a restart would lose. Removing a runtime
//!   registration likewise writes first and leaves the server running if that fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchboard_config::{Config, ConfigFormat, ServerSpec};
use switchboard_protocol::RpcError;
use switchboard_protocol::error::gateway as codes;
use switchboard_upstream::ConnectOptions;

use crate::catalog::ListKind;
use crate::gateway::{Gateway, upstream_client_capabilities};
use crate::registry::StoreError;
use crate::server::{Origin, Server, State};

/// Why adding, registering or removing a server failed.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The name or the definition is invalid.
    #[error("{}", .0.message)]
    Invalid(RpcError),
    #[error("server `{0}` already exists")]
    Exists(String),
    #[error("unknown server `{0}`")]
    Unknown(String),
    /// The new server did not start.
    #[error("{}", .0.message)]
    Start(RpcError),
    /// The change could not be written to the state dir, so it was not applied.
    #[error("`{name}` not changed: {source}")]
    NotPersisted { name: String, source: StoreError },
}

impl RosterError {
    /// The JSON-RPC form (config reloads and meta-tools).
    pub fn to_rpc_error(&self) -> RpcError {
        match self {
            RosterError::Invalid(error) | RosterError::Start(error) => error.clone(),
            RosterError::Exists(_) | RosterError::Unknown(_) => {
                RpcError::invalid_params(self.to_string())
            }
            RosterError::NotPersisted { .. } => RpcError::internal(self.to_string()),
        }
    }
}

/// A name being added, so that two concurrent additions of one name cannot both pass the
/// "already exists" check; released when dropped.
pub(crate) struct Reservation<'a> {
    gateway: &'a Gateway,
    name: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.gateway.inner.adding.lock().remove(&self.name);
    }
}

/// How the config file stands, for operators (admin API, metrics).
#[derive(Clone, Debug)]
pub struct ConfigStatus {
    pub path: Option<String>,
    pub valid: bool,
    pub last_error: Option<String>,
    pub applied_at_ms: u64,
    pub reloads: u64,
    pub rejected: u64,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ConfigStatus {
    pub(crate) fn loaded(config: &Config) -> ConfigStatus {
        ConfigStatus {
            path: config.source.path.as_ref().map(|p| p.display().to_string()),
            valid: true,
            last_error: None,
            applied_at_ms: now_ms(),
            reloads: 0,
            rejected: 0,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path, "valid": self.valid, "last_error": self.last_error,
            "applied_at_ms": self.applied_at_ms, "reloads": self.reloads, "rejected": self.rejected,
        })
    }
}

/// What applying a config changed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ApplyReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub reloaded: Vec<String>,
    pub failed: BTreeMap<String, String>,
    /// What became of `[access]`.
    pub access: AccessChange,
    /// Whether the `[rollouts]` rules changed (and are in force).
    pub rollouts: bool,
}

/// What a reload did to `[access]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessChange {
    #[default]
    Unchanged,
    /// New identities, tenants, roles, rules and limits are in force for every request
    /// from now on (rate-limit counters start afresh).
    Applied,
    /// The section was added or removed: that takes a restart (the faces' identity
    /// checks are set up at start); the section in force stays.
    NeedsRestart,
}

/// Servers taken out of the roster (removed, or replaced by a reload) that are still
/// finishing their calls: SIGTERM's drain waits for them too, and shutdown stops them.
#[derive(Default)]
pub(crate) struct Retiring(parking_lot::Mutex<Vec<Arc<Server>>>);

impl Retiring {
    pub(crate) fn list(&self) -> Vec<Arc<Server>> {
        self.0.lock().clone()
    }
}

/// Parses one server definition in the `.mcp.json` entry shape (as the admin API and
/// meta-tools accept it), with the config crate's full validation. Unlike a file, whose
/// other hosts' keys are only warned about, a definition sent to the API must not carry
/// keys that would be ignored: its sender hears about them at once.
pub fn parse_definition(name: &str, definition: &Value) -> Result<ServerSpec, RpcError> {
    let document = json!({ "mcpServers": { name: definition } });
    let config = switchboard_config::parse(&document.to_string(), ConfigFormat::McpJson, None)
        .map_err(|error| RpcError::invalid_params(format!("invalid server definition: {error}")))?;
    if let Some(warning) = config.warnings.first() {
        return Err(RpcError::invalid_params(format!(
            "invalid server definition: unknown key `{}`",
            warning.key()
        )));
    }
    config
        .servers
        .into_values()
        .next()
        .ok_or_else(|| RpcError::invalid_params("invalid server definition"))
}

impl Gateway {
    pub(crate) fn build_server(&self, name: &str, spec: ServerSpec, origin: Origin) -> Arc<Server> {
        if let Some(secrets) = &self.inner.secrets {
            // What this server is given must not come back to clients either.
            secrets.learn(&spec);
        }
        let settings = &self.inner.settings;
        let options = ConnectOptions {
            server: name.to_owned(),
            spec: spec.clone(),
            max_message_bytes: settings.max_message_bytes,
            probe_timeout: settings.probe_timeout,
            connect_timeout: settings.connect_timeout,
            legacy_client_capabilities: upstream_client_capabilities(),
            tenant: None,
        };
        let timeout = spec.effective_request_timeout(settings);
        let stats = self.inner.metrics.server(name);
        // Runs once per cluster: never here until this replica holds its lease.
        let fenced = self.inner.ownership.is_some()
            && spec.cluster == switchboard_config::ClusterMode::Owned;
        let server = Server::new(
            options,
            origin,
            timeout,
            self.inner.signals.clone(),
            stats,
            self.tracker(),
            self.inner.vault.clone(),
        );
        server.set_fenced(fenced);
        server
    }

    /// Makes a server ready to serve: connected, or — when lazy — dormant with its last
    /// known catalog (learning it once, by starting and stopping it, if none is known).
    pub(crate) async fn bring_up(&self, server: &Arc<Server>) -> Result<(), RpcError> {
        if server.is_fenced() {
            // Owned by another replica of the cluster: listed from the shared registry.
            if let Some(lists) = self.inner.registry.last_known(&server.name) {
                server.seed_lists(lists);
                self.observe_lists(server, false).await;
            }
            return Ok(());
        }
        if server.spec().lazy {
            if let Some(lists) = self.inner.registry.last_known(&server.name) {
                server.seed_lists(lists);
                self.observe_lists(server, false).await;
                return Ok(());
            }
            server.upstream(&self.inner.era_cache).await?;
            self.observe_lists(server, true).await;
            server.sleep().await;
            return Ok(());
        }
        if server.policy().pool.prewarm {
            return server.prewarm(&self.inner.era_cache).await;
        }
        server.upstream(&self.inner.era_cache).await.map(|_| ())
    }

    /// Starts the configured and the runtime-registered servers, concurrently.
    pub(crate) async fn start_servers(&self, config: &Config) {
        let mut wanted: Vec<(String, ServerSpec, Origin)> = config
            .enabled_servers()
            .map(|(name, spec)| (name.to_string(), spec.clone(), Origin::Config))
            .collect();
        for (name, definition) in self.inner.registry.registered() {
            if wanted.iter().any(|(n, _, _)| *n == name) {
                continue; // the file wins over a stale runtime registration
            }
            match parse_definition(&name, &definition) {
                Ok(spec) => wanted.push((name, spec, Origin::Runtime)),
                Err(error) => {
                    tracing::error!(server = name, %error, "stored server definition invalid; skipped")
                }
            }
        }
        let servers: Vec<Arc<Server>> = wanted
            .into_iter()
            .map(|(name, spec, origin)| self.build_server(&name, spec, origin))
            .collect();
        {
            let mut roster = self.inner.servers.write();
            for server in &servers {
                roster.insert(server.name.clone(), server.clone());
            }
        }
        let outcomes = futures::future::join_all(servers.iter().map(|s| self.bring_up(s))).await;
        for (server, outcome) in servers.iter().zip(outcomes) {
            if let Err(error) = outcome {
                tracing::error!(server = %server.name, %error, "server did not start");
            }
        }
        self.announce();
    }

    /// Persists a server's current lists as its last known catalog.
    pub(crate) async fn remember_catalog(&self, name: &str) {
        if let Some(server) = self.server(name) {
            self.observe_lists(&server, false).await;
        }
    }

    /// Rebuilds the catalog and tells every session that lists changed.
    pub(crate) fn announce(&self) {
        self.announce_lists(&[ListKind::Tools, ListKind::Prompts, ListKind::Resources]);
    }

    /// Adds a server from the config file (not persisted: the file is its record).
    pub async fn add_server(
        &self,
        name: &str,
        spec: ServerSpec,
        origin: Origin,
    ) -> Result<(), RosterError> {
        self.admit(name, spec, origin, None).await
    }

    /// Registers a server at runtime from a `.mcp.json`-shaped definition (admin API,
    /// meta-tools): started, persisted in the store, and only then added. Returns whether
    /// it is persisted (`false`: no state dir, memory only).
    pub async fn register_server(
        &self,
        name: &str,
        definition: &Value,
    ) -> Result<bool, RosterError> {
        let spec = parse_definition(name, definition).map_err(RosterError::Invalid)?;
        self.register_spec(name, spec, definition).await
    }

    /// [`Gateway::register_server`] with the definition already parsed (and vetted by the
    /// caller: the meta-tools' policy).
    pub(crate) async fn register_spec(
        &self,
        name: &str,
        spec: ServerSpec,
        definition: &Value,
    ) -> Result<bool, RosterError> {
        self.admit(name, spec, Origin::Runtime, Some(definition))
            .await?;
        Ok(self.inner.registry.is_persistent())
    }

    /// Starts a server and adds it to the roster, persisting `definition` in between when
    /// given (a failed write stops the server and fails the addition).
    async fn admit(
        &self,
        name: &str,
        spec: ServerSpec,
        origin: Origin,
        definition: Option<&Value>,
    ) -> Result<(), RosterError> {
        switchboard_config::ServerName::new(name)
            .map_err(|e| RosterError::Invalid(RpcError::invalid_params(e.to_string())))?;
        let _reservation = self.reserve(name)?;
        let server = self.build_server(name, spec, origin);
        self.bring_up(&server).await.map_err(RosterError::Start)?;
        if let Some(definition) = definition
            && let Err(source) = {
                let (name, definition) = (name.to_owned(), definition.clone());
                self.registry_write(move |registry| registry.put_registered(&name, &definition))
                    .await
            }
        {
            tracing::error!(server = name, error = %source, "registration not persisted; not applied");
            server.stop().await;
            return Err(RosterError::NotPersisted {
                name: name.to_owned(),
                source,
            });
        }
        self.inner.servers.write().insert(name.to_owned(), server);
        self.remember_catalog(name).await;
        tracing::info!(server = name, origin = origin.as_str(), "server added");
        self.announce();
        Ok(())
    }

    /// Claims `name` for an addition: fails if a server or another addition has it.
    pub(crate) fn reserve(&self, name: &str) -> Result<Reservation<'_>, RosterError> {
        let mut adding = self.inner.adding.lock();
        if self.server(name).is_some() || !adding.insert(name.to_owned()) {
            return Err(RosterError::Exists(name.to_owned()));
        }
        Ok(Reservation {
            gateway: self,
            name: name.to_owned(),
        })
    }

    /// Removes a server: it leaves the catalog at once, finishes its calls in flight, then
    /// stops. A runtime registration is forgotten by the store first; if that cannot be
    /// written the server stays.
    pub async fn remove_server(&self, name: &str) -> Result<(), RosterError> {
        if self.server(name).is_none() {
            return Err(RosterError::Unknown(name.to_owned()));
        }
        let owned = name.to_owned();
        self.registry_write(move |registry| registry.remove_registered(&owned))
            .await
            .map_err(|source| RosterError::NotPersisted {
                name: name.to_owned(),
                source,
            })?;
        let removed = self.inner.servers.write().remove(name);
        let Some(server) = removed else {
            return Err(RosterError::Unknown(name.to_owned()));
        };
        tracing::info!(server = name, "server removed");
        self.announce();
        self.retire(server);
        Ok(())
    }

    /// Takes a server of `origin` out of the roster without touching the store (a
    /// discovered server: its source is its record). Returns whether it was there.
    pub(crate) fn withdraw(&self, name: &str, origin: Origin) -> bool {
        let removed = {
            let mut servers = self.inner.servers.write();
            match servers.get(name) {
                Some(server) if server.origin == origin => servers.remove(name),
                _ => None,
            }
        };
        let Some(server) = removed else { return false };
        tracing::info!(server = name, origin = origin.as_str(), "server removed");
        self.announce();
        self.retire(server);
        true
    }

    /// Stops a server from the admin API: its calls in flight finish first (up to the
    /// drain deadline), then its instances stop. It stays registered and in the catalog,
    /// dormant: its next call, or [`Gateway::start_server`], starts it again.
    pub async fn stop_server(&self, name: &str) -> Result<(), RosterError> {
        let server = self
            .server(name)
            .ok_or_else(|| RosterError::Unknown(name.to_owned()))?;
        let deadline = self.inner.settings.drain_timeout;
        if tokio::time::timeout(deadline, server.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                server = name,
                inflight = server.inflight(),
                "drain deadline passed; stopping with calls in flight"
            );
        }
        server.sleep().await;
        tracing::info!(server = name, "server stopped by an admin; dormant");
        Ok(())
    }

    /// Starts a server now (a dormant or failed one; a running one is left as it is), and
    /// records the lists it has.
    pub async fn start_server(&self, name: &str) -> Result<(), RosterError> {
        let server = self
            .server(name)
            .ok_or_else(|| RosterError::Unknown(name.to_owned()))?;
        server
            .upstream(&self.inner.era_cache)
            .await
            .map_err(RosterError::Start)?;
        self.observe_lists(&server, true).await;
        tracing::info!(server = name, "server started by an admin");
        Ok(())
    }

    /// Lets a server that left the roster finish its calls (up to the drain deadline),
    /// then stops it; until then a drain waits for it.
    pub(crate) fn retire(&self, server: Arc<Server>) {
        self.inner.retiring.0.lock().push(server.clone());
        let deadline = self.inner.settings.drain_timeout;
        let gateway = self.clone();
        self.spawn(async move {
            server.retire(deadline).await;
            let mut retiring = gateway.inner.retiring.0.lock();
            retiring.retain(|s| !Arc::ptr_eq(s, &server));
        });
    }

    /// Replaces a server's instance with a fresh one (optionally with a new definition),
    /// losing no call: see the module invariants.
    pub async fn reload_server(
        &self,
        name: &str,
        spec: Option<ServerSpec>,
    ) -> Result<(), RpcError> {
        let old = self
            .server(name)
            .ok_or_else(|| RpcError::invalid_params(format!("unknown server `{name}`")))?;
        let spec = spec.unwrap_or_else(|| old.spec().clone());
        let origin = old.origin;
        self.reload_as(name, spec, origin).await
    }

    pub(crate) async fn reload_as(
        &self,
        name: &str,
        spec: ServerSpec,
        origin: Origin,
    ) -> Result<(), RpcError> {
        let replacement = self.build_server(name, spec, origin);
        if let Err(error) = self.bring_up(&replacement).await {
            replacement.stop().await;
            tracing::warn!(server = name, %error, "reload failed; the old instance keeps serving");
            return Err(RpcError::new(
                codes::UPSTREAM_UNAVAILABLE,
                format!("reload of `{name}` failed: {}", error.message),
            ));
        }
        let old = self
            .inner
            .servers
            .write()
            .insert(name.to_owned(), replacement);
        self.remember_catalog(name).await;
        tracing::info!(server = name, "server reloaded");
        self.announce();
        if let Some(old) = old {
            self.retire(old);
        }
        Ok(())
    }

    /// Applies a new, already validated config: adds, reloads and removes exactly the
    /// servers whose definitions changed.
    pub async fn apply_config(&self, config: &Config) -> ApplyReport {
        let mut report = ApplyReport {
            access: self.apply_access(config.access.as_ref()),
            ..ApplyReport::default()
        };
        let current: BTreeMap<String, (ServerSpec, Origin)> = self
            .inner
            .servers
            .read()
            .iter()
            .map(|(name, server)| (name.clone(), (server.spec().clone(), server.origin)))
            .collect();
        let wanted: BTreeMap<String, ServerSpec> = config
            .enabled_servers()
            .map(|(name, spec)| (name.to_string(), spec.clone()))
            .collect();
        if wanted.values().any(|spec| spec.policy.validate)
            && !self.inner.chain.load().names().contains(&"validate")
        {
            // The chain is built at start; it was left out because every server had
            // `validate = false` (so calls stay free of it).
            tracing::warn!(
                "a server now has validate = true, but argument validation starts only at the next restart"
            );
        }
        let mut tasks = Vec::new();
        for (name, spec) in &wanted {
            match current.get(name) {
                None => tasks.push((name.clone(), "added", Some(spec.clone()))),
                Some((old, origin)) if old != spec || *origin != Origin::Config => {
                    tasks.push((name.clone(), "reloaded", Some(spec.clone())))
                }
                Some(_) => {}
            }
        }
        for (name, (_, origin)) in &current {
            if *origin == Origin::Config && !wanted.contains_key(name) {
                tasks.push((name.clone(), "removed", None));
            }
        }
        let outcomes =
            futures::future::join_all(tasks.iter().map(|(name, action, spec)| async move {
                match (*action, spec) {
                    ("added", Some(spec)) => self
                        .add_server(name, spec.clone(), Origin::Config)
                        .await
                        .map_err(|error| error.to_rpc_error()),
                    ("reloaded", Some(spec)) => {
                        self.reload_as(name, spec.clone(), Origin::Config).await
                    }
                    _ => self
                        .remove_server(name)
                        .await
                        .map_err(|error| error.to_rpc_error()),
                }
            }))
            .await;
        for ((name, action, _), outcome) in tasks.into_iter().zip(outcomes) {
            match outcome {
                Ok(()) => match action {
                    "added" => report.added.push(name),
                    "reloaded" => report.reloaded.push(name),
                    _ => report.removed.push(name),
                },
                Err(error) => {
                    report.failed.insert(name, error.message);
                }
            }
        }
        // After the servers, so a rollout's new versions are running when it applies.
        report.rollouts = self.apply_rollouts(config);
        report
    }

    /// Puts changed `[rollouts]` rules in force: a new catalog snapshot on the new rules,
    /// and `list_changed` to the callers whose view changed (a tenant moved to the other
    /// version, `Gateway::sees`). The tenants seen carry over. Returns whether anything
    /// changed.
    fn apply_rollouts(&self, config: &Config) -> bool {
        let rules: Vec<crate::rollouts::Rule> = config
            .rollouts
            .values()
            .map(crate::rollouts::Rule::from_config)
            .collect();
        let current = self.inner.rollouts.load_full();
        let unchanged = match &current {
            None => rules.is_empty(),
            Some(current) => current.same_rules(&rules),
        };
        if unchanged {
            return false;
        }
        let next = (!rules.is_empty()).then(|| {
            let next = crate::rollouts::Rollouts::new(rules);
            if let Some(current) = &current {
                next.carry_seen(current);
            }
            Arc::new(next)
        });
        self.inner.rollouts.store(next);
        self.announce();
        tracing::info!("[rollouts] reloaded");
        true
    }

    /// Puts a changed `[access]` in force: a new authenticator for the faces and new
    /// access steps in the chain (the audit log and the other steps stay), then a new
    /// catalog snapshot, so that no caller's view is served from the old rules; callers
    /// whose view changed are told through `list_changed`.
    fn apply_access(&self, access: Option<&switchboard_config::AccessSettings>) -> AccessChange {
        let mut current = self.inner.access_settings.lock();
        if current.as_ref() == access {
            return AccessChange::Unchanged;
        }
        let Some(access) = access.filter(|_| current.is_some()) else {
            tracing::warn!(
                "[access] added or removed: takes effect at restart; the section in force stays"
            );
            return AccessChange::NeedsRestart;
        };
        let steps = self
            .inner
            .chain_parts
            .access_steps(Some(access), &self.inner.metrics);
        self.inner
            .access
            .store(Some(Arc::new(crate::access::Authenticator::new(access))));
        self.inner
            .chain
            .store(Arc::new(self.inner.chain_parts.chain(steps)));
        self.inner.snapshots.rules_changed();
        *current = Some(access.clone());
        drop(current);
        self.announce();
        tracing::info!("[access] reloaded");
        AccessChange::Applied
    }

    /// Whether applying `config` would leave no server from the config file running
    /// (runtime registrations do not count: they are not the file's).
    pub(crate) fn would_remove_every_server(&self, config: &Config) -> bool {
        config.enabled_servers().next().is_none()
            && self
                .inner
                .servers
                .read()
                .values()
                .any(|server| server.origin == Origin::Config)
    }

    /// Records a config file that failed validation (the running config stays).
    pub(crate) fn config_rejected(&self, error: String) {
        let mut status = self.inner.config_status.lock();
        status.valid = false;
        status.last_error = Some(error);
        status.rejected += 1;
    }

    pub(crate) fn config_applied(&self) {
        let mut status = self.inner.config_status.lock();
        status.valid = true;
        status.last_error = None;
        status.reloads += 1;
        status.applied_at_ms = now_ms();
    }

    pub fn config_status(&self) -> ConfigStatus {
        self.inner.config_status.lock().clone()
    }

    /// Stops servers with an `idle_timeout` that nobody has called for that long; their
    /// next call starts them again.
    pub(crate) fn spawn_idle_reaper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let shutdown = self.inner.shutdown.clone();
        self.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(250)) => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(inner) = weak.upgrade() else { return };
                let gateway = Gateway { inner };
                for server in gateway.servers() {
                    let Some(limit) = server.spec().idle_timeout else {
                        continue;
                    };
                    // A per-tenant server's tenants idle out one by one.
                    server.stop_idle_tenants(limit).await;
                    if server.is_connected() && server.inflight() == 0 && server.idle_for() >= limit
                    {
                        tracing::info!(server = %server.name, idle_ms = server.idle_for().as_millis() as u64, "idle: stopping");
                        server.sleep().await;
                    }
                }
            }
        });
    }

    /// Servers and their states, as `switchboard__list_servers` shows them.
    pub fn describe_servers(&self) -> Vec<Value> {
        self.servers()
            .iter()
            .map(|server| server.describe())
            .collect()
    }

    /// Servers and their states, as the admin API shows them (with the tenants of
    /// `per_tenant` servers, and the tools flagged as poisoned: `screen.rs`).
    pub fn describe_servers_for_operators(&self) -> Vec<Value> {
        self.servers()
            .iter()
            .map(|server| {
                let mut described = server.describe_for_operators();
                if let Some(object) = described.as_object_mut() {
                    object.insert("poisoned".into(), self.inner.screen.report(&server.name));
                }
                described
            })
            .collect()
    }

    /// Whether a server is known and in what state.
    pub fn server_state(&self, name: &str) -> Option<State> {
        self.server(name).map(|server| server.state())
    }
}
