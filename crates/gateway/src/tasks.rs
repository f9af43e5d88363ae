//! The gateway's background tasks, owned by one [`TaskTracker`] in `Inner`: shutdown
//! closes it and waits for them (bounded by [`TASKS_DEADLINE`]).
//!
//! Tracked (they belong to the gateway or to one of its servers): the signal loop, the
//! pipeline steps' background work (the audit log's writer, `Step::background`), the
//! daily budget ledger's writer (`chain::Parts::background`), the store flusher, the
//! idle reaper, retiring servers, re-lists, per-session view refreshes,
//! resubscriptions, roots notifications and answers, parked-flight expiry, the config
//! watcher, ended sessions' clean-up, and each server's health probes, recycling,
//! wedged-instance checks, background re-lists and instances' event pumps and listen
//! streams.
//!
//! Not tracked, because they already end with their owner: the HTTP face's per-request
//! streams and per-connection tasks (`face/serve.rs` waits for connections in its own
//! tracker), the WebSocket face's upgraded connections (each ends with its socket, and at
//! the gateway's shutdown), its session reaper (ends when the face's state is dropped),
//! the stdio face's writer, per-request and peer tasks and its session's change pump
//! (they end with stdin, the output channel or the session), a detached flight in `bridge.rs` (owned by its result channel) and
//! a server→client request relayed to the calling client (owned by that client's call).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::gateway::Gateway;

/// How long shutdown waits for the gateway's tasks after stopping the servers.
pub(crate) const TASKS_DEADLINE: Duration = Duration::from_secs(5);

impl Gateway {
    /// Spawns a task the gateway owns: shutdown waits for it.
    pub(crate) fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.tasks.spawn(task)
    }

    /// The tracker, for parts that spawn without a `Gateway` at hand (servers).
    pub(crate) fn tracker(&self) -> TaskTracker {
        self.inner.tasks.clone()
    }
}

/// Closes `tasks` and waits for them up to `deadline`; returns how many were still
/// running then (and logs them).
pub(crate) async fn close_and_wait(tasks: &TaskTracker, deadline: Duration) -> usize {
    tasks.close();
    if tokio::time::timeout(deadline, tasks.wait()).await.is_ok() {
        return 0;
    }
    let left = tasks.len();
    tracing::warn!(
        tasks = left,
        deadline_ms = deadline.as_millis() as u64,
        "shutdown: background tasks still running after the deadline"
    );
    left
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    async fn empty_gateway() -> Gateway {
        let config = switchboard_config::parse("", switchboard_config::ConfigFormat::Native, None)
            .expect("valid config");
        Gateway::start(&config).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_a_tracked_task() {
        let gateway = empty_gateway().await;
        let done = Arc::new(AtomicBool::new(false));
        let (flag, stop) = (done.clone(), gateway.inner.shutdown.clone());
        gateway.spawn(async move {
            stop.cancelled().await;
            // Work that outlives the shutdown signal: shutdown must wait for it.
            tokio::time::sleep(Duration::from_secs(1)).await;
            flag.store(true, Ordering::Release);
        });
        gateway.shutdown().await;
        assert!(
            done.load(Ordering::Acquire),
            "shutdown returned before the task ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_tasks_only_up_to_the_deadline() {
        let gateway = empty_gateway().await;
        gateway.spawn(std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        gateway.shutdown().await;
        // Paused clock: exactly the deadline passed, no real time.
        assert_eq!(started.elapsed(), TASKS_DEADLINE);
        assert_eq!(gateway.inner.tasks.len(), 1);
    }
}
