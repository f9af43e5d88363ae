//! The audit log's costs: what the `audit` step adds to one call on the echo path (its
//! `before` and `after`, with the writer running beside it on a real file), the writer's
//! throughput (records committed per second, each batch an fsync) and verification speed
//! (records per second). Also the parts: the canonical argument digest and sealing one
//! record (serialize, SHA-256, Ed25519 signature).
//!
//! Run with `cargo bench -p switchboard-gateway --bench audit`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_config::{AuditKey as KeySource, AuditSettings, SigningSeed};
use switchboard_gateway::audit::store::Snapshot;
use switchboard_gateway::audit::verify::{Trust, verify_snapshot};
use switchboard_gateway::audit::{AuditKey, Decision, Log, Outcome, Record, chain, digest};
use switchboard_gateway::catalog::Catalog;
use switchboard_gateway::db::Db;
use switchboard_gateway::error::Kind;
use switchboard_gateway::metrics::Metrics;
use switchboard_gateway::pipeline::audit::Audit;
use switchboard_gateway::pipeline::{Call, Held, Notes, Route, Step, Target};
use switchboard_gateway::principal::{Face, Peer, Principal};
use switchboard_gateway::reply::Reply;
use switchboard_gateway::{ClientCtx, Error};
use switchboard_protocol::Era;
use tokio_util::sync::CancellationToken;

const SEED: [u8; 32] = [0x5a; 32];
const RECORDS: u64 = 10_000;

fn settings(queue: usize) -> AuditSettings {
    AuditSettings {
        key: KeySource::Inline(SigningSeed(SEED)),
        queue,
        ..AuditSettings::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn ctx() -> ClientCtx {
    ClientCtx {
        era: Era::Modern,
        protocol_version: "2026-07-28".into(),
        capabilities: json!({}),
        client_info: None,
        principal: Principal::anonymous(Face::Http, "conn:127.0.0.1:4242", Peer::default()),
        notify: None,
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: false,
        tools_mode: Default::default(),
    }
}

fn echo_result() -> Value {
    json!({
        "content": [{ "type": "text", "text": "hello" }],
        "structuredContent": { "text": "hello" },
        "x-fixture-result": 1,
        "_meta": { "fixture/echo": true },
    })
}

fn record(index: u64) -> Record {
    Record {
        time_ms: 1_796_728_272_345 + index,
        principal: "anonymous:http".into(),
        session: "conn:127.0.0.1:4242".into(),
        face: "http",
        peer: Some("127.0.0.1:4242".into()),
        method: "tools/call".into(),
        server: Some("fixture".into()),
        tool: Some("fixture__echo".into()),
        decision: Decision::Allowed,
        outcome: Some(Outcome::Ok),
        arguments_sha256: Some([1; 32]),
        result_sha256: Some([2; 32]),
        latency_us: 87,
        ..Record::default()
    }
}

/// Waits until every record taken so far is committed.
async fn drained(log: &Log) {
    while log.queued() > 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn step(c: &mut Criterion) {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Some(dir.path())).unwrap();
    let log = Log::open(&settings(1 << 20), &db, &Metrics::default()).unwrap();
    let shutdown = CancellationToken::new();
    let writer = runtime.spawn(log.take_writer(shutdown.clone()).unwrap());
    let audit = Audit::new(log.clone());
    let ctx = ctx();
    let catalog = Arc::new(Catalog::default());
    let result = echo_result();
    let mut group = c.benchmark_group("audit step");
    group.bench_function("before + after, echo call (writer running)", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                for _ in 0..iters {
                    let mut call = Call {
                        ctx: &ctx,
                        method: "tools/call",
                        params: json!({ "name": "fixture__echo", "arguments": { "text": "hello" } }),
                        catalog: catalog.clone(),
                        view: None,
                        target: Target::Upstream(Route {
                            server: "fixture".into(),
                            name: "echo".into(),
                            exposed: "fixture__echo".into(),
                            kind: Kind::Tool,
                        }),
                        notes: Notes::default(),
                        held: Held::default(),
                    };
                    audit.before(&mut call).await.unwrap();
                    let mut outcome: Result<Reply, Error> = Ok(Reply::Value(result.clone()));
                    audit.after(&call, &mut outcome).await.unwrap();
                    black_box(outcome.is_ok());
                }
                let elapsed = started.elapsed();
                // Not timed: let the writer catch up, so the queue never fills.
                drained(&log).await;
                elapsed
            })
        })
    });
    // What the loop costs without the step (building the call, cloning the result).
    group.bench_function("the same loop without the step", |b| {
        b.iter(|| {
            let call = Call {
                ctx: &ctx,
                method: "tools/call",
                params: json!({ "name": "fixture__echo", "arguments": { "text": "hello" } }),
                catalog: catalog.clone(),
                view: None,
                target: Target::Upstream(Route {
                    server: "fixture".into(),
                    name: "echo".into(),
                    exposed: "fixture__echo".into(),
                    kind: Kind::Tool,
                }),
                notes: Notes::default(),
                held: Held::default(),
            };
            let outcome: Result<Reply, Error> = Ok(Reply::Value(result.clone()));
            black_box((call.method, outcome.is_ok()))
        })
    });
    group.bench_function("canonical SHA-256 of the echo result", |b| {
        b.iter(|| digest::canonical_sha256(black_box(&result)))
    });
    let key = AuditKey::from_seed(&SigningSeed(SEED));
    let one = record(0);
    group.bench_function("seal one record (body, SHA-256, Ed25519)", |b| {
        b.iter(|| chain::seal(&key, &one.body(black_box(7), &chain::GENESIS, key.id())))
    });
    group.finish();
    shutdown.cancel();
    runtime.block_on(writer).unwrap();
}

