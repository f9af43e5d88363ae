//! What operators see of a server's sandbox: how this machine enforces it (assessed when
//! the server object is created, logged then), the kernel's enforcement events (OOM
//! kills, refused forks) and the instances a limit ended — in `/admin`, in metrics and in
//! the log.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_config::TransportSpec;
use switchboard_upstream::sandbox::{Control, Counters, LimitHit, Report};

use super::Server;

/// A server's sandbox, as assessed, and what it has done since.
#[derive(Debug)]
pub(super) struct SandboxStatus {
    report: Report,
    events: Mutex<Events>,
}

#[derive(Debug, Default)]
struct Events {
    /// Enforcement events counted by the kernel, per control.
    hits: BTreeMap<Control, u64>,
    /// Instances a limit ended, per control.
    kills: BTreeMap<Control, u64>,
    last_kill: Option<String>,
}

impl SandboxStatus {
    /// Assesses the sandbox of `server`'s spec (stdio servers with a `sandbox` table) and
    /// logs what this machine cannot enforce.
    pub(super) fn assess(server: &str, transport: &TransportSpec) -> Option<SandboxStatus> {
        let TransportSpec::Stdio {
            sandbox: Some(spec),
            ..
        } = transport
        else {
            return None;
        };
        let report = Report::assess(spec);
        let gaps: Vec<String> = report
            .gaps()
            .map(|gap| gap.control.as_str().to_owned())
            .collect();
        if gaps.is_empty() {
            tracing::info!(server, sandbox = %report, "sandbox enforced in full");
        } else if report.require {
            tracing::error!(server, sandbox = %report, not_enforced = ?gaps, "sandbox cannot be enforced on this machine; `require = true`: the server will not start");
        } else {
            tracing::warn!(server, sandbox = %report, not_enforced = ?gaps, "sandbox only partly enforced on this machine");
        }
        Some(SandboxStatus {
            report,
            events: Mutex::new(Events::default()),
        })
    }

    /// For `/admin`: the assessment, and the events so far.
    pub(super) fn describe(&self) -> Value {
        let events = self.events.lock();
        let by_control = |map: &BTreeMap<Control, u64>| -> Value {
            map.iter()
                .map(|(control, count)| (control.as_str().to_owned(), json!(count)))
                .collect::<serde_json::Map<String, Value>>()
                .into()
        };
        let mut value = self.report.to_json();
        value["limit_hits"] = by_control(&events.hits);
        value["kills"] = by_control(&events.kills);
        value["last_kill"] = json!(events.last_kill);
        value
    }

    pub(super) fn report(&self) -> &Report {
        &self.report
    }
}

impl Server {
    /// Collects the kernel's enforcement events of the live instances (read when operators
    /// look: `/admin`, `/metrics`).
    pub(crate) fn sync_sandbox(&self) {
        if self.sandbox.is_none() {
            return;
        }
        for instance in self.instances_snapshot() {
            if let Some(hits) = instance.upstream.take_sandbox_hits() {
                self.record_sandbox(hits, None);
            }
        }
    }

    /// Records what a sandboxed instance's kernel counters or ending said: counters,
    /// metrics and a log line.
    pub(crate) fn record_sandbox(&self, hits: Counters, killed: Option<LimitHit>) {
        let Some(sandbox) = &self.sandbox else {
            return;
        };
        let mut events = sandbox.events.lock();
        for (control, count) in [
            (Control::Memory, hits.oom_kills),
            (Control::Processes, hits.fork_refusals),
        ] {
            if count > 0 {
                *events.hits.entry(control).or_default() += count;
                self.stats.count_sandbox_hits(control.as_str(), count);
                tracing::warn!(server = %self.name, control = control.as_str(), count, "sandbox limit hit (the kernel refused or killed a process of the server)");
            }
        }
        if let Some(hit) = killed {
            *events.kills.entry(hit.control).or_default() += 1;
            self.stats.count_sandbox_kill(hit.control.as_str());
            events.last_kill = Some(hit.to_string());
        }
    }

    /// 1 per control this machine enforces, 0 per control it does not (the
    /// `switchboard_sandbox_enforced` gauge); empty without a sandbox.
    pub(crate) fn sandbox_enforcement(&self) -> Vec<(&'static str, bool)> {
        self.sandbox
            .as_ref()
            .map(|sandbox| {
                sandbox
                    .report()
                    .controls
                    .iter()
                    .map(|assessment| (assessment.control.as_str(), assessment.is_enforced()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn describe_sandbox(&self) -> Value {
        self.sandbox
            .as_ref()
            .map_or(Value::Null, SandboxStatus::describe)
    }
}
