//! One configured upstream server at runtime: its instances (one shared, one per client
//! session, or a pool), how calls are admitted (circuit breaker, bulkhead, restart
//! backoff), health probes and recycling, its status for operators, and its last known
//! lists.
//!
//! # Concurrency note
//! `instances` is a `parking_lot::Mutex` held only to pick or edit the list, never across
//! an await. `connecting` (an async mutex) serializes starts, so a burst of calls to a dead
//! server starts exactly one process; callers wait on it (bounded by the bulkhead queue
//! and the connect timeout) instead of failing while a reload or restart is under way.

mod backoff;
mod breaker;
mod health;
mod instance;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_config::{ServerPolicy, Sharing};
use switchboard_protocol::{RpcError, error::gateway};
use switchboard_upstream::{CallOptions, ConnectOptions, EraCache, Upstream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use breaker::BreakerState;
use breaker::{Admission, Breaker};
use instance::{Instance, InstanceGuard};

use crate::catalog::{ListKind, ServerLists};
use crate::metrics::{Outcome, ServerStats};

/// Where a server is in its life, as operators see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Dormant,
    Starting,
    Ready,
    Degraded,
    Failed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Dormant => "dormant",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Degraded => "degraded",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }

    /// The metric's encoding: 0 dormant/stopped, 1 starting, 2 ready, 3 degraded, 4 failed.
    pub fn as_gauge(self) -> u8 {
        match self {
            State::Dormant | State::Stopped => 0,
            State::Starting => 1,
            State::Ready => 2,
            State::Degraded => 3,
            State::Failed => 4,
        }
    }
}

#[derive(Debug)]
struct Status {
    state: State,
    last_error: Option<String>,
    since: Instant,
    /// Consecutive failed starts, for the restart backoff.
    start_failures: u32,
    /// No start before this instant (restart backoff).
    next_start: Option<Instant>,
}

/// Where a server's definition came from: the config file (the file owns it) or the admin
/// API / a meta-tool (persisted in the store, untouched by file reloads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Config,
    Runtime,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Config => "config",
            Origin::Runtime => "runtime",
        }
    }
}

/// Counts one call against a server while it lives (see [`Server::retire`]).
pub(crate) struct CallGuard(Arc<Server>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
        *self.0.last_used.lock() = Instant::now();
        self.0.idle.notify_waiters();
    }
}

/// Which instance sent a signal, and the session that owns it (per-session sharing).
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub(crate) instance: u64,
    pub(crate) owner: Option<String>,
}

/// Events from a server's connections that the gateway must act on.
#[derive(Debug)]
pub(crate) enum ServerSignal {
    ListChanged(String, ListKind, Source),
    ResourceUpdated(String, Value),
    Log(String, Source, Option<Value>),
    Request(String, switchboard_upstream::ServerRequest),
    /// A connection came up: the server's name and its generation.
    Connected(String, u64),
    Closed(String, String),
}

/// Resource URIs clients watch on a modern server, and the wake-up for its listen stream.
pub(crate) type Watch = (Arc<Mutex<BTreeSet<String>>>, Arc<Notify>);

/// Permission to run one call on one instance: the bulkhead permit, the breaker's
/// admission and the instance's in-flight count, released together when dropped.
pub(crate) struct Lease {
    pub(crate) upstream: Upstream,
    server: Arc<Server>,
    admission: Admission,
    _instance: InstanceGuard,
    _permit: OwnedSemaphorePermit,
    instance: Arc<Instance>,
}

