//! Announcing new out-of-band approvals to a webhook: a POST of JSON per approval, sent by
//! one background task from a bounded queue. The call path only `try_send`s, so a slow or
//! failing webhook never holds a call beyond its own wait: a full queue drops the
//! announcement (logged; the approval is in `GET /admin/approvals` either way), and each
//! POST is bounded by `webhook_timeout_ms`. Failures are logged and counted, never retried.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Announcements waiting to be sent, at most.
pub(super) const QUEUE: usize = 256;

/// The sending side, held by the approvals desk.
pub(super) struct Announcer {
    queue: mpsc::Sender<Value>,
}

/// The task's side, taken once by the gateway's task tracker.
pub(super) struct Sender {
    url: String,
    timeout: Duration,
    queue: mpsc::Receiver<Value>,
}

pub(super) fn channel(url: String, timeout: Duration) -> (Announcer, Sender) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        Announcer { queue: tx },
        Sender {
            url,
            timeout,
            queue: rx,
        },
    )
}

impl Announcer {
    /// Queues `body` without waiting.
    pub(super) fn announce(&self, body: Value) {
        if let Err(error) = self.queue.try_send(body) {
            tracing::warn!(%error, "approval webhook queue full: announcement dropped (the approval is listed in /admin/approvals)");
        }
    }
}

impl Sender {
    /// Sends announcements until `shutdown`.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .tcp_nodelay(true)
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "approval webhook client could not be built: announcements off");
                return;
            }
        };
        loop {
            let body = tokio::select! {
                body = self.queue.recv() => match body {
                    Some(body) => body,
                    None => return,
                },
                () = shutdown.cancelled() => return,
            };
            let id = body
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let sent = tokio::select! {
                sent = client
                    .post(&self.url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.to_string())
                    .send() => sent,
                () = shutdown.cancelled() => return,
            };
            match sent {
                Ok(response) if response.status().is_success() => {
                    tracing::debug!(approval = %id, "approval announced to the webhook");
                }
                Ok(response) => {
                    tracing::warn!(approval = %id, status = %response.status(), "approval webhook refused the announcement");
                }
                Err(error) => {
                    // Without the URL: a webhook's URL often carries its token.
                    let error = error.without_url();
                    tracing::warn!(approval = %id, %error, "approval webhook failed");
                }
            }
        }
    }
}
