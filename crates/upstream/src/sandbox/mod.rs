//! Sandboxed stdio servers, without containers: per server instance, resource limits
//! (cgroups where the gateway may create them, rlimits otherwise), `no_new_privs`, a
//! Landlock file system policy and no network (a network namespace of its own, or
//! Landlock TCP rules).
//!
//! Three steps, so nothing is skipped silently:
//! - [`Report::assess`] decides, for each control the config asks for, how this machine
//!   enforces it or why it cannot (the gateway logs it at start and shows it in `/admin`;
//!   with `require = true` a gap refuses the start).
//! - [`prepare`] does the work before `fork`: creates the instance's cgroups, builds the
//!   Landlock ruleset, computes the rlimits; `child` applies them between `fork` and `exec`
//!   with system calls only.
//! - [`Tracker`] follows the instance: the kernel's enforcement counters while it runs,
//!   and, when it ends, whether a limit ended it ([`LimitHit`]); then it removes the
//!   instance's cgroups.
//!
//! Submodules: `host` (what the machine offers), `cgroup`, `ruleset` (Landlock),
//! `child` (the pre-exec step, the only unsafe code), `exit` (reading an ending).

mod cgroup;
mod child;
mod exit;
mod host;
mod ruleset;

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_config::{Bytes, SandboxSpec};

pub use cgroup::{Counters, Version};
pub use exit::LimitHit;

use cgroup::{Controller, Group, Setting};
use child::{ChildSetup, Resource};
use exit::{Armed, Ending};
use host::Host;

/// One thing a sandbox controls, named as in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Control {
    Memory,
    CpuTime,
    CpuShare,
    OpenFiles,
    Processes,
    NoNewPrivs,
    Filesystem,
    Network,
}

impl Control {
    pub const ALL: [Control; 8] = [
        Control::Memory,
        Control::CpuTime,
        Control::CpuShare,
        Control::OpenFiles,
        Control::Processes,
        Control::NoNewPrivs,
        Control::Filesystem,
        Control::Network,
    ];

    /// The config key (and metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Memory => "memory",
            Control::CpuTime => "cpu_seconds",
            Control::CpuShare => "cpus",
            Control::OpenFiles => "open_files",
            Control::Processes => "processes",
            Control::NoNewPrivs => "no_new_privs",
            Control::Filesystem => "filesystem",
            Control::Network => "network",
        }
    }
}

/// How (or whether) the machine enforces one control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Enforced {
        by: String,
        note: Option<String>,
    },
    /// Enforced only in part: weaker than asked.
    Partial {
        by: String,
        gap: String,
    },
    NotEnforced {
        why: String,
    },
}

/// The mechanism chosen for a control (what [`prepare`] sets up).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Nothing,
    Cgroup,
    Rlimit,
    Landlock(i32),
    NetworkNamespace,
    Prctl,
}

/// One control: what the config asks, and what the machine does about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub control: Control,
    /// The requested limit, for people ("256 MiB", "off").
    pub limit: String,
    pub outcome: Outcome,
    via: Via,
}

impl Assessment {
    fn enforced(control: Control, limit: String, via: Via, by: String) -> Assessment {
        Assessment {
            control,
            limit,
            outcome: Outcome::Enforced { by, note: None },
            via,
        }
    }

    fn note(mut self, text: impl Into<String>) -> Assessment {
        if let Outcome::Enforced { note, .. } = &mut self.outcome {
            *note = Some(text.into());
        }
        self
    }

    fn not_enforced(control: Control, limit: String, why: impl Into<String>) -> Assessment {
        Assessment {
            control,
            limit,
            outcome: Outcome::NotEnforced { why: why.into() },
            via: Via::Nothing,
        }
    }

    pub fn is_enforced(&self) -> bool {
        matches!(self.outcome, Outcome::Enforced { .. })
    }
}

/// What a server's sandbox enforces on this machine, decided before it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub controls: Vec<Assessment>,
    pub require: bool,
    kernel: String,
}