impl Lease {
    /// Records how the call ended (breaker, metrics, wedged-instance strikes).
    pub(crate) fn finish(
        self,
        tool: &str,
        outcome: &Result<Value, switchboard_upstream::CallError>,
        elapsed: Duration,
    ) {
        use switchboard_upstream::CallError;
        let label = match outcome {
            Ok(result) if result.get("isError") == Some(&Value::Bool(true)) => Outcome::ToolError,
            Ok(_) => Outcome::Ok,
            Err(CallError::Rpc(_)) => Outcome::RpcError,
            Err(CallError::Timeout(_)) => Outcome::Timeout,
            Err(CallError::Cancelled) => Outcome::Cancelled,
            Err(_) => Outcome::Unavailable,
        };
        let failure = outcome.as_ref().is_err_and(CallError::is_transport_failure);
        self.server
            .breaker
            .lock()
            .record(self.admission, failure, Instant::now());
        self.server.stats.count(tool, label);
        self.server.stats.latency.observe(elapsed);
        if matches!(outcome, Err(CallError::Timeout(_))) {
            // A timeout may mean a wedged process: probe it now, recycle it if it is.
            let server = self.server.clone();
            let instance = self.instance.clone();
            tokio::spawn(async move { server.check_wedged(instance).await });
        } else if outcome.is_ok() {
            self.instance.strikes.store(0, Ordering::Relaxed);
        }
    }
}

/// The delay before retry `attempt` (1-based), with jitter.
pub(crate) fn backoff_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    backoff::delay(base, max, attempt, backoff::jitter())
}

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
    connecting: tokio::sync::Mutex<()>,
    instances: Mutex<Vec<Arc<Instance>>>,
    status: Mutex<Status>,
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
}

const LIST_PAGES_MAX: usize = 100;

/// How long a replaced instance may finish its calls.
const INSTANCE_DRAIN: Duration = Duration::from_secs(30);

/// One kind of list, just read from an upstream.
struct Fresh {
    kind: ListKind,
    items: Vec<Value>,
    templates: Vec<Value>,
}

impl Fresh {
    /// `lists` with this kind replaced.
    fn apply(&self, lists: &ServerLists) -> ServerLists {
        let mut lists = lists.clone();
        match self.kind {
            ListKind::Tools => lists.tools = self.items.clone(),
            ListKind::Prompts => lists.prompts = self.items.clone(),
            ListKind::Resources => {
                lists.resources = self.items.clone();
                lists.templates = self.templates.clone();
            }
        }
        lists
    }
}

