//! The result cache and output compaction, end to end through the real gateway binary
//! and the fixture server, which counts the calls it receives: hits never reach it,
//! misses do; TTLs (configured and the upstream's `ttlMs`) expire; tenants never share an
//! entry unless the upstream said `public`; a reload or a changed tool list invalidates;
//! a tool not configured for caching is never cached. Compaction rewrites large JSON text
//! into a shorter form that decodes to exactly the same value, and leaves text alone when
//! it would not be shorter.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_gateway::pipeline::compact;
use switchboard_testkit::{ModernHttp, Proc, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const ACME_KEY: &str = "acme-client-key-0123456789";
const GLOBEX_KEY: &str = "globex-client-key-0123456789";

fn config() -> String {
    let fixture = format!(
        "{:?}",
        binary_beside(GATEWAY, "switchboard-fixture")
            .display()
            .to_string()
    );
    format!(
        r#"
[gateway]
admin_token = "{ADMIN_TOKEN}"

[access]

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "globex-ci"
key = "{GLOBEX_KEY}"
tenant = "globex"

[access.tenants.acme]
[access.tenants.globex]

[servers.fx]
command = {fixture}
args = ["stdio"]
trust_annotations = true
cache_read_only_ms = 60000        # `lookup` is readOnlyHint: cached for a minute

[servers.fx.tools.echo]
cache_ttl_ms = 60000
compact = true
"#
    )
}

struct Setup {
    gateway: Proc,
    acme: ModernHttp,
    globex: ModernHttp,
}

async fn setup() -> Setup {
    let gateway = spawn_gateway_http(GATEWAY, &config())
        .await
        .expect("gateway starts");
    let acme = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ACME_KEY)]);
    let globex = ModernHttp::with_headers(&gateway.url, &[("x-api-key", GLOBEX_KEY)]);
    Setup {
        gateway,
        acme,
        globex,
    }
}

async fn call(client: &ModernHttp, tool: &str, arguments: Value) -> Value {
    let exchange = client
        .request(
            "tools/call",
            json!({ "name": format!("fx__{tool}"), "arguments": arguments }),
        )
        .await;
    exchange.result().clone()
}

/// The fixture's count of calls received (the `stats` call itself included).
async fn upstream_calls(client: &ModernHttp) -> u64 {
    call(client, "stats", json!({})).await["structuredContent"]["calls"]
        .as_u64()
        .unwrap()
}

/// `lookup` answers with the fixture's call count at the time: equal counts, same answer.
async fn lookup(client: &ModernHttp, arguments: Value) -> u64 {
    call(client, "lookup", arguments).await["structuredContent"]["calls"]
        .as_u64()
        .unwrap()
}

