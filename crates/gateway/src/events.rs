//! Live calls for operators: every completed client request as a small event (method,
//! server, tool, principal, outcome, duration — never arguments or results), fanned out
//! to the admin event stream's subscribers (`GET /admin/events`, `face/admin_events`),
//! and a ring of the most recent failures (`GET /admin/events/errors`).
//!
//! Cost when nobody watches: [`Events::active`] is one relaxed atomic load, checked by
//! `Gateway::run` before an event is built; the error ring is fed only on the error path.
//! Each subscriber has a bounded queue: a reader too slow to keep up loses events, counted
//! per subscriber (told to it in the stream) and in total.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::mpsc;

/// Subscribers at once; a further one is refused (`503`).
pub const MAX_SUBSCRIBERS: usize = 16;
/// Events queued for one subscriber; more are dropped and counted.
pub const QUEUE: usize = 256;
/// Failed requests kept for `GET /admin/events/errors`.
pub const ERRORS_KEPT: usize = 100;
/// Error text kept in an event.
const MAX_ERROR_BYTES: usize = 512;

/// One completed client request.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct CallEvent {
    /// Increases by one per event the gateway made (gaps: events made while nobody
    /// watched, or lost by this subscriber).
    pub seq: u64,
    /// When it ended, Unix milliseconds.
    pub time_ms: u64,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    pub principal: String,
    /// `ok`, `tool_error`, or the error's metric outcome (`denied`, `timeout`, …).
    pub outcome: String,
    /// The error's message, cut to 512 bytes, for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: f64,
}

impl CallEvent {
    pub fn failed(&self) -> bool {
        self.outcome != "ok"
    }
}

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Arc<CallEvent>>,
    dropped: Arc<AtomicU64>,
}

/// The fan-out and the error ring (one per gateway).
#[derive(Default)]
pub struct Events {
    /// Subscribers right now: the hot path's only check.
    active: AtomicUsize,
    subscribers: Mutex<Vec<Subscriber>>,
    next_subscriber: AtomicU64,
    seq: AtomicU64,
    dropped_total: AtomicU64,
    errors: Mutex<VecDeque<Arc<CallEvent>>>,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    #[error("too many event stream subscribers (at most {MAX_SUBSCRIBERS})")]
    Full,
}

