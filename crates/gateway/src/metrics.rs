//! Prometheus metrics through `prometheus-client`, served at `/metrics`.
//!
//! Counters and latency histograms live in families owned by the gateway ([`Metrics`]) and
//! keyed by label set, so a server that is reloaded, or removed and added again, keeps
//! counting where it left off. Each server object resolves its handles once when it is
//! created ([`ServerStats`]): the hot path is atomic adds, without a lock or an allocation
//! (a tool's counter is resolved on that tool's first call and kept). Gauges describe the
//! live servers and are read at scrape time. The renderer writes each family as one
//! group (HELP, TYPE, then all its samples), as the text formats require. Exemplars (trace
//! links) would go where [`Histogram`]'s encoder passes `None`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Distinct `tool` label values one server object records; calls to further tools (only
/// `switchboard__call` can name tools outside the catalog) count under [`OTHER_TOOL`].
pub const MAX_TOOL_LABELS: usize = 1024;
/// The `tool` label of calls past [`MAX_TOOL_LABELS`].
pub const OTHER_TOOL: &str = "_other";

/// A fixed-bucket histogram on atomics (prometheus-client's own takes a mutex per
/// observation). Clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct Histogram(Arc<HistogramCells>);

#[derive(Debug, Default)]
struct HistogramCells {
    counts: [AtomicU64; BUCKETS.len()],
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let cells = &self.0;
        let seconds = value.as_secs_f64();
        match BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => cells.counts[index].fetch_add(1, Ordering::Relaxed),
            None => cells.overflow.fetch_add(1, Ordering::Relaxed),
        };
        cells
            .sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        let cells = &self.0;
        cells
            .counts
            .iter()
            .chain([&cells.overflow])
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        let cells = &self.0;
        // Per-bucket counts (the encoder accumulates them), the last one unbounded.
        let mut buckets = [(f64::INFINITY, 0); BUCKETS.len() + 1];
        for (slot, (bound, count)) in buckets.iter_mut().zip(BUCKETS.iter().zip(&cells.counts)) {
            *slot = (*bound, count.load(Ordering::Relaxed));
        }
        buckets[BUCKETS.len()].1 = cells.overflow.load(Ordering::Relaxed);
        // The count from the same reads, so `+Inf` always equals `_count`.
        let count = buckets.iter().map(|(_, count)| count).sum();
        let sum = cells.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// How a call ended, as a bounded label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Ok,
    ToolError,
    RpcError,
    Timeout,
    Unavailable,
    Rejected,
    Cancelled,
    /// The upstream was ended by a limit of its sandbox.
    SandboxLimit,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::ToolError,
        Outcome::RpcError,
        Outcome::Timeout,
        Outcome::Unavailable,
        Outcome::Rejected,
        Outcome::Cancelled,
        Outcome::SandboxLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::RpcError => "rpc_error",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
            Outcome::SandboxLimit => "sandbox_limit",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServerLabels {
    server: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SandboxLabels {
    server: String,
    control: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    server: String,
    tool: String,
    outcome: Outcome,
}

/// The gateway's counters and histograms, across the life of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    calls: Family<CallLabels, Counter>,
    latency: Family<ServerLabels, Histogram>,
    queue_wait: Family<ServerLabels, Histogram>,
    restarts: Family<ServerLabels, Counter>,
    list_changed_coalesced: Family<ServerLabels, Counter>,
    access_refusals: Family<StepLabels, Counter>,
    sandbox_hits: Family<SandboxLabels, Counter>,
    sandbox_kills: Family<SandboxLabels, Counter>,
    audit: Family<AuditLabels, Counter>,
    redactions: Family<RedactionLabels, Counter>,
    redacted_results: Family<RedactedResultLabels, Counter>,
    invalid_arguments: ServerCounter,
    budget_write_failures: Counter,
    cache: CacheMetrics,
    compaction: CompactionMetrics,
    rollout_calls: RolloutCalls,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RolloutLabels {
    rollout: String,
    /// The member server (bounded by the config, like `server`).
    version: String,
}

/// Calls routed through a rollout, by rollout and version (`rollouts.rs`). A snapshot
/// resolves each rollout's counter once, at build, so a call counts without a lock.
#[derive(Clone, Debug, Default)]
pub struct RolloutCalls(Family<RolloutLabels, Counter>);

impl RolloutCalls {
    /// The counter of `rollout`'s `version` (its member server's name).
    pub fn counter(&self, rollout: &str, version: &str) -> Counter {
        self.0
            .get_or_create(&RolloutLabels {
                rollout: rollout.to_owned(),
                version: version.to_owned(),
            })
            .clone()
    }

    pub fn get(&self, rollout: &str, version: &str) -> u64 {
        self.counter(rollout, version).get()
    }
}

/// The result cache's counters per server (`pipeline/cache.rs`).
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    /// Calls answered from the cache.
    pub hits: ServerCounter,
    /// Cacheable calls that went upstream.
    pub misses: ServerCounter,
    /// Results stored.
    pub stores: ServerCounter,
}

