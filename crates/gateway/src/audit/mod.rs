//! The tamper-evident audit log: one record per decision and per executed call (who, what,
//! decided how, ended how, digests of arguments and result, latency), hash-chained and
//! signed with Ed25519, appended to the shared embedded database by one writer, exported
//! as JSON lines for a SIEM, and verifiable offline (`switchboard audit verify`).
//!
//! - `record`: what a record says, and its body's fixed JSON shape;
//! - `digest`: SHA-256 of canonical JSON (arguments, results);
//! - `key`: the signing key (config, file, or `state_dir/audit.key`), never printed;
//! - `chain`: sealing a body into a signed line, signed heads and bases;
//! - `store`: the redb tables, the append transaction, snapshots for readers;
//! - `writer`: the single writer task (batches, retries, export);
//! - `export`: the JSON-lines sink;
//! - `verify`: checking a log or an export, naming the first bad seq;
//! - `query`: filtering records (admin API, CLI);
//! - [`Log`]: the handle the pipeline's `audit` step (and other parts) write through.
//!
//! Back-pressure: a call takes a queue slot *before* it runs ([`Log::reserve`]); with the
//! queue full it waits up to `queue_wait_ms`, then is refused (`-31006`, retryable) before
//! anything executes. A record is therefore never dropped for lack of room, and a log that
//! cannot be written (full disk) stops new calls instead of losing their records.

pub mod chain;
pub mod digest;
mod export;
pub mod key;
pub mod query;
pub mod record;
pub mod store;
pub mod time;
pub mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use switchboard_config::AuditSettings;
use tokio::sync::{Semaphore, mpsc, oneshot};

pub use key::AuditKey;
pub use record::{Decision, ErrorInfo, Outcome, Record};
pub use writer::Slot;

use crate::db::Db;
use crate::metrics::Metrics;

/// How long a caller waits for its record to be committed (`sync = true`).
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// The log could not be opened, or would not take a record.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Key(#[from] key::KeyError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The queue stayed full for `queue_wait_ms`.
    #[error("audit log queue full")]
    Full,
    /// The log stopped taking records (shutdown).
    #[error("audit log closed")]
    Closed,
    /// The record was not committed (`sync`): the write failed or took too long.
    #[error("audit record not committed: {0}")]
    NotCommitted(String),
}

struct Shared {
    queue: mpsc::UnboundedSender<writer::Entry>,
    /// Free places in the queue: a record takes one before its call runs.
    slots: Arc<Semaphore>,
    capacity: usize,
    wait: Duration,
    sync: bool,
    record_arguments: bool,
    record_results: bool,
    /// Taken once, by the gateway's task tracker.
    writer: Mutex<Option<writer::Writer>>,
    refused: Counter,
    lost: Counter,
    key_id: String,
    /// The signing key's public half: what `/admin/audit/verify` trusts.
    public: [u8; 32],
}

/// The audit log's handle; cheap to clone.
#[derive(Clone)]
pub struct Log {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("key", &self.shared.key_id)
            .finish()
    }
}

impl Log {
    /// Loads the key, prepares the tables and builds the writer (started by
    /// [`Log::take_writer`]).
    pub fn open(
        settings: &AuditSettings,
        db: &Arc<Db>,
        metrics: &Metrics,
    ) -> Result<Log, AuditError> {
        let state_dir = db.path().and_then(std::path::Path::parent);
        let key = AuditKey::load(&settings.key, state_dir)?;
        let tip = store::prepare(db.database(), &key)?;
        if !db.is_durable() {
            tracing::warn!("audit log kept in memory only (no state_dir): it is lost at exit");
        }
        tracing::info!(
            key = %key.id(),
            public_key = %key::public_base64(&key.public()),
            next_seq = tip.next,
            "audit log open"
        );
        let (queue, rx) = mpsc::unbounded_channel();
        let key_id = key.id().to_owned();
        let public = key.public();
        let slots = Arc::new(Semaphore::new(settings.queue));
        let writer = writer::Writer::new(
            rx,
            slots.clone(),
            settings.queue,
            db.clone(),
            key,
            tip,
            settings.max_records,
            settings.export.as_ref().map(export::Export::new),
            writer::Counters {
                committed: metrics.audit_event("committed"),
                write_errors: metrics.audit_event("write_error"),
                export_errors: metrics.audit_event("export_error"),
                lost: metrics.audit_event("lost"),
            },
        );
        Ok(Log {
            shared: Arc::new(Shared {
                queue,
                slots,
                capacity: settings.queue,
                wait: settings.queue_wait,
                sync: settings.sync,
                record_arguments: settings.record_arguments,
                record_results: settings.record_results,
                writer: Mutex::new(Some(writer)),
                refused: metrics.audit_event("refused"),
                lost: metrics.audit_event("lost"),
                key_id,
                public,
            }),
        })
    }

