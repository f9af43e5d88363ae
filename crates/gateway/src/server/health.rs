//! Health probes: `ping` for legacy instances, `server/discover` for modern ones, then a
//! cheap `tools/list`. Consecutive failures degrade the server and, past the threshold,
//! take the instance out of service (the next call starts a fresh one).

use std::sync::{Arc, Weak};
use std::time::Duration;

use switchboard_protocol::Era;
use switchboard_upstream::{CallOptions, Upstream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Server;

/// One probe of an upstream: an answer (any answer, even an error) within `timeout`.
pub(crate) async fn probe(upstream: &Upstream, timeout: Duration) -> Result<(), String> {
    let method = match upstream.era() {
        Era::Legacy => "ping",
        Era::Modern => "server/discover",
    };
    match upstream
        .request(method, None, CallOptions::new(timeout))
        .await
    {
        Ok(_) | Err(switchboard_upstream::CallError::Rpc(_)) => {}
        Err(error) => return Err(format!("{method}: {error}")),
    }
    match upstream
        .request("tools/list", None, CallOptions::new(timeout))
        .await
    {
        Ok(_) | Err(switchboard_upstream::CallError::Rpc(_)) => Ok(()),
        Err(error) => Err(format!("tools/list: {error}")),
    }
}

/// Probes every instance of a server each `interval` until `stop`.
pub(crate) fn spawn(
    server: Weak<Server>,
    interval: Duration,
    stop: CancellationToken,
    tasks: &TaskTracker,
) {
    tasks.spawn(async move {
        let mut successes = 0u32;
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = stop.cancelled() => return,
            }
            let Some(server) = server.upgrade() else {
                return;
            };
            let policy = server.policy().health.clone();
            let timeout = interval.min(Duration::from_secs(5));
            let mut all_healthy = true;
            for instance in server.instances_snapshot() {
                match probe(&instance.upstream, timeout).await {
                    Ok(()) => {
                        instance
                            .strikes
                            .store(0, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(reason) => {
                        all_healthy = false;
                        let strikes = instance
                            .strikes
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                            + 1;
                        tracing::warn!(server = %server.name, instance = instance.id, strikes, %reason, "health probe failed");
                        server.set_health(false, Some(reason.clone()));
                        if strikes >= policy.failures {
                            let server: Arc<Server> = server.clone();
                            server
                                .remove_instance(
                                    &instance,
                                    &format!("health probe failed {strikes} times: {reason}"),
                                )
                                .await;
                        }
                    }
                }
            }
            if all_healthy {
                successes += 1;
                if successes >= policy.successes {
                    server.set_health(true, None);
                }
            } else {
                successes = 0;
            }
        }
    });
}
