//! What `[access]` adds to a call, in-process: the full access chain — API key check,
//! allow-list view and resolution, a CEL argument rule, a rate limit, a daily budget (and
//! a concurrency cap) — against an empty chain, one call at a time and 16 at once; and
//! `tools/list` of 10,000 tools through a per-tenant view (every page, as served; and the
//! first request after a catalog change, which builds the view on the new snapshot).
//!
//! The gateway runs in-process (`Gateway::start_with_steps`) in front of 20 dormant lazy
//! servers whose stored catalogs hold 500 tools each; the access steps are the ones
//! `chain::declared` builds from the config, followed by a step that answers in the
//! upstream's place, so both variants measure the same path minus the upstream hop
//! (which the access chain does not change). Identity is the HTTP face's own check of
//! the `X-API-Key` header (`Authenticator::authenticate`).
//!
//! Run with `cargo bench -p switchboard-gateway --bench access`. The bench uses mimalloc,
//! as the binary does (glibc's allocator makes every variant slower, allocation-heavy
//! steps most).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::HeaderMap;
use serde_json::{Value, json};
use switchboard_config::{AccessSettings, Config, ConfigFormat};
use switchboard_gateway::access::Authenticator;
use switchboard_gateway::catalog::{Catalog, Listing, PAGE_SIZE, ServerLists};
use switchboard_gateway::db::Db;
use switchboard_gateway::metrics::Metrics;
use switchboard_gateway::pipeline::{Call, Flow, Hooks, Step, StepFuture, Target, chain};
use switchboard_gateway::principal::{Face, Peer, Principal};
use switchboard_gateway::registry::Registry;
use switchboard_gateway::reply::{Page, Reply};
use switchboard_gateway::{ClientCtx, Gateway};
use switchboard_protocol::{Era, RequestId};
use tokio_util::sync::CancellationToken;

/// The allocator the `switchboard` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVERS: usize = 20;
const TOOLS_PER_SERVER: usize = 500;
const KEY: &str = "bench-key-0123456789"; // as in KEY_PART

/// The parts of the access config, added one at a time: a key of tenant acme, its
/// allow-list (every server, 2 % of the tools hidden), an argument rule that reads the
/// arguments, a rate limit and a daily budget that never refuse during the run.
const KEY_PART: &str = r#"
[[access.keys]]
id = "bench"
key = "bench-key-0123456789"
tenant = "acme"
"#;
const ALLOW_PART: &str = r#"
[access.tenants.acme]
servers = { allow = ["fx*"] }
tools = { deny = ["*__tool_49?"] }
"#;
const RULE_PART: &str = r#"
[[access.rules]]
when = "tool == 'fx00__tool_7' && has(args.query) && args.query.startsWith('secret')"
message = "no secrets"
"#;
const LIMIT_PART: &str = r#"
[[access.limits]]
per = "principal"
requests = 1000000000
period_ms = 1000
"#;
const BUDGET_PART: &str = r#"
[[access.budgets]]
per = "tenant"
calls = 1000000000000
"#;
const CONCURRENCY_PART: &str = r#"
[[access.concurrency]]
per = "tenant"
max = 64
"#;
/// Top-level `[access]` keys must come before the tables.
const COMMIT_PER_CALL: &str = "[access]\nbudget_flush_ms = 0\n";

fn access_of(parts: &[&str]) -> AccessSettings {
    let text = parts.concat();
    let config = switchboard_config::parse(&text, ConfigFormat::Native, None).expect("valid");
    config.access.expect("an [access] section")
}

/// The full chain the issue names: key + allow + rule + limit + budget.
fn access() -> AccessSettings {
    access_of(&[KEY_PART, ALLOW_PART, RULE_PART, LIMIT_PART, BUDGET_PART])
}

/// The `[access]` steps `chain::declared` builds for `access` (with their budget ledger
/// on `db`), without the steps a config adds around them.
fn access_steps(access: &AccessSettings, db: &Arc<Db>) -> Vec<Arc<dyn Step>> {
    let metrics = Metrics::default();
    let config = Config {
        access: Some(access.clone()),
        ..Config::default()
    };
    let (parts, _) = chain::declared(&config, Vec::new(), &metrics, db, None).expect("built");
    parts.access_steps(Some(access), &metrics)
}

