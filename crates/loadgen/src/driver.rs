//! Driving the load: closed loop (N workers, each sends its next call when the last one
//! answered) or open loop (calls start on a fixed schedule at `--rate` per second whatever
//! the answers do, and latency counts from the scheduled start, so a stalled server cannot
//! hide its queue — no coordinated omission). Every run is bounded in time: a phase ends at
//! its deadline (or call budget) and every call at its own timeout.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::mcp::CallError;
use crate::session::{CallInfo, Caller, Pool};

/// Open-loop calls waiting for a free slot beyond this are counted as errors: the client
/// itself can no longer keep the schedule.
const MAX_BACKLOG: usize = 50_000;

/// How long and how hard to drive.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Closed loop: workers. Open loop: the pool size bounds calls in flight.
    pub concurrency: usize,
    /// Stop after this many measured calls.
    pub calls: Option<u64>,
    /// Stop after this long (measured phase).
    pub duration: Option<Duration>,
    /// Open loop: calls started per second.
    pub rate: Option<f64>,
    /// Unmeasured closed-loop calls first, to warm caches, pools and allocators.
    pub warmup: Duration,
    /// Bound on one call (including waiting for a slot).
    pub timeout: Duration,
    /// Hard bound on the measured phase whatever `calls` says.
    pub max_duration: Duration,
}

impl Plan {
    fn deadline(&self, start: Instant) -> Instant {
        let limit = match self.duration {
            Some(duration) => duration.min(self.max_duration),
            None => self.max_duration,
        };
        start + limit
    }
}

/// Counts of one error kind, with the first message seen for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ErrorCount {
    pub count: u64,
    pub sample: String,
}

/// What a phase produced.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Latency of successful calls, in nanoseconds.
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<String, ErrorCount>,
    /// `tools/list`: the tool count of the last successful call.
    pub tools: Option<usize>,
    pub elapsed: Duration,
    /// The longest scheduling stall of the machine during the phase (see `StallProbe`).
    pub stall: Duration,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency: Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            errors: BTreeMap::new(),
            tools: None,
            elapsed: Duration::ZERO,
            stall: Duration::ZERO,
        }
    }

    fn record(&mut self, outcome: Result<CallInfo, CallError>, latency: Duration) {
        match outcome {
            Ok(info) => {
                self.ok += 1;
                let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
                self.latency.saturating_record(nanos);
                if info.tools.is_some() {
                    self.tools = info.tools;
                }
            }
            Err(error) => self.error(&error),
        }
    }

    fn error(&mut self, error: &CallError) {
        self.errors
            .entry(error.kind())
            .or_insert_with(|| ErrorCount {
                count: 0,
                sample: error.to_string(),
            })
            .count += 1;
    }

    fn merge(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms with equal bounds merge");
        self.ok += other.ok;
        for (kind, count) in &other.errors {
            let entry = self
                .errors
                .entry(kind.clone())
                .or_insert_with(|| ErrorCount {
                    count: 0,
                    sample: count.sample.clone(),
                });
            entry.count += count.count;
        }
        if other.tools.is_some() {
            self.tools = other.tools;
        }
    }

    /// Adds another phase of the same kind of run: counts and latencies merge, times add up,
    /// the worst stall wins.
    pub fn absorb(&mut self, other: &Tally) {
        self.merge(other);
        self.elapsed += other.elapsed;
        self.stall = self.stall.max(other.stall);
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }
}

/// Runs the warm-up (if any), then the measured phase.
pub async fn run(caller: Arc<Caller>, pool: Arc<Pool>, plan: &Plan) -> Tally {
    if !plan.warmup.is_zero() {
        let warmup = Plan {
            calls: None,
            duration: Some(plan.warmup),
            rate: None,
            ..plan.clone()
        };
        closed_loop(caller.clone(), pool.clone(), &warmup).await;
    }
    let probe = StallProbe::start();
    let mut tally = match plan.rate {
        Some(rate) => open_loop(caller, pool, plan, rate).await,
        None => closed_loop(caller, pool, plan).await,
    };
    tally.stall = probe.finish();
    tally
}

