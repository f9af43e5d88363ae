//! One configured upstream server at runtime: the [`Server`] type, its construction and
//! lifecycle (retire, drain, stop, sleep, a session's instance ending). Its jobs live in
//! submodules: `admission` (breaker → bulkhead → instance, restart backoff, leases),
//! `status` (what operators see), `lists` (its last known lists and resource watches),
//! `instance` (one upstream connection), `health` (probes), `breaker` and `backoff`
//! (pure state machines), `sandbox` (a stdio server's sandbox as enforced here, and the
//! limits it hit).
//!
//! # Concurrency note
//! `instances` is a `parking_lot::Mutex` held only to pick or edit the list, never across
//! an await. `connecting` (an async mutex) serializes starts, so a burst of calls to a dead
//! server starts exactly one process; callers wait on it (bounded by the bulkhead queue
//! and the connect timeout) instead of failing while a reload or restart is under way.

mod admission;
mod backoff;
mod breaker;
mod health;
mod instance;
mod lists;
mod sandbox;
mod status;
mod tenancy;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde_json::Value;
use switchboard_config::ServerPolicy;
use switchboard_upstream::ConnectOptions;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use admission::{CallGuard, Lease, backoff_delay, call_outcome};
use breaker::Breaker;
pub use breaker::BreakerState;
use instance::Instance;
pub use status::State;
use status::Status;
pub(crate) use tenancy::TenantKey;

use crate::catalog::{ListKind, ServerLists};
use crate::metrics::ServerStats;

/// Where a server's definition came from: the config file (the file owns it) or the admin
/// API / a meta-tool (persisted in the store, untouched by file reloads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Config,
    Runtime,
    /// A `[[discovery]]` source's (`discovery/`).
    Discovered,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Runtime => "runtime",
            Origin::Discovered => "discovery",
        }
    }
}

/// Which instance sent a signal, the session that owns it (per-session sharing) and the
/// tenant it serves (per-tenant sharing).
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub(crate) instance: u64,
    pub(crate) owner: Option<String>,
    pub(crate) tenant: Option<TenantKey>,
}

/// Events from a server's connections that the gateway must act on.
#[derive(Debug)]
pub(crate) enum ServerSignal {
    ListChanged(String, ListKind, Source),
    ResourceUpdated(String, Value),
    Log(String, Source, Option<Value>),
    /// An upstream's `notifications/tasks` (its params: the task under the upstream's id).
    TaskStatus(String, Value),
    Request(String, Source, switchboard_upstream::ServerRequest),
    /// A connection came up: the server's name and its generation.
    Connected(String, u64),
    Closed(String, String),
    /// A sandboxed instance ended: enforcement events not yet collected, and the limit
    /// that ended it, if one did.
    SandboxEnded(
        String,
        switchboard_upstream::sandbox::Counters,
        Option<switchboard_upstream::sandbox::LimitHit>,
    ),
}

/// Resource URIs clients watch on a modern server, and the wake-up for its listen stream.
pub(crate) type Watch = (Arc<Mutex<BTreeSet<String>>>, Arc<Notify>);

static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

pub struct Server {
    pub name: String,
    /// Distinguishes a reload's new server object from the old one under the same name.
    pub instance: u64,
    pub origin: Origin,
    options: ConnectOptions,
    pub request_timeout: Duration,
    inflight: AtomicUsize,
    last_used: Mutex<Instant>,
    idle: Notify,
    retired: AtomicBool,
    /// A `cluster = "owned"` server this replica does not own: no instance starts here.
    fenced: AtomicBool,
    connecting: tokio::sync::Mutex<()>,
    instances: Mutex<Vec<Arc<Instance>>>,
    status: Mutex<Status>,
    /// Restart backoff of each tenant's instance (`per_tenant`), apart from `status`'s.
    tenant_backoff: tenancy::TenantBackoffs,
    breaker: Mutex<Breaker>,
    bulkhead: Arc<Semaphore>,
    queued: AtomicUsize,
    lists: ArcSwap<ServerLists>,
    signals: mpsc::Sender<ServerSignal>,
    watch: Watch,
    /// Resource subscriptions held by clients: upstream URI → holders (`subscriptions.rs`).
    pub(crate) holds: tokio::sync::Mutex<BTreeMap<String, BTreeSet<String>>>,
    pub stats: ServerStats,
    /// Coalesces `list_changed` signals into re-lists (`relist`).
    pub(crate) relists: crate::relist::Relists,
    /// Ends the health-probe task.
    tasks: CancellationToken,
    /// The gateway's task tracker: the server's background tasks are the gateway's.
    tracker: TaskTracker,
    /// The sandbox of a stdio server that has one, as this machine enforces it.
    sandbox: Option<sandbox::SandboxStatus>,
    /// The secret store `${secret:NAME}` references are resolved from at each start.
    vault: Option<Arc<crate::vault::Vault>>,
}

/// How long a replaced instance may finish its calls.
const INSTANCE_DRAIN: Duration = Duration::from_secs(30);

