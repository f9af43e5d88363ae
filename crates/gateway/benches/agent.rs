//! The router agent's own cost: a one-tool query (`fx__add` on a real stdio fixture)
//! through the in-process gateway, with the model's time taken out — each iteration
//! counts the query's wall time minus `Answer::llm_time` (the scripted model's answers,
//! loopback HTTP included) — so what remains is the gateway's work: offering the view,
//! parsing and repairing the call, the pipeline, the result budget, memory. A second
//! group runs two 200 ms tools in one turn (concurrently) and in two turns (one after the
//! other): the parallel speed-up. A third group prices hot-plug: the same one-tool query
//! whose tool lives on a dormant `lazy` stdio server (stopped through the gateway's API
//! between iterations, untimed), so the query starts it, against the same query with that
//! server already running, beside the fixture's own start-up (spawned directly, until it
//! answers `initialize`) — the part no gateway can hide.
//!
//! Run with `cargo build --release -p switchboard-fixture` first, then
//! `cargo bench -p switchboard-gateway --bench agent`.

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::json;
use switchboard_config::ConfigFormat;
use switchboard_gateway::Gateway;
use switchboard_testkit::llm::{Scripted, ScriptedLlm, calls, text};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_FIXTURE") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("bench path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("switchboard-fixture");
    assert!(
        path.exists(),
        "build the fixture first: cargo build --release -p switchboard-fixture ({})",
        path.display()
    );
    path
}

fn config(llm: &ScriptedLlm) -> switchboard_config::Config {
    let fixture = fixture().display().to_string();
    let text = format!(
        "{}\n[servers.fx]\ncommand = {fixture:?}\nargs = [\"stdio\"]\n\n[servers.fy]\ncommand = {fixture:?}\nargs = [\"stdio\"]\n\n[servers.lz]\ncommand = {fixture:?}\nargs = [\"stdio\"]\nlazy = true\n",
        llm.agent_section("max_tools = 512")
    );
    switchboard_config::parse(&text, ConfigFormat::Native, None).expect("valid")
}

/// Wall time of one query minus the model's time.
async fn overhead(gateway: &Gateway, llm: &ScriptedLlm, script: Vec<Scripted>) -> Duration {
    overhead_starting(gateway, llm, script, &[]).await
}

/// [`overhead`], checking which servers the query had to start.
async fn overhead_starting(
    gateway: &Gateway,
    llm: &ScriptedLlm,
    script: Vec<Scripted>,
    expect_started: &[&str],
) -> Duration {
    llm.push(script);
    let started = std::time::Instant::now();
    let answer = gateway.ask_local("q", None).await.expect("answered");
    let took = started.elapsed().saturating_sub(answer.llm_time);
    assert!(answer.tool_calls.iter().all(|c| c.outcome == "ok"));
    assert_eq!(
        answer.servers_started, expect_started,
        "hot-plugged servers"
    );
    took
}

/// The fixture started directly, until it answers `initialize`.
async fn fixture_startup() -> Duration {
    let started = std::time::Instant::now();
    let mut child = tokio::process::Command::new(fixture())
        .arg("stdio")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("fixture starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": { "name": "bench", "version": "0" } }
    });
    stdin
        .write_all(format!("{initialize}\n").as_bytes())
        .await
        .expect("initialize sent");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("initialize answered");
    let took = started.elapsed();
    assert!(line.contains("\"result\""), "initialize failed: {line}");
    drop(stdin);
    let _ = child.wait().await;
    took
}

fn agent(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let llm = runtime.block_on(ScriptedLlm::start(Vec::new()));
    let gateway = runtime
        .block_on(Gateway::start(&config(&llm)))
        .expect("gateway starts");
    let one_tool = || vec![calls(&[("fx__add", json!({ "a": 2, "b": 3 }))]), text("5")];
    runtime.block_on(overhead(&gateway, &llm, one_tool()));
    let mut group = c.benchmark_group("agent");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("one-tool query, gateway time (model excluded)", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += overhead(&gateway, &llm, one_tool()).await;
                }
                total
            })
        })
    });
    group.finish();
    let mut group = c.benchmark_group("agent: two 200 ms tools");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(6));
    let sleep = |server: &str| (format!("{server}__sleep"), json!({ "ms": 200 }));
    let (a, b) = (sleep("fx"), sleep("fy"));
    group.bench_function("one turn (concurrent)", |bench| {
        bench.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let script = vec![
                        calls(&[(a.0.as_str(), a.1.clone()), (b.0.as_str(), b.1.clone())]),
                        text("done"),
                    ];
                    total += overhead(&gateway, &llm, script).await;
                }
                total
            })
        })
    });
    group.bench_function("two turns (sequential)", |bench| {
        bench.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let script = vec![
                        calls(&[(a.0.as_str(), a.1.clone())]),
                        calls(&[(b.0.as_str(), b.1.clone())]),
                        text("done"),
                    ];
                    total += overhead(&gateway, &llm, script).await;
                }
                total
            })
        })
    });
    group.finish();
    let mut group = c.benchmark_group("agent: hot-plug");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let lazy_tool = || vec![calls(&[("lz__add", json!({ "a": 2, "b": 3 }))]), text("5")];
    group.bench_function(
        "one-tool query, lazy server dormant (start-up included)",
        |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        // Untimed: back to dormant, as the idle reaper would leave it.
                        gateway.stop_server("lz").await.expect("stopped");
                        total += overhead_starting(&gateway, &llm, lazy_tool(), &["lz"]).await;
                    }
                    total
                })
            })
        },
    );
    runtime
        .block_on(gateway.start_server("lz"))
        .expect("lz starts");
    group.bench_function("one-tool query, lazy server already running", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    total += overhead_starting(&gateway, &llm, lazy_tool(), &[]).await;
                }
                total
            })
        })
    });
    group.bench_function(
        "fixture start-up alone (spawn until initialize answered)",
        |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += fixture_startup().await;
                    }
                    total
                })
            })
        },
    );
    group.finish();
    runtime.block_on(gateway.shutdown());
}

criterion_group!(benches, agent);
criterion_main!(benches);