/// What the machine offers, as the assessment reads it (a seam for tests).
struct Offer<'a> {
    kernel: &'a str,
    landlock: Result<i32, String>,
    cap_sys_admin: bool,
    nproc_binds: bool,
    cgroup: &'a dyn Fn(Controller) -> Result<Version, String>,
}

impl Report {
    /// Assesses `spec` on this machine (cgroups are made ready on first use).
    pub fn assess(spec: &SandboxSpec) -> Report {
        let host = Host::get();
        let cgroup =
            |controller: Controller| host.cgroups.usable(controller).map(|(version, _)| version);
        Report::assess_on(
            spec,
            &Offer {
                kernel: &host.kernel,
                landlock: host.landlock.clone(),
                cap_sys_admin: host.cap_sys_admin,
                nproc_binds: host.nproc_binds,
                cgroup: &cgroup,
            },
        )
    }

    fn assess_on(spec: &SandboxSpec, offer: &Offer<'_>) -> Report {
        let mut controls = Vec::new();
        let cgroup_file = |version: Version, v2: &str, v1: &str| {
            format!(
                "{} {}",
                version.as_str(),
                if version == Version::V2 { v2 } else { v1 }
            )
        };
        if let Some(bytes) = spec.memory {
            let limit = Bytes(bytes).to_string();
            controls.push(match (offer.cgroup)(Controller::Memory) {
                Ok(version) => Assessment::enforced(
                    Control::Memory,
                    limit,
                    Via::Cgroup,
                    cgroup_file(version, "memory.max", "memory.limit_in_bytes"),
                )
                .note("the instance's processes together; the OOM killer stops them at the limit"),
                Err(why) => Assessment::enforced(
                    Control::Memory,
                    limit,
                    Via::Rlimit,
                    "RLIMIT_DATA".to_owned(),
                )
                .note(format!(
                    "per process, writable virtual memory (allocations past it fail); no \
                     memory cgroup: {why}"
                )),
            });
        }
        if let Some(seconds) = spec.cpu_seconds {
            controls.push(
                Assessment::enforced(
                    Control::CpuTime,
                    format!("{seconds} s"),
                    Via::Rlimit,
                    "RLIMIT_CPU".to_owned(),
                )
                .note("per process: SIGXCPU at the limit, SIGKILL 2 s of CPU later"),
            );
        }
        if let Some(millis) = spec.cpu_millis {
            let limit = format!("{} CPU", f64::from(millis) / 1000.0);
            controls.push(match (offer.cgroup)(Controller::Cpu) {
                Ok(version) => Assessment::enforced(
                    Control::CpuShare,
                    limit,
                    Via::Cgroup,
                    cgroup_file(version, "cpu.max", "cpu.cfs_quota_us"),
                ),
                Err(why) => Assessment::not_enforced(
                    Control::CpuShare,
                    limit,
                    format!("a CPU share needs the cpu cgroup controller: {why}"),
                ),
            });
        }
        if let Some(count) = spec.open_files {
            controls.push(
                Assessment::enforced(
                    Control::OpenFiles,
                    count.to_string(),
                    Via::Rlimit,
                    "RLIMIT_NOFILE".to_owned(),
                )
                .note("per process"),
            );
        }
        if let Some(count) = spec.processes {
            let limit = count.to_string();
            controls.push(match (offer.cgroup)(Controller::Pids) {
                Ok(version) => Assessment::enforced(
                    Control::Processes,
                    limit,
                    Via::Cgroup,
                    cgroup_file(version, "pids.max", "pids.max"),
                )
                .note("processes and threads of the instance together"),
                Err(_) if offer.nproc_binds => Assessment::enforced(
                    Control::Processes,
                    limit,
                    Via::Rlimit,
                    "RLIMIT_NPROC".to_owned(),
                )
                .note(
                    "counts every process of the gateway's user, not only this server's (no \
                     pids cgroup)",
                ),
                Err(why) => Assessment::not_enforced(
                    Control::Processes,
                    limit,
                    format!(
                        "no pids cgroup ({why}), and RLIMIT_NPROC does not bind root or a \
                         process with CAP_SYS_RESOURCE/CAP_SYS_ADMIN"
                    ),
                ),
            });
        }
        if spec.no_new_privs {
            controls.push(Assessment::enforced(
                Control::NoNewPrivs,
                "on".to_owned(),
                Via::Prctl,
                "prctl(PR_SET_NO_NEW_PRIVS)".to_owned(),
            ));
        }
        // Landlock needs no_new_privs, or CAP_SYS_ADMIN to do without.
        let landlock = offer.landlock.clone().and_then(|version| {
            if spec.no_new_privs || offer.cap_sys_admin {
                Ok(version)
            } else {
                Err("Landlock needs no_new_privs = true (or CAP_SYS_ADMIN)".to_owned())
            }
        });
        if let Some(filesystem) = &spec.filesystem {
            let limit = format!(
                "read-only {}, writable {}",
                filesystem.read_only.len(),
                filesystem.writable.len()
            );
            controls.push(match &landlock {
                Ok(version) => Assessment::enforced(
                    Control::Filesystem,
                    limit,
                    Via::Landlock(*version),
                    format!("Landlock ABI {version}"),
                )
                .note(
                    "plus /dev/null, /dev/zero, /dev/full (read-write), /dev/random and \
                     /dev/urandom (read-only)",
                ),
                Err(why) => Assessment::not_enforced(Control::Filesystem, limit, why.clone()),
            });
        }
        if !spec.network {
            let limit = "off".to_owned();
            controls.push(if offer.cap_sys_admin {
                Assessment::enforced(
                    Control::Network,
                    limit,
                    Via::NetworkNamespace,
                    "a network namespace of its own".to_owned(),
                )
                .note("no interfaces; loopback down")
            } else {
                match &landlock {
                    Ok(version) if *version >= ruleset::NET_ABI => Assessment {
                        control: Control::Network,
                        limit,
                        outcome: Outcome::Partial {
                            by: format!("Landlock ABI {version}"),
                            gap: format!(
                                "only {} bind and connect are denied (a network namespace \
                                 needs CAP_SYS_ADMIN)",
                                if *version >= 10 { "TCP and UDP" } else { "TCP" }
                            ),
                        },
                        via: Via::Landlock(*version),
                    },
                    Ok(version) => Assessment::not_enforced(
                        Control::Network,
                        limit,
                        format!(
                            "a network namespace needs CAP_SYS_ADMIN, and Landlock ABI \
                             {version} has no network rules (4 or later)"
                        ),
                    ),
                    Err(why) => Assessment::not_enforced(
                        Control::Network,
                        limit,
                        format!("a network namespace needs CAP_SYS_ADMIN; {why}"),
                    ),
                }
            });
        }
        Report {
            controls,
            require: spec.require,
            kernel: offer.kernel.to_owned(),
        }
    }

