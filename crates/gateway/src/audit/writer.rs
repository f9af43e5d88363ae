//! The one writer of the audit log: takes records off the queue in batches, gives each its
//! seq and the previous hash, seals and signs them, appends the batch and its signed head
//! in one transaction (on the blocking pool: a commit is an fsync), exports what was
//! committed, then releases the batch's queue slots and answers callers that wait for
//! their record (`sync`).
//!
//! A batch that cannot be committed (a full or failing disk) is retried, never dropped:
//! its slots stay taken, so the queue fills and new calls are refused (fail closed) until
//! the disk recovers. At shutdown the writer drains what is queued (records of calls
//! still ending come within the quiet period), then stops.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::chain::{self, Anchor, AnchorKind};
use super::export::Export;
use super::key::AuditKey;
use super::record::Record;
use super::store::{self, StoreError, Tip};
use crate::db::Db;

/// Most records in one transaction.
pub(crate) const MAX_BATCH: usize = 1024;
/// At shutdown, the queue is closed once it has been empty this long and no call holds a
/// slot (calls still ending after the drain, e.g. cancelled by their server's stop, are
/// recorded; a call that never ends is bounded by the shutdown's task deadline).
const QUIET: Duration = Duration::from_millis(200);
/// Between attempts at a batch that failed to commit.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Attempts at a failing batch once shutting down.
const ATTEMPTS_AT_SHUTDOWN: u32 = 3;

/// A record's place in the queue: taken before the call runs, released once the record
/// is committed.
pub struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Slot {
    pub(crate) fn new(permit: tokio::sync::OwnedSemaphorePermit) -> Slot {
        Slot { _permit: permit }
    }
}

/// The answer to a caller that waits for its record.
pub(crate) type Committed = oneshot::Sender<Result<u64, String>>;

pub(crate) struct Entry {
    pub(crate) record: Record,
    /// Released (dropped) once the record is committed.
    pub(crate) _slot: Slot,
    pub(crate) committed: Option<Committed>,
}

pub(crate) struct Counters {
    pub(crate) committed: Counter,
    pub(crate) write_errors: Counter,
    pub(crate) export_errors: Counter,
    pub(crate) lost: Counter,
}

/// What the blocking side owns between batches.
struct State {
    db: Arc<Db>,
    key: AuditKey,
    tip: Tip,
    keep: u64,
    export: Option<Export>,
}

impl State {
    /// Seals `entries` after the tip and commits them with their head; the tip moves only
    /// once the commit returned.
    fn commit(&mut self, entries: &[Entry]) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut prev = self.tip.prev;
        let mut seq = self.tip.next;
        let mut lines = Vec::with_capacity(entries.len());
        for entry in entries {
            let body = entry.record.body(seq, &prev, self.key.id());
            let (line, hash) = chain::seal(&self.key, &body);
            lines.push((seq, line));
            prev = hash;
            seq += 1;
        }
        let head = Anchor::sign(&self.key, AnchorKind::Head, seq - 1, &prev);
        let first = store::append(
            self.db.database(),
            &self.key,
            &lines,
            &head,
            self.tip.first,
            self.keep,
        )?;
        self.tip = Tip {
            next: seq,
            prev,
            first,
        };
        Ok(lines)
    }
}

pub(crate) struct Writer {
    rx: mpsc::UnboundedReceiver<Entry>,
    /// The queue's slots (all free: no call holds a record in progress).
    slots: Arc<tokio::sync::Semaphore>,
    capacity: usize,
    state: Option<State>,
    counters: Counters,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        rx: mpsc::UnboundedReceiver<Entry>,
        slots: Arc<tokio::sync::Semaphore>,
        capacity: usize,
        db: Arc<Db>,
        key: AuditKey,
        tip: Tip,
        keep: u64,
        export: Option<Export>,
        counters: Counters,
    ) -> Writer {
        Writer {
            rx,
            slots,
            capacity,
            state: Some(State {
                db,
                key,
                tip,
                keep,
                export,
            }),
            counters,
        }
    }

    /// Runs until shutdown (then drains the queue) or until every sender is gone.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut closing = false;
        loop {
            let received = if closing {
                match tokio::time::timeout(QUIET, self.rx.recv_many(&mut batch, MAX_BATCH)).await {
                    Ok(received) => received,
                    Err(_) if self.slots.available_permits() < self.capacity => {
                        // Quiet, but calls still hold slots: their records are coming.
                        continue;
                    }
                    Err(_) => {
                        // Quiet: refuse further records, write what is left, stop.
                        self.rx.close();
                        while let Ok(entry) = self.rx.try_recv() {
                            batch.push(entry);
                        }
                        while !batch.is_empty() {
                            let rest = batch.split_off(batch.len().min(MAX_BATCH));
                            let chunk = std::mem::replace(&mut batch, rest);
                            self.write(chunk, true).await;
                        }
                        return;
                    }
                }
            } else {
                tokio::select! {
                    received = self.rx.recv_many(&mut batch, MAX_BATCH) => received,
                    () = shutdown.cancelled() => {
                        closing = true;
                        continue;
                    }
                }
            };
            if received == 0 {
                return;
            }
            self.write(std::mem::take(&mut batch), closing).await;
        }
    }

    /// Commits one batch, retrying until it is committed (a few times only at shutdown).
    async fn write(&mut self, batch: Vec<Entry>, closing: bool) {
        let mut batch = batch;
        let mut delay = RETRY_FIRST;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let Some(mut state) = self.state.take() else {
                return;
            };
            let (state, batch_back, result) = match tokio::task::spawn_blocking(move || {
                let result = state.commit(&batch);
                if let (Ok(lines), Some(export)) = (&result, state.export.as_mut())
                    && let Err(error) = export.write(lines)
                {
                    return (state, batch, result.map(|lines| (lines, Some(error))));
                }
                (state, batch, result.map(|lines| (lines, None)))
            })
            .await
            {
                Ok(done) => done,
                Err(error) => {
                    // The blocking task panicked: its state is gone with it.
                    tracing::error!(%error, "audit writer failed; records are no longer written");
                    return;
                }
            };
            self.state = Some(state);
            batch = batch_back;
            match result {
                Ok((lines, export_error)) => {
                    self.counters.committed.inc_by(lines.len() as u64);
                    if let Some(error) = export_error {
                        self.counters.export_errors.inc();
                        tracing::warn!(%error, "audit export write failed (the log itself is committed)");
                    }
                    for (entry, (seq, _)) in batch.into_iter().zip(lines) {
                        if let Some(committed) = entry.committed {
                            let _ = committed.send(Ok(seq));
                        }
                    }
                    return;
                }
                Err(error) => {
                    self.counters.write_errors.inc();
                    tracing::error!(%error, records = batch.len(), attempt = attempts, "audit log write failed; retrying (new calls are refused once the queue is full)");
                    if closing && attempts >= ATTEMPTS_AT_SHUTDOWN {
                        self.counters.lost.inc_by(batch.len() as u64);
                        tracing::error!(
                            records = batch.len(),
                            "audit records lost at shutdown: the log could not be written"
                        );
                        for entry in batch {
                            if let Some(committed) = entry.committed {
                                let _ = committed.send(Err(error.to_string()));
                            }
                        }
                        return;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
    }
}
