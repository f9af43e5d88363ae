//! The benchmark scenarios. Each runs the same client against the direct path (client →
//! fixture over HTTP, the physical limit on this machine) and through switchboard (client →
//! gateway HTTP face → fixture over stdio, and over HTTP), then the gateway-only scenarios:
//! fan-in of many sessions onto shared stdio servers, and a large merged catalog. Optional
//! peer gateways run the latency and throughput scenarios in front of the same fixture.
//! The result is a markdown report (and the rows as JSON beside it).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;
use serde_json::json;

use crate::client::Target;
use crate::driver::{self, Plan, Tally};
use crate::hotload::{self, HotLoadFigures};
use crate::mcp::{Era, Template};
use crate::perf::{self, Attached, SyscallCounts};
use crate::procs;
use crate::report::{Figures, markdown_table, us};
use crate::session::{Caller, Pool, Workload};
use crate::spawn::{self, Spawned, Upstream};

#[derive(Args, Clone, Debug)]
pub struct ScenarioArgs {
    /// The switchboard binary (release build for real figures).
    #[arg(long)]
    gateway: PathBuf,
    /// The switchboard-fixture binary.
    #[arg(long)]
    fixture: PathBuf,
    /// Where the markdown report goes (rows as JSON next to it, `.json`).
    #[arg(long, default_value = "target/bench-report.md")]
    out: PathBuf,
    /// Scenarios to run, comma-separated: latency, throughput, fanin, catalog, hotload, peers.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "latency,throughput,fanin,catalog,hotload,peers"
    )]
    only: Vec<String>,
    /// Client eras for latency and throughput.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "modern,legacy"
    )]
    eras: Vec<Era>,
    /// Measured calls of each concurrency-1 latency run.
    #[arg(long, default_value_t = 5000)]
    latency_calls: u64,
    /// Seconds of each throughput and fan-in run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each run (split over its rounds).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Latency and throughput run in this many interleaved rounds per path (direct, stdio,
    /// http, direct, …), each with its share of the calls or time, merged into one row.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrency levels of the throughput runs.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    throughput: Vec<usize>,
    /// Fan-in: client sessions.
    #[arg(long, default_value_t = 100)]
    fanin_sessions: usize,
    /// Fan-in: stdio servers behind the gateway.
    #[arg(long, default_value_t = 10)]
    fanin_servers: usize,
    /// Fan-in: how the servers are shared between sessions (`per-session` shows what
    /// per-client processes cost: one per session and server).
    #[arg(long, value_enum, default_value = "shared")]
    fanin_sharing: FanInSharing,
    /// Catalog scale: gateways to try, as SERVERSxEXTRA_TOOLS (that many stdio fixtures, each
    /// with `--extra-tools EXTRA_TOOLS` on top of its own tools), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "500x0,50x158")]
    catalog: Vec<CatalogShape>,
    /// Catalog scale: measured tools/list calls per row.
    #[arg(long, default_value_t = 200)]
    catalog_calls: u64,
    /// Catalog scale: seconds the gateway may take to start all servers.
    #[arg(long, default_value_t = 300.0)]
    catalog_start_timeout: f64,
    /// Hot-load: rounds of config write → list_changed, and of dormant first calls.
    #[arg(long, default_value_t = 20)]
    hotload_rounds: usize,
    /// A peer gateway in front of the fixture over stdio: `NAME=COMMAND ARGS...`, split on
    /// whitespace (single quotes group), with `{port}` and `{fixture}` substituted; it must serve Streamable HTTP
    /// at http://127.0.0.1:{port}/mcp. Repeatable.
    #[arg(long)]
    peer: Vec<String>,
    /// A note on a peer that could not be set up (printed in the report). Repeatable.
    #[arg(long)]
    peer_note: Vec<String>,
    /// Do not count the front process's syscalls with `perf stat` (counting adds a little
    /// CPU to every syscall on the machine while a phase is measured).
    #[arg(long)]
    no_syscalls: bool,
    /// After the measured runs, record the gateway's stacks with `perf record` during one
    /// more (unmeasured) run at the first throughput concurrency, per switchboard path:
    /// `profile-*.perf.data` in the logs folder, for a flame graph.
    #[arg(long)]
    profile: bool,
    /// Where the syscall counts go, once `perf` proved able to count them here.
    #[arg(skip)]
    syscalls_dir: Option<PathBuf>,
}

impl ScenarioArgs {
    fn wants(&self, scenario: &str) -> bool {
        self.only.iter().any(|s| s == scenario)
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.0))
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration.max(0.1))
    }
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
struct Row {
    scenario: String,
    path: String,
    era: Era,
    concurrency: usize,
    figures: Figures,
    /// The front process of the path: RSS in KiB, max sampled during the measured phase.
    rss_kib: Option<u64>,
    /// Descendants of the front process after the run.
    processes: Option<usize>,
    /// Where the CPU went, per successful call.
    cpu: Option<CpuPerCall>,
    /// What the front process did per successful call besides using CPU.
    front: Option<FrontPerCall>,
}

/// The front process's context switches and syscalls per successful call.
#[derive(Clone, Debug, Serialize)]
struct FrontPerCall {
    voluntary_switches: f64,
    involuntary_switches: f64,
    /// All syscalls (`perf stat`), when counted.
    syscalls: Option<f64>,
    /// The counted kinds ([`perf::SYSCALLS`]) that occurred, most frequent first.
    syscalls_by_kind: Vec<(String, f64)>,
}

impl FrontPerCall {
    fn new(switches: procs::Switches, syscalls: Option<&SyscallCounts>, calls: u64) -> Self {
        let per = |count: u64| count as f64 / calls.max(1) as f64;
        let mut by_kind: Vec<(String, f64)> = syscalls
            .map(|counts| {
                counts
                    .by_kind
                    .iter()
                    .filter(|&(_, &count)| count > 0)
                    .map(|(kind, &count)| (kind.clone(), per(count)))
                    .collect()
            })
            .unwrap_or_default();
        by_kind.sort_by(|a, b| b.1.total_cmp(&a.1));
        FrontPerCall {
            voluntary_switches: per(switches.voluntary),
            involuntary_switches: per(switches.involuntary),
            syscalls: syscalls.map(|counts| per(counts.total)),
            syscalls_by_kind: by_kind,
        }
    }

    /// The most frequent kinds, e.g. `futex 1.2, epoll_wait 1.1`.
    fn top_syscalls(&self, how_many: usize) -> String {
        let top: Vec<String> = self
            .syscalls_by_kind
            .iter()
            .take(how_many)
            .map(|(kind, per_call)| format!("{kind} {per_call:.2}"))
            .collect();
        if top.is_empty() {
            "–".into()
        } else {
            top.join(", ")
        }
    }
}

/// User + system CPU per successful call, in µs, of each party on the path. On two cores
/// their sum bounds throughput: calls/s ≤ 2 s / sum.
#[derive(Clone, Copy, Debug, Serialize)]
struct CpuPerCall {
    /// This load driver.
    client: f64,
    /// The front process (gateway, peer, or the fixture on the direct path).
    front: f64,
    /// The upstream servers behind the front process (its descendants, plus an HTTP
    /// upstream it does not own).
    upstream: Option<f64>,
}

