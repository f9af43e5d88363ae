//! Lifecycle and resilience policy of one server: sharing (shared, per session, pool),
//! warm pool and recycling, health probes, circuit breaker, restart backoff, bulkhead,
//! timeouts and retries (per server and per tool). Raw shapes, validation and defaults
//! live together here so `validate.rs` stays about the document.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::raw::{Table, UniqueMap};

/// How client sessions share a server's upstream instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Sharing {
    /// One instance multiplexed across all sessions (ids and tokens rewritten).
    #[default]
    Shared,
    /// One instance per client session, for stateful legacy servers.
    PerSession,
    /// Up to `pool.size` instances, least-loaded first.
    Pool,
    /// One instance per tenant of the caller (`[servers.NAME.tenants.TENANT]` credentials
    /// injected at its start), never serving another tenant; callers without a tenant and
    /// the gateway's own requests share one on the server's own credentials.
    PerTenant,
}

impl Sharing {
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::PerSession => "per_session",
            Sharing::Pool => "pool",
            Sharing::PerTenant => "per_tenant",
        }
    }
}

/// Warm pool and recycling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPolicy {
    /// Most instances (pool mode; per-session mode: most sessions with an instance;
    /// per-tenant mode: most tenants with an instance).
    pub size: usize,
    /// Instances kept started even without calls (pool mode).
    pub min_idle: usize,
    /// Start `min_idle` instances (at least one) when the gateway starts.
    pub prewarm: bool,
    /// Replace an instance after this many calls (drained, not killed mid-call).
    pub recycle_after_calls: Option<u64>,
    /// Replace an instance after it has lived this long.
    pub recycle_after: Option<Duration>,
}

/// Health probes (`ping` / `server/discover`, then a cheap `tools/list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Probe interval; `None` disables probing.
    pub interval: Option<Duration>,
    /// Consecutive failures before an instance is marked failed and recycled.
    pub failures: u32,
    /// Consecutive successes before a degraded instance is ready again.
    pub successes: u32,
}

/// Circuit breaker over transport failures and timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the circuit; 0 disables the breaker.
    pub failures: u32,
    /// How long the circuit stays open before one half-open trial call.
    pub open_for: Duration,
}

/// Bulkhead: concurrency limit and bounded queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitPolicy {
    pub max_concurrency: usize,
    pub max_queue: usize,
}

/// Per-tool overrides.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ToolPolicy {
    pub timeout: Option<Duration>,
    /// Attempts for calls safe to repeat (1 = no retry).
    pub retries: Option<u32>,
    /// Results of this tool are cached for this long (opt-in; an upstream's shorter
    /// `ttlMs` wins). `None`: not cached, unless `cache_read_only` covers it.
    pub cache_ttl: Option<Duration>,
    /// Large JSON text in this tool's results is compacted losslessly (opt-in).
    pub compact: bool,
    /// A call still running after this long becomes a task owned by the gateway, for
    /// clients that declared the tasks extension (opt-in; the tool name `*` covers every
    /// tool of the server).
    pub task_after: Option<Duration>,
    /// How long a gateway-made task and its result are kept (default one hour).
    pub task_ttl: Option<Duration>,
}

/// Everything about keeping one server healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPolicy {
    pub sharing: Sharing,
    pub pool: PoolPolicy,
    pub health: HealthPolicy,
    pub breaker: BreakerPolicy,
    pub limits: LimitPolicy,
    /// First restart delay after the server exits or fails to start; doubles up to
    /// `restart_backoff_max`.
    pub restart_backoff: Duration,
    pub restart_backoff_max: Duration,
    /// First delay before retrying a call that is safe to repeat; doubles up to
    /// `retry_backoff_max` (independent of the restart backoff).
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Restart the timeout clock when the call reports progress…
    pub timeout_reset_on_progress: bool,
    /// …but never let a call run longer than this.
    pub max_total_timeout: Option<Duration>,
    /// Attempts for calls to tools the server marks `readOnlyHint` (1 = no retry); only
    /// for servers trusted with `trust_annotations`.
    pub read_only_retries: u32,
    pub trust_annotations: bool,
    /// Results of tools the server marks `readOnlyHint` are cached for this long; only
    /// with `trust_annotations` (a hint from an untrusted server is not enough).
    pub cache_read_only: Option<Duration>,
    /// Check `tools/call` arguments against the tool's `inputSchema` before the call
    /// reaches the server (on by default; off for servers whose schemas are broken).
    pub validate: bool,
    /// Whether the registry pins this server's tools against changes after approval
    /// (rug pulls): `off`, `trust_first` or `approve`.
    pub pin: Pin,
    pub tools: BTreeMap<String, ToolPolicy>,
}