/// Answers every call to a server in the upstream's place (last in the chain).
struct Answer;

impl Step for Answer {
    fn name(&self) -> &'static str {
        "answer"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        let flow = match call.target {
            Target::Upstream(_) => Flow::Respond(Reply::Value(
                json!({ "content": [{ "type": "text", "text": "ok" }] }),
            )),
            _ => Flow::Continue,
        };
        Box::pin(std::future::ready(Ok(flow)))
    }
}

fn tool(server: usize, index: usize) -> Value {
    json!({
        "name": format!("tool_{index}"),
        "description": format!("Does task {index} for server {server}; returns a short text result."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": { "type": "string", "description": "What to look for" },
                "limit": { "type": "integer", "minimum": 1, "maximum": 100 },
            },
            "required": ["query"],
        },
    })
}

fn lists() -> BTreeMap<String, Arc<ServerLists>> {
    (0..SERVERS)
        .map(|server| {
            let lists = ServerLists {
                tools: (0..TOOLS_PER_SERVER)
                    .map(|index| tool(server, index))
                    .collect(),
                ..ServerLists::default()
            };
            (format!("fx{server:02}"), Arc::new(lists))
        })
        .collect()
}

/// A state dir whose registry knows every server's catalog, and a config of dormant lazy
/// servers (never started: the chain answers before the terminal; argument validation
/// off, so that the chain is only what the bench gives it).
fn gateway_config(state: &std::path::Path) -> Config {
    let db = Db::open(Some(state)).expect("the database opens");
    let registry = Registry::open(db, None, &Default::default()).expect("the registry opens");
    let mut text = format!("[gateway]\nstate_dir = {:?}\n", state.display().to_string());
    for (name, lists) in lists() {
        registry.observe(&name, switchboard_config::Pin::Off, lists, true);
        text.push_str(&format!(
            "[servers.{name}]\ncommand = \"/nonexistent/switchboard-bench-server\"\nlazy = true\nvalidate = false\n"
        ));
    }
    // Closed before the gateway opens the same file.
    drop(registry);
    switchboard_config::parse(&text, ConfigFormat::Native, None).expect("valid")
}

struct Bench {
    gateway: Gateway,
    auth: Option<Arc<Authenticator>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Bench {
    /// A gateway whose chain is `access`'s declared steps (none: empty) and [`Answer`].
    /// `durable`: the budget ledger on a file (commit-per-call figures), else in memory.
    fn start(
        runtime: &tokio::runtime::Runtime,
        access: Option<AccessSettings>,
        durable: bool,
    ) -> Bench {
        let state = tempfile::tempdir().unwrap();
        let ledger_dir = tempfile::tempdir().unwrap();
        let config = gateway_config(state.path());
        let db = if durable {
            Db::open(Some(ledger_dir.path())).unwrap()
        } else {
            Arc::new(Db::memory())
        };
        let mut steps: Vec<Arc<dyn Step>> = Vec::new();
        if let Some(access) = &access {
            steps.extend(access_steps(access, &db));
        }
        steps.push(Arc::new(Answer));
        let gateway = runtime
            .block_on(Gateway::start_with_steps(&config, steps))
            .expect("gateway starts");
        assert_eq!(gateway.catalog().tools.len(), SERVERS * TOOLS_PER_SERVER);
        Bench {
            gateway,
            auth: access.map(|a| Arc::new(Authenticator::new(&a))),
            _dirs: vec![state, ledger_dir],
        }
    }

    /// What the HTTP face knows when the request's body is read: the caller.
    async fn ctx(&self, headers: &HeaderMap) -> ClientCtx {
        let principal = match &self.auth {
            None => Principal::anonymous_stateless(Face::Http, "c1", Peer::default()),
            Some(auth) => {
                let identity = auth
                    .authenticate(headers)
                    .await
                    .expect("the key is valid")
                    .expect("a credential");
                Principal::authenticated(Face::Http, "c1", Peer::default(), &identity)
            }
        };
        ClientCtx {
            era: Era::Modern,
            protocol_version: "2026-07-28".into(),
            capabilities: json!({}),
            client_info: None,
            principal,
            notify: None,
            peer: None,
            cancel: CancellationToken::new(),
            meta_tools: false,
            tools_mode: Default::default(),
        }
    }

    /// One `tools/call`, as the HTTP face runs it after reading the body.
    async fn call(&self, headers: &HeaderMap, params: &Value) -> Reply {
        let ctx = self.ctx(headers).await;
        match self
            .gateway
            .handle_reply(&ctx, "tools/call", Some(params.clone()))
            .await
        {
            Ok(reply) => reply,
            Err(error) => panic!("refused: {error:?}"),
        }
    }
}

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-api-key", KEY.parse().unwrap());
    headers
}