fn throughput(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("audit log");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Some(dir.path())).unwrap();
    let log = Log::open(&settings(4096), &db, &Metrics::default()).unwrap();
    let shutdown = CancellationToken::new();
    let writer = runtime.spawn(log.take_writer(shutdown.clone()).unwrap());
    group.bench_function(
        "write 10,000 records (16 concurrent writers, fsync per batch)",
        |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let tasks: Vec<_> = (0..16)
                            .map(|task| {
                                let log = log.clone();
                                tokio::spawn(async move {
                                    for index in (task..RECORDS).step_by(16) {
                                        log.append(record(index)).await.unwrap();
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap();
                        }
                        drained(&log).await;
                    }
                    started.elapsed()
                })
            })
        },
    );
    shutdown.cancel();
    runtime.block_on(writer).unwrap();

    // A log of exactly 10,000 records to verify.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Some(dir.path())).unwrap();
    let log = Log::open(&settings(4096), &db, &Metrics::default()).unwrap();
    let shutdown = CancellationToken::new();
    let writer = runtime.spawn(log.take_writer(shutdown.clone()).unwrap());
    runtime.block_on(async {
        for index in 0..RECORDS {
            log.append(record(index)).await.unwrap();
        }
        drained(&log).await;
    });
    shutdown.cancel();
    runtime.block_on(writer).unwrap();
    let trust = Trust::new([AuditKey::from_seed(&SigningSeed(SEED)).verifying()]);
    group.bench_function("verify 10,000 records", |b| {
        b.iter(|| {
            let snapshot = Snapshot::of(db.database()).unwrap();
            let report = verify_snapshot(&snapshot, Some(&trust)).unwrap();
            assert_eq!(report.verified, RECORDS);
            report
        })
    });
    group.finish();
}

/// CPU time of the calling thread (or of the process), immune to other processes' load.
fn cpu(clock: nix::time::ClockId) -> Duration {
    Duration::from(nix::time::clock_gettime(clock).unwrap())
}

