//! The event subscriber of a replica: listens on `p:events` and applies another replica's
//! changes here — a server registered or removed at runtime is started or retired, and
//! every session hears `list_changed` —, so a hot-load through any replica reaches all.
//!
//! The subscription is one task owned by the gateway's tracker and ended by its shutdown
//! token. When Redis goes away the subscription ends; the task retries with a bounded
//! exponential backoff (at most [`MAX_BACKOFF`] between attempts, nothing queued while
//! down) and, once subscribed again, reconciles the whole roster, so an event missed
//! while Redis was down is not lost.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;
use crate::roster::parse_definition;
use crate::server::Origin;

/// The longest wait between two reconnection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// One event as published by `RedisStore`.
#[derive(Debug, Deserialize)]
struct Event {
    replica: String,
    kind: String,
    #[serde(default)]
    server: String,
}

/// Starts the subscriber (one task, owned by the gateway).
pub(crate) fn spawn(gateway: &Gateway, client: redis::Client, channel: String, replica: String) {
    let weak = std::sync::Arc::downgrade(&gateway.inner);
    let shutdown = gateway.inner.shutdown.clone();
    gateway.spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let subscribed = tokio::select! {
                subscribed = subscribe(&client, &channel) => subscribed,
                () = shutdown.cancelled() => return,
            };
            match subscribed {
                Ok(pubsub) => {
                    backoff = FIRST_BACKOFF;
                    tracing::info!(event = "cluster.subscribed", "cluster: listening for other replicas' changes");
                    // Whatever happened while we were not listening.
                    let Some(inner) = weak.upgrade() else { return };
                    Gateway { inner }.reconcile_roster().await;
                    if listen(pubsub, &weak, &replica, &shutdown).await {
                        return;
                    }
                    tracing::warn!(
                        event = "cluster.unsubscribed",
                        "cluster: lost the Redis event channel; reconnecting"
                    );
                }
                Err(error) => {
                    tracing::warn!(event = "cluster.subscribe_failed", %error, retry_ms = backoff.as_millis() as u64, "cluster: Redis event channel unavailable");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Applies events until the subscription ends (`false`) or the gateway stops (`true`).
async fn listen(
    mut pubsub: redis::aio::PubSub,
    weak: &std::sync::Weak<crate::gateway::Inner>,
    replica: &str,
    shutdown: &CancellationToken,
) -> bool {
    let mut messages = pubsub.on_message();
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            () = shutdown.cancelled() => return true,
        };
        let Some(message) = message else { return false };
        let Ok(payload) = message.get_payload::<Vec<u8>>() else {
            continue;
        };
        let Ok(event) = serde_json::from_slice::<Event>(&payload) else {
            tracing::warn!(
                event = "cluster.bad_event",
                "cluster: unreadable event ignored"
            );
            continue;
        };
        if event.replica == replica {
            continue; // applied here already
        }
        let Some(inner) = weak.upgrade() else {
            return true;
        };
        let gateway = Gateway { inner };
        match event.kind.as_str() {
            super::store::ROSTER => gateway.reconcile_roster().await,
            super::store::APPROVAL => gateway.adopt_approval(&event.server),
            // A version another replica recorded: ours records its own when its lists
            // change; only a server that runs on another replica (`cluster = "owned"`)
            // takes the owner's.
            super::store::VERSION => gateway.adopt_owned_lists(&event.server).await,
            _ => {}
        }
    }
}

impl Gateway {
    /// Makes this replica's runtime-registered servers those of the shared store: starts
    /// the ones registered elsewhere, retires the ones removed elsewhere. Servers from
    /// the config file are never touched (each replica reads the same file itself).
    pub(crate) async fn reconcile_roster(&self) {
        let registered: BTreeMap<String, serde_json::Value> = match self
            .inner
            .registry
            .try_registered()
        {
            Ok(registered) => registered,
            Err(error) => {
                tracing::warn!(event = "cluster.reconcile_failed", %error, "cluster: roster not reconciled");
                return;
            }
        };
        let mut changed = false;
        let stale: Vec<String> = self
            .servers()
            .into_iter()
            .filter(|server| {
                server.origin == Origin::Runtime && !registered.contains_key(&server.name)
            })
            .map(|server| server.name.clone())
            .collect();
        for name in stale {
            if let Some(server) = self.inner.servers.write().remove(&name) {
                tracing::info!(
                    event = "cluster.removed",
                    server = name,
                    "server removed by another replica"
                );
                self.retire(server);
                changed = true;
            }
        }
        for (name, definition) in registered {
            if self.server(&name).is_some() {
                continue;
            }
            let spec = match parse_definition(&name, &definition) {
                Ok(spec) => spec,
                Err(error) => {
                    tracing::error!(server = name, error = %error.message, "stored server definition invalid; skipped");
                    continue;
                }
            };
            let Ok(_reservation) = self.reserve(&name) else {
                continue; // being added here right now
            };
            let server = self.build_server(&name, spec, Origin::Runtime);
            if let Err(error) = self.bring_up(&server).await {
                tracing::error!(server = name, error = %error.message, "server registered by another replica did not start");
                continue;
            }
            self.inner.servers.write().insert(name.clone(), server);
            self.remember_catalog(&name).await;
            tracing::info!(
                event = "cluster.added",
                server = name,
                "server registered by another replica"
            );
            changed = true;
        }
        if changed {
            self.announce();
        }
    }

    /// Takes over an approval made on another replica.
    pub(crate) fn adopt_approval(&self, server: &str) {
        match self.inner.registry.adopt_approval(server) {
            Ok(true) => self.announce(),
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(event = "cluster.approval_failed", server, %error, "cluster: approval not adopted")
            }
        }
    }
}
