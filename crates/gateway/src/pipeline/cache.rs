//! The result cache step (order 7): answers a repeated `tools/call` from memory.
//!
//! **What is cached.** Opt-in per tool: `[servers.NAME.tools.TOOL] cache_ttl_ms`, or
//! every tool the server marks `readOnlyHint` when the server is trusted with its
//! annotations (`trust_annotations = true` and `cache_read_only_ms`). Only successful,
//! complete results: not `isError`, not `input_required`, not a task (`resultType:
//! "task"`: its id is one task's), and never a call that carries MRTR state
//! (`requestState`, `inputResponses`), whose result depends on more than its arguments. An upstream's caching hints are respected: `ttlMs` shortens the TTL (`0`:
//! not cached), `cacheScope` chooses who may share the entry.
//!
//! **Key.** Scope, the caller's era, server, the server's version in the call's snapshot
//! (`catalog::ServerFacts::version`: a reload or a changed tool list gives a new
//! version, so nothing cached before is served after), the upstream tool name, and the
//! SHA-256 of the canonical arguments. The scope is the caller's authorization context:
//! its tenant, or its own principal when it has none (`private`, the default). An entry
//! is shared across tenants (`public`) only when the upstream said `cacheScope: "public"`
//! and the server's instances do not depend on the caller (`sharing` is `shared` or
//! `pool`; a `per_tenant` or `per_session` instance's answer is that caller's). Steps
//! that decide by principal (allow-lists, rules, limits, budgets) run before this one,
//! so a hit is only served to a caller they admitted, and counts against its limits.
//!
//! **Bounds.** At most [`MAX_BYTES`] of results (weighed by their JSON size; the least
//! recently used go first), none larger than [`MAX_ENTRY_BYTES`]; an expired entry is
//! dropped when it is next looked up. A hit runs no later step: the redaction (inner)
//! already ran on the stored result.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::{Call, Flow, Hooks, Step, StepFuture, Target};
use crate::error::Error;
use crate::metrics::CacheMetrics;
use crate::reply::Reply;
use switchboard_config::{ServerPolicy, Sharing};

/// Total size of the cached results (their JSON), at most.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;
/// A result larger than this is not cached.
pub const MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// Longest TTL, whatever is configured or hinted.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Scope {
    /// Shared by every caller (the upstream said `public`).
    Public,
    /// One authorization context: `tenant:NAME` or `principal:ID`.
    Private(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    scope: Scope,
    /// The caller's protocol era: results are stored as the terminal gave them, before
    /// the era's decoration, but bridging may already have shaped them for the era.
    era: switchboard_protocol::Era,
    server: String,
    version: u64,
    tool: String,
    arguments: [u8; 32],
}

#[derive(Debug)]
struct Entry {
    result: Value,
    fresh_until: Instant,
    bytes: u64,
}

#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Key, Arc<Entry>> for Weight {
    fn weight(&self, _key: &Key, entry: &Arc<Entry>) -> u64 {
        entry.bytes.max(1)
    }
}

/// The result cache.
pub struct ResultCache {
    entries: quick_cache::sync::Cache<Key, Arc<Entry>, Weight>,
    metrics: CacheMetrics,
}

impl ResultCache {
    pub fn new(metrics: &crate::metrics::Metrics) -> ResultCache {
        ResultCache::with_capacity(MAX_BYTES, metrics)
    }

    /// A cache of `bytes` (tests, benchmarks).
    pub fn with_capacity(bytes: u64, metrics: &crate::metrics::Metrics) -> ResultCache {
        ResultCache {
            entries: quick_cache::sync::Cache::with_weighter(4096, bytes, Weight),
            metrics: metrics.cache(),
        }
    }

    /// Whether any server of `config` asks for caching (else the step is not built).
    pub fn is_needed(config: &switchboard_config::Config) -> bool {
        config.servers.values().any(|server| {
            server.policy.cache_read_only.is_some()
                || server.policy.tools.values().any(|t| t.cache_ttl.is_some())
        })
    }

    /// Entries held (tests, `/admin`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }
}

/// A missed call's key, from `before` to `after` (in the call's notes).
pub(crate) struct Pending(Cacheable);

/// What a cacheable call is, worked out once in `before`.
struct Cacheable {
    server: String,
    tool: String,
    version: u64,
    ttl: Duration,
    sharing: Sharing,
    arguments: [u8; 32],
    private: Scope,
    era: switchboard_protocol::Era,
}

