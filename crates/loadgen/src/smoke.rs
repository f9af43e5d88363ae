//! `switchboard-load smoke`: a short mini scenario through a real gateway for CI. It starts
//! the fixture over HTTP and a gateway in front of it (over HTTP) and of a second fixture
//! (over stdio), drives both eras for about two seconds in total, and fails on any error,
//! on a run without calls, or on an unexpected number of upstream processes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;

use crate::client::Target;
use crate::driver::{self, Plan};
use crate::mcp::{Era, Template};
use crate::procs;
use crate::report::Figures;
use crate::session::{Caller, Pool, Workload};
use crate::spawn::{self, Upstream};

/// The whole smoke run, start-up and shutdown included, must end within this.
const BUDGET: Duration = Duration::from_secs(25);

#[derive(Args, Clone, Debug)]
pub struct SmokeArgs {
    /// The switchboard binary.
    #[arg(long)]
    gateway: PathBuf,
    /// The switchboard-fixture binary.
    #[arg(long)]
    fixture: PathBuf,
    /// Seconds of load in total, split over the runs.
    #[arg(long, default_value_t = 2.0)]
    duration: f64,
    /// Keep the process logs in this directory (default: a temporary one, removed when the
    /// run passes).
    #[arg(long)]
    logs: Option<PathBuf>,
}

pub async fn main(args: SmokeArgs) -> anyhow::Result<bool> {
    let (logs, temporary) = match &args.logs {
        Some(logs) => (logs.clone(), false),
        None => (
            std::env::temp_dir().join(format!("switchboard-load-smoke-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let passed = tokio::time::timeout(BUDGET, smoke(&args, &logs))
        .await
        .with_context(|| format!("the smoke run did not finish within {BUDGET:?}"))??;
    if passed && temporary {
        let _ = std::fs::remove_dir_all(&logs);
    } else if !passed {
        println!("process logs kept in {}", logs.display());
    }
    Ok(passed)
}

struct MiniRun {
    label: &'static str,
    era: Era,
    workload: Workload,
    concurrency: usize,
}

async fn smoke(args: &SmokeArgs, logs: &Path) -> anyhow::Result<bool> {
    for binary in [&args.gateway, &args.fixture] {
        anyhow::ensure!(binary.is_file(), "{} does not exist", binary.display());
    }
    let fixture = spawn::fixture_http(&args.fixture, &[], logs, "fixture-http").await?;
    let config = spawn::gateway_config(&[
        (
            "local".into(),
            Upstream::Stdio {
                command: args.fixture.clone(),
                args: vec!["stdio".into()],
            },
        ),
        (
            "remote".into(),
            Upstream::Http {
                url: fixture.url.clone(),
            },
        ),
    ]);
    let gateway = spawn::gateway(
        &args.gateway,
        &config,
        logs,
        "gateway",
        Duration::from_secs(15),
    )
    .await?;
    let echo = |era: Era, tools: &[&str]| -> anyhow::Result<Workload> {
        let templates = tools
            .iter()
            .map(|tool| Template::tool_call(era, tool, &json!({ "text": "smoke" })))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Workload::ToolCall(templates))
    };
    let runs = [
        MiniRun {
            label: "modern → stdio c4",
            era: Era::Modern,
            workload: echo(Era::Modern, &["local__echo"])?,
            concurrency: 4,
        },
        MiniRun {
            label: "legacy → http c4",
            era: Era::Legacy,
            workload: echo(Era::Legacy, &["remote__echo"])?,
            concurrency: 4,
        },
        MiniRun {
            label: "legacy 8 sessions → both",
            era: Era::Legacy,
            workload: echo(Era::Legacy, &["local__echo", "remote__echo"])?,
            concurrency: 8,
        },
        MiniRun {
            label: "modern tools/list c2",
            era: Era::Modern,
            workload: Workload::ToolsList {
                first: Template::tools_list(Era::Modern)?,
                all_pages: true,
            },
            concurrency: 2,
        },
    ];
    let slice = Duration::from_secs_f64(args.duration.max(0.2) / runs.len() as f64);
    let mut passed = true;
    for run in runs {
        let caller = Arc::new(Caller::new(
            Target::parse(&gateway.url)?,
            run.era,
            run.workload,
        ));
        let pool = match Pool::open(&caller, run.concurrency).await {
            Ok(pool) => pool,
            Err(error) => {
                println!("FAIL {}: cannot open sessions: {error}", run.label);
                passed = false;
                continue;
            }
        };
        let plan = Plan {
            concurrency: run.concurrency,
            calls: None,
            duration: Some(slice),
            rate: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(5),
            max_duration: Duration::from_secs(5),
        };
        let tally = driver::run(caller.clone(), pool.clone(), &plan).await;
        pool.close(&caller).await;
        let figures = Figures::from_tally(&tally);
        let ok = figures.errors == 0 && figures.calls > 0 && figures.tools != Some(0);
        passed &= ok;
        println!(
            "{} {}",
            if ok { "ok  " } else { "FAIL" },
            figures.line(run.label)
        );
        for (kind, count) in &figures.error_kinds {
            println!("       {kind}: {} (first: {})", count.count, count.sample);
        }
        if figures.tools == Some(0) {
            println!("       tools/list returned no tools");
        }
    }
    let upstreams = procs::descendants(gateway.pid).len();
    if upstreams == 1 {
        println!("ok   the gateway runs exactly one upstream process (the stdio fixture)");
    } else {
        println!("FAIL the gateway runs {upstreams} upstream processes, expected 1");
        passed = false;
    }
    gateway.stop(Duration::from_secs(5)).await;
    fixture.stop(Duration::from_secs(5)).await;
    println!("smoke {}", if passed { "passed" } else { "FAILED" });
    Ok(passed)
}
