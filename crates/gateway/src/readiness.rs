//! What `/healthz` and `/readyz` report (`face::probes` serves them): liveness is the
//! process answering at all; readiness is a valid config, a listener that still accepts
//! (not draining after SIGTERM) and every `required = true` server ready.
//!
//! The answer carries counts only — never server names, errors or paths — because the
//! probes are unauthenticated.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use crate::gateway::Gateway;
use crate::server::{BreakerState, Server, State};

/// The gateway's readiness flags.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    /// Set when the drain after SIGTERM begins: the listener stops accepting, so load
    /// balancers must stop sending.
    draining: AtomicBool,
    /// Required servers a probe is starting again (one attempt at a time per server).
    restarting: Mutex<HashSet<String>>,
}

/// One readiness verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// The last config file read was valid (a rejected reload makes this false while the
    /// last good config keeps running).
    pub config_valid: bool,
    /// The listener accepts new connections (false once the drain has begun).
    pub accepting: bool,
    /// Servers with `required = true`.
    pub required_servers: usize,
    /// Of those, how many are ready.
    pub required_ready: usize,
}

/// Whether a required server counts as ready: started and answering its health probes,
/// its breaker not open. One stopped by its idle timeout counts (the next call starts
/// it).
fn is_ready(server: &Server) -> bool {
    let state_ok = match server.state() {
        State::Ready => true,
        State::Dormant => server.spec().idle_timeout.is_some(),
        State::Starting | State::Degraded | State::Failed | State::Stopped => false,
    };
    state_ok && server.breaker_state() != BreakerState::Open
}

impl Gateway {
    /// The readiness verdict now.
    pub fn readiness(&self) -> Readiness {
        let required: Vec<Arc<Server>> = self
            .servers()
            .into_iter()
            .filter(|server| server.spec().required)
            .collect();
        let required_ready = required.iter().filter(|server| is_ready(server)).count();
        let config_valid = self.config_status().valid;
        let accepting = !self.inner.readiness.draining.load(Ordering::Relaxed);
        Readiness {
            ready: config_valid && accepting && required_ready == required.len(),
            config_valid,
            accepting,
            required_servers: required.len(),
            required_ready,
        }
    }

    /// Whether the gateway drains or shuts down: long-lived answers (the admin event
    /// stream) end.
    pub(crate) fn closing(&self) -> bool {
        self.inner.readiness.draining.load(Ordering::Relaxed) || self.inner.shutdown.is_cancelled()
    }

    /// From now on `/readyz` answers not ready (called when the drain begins).
    pub fn begin_draining(&self) {
        self.inner.readiness.draining.store(true, Ordering::Relaxed);
    }

    /// Starts again, in the background, each required server that failed or stopped: a
    /// failed server is otherwise retried only by its next call, which a gateway out of
    /// its load balancer's rotation would never get. The server's restart backoff still
    /// applies; at most one attempt per server runs at a time.
    pub fn restart_failed_required(&self) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        for server in self.servers() {
            if !server.spec().required || !matches!(server.state(), State::Failed | State::Stopped)
            {
                continue;
            }
            if !self
                .inner
                .readiness
                .restarting
                .lock()
                .insert(server.name.clone())
            {
                continue;
            }
            let gateway = self.clone();
            self.spawn(async move {
                if let Err(error) = server.upstream(&gateway.inner.era_cache).await {
                    tracing::debug!(server = %server.name, error = %error.message, "required server still not ready");
                }
                gateway.inner.readiness.restarting.lock().remove(&server.name);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_makes_the_gateway_unready() {
        let config =
            switchboard_config::parse("", switchboard_config::ConfigFormat::Native, None).unwrap();
        let gateway = Gateway::start(&config).await.unwrap();
        let ready = gateway.readiness();
        assert!(
            ready.ready && ready.accepting && ready.config_valid,
            "{ready:?}"
        );
        assert_eq!((ready.required_servers, ready.required_ready), (0, 0));
        assert!(gateway.drain(std::time::Duration::from_millis(10)).await);
        let draining = gateway.readiness();
        assert!(!draining.ready && !draining.accepting, "{draining:?}");
        gateway.shutdown().await;
    }
}
