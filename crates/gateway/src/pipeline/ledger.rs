//! The daily budget ledger: how many calls each budget key made on the current UTC day.
//! One per gateway (built with `[access]`, kept in `chain::Parts`), so the day's counts
//! carry over when a reload rebuilds the budgets step.
//!
//! The day's counts live in memory — the truth while the process runs: admitting a call is
//! one check-and-increment under one lock — and are written to the embedded database
//! (`crate::db`, table `budgets.daily`, key `(day, budget key)` → count), one transaction
//! for every count changed since the last write. When they are written is the caller's
//! choice ([`Ledger::write`]): after every admission, before the call goes on
//! ([`Ledger::settle`]; concurrent callers share one commit), or in the background every
//! few milliseconds ([`write_behind`]). At start the current day's counts are read back,
//! so a budget survives a restart; the first write of a new day deletes the older days.
//!
//! Bounds: at most [`MAX_KEYS`] distinct keys a day in memory and on disk; a new key past
//! that counts under its budget's shared overflow key (so the budget still holds, for
//! the callers past the bound together).
//!
//! The clock is injected (wall time: days are UTC calendar days, not a monotonic span).
//!
//! With `[cluster]` the counts are kept in Redis instead, for every replica at once
//! (`cluster::budgets`); [`Counts`] is the seam the budgets step counts through.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use redb::{ReadableDatabase as _, TableDefinition};
use tokio_util::sync::CancellationToken;

use crate::db::Db;

/// `(UTC day number, budget key)` → calls admitted that day.
const TABLE: TableDefinition<'_, (u32, &str), u64> = TableDefinition::new("budgets.daily");

/// Distinct budget keys counted per day (budgets × principals, tenants, …).
pub(crate) const MAX_KEYS: usize = 100_000;

const SECONDS_PER_DAY: u64 = 86_400;

/// The scope key new keys past [`MAX_KEYS`] count under.
pub(crate) const OVERFLOW: &str = "_overflow";

/// Where the ledger reads the time.
pub(crate) type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Counts could not be written (they stay in memory and are retried).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LedgerError {
    #[error("budget counts not written to the database: {0}")]
    Write(#[from] redb::Error),
    #[error("budget counts not written: the writer panicked")]
    Panicked,
}

/// Where the day's counts are kept: the one seam between the budgets step and its store.
#[derive(Clone)]
pub(crate) enum Counts {
    /// One process: exact in memory, written to the embedded database ([`Ledger`]).
    Local(Arc<Ledger>),
    /// `[cluster]`: in Redis, one atomic script per admission, for every replica.
    Shared(Arc<crate::cluster::budgets::SharedBudgets>),
}

/// One budget key a call is charged to.
pub(crate) struct Charge<'a> {
    /// The budget's identity (`DailyBudget::identity`).
    pub budget: &'a str,
    /// The key within the budget (`limits::scope_key`).
    pub scope: String,
    /// Calls allowed per day.
    pub limit: u64,
}

/// A refusal: `charges[index]` had no room left today.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Spent {
    pub index: usize,
    /// Until the next UTC midnight.
    pub retry_after: Duration,
}

/// What one admission counted.
#[derive(Debug)]
pub(crate) struct Ticket {
    day: u32,
    /// The admission's place in the ledger's order of changes.
    seq: u64,
    keys: Vec<String>,
}

impl Ticket {
    #[cfg(test)]
    fn seq(&self) -> u64 {
        self.seq
    }
}

struct Count {
    calls: u64,
    /// Changed since the last write (and listed in `Today::dirty`).
    dirty: bool,
}

struct Today {
    day: u32,
    counts: HashMap<String, Count>,
    dirty: Vec<String>,
    /// Bumped by every admission and refund, under this lock.
    seq: u64,
}

struct Written {
    /// Every change up to this `seq` is committed.
    seq: u64,
    /// Days before this one are deleted.
    pruned_before: u32,
}

pub(crate) struct Ledger {
    db: Arc<Db>,
    clock: WallClock,
    max_keys: usize,
    /// `budget_flush_ms` of the budgets step in force; zero: that step commits each
    /// call itself and the background writer stays idle.
    flush_ms: AtomicU64,
    today: Mutex<Today>,
    /// Held while writing: one commit at a time, and a caller waiting here finds out
    /// whether another's commit already covered its admission.
    written: Mutex<Written>,
    /// Signalled when the first change after a write arrives.
    wake: tokio::sync::Notify,
}

