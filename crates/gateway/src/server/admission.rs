//! Admitting a call: circuit breaker, then bulkhead (concurrency limit with a bounded
//! queue), then an instance — picked, started (with restart backoff), recycled or evicted.
//! The resulting [`Lease`] records the call's outcome; a [`CallGuard`] counts it for drains.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_config::Sharing;
use switchboard_protocol::{RpcError, error::gateway};
use switchboard_upstream::{EraCache, Upstream};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::Instant;

use super::breaker::Admission;
use super::instance::{Instance, InstanceGuard};
use super::tenancy::Borrower;
use super::{INSTANCE_DRAIN, Server, State, backoff, health};
use crate::metrics::Outcome;
/// Counts one call against a server while it lives (see [`Server::retire`]).
pub(crate) struct CallGuard(Arc<Server>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
        *self.0.last_used.lock() = Instant::now();
        self.0.idle.notify_waiters();
    }
}

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

/// How an upstream call ended, as the bounded label of metrics and spans.
pub(crate) fn call_outcome(outcome: &Result<Value, switchboard_upstream::CallError>) -> Outcome {
    use switchboard_upstream::CallError;
    match outcome {
        Ok(result) if result.get("isError") == Some(&Value::Bool(true)) => Outcome::ToolError,
        Ok(_) => Outcome::Ok,
        Err(CallError::Rpc(_)) => Outcome::RpcError,
        Err(CallError::Timeout(_)) => Outcome::Timeout,
        Err(CallError::Cancelled) => Outcome::Cancelled,
        Err(CallError::SandboxLimit(_)) => Outcome::SandboxLimit,
        Err(_) => Outcome::Unavailable,
    }
}

impl Lease {
    /// The instance the call runs on (its id within the server).
    pub(crate) fn instance_id(&self) -> u64 {
        self.instance.id
    }

    /// Records how the call ended (breaker, metrics, wedged-instance strikes).
    pub(crate) fn finish(
        self,
        tool: &str,
        outcome: &Result<Value, switchboard_upstream::CallError>,
        elapsed: Duration,
    ) {
        use switchboard_upstream::CallError;
        let label = call_outcome(outcome);
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
            self.server
                .tracker
                .spawn(async move { server.check_wedged(instance).await });
        } else if outcome.is_ok() {
            self.instance.strikes.store(0, Ordering::Relaxed);
        }
    }
}

/// The delay before retry `attempt` (1-based), with jitter.
pub(crate) fn backoff_delay(base: Duration, max: Duration, attempt: u32) -> Duration {
    backoff::delay(base, max, attempt, backoff::jitter())
}

