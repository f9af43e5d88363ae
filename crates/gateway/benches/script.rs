//! Orchestration scripts' overhead: the cost of one inner call of a `switchboard__run`
//! script against the same `tools/call` made directly, in-process (`Gateway::start`) in
//! front of a stdio instance of the real fixture server. A script of 50 `call`s is timed
//! whole and divided by 50; an empty script gives the fixed cost of a run (its thread,
//! its engine); a `parallel` of 50 and a batch of 50 show what concurrency buys.
//!
//! The fixture binary is taken from `SWITCHBOARD_FIXTURE`, else beside the bench's own
//! target directory (`cargo build --release -p switchboard-fixture` first). Run with
//! `cargo bench -p switchboard-gateway --bench script`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_gateway::principal::{Face, Peer, Principal};
use switchboard_gateway::{ClientCtx, Gateway};
use switchboard_protocol::Era;
use tokio_util::sync::CancellationToken;

/// The allocator the `switchboard` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CALLS: u32 = 50;

fn fixture() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_FIXTURE") {
        return path.into();
    }
    // target/<profile>/deps/script-<hash> → target/<profile>/switchboard-fixture
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("switchboard-fixture");
    assert!(
        path.exists(),
        "{} not found: build it (cargo build --release -p switchboard-fixture) or set SWITCHBOARD_FIXTURE",
        path.display()
    );
    path
}

fn ctx() -> ClientCtx {
    ClientCtx {
        era: Era::Modern,
        protocol_version: "2026-07-28".into(),
        capabilities: json!({}),
        client_info: None,
        principal: Principal::anonymous_stateless(Face::Http, "c1", Peer::default()),
        notify: None,
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: true,
        tools_mode: Default::default(),
    }
}

async fn call(gateway: &Gateway, ctx: &ClientCtx, name: &str, arguments: Value) -> Value {
    let result = gateway
        .handle_reply(
            ctx,
            "tools/call",
            Some(json!({ "name": name, "arguments": arguments })),
        )
        .await
        .expect("answered")
        .into_value();
    assert_ne!(result["isError"], true, "{result}");
    result
}

/// Times `iterations` runs of `f`, each counted as `per` operations.
fn timed<F: AsyncFn() -> Value>(
    runtime: &tokio::runtime::Runtime,
    iterations: u64,
    per: u32,
    f: F,
) -> Duration {
    runtime.block_on(async {
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(f().await);
        }
        started.elapsed() / per
    })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fixture = format!("{:?}", fixture().display().to_string());
    let text = format!(
        "[gateway]\nmeta_tools = [\"run\", \"batch\"]\n\n[scripts]\nmax_calls = 1000\nmax_parallel = 8\n\n\
         [servers.fx]\ncommand = {fixture}\nargs = [\"stdio\"]\n"
    );
    let config = switchboard_config::parse(&text, switchboard_config::ConfigFormat::Native, None)
        .expect("valid config");
    let gateway = runtime.block_on(Gateway::start(&config)).expect("starts");
    let ctx = ctx();
    let sequential = format!(
        "let n = 0; for i in 0..{CALLS} {{ n += parse_int(text(call(\"fx__add\", #{{ a: i, b: 1 }}))); }} n"
    );
    let fan_out = format!(
        "let calls = []; for i in 0..{CALLS} {{ calls.push([\"fx__add\", #{{ a: i, b: 1 }}]); }} parallel(calls).len()"
    );
    let batch: Vec<Value> = (0..CALLS)
        .map(|i| json!({ "name": "fx__add", "arguments": { "a": i, "b": 1 } }))
        .collect();
    let script = |source: String| {
        let (gateway, ctx) = (&gateway, &ctx);
        async move || {
            let result = call(
                gateway,
                ctx,
                "switchboard__run",
                json!({ "script": source }),
            )
            .await;
            assert!(
                result["structuredContent"]["result"].is_number(),
                "{result}"
            );
            result
        }
    };
    // Warm up: the instance started, validators compiled.
    runtime.block_on(call(&gateway, &ctx, "fx__add", json!({ "a": 1, "b": 2 })));
    runtime.block_on(script(sequential.clone())());

    let mut group = c.benchmark_group("script");
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("direct tools/call (fx__add)", |b| {
        b.iter_custom(|n| {
            timed(&runtime, n, 1, async || {
                call(&gateway, &ctx, "fx__add", json!({ "a": 2, "b": 3 })).await
            })
        })
    });
    group.bench_function("empty script (fixed cost of a run)", |b| {
        b.iter_custom(|n| timed(&runtime, n, 1, script("40 + 2".into())))
    });
    group.sample_size(20);
    group.bench_function("per inner call, 50 sequential calls in one script", |b| {
        b.iter_custom(|n| timed(&runtime, n, CALLS, script(sequential.clone())))
    });
    group.bench_function("per inner call, parallel() of 50", |b| {
        b.iter_custom(|n| timed(&runtime, n, CALLS, script(fan_out.clone())))
    });
    group.bench_function("per inner call, batch of 50", |b| {
        b.iter_custom(|n| {
            timed(&runtime, n, CALLS, async || {
                call(
                    &gateway,
                    &ctx,
                    "switchboard__batch",
                    json!({ "calls": batch }),
                )
                .await
            })
        })
    });
    group.finish();
    runtime.block_on(gateway.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