impl Server {
    pub(crate) fn new(
        options: ConnectOptions,
        origin: Origin,
        request_timeout: Duration,
        signals: mpsc::Sender<ServerSignal>,
        stats: ServerStats,
        tracker: TaskTracker,
        vault: Option<Arc<crate::vault::Vault>>,
    ) -> Arc<Server> {
        let policy = options.spec.policy.clone();
        let server = Arc::new(Server {
            name: options.server.clone(),
            instance: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            origin,
            request_timeout,
            inflight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            idle: Notify::new(),
            retired: AtomicBool::new(false),
            fenced: AtomicBool::new(false),
            connecting: tokio::sync::Mutex::new(()),
            instances: Mutex::new(Vec::new()),
            status: Mutex::new(Status {
                state: State::Dormant,
                last_error: None,
                since: Instant::now(),
                start_failures: 0,
                next_start: None,
            }),
            tenant_backoff: Default::default(),
            breaker: Mutex::new(Breaker::new(policy.breaker.clone())),
            bulkhead: Arc::new(Semaphore::new(policy.limits.max_concurrency)),
            queued: AtomicUsize::new(0),
            lists: ArcSwap::from_pointee(ServerLists::default()),
            signals,
            watch: (Arc::default(), Arc::default()),
            holds: tokio::sync::Mutex::default(),
            stats,
            relists: Default::default(),
            tasks: CancellationToken::new(),
            tracker,
            sandbox: sandbox::SandboxStatus::assess(&options.server, &options.spec.transport),
            options,
            vault,
        });
        if let Some(interval) = policy.health.interval {
            health::spawn(
                Arc::downgrade(&server),
                interval,
                server.tasks.clone(),
                &server.tracker,
            );
        }
        server
    }

    pub fn policy(&self) -> &ServerPolicy {
        &self.options.spec.policy
    }

    pub fn spec(&self) -> &switchboard_config::ServerSpec {
        &self.options.spec
    }

    /// Whether instances of this server may not start here (`cluster = "owned"`, and
    /// another replica holds the lease).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    pub(crate) fn set_fenced(&self, fenced: bool) {
        self.fenced.store(fenced, Ordering::Release);
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used.lock().elapsed()
    }

    /// Takes the server out of service: calls already running finish (up to `deadline`),
    /// new ones are refused, then every instance is stopped.
    pub(crate) async fn retire(&self, deadline: Duration) {
        self.retired.store(true, Ordering::Release);
        let _ = tokio::time::timeout(deadline, self.drained()).await;
        if self.inflight() > 0 {
            tracing::warn!(server = %self.name, inflight = self.inflight(), "drain deadline passed; stopping with calls in flight");
        }
        self.stop().await;
    }

    /// Resolves once no call is in flight.
    pub(crate) async fn drained(&self) {
        loop {
            let idle = self.idle.notified();
            if self.inflight() == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Stops every instance (graceful stop sequence for stdio).
    pub async fn stop(&self) {
        self.tasks.cancel();
        self.stop_instances().await;
        self.set_state(State::Stopped, None);
    }

    /// Stops the instances but stays in service: dormant until the next call.
    pub(crate) async fn sleep(&self) {
        self.stop_instances().await;
        self.set_state(State::Dormant, None);
    }

    async fn stop_instances(&self) {
        let _starting = self.connecting.lock().await;
        let instances: Vec<Arc<Instance>> = std::mem::take(&mut *self.instances.lock());
        futures::future::join_all(instances.iter().map(|i| i.shutdown())).await;
    }

    /// Stops the instance a client session owned (per-session sharing) when it ends.
    pub(crate) async fn session_ended(&self, session: &str) {
        let owned: Vec<Arc<Instance>> = {
            let mut instances = self.instances.lock();
            let (owned, kept): (Vec<_>, Vec<_>) =
                instances.drain(..).partition(|i| i.is_owned_by(session));
            *instances = kept;
            owned
        };
        for instance in owned {
            instance.drain_and_shutdown(INSTANCE_DRAIN).await;
        }
    }

    pub(crate) fn instances_snapshot(&self) -> Vec<Arc<Instance>> {
        self.instances.lock().clone()
    }
}

/// A server named `s` built from a native config text defining `[servers.s]`, for the
/// unit tests of this module's parts (nothing started).
#[cfg(test)]
pub(crate) fn test_server(config: &str) -> Arc<Server> {
    let config = switchboard_config::parse(config, switchboard_config::ConfigFormat::Native, None)
        .expect("valid config");
    let spec = config.servers.into_values().next().expect("one server");
    let options = ConnectOptions {
        server: "s".into(),
        spec,
        max_message_bytes: 1 << 20,
        probe_timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        legacy_client_capabilities: serde_json::json!({}),
        tenant: None,
    };
    let (signals, _) = tokio::sync::mpsc::channel(8);
    Server::new(
        options,
        Origin::Config,
        Duration::from_secs(5),
        signals,
        crate::metrics::Metrics::default().server("s"),
        tokio_util::task::TaskTracker::new(),
        None,
    )
}