/// The UTC day number of `now` and the time left until it ends.
fn day_of(now: SystemTime) -> (u32, Duration) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let day = since_epoch.as_secs() / SECONDS_PER_DAY;
    let end = Duration::from_secs((day + 1) * SECONDS_PER_DAY);
    (
        u32::try_from(day).unwrap_or(u32::MAX),
        end.saturating_sub(since_epoch),
    )
}

/// The ledger's key of `scope` in `budget` (also the Redis hash field, `cluster::budgets`).
pub(crate) fn key_of(budget: &str, scope: &str) -> String {
    let mut key = String::with_capacity(budget.len() + 1 + scope.len());
    key.push_str(budget);
    key.push('\u{1f}');
    key.push_str(scope);
    key
}

impl Ledger {
    /// The ledger on `db`, with today's counts read back.
    pub(crate) fn open(db: Arc<Db>) -> Ledger {
        Ledger::with_clock(db, Arc::new(SystemTime::now), MAX_KEYS)
    }

    pub(crate) fn with_clock(db: Arc<Db>, clock: WallClock, max_keys: usize) -> Ledger {
        let (day, _) = day_of(clock());
        let counts = match Ledger::load(&db, day) {
            Ok(counts) => counts,
            Err(error) => {
                tracing::error!(%error, "daily budget counts could not be read; starting the day at zero");
                HashMap::new()
            }
        };
        Ledger {
            db,
            clock,
            max_keys,
            flush_ms: AtomicU64::new(0),
            today: Mutex::new(Today {
                day,
                counts,
                dirty: Vec::new(),
                seq: 0,
            }),
            written: Mutex::new(Written {
                seq: 0,
                pruned_before: 0,
            }),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn load(db: &Db, day: u32) -> Result<HashMap<String, Count>, redb::Error> {
        let tx = db.database().begin_read()?;
        let table = match tx.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(error) => return Err(error.into()),
        };
        let mut counts = HashMap::new();
        for row in table.range((day, "")..(day.saturating_add(1), ""))? {
            let (key, calls) = row?;
            let (_, key) = key.value();
            counts.insert(
                key.to_owned(),
                Count {
                    calls: calls.value(),
                    dirty: false,
                },
            );
        }
        Ok(counts)
    }

    /// Whether committed counts survive a restart.
    pub(crate) fn is_durable(&self) -> bool {
        self.db.is_durable()
    }

    /// How long after a call its count is written (zero: the caller commits it).
    pub(crate) fn set_flush(&self, every: Duration) {
        let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        self.flush_ms.store(ms, Ordering::Relaxed);
    }

    /// Counts one call against every charge, or none if one of them has no room left.
    pub(crate) fn admit(&self, charges: &[Charge<'_>]) -> Result<Ticket, Spent> {
        let (now_day, _) = day_of((self.clock)());
        let mut guard = self.today.lock();
        let today = &mut *guard;
        if now_day > today.day {
            // A new day: yesterday's counts (written or not) no longer matter.
            today.day = now_day;
            today.counts.clear();
            today.dirty.clear();
        }
        let mut keys = Vec::with_capacity(charges.len());
        for (index, charge) in charges.iter().enumerate() {
            let mut key = key_of(charge.budget, &charge.scope);
            if !today.counts.contains_key(&key) && today.counts.len() >= self.max_keys {
                key = key_of(charge.budget, OVERFLOW);
            }
            let calls = today.counts.get(&key).map_or(0, |count| count.calls);
            if calls >= charge.limit {
                // Until the end of the day being counted (also when the clock stepped back).
                let day_end = Duration::from_secs((u64::from(today.day) + 1) * SECONDS_PER_DAY);
                let since_epoch = (self.clock)()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                return Err(Spent {
                    index,
                    retry_after: day_end.saturating_sub(since_epoch),
                });
            }
            keys.push(key);
        }
        let was_clean = today.dirty.is_empty();
        for key in &keys {
            Ledger::bump(today, key, 1);
        }
        today.seq += 1;
        let ticket = Ticket {
            day: today.day,
            seq: today.seq,
            keys,
        };
        drop(guard);
        if was_clean {
            self.wake.notify_one();
        }
        Ok(ticket)
    }

    fn bump(today: &mut Today, key: &str, delta: i64) {
        let count = match today.counts.get_mut(key) {
            Some(count) => count,
            None => today.counts.entry(key.to_owned()).or_insert(Count {
                calls: 0,
                dirty: false,
            }),
        };
        count.calls = count.calls.saturating_add_signed(delta);
        if !count.dirty {
            count.dirty = true;
            today.dirty.push(key.to_owned());
        }
    }

    /// Takes back an admission whose count could not be made durable.
    pub(crate) fn refund(&self, ticket: &Ticket) {
        let mut guard = self.today.lock();
        let today = &mut *guard;
        if today.day != ticket.day {
            return;
        }
        for key in &ticket.keys {
            Ledger::bump(today, key, -1);
        }
        today.seq += 1;
    }

    /// Blocks until the admission numbered `seq` ([`Ticket::seq`]) is committed: by this call, or by a commit another
    /// caller made meanwhile (callers that arrive together share one commit).
    pub(crate) fn settle(&self, seq: u64) -> Result<(), LedgerError> {
        let mut written = self.written.lock();
        if written.seq >= seq {
            return Ok(());
        }
        self.write_locked(&mut written)
    }

    /// Writes every count changed since the last write, in one transaction (blocking).
    pub(crate) fn write(&self) -> Result<(), LedgerError> {
        let mut written = self.written.lock();
        self.write_locked(&mut written)
    }

    fn write_locked(&self, written: &mut Written) -> Result<(), LedgerError> {
        let (day, seq, rows) = {
            let mut guard = self.today.lock();
            let today = &mut *guard;
            let keys = std::mem::take(&mut today.dirty);
            let rows: Vec<(String, u64)> = keys
                .into_iter()
                .filter_map(|key| {
                    let count = today.counts.get_mut(&key)?;
                    count.dirty = false;
                    Some((key, count.calls))
                })
                .collect();
            (today.day, today.seq, rows)
        };
        let prune = written.pruned_before < day;
        if rows.is_empty() && !prune {
            written.seq = written.seq.max(seq);
            return Ok(());
        }
        match self.commit(day, &rows, prune) {
            Ok(()) => {
                written.seq = written.seq.max(seq);
                written.pruned_before = written.pruned_before.max(day);
                Ok(())
            }
            Err(error) => {
                // Keep them for the next write.
                let mut guard = self.today.lock();
                let today = &mut *guard;
                if today.day == day {
                    for (key, _) in rows {
                        if let Some(count) = today.counts.get_mut(&key)
                            && !count.dirty
                        {
                            count.dirty = true;
                            today.dirty.push(key);
                        }
                    }
                }
                Err(error.into())
            }
        }
    }

    fn commit(&self, day: u32, rows: &[(String, u64)], prune: bool) -> Result<(), redb::Error> {
        let tx = self.db.database().begin_write()?;
        {
            let mut table = tx.open_table(TABLE)?;
            for (key, calls) in rows {
                table.insert((day, key.as_str()), *calls)?;
            }
            if prune {
                table.retain_in(..(day, ""), |_, _| false)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Changes not yet written.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.today.lock().dirty.len()
    }
}

/// Writes the ledger in the background: at most every `budget_flush_ms` while calls are
/// counted, and once more when `shutdown` is cancelled (so a clean stop loses nothing).
/// A failed write is logged, counted in `failures` and retried after the interval; the
/// counts stay in memory meanwhile, so admission is never wrong while the process runs.
/// Idle while the budgets step commits each call itself (`budget_flush_ms = 0`).
pub(crate) async fn write_behind(
    ledger: Arc<Ledger>,
    shutdown: CancellationToken,
    failures: Counter,
) {
    loop {
        tokio::select! {
            () = ledger.wake.notified() => {}
            () = shutdown.cancelled() => break,
        }
        let every = Duration::from_millis(ledger.flush_ms.load(Ordering::Relaxed));
        if every.is_zero() {
            continue;
        }
        // Let the changes of the next `every` join this write.
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => break,
        }
        if let Err(error) = write_blocking(&ledger).await {
            failures.inc();
            tracing::error!(%error, "daily budget counts not written; retrying");
            ledger.wake.notify_one();
        }
    }
    if let Err(error) = write_blocking(&ledger).await {
        failures.inc();
        tracing::error!(%error, "daily budget counts not written at shutdown");
    }
}

async fn write_blocking(ledger: &Arc<Ledger>) -> Result<(), LedgerError> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || ledger.write())
        .await
        .unwrap_or(Err(LedgerError::Panicked))
}

/// [`Ledger::settle`] off the async threads.
pub(crate) async fn settle(ledger: &Arc<Ledger>, ticket: &Ticket) -> Result<(), LedgerError> {
    let ledger = ledger.clone();
    let seq = ticket.seq;
    tokio::task::spawn_blocking(move || ledger.settle(seq))
        .await
        .unwrap_or(Err(LedgerError::Panicked))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves: seconds since the epoch.
    fn clock(at: &Arc<AtomicU64>) -> WallClock {
        let at = at.clone();
        Arc::new(move || UNIX_EPOCH + Duration::from_secs(at.load(Ordering::Relaxed)))
    }

    /// 2026-12-10 00:00:00 UTC.
    const DAY_START: u64 = 20_432 * SECONDS_PER_DAY;

    fn charge(scope: &str, limit: u64) -> Charge<'static> {
        Charge {
            budget: "tenant|*|fx__*",
            scope: scope.to_owned(),
            limit,
        }
    }

