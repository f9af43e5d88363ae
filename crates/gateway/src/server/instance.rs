//! One upstream instance: a live connection (a child process for stdio) with its own
//! counters, and the tasks that serve its unsolicited traffic. A server has one instance
//! (shared), one per client session, one per tenant, or a pool of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_upstream::{CallOptions, Upstream, UpstreamEvent};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::tenancy::{Borrower, TenantKey};
use super::{ServerSignal, Source, Watch};
use crate::catalog::{ListKind, ServerLists};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An instance's owner, shared with its event tasks (a claim happens after they start).
type Owner = Arc<parking_lot::Mutex<Option<String>>>;

/// What an instance's unsolicited traffic is tagged with, shared with its event tasks.
#[derive(Clone)]
struct Tag {
    id: u64,
    owner: Owner,
    tenant: Option<TenantKey>,
}

impl Tag {
    /// Where a signal came from.
    fn source(&self) -> Source {
        Source {
            instance: self.id,
            owner: self.owner.lock().clone(),
            tenant: self.tenant.clone(),
        }
    }
}

pub(crate) struct Instance {
    pub(crate) id: u64,
    pub(crate) upstream: Upstream,
    /// The client session that owns it (per-session sharing); an unowned instance (the
    /// one the gateway started to list capabilities) is claimed by the first session.
    owner: Owner,
    /// This instance's own lists, once it announced a change of its own (per-session
    /// sharing: its session's view; `None` means the server's lists).
    /// The tenant it serves (`per_tenant` sharing): started with that tenant's credentials,
    /// it serves nobody else, and is never claimed by a session.
    tenant: Option<TenantKey>,
    lists: arc_swap::ArcSwapOption<ServerLists>,
    /// Stops the event pump and the listen stream.
    stop: CancellationToken,
    inflight: AtomicUsize,
    calls: AtomicU64,
    pub(crate) started: Instant,
    last_used: parking_lot::Mutex<Instant>,
    idle: Notify,
    /// Consecutive failed health probes or timeouts.
    pub(crate) strikes: AtomicU32,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Counts one call against an instance while it runs.
pub(crate) struct InstanceGuard(Arc<Instance>);

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let instance = &self.0;
        instance.inflight.fetch_sub(1, Ordering::AcqRel);
        *instance.last_used.lock() = Instant::now();
        instance.idle.notify_waiters();
    }
}

impl Instance {
    pub(crate) fn new(
        server: &str,
        upstream: Upstream,
        borrower: &Borrower,
        events: mpsc::Receiver<UpstreamEvent>,
        signals: mpsc::Sender<ServerSignal>,
        watch: Watch,
        tasks: &TaskTracker,
    ) -> Arc<Instance> {
        let stop = CancellationToken::new();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let owner: Owner = Arc::new(parking_lot::Mutex::new(
            borrower.session().map(str::to_owned),
        ));
        let tenant = borrower.tenant().cloned();
        let tag = Tag {
            id,
            owner: owner.clone(),
            tenant: tenant.clone(),
        };
        tasks.spawn(pump_events(
            server.to_owned(),
            tag.clone(),
            events,
            signals.clone(),
            stop.clone(),
        ));
        if upstream.era() == switchboard_protocol::Era::Modern {
            spawn_listen(
                server.to_owned(),
                tag,
                upstream.clone(),
                signals,
                stop.clone(),
                watch,
                tasks,
            );
        }
        Arc::new(Instance {
            id,
            upstream,
            owner,
            tenant,
            lists: arc_swap::ArcSwapOption::empty(),
            stop,
            inflight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            started: Instant::now(),
            last_used: parking_lot::Mutex::new(Instant::now()),
            idle: Notify::new(),
            strikes: AtomicU32::new(0),
        })
    }