/// Output compaction's counters per server (`pipeline/compact.rs`).
#[derive(Clone, Debug, Default)]
pub struct CompactionMetrics {
    /// Text blocks replaced by a shorter form.
    pub compacted: ServerCounter,
    /// Bytes saved by them.
    pub saved_bytes: ServerCounter,
    /// Tokens saved by them (estimated: `pipeline::compact::estimate_tokens`).
    pub saved_tokens: ServerCounter,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AuditLabels {
    event: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RedactionLabels {
    server: String,
    detector: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RedactedResultLabels {
    server: String,
    /// `redacted` (strings rewritten), `dropped` (blocks removed) or `blocked`.
    outcome: &'static str,
}

/// The redaction step's counters: findings per server and detector, and results touched
/// per server and outcome. Resolved only when something was found (the rare path).
#[derive(Clone, Debug)]
pub struct RedactionMetrics {
    findings: Family<RedactionLabels, Counter>,
    results: Family<RedactedResultLabels, Counter>,
}

impl RedactionMetrics {
    pub fn record(&self, server: &str, counts: &crate::redact::RedactionCounts) {
        for (detector, n) in &counts.detectors {
            self.findings
                .get_or_create(&RedactionLabels {
                    server: server.to_owned(),
                    detector: detector.clone(),
                })
                .inc_by(u64::from(*n));
        }
        let outcome = if counts.blocked {
            "blocked"
        } else if counts.dropped > 0 {
            "dropped"
        } else {
            "redacted"
        };
        self.results
            .get_or_create(&RedactedResultLabels {
                server: server.to_owned(),
                outcome,
            })
            .inc();
    }
}

/// A counter per server name, for steps that count per server (created on first use).
#[derive(Clone, Debug, Default)]
pub struct ServerCounter(Family<ServerLabels, Counter>);

impl ServerCounter {
    pub fn inc(&self, server: &str) {
        self.inc_by(server, 1);
    }

    pub fn inc_by(&self, server: &str, by: u64) {
        self.0
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .inc_by(by);
    }

    pub fn get(&self, server: &str) -> u64 {
        self.0
            .get_or_create(&ServerLabels {
                server: server.to_owned(),
            })
            .get()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    step: String,
}

impl Metrics {
    /// Calls routed through rollouts.
    pub fn rollout_calls(&self) -> &RolloutCalls {
        &self.rollout_calls
    }

    /// The redaction step's counters.
    pub fn redaction(&self) -> RedactionMetrics {
        RedactionMetrics {
            findings: self.redactions.clone(),
            results: self.redacted_results.clone(),
        }
    }

    /// The counter of calls refused by the access step `step` (rate limits, …).
    pub fn access_refusal(&self, step: &str) -> Counter {
        self.access_refusals.get_or_create_owned(&StepLabels {
            step: step.to_owned(),
        })
    }

    /// The audit log's counter of `event`: `committed` records, calls `refused` for a full
    /// queue, `write_error`s, `export_error`s, records `lost` (at shutdown).
    pub fn audit_event(&self, event: &str) -> Counter {
        self.audit.get_or_create_owned(&AuditLabels {
            event: event.to_owned(),
        })
    }

    /// Calls answered with a tool error because their arguments did not fit the tool's
    /// `inputSchema` (the validation step), per server.
    pub fn invalid_arguments(&self) -> ServerCounter {
        self.invalid_arguments.clone()
    }

    /// The result cache's counters.
    pub fn cache(&self) -> CacheMetrics {
        self.cache.clone()
    }

    /// Output compaction's counters.
    pub fn compaction(&self) -> CompactionMetrics {
        self.compaction.clone()
    }

    /// The counter of failed writes of daily budget counts to the database.
    pub fn budget_write_failures(&self) -> Counter {
        self.budget_write_failures.clone()
    }

    /// The handles of server `name`: the same counters every time the name comes back.
    pub fn server(&self, name: &str) -> ServerStats {
        let labels = ServerLabels {
            server: name.to_owned(),
        };
        ServerStats {
            server: name.to_owned(),
            calls: self.calls.clone(),
            tools: ArcSwap::from_pointee(HashMap::new()),
            latency: self.latency.get_or_create_owned(&labels),
            queue_wait: self.queue_wait.get_or_create_owned(&labels),
            restarts: self.restarts.get_or_create_owned(&labels),
            list_changed_coalesced: self.list_changed_coalesced.get_or_create_owned(&labels),
            sandbox_hits: self.sandbox_hits.clone(),
            sandbox_kills: self.sandbox_kills.clone(),
        }
    }
}

/// One tool's call counters, one per outcome, each resolved on first use.
#[derive(Default)]
struct ToolCounters([OnceLock<Counter>; Outcome::ALL.len()]);

/// One server object's metric handles, resolved when it is created.
pub struct ServerStats {
    server: String,
    calls: Family<CallLabels, Counter>,
    /// The tools this server object has counted; replaced whole (rarely) when a new tool
    /// is first called, read without a lock on every call.
    tools: ArcSwap<ToolTable>,
    pub latency: Histogram,
    pub queue_wait: Histogram,
    restarts: Counter,
    list_changed_coalesced: Counter,
    sandbox_hits: Family<SandboxLabels, Counter>,
    sandbox_kills: Family<SandboxLabels, Counter>,
}

type ToolTable = HashMap<Box<str>, Arc<ToolCounters>>;

/// The counters for `tool` and the label they carry: the tool's own, or [`OTHER_TOOL`]'s
/// once the table is full.
fn lookup<'t>(tools: &'t ToolTable, tool: &str) -> Option<(&'t str, &'t ToolCounters)> {
    tools
        .get_key_value(tool)
        .or_else(|| {
            (tools.len() >= MAX_TOOL_LABELS)
                .then(|| tools.get_key_value(OTHER_TOOL))
                .flatten()
        })
        .map(|(label, counters)| (&**label, &**counters))
}

impl ServerStats {
    /// Counts one call of `tool` (`"*"`: rejected before a tool was chosen).
    pub fn count(&self, tool: &str, outcome: Outcome) {
        let tools = self.tools.load();
        let Some((label, counters)) = lookup(&tools, tool) else {
            drop(tools);
            self.add_tool(tool);
            return self.count(tool, outcome);
        };
        counters.0[outcome as usize]
            .get_or_init(|| {
                self.calls.get_or_create_owned(&CallLabels {
                    server: self.server.clone(),
                    tool: label.to_owned(),
                    outcome,
                })
            })
            .inc();
    }

    /// The slow path, once per tool: a copy of the table with the tool (or, when the
    /// table is full, [`OTHER_TOOL`]) added.
    #[cold]
    fn add_tool(&self, tool: &str) {
        self.tools.rcu(|tools| {
            let mut tools = ToolTable::clone(tools);
            if lookup(&tools, tool).is_none() {
                let key = match tools.len() >= MAX_TOOL_LABELS {
                    true => OTHER_TOOL,
                    false => tool,
                };
                tools.insert(key.into(), Arc::default());
            }
            tools
        });
    }

    pub fn count_restarts(&self, instances: u64) {
        self.restarts.inc_by(instances);
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.get()
    }

    /// A `list_changed` signal folded into a re-list already queued (`relist`).
    pub fn count_list_changed_coalesced(&self) {
        self.list_changed_coalesced.inc();
    }

    fn sandbox_labels(&self, control: &str) -> SandboxLabels {
        SandboxLabels {
            server: self.server.clone(),
            control: control.to_owned(),
        }
    }

    /// Enforcement events of the server's sandbox (OOM kills, refused forks).
    pub fn count_sandbox_hits(&self, control: &str, count: u64) {
        self.sandbox_hits
            .get_or_create(&self.sandbox_labels(control))
            .inc_by(count);
    }

    /// An instance ended by a limit of its sandbox.
    pub fn count_sandbox_kill(&self, control: &str) {
        self.sandbox_kills
            .get_or_create(&self.sandbox_labels(control))
            .inc();
    }
}

/// The two text formats `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text, version 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, Prometheus text otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    fn encode(self, registry: &Registry) -> String {
        let mut out = String::new();
        let written = match self {
            Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, registry),
        };
        // Writing to a String cannot fail.
        debug_assert!(written.is_ok());
        out
    }
}