/// CPU seconds of the parties of a path at one moment, and the front process's context
/// switches.
#[derive(Clone, Copy)]
struct CpuSample {
    client: f64,
    front: f64,
    upstream: f64,
    front_switches: procs::Switches,
}

impl CpuSample {
    fn take(front: u32, upstream: &[u32]) -> Option<CpuSample> {
        Some(CpuSample {
            client: procs::cpu_seconds(std::process::id())?,
            front: procs::cpu_seconds(front)?,
            upstream: upstream
                .iter()
                .filter_map(|&pid| procs::cpu_seconds(pid))
                .sum(),
            front_switches: procs::switches(front)?,
        })
    }

    /// CPU spent (and switches made) between two samples.
    fn since(self, before: CpuSample) -> CpuSample {
        let (now, then) = (self.front_switches, before.front_switches);
        CpuSample {
            client: self.client - before.client,
            front: self.front - before.front,
            upstream: self.upstream - before.upstream,
            // A thread that exited in between took its count along: never below zero.
            front_switches: procs::Switches {
                voluntary: now.voluntary.saturating_sub(then.voluntary),
                involuntary: now.involuntary.saturating_sub(then.involuntary),
            },
        }
    }

    fn plus(self, other: CpuSample) -> CpuSample {
        let (a, b) = (self.front_switches, other.front_switches);
        CpuSample {
            client: self.client + other.client,
            front: self.front + other.front,
            upstream: self.upstream + other.upstream,
            front_switches: procs::Switches {
                voluntary: a.voluntary + b.voluntary,
                involuntary: a.involuntary + b.involuntary,
            },
        }
    }

    fn per_call(self, calls: u64, has_upstream: bool) -> CpuPerCall {
        let per = |seconds: f64| seconds * 1e6 / calls.max(1) as f64;
        CpuPerCall {
            client: per(self.client),
            front: per(self.front),
            upstream: has_upstream.then(|| per(self.upstream)),
        }
    }
}

impl Row {
    fn cells(&self) -> Vec<String> {
        let f = &self.figures;
        let cpu = |pick: fn(&CpuPerCall) -> Option<f64>| {
            self.cpu.as_ref().and_then(pick).map_or("–".into(), us)
        };
        vec![
            self.scenario.clone(),
            self.path.clone(),
            self.era.to_string(),
            us(f.p50_us),
            us(f.p90_us),
            us(f.p99_us),
            us(f.max_us),
            format!("{:.0}", f.calls_per_s),
            f.errors.to_string(),
            self.rss_kib.map_or("–".into(), mib),
            self.processes.map_or("–".into(), |p| p.to_string()),
            cpu(|c| Some(c.client)),
            cpu(|c| Some(c.front)),
            cpu(|c| c.upstream),
            format!("{:.1}", f.stall_max_us / 1000.0),
        ]
    }
}

const ROW_HEADER: [&str; 15] = [
    "scenario",
    "path",
    "era",
    "p50 µs",
    "p90 µs",
    "p99 µs",
    "max µs",
    "calls/s",
    "errors",
    "RSS MiB",
    "processes",
    "client CPU µs/call",
    "front CPU µs/call",
    "upstream CPU µs/call",
    "machine stall ms",
];

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// Samples a process's RSS in the background; the maximum is the figure we report.
struct RssSampler {
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max = Arc::new(AtomicU64::new(procs::rss_kib(pid).unwrap_or(0)));
        let shared = max.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(rss) = procs::rss_kib(pid) {
                    shared.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssSampler { max, task }
    }

    fn stop(self, pid: u32) -> u64 {
        self.task.abort();
        let last = procs::rss_kib(pid).unwrap_or(0);
        self.max.load(Ordering::Relaxed).max(last)
    }
}

/// What one run is: against which endpoint, which calls, how hard.
struct RunSpec<'a> {
    scenario: String,
    path: &'a str,
    url: &'a str,
    /// The process whose RSS, CPU and descendants we report.
    front: u32,
    /// An upstream the front process reaches over HTTP (not one of its descendants).
    remote_upstream: Option<u32>,
    /// What perf does to the front process during the measured phase.
    perf: PerfMode<'a>,
    era: Era,
    workload: Workload,
    concurrency: usize,
    calls: Option<u64>,
    duration: Option<Duration>,
    warmup: Duration,
}

