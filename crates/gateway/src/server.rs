//! One configured upstream server at runtime: its connection (started on demand and
//! restarted after it dies), its status for operators, and its last known lists.
//!
//! # Concurrency note
//! `connecting` (an async mutex) serializes connection attempts so a burst of calls to a
//! dead server starts exactly one process. The live connection is read lock-free through
//! `ArcSwapOption` on the hot path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_protocol::{Era, RpcError, error::gateway};
use switchboard_upstream::{CallOptions, ConnectOptions, EraCache, Upstream, UpstreamEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::{ListKind, ServerLists};

/// Where a server is in its life, as operators see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Dormant,
    Starting,
    Ready,
    Failed,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Dormant => "dormant",
            State::Starting => "starting",
            State::Ready => "ready",
            State::Failed => "failed",
            State::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct Status {
    state: State,
    last_error: Option<String>,
    restarts: u64,
    since: Instant,
}

/// A live connection and the stop signal of the tasks serving it.
pub(crate) struct Live {
    pub(crate) upstream: Upstream,
    stop: CancellationToken,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Events from a server's connection that the gateway must act on.
#[derive(Debug)]
pub(crate) enum ServerSignal {
    ListChanged(String, ListKind),
    ResourceUpdated(String, Value),
    Log(String, Option<Value>),
    Request(String, switchboard_upstream::ServerRequest),
    /// A connection came up: the server's name and its instance id.
    Connected(String, u64),
    Closed(String, String),
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

/// Counts one call against a server while it lives (see [`Server::drain`]).
pub(crate) struct CallGuard(Arc<Server>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
        *self.0.last_used.lock() = Instant::now();
        self.0.idle.notify_waiters();
    }
}

static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

pub struct Server {
    pub name: String,
    /// Distinguishes a reload's new instance from the old one under the same name.
    pub instance: u64,
    pub origin: Origin,
    options: ConnectOptions,
    pub request_timeout: Duration,
    inflight: AtomicUsize,
    last_used: Mutex<Instant>,
    idle: tokio::sync::Notify,
    retired: AtomicBool,
    connecting: tokio::sync::Mutex<()>,
    live: ArcSwapOption<Live>,
    status: Mutex<Status>,
    lists: ArcSwap<ServerLists>,
    signals: mpsc::Sender<ServerSignal>,
    /// Upstream URIs clients subscribed to on a modern upstream (carried on our listen).
    watched: Arc<Mutex<std::collections::BTreeSet<String>>>,
    watch_changed: Arc<tokio::sync::Notify>,
}

const LIST_PAGES_MAX: usize = 100;

impl Server {
    pub(crate) fn new(
        options: ConnectOptions,
        origin: Origin,
        request_timeout: Duration,
        signals: mpsc::Sender<ServerSignal>,
    ) -> Server {
        Server {
            name: options.server.clone(),
            instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            origin,
            options,
            request_timeout,
            inflight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            idle: tokio::sync::Notify::new(),
            retired: AtomicBool::new(false),
            connecting: tokio::sync::Mutex::new(()),
            live: ArcSwapOption::empty(),
            status: Mutex::new(Status {
                state: State::Dormant,
                last_error: None,
                restarts: 0,
                since: Instant::now(),
            }),
            lists: ArcSwap::from_pointee(ServerLists::default()),
            signals,
            watched: Arc::default(),
            watch_changed: Arc::default(),
        }
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
        self.live
            .load()
            .as_ref()
            .is_some_and(|live| live.upstream.is_alive())
    }

    /// Takes the server out of service: calls already running finish (up to `deadline`),
    /// new ones are refused, then the connection is stopped.
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
        self.live
            .load()
            .as_ref()?
            .upstream
            .handshake()
            .instructions
            .clone()
    }

    /// A JSON summary for operators and the admin API.
    pub fn describe(&self) -> Value {
        let status = self.status.lock();
        let live = self.live.load();
        let handshake = live.as_ref().map(|l| l.upstream.handshake().clone());
        json!({
            "name": self.name,
            "state": status.state.as_str(),
            "last_error": status.last_error,
            "restarts": status.restarts,
            "era": handshake.as_ref().map(|h| h.era.as_str()),
            "protocol_version": handshake.as_ref().map(|h| h.protocol_version.clone()),
            "server_info": handshake.as_ref().map(|h| h.server_info.clone()),
            "pid": live.as_ref().and_then(|l| l.upstream.pid()),
            "transport": self.options.spec.transport.kind(),
            "tools": self.lists.load().tools.len(),
            "origin": self.origin.as_str(),
            "lazy": self.options.spec.lazy,
            "inflight": self.inflight(),
            "idle_ms": self.idle_for().as_millis() as u64,
        })
    }

    /// The live connection, connecting (or reconnecting) first when needed.
    pub async fn upstream(&self, cache: &EraCache) -> Result<Upstream, RpcError> {
        if let Some(live) = self.live.load().as_ref()
            && live.upstream.is_alive()
        {
            return Ok(live.upstream.clone());
        }
        let _guard = self.connecting.lock().await;
        if let Some(live) = self.live.load().as_ref()
            && live.upstream.is_alive()
        {
            return Ok(live.upstream.clone());
        }
        // A retired instance finishes what it has but never starts again.
        if self.retired.load(Ordering::Acquire) {
            let message = format!("server `{}` was removed or replaced", self.name);
            return Err(RpcError::new(gateway::UPSTREAM_UNAVAILABLE, message));
        }
        let had_connection = self.live.swap(None).is_some();
        if had_connection {
            self.status.lock().restarts += 1;
        }
        self.set_state(State::Starting, None);
        let (events_tx, events_rx) = mpsc::channel(256);
        let upstream = match Upstream::connect(self.options.clone(), cache, events_tx).await {
            Ok(upstream) => upstream,
            Err(error) => {
                let message = format!("server `{}` failed to start: {error}", self.name);
                self.set_state(State::Failed, Some(error.to_string()));
                return Err(RpcError::new(gateway::UPSTREAM_UNAVAILABLE, message));
            }
        };
        let stop = CancellationToken::new();
        tokio::spawn(pump_events(
            self.name.clone(),
            events_rx,
            self.signals.clone(),
            stop.clone(),
        ));
        if upstream.era() == Era::Modern {
            let watch = (self.watched.clone(), self.watch_changed.clone());
            spawn_listen(
                self.name.clone(),
                upstream.clone(),
                self.signals.clone(),
                stop.clone(),
                watch,
            );
        }
        self.live.store(Some(Arc::new(Live {
            upstream: upstream.clone(),
            stop,
        })));
        self.set_state(State::Ready, None);
        tracing::info!(server = %self.name, era = %upstream.era(), "upstream ready");
        if let Err(error) = self.refresh_all(&upstream).await {
            tracing::warn!(server = %self.name, %error, "listing capabilities failed");
        }
        let _ = self
            .signals
            .send(ServerSignal::Connected(self.name.clone(), self.instance))
            .await;
        Ok(upstream)
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
    pub(crate) async fn refresh(&self, cache: &EraCache, kind: ListKind) -> Result<(), RpcError> {
        let upstream = self.upstream(cache).await?;
        let mut lists = (*self.lists.load_full()).clone();
        match kind {
            ListKind::Tools => lists.tools = self.list(&upstream, "tools/list", "tools").await?,
            ListKind::Prompts => {
                lists.prompts = self.list(&upstream, "prompts/list", "prompts").await?
            }
            ListKind::Resources => {
                lists.resources = self.list(&upstream, "resources/list", "resources").await?;
                lists.templates = self
                    .list(&upstream, "resources/templates/list", "resourceTemplates")
                    .await
                    .unwrap_or_default();
            }
        }
        self.lists.store(Arc::new(lists));
        Ok(())
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
            self.watched.lock().insert(uri.to_owned())
        } else {
            self.watched.lock().remove(uri)
        };
        if changed {
            self.watch_changed.notify_waiters();
        }
    }

    /// Stops the connection (graceful stop sequence for stdio).
    pub async fn stop(&self) {
        let _guard = self.connecting.lock().await;
        if let Some(live) = self.live.swap(None) {
            // Deliberate: its event pump stops first, so the close is not reported as a failure.
            live.stop.cancel();
            live.upstream.shutdown().await;
        }
        self.set_state(State::Stopped, None);
    }

    /// Stops the connection but stays in service: dormant until the next call.
    pub(crate) async fn sleep(&self) {
        let _guard = self.connecting.lock().await;
        if let Some(live) = self.live.swap(None) {
            // Deliberate: its event pump stops first, so the close is not reported as a failure.
            live.stop.cancel();
            live.upstream.shutdown().await;
        }
        self.set_state(State::Dormant, None);
    }

    /// Marks the server failed after its connection died (the next call restarts it).
    pub(crate) fn connection_lost(&self, reason: &str) {
        let mut status = self.status.lock();
        if status.state == State::Ready {
            status.state = State::Failed;
            status.last_error = Some(reason.to_owned());
            status.since = Instant::now();
        }
    }
}

/// Forwards one connection's unsolicited traffic to the gateway until the connection is
/// replaced or stopped.
async fn pump_events(
    server: String,
    mut events: mpsc::Receiver<UpstreamEvent>,
    signals: mpsc::Sender<ServerSignal>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            () = stop.cancelled() => None,
            event = events.recv() => event,
        };
        let Some(event) = event else { break };
        let signal = match event {
            UpstreamEvent::Notification { method, params } => {
                match signal_for(&server, &method, params) {
                    Some(signal) => signal,
                    None => continue,
                }
            }
            UpstreamEvent::Request(request) => ServerSignal::Request(server.clone(), request),
            UpstreamEvent::Closed { reason } => ServerSignal::Closed(server.clone(), reason),
        };
        if signals.send(signal).await.is_err() {
            break;
        }
    }
}