impl Server {
    pub(crate) fn new(
        options: ConnectOptions,
        origin: Origin,
        request_timeout: Duration,
        signals: mpsc::Sender<ServerSignal>,
        stats: ServerStats,
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
            connecting: tokio::sync::Mutex::new(()),
            instances: Mutex::new(Vec::new()),
            status: Mutex::new(Status {
                state: State::Dormant,
                last_error: None,
                since: Instant::now(),
                start_failures: 0,
                next_start: None,
            }),
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
            options,
        });
        if let Some(interval) = policy.health.interval {
            health::spawn(Arc::downgrade(&server), interval, server.tasks.clone());
        }
        server
    }

    pub fn policy(&self) -> &ServerPolicy {
        &self.options.spec.policy
    }

    pub fn lists(&self) -> Arc<ServerLists> {
        self.lists.load_full()
    }

    pub fn spec(&self) -> &switchboard_config::ServerSpec {
        &self.options.spec
    }

    /// Seeds the lists of a dormant server from the last known catalog.
    pub(crate) fn seed_lists(&self, lists: ServerLists) {
        self.lists.store(Arc::new(lists));
    }

    /// Counts a call; taken while the roster lock is held, so a drain cannot miss it.
    pub(crate) fn call_guard(self: &Arc<Self>) -> CallGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn idle_for(&self) -> Duration {
        self.last_used.lock().elapsed()
    }

    pub fn is_connected(&self) -> bool {
        self.instances.lock().iter().any(|i| i.is_alive())
    }

    /// Live instances (for stdio: child processes).
    pub fn instance_count(&self) -> usize {
        self.instances
            .lock()
            .iter()
            .filter(|i| i.is_alive())
            .count()
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().state()
    }

    pub fn restarts(&self) -> u64 {
        self.stats.restarts()
    }

    pub fn state(&self) -> State {
        self.status.lock().state
    }

    fn set_state(&self, state: State, error: Option<String>) {
        let mut status = self.status.lock();
        status.state = state;
        if error.is_some() || state == State::Ready {
            status.last_error = error;
        }
        status.since = Instant::now();
    }

    /// The server's own instructions, from its handshake.
    pub fn instructions(&self) -> Option<String> {
        self.instances
            .lock()
            .first()?
            .upstream
            .handshake()
            .instructions
            .clone()
    }

    /// A JSON summary for operators and the admin API.
    pub fn describe(&self) -> Value {
        let status = self.status.lock();
        let instances = self.instances.lock();
        let handshake = instances.first().map(|i| i.upstream.handshake().clone());
        let pids: Vec<u32> = instances.iter().filter_map(|i| i.upstream.pid()).collect();
        json!({
            "name": self.name,
            "state": status.state.as_str(),
            "last_error": status.last_error,
            "restarts": self.restarts(),
            "era": handshake.as_ref().map(|h| h.era.as_str()),
            "protocol_version": handshake.as_ref().map(|h| h.protocol_version.clone()),
            "server_info": handshake.as_ref().map(|h| h.server_info.clone()),
            "pid": pids.first(),
            "pids": pids,
            "instances": instances.len(),
            "sharing": self.policy().sharing.as_str(),
            "breaker": self.breaker.lock().state().as_str(),
            "transport": self.options.spec.transport.kind(),
            "tools": self.lists.load().tools.len(),
            "origin": self.origin.as_str(),
            "lazy": self.options.spec.lazy,
            "inflight": self.inflight(),
            "idle_ms": self.idle_for().as_millis() as u64,
        })
    }

    /// Admits one call for `session`: breaker, bulkhead (concurrency limit with a bounded
    /// queue), then an instance — started, restarted or recycled as needed.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        cache: &EraCache,
        session: &str,
    ) -> Result<Lease, RpcError> {
        let admission = match self.breaker.lock().admit(Instant::now()) {
            Ok(admission) => admission,
            Err(retry_after) => {
                self.stats.count("*", Outcome::Rejected);
                return Err(RpcError::new(
                    gateway::UPSTREAM_UNAVAILABLE,
                    format!(
                        "server `{}` is failing: circuit open, next trial in {} ms",
                        self.name,
                        retry_after.as_millis()
                    ),
                )
                .with_data(
                    json!({ "retryable": true, "retryAfterMs": retry_after.as_millis() as u64 }),
                ));
            }
        };
        let permit = match self.bulkhead.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.queued.fetch_add(1, Ordering::AcqRel) >= self.policy().limits.max_queue {
                    self.queued.fetch_sub(1, Ordering::AcqRel);
                    self.breaker.lock().abandon(admission);
                    self.stats.count("*", Outcome::Rejected);
                    return Err(RpcError::new(
                        gateway::OVERLOADED,
                        format!(
                            "server `{}` is at its concurrency limit and its queue is full",
                            self.name
                        ),
                    )
                    .with_data(json!({ "retryable": true })));
                }
                let waited = Instant::now();
                let permit = tokio::time::timeout(
                    self.request_timeout,
                    self.bulkhead.clone().acquire_owned(),
                )
                .await;
                self.queued.fetch_sub(1, Ordering::AcqRel);
                self.stats.queue_wait.observe(waited.elapsed());
                match permit {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        self.breaker.lock().abandon(admission);
                        return Err(RpcError::new(
                            gateway::OVERLOADED,
                            format!("server `{}`: queued too long", self.name),
                        )
                        .with_data(json!({ "retryable": true })));
                    }
                }
            }
        };
        let owner = (self.policy().sharing == Sharing::PerSession).then(|| session.to_owned());
        let instance = match self.instance_for(cache, owner).await {
            Ok(instance) => instance,
            Err(error) => {
                // Failing to start counts against the breaker like a transport failure.
                self.breaker.lock().record(admission, true, Instant::now());
                return Err(error);
            }
        };
        Ok(Lease {
            upstream: instance.upstream.clone(),
            server: self.clone(),
            admission,
            _instance: instance.guard(),
            _permit: permit,
            instance,
        })
    }

    /// A live upstream for the gateway's own requests (lists, subscriptions, probes).
    pub async fn upstream(self: &Arc<Self>, cache: &EraCache) -> Result<Upstream, RpcError> {
        self.instance_for(cache, None)
            .await
            .map(|i| i.upstream.clone())
    }

    /// Picks an instance without starting one, pruning dead and recycling due ones.
    fn pick(self: &Arc<Self>, owner: Option<&str>) -> Option<Arc<Instance>> {
        let policy = self.policy();
        let mut instances = self.instances.lock();
        let before = instances.len();
        instances.retain(|i| i.is_alive());
        if instances.len() < before {
            self.stats.count_restarts((before - instances.len()) as u64);
        }
        let due = |i: &Instance| {
            policy
                .pool
                .recycle_after_calls
                .is_some_and(|n| i.calls() >= n)
                || policy
                    .pool
                    .recycle_after
                    .is_some_and(|age| i.started.elapsed() >= age)
        };
        let mut recycled = Vec::new();
        instances.retain(|i| {
            let keep = !due(i);
            if !keep {
                recycled.push(i.clone());
            }
            keep
        });
        for old in recycled {
            tracing::info!(server = %self.name, instance = old.id, calls = old.calls(), "recycling instance");
            tokio::spawn(async move { old.drain_and_shutdown(INSTANCE_DRAIN).await });
        }
        match (policy.sharing, owner) {
            (Sharing::PerSession, Some(owner)) => instances
                .iter()
                .find(|i| i.is_owned_by(owner))
                .or_else(|| instances.iter().find(|i| i.claim(owner)))
                .cloned(),
            (Sharing::Pool, _) => {
                let least = instances.iter().min_by_key(|i| i.inflight())?;
                // Busy and room for more: let the caller start another.
                if least.inflight() > 0 && instances.len() < policy.pool.size {
                    return None;
                }
                Some(least.clone())
            }
            _ => instances
                .iter()
                .find(|i| i.is_unowned())
                .or_else(|| instances.first())
                .cloned(),
        }
    }

    async fn instance_for(
        self: &Arc<Self>,
        cache: &EraCache,
        owner: Option<String>,
    ) -> Result<Arc<Instance>, RpcError> {
        if let Some(instance) = self.pick(owner.as_deref()) {
            return Ok(instance);
        }
        let _starting = self.connecting.lock().await;
        if let Some(instance) = self.pick(owner.as_deref()) {
            return Ok(instance);
        }
        // A retired server finishes what it has but never starts again.
        if self.retired.load(Ordering::Acquire) {
            let message = format!("server `{}` was removed or replaced", self.name);
            return Err(RpcError::new(gateway::UPSTREAM_UNAVAILABLE, message));
        }
        if let Some(next) = self.status.lock().next_start {
            let now = Instant::now();
            if next > now {
                let wait = next - now;
                return Err(RpcError::new(
                    gateway::UPSTREAM_UNAVAILABLE,
                    format!(
                        "server `{}` is restarting (backoff): next start in {} ms",
                        self.name,
                        wait.as_millis()
                    ),
                )
                .with_data(json!({ "retryable": true, "retryAfterMs": wait.as_millis() as u64 })));
            }
        }
        if self.policy().sharing == Sharing::PerSession {
            self.evict_for_new_session()?;
        }
        let instance = self.start_instance(cache, owner).await?;
        self.instances.lock().push(instance.clone());
        Ok(instance)
    }

    /// Per-session sharing: room for one more session's instance, evicting the least
    /// recently used idle one when at the limit.
    fn evict_for_new_session(&self) -> Result<(), RpcError> {
        let limit = self.policy().pool.size;
        let mut instances = self.instances.lock();
        if instances.len() < limit {
            return Ok(());
        }
        let idle = instances
            .iter()
            .enumerate()
            .filter(|(_, i)| i.inflight() == 0)
            .max_by_key(|(_, i)| i.idle_for());
        match idle.map(|(index, _)| index) {
            Some(index) => {
                let evicted = instances.remove(index);
                tokio::spawn(async move { evicted.shutdown().await });
                Ok(())
            }
            None => Err(RpcError::new(
                gateway::OVERLOADED,
                format!(
                    "server `{}`: all {limit} per-session instances are busy",
                    self.name
                ),
            )
            .with_data(json!({ "retryable": true }))),
        }
    }

    async fn start_instance(
        self: &Arc<Self>,
        cache: &EraCache,
        owner: Option<String>,
    ) -> Result<Arc<Instance>, RpcError> {
        let first = self.instances.lock().is_empty();
        if first {
            self.set_state(State::Starting, None);
        }
        let (events_tx, events_rx) = mpsc::channel(256);
        let upstream = match Upstream::connect(self.options.clone(), cache, events_tx).await {
            Ok(upstream) => upstream,
            Err(error) => {
                let mut status = self.status.lock();
                status.start_failures += 1;
                let policy = self.policy();
                let delay = backoff::delay(
                    policy.restart_backoff,
                    policy.restart_backoff_max,
                    status.start_failures,
                    backoff::jitter(),
                );
                status.next_start = Some(Instant::now() + delay);
                status.state = State::Failed;
                status.last_error = Some(error.to_string());
                status.since = Instant::now();
                drop(status);
                let message = format!("server `{}` failed to start: {error}", self.name);
                return Err(RpcError::new(gateway::UPSTREAM_UNAVAILABLE, message)
                    .with_data(json!({ "retryable": true })));
            }
        };
        {
            let mut status = self.status.lock();
            status.start_failures = 0;
            status.next_start = None;
        }
        let instance = Instance::new(
            &self.name,
            upstream.clone(),
            owner,
            events_rx,
            self.signals.clone(),
            self.watch.clone(),
        );
        self.set_state(State::Ready, None);
        tracing::info!(server = %self.name, era = %upstream.era(), instance = instance.id, pid = upstream.pid(), "upstream ready");
        if first {
            let known = self.lists.load();
            let seeded =
                !(known.tools.is_empty() && known.prompts.is_empty() && known.resources.is_empty());
            if seeded {
                // A dormant server woken by a call: its last known catalog already routes
                // the call, so re-listing happens beside it, not before it.
                let server = self.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move { server.relist(&upstream).await });
            } else {
                self.relist(&upstream).await;
            }
        }
        Ok(instance)
    }

    /// Starts `min_idle` instances (at least one) now: a warm pool.
    pub(crate) async fn prewarm(self: &Arc<Self>, cache: &EraCache) -> Result<(), RpcError> {
        let wanted = self.policy().pool.min_idle.max(1);
        let _starting = self.connecting.lock().await;
        while self.instance_count() < wanted {
            let instance = self.start_instance(cache, None).await?;
            self.instances.lock().push(instance);
        }
        Ok(())
    }

    /// A timed-out call may have wedged its instance: one quick ping decides; a silent
    /// instance is taken out of service and stopped.
    async fn check_wedged(self: Arc<Self>, instance: Arc<Instance>) {
        if health::probe(&instance.upstream, Duration::from_secs(2))
            .await
            .is_ok()
        {
            return;
        }
        tracing::warn!(server = %self.name, instance = instance.id, "instance wedged after a timeout: recycling");
        self.remove_instance(&instance, "wedged: no answer to a probe after a timeout")
            .await;
    }

    async fn remove_instance(&self, instance: &Arc<Instance>, reason: &str) {
        let removed = {
            let mut instances = self.instances.lock();
            let before = instances.len();
            instances.retain(|i| i.id != instance.id);
            instances.len() < before
        };
        if removed {
            self.stats.count_restarts(1);
            let mut status = self.status.lock();
            status.last_error = Some(reason.to_owned());
            if self.instances.lock().is_empty() {
                status.state = State::Failed;
                status.since = Instant::now();
            }
        }
        instance.shutdown().await;
    }

    /// Lists everything after a (re)start and tells the gateway, which rebuilds the catalog.
    async fn relist(&self, upstream: &Upstream) {
        if let Err(error) = self.refresh_all(upstream).await {
            tracing::warn!(server = %self.name, %error, "listing capabilities failed");
        }
        let _ = self
            .signals
            .send(ServerSignal::Connected(self.name.clone(), self.instance))
            .await;
    }

    /// Re-reads every list the server offers.
    async fn refresh_all(&self, upstream: &Upstream) -> Result<(), RpcError> {
        let capabilities = &upstream.handshake().capabilities;
        let mut lists = ServerLists::default();
        if capabilities.get("tools").is_some() {
            lists.tools = self.list(upstream, "tools/list", "tools").await?;
        }
        if capabilities.get("prompts").is_some() {
            lists.prompts = self.list(upstream, "prompts/list", "prompts").await?;
        }
        if capabilities.get("resources").is_some() {
            lists.resources = self.list(upstream, "resources/list", "resources").await?;
            lists.templates = self
                .list(upstream, "resources/templates/list", "resourceTemplates")
                .await
                .unwrap_or_default();
        }
        self.lists.store(Arc::new(lists));
        Ok(())
    }

    /// Re-reads one kind of list after the server said it changed.
    pub(crate) async fn refresh(
        self: &Arc<Self>,
        cache: &EraCache,
        kind: ListKind,
    ) -> Result<(), RpcError> {
        let upstream = self.upstream(cache).await?;
        let fresh = self.list_kind(&upstream, kind).await?;
        // Read-modify-write on the current lists (not a copy taken before the awaits), so a
        // concurrent refresh of another kind is never undone.
        self.lists.rcu(|current| fresh.apply(current));
        Ok(())
    }

    /// Re-reads one kind of list of one session's own instance (per-session sharing),
    /// which then serves that session's view. `None` when the instance is gone.
    pub(crate) async fn refresh_instance(
        &self,
        instance: u64,
        kind: ListKind,
    ) -> Result<Option<()>, RpcError> {
        let Some(instance) = self
            .instances_snapshot()
            .into_iter()
            .find(|i| i.id == instance)
        else {
            return Ok(None);
        };
        let fresh = self.list_kind(&instance.upstream, kind).await?;
        let current = instance.own_lists().unwrap_or_else(|| self.lists());
        instance.set_own_lists(fresh.apply(&current));
        Ok(Some(()))
    }

    /// The lists `session` sees of this server: its own instance's when that instance
    /// announced changes of its own (per-session sharing), else `None` (the server's).
    pub(crate) fn own_lists_for(&self, session: &str) -> Option<Arc<ServerLists>> {
        if self.policy().sharing != Sharing::PerSession {
            return None;
        }
        self.instances
            .lock()
            .iter()
            .find(|i| i.is_owned_by(session))?
            .own_lists()
    }

    async fn list_kind(&self, upstream: &Upstream, kind: ListKind) -> Result<Fresh, RpcError> {
        Ok(match kind {
            ListKind::Tools => Fresh {
                kind,
                items: self.list(upstream, "tools/list", "tools").await?,
                templates: Vec::new(),
            },
            ListKind::Prompts => Fresh {
                kind,
                items: self.list(upstream, "prompts/list", "prompts").await?,
                templates: Vec::new(),
            },
            ListKind::Resources => Fresh {
                kind,
                items: self.list(upstream, "resources/list", "resources").await?,
                templates: self
                    .list(upstream, "resources/templates/list", "resourceTemplates")
                    .await
                    .unwrap_or_default(),
            },
        })
    }

    async fn list(
        &self,
        upstream: &Upstream,
        method: &str,
        field: &str,
    ) -> Result<Vec<Value>, RpcError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..LIST_PAGES_MAX {
            let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
            let result = upstream
                .request(method, params, CallOptions::new(self.request_timeout))
                .await
                .map_err(|e| e.to_rpc_error(&self.name))?;
            if let Some(page) = result.get(field).and_then(Value::as_array) {
                items.extend(page.iter().cloned());
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(items)
    }

    /// Adds or removes a resource URI from the updates this (modern) server reports.
    pub(crate) fn watch_resource(&self, uri: &str, on: bool) {
        let changed = if on {
            self.watch.0.lock().insert(uri.to_owned())
        } else {
            self.watch.0.lock().remove(uri)
        };
        if changed {
            self.watch.1.notify_waiters();
        }
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

    /// Marks the server failed after a connection died (the next call restarts it).
    pub(crate) fn connection_lost(&self, reason: &str) {
        let alive = self.instances.lock().iter().any(|i| i.is_alive());
        let mut status = self.status.lock();
        if !alive && matches!(status.state, State::Ready | State::Degraded) {
            status.state = State::Failed;
            status.last_error = Some(reason.to_owned());
            status.since = Instant::now();
        }
    }

    /// Health results from the probe task.
    pub(crate) fn set_health(&self, healthy: bool, reason: Option<String>) {
        let mut status = self.status.lock();
        match (healthy, status.state) {
            (true, State::Degraded | State::Failed) if !self.instances.lock().is_empty() => {
                status.state = State::Ready;
                status.last_error = None;
                status.since = Instant::now();
            }
            (false, State::Ready) => {
                status.state = State::Degraded;
                status.last_error = reason;
                status.since = Instant::now();
            }
            _ => {}
        }
    }

    pub(crate) fn instances_snapshot(&self) -> Vec<Arc<Instance>> {
        self.instances.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose command cannot start, with a fixed 1 s restart backoff.
    fn unstartable() -> Arc<Server> {
        let config = switchboard_config::parse(
            "[servers.s]\ncommand = \"/nonexistent/switchboard-test-command\"\n\
             restart_backoff_ms = 1000\nrestart_backoff_max_ms = 1000\n",
            switchboard_config::ConfigFormat::Native,
            None,
        )
        .expect("valid config");
        let spec = config.servers.into_values().next().expect("one server");
        let options = ConnectOptions {
            server: "s".into(),
            spec,
            max_message_bytes: 1 << 20,
            probe_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            legacy_client_capabilities: json!({}),
        };
        let (signals, _) = mpsc::channel(8);
        let stats = crate::metrics::Metrics::default().server("s");
        Server::new(
            options,
            Origin::Config,
            Duration::from_secs(5),
            signals,
            stats,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn restart_backoff_runs_on_tokios_clock() {
        let server = unstartable();
        let cache = EraCache::new();
        let first = server.acquire(&cache, "c").await.err().expect("fails");
        assert!(
            first.message.contains("failed to start"),
            "{}",
            first.message
        );
        let waiting = server.acquire(&cache, "c").await.err().expect("fails");
        assert!(waiting.message.contains("backoff"), "{}", waiting.message);
        // No real time passes: the paused clock is moved past the backoff (≤ 1 s).
        tokio::time::advance(Duration::from_millis(1001)).await;
        let again = server.acquire(&cache, "c").await.err().expect("fails");
        assert!(
            again.message.contains("failed to start"),
            "{}",
            again.message
        );
    }
}