/// perf attached to the front process during a measured phase, writing into a folder.
#[derive(Clone, Copy)]
enum PerfMode<'a> {
    Off,
    CountSyscalls(&'a Path),
    RecordStacks(&'a Path),
}

impl<'a> PerfMode<'a> {
    /// Counting when the scenarios found perf able to.
    fn counting(args: &'a ScenarioArgs) -> PerfMode<'a> {
        args.syscalls_dir
            .as_deref()
            .map_or(PerfMode::Off, PerfMode::CountSyscalls)
    }
}

/// `switchboard → stdio` → `switchboard-stdio`: for file names.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// What the runs of one spec added up to; several interleaved rounds merge into one row.
#[derive(Default)]
struct Measurement {
    tally: Option<Tally>,
    cpu: Option<CpuSample>,
    has_upstream: bool,
    rss_kib: u64,
    processes: usize,
    /// Summed over the rounds; `None` once a round could not count.
    syscalls: Option<SyscallCounts>,
}

impl Measurement {
    fn into_row(self, spec: &RunSpec<'_>) -> Row {
        let figures = self
            .tally
            .as_ref()
            .map(Figures::from_tally)
            .expect("a measurement has at least one run");
        let cpu = self.cpu.filter(|_| figures.calls > 0);
        let front = cpu.map(|cpu| {
            FrontPerCall::new(cpu.front_switches, self.syscalls.as_ref(), figures.calls)
        });
        let cpu = cpu.map(|cpu| cpu.per_call(figures.calls, self.has_upstream));
        let row = Row {
            scenario: spec.scenario.clone(),
            path: spec.path.to_owned(),
            era: spec.era,
            concurrency: spec.concurrency,
            figures,
            rss_kib: Some(self.rss_kib),
            processes: Some(self.processes),
            cpu,
            front,
        };
        println!("{}", row_line(&row));
        row
    }
}

/// One run of `spec`, added to `into`.
async fn sample(spec: &RunSpec<'_>, into: &mut Measurement) -> anyhow::Result<()> {
    let caller = Arc::new(Caller::new(
        Target::parse(spec.url)?,
        spec.era,
        spec.workload.clone(),
    ));
    let pool = Pool::open(&caller, spec.concurrency).await.map_err(|e| {
        anyhow::anyhow!(
            "{} via {}: cannot open sessions: {e}",
            spec.scenario,
            spec.path
        )
    })?;
    let plan = Plan {
        concurrency: spec.concurrency,
        calls: spec.calls,
        duration: spec.duration,
        rate: None,
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        max_duration: Duration::from_secs(120),
    };
    if !spec.warmup.is_zero() {
        let warmup = Plan {
            calls: None,
            duration: Some(spec.warmup),
            ..plan.clone()
        };
        driver::run(caller.clone(), pool.clone(), &warmup).await;
    }
    let mut upstream = procs::descendants(spec.front);
    upstream.extend(spec.remote_upstream);
    let perf = attach_perf(spec).await;
    let cpu_before = CpuSample::take(spec.front, &upstream);
    let sampler = RssSampler::start(spec.front);
    let tally = driver::run(caller.clone(), pool.clone(), &plan).await;
    let rss = sampler.stop(spec.front);
    let cpu_after = CpuSample::take(spec.front, &upstream);
    let counted = finish_perf(spec, perf).await;
    into.processes = procs::descendants(spec.front).len();
    pool.close(&caller).await;
    into.rss_kib = into.rss_kib.max(rss);
    into.has_upstream |= !upstream.is_empty();
    let spent = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some(after.since(before)),
        _ => None,
    };
    into.syscalls = match (into.tally.is_none(), &into.syscalls, counted) {
        (true, _, counted) => counted,
        (false, Some(total), Some(counted)) => Some(total.plus(&counted)),
        _ => None,
    };
    into.cpu = match (into.tally.is_none(), into.cpu, spent) {
        (true, _, spent) => spent,
        (false, Some(total), Some(spent)) => Some(total.plus(spent)),
        _ => None,
    };
    match &mut into.tally {
        None => into.tally = Some(tally),
        Some(total) => total.absorb(&tally),
    }
    Ok(())
}

/// perf attached to the front process with its events on, as `spec` asks; a failure is
/// printed and the phase goes on without.
async fn attach_perf(spec: &RunSpec<'_>) -> Option<Attached> {
    let attached = match spec.perf {
        PerfMode::Off => return None,
        PerfMode::CountSyscalls(dir) => {
            let name = format!("{}-{}", slug(spec.path), slug(&spec.scenario));
            Attached::count_syscalls(spec.front, dir, &name).await
        }
        PerfMode::RecordStacks(dir) => {
            let name = format!("profile-{}", slug(spec.path));
            Attached::record_stacks(spec.front, dir, &name).await
        }
    };
    let enabled = match attached {
        Ok(mut perf) => perf.enable().await.map(|()| perf),
        Err(error) => Err(error),
    };
    enabled
        .inspect_err(|error| println!("perf on {}: {error:#}", spec.path))
        .ok()
}

/// Stops perf; the syscall counts when it was counting them.
async fn finish_perf(spec: &RunSpec<'_>, perf: Option<Attached>) -> Option<SyscallCounts> {
    let output = match perf?.finish().await {
        Ok(output) => output,
        Err(error) => {
            println!("perf on {}: {error:#}", spec.path);
            return None;
        }
    };
    match spec.perf {
        PerfMode::CountSyscalls(_) => std::fs::read_to_string(&output)
            .map_err(anyhow::Error::from)
            .and_then(|text| SyscallCounts::parse(&text))
            .inspect_err(|error| println!("perf on {}: {error:#}", spec.path))
            .ok(),
        _ => {
            println!("stacks of {}: {}", spec.path, output.display());
            None
        }
    }
}

/// One spec, one run: a row.
async fn measure(spec: RunSpec<'_>) -> anyhow::Result<Row> {
    let mut measurement = Measurement::default();
    sample(&spec, &mut measurement).await?;
    Ok(measurement.into_row(&spec))
}

/// The same scenario on every path, in `rounds` interleaved rounds (direct, stdio, http,
/// direct, …) each with 1/rounds of the calls or time: whatever else the machine does
/// during the scenario then falls on every path alike.
async fn interleaved<'a>(
    paths: &'a [BenchPath<'a>],
    rounds: usize,
    spec: impl Fn(&'a BenchPath<'a>) -> anyhow::Result<RunSpec<'a>>,
) -> anyhow::Result<Vec<Row>> {
    let rounds = rounds.max(1);
    let specs = paths
        .iter()
        .map(|path| {
            let mut spec = spec(path)?;
            spec.calls = spec.calls.map(|calls| calls.div_ceil(rounds as u64));
            spec.duration = spec.duration.map(|duration| duration / rounds as u32);
            spec.warmup /= rounds as u32;
            Ok(spec)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut measurements: Vec<Measurement> = specs.iter().map(|_| Measurement::default()).collect();
    for _ in 0..rounds {
        for (spec, measurement) in specs.iter().zip(&mut measurements) {
            sample(spec, measurement).await?;
        }
    }
    Ok(specs
        .iter()
        .zip(measurements)
        .map(|(spec, measurement)| measurement.into_row(spec))
        .collect())
}

fn row_line(row: &Row) -> String {
    let f = &row.figures;
    let mut line = format!(
        "{:<22} {:<24} {:<7} p50 {:>7} p90 {:>7} p99 {:>7} max {:>8} µs {:>8.0} calls/s  errors {}",
        row.scenario,
        row.path,
        row.era,
        us(f.p50_us),
        us(f.p90_us),
        us(f.p99_us),
        us(f.max_us),
        f.calls_per_s,
        f.errors
    );
    for (kind, count) in &f.error_kinds {
        line.push_str(&format!(
            "\n    {kind}: {} (first: {})",
            count.count, count.sample
        ));
    }
    line
}

fn echo(era: Era, tool: &str) -> anyhow::Result<Workload> {
    Ok(Workload::ToolCall(vec![Template::tool_call(
        era,
        tool,
        &json!({ "text": "hello" }),
    )?]))
}

/// The byte relay in front of the direct path's fixture: what any extra process costs.
const RELAY_PATH: &str = "tcp relay → http (floor)";

/// A path to benchmark: its endpoint, the echo tool's name there, the front process.
struct BenchPath<'a> {
    name: &'static str,
    process: &'a Spawned,
    tool: &'static str,
    /// The fixture, when the front process reaches it over HTTP.
    remote_upstream: Option<u32>,
}

impl<'a> BenchPath<'a> {
    /// Echo calls on this path after the scenarios' warm-up; the caller sets how many
    /// (`calls` or `duration`).
    fn echo_run(
        &'a self,
        scenario: String,
        era: Era,
        perf: PerfMode<'a>,
        concurrency: usize,
        args: &ScenarioArgs,
    ) -> anyhow::Result<RunSpec<'a>> {
        Ok(RunSpec {
            scenario,
            path: self.name,
            url: &self.process.url,
            front: self.process.pid,
            remote_upstream: self.remote_upstream,
            perf,
            era,
            workload: echo(era, self.tool)?,
            concurrency,
            calls: None,
            duration: None,
            warmup: args.warmup(),
        })
    }
}