impl Events {
    /// Whether anyone watches: build no event when not.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Events lost by slow subscribers since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total.load(Ordering::Relaxed)
    }

    pub fn subscribers(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The next sequence number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Subscribes; the subscription ends when the returned value is dropped.
    pub fn subscribe(self: &Arc<Self>) -> Result<Subscription, SubscribeError> {
        let mut subscribers = self.subscribers.lock();
        if subscribers.len() >= MAX_SUBSCRIBERS {
            return Err(SubscribeError::Full);
        }
        let (queue, receiver) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        subscribers.push(Subscriber {
            id,
            queue,
            dropped: dropped.clone(),
        });
        self.active.store(subscribers.len(), Ordering::Relaxed);
        Ok(Subscription {
            events: self.clone(),
            id,
            receiver,
            dropped,
        })
    }

    fn unsubscribe(&self, id: u64) {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|s| s.id != id);
        self.active.store(subscribers.len(), Ordering::Relaxed);
    }

    /// Hands `event` to every subscriber that has room, counting the others' losses;
    /// a failure also goes into the error ring.
    pub fn publish(&self, event: CallEvent) {
        let event = Arc::new(event);
        if event.failed() {
            self.remember_error(event.clone());
        }
        if !self.active() {
            return;
        }
        let subscribers = self.subscribers.lock();
        for subscriber in subscribers.iter() {
            if subscriber.queue.try_send(event.clone()).is_err() {
                subscriber.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn remember_error(&self, event: Arc<CallEvent>) {
        let mut errors = self.errors.lock();
        if errors.len() == ERRORS_KEPT {
            errors.pop_front();
        }
        errors.push_back(event);
    }

    /// The most recent failures, newest first.
    pub fn recent_errors(&self) -> Vec<Arc<CallEvent>> {
        self.errors.lock().iter().rev().cloned().collect()
    }
}

/// One subscriber's end: its events, and how many it lost.
pub struct Subscription {
    events: Arc<Events>,
    id: u64,
    receiver: mpsc::Receiver<Arc<CallEvent>>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// The next event (`None` never happens while the gateway lives).
    pub async fn next(&mut self) -> Option<Arc<CallEvent>> {
        self.receiver.recv().await
    }

    /// Events this subscriber lost so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.events.unsubscribe(self.id);
    }
}

impl crate::gateway::Gateway {
    /// The live-call fan-out and the recent errors.
    pub fn events(&self) -> &Arc<Events> {
        &self.inner.events
    }
}

/// Publishes what one client request came to, if anyone watches or it failed. Called at
/// the pipeline's ends with the target it resolved to (`None`: it did not resolve).
pub(crate) fn observe(
    events: &Events,
    started: std::time::Instant,
    principal: &crate::principal::Principal,
    method: &str,
    target: Option<&crate::pipeline::Target>,
    outcome: &Result<crate::reply::Reply, crate::error::Error>,
) {
    let tool_error = || match outcome {
        Ok(crate::reply::Reply::Value(result)) if method == "tools/call" => {
            result.get("isError").and_then(serde_json::Value::as_bool) == Some(true)
        }
        _ => false,
    };
    // The free path: nobody watches and nothing failed.
    if !events.active() && outcome.is_ok() && !tool_error() {
        return;
    }
    let (outcome, error) = match outcome {
        Ok(_) if tool_error() => ("tool_error", None),
        Ok(_) => ("ok", None),
        Err(error) => (error.outcome(), Some(cut(&error.to_string()))),
    };
    let (server, tool) = match target {
        Some(crate::pipeline::Target::Upstream(route)) => {
            (Some(route.server.clone()), Some(route.name.clone()))
        }
        Some(crate::pipeline::Target::Meta(name)) => (None, Some(name.clone())),
        _ => (None, None),
    };
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    events.publish(CallEvent {
        seq: events.next_seq(),
        time_ms,
        method: method.to_owned(),
        server,
        tool,
        principal: principal.id().to_owned(),
        outcome: outcome.to_owned(),
        error,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
}

/// `message` cut to at most 512 bytes on a character boundary.
pub fn cut(message: &str) -> String {
    if message.len() <= MAX_ERROR_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_ERROR_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64, outcome: &str) -> CallEvent {
        CallEvent {
            seq,
            time_ms: 0,
            method: "tools/call".into(),
            server: Some("fx".into()),
            tool: Some("echo".into()),
            principal: "alice".into(),
            outcome: outcome.into(),
            error: None,
            duration_ms: 1.0,
        }
    }

    #[tokio::test]
    async fn subscribers_get_events_and_leave_on_drop() {
        let events = Arc::new(Events::default());
        assert!(!events.active());
        let mut first = events.subscribe().unwrap();
        assert!(events.active());
        events.publish(event(1, "ok"));
        assert_eq!(first.next().await.unwrap().seq, 1);
        drop(first);
        assert!(!events.active());
        assert_eq!(events.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_events_counted_and_others_do_not() {
        let events = Arc::new(Events::default());
        let mut slow = events.subscribe().unwrap();
        let mut fast = events.subscribe().unwrap();
        for seq in 0..(QUEUE as u64 + 10) {
            events.publish(event(seq, "ok"));
            assert_eq!(fast.next().await.unwrap().seq, seq);
        }
        assert_eq!(slow.dropped(), 10);
        assert_eq!(fast.dropped(), 0);
        assert_eq!(events.dropped_total(), 10);
        // What it kept is the oldest QUEUE events, in order.
        assert_eq!(slow.next().await.unwrap().seq, 0);
    }

    #[test]
    fn subscribers_are_capped() {
        let events = Arc::new(Events::default());
        let held: Vec<_> = (0..MAX_SUBSCRIBERS)
            .map(|_| events.subscribe().unwrap())
            .collect();
        assert_eq!(events.subscribe().err(), Some(SubscribeError::Full));
        drop(held);
        assert!(events.subscribe().is_ok());
    }

    #[test]
    fn the_error_ring_keeps_the_newest_failures_without_subscribers() {
        let events = Events::default();
        for seq in 0..(ERRORS_KEPT as u64 + 5) {
            events.publish(event(seq, "denied"));
            events.publish(event(seq, "ok"));
        }
        let errors = events.recent_errors();
        assert_eq!(errors.len(), ERRORS_KEPT);
        assert_eq!(errors[0].seq, ERRORS_KEPT as u64 + 4);
        assert_eq!(errors.last().unwrap().seq, 5);
        assert!(errors.iter().all(|e| e.outcome == "denied"));
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let long = "é".repeat(400);
        let cut = cut(&long);
        assert!(cut.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(super::cut("short"), "short");
    }
}
