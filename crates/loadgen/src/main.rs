//! `switchboard-load`: an MCP-aware load driver for Streamable HTTP endpoints (legacy
//! sessions and modern stateless requests), the benchmark scenarios that compare the direct
//! path with switchboard, and the short smoke run CI uses.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;

use switchboard_loadgen::client::Target;
use switchboard_loadgen::driver::{self, Plan};
use switchboard_loadgen::mcp::{Era, Template};
use switchboard_loadgen::report::Figures;
use switchboard_loadgen::session::{Caller, Pool, Workload};
use switchboard_loadgen::{relay, scenarios, smoke};

#[derive(Parser)]
#[command(
    name = "switchboard-load",
    version,
    about = "MCP load driver and switchboard benchmarks",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Drive load at one MCP endpoint (the default when no subcommand is given).
    Run(RunArgs),
    /// Run the benchmark scenarios (direct vs. switchboard) and write a markdown report.
    Scenarios(scenarios::ScenarioArgs),
    /// A 2-second mini scenario through switchboard; exits non-zero on any error.
    Smoke(smoke::SmokeArgs),
    /// Relay TCP bytes to one loopback server, untouched (the benchmark's floor path).
    Relay(relay::RelayArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MethodArg {
    #[value(name = "tools/call")]
    ToolsCall,
    #[value(name = "tools/list")]
    ToolsList,
}

#[derive(Args, Clone, Debug)]
struct RunArgs {
    /// The MCP endpoint, e.g. http://127.0.0.1:8931/mcp (loopback only).
    #[arg(long, required = true)]
    url: Option<String>,
    /// legacy: initialize once per connection, then calls in that session; modern: stateless.
    #[arg(long, value_enum, default_value_t = Era::Modern)]
    era: Era,
    #[arg(long, value_enum, default_value_t = MethodArg::ToolsCall)]
    method: MethodArg,
    /// Tool to call; repeat to rotate calls over several tools.
    #[arg(long, default_value = "echo")]
    tool: Vec<String>,
    /// Tool arguments as JSON, or @FILE to read them from a file.
    #[arg(long, default_value = r#"{"text":"hello"}"#)]
    args: String,
    /// tools/list: one call walks every page (following nextCursor).
    #[arg(long)]
    all_pages: bool,
    /// Closed loop: concurrent workers. Open loop: calls in flight at most.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Connections (legacy: sessions); default one per worker.
    #[arg(long)]
    connections: Option<usize>,
    /// Stop after this many calls (closed loop unless --rate).
    #[arg(long)]
    calls: Option<u64>,
    /// Stop after this many seconds (default 10 when --calls is not given).
    #[arg(long)]
    duration: Option<f64>,
    /// Open loop: start this many calls per second on a fixed schedule.
    #[arg(long)]
    rate: Option<f64>,
    /// Unmeasured seconds of closed-loop calls before measuring.
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Seconds before one call counts as a timeout error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Hard bound on the measured phase, in seconds.
    #[arg(long, default_value_t = 300.0)]
    max_duration: f64,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// `NAME: VALUE` header sent with every request (e.g. `X-API-Key: …`); repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
}

fn seconds(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{what} must be ≥ 0 seconds"))
}

async fn run(args: RunArgs) -> anyhow::Result<bool> {
    let url = args.url.context("--url is required")?;
    let target = Target::parse(&url)?.with_headers(&args.headers)?;
    let workload = match args.method {
        MethodArg::ToolsCall => {
            let text = match args.args.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --args file {path}"))?,
                None => args.args.clone(),
            };
            let arguments: Value = serde_json::from_str(&text).context("--args is not JSON")?;
            anyhow::ensure!(arguments.is_object(), "--args must be a JSON object");
            let templates = args
                .tool
                .iter()
                .map(|tool| Template::tool_call(args.era, tool, &arguments))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Workload::ToolCall(templates)
        }
        MethodArg::ToolsList => Workload::ToolsList {
            first: Template::tools_list(args.era)?,
            all_pages: args.all_pages,
        },
    };
    let duration = match (args.duration, args.calls) {
        (Some(duration), _) => Some(seconds(duration, "--duration")?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let concurrency = args.concurrency.max(1);
    let plan = Plan {
        concurrency,
        calls: args.calls,
        duration,
        rate: args.rate,
        warmup: seconds(args.warmup, "--warmup")?,
        timeout: seconds(args.timeout, "--timeout")?,
        max_duration: seconds(args.max_duration, "--max-duration")?,
    };
    let caller = Arc::new(Caller::new(target, args.era, workload));
    let pool = Pool::open(&caller, args.connections.unwrap_or(concurrency))
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the client sessions: {e}"))?;
    let tally = driver::run(caller.clone(), pool.clone(), &plan).await;
    pool.close(&caller).await;
    let figures = Figures::from_tally(&tally);
    if args.json {
        let mut value = serde_json::to_value(&figures)?;
        value["url"] = Value::String(url);
        value["era"] = Value::String(args.era.to_string());
        value["concurrency"] = concurrency.into();
        value["connections"] = pool.size().into();
        value["rate"] = args.rate.map_or(Value::Null, Value::from);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let mode = match args.rate {
            Some(rate) => format!("open {rate}/s"),
            None => format!("c{concurrency}"),
        };
        print!("{}", figures.table(&format!("{} {mode}", args.era)));
    }
    Ok(figures.errors == 0 && figures.calls > 0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard-load: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let work = async {
        match cli.command {
            None => run(cli.run).await,
            Some(Command::Run(args)) => run(args).await,
            Some(Command::Scenarios(args)) => scenarios::main(args).await,
            Some(Command::Smoke(args)) => smoke::main(args).await,
            Some(Command::Relay(args)) => relay::main(args).await,
        }
    };
    let outcome = runtime.block_on(async {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(error) => return Err(anyhow::anyhow!("cannot handle SIGTERM: {error}")),
            };
        tokio::select! {
            outcome = work => outcome,
            // Dropping the work drops every spawned process with it (their groups are killed).
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("switchboard-load: {error:#}");
            ExitCode::FAILURE
        }
    }
}