/// Everything the report needs besides the rows.
#[derive(Default, Serialize)]
struct Extras {
    fanin: Option<FanIn>,
    hotload: Option<HotLoadFigures>,
    catalogs: Vec<CatalogFigures>,
    peers: Vec<String>,
    notes: Vec<String>,
    /// /proc/loadavg when the scenarios started and ended (other work on the machine).
    load_start: String,
    load_end: String,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[derive(Serialize)]
struct FanIn {
    sessions: usize,
    servers: usize,
    sharing: FanInSharing,
    processes_idle: usize,
    processes_loaded: usize,
    rss_idle_kib: u64,
    rss_loaded_kib: u64,
    rss_peak_kib: u64,
    busy_after_listening_s: f64,
}

#[derive(Serialize)]
struct CatalogFigures {
    label: String,
    servers: usize,
    extra_tools: usize,
    tools: Option<usize>,
    page_size: Option<usize>,
    startup_s: f64,
    busy_after_listening_s: f64,
    processes: usize,
    rss_idle_kib: u64,
    rss_peak_kib: u64,
    upstream_rss_kib: u64,
}

pub async fn main(mut args: ScenarioArgs) -> anyhow::Result<bool> {
    for binary in [&args.gateway, &args.fixture] {
        anyhow::ensure!(binary.is_file(), "{} does not exist", binary.display());
    }
    let logs = args.out.with_extension("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut rows = Vec::new();
    let mut extras = Extras {
        load_start: load_average(),
        ..Extras::default()
    };
    if !args.no_syscalls {
        match perf::syscalls_countable().await {
            Ok(()) => args.syscalls_dir = Some(logs.clone()),
            Err(error) => extras
                .notes
                .push(format!("syscalls not counted: {error:#}")),
        }
    }
    if args.wants("latency") || args.wants("throughput") || args.wants("peers") {
        paths_scenarios(&args, &logs, &mut rows, &mut extras).await?;
    }
    if args.wants("fanin") {
        fan_in(&args, &logs, &mut rows, &mut extras).await?;
    }
    if args.wants("catalog") {
        for &shape in &args.catalog {
            catalog(&args, shape, &logs, &mut rows, &mut extras).await?;
        }
    }
    if args.wants("hotload") {
        let figures =
            hotload::run(&args.gateway, &args.fixture, &logs, args.hotload_rounds).await?;
        extras.hotload = Some(figures);
    }
    extras.load_end = load_average();
    let markdown = render(&args, &rows, &extras);
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &markdown)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let json_path = args.out.with_extension("json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json!({ "rows": rows, "extras": extras }))?,
    )?;
    println!("\n{markdown}");
    println!(
        "report: {} (rows as JSON: {}, process logs: {})",
        args.out.display(),
        json_path.display(),
        logs.display()
    );
    Ok(rows
        .iter()
        .all(|row| row.figures.errors == 0 && row.figures.calls > 0))
}

/// Latency and throughput on the direct path and through switchboard, then peers.
async fn paths_scenarios(
    args: &ScenarioArgs,
    logs: &Path,
    rows: &mut Vec<Row>,
    extras: &mut Extras,
) -> anyhow::Result<()> {
    let fixture = spawn::fixture_http(&args.fixture, &[], logs, "fixture-http").await?;
    let stdio_config = spawn::gateway_config(&[(
        "fx".into(),
        Upstream::Stdio {
            command: args.fixture.clone(),
            args: vec!["stdio".into()],
        },
    )]);
    let http_config = spawn::gateway_config(&[(
        "fx".into(),
        Upstream::Http {
            url: fixture.url.clone(),
        },
    )]);
    let ready = Duration::from_secs(60);
    let gateway_stdio =
        spawn::gateway(&args.gateway, &stdio_config, logs, "gateway-stdio", ready).await?;
    let gateway_http =
        spawn::gateway(&args.gateway, &http_config, logs, "gateway-http", ready).await?;
    let this = std::env::current_exe().context("cannot find this program for the relay")?;
    let relay_args = ["relay".to_owned(), "--to".to_owned(), fixture.url.clone()];
    let relay = spawn::announced("relay", &this, &relay_args, logs, ready).await?;
    for process in [&fixture, &gateway_stdio, &gateway_http, &relay] {
        process.settle(Duration::from_secs(30)).await;
    }
    let paths = [
        BenchPath {
            name: "direct",
            process: &fixture,
            tool: "echo",
            remote_upstream: None,
        },
        BenchPath {
            name: RELAY_PATH,
            process: &relay,
            tool: "echo",
            remote_upstream: Some(fixture.pid),
        },
        BenchPath {
            name: "switchboard → stdio",
            process: &gateway_stdio,
            tool: "fx__echo",
            remote_upstream: None,
        },
        BenchPath {
            name: "switchboard → http",
            process: &gateway_http,
            tool: "fx__echo",
            remote_upstream: Some(fixture.pid),
        },
    ];
    for &era in &args.eras {
        if args.wants("latency") {
            let measured = interleaved(&paths, args.rounds, |path| {
                Ok(RunSpec {
                    calls: Some(args.latency_calls),
                    ..path.echo_run("latency c1".into(), era, PerfMode::counting(args), 1, args)?
                })
            })
            .await?;
            rows.extend(measured);
        }
        if args.wants("throughput") {
            for &concurrency in &args.throughput {
                let measured = interleaved(&paths, args.rounds, |path| {
                    Ok(RunSpec {
                        duration: Some(args.duration()),
                        ..path.echo_run(
                            format!("throughput c{concurrency}"),
                            era,
                            PerfMode::counting(args),
                            concurrency,
                            args,
                        )?
                    })
                })
                .await?;
                rows.extend(measured);
            }
        }
    }
    if args.profile {
        profile(args, logs, &paths, extras).await?;
    }
    let grace = Duration::from_secs(10);
    gateway_stdio.stop(grace).await;
    gateway_http.stop(grace).await;
    relay.stop(grace).await;
    fixture.stop(grace).await;
    if args.wants("peers") {
        extras.notes.extend(args.peer_note.iter().cloned());
        for peer in &args.peer {
            match run_peer(args, logs, peer, rows).await {
                Ok(name) => extras.peers.push(name),
                Err(error) => {
                    println!("peer {peer}: skipped: {error:#}");
                    extras
                        .notes
                        .push(format!("peer `{peer}` skipped: {error:#}"));
                }
            }
        }
    }
    Ok(())
}

/// One more run per switchboard path at the first throughput concurrency with the
/// gateway's stacks recorded; not measured (sampling slows what it samples).
async fn profile(
    args: &ScenarioArgs,
    logs: &Path,
    paths: &[BenchPath<'_>],
    extras: &mut Extras,
) -> anyhow::Result<()> {
    let era = args.eras.first().copied().unwrap_or(Era::Modern);
    let concurrency = args.throughput.first().copied().unwrap_or(16);
    for path in paths
        .iter()
        .filter(|path| path.name.starts_with("switchboard"))
    {
        let spec = RunSpec {
            duration: Some(args.duration()),
            ..path.echo_run(
                format!("profile c{concurrency}"),
                era,
                PerfMode::RecordStacks(logs),
                concurrency,
                args,
            )?
        };
        sample(&spec, &mut Measurement::default()).await?;
        let data = logs.join(format!("profile-{}.perf.data", slug(path.name)));
        extras.notes.push(if data.is_file() {
            format!(
                "profile: the gateway's stacks on `{}` at c{concurrency} ({era}, {:.0} s, \
                 not measured) are in `{}`; scripts/bench --profile draws the flame graph \
                 (`.svg` beside it)",
                path.name,
                args.duration().as_secs_f64(),
                data.display()
            )
        } else {
            format!(
                "profile: no stacks recorded on `{}` (see the output)",
                path.name
            )
        });
    }
    Ok(())
}

/// The legacy latency and c16 throughput runs through one peer gateway.
async fn run_peer(
    args: &ScenarioArgs,
    logs: &Path,
    peer: &str,
    rows: &mut Vec<Row>,
) -> anyhow::Result<String> {
    let (name, command) = peer
        .split_once('=')
        .context("--peer must look like NAME=COMMAND ARGS...")?;
    let port = spawn::free_port()?;
    let fixture = args.fixture.display().to_string();
    let words: Vec<String> = split_words(command)
        .into_iter()
        .map(|word| {
            word.replace("{port}", &port.to_string())
                .replace("{fixture}", &fixture)
        })
        .collect();
    let (program, rest) = words.split_first().context("empty peer command")?;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let process = spawn::on_port(
        name,
        Path::new(program),
        rest,
        url.clone(),
        port,
        logs,
        Duration::from_secs(60),
    )
    .await?;
    let path = format!("{name} → stdio");
    let era = Era::Legacy;
    let mut runs = vec![("latency c1".to_owned(), 1, Some(args.latency_calls), None)];
    if let Some(&first) = args.throughput.first() {
        runs.push((
            format!("throughput c{first}"),
            first,
            None,
            Some(args.duration()),
        ));
    }
    for (scenario, concurrency, calls, duration) in runs {
        let row = measure(RunSpec {
            scenario,
            path: &path,
            url: &process.url,
            front: process.pid,
            remote_upstream: None,
            perf: PerfMode::counting(args),
            era,
            workload: echo(era, "echo")?,
            concurrency,
            calls,
            duration,
            warmup: args.warmup(),
        })
        .await?;
        rows.push(row);
    }
    process.stop(Duration::from_secs(5)).await;
    Ok(path)
}

/// Splits a command line on whitespace; single quotes group words (`--stdio 'a b'`).
fn split_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Many legacy sessions onto a few shared stdio servers.
/// The servers' `sharing` policy in the fan-in scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FanInSharing {
    Shared,
    PerSession,
}

impl FanInSharing {
    /// The server keys that select the policy (room for one instance per session).
    fn server_keys(self, sessions: usize) -> String {
        match self {
            FanInSharing::Shared => String::new(),
            FanInSharing::PerSession => {
                format!("sharing = \"per_session\"\npool = {{ size = {sessions} }}\n")
            }
        }
    }