impl Setup {
    async fn metric(&self, name: &str) -> u64 {
        let base = self.gateway.url.trim_end_matches("/mcp");
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("{name}{{server=\"fx\"}} ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map_or(0, |value| value.trim().parse().unwrap())
    }

    async fn reload(&self) {
        let base = self.gateway.url.trim_end_matches("/mcp");
        let response = reqwest::Client::new()
            .post(format!("{base}/admin/servers/fx/reload"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_misses_ttl_and_tools_never_cached() {
    let setup = setup().await;
    let acme = &setup.acme;

    // Miss, then hit: the second call never reaches the fixture.
    let first = lookup(acme, json!({ "key": "a" })).await;
    let before = upstream_calls(acme).await;
    assert_eq!(lookup(acme, json!({ "key": "a" })).await, first, "a hit");
    assert_eq!(
        upstream_calls(acme).await,
        before + 1,
        "only the stats call arrived"
    );
    assert_eq!(setup.metric("switchboard_cache_hits_total").await, 1);
    // Other arguments: another entry (canonical: key order does not matter).
    let other = lookup(acme, json!({ "key": "b" })).await;
    assert_ne!(other, first);
    assert_eq!(
        lookup(acme, json!({ "scope": "private", "key": "b" })).await,
        lookup(acme, json!({ "key": "b", "scope": "private" })).await
    );

    // The upstream's ttlMs shortens the TTL; ttlMs 0 is never cached.
    let short = lookup(acme, json!({ "key": "short", "ttl_ms": 300 })).await;
    assert_eq!(
        lookup(acme, json!({ "key": "short", "ttl_ms": 300 })).await,
        short
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_ne!(
        lookup(acme, json!({ "key": "short", "ttl_ms": 300 })).await,
        short,
        "expired"
    );
    let stale = lookup(acme, json!({ "key": "stale", "ttl_ms": 0 })).await;
    assert_ne!(
        lookup(acme, json!({ "key": "stale", "ttl_ms": 0 })).await,
        stale
    );

    // A tool configured for nothing is never cached: each call reaches the fixture.
    let before = upstream_calls(acme).await;
    for _ in 0..3 {
        let sum = call(acme, "add", json!({ "a": 1, "b": 2 })).await;
        assert_eq!(sum["isError"], Value::Null, "{sum}");
    }
    assert_eq!(upstream_calls(acme).await, before + 4);

    let hits = setup.metric("switchboard_cache_hits_total").await;
    let misses = setup.metric("switchboard_cache_misses_total").await;
    assert!(hits >= 3 && misses >= 6, "hits {hits}, misses {misses}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_unless_public_and_reloads_invalidate() {
    let setup = setup().await;
    let (acme, globex) = (&setup.acme, &setup.globex);

    // Private (no scope said): each tenant gets its own entry.
    let acme_value = lookup(acme, json!({ "key": "t" })).await;
    let globex_value = lookup(globex, json!({ "key": "t" })).await;
    assert_ne!(acme_value, globex_value, "globex did not get acme's entry");
    assert_eq!(lookup(globex, json!({ "key": "t" })).await, globex_value);
    assert_eq!(
        lookup(globex, json!({ "key": "t", "scope": "private" })).await,
        lookup(globex, json!({ "key": "t", "scope": "private" })).await
    );

    // `public` from a shared server: one entry for everyone.
    let shared = lookup(acme, json!({ "key": "p", "scope": "public" })).await;
    assert_eq!(
        lookup(globex, json!({ "key": "p", "scope": "public" })).await,
        shared
    );

    // A reload is a new server version: nothing cached before is served after.
    let hits = setup.metric("switchboard_cache_hits_total").await;
    setup.reload().await;
    lookup(acme, json!({ "key": "t" })).await;
    lookup(globex, json!({ "key": "p", "scope": "public" })).await;
    assert_eq!(setup.metric("switchboard_cache_hits_total").await, hits);
    let after_reload = lookup(acme, json!({ "key": "t" })).await;
    assert_eq!(lookup(acme, json!({ "key": "t" })).await, after_reload);

    // So is a changed tool list.
    let hits = setup.metric("switchboard_cache_hits_total").await;
    let listed_before = acme.request("tools/list", json!({})).await.tool_names();
    call(acme, "emit_list_changed", json!({ "kind": "tools" })).await;
    let mut changed = false;
    for _ in 0..50 {
        if acme.request("tools/list", json!({})).await.tool_names() != listed_before {
            changed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(changed, "the tool list changed");
    assert_ne!(lookup(acme, json!({ "key": "t" })).await, after_reload);
    assert_eq!(setup.metric("switchboard_cache_hits_total").await, hits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_round_trips_exactly_and_only_when_shorter() {
    let setup = setup().await;
    let acme = &setup.acme;
    let rows: Vec<Value> = (0..40)
        .map(|i| json!({ "id": i, "name": format!("row {i}"), "price": 1.50, "ok": i % 2 == 0 }))
        .collect();
    let original = json!({ "rows": rows, "count": 40 });
    let pretty = serde_json::to_string_pretty(&original).unwrap();

    let result = call(acme, "echo", json!({ "text": pretty })).await;
    let text = result["content"][0]["text"].as_str().unwrap();
    assert!(text.len() < pretty.len() / 2, "{text}");
    let decoded = compact::expand(&serde_json::from_str(text).unwrap());
    assert_eq!(decoded, original);
    assert_eq!(
        serde_json::to_string(&decoded).unwrap(),
        serde_json::to_string(&original).unwrap(),
        "exactly: order and number spelling kept"
    );
    let meta = &result["_meta"]["dev.switchboard/compaction"];
    assert_eq!(meta["blocks"][0]["form"], "table", "{result}");
    // structuredContent is the upstream's, untouched.
    assert_eq!(result["structuredContent"]["text"], pretty.as_str());
    assert!(
        setup
            .metric("switchboard_compaction_saved_tokens_total")
            .await
            > 0
    );

    // Already minified, or not JSON: left as it is.
    let minified = serde_json::to_string(&json!({ "pad": "x".repeat(400) })).unwrap();
    let result = call(acme, "echo", json!({ "text": minified })).await;
    assert_eq!(result["content"][0]["text"], minified.as_str());
    assert!(result["_meta"].get("dev.switchboard/compaction").is_none());
    let prose = format!("not json {}", "y ".repeat(300));
    let result = call(acme, "echo", json!({ "text": prose })).await;
    assert_eq!(result["content"][0]["text"], prose.as_str());

    // A tool without `compact` is never rewritten (lookup echoes nothing large, so use
    // the count of compacted blocks: one so far).
    assert_eq!(setup.metric("switchboard_compacted_blocks_total").await, 1);
}