    fn rows(db: &Db) -> Vec<(u32, String, u64)> {
        let tx = db.database().begin_read().unwrap();
        let Ok(table) = tx.open_table(TABLE) else {
            return Vec::new();
        };
        table
            .range::<(u32, &str)>(..)
            .unwrap()
            .map(|row| {
                let (key, calls) = row.unwrap();
                let (day, key) = key.value();
                (day, key.to_owned(), calls.value())
            })
            .collect()
    }

    #[test]
    fn exact_at_the_boundary_and_until_utc_midnight() {
        let now = Arc::new(AtomicU64::new(DAY_START + 23 * 3600 + 59 * 60)); // 23:59:00
        let ledger = Ledger::with_clock(Arc::new(Db::memory()), clock(&now), MAX_KEYS);
        for _ in 0..3 {
            ledger.admit(&[charge("tenant:a", 3)]).unwrap();
        }
        let spent = ledger.admit(&[charge("tenant:a", 3)]).unwrap_err();
        assert_eq!(
            spent,
            Spent {
                index: 0,
                retry_after: Duration::from_secs(60)
            }
        );
        // Another key has its own count.
        ledger.admit(&[charge("tenant:b", 3)]).unwrap();
        // A refusal counts nothing, also on the charges that had room.
        let refused = ledger.admit(&[charge("tenant:c", 1), charge("tenant:a", 3)]);
        assert_eq!(refused.unwrap_err().index, 1);
        ledger.admit(&[charge("tenant:c", 1)]).unwrap();

        // Midnight UTC: a new day, a new budget.
        now.store(DAY_START + SECONDS_PER_DAY, Ordering::Relaxed);
        for _ in 0..3 {
            ledger.admit(&[charge("tenant:a", 3)]).unwrap();
        }
        let spent = ledger.admit(&[charge("tenant:a", 3)]).unwrap_err();
        assert_eq!(spent.retry_after, Duration::from_secs(SECONDS_PER_DAY));
    }

