//! The admin event stream (`admin.rs` mounts it behind the admin authorization):
//!
//! - `GET /admin/events` — Server-Sent Events: `ready` once subscribed, then a `call`
//!   event per completed client request (`events::CallEvent`: method, server, tool,
//!   principal, outcome, duration; never arguments or results), and `dropped`
//!   (`{"dropped": total}`) when this reader was too slow and lost events. At most
//!   `events::MAX_SUBSCRIBERS` streams at once (`503` beyond); each queues at most
//!   `events::QUEUE` events. A comment every 15 s keeps idle proxies from closing it; the
//!   stream ends when the gateway drains or shuts down.
//! - `GET /admin/events/errors` — the most recent failed requests, newest first, with
//!   the subscriber count and the events lost by slow readers.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::events::{CallEvent, Subscription};
use crate::gateway::Gateway;

/// How often the stream looks at the drain flag, and every how many looks it sends a
/// keep-alive comment.
const TICK: Duration = Duration::from_secs(1);
const KEEPALIVE_TICKS: u32 = 15;

pub(super) fn errors(gateway: &Gateway) -> (StatusCode, Value) {
    let events = gateway.events();
    (
        StatusCode::OK,
        json!({
            "errors": events.recent_errors().iter().map(|e| &**e).collect::<Vec<&CallEvent>>(),
            "subscribers": events.subscribers(),
            "dropped_total": events.dropped_total(),
        }),
    )
}

pub(super) fn stream(gateway: &Gateway) -> Response {
    let subscription = match gateway.events().subscribe() {
        Ok(subscription) => subscription,
        Err(error) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                json!({ "error": error.to_string() }).to_string(),
            )
                .into_response();
        }
    };
    let state = Reader {
        gateway: gateway.clone(),
        subscription,
        reported_dropped: 0,
        ticks: 0,
        started: false,
    };
    let frames = futures::stream::unfold(state, |mut reader| async move {
        let frame = reader.next_frame().await?;
        Some((Ok::<Bytes, Infallible>(frame), reader))
    });
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

struct Reader {
    gateway: Gateway,
    subscription: Subscription,
    reported_dropped: u64,
    ticks: u32,
    started: bool,
}

impl Reader {
    /// The next frame to send; `None` ends the stream.
    async fn next_frame(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            return Some(frame("ready", &json!({ "queue": crate::events::QUEUE })));
        }
        loop {
            let dropped = self.subscription.dropped();
            if dropped > self.reported_dropped {
                self.reported_dropped = dropped;
                return Some(frame("dropped", &json!({ "dropped": dropped })));
            }
            if self.gateway.closing() {
                return None;
            }
            tokio::select! {
                event = self.subscription.next() => {
                    let event = event?;
                    return Some(frame("call", &serde_json::to_value(&*event).ok()?));
                }
                () = tokio::time::sleep(TICK) => {
                    self.ticks += 1;
                    if self.ticks.is_multiple_of(KEEPALIVE_TICKS) {
                        return Some(Bytes::from_static(b": keep-alive\n\n"));
                    }
                }
            }
        }
    }
}

fn frame(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}