    /// The controls enforced only in part or not at all.
    pub fn gaps(&self) -> impl Iterator<Item = &Assessment> {
        self.controls.iter().filter(|a| !a.is_enforced())
    }

    fn via(&self, control: Control) -> Via {
        self.controls
            .iter()
            .find(|a| a.control == control)
            .map_or(Via::Nothing, |a| a.via)
    }

    /// For `/admin`: what is enforced (and by what), what is not and why.
    pub fn to_json(&self) -> Value {
        let mut enforced = Vec::new();
        let mut not_enforced = Vec::new();
        for assessment in &self.controls {
            let control = assessment.control.as_str();
            let limit = &assessment.limit;
            match &assessment.outcome {
                Outcome::Enforced { by, note } => enforced
                    .push(json!({ "control": control, "limit": limit, "by": by, "note": note })),
                Outcome::Partial { by, gap } => not_enforced.push(
                    json!({ "control": control, "limit": limit, "partly_by": by, "why": gap }),
                ),
                Outcome::NotEnforced { why } => {
                    not_enforced.push(json!({ "control": control, "limit": limit, "why": why }))
                }
            }
        }
        json!({
            "require": self.require,
            "kernel": self.kernel,
            "enforced": enforced,
            "not_enforced": not_enforced,
        })
    }
}