    /// Upstream processes the gateway should run for `sessions` × `servers`.
    fn expected_processes(self, sessions: usize, servers: usize) -> usize {
        match self {
            FanInSharing::Shared => servers,
            FanInSharing::PerSession => sessions * servers,
        }
    }

    fn label(self) -> &'static str {
        match self {
            FanInSharing::Shared => "shared",
            FanInSharing::PerSession => "per_session",
        }
    }
}

async fn fan_in(
    args: &ScenarioArgs,
    logs: &Path,
    rows: &mut Vec<Row>,
    extras: &mut Extras,
) -> anyhow::Result<()> {
    let servers: Vec<(String, Upstream)> = (0..args.fanin_servers)
        .map(|index| {
            (
                format!("fx{index}"),
                Upstream::Stdio {
                    command: args.fixture.clone(),
                    args: vec!["stdio".into()],
                },
            )
        })
        .collect();
    let mut config = spawn::gateway_config(&servers);
    for (name, _) in &servers {
        let table = format!("[servers.{name}]\n");
        let keys = args.fanin_sharing.server_keys(args.fanin_sessions);
        config = config.replace(&table, &format!("{table}{keys}"));
    }
    let gateway = spawn::gateway(
        &args.gateway,
        &config,
        logs,
        "gateway-fanin",
        Duration::from_secs(120),
    )
    .await?;
    // Measure the steady state: wait out whatever the gateway does after it listens.
    let busy_after_listening = gateway.settle(Duration::from_secs(120)).await;
    let processes_idle = procs::descendants(gateway.pid).len();
    let rss_idle_kib = procs::rss_kib(gateway.pid).unwrap_or(0);
    let era = Era::Legacy;
    let tools = (0..args.fanin_servers)
        .map(|index| {
            Template::tool_call(era, &format!("fx{index}__echo"), &json!({"text": "hello"}))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let row = measure(RunSpec {
        scenario: format!("fan-in {}×{}", args.fanin_sessions, args.fanin_servers),
        path: "switchboard → stdio",
        url: &gateway.url,
        front: gateway.pid,
        remote_upstream: None,
        perf: PerfMode::counting(args),
        era,
        workload: Workload::ToolCall(tools),
        concurrency: args.fanin_sessions,
        calls: None,
        duration: Some(args.duration()),
        warmup: args.warmup(),
    })
    .await?;
    extras.fanin = Some(FanIn {
        sessions: args.fanin_sessions,
        servers: args.fanin_servers,
        sharing: args.fanin_sharing,
        processes_idle,
        processes_loaded: row.processes.unwrap_or(0),
        rss_idle_kib,
        rss_loaded_kib: row.rss_kib.unwrap_or(0),
        rss_peak_kib: procs::peak_rss_kib(gateway.pid).unwrap_or(0),
        busy_after_listening_s: busy_after_listening.as_secs_f64(),
    });
    rows.push(row);
    gateway.stop(Duration::from_secs(15)).await;
    Ok(())
}

/// One catalog-scale configuration: `SERVERSxEXTRA`, that many stdio fixtures each started
/// with `--extra-tools EXTRA` (on top of the fixture's own tools).
#[derive(Clone, Copy, Debug)]
pub struct CatalogShape {
    servers: usize,
    extra_tools: usize,
}

impl std::str::FromStr for CatalogShape {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (servers, extra) = text
            .split_once('x')
            .ok_or_else(|| format!("expected SERVERSxEXTRA_TOOLS, got {text:?}"))?;
        let servers: usize = servers
            .trim()
            .parse()
            .map_err(|e| format!("{servers:?}: {e}"))?;
        let extra_tools = extra
            .trim()
            .parse()
            .map_err(|e| format!("{extra:?}: {e}"))?;
        if servers == 0 {
            return Err("at least one server".into());
        }
        Ok(CatalogShape {
            servers,
            extra_tools,
        })
    }
}

/// One gateway in front of many stdio servers: start-up, memory and tools/list.
async fn catalog(
    args: &ScenarioArgs,
    shape: CatalogShape,
    logs: &Path,
    rows: &mut Vec<Row>,
    extras: &mut Extras,
) -> anyhow::Result<()> {
    let mut fixture_args = vec!["stdio".to_owned()];
    if shape.extra_tools > 0 {
        fixture_args.extend(["--extra-tools".into(), shape.extra_tools.to_string()]);
    }
    let servers: Vec<(String, Upstream)> = (0..shape.servers)
        .map(|index| {
            (
                format!("s{index:03}"),
                Upstream::Stdio {
                    command: args.fixture.clone(),
                    args: fixture_args.clone(),
                },
            )
        })
        .collect();
    let config = spawn::gateway_config(&servers);
    println!(
        "catalog: starting a gateway with {} stdio servers (--extra-tools {})…",
        shape.servers, shape.extra_tools
    );
    let gateway = spawn::gateway(
        &args.gateway,
        &config,
        logs,
        &format!("gateway-catalog-{}x{}", shape.servers, shape.extra_tools),
        Duration::from_secs_f64(args.catalog_start_timeout),
    )
    .await?;
    // The gateway listens before it is done with start-up work (catalog rebuilds as each
    // server's "connected" signal is handled); measure the steady state, and report the wait.
    println!("catalog: waiting for the gateway to go idle…");
    let busy_after_listening = gateway
        .settle(Duration::from_secs_f64(args.catalog_start_timeout))
        .await;
    let children = procs::descendants(gateway.pid);
    let rss_idle_kib = procs::rss_kib(gateway.pid).unwrap_or(0);
    let upstream_rss_kib = procs::total_rss_kib(&children);
    let era = Era::Modern;
    let label = format!("{}×{}", shape.servers, shape.extra_tools);
    let mut tools = None;
    let mut first_page = None;
    for all_pages in [true, false] {
        let scenario = if all_pages {
            format!("tools/list all pages [{label}]")
        } else {
            format!("tools/list first page [{label}]")
        };
        let row = measure(RunSpec {
            scenario,
            path: "switchboard → stdio",
            url: &gateway.url,
            front: gateway.pid,
            remote_upstream: None,
            perf: PerfMode::counting(args),
            era,
            workload: Workload::ToolsList {
                first: Template::tools_list(era)?,
                all_pages,
            },
            concurrency: 1,
            calls: Some(args.catalog_calls),
            duration: None,
            warmup: Duration::from_millis(500),
        })
        .await?;
        if all_pages {
            tools = row.figures.tools;
        } else {
            first_page = row.figures.tools;
        }
        rows.push(row);
    }
    let row = measure(RunSpec {
        scenario: format!("latency c1 [{label}]"),
        path: "switchboard → stdio",
        url: &gateway.url,
        front: gateway.pid,
        remote_upstream: None,
        perf: PerfMode::counting(args),
        era,
        workload: echo(era, "s000__echo")?,
        concurrency: 1,
        calls: Some(args.latency_calls.min(2000)),
        duration: None,
        warmup: args.warmup(),
    })
    .await?;
    rows.push(row);
    extras.catalogs.push(CatalogFigures {
        label,
        servers: shape.servers,
        extra_tools: shape.extra_tools,
        tools,
        page_size: first_page,
        startup_s: gateway.ready_after.as_secs_f64(),
        busy_after_listening_s: busy_after_listening.as_secs_f64(),
        processes: children.len(),
        rss_idle_kib,
        rss_peak_kib: procs::peak_rss_kib(gateway.pid).unwrap_or(0),
        upstream_rss_kib,
    });
    gateway.stop(Duration::from_secs(30)).await;
    Ok(())
}

fn find<'a>(rows: &'a [Row], scenario: &str, path: &str, era: Era) -> Option<&'a Row> {
    rows.iter()
        .find(|row| row.scenario == scenario && row.path == path && row.era == era)
}