impl Server {
    /// Counts a call; taken while the roster lock is held, so a drain cannot miss it.
    pub(crate) fn call_guard(self: &Arc<Self>) -> CallGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        CallGuard(self.clone())
    }

    /// Admits one call for `borrower` (see [`Server::borrower_for`]): breaker, bulkhead
    /// (concurrency limit with a bounded queue), then an instance — started, restarted or
    /// recycled as needed.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        cache: &EraCache,
        borrower: Borrower,
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
        // One tenant's instance failing to start (its credentials refused) is that
        // tenant's problem: it has its own restart backoff and leaves the breaker alone.
        let own_start = borrower.tenant().and_then(|t| t.name()).is_none();
        let instance = match self.instance_for(cache, borrower).await {
            Ok(instance) => instance,
            Err(error) if own_start => {
                // Failing to start counts against the breaker like a transport failure.
                self.breaker.lock().record(admission, true, Instant::now());
                return Err(error);
            }
            Err(error) => {
                self.breaker.lock().abandon(admission);
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

    /// A live upstream for the gateway's own requests (lists, subscriptions, probes): never
    /// a tenant's instance.
    pub async fn upstream(self: &Arc<Self>, cache: &EraCache) -> Result<Upstream, RpcError> {
        self.instance_for(cache, self.own_borrower())
            .await
            .map(|i| i.upstream.clone())
    }

    /// Picks an instance without starting one, pruning dead and recycling due ones.
    fn pick(self: &Arc<Self>, borrower: &Borrower) -> Option<Arc<Instance>> {
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
            self.tracker
                .spawn(async move { old.drain_and_shutdown(INSTANCE_DRAIN).await });
        }
        match (policy.sharing, borrower) {
            (Sharing::PerSession, Borrower::Session(owner)) => instances
                .iter()
                .find(|i| i.is_owned_by(owner))
                .or_else(|| instances.iter().find(|i| i.claim(owner)))
                .cloned(),
            // Exactly the tenant's own: never another's, never one to be claimed.
            (Sharing::PerTenant, borrower) => {
                let wanted = borrower.tenant()?;
                instances
                    .iter()
                    .find(|i| i.tenant() == Some(wanted))
                    .cloned()
            }
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
        borrower: Borrower,
    ) -> Result<Arc<Instance>, RpcError> {
        if let Some(instance) = self.pick(&borrower) {
            return Ok(instance);
        }
        let _starting = self.connecting.lock().await;
        if let Some(instance) = self.pick(&borrower) {
            return Ok(instance);
        }
        // A retired server finishes what it has but never starts again.
        if self.retired.load(Ordering::Acquire) {
            let message = format!("server `{}` was removed or replaced", self.name);
            return Err(RpcError::new(gateway::UPSTREAM_UNAVAILABLE, message));
        }
        let tenant = borrower.tenant().and_then(|t| t.name());
        let next_start = match tenant {
            Some(tenant) => self.tenant_next_start(tenant),
            None => self.status.lock().next_start,
        };
        if let Some(next) = next_start {
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
        if matches!(
            self.policy().sharing,
            Sharing::PerSession | Sharing::PerTenant
        ) {
            self.evict_for_new_owner()?;
        }
        let instance = self.start_instance(cache, borrower).await?;
        self.instances.lock().push(instance.clone());
        Ok(instance)
    }

    /// Per-session and per-tenant sharing: room for one more session's (tenant's)
    /// instance, evicting the least recently used idle one when at the limit.
    fn evict_for_new_owner(&self) -> Result<(), RpcError> {
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
                self.tracker.spawn(async move { evicted.shutdown().await });
                Ok(())
            }
            None => Err(RpcError::new(
                gateway::OVERLOADED,
                format!(
                    "server `{}`: all {limit} {} instances are busy",
                    self.name,
                    self.policy().sharing.as_str().replace('_', "-")
                ),
            )
            .with_data(json!({ "retryable": true }))),
        }
    }

    async fn start_instance(
        self: &Arc<Self>,
        cache: &EraCache,
        borrower: Borrower,
    ) -> Result<Arc<Instance>, RpcError> {
        if self.is_fenced() {
            return Err(RpcError::new(
                gateway::UPSTREAM_UNAVAILABLE,
                format!(
                    "server `{}` runs on another replica of the cluster",
                    self.name
                ),
            )
            .with_data(json!({ "retryable": true })));
        }
        let tenant = borrower.tenant().and_then(|t| t.name());
        // The first instance that answers the gateway's own requests lists the server; a
        // tenant's never does (what its credentials show is that tenant's).
        let first = tenant.is_none() && !self.instances.lock().iter().any(|i| i.serves_anyone());
        if first {
            self.set_state(State::Starting, None);
        }
        let (events_tx, events_rx) = mpsc::channel(256);
        // A stored secret that cannot be resolved fails the start like a refused connection.
        let connected = match self.options_for(&borrower) {
            Ok(options) => Upstream::connect(options, cache, events_tx)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        let upstream = match (connected, tenant) {
            (Ok(upstream), _) => upstream,
            (Err(error), Some(tenant)) => {
                // The tenant's own backoff; the server keeps serving the others.
                self.tenant_start_failed(tenant);
                tracing::warn!(server = %self.name, tenant, %error, "tenant instance failed to start");
                let message = format!(
                    "server `{}` failed to start for tenant `{tenant}`: {error}",
                    self.name
                );
                return Err(RpcError::new(gateway::UPSTREAM_UNAVAILABLE, message)
                    .with_data(json!({ "retryable": true })));
            }
            (Err(error), None) => {
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
        match tenant {
            Some(tenant) => self.tenant_started(tenant),
            None => {
                let mut status = self.status.lock();
                status.start_failures = 0;
                status.next_start = None;
            }
        }
        let instance = Instance::new(
            &self.name,
            upstream.clone(),
            &borrower,
            events_rx,
            self.signals.clone(),
            self.watch.clone(),
            &self.tracker,
        );
        self.set_state(State::Ready, None);
        tracing::info!(server = %self.name, era = %upstream.era(), instance = instance.id, pid = upstream.pid(), tenant, "upstream ready");
        if first {
            let known = self.lists.load();
            let seeded =
                !(known.tools.is_empty() && known.prompts.is_empty() && known.resources.is_empty());
            if seeded {
                // A dormant server woken by a call: its last known catalog already routes
                // the call, so re-listing happens beside it, not before it.
                let server = self.clone();
                let upstream = upstream.clone();
                self.tracker
                    .spawn(async move { server.relist(&upstream).await });
            } else {
                self.relist(&upstream).await;
            }
        }
        Ok(instance)
    }

    /// Starts `min_idle` instances (at least one) now: a warm pool. A `per_tenant` server
    /// starts its own (no tenant's credentials yet).
    pub(crate) async fn prewarm(self: &Arc<Self>, cache: &EraCache) -> Result<(), RpcError> {
        let wanted = match self.policy().sharing {
            Sharing::PerTenant => 1,
            _ => self.policy().pool.min_idle.max(1),
        };
        let _starting = self.connecting.lock().await;
        while self.instance_count() < wanted {
            let instance = self.start_instance(cache, self.own_borrower()).await?;
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

    pub(super) async fn remove_instance(&self, instance: &Arc<Instance>, reason: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server whose command cannot start, with a fixed 1 s restart backoff.
    fn unstartable() -> Arc<Server> {
        super::super::test_server(
            "[servers.s]\ncommand = \"/nonexistent/switchboard-test-command\"\n\
             restart_backoff_ms = 1000\nrestart_backoff_max_ms = 1000\n",
        )
    }

    #[tokio::test(start_paused = true)]
    async fn restart_backoff_runs_on_tokios_clock() {
        let server = unstartable();
        let cache = EraCache::new();
        let first = server
            .acquire(&cache, Borrower::Any)
            .await
            .err()
            .expect("fails");
        assert!(
            first.message.contains("failed to start"),
            "{}",
            first.message
        );
        let waiting = server
            .acquire(&cache, Borrower::Any)
            .await
            .err()
            .expect("fails");
        assert!(waiting.message.contains("backoff"), "{}", waiting.message);
        // No real time passes: the paused clock is moved past the backoff (≤ 1 s).
        tokio::time::advance(Duration::from_millis(1001)).await;
        let again = server
            .acquire(&cache, Borrower::Any)
            .await
            .err()
            .expect("fails");
        assert!(
            again.message.contains("failed to start"),
            "{}",
            again.message
        );
    }
}
