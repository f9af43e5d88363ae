//! What operators see of a server: its [`State`], last error and restart backoff
//! (`Status`), health and connection-loss transitions, and the `describe` summary.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{BreakerState, Server};
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
pub(super) struct Status {
    pub(super) state: State,
    pub(super) last_error: Option<String>,
    pub(super) since: Instant,
    /// Consecutive failed starts, for the restart backoff.
    pub(super) start_failures: u32,
    /// No start before this instant (restart backoff).
    pub(super) next_start: Option<Instant>,
}

impl Server {
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

    pub(super) fn set_state(&self, state: State, error: Option<String>) {
        let mut status = self.status.lock();
        status.state = state;
        if error.is_some() || state == State::Ready {
            status.last_error = error;
        }
        status.since = Instant::now();
    }

    /// Whether the server's handshake offers the protocol extension `name` (under
    /// `capabilities.extensions`).
    pub fn offers_extension(&self, name: &str) -> bool {
        self.instances.lock().iter().any(|i| {
            i.upstream
                .handshake()
                .capabilities
                .get("extensions")
                .and_then(|extensions| extensions.get(name))
                .is_some()
        })
    }

    /// The server's own instructions, from its handshake (never a tenant's instance's:
    /// what that one says may be the tenant's).
    pub fn instructions(&self) -> Option<String> {
        self.instances
            .lock()
            .iter()
            .find(|i| i.serves_anyone())?
            .upstream
            .handshake()
            .instructions
            .clone()
    }

    /// The admin API's summary: [`Server::describe`], and for a `per_tenant` server the
    /// tenants with an instance (names only, never credentials). Not for agents: one
    /// tenant must not learn which other tenants use a server.
    pub fn describe_for_operators(&self) -> Value {
        let mut summary = self.describe();
        if self.policy().sharing == switchboard_config::Sharing::PerTenant {
            summary["tenants"] = json!(self.tenants_served());
        }
        summary
    }

    /// A JSON summary for operators and `switchboard__list_servers`.
    pub fn describe(&self) -> Value {
        // Before any lock below: it takes the instance list itself.
        self.sync_sandbox();
        let status = self.status.lock();
        let instances = self.instances.lock();
        let handshake = instances
            .iter()
            .find(|i| i.serves_anyone())
            .or(instances.first())
            .map(|i| i.upstream.handshake().clone());
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
            "sandbox": self.describe_sandbox(),
        })
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
}
