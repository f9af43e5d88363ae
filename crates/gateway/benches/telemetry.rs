//! What `[telemetry]` adds to a call on the echo path: `tools/call fx__echo` through the
//! in-process gateway (default chain: argument validation) to a real fixture server over
//! stdio, with tracing off, on at 100 % sampling and on at 1 % sampling, one call at a
//! time. Traced variants export to an OTLP/HTTP sink on this machine (a listener that
//! answers 200 and drops the body), so the export's own work is in the figures.
//!
//! Run with `cargo build --release -p switchboard-fixture` first (the fixture is looked
//! up beside the bench's target directory, or at `SWITCHBOARD_FIXTURE`), then
//! `cargo bench -p switchboard-gateway --bench telemetry`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_config::ConfigFormat;
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
    // target/release/deps/telemetry-… → target/release/switchboard-fixture
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

/// An OTLP/HTTP endpoint that accepts every export and keeps nothing, on its own thread.
fn sink() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(|_body: axum::body::Bytes| async { "" }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}

fn config(telemetry: Option<(&str, f64)>) -> switchboard_config::Config {
    let mut text = String::new();
    if let Some((endpoint, ratio)) = telemetry {
        text.push_str(&format!(
            "[telemetry]\nendpoint = {endpoint:?}\nsample_ratio = {ratio:?}\nexport_interval_ms = 1000\n"
        ));
    }
    text.push_str(&format!(
        "[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture().display().to_string()
    ));
    switchboard_config::parse(&text, ConfigFormat::Native, None).expect("valid")
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

async fn call(gateway: &Gateway, params: &Value) {
    let result = gateway
        .handle(&ctx(), "tools/call", Some(params.clone()))
        .await
        .expect("echo answers");
    black_box(result);
}

fn echo_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = sink();
    let params = json!({ "name": "fx__echo", "arguments": { "text": "hello" } });
    let variants: [(&str, Option<f64>); 4] = [
        ("tracing off", None),
        ("tracing on, sampling 100 %", Some(1.0)),
        ("tracing on, sampling 1 %", Some(0.01)),
        // The baseline again: how far the machine drifted during the group.
        ("tracing off (again, last)", None),
    ];
    let mut group = c.benchmark_group("tools/call echo → stdio fixture, c=1");
    group.measurement_time(Duration::from_secs(8));
    for (label, ratio) in variants {
        let config = config(ratio.map(|ratio| (endpoint.as_str(), ratio)));
        let gateway = runtime
            .block_on(Gateway::start(&config))
            .expect("gateway starts");
        // The first call starts nothing new (servers start eagerly) but warms the path.
        runtime.block_on(call(&gateway, &params));
        group.bench_function(label, |b| {
            b.iter(|| runtime.block_on(call(&gateway, black_box(&params))))
        });
        runtime.block_on(gateway.shutdown());
    }
    group.finish();
}

criterion_group!(benches, echo_path);
criterion_main!(benches);
