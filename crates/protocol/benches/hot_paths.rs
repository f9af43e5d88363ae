//! Micro-benchmarks of the protocol work switchboard does on every forwarded message:
//! envelope parse and serialize, the id / progress-token rewrite of a forwarded request,
//! building and querying the name table of a large catalog, and `x-mcp-header` discovery.
//!
//! Run with `cargo bench -p switchboard-protocol`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_protocol::naming::{NameTable, Qualified};
use switchboard_protocol::{Message, RequestId, headers, meta};

/// A `tools/call` request of about 4 KB: nested arguments with strings, numbers and an
/// array, a progress token and modern `_meta`, the shape a real client sends.
fn tools_call_4k() -> Vec<u8> {
    let mut rows = Vec::new();
    let mut index = 0;
    loop {
        rows.push(json!({
            "id": index,
            "title": format!("Quarterly report section {index}"),
            "score": 0.5 + f64::from(index) / 100.0,
            "tags": ["finance", "q3", "draft"],
        }));
        index += 1;
        let message = json!({
            "jsonrpc": "2.0",
            "id": 4711,
            "method": "tools/call",
            "params": {
                "name": "docs__search",
                "arguments": {
                    "query": "revenue growth in the third quarter",
                    "limit": 25,
                    "filters": { "region": "us-west1", "after": "2026-01-01" },
                    "documents": rows,
                },
                "_meta": {
                    "progressToken": "client-token-17",
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": { "sampling": {}, "elicitation": {} },
                    "io.modelcontextprotocol/clientInfo": { "name": "bench-client", "version": "1.0.0" },
                },
            },
        });
        let bytes = serde_json::to_vec(&message).expect("serializes");
        if bytes.len() >= 4000 {
            return bytes;
        }
    }
}

fn envelope(c: &mut Criterion) {
    let bytes = tools_call_4k();
    let parsed = Message::parse(&bytes).expect("valid message");
    let mut group = c.benchmark_group("envelope 4KB tools/call");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| Message::parse(black_box(&bytes)).expect("valid"))
    });
    group.bench_function("to_bytes", |b| b.iter(|| black_box(&parsed).to_bytes()));
    group.bench_function("parse + to_bytes", |b| {
        b.iter(|| {
            Message::parse(black_box(&bytes))
                .expect("valid")
                .into_bytes()
        })
    });
    // What forwarding a request upstream does to it: a new id from the upstream's id space
    // and the progress token mapped to ours, then back to bytes.
    group.bench_function("id + progress-token rewrite round trip", |b| {
        let mut next: u64 = 1;
        b.iter(|| {
            let message = Message::parse(black_box(&bytes)).expect("valid");
            let Message::Request {
                method, mut params, ..
            } = message
            else {
                unreachable!("the benchmark message is a request")
            };
            next += 1;
            if let Some(params) = params.as_mut() {
                meta::get_mut(params).insert(
                    meta::PROGRESS_TOKEN.into(),
                    Value::String(format!("sb-{next}")),
                );
            }
            Message::request(RequestId::from(next), method, params).into_bytes()
        })
    });
    // A response on its way back: only the id changes.
    let response = serde_json::to_vec(&json!({
        "jsonrpc": "2.0",
        "id": 99,
        "result": { "content": [{ "type": "text", "text": "x".repeat(3900) }], "isError": false },
    }))
    .expect("serializes");
    group.bench_function("response id rewrite round trip", |b| {
        b.iter(|| {
            let Message::Response { result, .. } =
                Message::parse(black_box(&response)).expect("valid")
            else {
                unreachable!("the benchmark message is a response")
            };
            Message::response(RequestId::from(4711u64), result).into_bytes()
        })
    });
    group.finish();
}

/// 500 servers × 20 tools; every tenth name has a dot, so it needs the hashed form.
fn catalog_names() -> Vec<Qualified> {
    let mut names = Vec::with_capacity(10_000);
    for server in 0..500 {
        for tool in 0..20 {
            let name = if tool % 10 == 9 {
                format!("ns.tool_{tool}")
            } else {
                format!("tool_{tool}")
            };
            names.push(Qualified {
                server: format!("server{server:03}"),
                name,
            });
        }
    }
    names
}

fn naming(c: &mut Criterion) {
    let names = catalog_names();
    let mut group = c.benchmark_group("naming 10,000 tools");
    group.sample_size(20);
    group.bench_function("NameTable::prefixed", |b| {
        b.iter_batched(|| names.clone(), NameTable::prefixed, BatchSize::LargeInput)
    });
    let table = NameTable::prefixed(names.clone());
    let exposed: Vec<String> = names
        .iter()
        .map(|q| table.exposed(&q.server, &q.name).expect("named").to_owned())
        .collect();
    group.finish();
    let mut group = c.benchmark_group("naming lookups in 10,000 tools");
    let mut turn = 0;
    group.bench_function("resolve (exposed → server, name)", |b| {
        b.iter(|| {
            turn = (turn + 7919) % exposed.len();
            table.resolve(black_box(&exposed[turn])).expect("known")
        })
    });
    group.bench_function("exposed (server, name → exposed)", |b| {
        b.iter(|| {
            turn = (turn + 7919) % names.len();
            let q = &names[turn];
            table
                .exposed(black_box(&q.server), black_box(&q.name))
                .expect("known")
        })
    });
    group.finish();
}

fn header_mirroring(c: &mut Criterion) {
    let schema = json!({
        "type": "object",
        "properties": {
            "region": { "type": "string", "x-mcp-header": "Region" },
            "priority": { "type": "integer", "x-mcp-header": "Priority" },
            "query": { "type": "string", "description": "free text" },
            "options": {
                "type": "object",
                "properties": { "depth": { "type": "integer" }, "exact": { "type": "boolean" } },
            },
        },
        "required": ["region"],
    });
    let found = headers::param_headers(&schema).expect("valid annotations");
    let arguments = json!({ "region": "us-west1", "priority": 3, "query": "x" });
    let mut group = c.benchmark_group("x-mcp-header");
    group.bench_function("param_headers (schema scan)", |b| {
        b.iter(|| headers::param_headers(black_box(&schema)).expect("valid"))
    });
    group.bench_function("param_header_values (per call)", |b| {
        b.iter(|| headers::param_header_values(black_box(&found), Some(black_box(&arguments))))
    });
    group.finish();
}

criterion_group!(benches, envelope, naming, header_mirroring);
criterion_main!(benches);