fn verdict(pass: bool) -> &'static str {
    if pass { "✅ met" } else { "❌ missed" }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}")
}

/// Today's UTC date and time from the system clock.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

fn render(args: &ScenarioArgs, rows: &[Row], extras: &Extras) -> String {
    let mut out = String::new();
    out.push_str("# switchboard benchmark report\n\n");
    out.push_str(&format!(
        "Generated by `switchboard-load scenarios` on {}.  \nMachine: {}; load average {} at the start, {} at the end.  \nGateway: `{}`; fixture: `{}`.\n\n",
        now_utc(),
        machine(),
        extras.load_start,
        extras.load_end,
        args.gateway.display(),
        args.fixture.display()
    ));
    out.push_str(
        "The load driver, the gateway and the fixture share these cores, so every figure \
         includes the others' CPU use; compare paths measured here with each other, not with \
         other machines. RSS and processes are of the process at the front of the path \
         (the fixture on the direct path, the gateway, or the peer): RSS is the maximum \
         sampled during the measured phase, processes are its descendants after the run. \
         The CPU columns are user+system time per successful call of the load driver \
         (client), the front process, and the upstream fixture behind it; on 2 cores their \
         sum bounds throughput (calls/s ≤ 2,000,000 / sum). \
         *Machine stall* is the worst lateness of a thread sleeping 1 ms at a time during the \
         run: a max (or p99) near it is the machine pausing everyone, not the path.\n\n",
    );
    out.push_str(&format!(
        "Latency and throughput rows of the direct, relay and switchboard paths are {} \
         interleaved rounds per path (direct, relay, stdio, http, direct, …), each with its share of the calls \
         or time, merged: background work on the machine falls on every path alike.\n\n",
        args.rounds.max(1)
    ));
    out.push_str("## Results\n\n");
    let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    out.push_str(&markdown_table(&ROW_HEADER, 3, &cells));
    let errors: Vec<&Row> = rows.iter().filter(|row| row.figures.errors > 0).collect();
    if !errors.is_empty() {
        out.push_str("\nErrors:\n\n");
        for row in errors {
            for (kind, count) in &row.figures.error_kinds {
                out.push_str(&format!(
                    "- {} / {} / {}: {} × `{kind}`, first: {}\n",
                    row.scenario, row.path, row.era, count.count, count.sample
                ));
            }
        }
    }
    out.push_str(&front_section(rows));
    let mut targets: Vec<Vec<String>> = Vec::new();

    let compared_paths = [RELAY_PATH, "switchboard → stdio", "switchboard → http"];
    let mut added = Vec::new();
    for &era in &args.eras {
        let Some(direct) = find(rows, "latency c1", "direct", era) else {
            continue;
        };
        for path in compared_paths {
            let Some(row) = find(rows, "latency c1", path, era) else {
                continue;
            };
            let added_p50 = row.figures.p50_us - direct.figures.p50_us;
            let added_p99 = row.figures.p99_us - direct.figures.p99_us;
            added.push(vec![
                era.to_string(),
                path.to_owned(),
                us(direct.figures.p50_us),
                us(row.figures.p50_us),
                format!("**{}**", us(added_p50)),
                us(direct.figures.p99_us),
                us(row.figures.p99_us),
                format!("**{}**", us(added_p99)),
            ]);
            if path == RELAY_PATH {
                continue; // the floor, not a target
            }
            targets.push(vec![
                format!("added latency p50 ≤ 50 µs ({era}, {path})"),
                format!("{} µs", us(added_p50)),
                verdict(added_p50 <= 50.0).into(),
            ]);
            targets.push(vec![
                format!("added latency p99 ≤ 250 µs ({era}, {path})"),
                format!("{} µs", us(added_p99)),
                verdict(added_p99 <= 250.0).into(),
            ]);
        }
    }
    if !added.is_empty() {
        out.push_str("\n## Added latency at concurrency 1\n\nAdded = through the path minus direct, same era, same client. The relay row is the floor: a process that copies bytes without reading them costs this much on this machine (two more wake-ups and socket hops per call); a gateway cannot add less.\n\n");
        out.push_str(&markdown_table(
            &[
                "era",
                "path",
                "direct p50 µs",
                "path p50 µs",
                "added p50 µs",
                "direct p99 µs",
                "path p99 µs",
                "added p99 µs",
            ],
            2,
            &added,
        ));
    }

    let mut throughput = Vec::new();
    for &era in &args.eras {
        for &concurrency in &args.throughput {
            let scenario = format!("throughput c{concurrency}");
            let Some(direct) = find(rows, &scenario, "direct", era) else {
                continue;
            };
            for path in compared_paths {
                let Some(row) = find(rows, &scenario, path, era) else {
                    continue;
                };
                let ratio = row.figures.calls_per_s / direct.figures.calls_per_s.max(1e-9);
                throughput.push(vec![
                    era.to_string(),
                    format!("c{concurrency}"),
                    path.to_owned(),
                    format!("{:.0}", row.figures.calls_per_s),
                    format!("{:.0}", direct.figures.calls_per_s),
                    format!("**{:.0} %**", ratio * 100.0),
                ]);
                if concurrency == 16 && path != RELAY_PATH {
                    targets.push(vec![
                        format!("throughput c16 ≥ 80 % of direct ({era}, {path})"),
                        format!("{:.0} %", ratio * 100.0),
                        verdict(ratio >= 0.8).into(),
                    ]);
                }
            }
        }
    }
    if !throughput.is_empty() {
        out.push_str("\n## Throughput relative to direct\n\n");
        out.push_str(&markdown_table(
            &[
                "era",
                "concurrency",
                "path",
                "calls/s",
                "direct calls/s",
                "ratio",
            ],
            3,
            &throughput,
        ));
    }

    if let Some(fanin) = &extras.fanin {
        let expected = fanin
            .sharing
            .expected_processes(fanin.sessions, fanin.servers);
        out.push_str(&format!(
            "\n## Fan-in: {} legacy sessions × {} `{}` stdio servers\n\n\
             - upstream processes (descendants of the gateway): {} idle, {} after the load (expected {} under load)\n\
             - gateway RSS: {} MiB idle, {} MiB max under load, {} MiB peak (VmHWM)\n\
             - the gateway was busy for {:.1} s after it started listening (waited out before measuring)\n\
             - each session calls `fxN__echo` round-robin over the servers; latency is in the results table\n",
            fanin.sessions,
            fanin.servers,
            fanin.sharing.label(),
            fanin.processes_idle,
            fanin.processes_loaded,
            expected,
            mib(fanin.rss_idle_kib),
            mib(fanin.rss_loaded_kib),
            mib(fanin.rss_peak_kib),
            fanin.busy_after_listening_s,
        ));
        // The targets are the shared policy's; per_session is shown for comparison.
        if fanin.sharing == FanInSharing::Shared {
            targets.push(vec![
                format!(
                    "{} sessions × {} stdio servers = exactly {} upstream processes",
                    fanin.sessions, fanin.servers, fanin.servers
                ),
                format!("{} / {}", fanin.processes_idle, fanin.processes_loaded),
                verdict(
                    fanin.processes_idle == fanin.servers
                        && fanin.processes_loaded == fanin.servers,
                )
                .into(),
            ]);
            let rss_mb = fanin.rss_loaded_kib as f64 * 1024.0 / 1e6;
            targets.push(vec![
                "fan-in gateway RSS ≤ 50 MB (max under load)".into(),
                format!("{rss_mb:.1} MB"),
                verdict(rss_mb <= 50.0).into(),
            ]);
        }
    }

    if !extras.catalogs.is_empty() {
        out.push_str(
            "\n## Catalog scale\n\n\
             One gateway in front of many stdio fixtures. Each fixture lists its own tools plus \
             `--extra-tools N`, so a configuration is written SERVERS×N. \
             `tools/list` is paginated by the gateway; \"all pages\" is one client walking \
             every page, the figure a client needing the whole list sees.\n\n",
        );
        let mut table = Vec::new();
        for catalog in &extras.catalogs {
            let all = rows
                .iter()
                .find(|row| row.scenario == format!("tools/list all pages [{}]", catalog.label));
            let first = rows
                .iter()
                .find(|row| row.scenario == format!("tools/list first page [{}]", catalog.label));
            let ms = |row: Option<&Row>, pick: fn(&Figures) -> f64| {
                row.map_or("–".into(), |row| {
                    format!("{:.1}", pick(&row.figures) / 1000.0)
                })
            };
            table.push(vec![
                catalog.label.clone(),
                catalog.tools.map_or("?".into(), |t| t.to_string()),
                catalog.page_size.map_or("?".into(), |t| t.to_string()),
                format!("{:.1}", catalog.startup_s),
                format!("{:.1}", catalog.busy_after_listening_s),
                catalog.processes.to_string(),
                mib(catalog.upstream_rss_kib),
                mib(catalog.rss_idle_kib),
                mib(catalog.rss_peak_kib),
                ms(first, |f| f.p50_us),
                ms(all, |f| f.p50_us),
                ms(all, |f| f.p99_us),
            ]);
            if let (Some(all), Some(tools)) = (all, catalog.tools)
                && tools >= 10_000
            {
                targets.push(vec![
                    format!(
                        "tools/list of {tools} tools ≤ 10 ms (all pages, p50 / p99) [{}]",
                        catalog.label
                    ),
                    format!(
                        "{:.1} / {:.1} ms",
                        all.figures.p50_us / 1000.0,
                        all.figures.p99_us / 1000.0
                    ),
                    verdict(all.figures.p99_us <= 10_000.0).into(),
                ]);
            }
        }
        out.push_str(&markdown_table(
            &[
                "servers×extra",
                "tools",
                "page size",
                "listening after s",
                "then busy for s",
                "upstream processes",
                "upstream RSS MiB",
                "gateway RSS idle MiB",
                "gateway RSS peak MiB",
                "first page p50 ms",
                "all pages p50 ms",
                "all pages p99 ms",
            ],
            1,
            &table,
        ));
    }

    if let Some(hot) = &extras.hotload {
        out.push_str(&hotload_section(hot));
        let added_change = hot.write_to_list_changed_ms.0 - hot.upstream_startup_ms.0;
        let added_dormant = hot.dormant_first_call_ms.0 - hot.upstream_startup_ms.0;
        targets.push(vec![
            "config write → list_changed ≤ 50 ms + the new server's start-up".into(),
            format!("{added_change:.1} ms + start-up"),
            verdict(added_change <= 50.0).into(),
        ]);
        targets.push(vec![
            "dormant first call ≤ 10 ms + the server's start-up".into(),
            format!("{added_dormant:.1} ms + start-up"),
            verdict(added_dormant <= 10.0).into(),
        ]);
    }

    if args.wants("peers") {
        out.push_str("\n## Peers\n\n");
        let mut peer_rows = Vec::new();
        let throughput_scenario = args
            .throughput
            .first()
            .map(|c| format!("throughput c{c}"))
            .unwrap_or_default();
        for path in &extras.peers {
            for (scenario, pick) in [
                ("latency c1", Pick::P50),
                ("latency c1", Pick::P99),
                (throughput_scenario.as_str(), Pick::CallsPerSecond),
            ] {
                let (Some(row), Some(direct)) = (
                    find(rows, scenario, path, Era::Legacy),
                    find(rows, scenario, "direct", Era::Legacy),
                ) else {
                    continue;
                };
                let ours = find(rows, scenario, "switchboard → stdio", Era::Legacy);
                let value = |row: &Row| pick.value(&row.figures);
                peer_rows.push(vec![
                    format!("{scenario} {}", pick.label()),
                    path.clone(),
                    pick.format(value(row)),
                    times(value(row) / value(direct).max(1e-9)),
                    ours.map_or("–".into(), |ours| pick.format(value(ours))),
                    ours.map_or("–".into(), |ours| {
                        times(value(ours) / value(direct).max(1e-9))
                    }),
                    ours.map_or("–".into(), |ours| {
                        // How many times better switchboard is: lower latency, higher rate.
                        let better = match pick {
                            Pick::CallsPerSecond => value(ours) / value(row).max(1e-9),
                            Pick::P50 | Pick::P99 => value(row) / value(ours).max(1e-9),
                        };
                        format!("**{}**", times(better))
                    }),
                ]);
            }
        }
        if peer_rows.is_empty() {
            out.push_str("No peer gateway was measured.\n");
        } else {
            out.push_str("Legacy era (the peers do not speak 2026-07-28). Ratios are to the direct path.\n\n");
            out.push_str(&markdown_table(
                &[
                    "figure",
                    "peer path",
                    "peer",
                    "peer / direct",
                    "switchboard → stdio",
                    "switchboard / direct",
                    "switchboard better by",
                ],
                2,
                &peer_rows,
            ));
        }
    }
    if !extras.notes.is_empty() {
        out.push_str("\nNotes:\n\n");
        for note in &extras.notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    if !targets.is_empty() {
        out.push_str("\n## Targets\n\n");
        out.push_str(&markdown_table(
            &["target", "measured", "verdict"],
            3,
            &targets,
        ));
    }
    out
}

/// Per call, what the front process of each row did, beside the relay's in the same
/// scenario and era (the cost of any extra process).
fn front_section(rows: &[Row]) -> String {
    let mut table = Vec::new();
    for row in rows {
        let (Some(cpu), Some(front)) = (&row.cpu, &row.front) else {
            continue;
        };
        let relay = find(rows, &row.scenario, RELAY_PATH, row.era)
            .filter(|relay| relay.path != row.path)
            .and_then(|relay| Some((relay.cpu.as_ref()?, relay.front.as_ref()?)));
        let ratio = |ours: f64, floor: Option<f64>| {
            floor.map_or("–".into(), |floor| times(ours / floor.max(1e-9)))
        };
        let syscalls = front.syscalls;
        table.push(vec![
            row.scenario.clone(),
            row.path.clone(),
            row.era.to_string(),
            us(cpu.front),
            ratio(cpu.front, relay.map(|(cpu, _)| cpu.front)),
            format!("{:.2}", front.voluntary_switches),
            format!("{:.2}", front.involuntary_switches),
            syscalls.map_or("–".into(), |s| format!("{s:.2}")),
            syscalls.map_or("–".into(), |s| {
                ratio(s, relay.and_then(|(_, front)| front.syscalls))
            }),
            front.top_syscalls(4),
        ]);
    }
    if table.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n## Front process per call\n\n\
         The process at the front of the path (the fixture on the direct path, the relay, \
         the gateway, the peer), per successful call during the measured phase: CPU \
         (user + system), context switches from `/proc/PID/task/*/status` (voluntary: it \
         waited; involuntary: it was preempted; threads that exited meanwhile are not \
         counted), and syscalls counted by `perf stat` (total, and the most frequent of \
         the kinds counted one by one). × relay compares with the relay's row of the same \
         scenario and era.\n\n",
    );
    out.push_str(&markdown_table(
        &[
            "scenario",
            "path",
            "era",
            "CPU µs",
            "CPU × relay",
            "voluntary switches",
            "involuntary switches",
            "syscalls",
            "syscalls × relay",
            "top syscalls",
        ],
        3,
        &table,
    ));
    out
}

