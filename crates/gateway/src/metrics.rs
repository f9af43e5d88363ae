//! Prometheus metrics, rendered as text at `/metrics`. Hand-rolled on atomics: the label
//! sets are small and bounded (servers, their tools, a fixed set of outcomes), and the
//! hot path does one atomic add per counter.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// A fixed-bucket histogram.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    overflow: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        match BUCKETS.iter().position(|bound| seconds <= *bound) {
            Some(index) => self.counts[index].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros
            .fetch_add(value.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// How a call ended, as a bounded label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    ToolError,
    RpcError,
    Timeout,
    Unavailable,
    Rejected,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::RpcError => "rpc_error",
            Outcome::Timeout => "timeout",
            Outcome::Unavailable => "unavailable",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One server's call statistics.
#[derive(Default)]
pub struct ServerStats {
    calls: Mutex<BTreeMap<(String, Outcome), u64>>,
    pub latency: Histogram,
    pub queue_wait: Histogram,
    pub restarts: AtomicU64,
}

impl ServerStats {
    pub fn count(&self, tool: &str, outcome: Outcome) {
        *self
            .calls
            .lock()
            .entry((tool.to_owned(), outcome))
            .or_default() += 1;
    }

    pub fn calls(&self) -> Vec<((String, Outcome), u64)> {
        self.calls
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// Escapes a label value.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every family; `servers` supplies per-server gauges and stats.
pub struct Exposition {
    out: String,
    declared: std::collections::HashSet<&'static str>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition {
            out: String::new(),
            declared: Default::default(),
        }
    }

    fn declare(&mut self, name: &'static str, kind: &str, help: &str) {
        if self.declared.insert(name) {
            let _ = writeln!(self.out, "# HELP {name} {help}");
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
        }
    }

    pub fn gauge(&mut self, name: &'static str, help: &str, labels: &str, value: f64) {
        self.declare(name, "gauge", help);
        let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
    }

    pub fn counter(&mut self, name: &'static str, help: &str, labels: &str, value: u64) {
        self.declare(name, "counter", help);
        let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
    }

    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &str,
        labels: &str,
        histogram: &Histogram,
    ) {
        self.declare(name, "histogram", help);
        histogram.render(&mut self.out, name, labels);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

impl Default for Exposition {
    fn default() -> Self {
        Exposition::new()
    }
}

impl crate::Gateway {
    /// Everything `/metrics` shows, in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let mut out = Exposition::new();
        for server in self.servers() {
            let labels = format!("server=\"{}\"", label(&server.name));
            let stats = &server.stats;
            for ((tool, outcome), count) in stats.calls() {
                let labels = format!(
                    "{labels},tool=\"{}\",outcome=\"{}\"",
                    label(&tool),
                    outcome.as_str()
                );
                out.counter(
                    "switchboard_calls_total",
                    "Calls by server, tool and outcome.",
                    &labels,
                    count,
                );
            }
            out.histogram(
                "switchboard_call_duration_seconds",
                "Upstream call latency.",
                &labels,
                &stats.latency,
            );
            out.histogram(
                "switchboard_queue_wait_seconds",
                "Time calls waited for a concurrency slot.",
                &labels,
                &stats.queue_wait,
            );
            out.gauge(
                "switchboard_inflight_calls",
                "Calls in flight.",
                &labels,
                server.inflight() as f64,
            );
            out.gauge(
                "switchboard_breaker_state",
                "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                &labels,
                f64::from(server.breaker_state().as_gauge()),
            );
            out.gauge(
                "switchboard_server_state",
                "0 dormant/stopped, 1 starting, 2 ready, 3 degraded, 4 failed.",
                &labels,
                f64::from(server.state().as_gauge()),
            );
            out.counter(
                "switchboard_restarts_total",
                "Upstream instances replaced after exiting, failing or being recycled.",
                &labels,
                server.restarts(),
            );
            let instances = server.instance_count() as f64;
            out.gauge(
                "switchboard_upstream_instances",
                "Live upstream instances (pool size).",
                &labels,
                instances,
            );
            let processes = if server.spec().transport.kind() == "stdio" {
                instances
            } else {
                0.0
            };
            out.gauge(
                "switchboard_upstream_processes",
                "Live upstream child processes.",
                &labels,
                processes,
            );
        }
        let status = self.config_status();
        out.gauge(
            "switchboard_config_valid",
            "1 if the last config file read was valid.",
            "",
            if status.valid { 1.0 } else { 0.0 },
        );
        out.counter(
            "switchboard_config_reloads_total",
            "Config changes applied.",
            "",
            status.reloads,
        );
        out.counter(
            "switchboard_config_rejected_total",
            "Config files rejected (the last good config kept running).",
            "",
            status.rejected,
        );
        out.gauge(
            "switchboard_catalog_tools",
            "Tools in the merged catalog.",
            "",
            self.catalog().tools.len() as f64,
        );
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(700));
        histogram.observe(Duration::from_secs(100));
        let mut exposition = Exposition::new();
        exposition.counter("x_total", "X.", "server=\"a\"", 3);
        exposition.histogram("lat_seconds", "Latency.", "server=\"a\"", &histogram);
        let text = exposition.finish();
        assert!(text.contains("# TYPE x_total counter\nx_total{server=\"a\"} 3"));
        assert!(text.contains("lat_seconds_bucket{server=\"a\",le=\"0.001\"} 1"));
        assert!(text.contains("lat_seconds_bucket{server=\"a\",le=\"+Inf\"} 2"));
        assert!(text.contains("lat_seconds_count{server=\"a\"} 2"));
        assert_eq!(label("a\"b"), "a\\\"b");
    }
}
