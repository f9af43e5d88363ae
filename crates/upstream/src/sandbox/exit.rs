//! Why a sandboxed server ended: an exit status, the kernel's counters of its cgroups and
//! its last stderr lines, read as "killed by the memory limit", "by the CPU-time limit",
//! … or nothing. Pure: the evidence is gathered by the caller.

use std::fmt;

use super::Control;
use super::cgroup::Counters;

/// A limit that ended a server instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitHit {
    pub control: Control,
    /// The configured limit, as written for people ("256 MiB", "2 s").
    pub limit: String,
    /// How we know.
    pub evidence: String,
}

impl fmt::Display for LimitHit {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "killed by its sandbox's {} limit ({}): {}",
            self.control.as_str(),
            self.limit,
            self.evidence
        )
    }
}

/// How the process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Code(i32),
    Signal(i32),
}

/// Which limits were on, and how, for reading the evidence.
#[derive(Clone, Debug, Default)]
pub(crate) struct Armed {
    /// The memory limit, and whether a cgroup (rather than `RLIMIT_DATA`) enforces it.
    pub(crate) memory: Option<(String, bool)>,
    pub(crate) cpu_seconds: Option<String>,
    pub(crate) processes: Option<String>,
    pub(crate) open_files: Option<String>,
}

/// What runtimes print when an allocation fails (Rust, glibc, Python, Node/V8, Go, Java).
const OUT_OF_MEMORY: [&str; 8] = [
    "memory allocation of",
    "cannot allocate memory",
    "memoryerror",
    "out of memory",
    "allocation failed",
    "std::bad_alloc",
    "outofmemoryerror",
    "failed to reserve",
];
const TOO_MANY_FILES: &str = "too many open files";

/// The limit that ended the process, if the evidence names one. `counters` are the
/// events of the instance's cgroups over its life.
pub(crate) fn classify(
    ending: Ending,
    counters: Counters,
    stderr: &[String],
    armed: &Armed,
) -> Option<LimitHit> {
    let abnormal = !matches!(ending, Ending::Code(0));
    let said = |needles: &[&str]| {
        stderr.iter().rev().find(|line| {
            let line = line.to_ascii_lowercase();
            needles.iter().any(|needle| line.contains(needle))
        })
    };
    if let Some((limit, by_cgroup)) = &armed.memory {
        if *by_cgroup && counters.oom_kills > 0 && ending == Ending::Signal(libc::SIGKILL) {
            return Some(LimitHit {
                control: Control::Memory,
                limit: limit.clone(),
                evidence: format!(
                    "the kernel's OOM killer stopped it (cgroup oom_kill count {})",
                    counters.oom_kills
                ),
            });
        }
        if !*by_cgroup
            && abnormal
            && let Some(line) = said(&OUT_OF_MEMORY)
        {
            return Some(LimitHit {
                control: Control::Memory,
                limit: limit.clone(),
                evidence: format!("an allocation failed under RLIMIT_DATA (stderr: {line})"),
            });
        }
    }
    if let Some(limit) = &armed.cpu_seconds
        && ending == Ending::Signal(libc::SIGXCPU)
    {
        return Some(LimitHit {
            control: Control::CpuTime,
            limit: limit.clone(),
            evidence: "RLIMIT_CPU sent SIGXCPU".to_owned(),
        });
    }
    if let Some(limit) = &armed.open_files
        && abnormal
        && let Some(line) = said(&[TOO_MANY_FILES])
    {
        return Some(LimitHit {
            control: Control::OpenFiles,
            limit: limit.clone(),
            evidence: format!("it ran out of file descriptors (stderr: {line})"),
        });
    }
    if let Some(limit) = &armed.processes
        && abnormal
        && counters.fork_refusals > 0
    {
        return Some(LimitHit {
            control: Control::Processes,
            limit: limit.clone(),
            evidence: format!(
                "it exited after {} process creations were refused (cgroup pids.events)",
                counters.fork_refusals
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(cgroup_memory: bool) -> Armed {
        Armed {
            memory: Some(("64 MiB".to_owned(), cgroup_memory)),
            cpu_seconds: Some("1 s".to_owned()),
            processes: Some("8".to_owned()),
            open_files: Some("32".to_owned()),
        }
    }

    fn oom(count: u64) -> Counters {
        Counters {
            oom_kills: count,
            fork_refusals: 0,
        }
    }

    #[test]
    fn a_cgroup_oom_kill_is_the_memory_limit() {
        let hit = classify(Ending::Signal(libc::SIGKILL), oom(1), &[], &armed(true)).unwrap();
        assert_eq!(hit.control, Control::Memory);
        assert!(
            hit.to_string()
                .starts_with("killed by its sandbox's memory limit (64 MiB)")
        );
        // SIGKILL without an OOM kill (someone else's kill -9) is not the limit.
        assert_eq!(
            classify(Ending::Signal(libc::SIGKILL), oom(0), &[], &armed(true)),
            None
        );
    }

    #[test]
    fn a_failed_allocation_under_rlimit_is_the_memory_limit() {
        let stderr = [
            "starting".to_owned(),
            "memory allocation of 1048576 bytes failed".to_owned(),
        ];
        let hit = classify(
            Ending::Signal(libc::SIGABRT),
            oom(0),
            &stderr,
            &armed(false),
        )
        .unwrap();
        assert_eq!(hit.control, Control::Memory);
        assert!(hit.evidence.contains("RLIMIT_DATA"), "{}", hit.evidence);
        // A clean exit is never a limit, whatever it printed.
        assert_eq!(
            classify(Ending::Code(0), oom(0), &stderr, &armed(false)),
            None
        );
        // Without a memory limit the same abort is just a crash.
        let unarmed = Armed {
            memory: None,
            ..armed(false)
        };
        assert_eq!(
            classify(Ending::Signal(libc::SIGABRT), oom(0), &stderr, &unarmed),
            None
        );
    }

    #[test]
    fn sigxcpu_is_the_cpu_limit_and_other_signals_are_not() {
        let hit = classify(Ending::Signal(libc::SIGXCPU), oom(0), &[], &armed(true)).unwrap();
        assert_eq!(hit.control, Control::CpuTime);
        assert_eq!(
            classify(Ending::Signal(libc::SIGTERM), oom(0), &[], &armed(true)),
            None
        );
    }

    #[test]
    fn refused_forks_and_exhausted_descriptors_explain_a_failed_exit() {
        let refused = Counters {
            oom_kills: 0,
            fork_refusals: 3,
        };
        let hit = classify(Ending::Code(1), refused, &[], &armed(true)).unwrap();
        assert_eq!(hit.control, Control::Processes);
        assert_eq!(classify(Ending::Code(0), refused, &[], &armed(true)), None);
        let stderr = ["Error: EMFILE: too many open files, open '/x'".to_owned()];
        let hit = classify(Ending::Code(1), oom(0), &stderr, &armed(true)).unwrap();
        assert_eq!(hit.control, Control::OpenFiles);
    }
}
