//! Run snapshots: what pinning adds to a session's `tools/list` and `tools/call`,
//! in-process (`Gateway::start`) in front of a stdio instance of the real fixture server.
//! Each pinned figure sits beside the same request unpinned:
//! - `tools/list` (a legacy session): pinned, the page comes from the snapshot (a lookup
//!   in the snapshot store, then the same pre-rendered page);
//! - `tools/call fx__echo`: pinned with the tool unchanged (the same server lists: a
//!   pointer comparison), and pinned after a compatible change of `echo` (a description
//!   rewritten: the structural comparison runs on every call);
//! - `compat::judge` alone on `echo` (compatible) and on a schema with a newly required
//!   property (incompatible, the change named).
//!
//! The fixture binary is taken from `SWITCHBOARD_FIXTURE`, else beside the bench's own
//! target directory (`target/<profile>/switchboard-fixture`; build it first with
//! `cargo build --release -p switchboard-fixture`). Run with
//! `cargo bench -p switchboard-gateway --bench snapshot`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_gateway::principal::{Face, Peer, Principal};
use switchboard_gateway::snapshot::{META_KEY, compat};
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

/// A legacy session's context (its pin is kept by the gateway, by session id).
fn ctx(session: &str) -> ClientCtx {
    ClientCtx {
        era: Era::Legacy,
        protocol_version: "2025-11-25".into(),
        capabilities: json!({}),
        client_info: None,
        principal: Principal::anonymous(Face::Http, session, Peer::default()),
        notify: None,
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: false,
        tools_mode: Default::default(),
    }
}

async fn request(gateway: &Gateway, ctx: &ClientCtx, method: &str, params: Value) -> Value {
    gateway
        .handle_reply(ctx, method, Some(params))
        .await
        .expect("answered")
        .into_value()
}

fn echo() -> Value {
    json!({ "name": "echo", "arguments": { "text": "hello" } })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fixture = format!("{:?}", fixture().display().to_string());
    let text = format!("[servers.fx]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n");
    let config = switchboard_config::parse(&text, switchboard_config::ConfigFormat::Native, None)
        .expect("valid config");
    let gateway = runtime.block_on(Gateway::start(&config)).expect("starts");
    let (live, pinned) = (ctx("live"), ctx("pinned"));
    let call = |name: &str| {
        let mut params = echo();
        params["name"] = json!(name);
        params
    };
    runtime.block_on(async {
        let listed = request(
            &gateway,
            &pinned,
            "tools/list",
            json!({ "_meta": { META_KEY: "pin" } }),
        )
        .await;
        assert!(listed["_meta"][META_KEY]["id"].is_string(), "{listed}");
    });

    let mut group = c.benchmark_group("snapshot");
    group.bench_function("tools/list, live session", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(request(&gateway, &live, "tools/list", json!({})).await)
            })
        })
    });
    group.bench_function("tools/list, pinned session", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(request(&gateway, &pinned, "tools/list", json!({})).await)
            })
        })
    });
    group.bench_function("tools/call echo, live session", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(request(&gateway, &live, "tools/call", call("fx__echo")).await)
            })
        })
    });
    group.bench_function("tools/call echo, pinned, tool unchanged", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(request(&gateway, &pinned, "tools/call", call("fx__echo")).await)
            })
        })
    });
    // A compatible change: the pinned call now compares the definitions on every call.
    runtime.block_on(async {
        request(
            &gateway,
            &live,
            "tools/call",
            json!({ "name": "fx__rewrite_tool", "arguments": { "name": "echo", "description": "Echoes, reworded." } }),
        )
        .await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let listed = request(&gateway, &live, "tools/list", json!({})).await;
            if listed.to_string().contains("Echoes, reworded.") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "rewrite seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let still = request(&gateway, &pinned, "tools/list", json!({})).await;
        assert!(!still.to_string().contains("Echoes, reworded."));
    });
    group.bench_function("tools/call echo, pinned, tool changed compatibly", |b| {
        b.iter(|| {
            runtime.block_on(async {
                black_box(request(&gateway, &pinned, "tools/call", call("fx__echo")).await)
            })
        })
    });
    group.finish();

    let tool = json!({
        "name": "echo",
        "description": "Echoes the text back.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "text": { "type": "string", "description": "what to echo" },
                "repeat": { "type": "integer", "minimum": 1 },
                "options": { "type": "object", "properties": { "upper": { "type": "boolean" } } }
            },
            "required": ["text"]
        }
    });
    let mut reworded = tool.clone();
    reworded["description"] = json!("Echoes, reworded.");
    let mut stricter = tool.clone();
    stricter["inputSchema"]["required"] = json!(["text", "repeat"]);
    c.bench_function("compat::judge, description changed (compatible)", |b| {
        b.iter(|| black_box(compat::judge(black_box(&tool), black_box(&reworded))))
    });
    c.bench_function(
        "compat::judge, newly required property (incompatible)",
        |b| b.iter(|| black_box(compat::judge(black_box(&tool), black_box(&stricter)))),
    );
    runtime.block_on(gateway.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
