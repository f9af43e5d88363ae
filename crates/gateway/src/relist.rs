//! Coalesced re-lists. An upstream's `notifications/*/list_changed` makes the gateway
//! re-list that server; a flood of them must not become a flood of re-lists, catalog
//! rebuilds and client notifications. Per server and list kind:
//!
//! - at most one re-list runs, and at most one waits behind it (it will see every change
//!   signalled meanwhile); further signals are dropped and counted
//!   (`switchboard_list_changed_coalesced_total`);
//! - re-lists start at least [`MIN_INTERVAL`] apart (the first after a quiet spell starts
//!   at once);
//! - clients are told only when the re-listed items differ, so at most once per interval.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::catalog::{ListKind, ServerLists};
use crate::gateway::Gateway;
use crate::server::Server;

/// The shortest time between two re-lists of one server's list.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// One server's re-list bookkeeping.
#[derive(Default)]
pub(crate) struct Relists {
    kinds: Mutex<[KindState; 3]>,
}

/// What a `list_changed` signal leads to.
#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// No re-list is running: start one.
    Start,
    /// One is running: one more is queued behind it.
    Queued,
    /// One is running and one queued: nothing more to do (counted).
    Coalesced,
}

#[derive(Default, Clone, Copy)]
struct KindState {
    running: bool,
    pending: bool,
    last_started: Option<Instant>,
}

fn index(kind: ListKind) -> usize {
    match kind {
        ListKind::Tools => 0,
        ListKind::Prompts => 1,
        ListKind::Resources => 2,
    }
}

impl Relists {
    /// A `list_changed` arrived.
    fn signal(&self, kind: ListKind) -> Signal {
        let mut kinds = self.kinds.lock();
        let state = &mut kinds[index(kind)];
        if !state.running {
            state.running = true;
            return Signal::Start;
        }
        if std::mem::replace(&mut state.pending, true) {
            Signal::Coalesced
        } else {
            Signal::Queued
        }
    }

    /// When the next re-list may start; records it as started at that moment.
    fn start_at(&self, kind: ListKind) -> Instant {
        let mut kinds = self.kinds.lock();
        let state = &mut kinds[index(kind)];
        let now = Instant::now();
        let at = state
            .last_started
            .map_or(now, |last| (last + MIN_INTERVAL).max(now));
        state.last_started = Some(at);
        at
    }

    /// A re-list finished: `true` when one more is queued (the caller runs it).
    fn finished(&self, kind: ListKind) -> bool {
        let mut kinds = self.kinds.lock();
        let state = &mut kinds[index(kind)];
        state.running = std::mem::take(&mut state.pending);
        state.running
    }
}

/// The items of one kind, for "did it change".
fn same(kind: ListKind, a: &ServerLists, b: &ServerLists) -> bool {
    match kind {
        ListKind::Tools => a.tools == b.tools,
        ListKind::Prompts => a.prompts == b.prompts,
        ListKind::Resources => a.resources == b.resources && a.templates == b.templates,
    }
}

/// Acts on a server's `list_changed`: starts the re-list task, queues one more re-list,
/// or counts the signal as coalesced.
pub(crate) fn list_changed(gateway: &Gateway, server: Arc<Server>, kind: ListKind) {
    match server.relists.signal(kind) {
        // Off the signal loop: a slow upstream must not delay other signals.
        Signal::Start => drop(gateway.spawn(run(gateway.clone(), server, kind))),
        Signal::Queued => {}
        Signal::Coalesced => server.stats.count_list_changed_coalesced(),
    }
}

/// The re-list task of one server and kind: runs re-lists until none is queued; ends
/// early with the gateway (its shutdown token owns it).
async fn run(gateway: Gateway, server: Arc<Server>, kind: ListKind) {
    let shutdown = gateway.inner.shutdown.clone();
    loop {
        let at = server.relists.start_at(kind);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = shutdown.cancelled() => return,
        }
        let before = gateway.shown_lists(&server);
        match server.refresh(&gateway.inner.era_cache, kind).await {
            Ok(()) => {
                // The registry records the set; clients hear of it when what the catalog
                // shows changed (a quarantined change shows as a tool leaving).
                let observed = gateway.observe_lists(&server, true).await;
                let after = gateway.shown_lists(&server);
                if !same(kind, &before, &after) || !observed.quarantined.is_empty() {
                    gateway.announce_lists(&[kind]);
                }
            }
            Err(error) => tracing::warn!(server = %server.name, %error, "list refresh failed"),
        }
        if !server.relists.finished(kind) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_runs_one_waits_the_rest_are_counted() {
        let relists = Relists::default();
        let tools = ListKind::Tools;
        assert_eq!(
            relists.signal(tools),
            Signal::Start,
            "the first starts a re-list"
        );
        assert_eq!(relists.signal(tools), Signal::Queued, "one waits behind it");
        for _ in 0..10 {
            assert_eq!(relists.signal(tools), Signal::Coalesced);
        }
        assert_eq!(
            relists.signal(ListKind::Prompts),
            Signal::Start,
            "kinds are independent"
        );
        assert!(relists.finished(tools), "the queued one runs");
        assert_eq!(
            relists.signal(tools),
            Signal::Queued,
            "behind the running one"
        );
        assert!(relists.finished(tools));
        assert!(!relists.finished(tools), "nothing queued: done");
        assert_eq!(
            relists.signal(tools),
            Signal::Start,
            "a later signal starts again"
        );
    }

    #[test]
    fn re_lists_start_an_interval_apart() {
        let relists = Relists::default();
        let before = Instant::now();
        let first = relists.start_at(ListKind::Tools);
        assert!(
            first >= before && first <= Instant::now(),
            "after a quiet spell: at once"
        );
        let second = relists.start_at(ListKind::Tools);
        assert_eq!(second, first + MIN_INTERVAL);
        let other = relists.start_at(ListKind::Prompts);
        assert!(other < second, "kinds are paced independently");
    }
}
