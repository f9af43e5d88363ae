//! `cluster = "owned"` servers: one process per cluster. Each replica runs one task
//! (owned by the gateway's tracker) that, every third of the lease time, for every such
//! server of its roster:
//!
//! - holding the lease: renews it; when the renewal says another replica holds it now,
//!   or when no renewal succeeded for a whole lease time (Redis away: the lease may have
//!   expired there), fences the server here — instances stopped, none started — so two
//!   processes never serve at once for longer than that;
//! - not holding it: tries to take it (`SET NX`, a new epoch) — and then unfences the
//!   server and starts it —, else learns the owner (where to forward calls) and, when
//!   the server has no lists here yet, takes them from the shared registry.
//!
//! A server fenced here is never started here (`Server::start_instance` refuses), so
//! nothing — a gateway-own request, a health probe, a log-level fan-out — can start a
//! second process on a replica that does not own it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use switchboard_config::{ClusterMode, ClusterSettings, Secret};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::lease::{Leases, Record};
use super::pool::Pool;
use crate::gateway::Gateway;
use crate::server::Server;

/// Where one owned server runs, as this replica knows it.
#[derive(Clone, Debug)]
enum Holding {
    /// This replica holds the lease (renewed last at `renewed`).
    Here { record: Record, renewed: Instant },
    /// Another replica holds it.
    There(Record),
}

/// Server→client requests of forwarded calls waiting for the calling replica's answer.
pub(crate) type Asks = HashMap<
    (String, u64),
    oneshot::Sender<Result<serde_json::Value, switchboard_protocol::RpcError>>,
>;

/// At most this many server→client requests of forwarded calls wait at once.
pub(crate) const MAX_ASKS: usize = 1024;

/// This replica's side of owned servers.
pub(crate) struct Ownership {
    leases: Leases,
    pub(crate) replica: String,
    pub(crate) secret: Option<Secret<String>>,
    pub(crate) lease: Duration,
    configured_address: Option<String>,
    address: OnceLock<String>,
    holdings: Mutex<HashMap<String, Holding>>,
    /// Wakes the task early (the listener's address became known, a call found the
    /// owner gone).
    pub(crate) wake: Notify,
    pub(crate) http: reqwest::Client,
    pub(crate) asks: Mutex<Asks>,
}

impl std::fmt::Debug for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ownership")
            .field("replica", &self.replica)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Ownership {
    /// The ownership side of a replica, when some server is `cluster = "owned"`.
    pub(crate) fn open(
        settings: &ClusterSettings,
        replica: String,
        servers: &switchboard_config::Config,
    ) -> Result<Option<Arc<Ownership>>, crate::registry::StoreError> {
        let any_owned = servers
            .servers
            .values()
            .any(|spec| spec.cluster == ClusterMode::Owned);
        if !any_owned && settings.secret.is_none() {
            return Ok(None);
        }
        let pool = Arc::new(Pool::new(settings)?);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| crate::registry::StoreError::Interrupted(error.to_string()))?;
        Ok(Some(Arc::new(Ownership {
            leases: Leases::new(pool, settings.lease),
            replica,
            secret: settings.secret.clone(),
            lease: settings.lease,
            configured_address: settings.advertise.clone(),
            address: OnceLock::new(),
            holdings: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            http,
            asks: Mutex::new(HashMap::new()),
        })))
    }

    /// The address other replicas reach this one on, once its listener is bound.
    pub(crate) fn set_listening(&self, bound: std::net::SocketAddr) {
        let address = match &self.configured_address {
            Some(address) => address.clone(),
            None if bound.ip().is_unspecified() => {
                tracing::warn!(%bound, "cluster: listening on every address and no [cluster] advertise; advertising loopback, which only replicas on this host reach");
                format!("127.0.0.1:{}", bound.port())
            }
            None => bound.to_string(),
        };
        if self.address.set(address).is_ok() {
            self.wake.notify_one();
        }
    }

    /// Whether this replica holds the lease of `server` now.
    pub(crate) fn holds(&self, server: &str) -> bool {
        matches!(self.holdings.lock().get(server), Some(Holding::Here { .. }))
    }

    /// The epoch this replica holds `server` under, if it does.
    pub(crate) fn held_epoch(&self, server: &str) -> Option<u64> {
        match self.holdings.lock().get(server) {
            Some(Holding::Here { record, .. }) => Some(record.epoch),
            _ => None,
        }
    }

    /// The owner calls to `server` go to, as last learnt.
    pub(crate) fn owner(&self, server: &str) -> Option<Record> {
        match self.holdings.lock().get(server) {
            Some(Holding::There(record)) => Some(record.clone()),
            _ => None,
        }
    }

    /// Reads the owner of `server` now (a call found none, or found it gone).
    pub(crate) async fn refresh(&self, server: &str) -> Option<Record> {
        match self.leases.read(server).await {
            Ok(Some(record)) if record.replica != self.replica => {
                let mut holdings = self.holdings.lock();
                if !matches!(holdings.get(server), Some(Holding::Here { .. })) {
                    holdings.insert(server.to_owned(), Holding::There(record.clone()));
                }
                Some(record)
            }
            _ => None,
        }
    }

    /// Forgets where `server` runs (its owner stopped answering).
    pub(crate) fn forget(&self, server: &str) {
        let mut holdings = self.holdings.lock();
        if matches!(holdings.get(server), Some(Holding::There(_))) {
            holdings.remove(server);
        }
        drop(holdings);
        self.wake.notify_one();
    }
}