    pub(crate) fn guard(self: &Arc<Self>) -> InstanceGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.calls.fetch_add(1, Ordering::Relaxed);
        InstanceGuard(self.clone())
    }

    pub(crate) fn is_owned_by(&self, session: &str) -> bool {
        self.owner.lock().as_deref() == Some(session)
    }

    /// The instance's own lists, if it has diverged from the server's.
    pub(crate) fn own_lists(&self) -> Option<Arc<ServerLists>> {
        self.lists.load_full()
    }

    pub(crate) fn set_own_lists(&self, lists: ServerLists) {
        self.lists.store(Some(Arc::new(lists)));
    }

    pub(crate) fn is_unowned(&self) -> bool {
        self.owner.lock().is_none()
    }

    /// The tenant this instance serves (`per_tenant` sharing only).
    pub(crate) fn tenant(&self) -> Option<&TenantKey> {
        self.tenant.as_ref()
    }

    /// Whether it runs on the server's own credentials (every instance but a tenant's).
    pub(crate) fn serves_anyone(&self) -> bool {
        self.tenant.as_ref().and_then(TenantKey::name).is_none()
    }

    /// Claims an unowned instance for a session; false if someone owns it already, or if
    /// it serves a tenant (it carries that tenant's credentials).
    pub(crate) fn claim(&self, session: &str) -> bool {
        if self.tenant.is_some() {
            return false;
        }
        let mut owner = self.owner.lock();
        if owner.is_some() {
            return false;
        }
        *owner = Some(session.to_owned());
        true
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(crate) fn idle_for(&self) -> Duration {
        self.last_used.lock().elapsed()
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.upstream.is_alive()
    }

    /// Deliberate stop: the pump stops first (so the close is not reported as a failure),
    /// then the stop sequence runs.
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        self.upstream.shutdown().await;
    }

    /// Lets calls in flight finish (up to `deadline`), then stops.
    pub(crate) async fn drain_and_shutdown(&self, deadline: Duration) {
        let drained = async {
            loop {
                let idle = self.idle.notified();
                if self.inflight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(deadline, drained).await;
        self.shutdown().await;
    }
}

/// Forwards one connection's unsolicited traffic to the gateway until the connection is
/// replaced or stopped.
async fn pump_events(
    server: String,
    tag: Tag,
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
                match signal_for(&server, &tag.source(), &method, params) {
                    Some(signal) => signal,
                    None => continue,
                }
            }
            UpstreamEvent::Request(request) => {
                ServerSignal::Request(server.clone(), tag.source(), request)
            }
            UpstreamEvent::Closed { reason } => ServerSignal::Closed(server.clone(), reason),
            UpstreamEvent::SandboxEnded { hits, killed } => {
                ServerSignal::SandboxEnded(server.clone(), hits, killed)
            }
        };
        if signals.send(signal).await.is_err() {
            break;
        }
    }
}

pub(crate) fn signal_for(
    server: &str,
    source: &Source,
    method: &str,
    params: Option<Value>,
) -> Option<ServerSignal> {
    if let Some(kind) = ListKind::from_notification(method) {
        return Some(ServerSignal::ListChanged(
            server.to_owned(),
            kind,
            source.clone(),
        ));
    }
    match method {
        "notifications/resources/updated" => Some(ServerSignal::ResourceUpdated(
            server.to_owned(),
            params.unwrap_or_else(|| json!({})),
        )),
        "notifications/message" => {
            Some(ServerSignal::Log(server.to_owned(), source.clone(), params))
        }
        crate::task_notify::METHOD => Some(ServerSignal::TaskStatus(
            server.to_owned(),
            params.unwrap_or_else(|| json!({})),
        )),
        _ => None,
    }
}

/// Modern upstreams announce list changes on a `subscriptions/listen` stream; hold one
/// open for the life of the connection.
fn spawn_listen(
    server: String,
    tag: Tag,
    upstream: Upstream,
    signals: mpsc::Sender<ServerSignal>,
    stop: CancellationToken,
    (watched, watch_changed): Watch,
    tasks: &TaskTracker,
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
    tasks.spawn(async move {
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
                        if let Some(signal) = signal_for(&server, &tag.source(), &method, params) {
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
