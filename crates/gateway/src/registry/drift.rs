//! Drift: a server's live lists differ from its approved version. Each time a server
//! drifts to a new live version the registry raises it four ways: the
//! `switchboard_registry_drift` gauge (per server) and `…_drift_events` counter, a
//! structured log event (`event = "registry.drift"`), an entry in `/admin/registry`, and
//! a call to the configured webhook. The webhook is fire-and-forget on the gateway's
//! task tracker with a bounded timeout and at most [`MAX_INFLIGHT`] calls at a time
//! (further alerts are logged and dropped): it never delays a list or a call.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::diff::Diff;

/// Webhook calls in flight at most.
pub const MAX_INFLIGHT: usize = 8;

/// One server's drift from its approved version.
#[derive(Clone, Debug, Serialize)]
pub struct Drift {
    pub server: String,
    #[serde(rename = "approvedVersion")]
    pub approved: u64,
    #[serde(rename = "liveVersion")]
    pub live: u64,
    /// Milliseconds since the epoch when the live version was recorded.
    pub since: u64,
    /// From the approved version to the live one.
    pub diff: Diff,
}

impl Drift {
    /// The structured log event.
    pub fn log(&self) {
        let diff = serde_json::to_string(&self.diff).unwrap_or_default();
        tracing::warn!(
            event = "registry.drift",
            server = %self.server,
            approved_version = self.approved,
            live_version = self.live,
            %diff,
            "server's live lists drifted from the approved version"
        );
    }
}

/// The drift webhook: POSTs each drift as JSON.
#[derive(Clone)]
pub struct Webhook {
    url: Arc<str>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a token.
        f.debug_struct("Webhook").finish_non_exhaustive()
    }
}

impl Webhook {
    pub fn new(url: &str, timeout: Duration) -> Webhook {
        Webhook {
            url: Arc::from(url),
            client: reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client builds"),
            slots: Arc::new(Semaphore::new(MAX_INFLIGHT)),
        }
    }

    /// The call for `drift`, to be spawned; `None` when [`MAX_INFLIGHT`] calls are
    /// already running (logged).
    pub fn call(&self, drift: &Drift) -> Option<impl Future<Output = ()> + Send + 'static> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(server = %drift.server, "drift webhook busy; this alert is not sent");
            return None;
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "event": "registry.drift",
            "drift": drift,
        }))
        .expect("a drift serializes");
        let request = self
            .client
            .post(&*self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        let server = drift.server.clone();
        Some(async move {
            let _permit = permit;
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(server, "drift webhook called");
                }
                Ok(response) => {
                    tracing::warn!(server, status = %response.status(), "drift webhook refused the alert");
                }
                Err(error) => {
                    // reqwest's error may print the URL; only its kind is logged.
                    let kind = if error.is_timeout() {
                        "timeout"
                    } else if error.is_connect() {
                        "connect"
                    } else {
                        "request"
                    };
                    tracing::warn!(server, kind, "drift webhook failed");
                }
            }
        })
    }
}