/// The configured TTL of `tool` on a server with `policy`, whose catalog entry is
/// `definition`; `None`: not cached.
fn configured_ttl(
    policy: &ServerPolicy,
    tool: &str,
    definition: Option<&Value>,
) -> Option<Duration> {
    if let Some(ttl) = policy.tools.get(tool).and_then(|t| t.cache_ttl) {
        return Some(ttl);
    }
    let read_only = definition
        .and_then(|d| d.pointer("/annotations/readOnlyHint"))
        .and_then(Value::as_bool)
        == Some(true);
    policy
        .cache_read_only
        .filter(|_| policy.trust_annotations && read_only)
}

fn cacheable(call: &Call<'_>) -> Option<Cacheable> {
    if call.method != "tools/call" {
        return None;
    }
    let Target::Upstream(route) = &call.target else {
        return None;
    };
    if call.params.get("requestState").is_some() || call.params.get("inputResponses").is_some() {
        return None;
    }
    let facts = call.catalog.server_facts(&route.server)?;
    let definition = call.catalog.tool(&route.exposed).map(|(_, d)| d.upstream());
    let ttl = configured_ttl(&facts.policy, &route.name, definition)?.min(MAX_TTL);
    let empty = Value::Object(serde_json::Map::new());
    let arguments = crate::audit::digest::canonical_sha256(call.arguments().unwrap_or(&empty));
    let principal = &call.ctx.principal;
    let private = match principal.tenant() {
        Some(tenant) => Scope::Private(format!("tenant:{tenant}")),
        None => Scope::Private(format!("principal:{}", principal.id())),
    };
    Some(Cacheable {
        server: route.server.clone(),
        tool: route.name.clone(),
        version: facts.version,
        ttl,
        sharing: facts.policy.sharing,
        arguments,
        private,
        era: call.ctx.era,
    })
}

impl Cacheable {
    fn key(&self, scope: Scope) -> Key {
        Key {
            scope,
            era: self.era,
            server: self.server.clone(),
            version: self.version,
            tool: self.tool.clone(),
            arguments: self.arguments,
        }
    }

    /// Whether a `public` answer may be shared: the instance that gave it serves everyone.
    fn may_share(&self) -> bool {
        matches!(self.sharing, Sharing::Shared | Sharing::Pool)
    }
}

impl ResultCache {
    fn lookup(&self, key: &Key) -> Option<Value> {
        let entry = self.entries.get(key)?;
        if Instant::now() >= entry.fresh_until {
            self.entries
                .remove_if(key, |current| Arc::ptr_eq(current, &entry));
            return None;
        }
        Some(entry.result.clone())
    }

    /// Stores `result` when it is a complete success and its hints allow it.
    fn store(&self, what: &Cacheable, result: &Value) {
        let Some(object) = result.as_object() else {
            return;
        };
        if object.get("isError").and_then(Value::as_bool) == Some(true)
            || matches!(
                object.get("resultType").and_then(Value::as_str),
                Some("input_required" | "task")
            )
        {
            return;
        }
        let mut ttl = what.ttl;
        if let Some(hint) = object.get("ttlMs") {
            // Negative or not a number: treated as 0, as the spec asks.
            let hinted = hint.as_u64().unwrap_or(0);
            ttl = ttl.min(Duration::from_millis(hinted));
        }
        if ttl.is_zero() {
            return;
        }
        let scope = match object.get("cacheScope").and_then(Value::as_str) {
            Some("public") if what.may_share() => Scope::Public,
            _ => what.private.clone(),
        };
        let bytes = serde_json::to_vec(result).map_or(u64::MAX, |b| b.len() as u64);
        if bytes > MAX_ENTRY_BYTES {
            return;
        }
        self.entries.insert(
            what.key(scope),
            Arc::new(Entry {
                result: result.clone(),
                fresh_until: Instant::now() + ttl,
                bytes,
            }),
        );
        self.metrics.stores.inc(&what.server);
    }
}

impl Step for ResultCache {
    fn name(&self) -> &'static str {
        "cache"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BOTH
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        let flow = match cacheable(call) {
            None => Flow::Continue,
            Some(what) => {
                let found = self.lookup(&what.key(what.private.clone())).or_else(|| {
                    what.may_share()
                        .then(|| self.lookup(&what.key(Scope::Public)))
                        .flatten()
                });
                match found {
                    Some(result) => {
                        self.metrics.hits.inc(&what.server);
                        Flow::Respond(Reply::Value(result))
                    }
                    None => {
                        self.metrics.misses.inc(&what.server);
                        call.notes.hold_cache(Pending(what));
                        Flow::Continue
                    }
                }
            }
        };
        Box::pin(std::future::ready(Ok(flow)))
    }

    fn after<'a>(
        &'a self,
        call: &'a Call<'_>,
        outcome: &'a mut Result<Reply, Error>,
    ) -> StepFuture<'a, ()> {
        if let (Ok(Reply::Value(result)), Some(Pending(what))) =
            (&*outcome, call.notes.take_cache())
        {
            self.store(&what, result);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests;
