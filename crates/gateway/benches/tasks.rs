//! The tasks extension's bookkeeping per call.
//!
//! - `call`: a `tools/call` of the fixture's `echo` from a client that declared the
//!   extension, in-process (`Gateway::start`) in front of two stdio fixtures: `plain` (no
//!   task policy) and `tasked` (`task_after_ms` set, never reached: the call runs in its
//!   own tracked task and the request waits for it). The difference is what a tool
//!   configured for gateway-made tasks costs on every call that stays short.
//! - `id`: sealing an upstream task id for the client and opening it on `tasks/get`
//!   (HMAC-SHA256 over server, upstream id and principal binding): the passthrough's cost.
//! - `store`: a gateway-made task's record created, settled with a 1 KiB result and read,
//!   in memory and on disk (redb commits fsync). At the end the on-disk size per kept
//!   result is printed (1000 tasks with a 1 KiB text result each).
//! - `store ... at the bound`: a create into a store holding `MAX_KEPT` records of which
//!   the oldest has just expired (the steady state of a busy gateway): the work a create
//!   does to make room.
//!
//! The fixture binary is taken from `SWITCHBOARD_FIXTURE`, else beside the bench's own
//! target directory. Run with `cargo bench -p switchboard-gateway --bench tasks`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_gateway::db::Db;
use switchboard_gateway::owned_tasks::{MAX_KEPT, Record, Store};
use switchboard_gateway::principal::{Face, Peer, Principal};
use switchboard_gateway::{ClientCtx, Gateway};
use switchboard_protocol::Era;
use switchboard_protocol::state::Sealer;
use tokio_util::sync::CancellationToken;

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
    assert!(path.exists(), "{} not found", path.display());
    path
}

fn ctx() -> ClientCtx {
    ClientCtx {
        era: Era::Modern,
        protocol_version: "2026-07-28".into(),
        capabilities: json!({ "extensions": { "io.modelcontextprotocol/tasks": {} } }),
        client_info: None,
        principal: Principal::anonymous_stateless(Face::Http, "c1", Peer::default()),
        notify: None,
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: false,
        tools_mode: Default::default(),
    }
}

fn record(now: u64) -> Record {
    Record {
        owner: "key:alice".into(),
        server: "fx".into(),
        tool: "sleep".into(),
        status: "working".into(),
        created_ms: now,
        updated_ms: now,
        ttl_ms: 3_600_000,
        result: None,
        error: None,
    }
}

fn result_1k() -> Value {
    json!({ "content": [{ "type": "text", "text": "x".repeat(1024) }] })
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fixture = format!("{:?}", fixture().display().to_string());
    let text = format!(
        "[servers.plain]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n\
         [servers.tasked]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = false\n\
         [servers.tasked.tools.echo]\ntask_after_ms = 60000\n"
    );
    let config = switchboard_config::parse(&text, switchboard_config::ConfigFormat::Native, None)
        .expect("valid config");
    let gateway = runtime.block_on(Gateway::start(&config)).expect("starts");
    let ctx = ctx();
    let call = |name: &str| {
        let params = json!({ "name": name, "arguments": { "text": "hello" } });
        runtime.block_on(async {
            gateway
                .handle_reply(&ctx, "tools/call", Some(params))
                .await
                .expect("answered")
                .into_value()
        })
    };
    call("plain__echo");
    call("tasked__echo");

    let mut group = c.benchmark_group("tasks");
    group.bench_function("call: plain__echo (no task policy)", |b| {
        b.iter(|| black_box(call("plain__echo")))
    });
    group.bench_function("call: tasked__echo (task_after_ms, stays short)", |b| {
        b.iter(|| black_box(call("tasked__echo")))
    });

    let sealer = Sealer::random();
    group.bench_function("id: seal an upstream task id + open it", |b| {
        b.iter(|| {
            let sealed = sealer.seal(
                &json!({ "k": "task", "s": "fx", "t": "0b5c9a4e-2f61-4c1e-9d7a-3f3e8f7b1c22", "p": "key:alice" }),
                u64::MAX / 2,
            );
            black_box(sealer.open(&sealed, 1).unwrap())
        })
    });

    let memory = Store::new(Arc::new(Db::memory()));
    let dir = tempfile::tempdir().unwrap();
    let disk = Store::new(Db::open(Some(dir.path())).unwrap());
    let counter = AtomicU64::new(0);
    for (label, store) in [("memory", &memory), ("disk", &disk)] {
        group.bench_function(
            format!("store ({label}): create + settle 1 KiB + get"),
            |b| {
                b.iter(|| {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let id = format!("task-{n}");
                    // Each iteration 400 s after the last: with a 1 h TTL the store holds
                    // ~10 live records, and the sweep at its bound (10,000) keeps it there.
                    let now = n * 400_000;
                    store.create(&id, &record(now), now).unwrap();
                    store
                        .settle(&id, "completed", Some(result_1k()), None, now)
                        .unwrap();
                    black_box(store.get(&id, now).unwrap())
                })
            },
        );
    }
    // At the bound: the store holds MAX_KEPT records, each created one tick after the
    // last with a TTL of MAX_KEPT ticks, so on every create exactly the oldest record has
    // just expired and must go to make room.
    let full = Store::new(Arc::new(Db::memory()));
    let bound = MAX_KEPT as u64;
    let ticks = AtomicU64::new(0);
    let create_next = |store: &Store| {
        let n = ticks.fetch_add(1, Ordering::Relaxed);
        let record = Record {
            ttl_ms: bound,
            ..record(n)
        };
        store.create(&format!("task-{n}"), &record, n).unwrap();
    };
    for _ in 0..bound {
        create_next(&full);
    }
    group.bench_function(
        "store (memory): create at the bound (10,000 kept, one expired)",
        |b| b.iter(|| create_next(black_box(&full))),
    );
    group.finish();

    // Store size per kept result, on disk.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Some(dir.path())).unwrap();
    let store = Store::new(Arc::clone(&db));
    let before = std::fs::metadata(db.path().unwrap()).unwrap().len();
    const KEPT: u64 = 1000;
    for n in 0..KEPT {
        let id = uuid::Uuid::new_v4().simple().to_string();
        store.create(&id, &record(n), n).unwrap();
        store
            .settle(&id, "completed", Some(result_1k()), None, n)
            .unwrap();
    }
    let after = std::fs::metadata(db.path().unwrap()).unwrap().len();
    let record_json = serde_json::to_vec(&Record {
        status: "completed".into(),
        result: Some(result_1k()),
        ..record(0)
    })
    .unwrap()
    .len();
    eprintln!(
        "store size: {KEPT} kept results of 1 KiB: {} bytes on disk ({} per result; the record's JSON is {record_json} bytes)",
        after - before,
        (after - before) / KEPT
    );
    runtime.block_on(gateway.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
