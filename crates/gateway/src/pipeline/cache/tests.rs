//! The cache's decisions without a gateway: what is configured, stored, shared, expired.

use std::time::Duration;

use serde_json::json;

use super::*;

fn policy(text: &str) -> ServerPolicy {
    let config = switchboard_config::parse(
        &format!("[servers.s]\ncommand = \"x\"\n{text}"),
        switchboard_config::ConfigFormat::Native,
        None,
    )
    .unwrap();
    config.servers.into_values().next().unwrap().policy
}

fn cacheable(sharing: Sharing, ttl: Duration, principal: &str) -> Cacheable {
    Cacheable {
        server: "s".into(),
        tool: "t".into(),
        version: 1,
        ttl,
        sharing,
        arguments: [0; 32],
        private: Scope::Private(format!("principal:{principal}")),
        era: switchboard_protocol::Era::Modern,
    }
}

fn ok(text: &str) -> Value {
    json!({ "content": [{ "type": "text", "text": text }] })
}

#[test]
fn configured_per_tool_or_for_trusted_read_only_tools() {
    let read_only = json!({ "name": "t", "annotations": { "readOnlyHint": true } });
    let writes = json!({ "name": "t", "annotations": { "readOnlyHint": false } });
    let per_tool = policy("[servers.s.tools.t]\ncache_ttl_ms = 2000\n");
    assert_eq!(
        configured_ttl(&per_tool, "t", None),
        Some(Duration::from_secs(2))
    );
    assert_eq!(configured_ttl(&per_tool, "other", Some(&read_only)), None);
    let trusted = policy("trust_annotations = true\ncache_read_only_ms = 500\n");
    assert_eq!(
        configured_ttl(&trusted, "t", Some(&read_only)),
        Some(Duration::from_millis(500))
    );
    assert_eq!(configured_ttl(&trusted, "t", Some(&writes)), None);
    assert_eq!(configured_ttl(&trusted, "t", None), None);
    // `readOnlyHint` from a server not trusted with its annotations is not enough.
    let error = switchboard_config::parse(
        "[servers.s]\ncommand = \"x\"\ncache_read_only_ms = 500\n",
        switchboard_config::ConfigFormat::Native,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("servers.s.cache_read_only_ms"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn stores_successes_within_their_hints_and_expires_them() {
    let cache = ResultCache::new(&crate::metrics::Metrics::default());
    let what = cacheable(Sharing::Shared, Duration::from_secs(10), "p");
    let private = what.key(what.private.clone());
    cache.store(&what, &ok("a"));
    assert_eq!(cache.lookup(&private), Some(ok("a")));
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(cache.lookup(&private), None, "expired");
    assert!(
        cache.is_empty(),
        "an expired entry is dropped when looked up"
    );

    // Not stored: tool errors, input_required, ttlMs 0 or negative, oversized results.
    for result in [
        json!({ "content": [], "isError": true }),
        json!({ "resultType": "input_required", "inputRequests": {} }),
        json!({ "resultType": "task", "taskId": "t", "status": "working", "ttlMs": 60000 }),
        json!({ "content": [], "ttlMs": 0 }),
        json!({ "content": [], "ttlMs": -5 }),
        json!({ "content": [{ "type": "text", "text": "x".repeat(MAX_ENTRY_BYTES as usize) }] }),
        json!("not an object"),
    ] {
        cache.store(&what, &result);
        assert_eq!(cache.lookup(&private), None, "{result}");
    }

    // A shorter ttlMs wins over the configured TTL.
    cache.store(&what, &json!({ "content": [], "ttlMs": 1000 }));
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(cache.lookup(&private), None);
}

#[tokio::test(start_paused = true)]
async fn shared_across_callers_only_when_public_and_the_instance_is_everyone_s() {
    let cache = ResultCache::new(&crate::metrics::Metrics::default());
    let alice = cacheable(Sharing::Shared, Duration::from_secs(10), "alice");
    let bob = cacheable(Sharing::Shared, Duration::from_secs(10), "bob");
    cache.store(&alice, &ok("private"));
    assert_eq!(cache.lookup(&bob.key(bob.private.clone())), None);
    assert_eq!(cache.lookup(&bob.key(Scope::Public)), None);

    let public = json!({ "content": [], "cacheScope": "public" });
    cache.store(&alice, &public);
    assert_eq!(cache.lookup(&bob.key(Scope::Public)), Some(public.clone()));

    // A per-tenant instance's answer stays its caller's, whatever it says.
    let tenant_a = cacheable(Sharing::PerTenant, Duration::from_secs(10), "a");
    let tenant_b = cacheable(Sharing::PerTenant, Duration::from_secs(10), "b");
    let mut other_tool = tenant_a.key(Scope::Public);
    other_tool.version = 2;
    cache.store(
        &Cacheable {
            version: 2,
            ..tenant_a
        },
        &public,
    );
    assert_eq!(cache.lookup(&other_tool), None);
    assert_eq!(
        cache.lookup(&Key {
            version: 2,
            ..tenant_b.key(tenant_b.private.clone())
        }),
        None
    );
}

#[test]
fn bounded_by_size() {
    let cache = ResultCache::with_capacity(64 * 1024, &crate::metrics::Metrics::default());
    for index in 0..200u8 {
        let mut what = cacheable(Sharing::Shared, Duration::from_secs(60), "p");
        what.arguments = [index; 32];
        cache.store(&what, &ok(&"v".repeat(1024)));
    }
    assert!(
        cache.entries.weight() <= 64 * 1024,
        "{}",
        cache.entries.weight()
    );
    assert!(cache.len() < 200);
}