impl crate::Gateway {
    /// Everything `/metrics` shows, in the given format. Families are written in the order
    /// registered, each whole; the registry ends each help text with a period.
    pub fn render_metrics(&self, format: Format) -> String {
        let metrics = &self.inner.metrics;
        for server in self.servers() {
            server.sync_sandbox();
        }
        let mut registry = Registry::default();
        registry.register(
            "switchboard_calls",
            "Calls by server, tool and outcome",
            metrics.calls.clone(),
        );
        registry.register(
            "switchboard_call_duration_seconds",
            "Upstream call latency",
            metrics.latency.clone(),
        );
        registry.register(
            "switchboard_queue_wait_seconds",
            "Time calls waited for a concurrency slot",
            metrics.queue_wait.clone(),
        );
        registry.register(
            "switchboard_restarts",
            "Upstream instances replaced after exiting, failing or being recycled",
            metrics.restarts.clone(),
        );
        registry.register(
            "switchboard_list_changed_coalesced",
            "list_changed signals from a server folded into a re-list already queued",
            metrics.list_changed_coalesced.clone(),
        );
        registry.register(
            "switchboard_access_refusals",
            "Calls refused by an access step (rules: argument rules that deny, limits: rate limits, concurrency: caps on calls in flight, budgets: daily budgets)",
            metrics.access_refusals.clone(),
        );
        registry.register(
            "switchboard_sandbox_limit_hits",
            "Enforcement events of stdio servers' sandboxes: OOM kills (memory), refused forks (processes)",
            metrics.sandbox_hits.clone(),
        );
        registry.register(
            "switchboard_sandbox_kills",
            "Stdio server instances ended by a limit of their sandbox",
            metrics.sandbox_kills.clone(),
        );
        registry.register(
            "switchboard_audit_records",
            "Audit log events: records committed, calls refused for a full queue, write and export errors, records lost",
            metrics.audit.clone(),
        );
        registry.register(
            "switchboard_redactions",
            "Findings redacted from results, by server and detector",
            metrics.redactions.clone(),
        );
        registry.register(
            "switchboard_redacted_results",
            "Results changed by redaction: redacted, dropped (blocks removed) or blocked",
            metrics.redacted_results.clone(),
        );
        registry.register(
            "switchboard_poisoned_tools",
            "Tools whose descriptions carry hidden instructions, by server",
            self.poisoned_gauge(),
        );
        registry.register(
            "switchboard_invalid_arguments",
            "tools/call answered with a tool error because the arguments did not fit the tool's inputSchema",
            metrics.invalid_arguments.0.clone(),
        );
        registry.register(
            "switchboard_cache_hits",
            "tools/call answered from the result cache, by server",
            metrics.cache.hits.0.clone(),
        );
        registry.register(
            "switchboard_cache_misses",
            "Cacheable tools/call that went to the upstream, by server",
            metrics.cache.misses.0.clone(),
        );
        registry.register(
            "switchboard_cache_stores",
            "Results stored in the result cache, by server",
            metrics.cache.stores.0.clone(),
        );
        registry.register(
            "switchboard_compacted_blocks",
            "Result text blocks replaced by a shorter lossless JSON form, by server",
            metrics.compaction.compacted.0.clone(),
        );
        registry.register(
            "switchboard_compaction_saved_bytes",
            "Bytes of result text saved by compaction, by server",
            metrics.compaction.saved_bytes.0.clone(),
        );
        registry.register(
            "switchboard_compaction_saved_tokens",
            "Tokens of result text saved by compaction (estimated), by server",
            metrics.compaction.saved_tokens.0.clone(),
        );
        registry.register(
            "switchboard_budget_write_failures",
            "Writes of daily budget counts to the database that failed (retried; with budget_flush_ms = 0 the call was refused)",
            metrics.budget_write_failures.clone(),
        );
        self.inner.registry.register_metrics(&mut registry);
        self.register_server_gauges(&mut registry);
        self.register_approvals_gauge(&mut registry);
        if let Some(agent) = self.agent() {
            agent.metrics.register(&mut registry);
        }
        if let Some(semantic) = &self.inner.semantic {
            semantic.register(&mut registry);
        }
        if let Some(rollouts) = self.inner.rollouts.load_full() {
            registry.register(
                "switchboard_rollout_calls",
                "Calls routed through a version rollout, by rollout and version (its server)",
                metrics.rollout_calls.0.clone(),
            );
            let tenants = Family::<RolloutLabels, Gauge>::default();
            for (rule, (stable, candidate)) in rollouts.rules().iter().zip(rollouts.tenants_seen())
            {
                for (version, count) in [(&rule.stable, stable), (&rule.candidate, candidate)] {
                    tenants
                        .get_or_create(&RolloutLabels {
                            rollout: rule.name.clone(),
                            version: version.clone(),
                        })
                        .set(i64::try_from(count).unwrap_or(i64::MAX));
                }
            }
            registry.register(
                "switchboard_rollout_tenants",
                "Tenants seen on each version of a rollout (since start, at most 100,000 remembered)",
                tenants,
            );
        }
        let catalog = self.catalog();
        if !catalog.group_unlisted.is_empty() {
            let family = Family::<ServerLabels, Gauge>::default();
            for (server, count) in &catalog.group_unlisted {
                family
                    .get_or_create(&ServerLabels {
                        server: server.clone(),
                    })
                    .set(*count as i64);
            }
            registry.register(
                "switchboard_group_unlisted_tools",
                "Tools a failover group member offers that its group does not list (another member lacks them)",
                family,
            );
        }
        let status = self.config_status();
        registry.register(
            "switchboard_config_valid",
            "1 if the last config file read was valid",
            ConstGauge::new(i64::from(status.valid)),
        );
        registry.register(
            "switchboard_config_reloads",
            "Config changes applied",
            ConstCounter::new(status.reloads),
        );
        registry.register(
            "switchboard_config_rejected",
            "Config files rejected (the last good config kept running)",
            ConstCounter::new(status.rejected),
        );
        registry.register(
            "switchboard_ready",
            "1 if /readyz answers ready: config valid, accepting, every required server ready",
            ConstGauge::new(i64::from(self.readiness().ready)),
        );
        registry.register(
            "switchboard_catalog_tools",
            "Tools in the merged catalog",
            ConstGauge::new(self.catalog().tools.len() as i64),
        );
        format.encode(&registry)
    }