    #[test]
    fn a_clock_that_steps_back_keeps_the_later_day() {
        let now = Arc::new(AtomicU64::new(DAY_START + 10));
        let ledger = Ledger::with_clock(Arc::new(Db::memory()), clock(&now), MAX_KEYS);
        ledger.admit(&[charge("k", 1)]).unwrap();
        now.store(DAY_START - 10, Ordering::Relaxed);
        let spent = ledger.admit(&[charge("k", 1)]).unwrap_err();
        assert_eq!(
            spent.retry_after,
            Duration::from_secs(SECONDS_PER_DAY + 10),
            "until the end of the day being counted"
        );
    }

    #[test]
    fn written_counts_survive_reopening_and_old_days_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(DAY_START + 3600));
        {
            let db = Db::open(Some(dir.path())).unwrap();
            let ledger = Ledger::with_clock(db.clone(), clock(&now), MAX_KEYS);
            ledger.admit(&[charge("tenant:a", 5)]).unwrap();
            ledger.admit(&[charge("tenant:a", 5)]).unwrap();
            assert_eq!(ledger.pending(), 1);
            ledger.write().unwrap();
            assert_eq!(ledger.pending(), 0);
            // Not written: lost with the process (the write-behind bound).
            ledger.admit(&[charge("tenant:a", 5)]).unwrap();
        }
        {
            let db = Db::open(Some(dir.path())).unwrap();
            let ledger = Ledger::with_clock(db.clone(), clock(&now), MAX_KEYS);
            for _ in 0..3 {
                ledger.admit(&[charge("tenant:a", 5)]).unwrap();
            }
            assert!(ledger.admit(&[charge("tenant:a", 5)]).is_err());
            ledger.write().unwrap();
            assert_eq!(
                rows(&db),
                vec![(20_432, "tenant|*|fx__*\u{1f}tenant:a".to_owned(), 5)]
            );
        }
        // The next day starts at zero; its first write deletes the day before.
        now.store(DAY_START + SECONDS_PER_DAY + 5, Ordering::Relaxed);
        let db = Db::open(Some(dir.path())).unwrap();
        let ledger = Ledger::with_clock(db.clone(), clock(&now), MAX_KEYS);
        ledger.admit(&[charge("tenant:a", 5)]).unwrap();
        ledger.write().unwrap();
        assert_eq!(
            rows(&db),
            vec![(20_433, "tenant|*|fx__*\u{1f}tenant:a".to_owned(), 1)]
        );
    }

    #[test]
    fn settle_commits_once_for_callers_that_arrive_together() {
        let dir = tempfile::tempdir().unwrap();
        let now = Arc::new(AtomicU64::new(DAY_START));
        let db = Db::open(Some(dir.path())).unwrap();
        let ledger = Arc::new(Ledger::with_clock(db.clone(), clock(&now), MAX_KEYS));
        let first = ledger.admit(&[charge("a", 10)]).unwrap();
        let second = ledger.admit(&[charge("b", 10)]).unwrap();
        ledger.settle(second.seq()).unwrap();
        assert_eq!(ledger.pending(), 0, "one commit covered both");
        // The first is covered: settling it writes nothing more.
        ledger.settle(first.seq()).unwrap();
        assert_eq!(rows(&db).len(), 2);
        // From many threads at once: every admission is durable once settled.
        std::thread::scope(|scope| {
            for index in 0..8 {
                let ledger = &ledger;
                scope.spawn(move || {
                    for _ in 0..5 {
                        let ticket = ledger.admit(&[charge(&format!("t{index}"), 10)]).unwrap();
                        ledger.settle(ticket.seq()).unwrap();
                    }
                });
            }
        });
        let reopened = Ledger::with_clock(db, clock(&now), MAX_KEYS);
        for index in 0..8 {
            for _ in 0..5 {
                reopened.admit(&[charge(&format!("t{index}"), 10)]).unwrap();
            }
            assert!(reopened.admit(&[charge(&format!("t{index}"), 10)]).is_err());
        }
    }

    #[test]
    fn a_refund_gives_the_call_back() {
        let now = Arc::new(AtomicU64::new(DAY_START));
        let ledger = Ledger::with_clock(Arc::new(Db::memory()), clock(&now), MAX_KEYS);
        let ticket = ledger.admit(&[charge("a", 1)]).unwrap();
        assert!(ledger.admit(&[charge("a", 1)]).is_err());
        ledger.refund(&ticket);
        ledger.admit(&[charge("a", 1)]).unwrap();
    }

    #[test]
    fn keys_past_the_bound_share_their_budgets_overflow_count() {
        let now = Arc::new(AtomicU64::new(DAY_START));
        let ledger = Ledger::with_clock(Arc::new(Db::memory()), clock(&now), 3);
        for scope in ["a", "b", "c"] {
            ledger.admit(&[charge(scope, 2)]).unwrap();
        }
        // "d" and "e" are new past the bound: one shared count of 2 (plus its own key).
        ledger.admit(&[charge("d", 2)]).unwrap();
        ledger.admit(&[charge("e", 2)]).unwrap();
        assert!(ledger.admit(&[charge("f", 2)]).is_err());
        // Known keys keep their own counts.
        ledger.admit(&[charge("a", 2)]).unwrap();
        assert!(ledger.admit(&[charge("a", 2)]).is_err());
        assert_eq!(ledger.today.lock().counts.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn write_behind_writes_after_the_interval_and_at_shutdown() {
        let now = Arc::new(AtomicU64::new(DAY_START));
        let db = Arc::new(Db::memory());
        let ledger = Arc::new(Ledger::with_clock(db.clone(), clock(&now), MAX_KEYS));
        ledger.set_flush(Duration::from_millis(100));
        let shutdown = CancellationToken::new();
        let failures = Counter::default();
        let writer = tokio::spawn(write_behind(
            ledger.clone(),
            shutdown.clone(),
            failures.clone(),
        ));
        ledger.admit(&[charge("a", 10)]).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ledger.pending(), 1, "not before the interval");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The write runs on a blocking thread: wait for it without moving the clock.
        while ledger.pending() != 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            rows(&db),
            vec![(20_432, "tenant|*|fx__*\u{1f}a".to_owned(), 1)]
        );
        ledger.admit(&[charge("a", 10)]).unwrap();
        shutdown.cancel();
        writer.await.unwrap();
        assert_eq!(rows(&db)[0].2, 2, "written at shutdown");
        assert_eq!(failures.get(), 0);
    }
}
