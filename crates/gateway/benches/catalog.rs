//! Micro-benchmarks of the merged catalog: `Catalog::build` for 500 servers × 20 tools (run
//! on start-up and on every upstream list change), name resolution on the call path, and
//! one 1,000-entry `tools/list` page: copied and serialized per request (as before), and as
//! served now (rendered once per snapshot).
//!
//! Run with `cargo bench -p switchboard-gateway`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_gateway::catalog::{Catalog, Listing, ServerLists};
use switchboard_gateway::reply::Page;
use switchboard_protocol::RequestId;

/// A tool as servers list them: description, a small input schema, an annotation block.
fn tool(server: usize, index: usize) -> Value {
    json!({
        "name": format!("tool_{index}"),
        "title": format!("Tool {index} of server {server}"),
        "description": format!("Does task {index} for server {server}; returns a short text result."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "What to look for" },
                "limit": { "type": "integer", "minimum": 1, "maximum": 100 },
            },
            "required": ["query"],
        },
        "annotations": { "readOnlyHint": true },
    })
}

fn lists(servers: usize, tools: usize) -> BTreeMap<String, Arc<ServerLists>> {
    (0..servers)
        .map(|server| {
            let lists = ServerLists {
                tools: (0..tools).map(|index| tool(server, index)).collect(),
                ..ServerLists::default()
            };
            (format!("server{server:03}"), Arc::new(lists))
        })
        .collect()
}

fn build(c: &mut Criterion) {
    let all = lists(500, 20);
    let mut group = c.benchmark_group("catalog 500 servers × 20 tools");
    group.sample_size(20);
    group.bench_function("Catalog::build", |b| {
        b.iter(|| Catalog::build(black_box(&all), false))
    });
    let catalog = Catalog::build(&all, false);
    assert_eq!(catalog.tools.len(), 10_000);
    let exposed: Vec<String> = catalog
        .tools
        .iter()
        .map(|tool| tool.name().to_owned())
        .collect();
    let mut turn = 0;
    group.bench_function("resolve_tool + tool_param_headers (per call)", |b| {
        b.iter(|| {
            turn = (turn + 7919) % exposed.len();
            let name = black_box(&exposed[turn]);
            let target = catalog.resolve_tool(name).expect("known");
            (target, catalog.tool_param_headers(name).len())
        })
    });
    // What serving one page of tools/list costs besides the HTTP exchange: copying 1,000
    // entries out of the snapshot and serializing the result.
    group.bench_function("tools/list page of 1,000: copy + serialize", |b| {
        b.iter(|| {
            let page: Vec<Value> = catalog.tools[..1000].iter().map(|t| t.to_value()).collect();
            let result = json!({ "tools": page, "nextCursor": "MTAwMA" });
            serde_json::to_vec(&result).expect("serializes")
        })
    });
    group.bench_function("tools/list page of 1,000: serialize only", |b| {
        b.iter(|| serde_json::to_vec(&catalog.tools[..1000]).expect("serializes"))
    });
    // What the gateway does today: the page is rendered once per snapshot, every request
    // copies the rendered bytes into its response.
    let catalog = Arc::new(catalog);
    let id = RequestId::from(7);
    group.bench_function("tools/list page of 1,000: as served (rendered once)", |b| {
        b.iter(|| {
            let page = Page::of(catalog.clone(), Listing::Tools, 1).expect("a second page");
            page.response_bytes(black_box(&id))
        })
    });
    group.finish();
}

criterion_group!(benches, build);
criterion_main!(benches);