/// How the capability registry pins a server's tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pin {
    /// No pinning: the live lists are shown as they are.
    #[default]
    Off,
    /// The first version seen is approved; a later change to an approved tool (or a new
    /// tool) is quarantined until an admin approves the version that has it.
    TrustFirst,
    /// Nothing is shown before an admin approved a version, the first one included.
    Approve,
}

impl Pin {
    pub fn as_str(self) -> &'static str {
        match self {
            Pin::Off => "off",
            Pin::TrustFirst => "trust_first",
            Pin::Approve => "approve",
        }
    }
}

impl Default for ServerPolicy {
    fn default() -> Self {
        ServerPolicy {
            sharing: Sharing::Shared,
            pool: PoolPolicy {
                size: 4,
                min_idle: 0,
                prewarm: false,
                recycle_after_calls: None,
                recycle_after: None,
            },
            health: HealthPolicy {
                interval: None,
                failures: 3,
                successes: 1,
            },
            breaker: BreakerPolicy {
                failures: 5,
                open_for: Duration::from_secs(10),
            },
            limits: LimitPolicy {
                max_concurrency: 64,
                max_queue: 256,
            },
            restart_backoff: Duration::from_millis(250),
            restart_backoff_max: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(2),
            timeout_reset_on_progress: false,
            max_total_timeout: None,
            read_only_retries: 1,
            trust_annotations: false,
            cache_read_only: None,
            validate: true,
            pin: Pin::Off,
            tools: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawPin {
    Off,
    TrustFirst,
    Approve,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawSharing {
    Shared,
    PerSession,
    Pool,
    PerTenant,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    size: Option<u64>,
    min_idle: Option<u64>,
    prewarm: Option<bool>,
    recycle_after_calls: Option<u64>,
    recycle_after_ms: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealth {
    interval_ms: Option<u64>,
    failures: Option<u32>,
    successes: Option<u32>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    failures: Option<u32>,
    open_ms: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    max_concurrency: Option<u64>,
    max_queue: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTool {
    timeout_ms: Option<u64>,
    retries: Option<u32>,
    cache_ttl_ms: Option<u64>,
    compact: Option<bool>,
    task_after_ms: Option<u64>,
    task_ttl_ms: Option<u64>,
}

/// The policy keys of `[servers.NAME]` (flattened into the server table by the caller).
#[derive(Debug, Default)]
pub(crate) struct RawPolicy {
    pub(crate) sharing: Option<RawSharing>,
    pub(crate) pool: Option<Table<RawPool>>,
    pub(crate) health: Option<Table<RawHealth>>,
    pub(crate) breaker: Option<Table<RawBreaker>>,
    pub(crate) limits: Option<Table<RawLimits>>,
    pub(crate) restart_backoff_ms: Option<u64>,
    pub(crate) restart_backoff_max_ms: Option<u64>,
    pub(crate) retry_backoff_ms: Option<u64>,
    pub(crate) retry_backoff_max_ms: Option<u64>,
    pub(crate) timeout_reset_on_progress: Option<bool>,
    pub(crate) max_total_timeout_ms: Option<u64>,
    pub(crate) read_only_retries: Option<u32>,
    pub(crate) trust_annotations: Option<bool>,
    pub(crate) cache_read_only_ms: Option<u64>,
    pub(crate) validate: Option<bool>,
    pub(crate) pin: Option<RawPin>,
    pub(crate) tools: Option<UniqueMap<Table<RawTool>>>,
}

fn millis(value: Option<u64>, path: &KeyPath) -> Result<Option<Duration>, Problem> {
    match value {
        None => Ok(None),
        Some(0) => Err(Problem::new(
            path.clone(),
            "must be a positive number of milliseconds",
        )),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
    }
}

pub(crate) fn count(value: Option<u64>, default: usize, path: &KeyPath) -> Result<usize, Problem> {
    match value {
        None => Ok(default),
        Some(0) => Err(Problem::new(path.clone(), "must be at least 1")),
        Some(n) => usize::try_from(n).map_err(|_| Problem::new(path.clone(), "too large")),
    }
}

/// A backoff's first delay and cap (`(first, max)` in ms, their defaults and key names).
fn backoff_pair(
    (first, max): (Option<u64>, Option<u64>),
    (default_first, default_max): (Duration, Duration),
    (first_key, max_key): (&str, &str),
    path: &KeyPath,
) -> Result<(Duration, Duration), Problem> {
    let first = millis(first, &path.key(first_key))?.unwrap_or(default_first);
    let max = millis(max, &path.key(max_key))?.unwrap_or(default_max);
    if max < first {
        return Err(Problem::new(
            path.key(max_key),
            format!("must not be below {first_key}"),
        ));
    }
    Ok((first, max))
}

pub(crate) fn validate(raw: RawPolicy, path: &KeyPath) -> Result<ServerPolicy, Problem> {
    let defaults = ServerPolicy::default();
    let sharing = match raw.sharing {
        None => defaults.sharing,
        Some(RawSharing::Shared) => Sharing::Shared,
        Some(RawSharing::PerSession) => Sharing::PerSession,
        Some(RawSharing::Pool) => Sharing::Pool,
        Some(RawSharing::PerTenant) => Sharing::PerTenant,
    };
    let pool = {
        let raw = raw.pool.map(|t| t.0).unwrap_or_default();
        let path = path.key("pool");
        let size = count(raw.size, defaults.pool.size, &path.key("size"))?;
        let min_idle = raw.min_idle.unwrap_or(0) as usize;
        if min_idle > size {
            return Err(Problem::new(
                path.key("min_idle"),
                format!("must not exceed pool.size ({size})"),
            ));
        }
        PoolPolicy {
            size,
            min_idle,
            prewarm: raw.prewarm.unwrap_or(false),
            recycle_after_calls: match raw.recycle_after_calls {
                Some(0) => {
                    return Err(Problem::new(
                        path.key("recycle_after_calls"),
                        "must be at least 1",
                    ));
                }
                other => other,
            },
            recycle_after: millis(raw.recycle_after_ms, &path.key("recycle_after_ms"))?,
        }
    };
    let health = {
        let raw = raw.health.map(|t| t.0).unwrap_or_default();
        let path = path.key("health");
        HealthPolicy {
            interval: millis(raw.interval_ms, &path.key("interval_ms"))?,
            failures: raw.failures.unwrap_or(defaults.health.failures).max(1),
            successes: raw.successes.unwrap_or(defaults.health.successes).max(1),
        }
    };
    let breaker = {
        let raw = raw.breaker.map(|t| t.0).unwrap_or_default();
        BreakerPolicy {
            failures: raw.failures.unwrap_or(defaults.breaker.failures),
            open_for: millis(raw.open_ms, &path.key("breaker").key("open_ms"))?
                .unwrap_or(defaults.breaker.open_for),
        }
    };
    let limits = {
        let raw = raw.limits.map(|t| t.0).unwrap_or_default();
        let path = path.key("limits");
        LimitPolicy {
            max_concurrency: count(
                raw.max_concurrency,
                defaults.limits.max_concurrency,
                &path.key("max_concurrency"),
            )?,
            max_queue: raw
                .max_queue
                .map_or(defaults.limits.max_queue, |q| q as usize),
        }
    };
    let (restart_backoff, restart_backoff_max) = backoff_pair(
        (raw.restart_backoff_ms, raw.restart_backoff_max_ms),
        (defaults.restart_backoff, defaults.restart_backoff_max),
        ("restart_backoff_ms", "restart_backoff_max_ms"),
        path,
    )?;
    let (retry_backoff, retry_backoff_max) = backoff_pair(
        (raw.retry_backoff_ms, raw.retry_backoff_max_ms),
        (defaults.retry_backoff, defaults.retry_backoff_max),
        ("retry_backoff_ms", "retry_backoff_max_ms"),
        path,
    )?;
    let mut tools = BTreeMap::new();
    for (name, tool) in raw.tools.map(|m| m.0).unwrap_or_default() {
        let tool_path = path.key("tools").key(&name);
        let policy = ToolPolicy {
            timeout: millis(tool.0.timeout_ms, &tool_path.key("timeout_ms"))?,
            retries: match tool.0.retries {
                Some(0) => {
                    return Err(Problem::new(
                        tool_path.key("retries"),
                        "must be at least 1 (1 = no retry)",
                    ));
                }
                other => other,
            },
            cache_ttl: millis(tool.0.cache_ttl_ms, &tool_path.key("cache_ttl_ms"))?,
            compact: tool.0.compact.unwrap_or(false),
            task_after: millis(tool.0.task_after_ms, &tool_path.key("task_after_ms"))?,
            task_ttl: millis(tool.0.task_ttl_ms, &tool_path.key("task_ttl_ms"))?,
        };
        tools.insert(name, policy);
    }
    Ok(ServerPolicy {
        sharing,
        pool,
        health,
        breaker,
        limits,
        restart_backoff,
        restart_backoff_max,
        retry_backoff,
        retry_backoff_max,
        timeout_reset_on_progress: raw.timeout_reset_on_progress.unwrap_or(false),
        max_total_timeout: millis(raw.max_total_timeout_ms, &path.key("max_total_timeout_ms"))?,
        read_only_retries: raw.read_only_retries.unwrap_or(1).max(1),
        trust_annotations: raw.trust_annotations.unwrap_or(false),
        cache_read_only: match millis(raw.cache_read_only_ms, &path.key("cache_read_only_ms"))? {
            Some(_) if raw.trust_annotations != Some(true) => {
                return Err(Problem::new(
                    path.key("cache_read_only_ms"),
                    "needs `trust_annotations = true`: `readOnlyHint` is the server's own claim",
                ));
            }
            ttl => ttl,
        },
        validate: raw.validate.unwrap_or(defaults.validate),
        pin: match raw.pin {
            None => defaults.pin,
            Some(RawPin::Off) => Pin::Off,
            Some(RawPin::TrustFirst) => Pin::TrustFirst,
            Some(RawPin::Approve) => Pin::Approve,
        },
        tools,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(raw: RawPolicy) -> Result<ServerPolicy, Problem> {
        validate(raw, &KeyPath::root().key("servers").key("s"))
    }

    #[test]
    fn retries_have_their_own_backoff() {
        let defaults = policy(RawPolicy::default()).unwrap();
        assert_eq!(defaults.retry_backoff, Duration::from_millis(100));
        assert_eq!(defaults.retry_backoff_max, Duration::from_secs(2));
        let raw = RawPolicy {
            restart_backoff_ms: Some(5000),
            restart_backoff_max_ms: Some(60_000),
            retry_backoff_ms: Some(20),
            retry_backoff_max_ms: Some(40),
            ..RawPolicy::default()
        };
        let set = policy(raw).unwrap();
        assert_eq!(
            (set.retry_backoff, set.retry_backoff_max),
            (Duration::from_millis(20), Duration::from_millis(40))
        );
        assert_eq!(
            (set.restart_backoff, set.restart_backoff_max),
            (Duration::from_secs(5), Duration::from_secs(60))
        );
        let inverted = RawPolicy {
            retry_backoff_ms: Some(500),
            retry_backoff_max_ms: Some(50),
            ..RawPolicy::default()
        };
        let problem = format!("{:?}", policy(inverted).unwrap_err());
        assert!(problem.contains("retry_backoff_max_ms"), "{problem}");
        let zero = RawPolicy {
            retry_backoff_ms: Some(0),
            ..RawPolicy::default()
        };
        assert!(policy(zero).is_err());
    }

    #[test]
    fn validation_is_on_unless_turned_off() {
        assert!(policy(RawPolicy::default()).unwrap().validate);
        let off = RawPolicy {
            validate: Some(false),
            ..RawPolicy::default()
        };
        assert!(!policy(off).unwrap().validate);
    }
}
