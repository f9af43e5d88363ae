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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use switchboard_config::{Config, ConfigFormat, ServerSpec};
use switchboard_protocol::RpcError;
use switchboard_protocol::error::gateway as codes;
use switchboard_upstream::ConnectOptions;

use crate::catalog::ListKind;
use crate::gateway::{Change, Gateway, upstream_client_capabilities};
use crate::server::{Origin, Server, State};

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
    fn build_server(&self, name: &str, spec: ServerSpec, origin: Origin) -> Arc<Server> {
        let settings = &self.inner.settings;
        let options = ConnectOptions {
            server: name.to_owned(),
            spec: spec.clone(),
            max_message_bytes: settings.max_message_bytes,
            probe_timeout: settings.probe_timeout,
            connect_timeout: settings.connect_timeout,
            legacy_client_capabilities: upstream_client_capabilities(),
        };
        let timeout = spec.effective_request_timeout(settings);
        let stats = self.inner.metrics.server(name);
        Server::new(options, origin, timeout, self.inner.signals.clone(), stats)
    }

    /// Makes a server ready to serve: connected, or — when lazy — dormant with its last
    /// known catalog (learning it once, by starting and stopping it, if none is known).
    async fn bring_up(&self, server: &Arc<Server>) -> Result<(), RpcError> {
        if server.spec().lazy {
            if let Some(lists) = self.inner.store.catalog(&server.name) {
                server.seed_lists(lists);
                return Ok(());
            }
            server.upstream(&self.inner.era_cache).await?;
            self.inner.store.put_catalog(&server.name, &server.lists());
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
        for (name, definition) in self.inner.store.registered() {
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
    fn remember_catalog(&self, name: &str) {
        if let Some(server) = self.server(name) {
            self.inner.store.put_catalog(name, &server.lists());
        }
    }

    /// Rebuilds the catalog and tells every session that lists changed.
    pub(crate) fn announce(&self) {
        self.rebuild_catalog();
        for kind in [ListKind::Tools, ListKind::Prompts, ListKind::Resources] {
            let _ = self.inner.changes.send(Change::ListChanged(kind));
        }
    }

    /// Adds a server. Runtime additions are persisted in the store.
    pub async fn add_server(
        &self,
        name: &str,
        spec: ServerSpec,
        origin: Origin,
    ) -> Result<(), RpcError> {
        switchboard_config::ServerName::new(name)
            .map_err(|e| RpcError::invalid_params(e.to_string()))?;
        if self.server(name).is_some() {
            return Err(RpcError::invalid_params(format!(
                "server `{name}` already exists"
            )));
        }
        let server = self.build_server(name, spec, origin);
        self.bring_up(&server).await?;
        let raced = {
            let mut roster = self.inner.servers.write();
            if roster.contains_key(name) {
                Some(server)
            } else {
                roster.insert(name.to_owned(), server);
                None
            }
        };
        if let Some(loser) = raced {
            loser.stop().await;
            return Err(RpcError::invalid_params(format!(
                "server `{name}` already exists"
            )));
        }
        self.remember_catalog(name);
        tracing::info!(server = name, origin = origin.as_str(), "server added");
        self.announce();
        Ok(())
    }

    /// Removes a server: it leaves the catalog at once, finishes its calls in flight, then
    /// stops. A runtime registration is also forgotten by the store.
    pub async fn remove_server(&self, name: &str) -> Result<(), RpcError> {
        let removed = self.inner.servers.write().remove(name);
        let Some(server) = removed else {
            return Err(RpcError::invalid_params(format!("unknown server `{name}`")));
        };
        self.inner.store.remove_registered(name);
        tracing::info!(server = name, "server removed");
        self.announce();
        self.retire(server);
        Ok(())
    }

    /// Lets a server that left the roster finish its calls (up to the drain deadline),
    /// then stops it; until then a drain waits for it.
    fn retire(&self, server: Arc<Server>) {
        self.inner.retiring.0.lock().push(server.clone());
        let deadline = self.inner.settings.drain_timeout;
        let gateway = self.clone();
        tokio::spawn(async move {
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

    async fn reload_as(
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
        self.remember_catalog(name);
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
        let mut report = ApplyReport::default();
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
                    ("added", Some(spec)) => {
                        self.add_server(name, spec.clone(), Origin::Config).await
                    }
                    ("reloaded", Some(spec)) => {
                        self.reload_as(name, spec.clone(), Origin::Config).await
                    }
                    _ => self.remove_server(name).await,
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
        report
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
        tokio::spawn(async move {
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
                    if server.is_connected() && server.inflight() == 0 && server.idle_for() >= limit
                    {
                        tracing::info!(server = %server.name, idle_ms = server.idle_for().as_millis() as u64, "idle: stopping");
                        server.sleep().await;
                    }
                }
            }
        });
    }

    /// Servers and their states, as the admin API and `switchboard__list_servers` show.
    pub fn describe_servers(&self) -> Vec<Value> {
        self.servers()
            .iter()
            .map(|server| server.describe())
            .collect()
    }

    /// Whether a server is known and in what state.
    pub fn server_state(&self, name: &str) -> Option<State> {
        self.server(name).map(|server| server.state())
    }
}