fn hotload_section(hot: &HotLoadFigures) -> String {
    let row = |what: &str, (p50, max): (f64, f64)| {
        vec![what.to_owned(), format!("{p50:.1}"), format!("{max:.1}")]
    };
    let rows = vec![
        row(
            "config write → `list_changed` at a listening client",
            hot.write_to_list_changed_ms,
        ),
        row(
            "dormant server: first `tools/call`",
            hot.dormant_first_call_ms,
        ),
        row("the same server, next call", hot.warm_call_ms),
        row(
            "the upstream's own start-up (spawn → `initialize` answered)",
            hot.upstream_startup_ms,
        ),
    ];
    let mut out = format!(
        "\n## Hot-load\n\n{} rounds. Each config write atomically replaces the watched file, \
         adding one stdio server (and dropping the previous round's); the client holds \
         `subscriptions/listen` open. The dormant server is `lazy` with `idle_timeout_ms = \
         {}`; each round waits until the gateway stopped it. Both include the new server's \
         start-up, measured alone in the last row.\n\n",
        hot.rounds,
        hotload::IDLE_TIMEOUT_MS
    );
    out.push_str(&markdown_table(&["what", "p50 ms", "max ms"], 1, &rows));
    out
}

/// A ratio with two significant digits: 0.013×, 0.26×, 5.1×, 24×.
fn times(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{ratio:.0}×")
    } else if ratio >= 1.0 {
        format!("{ratio:.1}×")
    } else if ratio >= 0.1 {
        format!("{ratio:.2}×")
    } else {
        format!("{ratio:.3}×")
    }
}