    /// The writer's task, once: it runs until `shutdown`, then drains the queue.
    pub fn take_writer(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let writer = self.shared.writer.lock().take()?;
        Some(writer.run(shutdown))
    }

    /// Whether records carry raw arguments / results.
    pub fn records_arguments(&self) -> bool {
        self.shared.record_arguments
    }

    pub fn records_results(&self) -> bool {
        self.shared.record_results
    }

    /// Records taken but not committed yet (in calls, or queued for the writer).
    pub fn queued(&self) -> usize {
        self.shared.capacity - self.shared.slots.available_permits()
    }

    /// The signing key's public half.
    pub fn public_key(&self) -> [u8; 32] {
        self.shared.public
    }

    /// The id of the signing key.
    pub fn key_id(&self) -> &str {
        &self.shared.key_id
    }

    /// A place in the queue for one record, waiting up to `queue_wait_ms` when it is full.
    pub async fn reserve(&self) -> Result<Slot, AuditError> {
        if let Ok(permit) = self.shared.slots.clone().try_acquire_owned() {
            return Ok(Slot::new(permit));
        }
        let acquire = self.shared.slots.clone().acquire_owned();
        match tokio::time::timeout(self.shared.wait, acquire).await {
            Ok(Ok(permit)) => Ok(Slot::new(permit)),
            _ => {
                self.shared.refused.inc();
                Err(AuditError::Full)
            }
        }
    }

    /// Queues `record` in `slot`. With `sync`, the receiver answers once it is committed.
    pub fn submit(
        &self,
        slot: Slot,
        record: Record,
    ) -> Result<Option<oneshot::Receiver<Result<u64, String>>>, AuditError> {
        let (committed, receiver) = if self.shared.sync {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let entry = writer::Entry {
            record,
            _slot: slot,
            committed,
        };
        match self.shared.queue.send(entry) {
            Ok(()) => Ok(receiver),
            Err(error) => {
                self.shared.lost.inc();
                let record = &error.0.record;
                tracing::error!(principal = %record.principal, method = %record.method, tool = ?record.tool, decision = record.decision.label(), "audit log closed: record lost");
                Err(AuditError::Closed)
            }
        }
    }

    /// Waits (with `sync`) until a submitted record is committed.
    pub async fn committed(
        receiver: Option<oneshot::Receiver<Result<u64, String>>>,
    ) -> Result<(), AuditError> {
        let Some(receiver) = receiver else {
            return Ok(());
        };
        match tokio::time::timeout(SYNC_WAIT, receiver).await {
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(error))) => Err(AuditError::NotCommitted(error)),
            Ok(Err(_)) => Err(AuditError::NotCommitted("the writer stopped".into())),
            Err(_) => Err(AuditError::NotCommitted("timed out".into())),
        }
    }

    /// Reserves, queues and (with `sync`) waits: for records outside a call's step hooks
    /// (approval decisions, expiries).
    pub async fn append(&self, record: Record) -> Result<(), AuditError> {
        let slot = self.reserve().await?;
        let receiver = self.submit(slot, record)?;
        Log::committed(receiver).await
    }
}