impl fmt::Display for Report {
    /// One line: "memory 256 MiB by cgroup v2 memory.max; network off NOT enforced: …".
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, assessment) in self.controls.iter().enumerate() {
            if index > 0 {
                formatter.write_str("; ")?;
            }
            let name = assessment.control.as_str();
            let limit = &assessment.limit;
            match &assessment.outcome {
                Outcome::Enforced { by, .. } => write!(formatter, "{name} {limit} by {by}")?,
                Outcome::Partial { by, gap } => {
                    write!(formatter, "{name} {limit} PARTLY by {by}: {gap}")?;
                }
                Outcome::NotEnforced { why } => {
                    write!(formatter, "{name} {limit} NOT enforced: {why}")?;
                }
            }
        }
        Ok(())
    }
}

/// Why a sandbox could not be set up for an instance.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// `require = true` and the machine cannot enforce everything.
    #[error(
        "the sandbox cannot be enforced here ({0}); `require = true` refuses to start without it"
    )]
    Unenforceable(String),
    /// Setting up a control the assessment found possible failed.
    #[error("sandbox setup failed: {0}")]
    Setup(String),
}

/// Everything set up for one instance before it is spawned.
pub(crate) struct Prepared {
    setup: Arc<ChildSetup>,
    pub(crate) tracker: Tracker,
}

/// Sets up `spec` for one instance of `server`, as `report` decided.
pub(crate) fn prepare(
    server: &str,
    spec: &SandboxSpec,
    report: &Report,
) -> Result<Prepared, SandboxError> {
    if report.require && report.gaps().next().is_some() {
        let gaps: Vec<String> = report
            .gaps()
            .map(|gap| gap.control.as_str().to_owned())
            .collect();
        return Err(SandboxError::Unenforceable(format!(
            "not enforced: {}",
            gaps.join(", ")
        )));
    }
    let mut settings = Vec::new();
    let mut rlimits = Vec::new();
    let mut armed = Armed::default();
    if let Some(bytes) = spec.memory {
        let by_cgroup = report.via(Control::Memory) == Via::Cgroup;
        match by_cgroup {
            true => settings.push(Setting::Memory(bytes)),
            false => rlimits.push((Resource::Data, bytes, bytes)),
        }
        armed.memory = Some((Bytes(bytes).to_string(), by_cgroup));
    }
    if let Some(seconds) = spec.cpu_seconds {
        rlimits.push((Resource::Cpu, seconds, seconds.saturating_add(2)));
        armed.cpu_seconds = Some(format!("{seconds} s"));
    }
    if let Some(millis) = spec.cpu_millis
        && report.via(Control::CpuShare) == Via::Cgroup
    {
        settings.push(Setting::Cpu(millis));
    }
    if let Some(count) = spec.open_files {
        rlimits.push((Resource::OpenFiles, count, count));
        armed.open_files = Some(count.to_string());
    }
    if let Some(count) = spec.processes {
        match report.via(Control::Processes) {
            Via::Cgroup => settings.push(Setting::Pids(count)),
            Via::Rlimit => rlimits.push((Resource::Processes, count, count)),
            _ => {}
        }
        armed.processes = Some(count.to_string());
    }
    let (group, cgroup_procs) = match settings.is_empty() {
        true => (None, Vec::new()),
        false => {
            let (group, procs) = Group::create(&Host::get().cgroups, server, &settings)
                .map_err(SandboxError::Setup)?;
            (Some(group), procs)
        }
    };
    let filesystem = match report.via(Control::Filesystem) {
        Via::Landlock(version) => Some(version),
        _ => None,
    };
    let network = match report.via(Control::Network) {
        Via::Landlock(version) => Some(version),
        _ => None,
    };
    let landlock = match filesystem.or(network) {
        None => None,
        Some(version) => {
            let built = ruleset::build(
                filesystem.and(spec.filesystem.as_ref()),
                network.is_some(),
                version,
            )
            .map_err(SandboxError::Setup)?;
            if !built.missing.is_empty() {
                tracing::warn!(server, paths = ?built.missing, "sandbox paths that do not exist grant nothing");
            }
            Some(built.fd)
        }
    };
    let setup = ChildSetup {
        cgroup_procs,
        rlimits,
        new_network_namespace: report.via(Control::Network) == Via::NetworkNamespace,
        no_new_privs: spec.no_new_privs,
        landlock,
    };
    Ok(Prepared {
        setup: Arc::new(setup),
        tracker: Tracker {
            group: Mutex::new(group),
            armed,
            seen: Mutex::new(Counters::default()),
        },
    })
}