/// A thread that sleeps 1 ms at a time and records how late it wakes: the machine's own
/// scheduling stalls (other processes, the hypervisor), which every latency figure of the
/// phase includes. A large value says an outlier is the machine's, not the target's.
pub struct StallProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl StallProbe {
    pub fn start() -> StallProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let nap = Duration::from_millis(1);
            let mut worst = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                let before = std::time::Instant::now();
                std::thread::sleep(nap);
                worst = worst.max(before.elapsed().saturating_sub(nap));
            }
            worst
        });
        StallProbe { stop, thread }
    }

    pub fn finish(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// One call on a borrowed slot, bounded by `timeout` from `started` (slot wait included).
async fn timed_call(
    caller: &Caller,
    pool: &Arc<Pool>,
    timeout: Duration,
) -> Result<CallInfo, CallError> {
    let attempt = async {
        let mut lease = pool.checkout().await;
        caller.call(&mut lease).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => outcome,
        // The lease went back with `busy` set: its connection is replaced on next use.
        Err(_) => Err(CallError::Timeout),
    }
}

async fn closed_loop(caller: Arc<Caller>, pool: Arc<Pool>, plan: &Plan) -> Tally {
    let start = Instant::now();
    let deadline = plan.deadline(start);
    let budget = Arc::new(AtomicU64::new(plan.calls.unwrap_or(u64::MAX)));
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let caller = caller.clone();
        let pool = pool.clone();
        let budget = budget.clone();
        let timeout = plan.timeout;
        workers.spawn(async move {
            let mut tally = Tally::new();
            loop {
                if Instant::now() >= deadline || !take_one(&budget) {
                    break;
                }
                let started = Instant::now();
                let outcome = timed_call(&caller, &pool, timeout).await;
                let latency = started.elapsed();
                let refused = matches!(outcome, Err(CallError::Connect(_)));
                tally.record(outcome, latency);
                if refused {
                    // Do not spin on a dead target; the deadline still ends the phase.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            tally
        });
    }
    let mut total = Tally::new();
    while let Some(joined) = workers.join_next().await {
        let tally = joined.expect("load worker does not panic");
        total.merge(&tally);
    }
    total.elapsed = start.elapsed();
    total
}

fn take_one(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .is_ok()
}

/// The open loop. The schedule is kept by a dedicated thread: the runtime's timer ticks in
/// whole milliseconds, which at 2,000 calls/s would fire calls in bursts up to 1 ms late and
/// charge that lateness to the server. A thread's sleep is accurate to tens of µs.
async fn open_loop(caller: Arc<Caller>, pool: Arc<Pool>, plan: &Plan, rate: f64) -> Tally {
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = std::time::Instant::now();
    let now = Instant::now();
    let limit = plan.deadline(now) - now;
    let total_calls = plan.calls.unwrap_or(u64::MAX);
    let shared = Arc::new(Mutex::new(Tally::new()));
    // Every call in flight or waiting for a slot holds one permit; all permits back means
    // every call has finished.
    let backlog = Arc::new(Semaphore::new(MAX_BACKLOG));
    let runtime = tokio::runtime::Handle::current();
    let timeout = plan.timeout;
    let dispatcher = {
        let shared = shared.clone();
        let backlog = backlog.clone();
        std::thread::spawn(move || {
            let mut issued: u64 = 0;
            while issued < total_calls {
                let offset = interval.mul_f64(issued as f64);
                if offset >= limit {
                    break;
                }
                let scheduled = start + offset;
                if let Some(wait) = scheduled.checked_duration_since(std::time::Instant::now()) {
                    std::thread::sleep(wait);
                }
                issued += 1;
                let Ok(ticket) = backlog.clone().try_acquire_owned() else {
                    shared
                        .lock()
                        .expect("tally lock")
                        .error(&CallError::Backlog);
                    continue;
                };
                let caller = caller.clone();
                let pool = pool.clone();
                let shared = shared.clone();
                let scheduled = Instant::from_std(scheduled);
                runtime.spawn(async move {
                    let _ticket = ticket;
                    let outcome = timed_call(&caller, &pool, timeout).await;
                    // From the scheduled start: time spent queued behind slow calls counts.
                    let latency = scheduled.elapsed();
                    shared.lock().expect("tally lock").record(outcome, latency);
                });
            }
        })
    };
    let _ = tokio::task::spawn_blocking(move || dispatcher.join()).await;
    let all = u32::try_from(MAX_BACKLOG).expect("backlog fits u32");
    let _drained = backlog.acquire_many(all).await;
    let mut total = shared.lock().expect("tally lock").clone();
    total.elapsed = start.elapsed();
    total
}