/// Starts the ownership task (one per replica, owned by the gateway).
pub(crate) fn spawn(gateway: &Gateway, ownership: Arc<Ownership>) {
    let weak = Arc::downgrade(&gateway.inner);
    let shutdown = gateway.inner.shutdown.clone();
    let tick = ownership.lease / 3;
    gateway.spawn(async move {
        loop {
            let Some(inner) = weak.upgrade() else { return };
            let gateway = Gateway { inner };
            gateway.tend_owned(&ownership).await;
            drop(gateway);
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = ownership.wake.notified() => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}

impl Gateway {
    /// One round over every owned server of the roster (see the module doc).
    async fn tend_owned(&self, ownership: &Ownership) {
        let owned: Vec<Arc<Server>> = self
            .servers()
            .into_iter()
            .filter(|server| server.spec().cluster == ClusterMode::Owned)
            .collect();
        // Servers gone from the roster: their leases are given back.
        let gone: Vec<(String, Record)> = {
            let mut holdings = ownership.holdings.lock();
            let names: Vec<String> = holdings
                .keys()
                .filter(|name| !owned.iter().any(|server| &server.name == *name))
                .cloned()
                .collect();
            names
                .into_iter()
                .filter_map(|name| match holdings.remove(&name) {
                    Some(Holding::Here { record, .. }) => Some((name, record)),
                    _ => None,
                })
                .collect()
        };
        for (name, record) in gone {
            let _ = ownership.leases.release(&name, &record).await;
        }
        for server in owned {
            self.tend_one(ownership, &server).await;
        }
    }

    async fn tend_one(&self, ownership: &Ownership, server: &Arc<Server>) {
        let name = &server.name;
        let holding = ownership.holdings.lock().get(name).cloned();
        match holding {
            Some(Holding::Here { record, renewed }) => {
                match ownership.leases.renew(name, &record).await {
                    Ok(true) => {
                        ownership.holdings.lock().insert(
                            name.clone(),
                            Holding::Here {
                                record,
                                renewed: Instant::now(),
                            },
                        );
                        if server.is_fenced() {
                            // A reload replaced the server object: the new one runs here.
                            self.run_owned(server).await;
                        }
                    }
                    Ok(false) => {
                        tracing::warn!(event = "cluster.lease_lost", server = %name, epoch = record.epoch, "cluster: another replica owns this server now; stopping it here");
                        ownership.holdings.lock().remove(name);
                        self.fence_owned(server).await;
                    }
                    Err(error) if renewed.elapsed() >= ownership.lease => {
                        tracing::warn!(event = "cluster.lease_expired", server = %name, %error, "cluster: lease not renewed for a whole lease time; stopping this server here");
                        ownership.holdings.lock().remove(name);
                        self.fence_owned(server).await;
                    }
                    Err(error) => {
                        tracing::debug!(server = %name, %error, "cluster: lease renewal failed; retried");
                    }
                }
            }
            elsewhere => {
                if !server.is_fenced() {
                    // Never run without the lease (a reload, or a server added while the
                    // lease was away).
                    self.fence_owned(server).await;
                }
                if let Some(address) = ownership.address.get() {
                    match ownership
                        .leases
                        .acquire(name, &ownership.replica, address)
                        .await
                    {
                        Ok(Some(record)) => {
                            tracing::info!(event = "cluster.lease_taken", server = %name, epoch = record.epoch, "cluster: this replica owns the server now");
                            ownership.holdings.lock().insert(
                                name.clone(),
                                Holding::Here {
                                    record,
                                    renewed: Instant::now(),
                                },
                            );
                            self.run_owned(server).await;
                            return;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::debug!(server = %name, %error, "cluster: lease not read");
                            return;
                        }
                    }
                }
                let known = ownership.refresh(name).await;
                if known.is_none()
                    && let Some(Holding::There(_)) = elsewhere
                {
                    ownership.holdings.lock().remove(name);
                }
                let lists = server.lists();
                if lists.tools.is_empty() && lists.prompts.is_empty() && lists.resources.is_empty()
                {
                    self.adopt_owned_lists(name).await;
                }
            }
        }
    }

    /// Unfences `server` and starts it here (this replica took its lease).
    async fn run_owned(&self, server: &Arc<Server>) {
        server.set_fenced(false);
        if let Err(error) = self.bring_up(server).await {
            tracing::error!(server = %server.name, %error, "cluster: owned server did not start; retried on its next call");
        }
    }

    /// Fences `server` here and stops its instances (calls in flight on them fail).
    async fn fence_owned(&self, server: &Arc<Server>) {
        server.set_fenced(true);
        server.sleep().await;
    }

    /// Takes the newest lists the owner recorded in the shared registry for `server`,
    /// which runs on another replica, and shows them here.
    pub(crate) async fn adopt_owned_lists(&self, name: &str) {
        let Some(server) = self.server(name) else {
            return;
        };
        if !server.is_fenced() {
            return;
        }
        let gateway = self.clone();
        let owned = name.to_owned();
        let head = tokio::task::spawn_blocking(move || gateway.inner.registry.adopt_head(&owned))
            .await
            .map_err(|error| crate::registry::StoreError::Interrupted(error.to_string()))
            .and_then(|head| head);
        match head {
            Ok(Some(lists)) => {
                if Arc::ptr_eq(&server.lists(), &lists) {
                    return;
                }
                server.seed_lists(lists);
                self.observe_lists(&server, false).await;
                self.announce();
            }
            Ok(None) => {}
            Err(error) => {
                tracing::debug!(server = name, %error, "cluster: owner's lists not read");
            }
        }
    }

    /// Gives back the leases this replica holds (at shutdown), so another replica takes
    /// over without waiting for them to expire.
    pub(crate) async fn release_owned(&self) {
        let Some(ownership) = self.inner.ownership.clone() else {
            return;
        };
        let held: Vec<(String, Record)> = ownership
            .holdings
            .lock()
            .drain()
            .filter_map(|(name, holding)| match holding {
                Holding::Here { record, .. } => Some((name, record)),
                Holding::There(_) => None,
            })
            .collect();
        for (name, record) in held {
            if let Err(error) = ownership.leases.release(&name, &record).await {
                tracing::warn!(server = name, %error, "cluster: lease not given back; it expires");
            }
        }
    }
}