fn thread_cpu() -> Duration {
    cpu(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
}

fn process_cpu() -> Duration {
    cpu(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

/// The same costs in CPU time rather than wall time: on a shared machine, wall time
/// measures the other processes as much as this code. Printed, not compared.
fn cpu_costs(_: &mut Criterion) {
    let runtime = runtime();
    let per = |total: Duration, count: u64| total.as_secs_f64() * 1e6 / count as f64;

    let key = AuditKey::from_seed(&SigningSeed(SEED));
    let one = record(0);
    let started = thread_cpu();
    for seq in 0..5_000 {
        black_box(chain::seal(&key, &one.body(seq, &chain::GENESIS, key.id())));
    }
    println!(
        "cpu: seal one record: {:.1} µs",
        per(thread_cpu() - started, 5_000)
    );

    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(Some(dir.path())).unwrap();
    let log = Log::open(&settings(1 << 20), &db, &Metrics::default()).unwrap();
    let shutdown = CancellationToken::new();
    let writer = runtime.spawn(log.take_writer(shutdown.clone()).unwrap());
    let audit = Audit::new(log.clone());
    let ctx = ctx();
    let catalog = Arc::new(Catalog::default());
    let result = echo_result();
    let calls = 20_000u64;
    let (with, without) = runtime.block_on(async {
        let mut costs = [Duration::ZERO; 2];
        for (variant, cost) in costs.iter_mut().enumerate() {
            let started = thread_cpu();
            for _ in 0..calls {
                let mut call = Call {
                    ctx: &ctx,
                    method: "tools/call",
                    params: json!({ "name": "fixture__echo", "arguments": { "text": "hello" } }),
                    catalog: catalog.clone(),
                    view: None,
                    target: Target::Upstream(Route {
                        server: "fixture".into(),
                        name: "echo".into(),
                        exposed: "fixture__echo".into(),
                        kind: Kind::Tool,
                    }),
                    notes: Notes::default(),
                    held: Held::default(),
                };
                let mut outcome: Result<Reply, Error> = Ok(Reply::Value(result.clone()));
                if variant == 0 {
                    audit.before(&mut call).await.unwrap();
                    audit.after(&call, &mut outcome).await.unwrap();
                }
                black_box(outcome.is_ok());
            }
            *cost = thread_cpu() - started;
            drained(&log).await;
        }
        (costs[0], costs[1])
    });
    println!(
        "cpu: audit step on the echo path (before + after, on the calling thread): {:.2} µs per call",
        per(with.saturating_sub(without), calls)
    );

    let started = (process_cpu(), Instant::now());
    runtime.block_on(async {
        let tasks: Vec<_> = (0..16)
            .map(|task| {
                let log = log.clone();
                tokio::spawn(async move {
                    for index in (task..RECORDS).step_by(16) {
                        log.append(record(index)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        drained(&log).await;
    });
    let (spent, wall) = (process_cpu() - started.0, started.1.elapsed());
    println!(
        "cpu: write 10,000 records: {:.1} µs CPU per record ({:.0} records per CPU-second; wall {:.0} records/s)",
        per(spent, RECORDS),
        RECORDS as f64 / spent.as_secs_f64(),
        RECORDS as f64 / wall.as_secs_f64()
    );
    shutdown.cancel();
    runtime.block_on(writer).unwrap();

    let trust = Trust::new([key.verifying()]);
    let snapshot = Snapshot::of(db.database()).unwrap();
    let started = (process_cpu(), Instant::now());
    let report = verify_snapshot(&snapshot, Some(&trust)).unwrap();
    let (spent, wall) = (process_cpu() - started.0, started.1.elapsed());
    assert!(report.is_ok(), "{report}");
    let count = report.verified;
    println!(
        "cpu: verify {count} records: {:.1} µs CPU per record ({:.0} records per CPU-second; wall {:.0} records/s on {} threads)",
        per(spent, count),
        count as f64 / spent.as_secs_f64(),
        count as f64 / wall.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, usize::from)
    );
}

criterion_group!(benches, step, throughput, cpu_costs);
criterion_main!(benches);
