//! A call's time budget: a timeout that progress notifications may restart, under an
//! optional hard maximum that nothing extends.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{CallError, CallOptions};

pub(crate) struct Deadline {
    timeout: Duration,
    max_total: Option<Duration>,
    reset_on_progress: bool,
    /// Woken on each progress notification of the call.
    pub(crate) progress: Arc<Notify>,
}

impl Deadline {
    pub(crate) fn new(options: &CallOptions) -> Deadline {
        Deadline {
            timeout: options.timeout,
            max_total: options.max_total_timeout,
            reset_on_progress: options.reset_timeout_on_progress,
            progress: Arc::new(Notify::new()),
        }
    }

    /// Resolves with the timeout error once the budget is spent.
    pub(crate) async fn expired(&self) -> CallError {
        let start = Instant::now();
        let hard = self.max_total.map(|max| start + max);
        let mut soft = start + self.timeout;
        loop {
            let until = hard.map_or(soft, |hard| soft.min(hard));
            tokio::select! {
                () = tokio::time::sleep_until(until) => return CallError::Timeout(start.elapsed()),
                () = self.progress.notified(), if self.reset_on_progress => {
                    soft = Instant::now() + self.timeout;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn progress_extends_up_to_the_hard_limit() {
        let mut options = CallOptions::new(Duration::from_secs(1));
        options.reset_timeout_on_progress = true;
        options.max_total_timeout = Some(Duration::from_secs(3));
        let deadline = Deadline::new(&options);
        let progress = deadline.progress.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                progress.notify_one();
            }
        });
        let started = Instant::now();
        let error = deadline.expired().await;
        ticker.abort();
        assert!(matches!(error, CallError::Timeout(_)));
        assert_eq!(
            started.elapsed().as_secs(),
            3,
            "hard limit wins over steady progress"
        );

        let plain = Deadline::new(&CallOptions::new(Duration::from_secs(1)));
        let started = Instant::now();
        plain.progress.notify_one();
        plain.expired().await;
        assert_eq!(started.elapsed().as_secs(), 1, "no reset unless asked");
    }
}