#[derive(Clone, Copy)]
enum Pick {
    P50,
    P99,
    CallsPerSecond,
}

impl Pick {
    fn value(self, figures: &Figures) -> f64 {
        match self {
            Pick::P50 => figures.p50_us,
            Pick::P99 => figures.p99_us,
            Pick::CallsPerSecond => figures.calls_per_s,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Pick::P50 => "p50 µs",
            Pick::P99 => "p99 µs",
            Pick::CallsPerSecond => "calls/s",
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Pick::CallsPerSecond => format!("{value:.0}"),
            _ => us(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_peer_commands() {
        assert_eq!(
            split_words("node sg.js --stdio '{fixture} stdio'  --port {port}"),
            [
                "node",
                "sg.js",
                "--stdio",
                "{fixture} stdio",
                "--port",
                "{port}"
            ]
        );
        assert_eq!(split_words("a '' b"), ["a", "", "b"]);
    }

    #[test]
    fn slugs_path_names() {
        assert_eq!(slug("switchboard → stdio"), "switchboard-stdio");
        assert_eq!(slug("tcp relay → http (floor)"), "tcp-relay-http-floor");
        assert_eq!(slug("latency c1"), "latency-c1");
    }

    #[test]
    fn formats_dates() {
        assert_eq!(now_utc().len(), "2026-11-23 23:10 UTC".len());
    }
}