/// Makes `command` apply the prepared sandbox in its child.
pub(crate) fn install(command: &mut tokio::process::Command, prepared: &Prepared) {
    child::install(command, prepared.setup.clone());
}

/// Follows one sandboxed instance: the kernel's counters, and its ending.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// The instance's cgroups, until it ends.
    group: Mutex<Option<Group>>,
    armed: Armed,
    /// Counters already handed out by [`Tracker::take_hits`].
    seen: Mutex<Counters>,
}

impl Tracker {
    /// Enforcement events since the last call (from the instance's cgroups).
    pub(crate) fn take_hits(&self) -> Counters {
        let group = self.group.lock();
        let Some(group) = group.as_ref() else {
            return Counters::default();
        };
        let now = group.counters();
        let mut seen = self.seen.lock();
        let new = now.since(*seen);
        *seen = now;
        new
    }

    /// The instance ended with `status`: the events not yet taken, the limit that ended it
    /// (if one did), and the instance's cgroups removed. Later calls find nothing.
    pub(crate) async fn finish(
        &self,
        status: Option<std::process::ExitStatus>,
        stderr: &[String],
    ) -> (Counters, Option<LimitHit>) {
        use std::os::unix::process::ExitStatusExt as _;
        let new = self.take_hits();
        let group = self.group.lock().take();
        let total = group.as_ref().map(Group::counters).unwrap_or_default();
        let ending = status.and_then(|status| match (status.code(), status.signal()) {
            (Some(code), _) => Some(Ending::Code(code)),
            (None, Some(signal)) => Some(Ending::Signal(signal)),
            _ => None,
        });
        let hit = ending.and_then(|ending| exit::classify(ending, total, stderr, &self.armed));
        if let Some(group) = group {
            group.remove().await;
        }
        (new, hit)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use switchboard_config::FsPolicy;

    use super::*;

    fn spec() -> SandboxSpec {
        SandboxSpec {
            memory: Some(64 << 20),
            cpu_seconds: Some(2),
            cpu_millis: Some(500),
            open_files: Some(64),
            processes: Some(16),
            no_new_privs: true,
            filesystem: Some(FsPolicy {
                read_only: vec![PathBuf::from("/usr")],
                writable: Vec::new(),
            }),
            network: false,
            require: false,
        }
    }

    fn offer<'a>(
        landlock: Result<i32, String>,
        cap_sys_admin: bool,
        nproc_binds: bool,
        cgroup: &'a dyn Fn(Controller) -> Result<Version, String>,
    ) -> Offer<'a> {
        Offer {
            kernel: "6.18",
            landlock,
            cap_sys_admin,
            nproc_binds,
            cgroup,
        }
    }

    fn outcome(report: &Report, control: Control) -> &Outcome {
        &report
            .controls
            .iter()
            .find(|a| a.control == control)
            .unwrap()
            .outcome
    }

    #[test]
    fn a_capable_root_host_enforces_everything() {
        let v2 = |_| Ok(Version::V2);
        let report = Report::assess_on(&spec(), &offer(Ok(7), true, false, &v2));
        assert_eq!(report.gaps().count(), 0, "{report}");
        assert!(
            report
                .to_string()
                .contains("memory 64 MiB by cgroup v2 memory.max"),
            "{report}"
        );
        assert!(
            report
                .to_string()
                .contains("network off by a network namespace"),
            "{report}"
        );
        let json = report.to_json();
        assert_eq!(json["enforced"].as_array().unwrap().len(), 8);
        assert_eq!(json["not_enforced"], json!([]));
    }

    #[test]
    fn root_without_cgroups_cannot_limit_processes_and_says_why() {
        let none = |_| Err("no cgroup here".to_owned());
        let report = Report::assess_on(&spec(), &offer(Ok(7), true, false, &none));
        assert!(matches!(
            outcome(&report, Control::Memory),
            Outcome::Enforced { by, .. } if by == "RLIMIT_DATA"
        ));
        let Outcome::NotEnforced { why } = outcome(&report, Control::Processes) else {
            panic!("{report}");
        };
        assert!(why.contains("RLIMIT_NPROC does not bind root"), "{why}");
        assert!(matches!(
            outcome(&report, Control::CpuShare),
            Outcome::NotEnforced { .. }
        ));
        let gaps: Vec<&str> = report.gaps().map(|a| a.control.as_str()).collect();
        assert_eq!(gaps, ["cpus", "processes"]);
        let json = report.to_json();
        assert_eq!(json["not_enforced"][1]["control"], "processes");
    }

    #[test]
    fn an_unprivileged_host_falls_back_to_rlimits_and_landlock_network_rules() {
        let none = |_| Err("no cgroup here".to_owned());
        let report = Report::assess_on(&spec(), &offer(Ok(4), false, true, &none));
        assert!(matches!(
            outcome(&report, Control::Processes),
            Outcome::Enforced { by, .. } if by == "RLIMIT_NPROC"
        ));
        let Outcome::Partial { gap, .. } = outcome(&report, Control::Network) else {
            panic!("{report}");
        };
        assert!(gap.contains("only TCP"), "{gap}");
        // Old Landlock: no network rules at all.
        let report = Report::assess_on(&spec(), &offer(Ok(3), false, true, &none));
        assert!(matches!(
            outcome(&report, Control::Network),
            Outcome::NotEnforced { .. }
        ));
        // No Landlock: neither the file system nor the network.
        let report = Report::assess_on(&spec(), &offer(Err("off".into()), false, true, &none));
        assert!(matches!(
            outcome(&report, Control::Filesystem),
            Outcome::NotEnforced { .. }
        ));
    }

    #[test]
    fn landlock_without_no_new_privs_needs_cap_sys_admin() {
        let none = |_| Err("no cgroup here".to_owned());
        let relaxed = SandboxSpec {
            no_new_privs: false,
            ..spec()
        };
        let report = Report::assess_on(&relaxed, &offer(Ok(7), false, true, &none));
        let Outcome::NotEnforced { why } = outcome(&report, Control::Filesystem) else {
            panic!("{report}");
        };
        assert!(why.contains("no_new_privs"), "{why}");
        let report = Report::assess_on(&relaxed, &offer(Ok(7), true, false, &none));
        assert!(
            report
                .controls
                .iter()
                .all(|a| a.control != Control::NoNewPrivs)
        );
        assert!(matches!(
            outcome(&report, Control::Filesystem),
            Outcome::Enforced { .. }
        ));
    }

    #[test]
    fn require_refuses_a_sandbox_with_gaps() {
        let none = |_| Err("no cgroup here".to_owned());
        let strict = SandboxSpec {
            require: true,
            ..spec()
        };
        let report = Report::assess_on(&strict, &offer(Ok(7), true, false, &none));
        let Err(error) = prepare("s", &strict, &report) else {
            panic!("a gap must refuse the start");
        };
        let message = error.to_string();
        assert!(
            message.contains("cpus, processes") && message.contains("require"),
            "{message}"
        );
    }
}
