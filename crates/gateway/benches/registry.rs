//! The capability registry: memory held per registered tool (a counting allocator), the
//! cost of observing a server's lists (digest of the set; unchanged and changed), and a
//! full `tools/list` of 10,000 tools from a fresh snapshot (every page rendered, as the
//! first client after a change sees it).
//!
//! Run with `cargo bench -p switchboard-gateway --bench registry`. The memory figures are
//! printed before the timings.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use switchboard_config::{Pin, RegistrySettings};
use switchboard_gateway::catalog::{Catalog, Listing, ServerFacts, ServerLists};
use switchboard_gateway::db::Db;
use switchboard_gateway::registry::{Registry, hash};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same layout as asked.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as `GlobalAlloc::realloc` requires of the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// A tool as servers list them (the catalog bench's shape).
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

const SERVERS: usize = 500;
const TOOLS: usize = 20;

fn lists() -> BTreeMap<String, Arc<ServerLists>> {
    (0..SERVERS)
        .map(|server| {
            let lists = ServerLists {
                tools: (0..TOOLS).map(|index| tool(server, index)).collect(),
                ..ServerLists::default()
            };
            (format!("server{server:03}"), Arc::new(lists))
        })
        .collect()
}

fn per_tool(bytes: isize) -> isize {
    bytes / (SERVERS * TOOLS) as isize
}

/// Bytes per tool: the lists as read, the old arrangement (the server's lists, the
/// catalog's renamed copy, the JSON store's copy) and the registry's (the lists shared by
/// the server and the registry, the catalog's copy, the registry's digests; with
/// `trust_first`, also the approved version's per-field digests).
fn memory() {
    let start = live();
    let all = lists();
    let read = live() - start;

    let before = live();
    let catalog = Catalog::build(&all, false);
    let stored: BTreeMap<String, ServerLists> = all
        .iter()
        .map(|(name, l)| (name.clone(), ServerLists::clone(l)))
        .collect();
    let old = live() - before;
    drop((catalog, stored));

    for pin in [Pin::Off, Pin::TrustFirst] {
        let before = live();
        let registry = Registry::open(Arc::new(Db::memory()), None, &RegistrySettings::default())
            .expect("opens");
        let db_overhead = live() - before;
        let before = live();
        for (name, l) in &all {
            registry.observe(name, pin, l.clone(), true);
        }
        let shown: BTreeMap<String, Arc<ServerLists>> = all
            .keys()
            .map(|name| (name.clone(), registry.shown(name).expect("observed")))
            .collect();
        let catalog = Catalog::build(&shown, false);
        let new = live() - before;
        println!(
            "memory per tool ({} tools of ~{} bytes of JSON): as read {} B; before (lists + catalog copy + JSON store copy) {} B; registry pin={} (lists shared + catalog copy + registry; in-memory redb pages included) {} B; in-memory database at open {} B",
            SERVERS * TOOLS,
            serde_json::to_vec(&tool(0, 0)).expect("serializes").len(),
            per_tool(read),
            per_tool(read + old),
            pin.as_str(),
            per_tool(read + new),
            db_overhead,
        );
        drop((catalog, shown, registry));
    }
}

fn bench(c: &mut Criterion) {
    memory();
    let all = lists();
    let mut group = c.benchmark_group("registry");
    group.sample_size(20);
    let registry =
        Registry::open(Arc::new(Db::memory()), None, &RegistrySettings::default()).expect("opens");
    let one = all.values().next().expect("a server").clone();
    registry.observe("s", Pin::TrustFirst, one.clone(), true);
    group.bench_function("observe: 20-tool server, unchanged", |b| {
        b.iter(|| registry.observe("s", Pin::TrustFirst, black_box(one.clone()), true))
    });
    let mut turn = 0u64;
    group.bench_function(
        "observe: 20-tool server, changed (new version committed)",
        |b| {
            b.iter(|| {
                turn += 1;
                let mut changed = ServerLists::clone(&one);
                changed.tools[0]["description"] = json!(format!("changed {turn}"));
                registry.observe("t", Pin::Off, Arc::new(changed), true)
            })
        },
    );
    let shown: BTreeMap<String, Arc<ServerLists>> = all.clone();
    group.bench_function(
        "tools/list of 10,000 tools, fresh snapshot (build + render all pages)",
        |b| {
            b.iter(|| {
                let catalog = Catalog::build(black_box(&shown), false);
                let mut bytes = 0;
                let mut index = 0;
                while let Some(page) = catalog.rendered_page(Listing::Tools, index) {
                    bytes += page.get().len();
                    index += 1;
                }
                bytes
            })
        },
    );
    // What a catalog build spends on each server's cache version (`ServerFacts`): hashing
    // every tool, as before, or the registry's digest of the set, taken when it changed.
    let policy = Arc::new(switchboard_config::ServerPolicy::default());
    group.bench_function(
        "ServerFacts of 500 servers × 20 tools: hash every tool",
        |b| {
            b.iter(|| {
                shown
                    .values()
                    .map(|l| ServerFacts::new(policy.clone(), 1, black_box(l)).version)
                    .fold(0, u64::wrapping_add)
            })
        },
    );
    let digests: Vec<_> = shown.values().map(|l| hash::lists(l)).collect();
    group.bench_function(
        "ServerFacts of 500 servers × 20 tools: registry digest",
        |b| {
            b.iter(|| {
                digests
                    .iter()
                    .map(|d| ServerFacts::of_digest(policy.clone(), 1, black_box(d)).version)
                    .fold(0, u64::wrapping_add)
            })
        },
    );
    let catalog = Catalog::build(&shown, false);
    let _ = catalog.rendered_page(Listing::Tools, 0);
    group.bench_function(
        "tools/list of 10,000 tools, snapshot already rendered",
        |b| {
            b.iter(|| {
                let mut bytes = 0;
                let mut index = 0;
                while let Some(page) = catalog.rendered_page(Listing::Tools, index) {
                    bytes += page.get().len();
                    index += 1;
                }
                bytes
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