fn call_params() -> Value {
    json!({ "name": "fx07__tool_123", "arguments": { "query": "weather in Lisbon", "limit": 5 } })
}

fn per_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let variants = [
        ("empty chain", None, false),
        ("key", Some(access_of(&[KEY_PART])), false),
        (
            "key + allow",
            Some(access_of(&[KEY_PART, ALLOW_PART])),
            false,
        ),
        (
            "key + allow + rule",
            Some(access_of(&[KEY_PART, ALLOW_PART, RULE_PART])),
            false,
        ),
        (
            "key + allow + rule + limit",
            Some(access_of(&[KEY_PART, ALLOW_PART, RULE_PART, LIMIT_PART])),
            false,
        ),
        (
            "key + allow + rule + limit + budget (full)",
            Some(access()),
            false,
        ),
        (
            "full + concurrency cap",
            Some(access_of(&[
                KEY_PART,
                ALLOW_PART,
                RULE_PART,
                LIMIT_PART,
                BUDGET_PART,
                CONCURRENCY_PART,
            ])),
            false,
        ),
        (
            "full, budget_flush_ms = 0 (commit per call)",
            Some(access_of(&[
                COMMIT_PER_CALL,
                KEY_PART,
                ALLOW_PART,
                RULE_PART,
                LIMIT_PART,
                BUDGET_PART,
            ])),
            true,
        ),
        // The baseline again: how far the machine drifted during the group.
        ("empty chain (again, last)", None, false),
    ];
    let headers = headers();
    let params = call_params();
    let mut group = c.benchmark_group("tools/call in-process, c=1");
    for (label, access, durable) in variants {
        let bench = Bench::start(&runtime, access, durable);
        group.bench_function(label, |b| {
            b.iter(|| runtime.block_on(bench.call(black_box(&headers), black_box(&params))))
        });
    }
    group.finish();
}

/// 16 clients calling at once on a 2-thread runtime (this machine's cores), 64 calls
/// each per iteration: the time per call under contention (criterion's figure is per
/// iteration of 1,024 calls; its throughput line is calls/s).
fn concurrent(c: &mut Criterion) {
    const CLIENTS: usize = 16;
    const CALLS: usize = 64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let headers = Arc::new(headers());
    let params = Arc::new(call_params());
    let mut group = c.benchmark_group("tools/call in-process, c=16");
    group.throughput(Throughput::Elements((CLIENTS * CALLS) as u64));
    group.sample_size(30);
    for (label, access) in [
        ("empty chain", None),
        ("key + allow + rule + limit + budget (full)", Some(access())),
    ] {
        let bench = Arc::new(Bench::start(&runtime, access, false));
        group.bench_function(label, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let clients: Vec<_> = (0..CLIENTS)
                        .map(|_| {
                            let (bench, headers, params) =
                                (bench.clone(), headers.clone(), params.clone());
                            tokio::spawn(async move {
                                for _ in 0..CALLS {
                                    black_box(bench.call(&headers, &params).await);
                                }
                            })
                        })
                        .collect();
                    for client in clients {
                        client.await.unwrap();
                    }
                })
            })
        });
    }
    group.finish();
}

