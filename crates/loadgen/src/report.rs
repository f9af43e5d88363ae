//! Turning a tally into figures: percentiles in microseconds, calls per second, errors; as a
//! console table, JSON, and markdown rows for the scenario report.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::driver::{ErrorCount, Tally};

/// The summary of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub calls: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub calls_per_s: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
    /// The longest scheduling stall of the machine during the run (a 1 ms sleeper's worst
    /// lateness): outliers near this size are the machine's.
    pub stall_max_us: f64,
    pub error_kinds: BTreeMap<String, ErrorCount>,
    /// `tools/list` runs: tools seen by the last call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<usize>,
}

impl Figures {
    pub fn from_tally(tally: &Tally) -> Figures {
        let micros = |nanos: u64| nanos as f64 / 1000.0;
        let at = |quantile: f64| {
            if tally.ok == 0 {
                0.0
            } else {
                micros(tally.latency.value_at_quantile(quantile))
            }
        };
        let elapsed_s = tally.elapsed.as_secs_f64();
        Figures {
            calls: tally.ok,
            errors: tally.error_total(),
            elapsed_s,
            calls_per_s: if elapsed_s > 0.0 {
                tally.ok as f64 / elapsed_s
            } else {
                0.0
            },
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: if tally.ok == 0 {
                0.0
            } else {
                micros(tally.latency.max())
            },
            mean_us: if tally.ok == 0 {
                0.0
            } else {
                tally.latency.mean() / 1000.0
            },
            stall_max_us: tally.stall.as_secs_f64() * 1e6,
            error_kinds: tally.errors.clone(),
            tools: tally.tools,
        }
    }

    /// One line: label, percentiles, rate, errors.
    pub fn line(&self, label: &str) -> String {
        format!(
            "{label:<28} p50 {:>7} p90 {:>7} p99 {:>7} max {:>8} µs  {:>7.0} calls/s  {} calls  {} errors",
            us(self.p50_us),
            us(self.p90_us),
            us(self.p99_us),
            us(self.max_us),
            self.calls_per_s,
            self.calls,
            self.errors
        )
    }

    /// A small human-readable table for one run.
    pub fn table(&self, label: &str) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11} {:>7}\n",
            "run", "p50 µs", "p90 µs", "p99 µs", "max µs", "calls", "calls/s", "errors"
        ));
        out.push_str(&format!(
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11} {:>7}\n",
            label,
            us(self.p50_us),
            us(self.p90_us),
            us(self.p99_us),
            us(self.max_us),
            self.calls,
            format!("{:.0}", self.calls_per_s),
            self.errors
        ));
        if let Some(tools) = self.tools {
            out.push_str(&format!("tools listed: {tools}\n"));
        }
        out.push_str(&format!(
            "machine stall during the run (worst lateness of a 1 ms sleeper): {} µs\n",
            us(self.stall_max_us)
        ));
        for (kind, count) in &self.error_kinds {
            out.push_str(&format!(
                "  error {kind}: {} (first: {})\n",
                count.count, count.sample
            ));
        }
        out
    }
}

/// Microseconds for tables: one decimal below 100 µs, none above.
pub fn us(value: f64) -> String {
    if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// A markdown table from a header and rows; the first `text_columns` columns are
/// left-aligned, the rest (figures) right-aligned.
pub fn markdown_table(header: &[&str], text_columns: usize, rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!(
        "|{}\n",
        (0..header.len())
            .map(|column| if column < text_columns {
                "---|"
            } else {
                "---:|"
            })
            .collect::<String>()
    ));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}
