//! The result cache: a `tools/call` answered from the cache against the same call
//! answered by the upstream, in-process (`Gateway::start`) in front of two stdio instances
//! of the real fixture server: `cached` (its `echo` cached) and `direct` (no cache). Also
//! a miss (a new argument each time: the upstream call plus the cache's lookup and store)
//! and compaction of a 200-row JSON text alone.
//!
//! The fixture binary is taken from `SWITCHBOARD_FIXTURE`, else beside the bench's own
//! target directory (`target/<profile>/switchboard-fixture`; build it first with
//! `cargo build --release -p switchboard-fixture`). Run with
//! `cargo bench -p switchboard-gateway --bench cache`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_gateway::pipeline::compact;
use switchboard_gateway::principal::{Face, Peer, Principal};
use switchboard_gateway::{ClientCtx, Gateway};
use switchboard_protocol::Era;
use tokio_util::sync::CancellationToken;

/// The allocator the `switchboard` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn fixture() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_FIXTURE") {
        return path.into();
    }
    // target/<profile>/deps/cache-<hash> → target/<profile>/switchboard-fixture
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
        meta_tools: false,
        tools_mode: Default::default(),
    }
}

async fn call(gateway: &Gateway, ctx: &ClientCtx, params: Value) -> Value {
    gateway
        .handle_reply(ctx, "tools/call", Some(params))
        .await
        .expect("answered")
        .into_value()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fixture = format!("{:?}", fixture().display().to_string());
    let text = format!(
        "[servers.cached]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n\
         [servers.cached.tools.echo]\ncache_ttl_ms = 3600000\n\
         [servers.direct]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n"
    );
    let config = switchboard_config::parse(&text, switchboard_config::ConfigFormat::Native, None)
        .expect("valid config");
    let gateway = runtime.block_on(Gateway::start(&config)).expect("starts");
    let ctx = ctx();
    let hello = json!({ "text": "hello" });
    // Prime the cached entry.
    runtime.block_on(call(
        &gateway,
        &ctx,
        json!({ "name": "cached__echo", "arguments": hello }),
    ));

    let mut group = c.benchmark_group("cache");
    group.bench_function("hit (cached__echo)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    call(
                        &gateway,
                        &ctx,
                        json!({ "name": "cached__echo", "arguments": { "text": "hello" } }),
                    )
                    .await,
                )
            })
        })
    });
    group.bench_function("upstream (direct__echo, no cache)", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(
                    call(
                        &gateway,
                        &ctx,
                        json!({ "name": "direct__echo", "arguments": { "text": "hello" } }),
                    )
                    .await,
                )
            })
        })
    });
    let counter = AtomicU64::new(0);
    group.bench_function("miss (cached__echo, new arguments: upstream + store)", |b| {
        b.iter(|| runtime.block_on(async {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            black_box(
                call(
                    &gateway,
                    &ctx,
                    json!({ "name": "cached__echo", "arguments": { "text": format!("hello {n}") } }),
                )
                .await,
            )
        }))
    });
    group.finish();

    let rows: Vec<Value> = (0..200)
        .map(|i| json!({ "id": i, "name": format!("row {i}"), "price": 9.99, "in_stock": i % 3 == 0 }))
        .collect();
    let pretty = serde_json::to_string_pretty(&rows).unwrap();
    let (compacted, _) = compact::compact(&pretty).expect("compacts");
    println!(
        "compaction of 200 rows: {} → {} bytes, ~{} → ~{} tokens (estimated)",
        pretty.len(),
        compacted.len(),
        compact::estimate_tokens(&pretty),
        compact::estimate_tokens(&compacted)
    );
    c.bench_function("compact 200-row JSON text", |b| {
        b.iter(|| black_box(compact::compact(black_box(&pretty))))
    });
    runtime.block_on(gateway.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