pub(crate) fn signal_for(
    server: &str,
    method: &str,
    params: Option<Value>,
) -> Option<ServerSignal> {
    if let Some(kind) = ListKind::from_notification(method) {
        return Some(ServerSignal::ListChanged(server.to_owned(), kind));
    }
    match method {
        "notifications/resources/updated" => Some(ServerSignal::ResourceUpdated(
            server.to_owned(),
            params.unwrap_or_else(|| json!({})),
        )),
        "notifications/message" => Some(ServerSignal::Log(server.to_owned(), params)),
        _ => None,
    }
}

/// Modern upstreams announce list changes on a `subscriptions/listen` stream; hold one
/// open for the life of the connection.
type Watch = (
    Arc<Mutex<std::collections::BTreeSet<String>>>,
    Arc<tokio::sync::Notify>,
);

fn spawn_listen(
    server: String,
    upstream: Upstream,
    signals: mpsc::Sender<ServerSignal>,
    stop: CancellationToken,
    (watched, watch_changed): Watch,
) {
    let capabilities = upstream.handshake().capabilities.clone();
    let wants = |kind: &str| {
        capabilities
            .get(kind)
            .and_then(|c| c.get("listChanged"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    let subscribe = capabilities
        .get("resources")
        .and_then(|c| c.get("subscribe"))
        .and_then(Value::as_bool)
        == Some(true);
    if !(wants("tools") || wants("prompts") || wants("resources") || subscribe) {
        return;
    }
    let mut filter = json!({
        "toolsListChanged": wants("tools"),
        "promptsListChanged": wants("prompts"),
        "resourcesListChanged": wants("resources"),
    });
    tokio::spawn(async move {
        let mut attempt = 0u32;
        while !stop.is_cancelled() && upstream.is_alive() {
            if subscribe {
                let uris: Vec<String> = watched.lock().iter().cloned().collect();
                filter["resourceSubscriptions"] = json!(uris);
            }
            let (events_tx, mut events_rx) = mpsc::channel(64);
            let mut options = CallOptions::new(Duration::from_secs(365 * 24 * 3600));
            let this_listen = stop.child_token();
            options.cancel = this_listen.clone();
            options.events = Some(events_tx);
            let call = upstream.request(
                "subscriptions/listen",
                Some(json!({ "notifications": filter })),
                options,
            );
            tokio::pin!(call);
            loop {
                tokio::select! {
                    _ = &mut call => break,
                    () = watch_changed.notified() => {
                        // Re-open with the new resource set; the old stream is cancelled.
                        this_listen.cancel();
                        attempt = 0;
                        break;
                    }
                    event = events_rx.recv() => {
                        let Some(switchboard_upstream::CallEvent::Notification { method, params }) = event else { continue };
                        if let Some(signal) = signal_for(&server, &method, params) {
                            let _ = signals.send(signal).await;
                        }
                    }
                }
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(25)))).await;
        }
    });
}