/// The bytes of a `tools/list` reply and its `nextCursor`, found from the end (the members
/// after the entries), as a client walking the pages would read them.
fn page_bytes(reply: Reply, id: &RequestId) -> (Vec<u8>, Option<String>) {
    let Reply::Page(page) = reply else {
        panic!("a list page")
    };
    let bytes = page.response_bytes(id);
    let marker = b"\"nextCursor\":\"";
    let cursor = bytes
        .windows(marker.len())
        .rposition(|w| w == marker)
        .map(|at| {
            let start = at + marker.len();
            let end = start + bytes[start..].iter().position(|&b| b == b'"').unwrap();
            String::from_utf8(bytes[start..end].to_vec()).unwrap()
        });
    (bytes, cursor)
}

fn list(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let headers = headers();
    let id = RequestId::from(7);
    let mut group = c.benchmark_group("tools/list of 10,000 tools, every page");
    group.sample_size(20);
    for (label, access) in [
        ("no view (empty chain)", None),
        ("per-tenant view (allow-list)", Some(access())),
    ] {
        let bench = Bench::start(&runtime, access, false);
        let walk = || {
            runtime.block_on(async {
                let ctx = bench.ctx(&headers).await;
                let (mut pages, mut entries_bytes, mut cursor) = (0, 0, None::<String>);
                loop {
                    let params = match &cursor {
                        None => json!({}),
                        Some(cursor) => json!({ "cursor": cursor }),
                    };
                    let reply = bench
                        .gateway
                        .handle_reply(&ctx, "tools/list", Some(params))
                        .await
                        .expect("a page");
                    let (bytes, next) = page_bytes(reply, &id);
                    pages += 1;
                    entries_bytes += bytes.len();
                    match next {
                        Some(next) => cursor = Some(next),
                        None => return (pages, entries_bytes),
                    }
                }
            })
        };
        let (pages, bytes) = walk();
        println!("{label}: {pages} pages, {bytes} bytes");
        group.bench_function(label, |b| b.iter(walk));
    }
    // A new snapshot (an upstream's list changed): the tenant's view is made on the
    // first request, which filters and renders what its page needs.
    let access = access();
    let steps = access_steps(&access, &Arc::new(Db::memory()));
    let tenant = Bench::start(&runtime, Some(access), false);
    let ctx = runtime.block_on(tenant.ctx(&headers));
    let filter = steps
        .iter()
        .find_map(|step| step.filter(&ctx.principal))
        .expect("the allow step filters");
    let all = lists();
    group.bench_function(
        "per-tenant view: first request on a new snapshot (page 1)",
        |b| {
            b.iter_batched(
                || Arc::new(Catalog::build(&all, false)),
                |catalog| {
                    let view = catalog.view(&filter.key, &filter.admit);
                    let page = Page::of_view(catalog, Some(view), Listing::Tools, 0).unwrap();
                    let bytes = page.response_bytes(&id);
                    // Returned, so that dropping the snapshot falls outside the timing.
                    (page, bytes)
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.bench_function(
        "per-tenant view: the whole filter on a new snapshot (counting the entries)",
        |b| {
            b.iter_batched(
                || Arc::new(Catalog::build(&all, false)),
                |catalog| {
                    let view = catalog.view(&filter.key, &filter.admit);
                    let len = view.len(&catalog, Listing::Tools);
                    (catalog, view, len)
                },
                BatchSize::PerIteration,
            )
        },
    );
    // What the first request cost before views were lazy (and what a client walking the
    // whole list after a change costs in total): the whole filter, every page rendered.
    group.bench_function(
        "per-tenant view: the whole filter + every page rendered on a new snapshot",
        |b| {
            b.iter_batched(
                || Arc::new(Catalog::build(&all, false)),
                |catalog| {
                    let view = catalog.view(&filter.key, &filter.admit);
                    let len = view.len(&catalog, Listing::Tools);
                    let pages: Vec<_> = (0..len.div_ceil(PAGE_SIZE))
                        .map(|index| catalog.rendered_view_page(&view, Listing::Tools, index))
                        .collect();
                    (catalog, view, pages)
                },
                BatchSize::PerIteration,
            )
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = per_call, concurrent, list
}
criterion_main!(benches);