    /// Approvals kept, by state (`[approvals]` only), read at scrape time.
    fn register_approvals_gauge(&self, registry: &mut Registry) {
        let Some(desk) = self.approvals() else {
            return;
        };
        match desk.counts() {
            Ok(counts) => {
                let family = Family::<StateLabels, Gauge>::default();
                for (state, count) in counts {
                    family.get_or_create(&StateLabels { state }).set(count);
                }
                registry.register(
                    "switchboard_approvals",
                    "Approvals kept, by state: pending (waiting for a decision), approved, denied, used, expired",
                    family,
                );
            }
            Err(error) => tracing::warn!(%error, "approvals not counted for the scrape"),
        }
    }

    /// Flagged tools per server (`screen.rs`), read at scrape time.
    fn poisoned_gauge(&self) -> Family<ServerLabels, Gauge> {
        let family = Family::<ServerLabels, Gauge>::default();
        for (server, count) in self.inner.screen.counts() {
            family
                .get_or_create(&ServerLabels { server })
                .set(count as i64);
        }
        family
    }

    /// The gauges of the live servers, one family each.
    fn register_server_gauges(&self, registry: &mut Registry) {
        type Read = fn(&crate::server::Server) -> i64;
        let families: [(&str, &str, Read); 5] = [
            ("switchboard_inflight_calls", "Calls in flight", |server| {
                server.inflight() as i64
            }),
            (
                "switchboard_breaker_state",
                "Circuit breaker: 0 closed, 1 half-open, 2 open",
                |server| i64::from(server.breaker_state().as_gauge()),
            ),
            (
                "switchboard_server_state",
                "0 dormant/stopped, 1 starting, 2 ready, 3 degraded, 4 failed",
                |server| i64::from(server.state().as_gauge()),
            ),
            (
                "switchboard_upstream_instances",
                "Live upstream instances (pool size)",
                |server| server.instance_count() as i64,
            ),
            (
                "switchboard_upstream_processes",
                "Live upstream child processes",
                |server| match server.spec().transport.kind() {
                    "stdio" => server.instance_count() as i64,
                    _ => 0,
                },
            ),
        ];
        let servers = self.servers();
        let enforced = Family::<SandboxLabels, Gauge>::default();
        for server in &servers {
            for (control, is_enforced) in server.sandbox_enforcement() {
                let labels = SandboxLabels {
                    server: server.name.clone(),
                    control: control.to_owned(),
                };
                enforced.get_or_create(&labels).set(i64::from(is_enforced));
            }
        }
        registry.register(
            "switchboard_sandbox_enforced",
            "Per sandboxed server and requested control: 1 enforced on this machine, 0 not (or only in part)",
            enforced,
        );
        for (name, help, read) in families {
            let family = Family::<ServerLabels, Gauge>::default();
            for server in &servers {
                let labels = ServerLabels {
                    server: server.name.clone(),
                };
                family.get_or_create(&labels).set(read(server));
            }
            registry.register(name, help, family);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(metrics: &Metrics, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register("x", "X", metrics.calls.clone());
        registry.register("lat_seconds", "Latency", metrics.latency.clone());
        format.encode(&registry)
    }

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        let stats = metrics.server("a");
        stats.latency.observe(Duration::from_micros(700));
        stats.latency.observe(Duration::from_secs(100));
        for _ in 0..3 {
            stats.count("t\"q", Outcome::Ok);
        }
        let text = render(&metrics, Format::Prometheus);
        assert!(text.contains("# TYPE x_total counter\n"), "{text}");
        assert!(
            text.contains("x_total{server=\"a\",tool=\"t\\\"q\",outcome=\"ok\"} 3"),
            "{text}"
        );
        assert!(text.contains("lat_seconds_bucket{server=\"a\",le=\"0.001\"} 1"));
        assert!(text.contains("lat_seconds_bucket{server=\"a\",le=\"+Inf\"} 2"));
        assert!(text.contains("lat_seconds_count{server=\"a\"} 2"));
        assert_eq!(text.matches("le=\"+Inf\"").count(), 1, "{text}");
        let open = render(&metrics, Format::OpenMetrics);
        assert!(open.contains("# TYPE x counter\n"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn a_server_that_comes_back_keeps_its_counters() {
        let metrics = Metrics::default();
        let first = metrics.server("a");
        first.count("echo", Outcome::Ok);
        first.count_restarts(2);
        first.latency.observe(Duration::from_millis(1));
        drop(first);
        let second = metrics.server("a");
        second.count("echo", Outcome::Ok);
        assert_eq!(second.restarts(), 2);
        assert_eq!(second.latency.count(), 1);
        let text = render(&metrics, Format::Prometheus);
        assert!(
            text.contains("x_total{server=\"a\",tool=\"echo\",outcome=\"ok\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn tool_labels_are_bounded_per_server() {
        let metrics = Metrics::default();
        let stats = metrics.server("a");
        for index in 0..MAX_TOOL_LABELS + 10 {
            stats.count(&format!("tool{index}"), Outcome::Ok);
        }
        let text = render(&metrics, Format::Prometheus);
        assert!(
            text.contains("x_total{server=\"a\",tool=\"_other\",outcome=\"ok\"} 10"),
            "{text}"
        );
    }
}
