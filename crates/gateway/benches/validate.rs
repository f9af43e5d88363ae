//! Micro-benchmarks of argument validation (`pipeline/validate.rs`): what the step adds to
//! one `tools/call` on the echo path once the tool's validator is compiled and cached in
//! the snapshot (the target: ≤ 5 µs p50), a larger real schema (the filesystem server's
//! `edit_file`), the answer to bad arguments, a snapshot's first call (hash + cache hit),
//! a compile (cache miss), and the did-you-mean over a 10,000-tool catalog.
//!
//! Run with `cargo bench -p switchboard-gateway --bench validate`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_gateway::catalog::{Catalog, ServerLists};
use switchboard_gateway::metrics::Metrics;
use switchboard_gateway::pipeline::validate::Validate;
use switchboard_gateway::suggest::Suggester;

const CORPUS: &str = include_str!("../tests/data/reference-schemas.json");

/// The fixture's `echo` (as `switchboard-fixture` lists it), the filesystem server's
/// `edit_file`, and `filler` tools up to `tools` in all.
fn catalog(tools: usize) -> Catalog {
    let corpus: Value = serde_json::from_str(CORPUS).expect("corpus parses");
    let edit_file = corpus["servers"]["filesystem"]
        .as_array()
        .expect("tools")
        .iter()
        .find(|tool| tool["name"] == "edit_file")
        .expect("edit_file in the corpus")
        .clone();
    let mut list = vec![
        json!({
            "name": "echo",
            "description": "Returns its text, as content and structuredContent",
            "inputSchema": {
                "type": "object",
                "properties": { "text": { "type": "string", "description": "Text to echo" } },
                "required": ["text"],
            },
        }),
        edit_file,
    ];
    for index in list.len()..tools {
        list.push(json!({
            "name": format!("filler_{index}"),
            "inputSchema": {
                "type": "object",
                "properties": { "query": { "type": "string" }, "limit": { "type": "integer", "minimum": 1 } },
                "required": ["query"],
            },
        }));
    }
    let mut lists = BTreeMap::new();
    lists.insert(
        "fixture".to_owned(),
        Arc::new(ServerLists {
            tools: list,
            ..ServerLists::default()
        }),
    );
    Catalog::build(&lists, false)
}

fn per_call(c: &mut Criterion) {
    let validate = Validate::new(&Metrics::default());
    let catalog = catalog(10_000);
    let echo = json!({ "text": "hello" });
    let edits = json!({
        "path": "/tmp/notes.md",
        "edits": [
            { "oldText": "alpha", "newText": "beta" },
            { "oldText": "gamma", "newText": "delta" },
            { "oldText": "epsilon", "newText": "zeta" },
        ],
        "dryRun": true,
    });
    // Compiled and cached in the snapshot by the first call, as in the gateway.
    assert!(
        validate
            .check(&catalog, "fixture", "fixture__echo", Some(&echo))
            .is_none()
    );
    assert!(
        validate
            .check(&catalog, "fixture", "fixture__edit_file", Some(&edits))
            .is_none()
    );

    let mut group = c.benchmark_group("validate");
    group.bench_function("echo, valid (cached validator): the per-call cost", |b| {
        b.iter(|| {
            validate.check(
                &catalog,
                "fixture",
                black_box("fixture__echo"),
                Some(black_box(&echo)),
            )
        })
    });
    group.bench_function("edit_file, 3 edits, valid (cached validator)", |b| {
        b.iter(|| {
            validate.check(
                &catalog,
                "fixture",
                black_box("fixture__edit_file"),
                Some(black_box(&edits)),
            )
        })
    });
    let bad = json!({ "path": "/tmp/notes.md", "edits": [{ "oldtext": "alpha", "newText": 3 }] });
    group.bench_function("edit_file, invalid: the tool error answer", |b| {
        b.iter(|| {
            validate.check(
                &catalog,
                "fixture",
                "fixture__edit_file",
                Some(black_box(&bad)),
            )
        })
    });
    // A rebuilt snapshot: the first call hashes the schema and finds it compiled.
    group.bench_function(
        "echo, first call in a new snapshot (hash + cache hit)",
        |b| {
            b.iter_batched(
                catalog_small,
                |snapshot| validate.check(&snapshot, "fixture", "fixture__echo", Some(&echo)),
                BatchSize::SmallInput,
            )
        },
    );
    group.bench_function("echo, first call ever (hash + compile)", |b| {
        b.iter_batched(
            || (Validate::new(&Metrics::default()), catalog_small()),
            |(fresh, snapshot)| fresh.check(&snapshot, "fixture", "fixture__echo", Some(&echo)),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let names: Vec<String> = catalog
        .tools
        .iter()
        .map(|tool| tool.name().to_owned())
        .collect();
    c.bench_function(
        "did-you-mean over 10,000 tool names (unknown-tool error path)",
        |b| {
            b.iter(|| {
                let mut suggester =
                    Suggester::new(black_box("fixture__filler_99999")).expect("short");
                for name in &names {
                    let tail = name.split_once("__").map(|(_, tail)| tail);
                    suggester.offer(name, tail.as_slice());
                }
                suggester.finish()
            })
        },
    );
}

fn catalog_small() -> Catalog {
    catalog(2)
}

criterion_group!(benches, per_call);
criterion_main!(benches);
