//! `perf` attached to the process under test, switched on and off around a measured phase:
//! `perf stat` counts its syscalls (in total and by kind), `perf record` samples its stacks
//! for a flame graph. perf starts with its events disabled and is driven through its control
//! FIFOs, so neither its own start-up nor the warm-up is counted. Optional everywhere:
//! where perf is missing or not allowed, the callers report "–" and go on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

/// The syscalls counted one by one (besides the total): the ones a request/response hop
/// through an async runtime makes.
pub const SYSCALLS: [&str; 13] = [
    "futex",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "sched_yield",
];

/// How long perf may take to attach, or to acknowledge a command.
const PERF_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `perf stat` can count syscall tracepoints here (installed, and allowed by
/// `perf_event_paranoid` or our capabilities); the error says why not.
pub async fn syscalls_countable() -> anyhow::Result<()> {
    let output = Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .context("perf is not installed")?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr);
        let first = reason.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        bail!("perf cannot count syscalls here: {}", first.trim());
    }
    Ok(())
}

/// A perf process attached to one pid, its events off until `enable`.
pub struct Attached {
    child: Child,
    control: pipe::Sender,
    ack: BufReader<pipe::Receiver>,
    /// The two FIFOs, removed when perf is done.
    fifos: [PathBuf; 2],
    /// perf's output: counts (`stat`) or samples (`record`).
    pub output: PathBuf,
}

impl Attached {
    /// `perf stat` counting every syscall of `pid` and those in [`SYSCALLS`].
    pub async fn count_syscalls(pid: u32, dir: &Path, name: &str) -> anyhow::Result<Attached> {
        let mut events = vec!["raw_syscalls:sys_enter".to_owned()];
        events.extend(SYSCALLS.iter().map(|s| format!("syscalls:sys_enter_{s}")));
        let output = dir.join(format!("{name}.perf-stat.csv"));
        let args = ["stat", "-x,", "-e", &events.join(","), "-o"];
        Attached::start(&args, &output, pid, dir, name).await
    }

    /// `perf record` of `pid`'s stacks (DWARF unwinding: release builds keep no frame
    /// pointers), for a flame graph.
    pub async fn record_stacks(pid: u32, dir: &Path, name: &str) -> anyhow::Result<Attached> {
        let output = dir.join(format!("{name}.perf.data"));
        let args = ["record", "-F", "499", "--call-graph", "dwarf", "-o"];
        Attached::start(&args, &output, pid, dir, name).await
    }

    async fn start(
        args: &[&str],
        output: &Path,
        pid: u32,
        dir: &Path,
        name: &str,
    ) -> anyhow::Result<Attached> {
        let control_path = dir.join(format!("{name}.perf-control"));
        let ack_path = dir.join(format!("{name}.perf-ack"));
        for fifo in [&control_path, &ack_path] {
            let _ = std::fs::remove_file(fifo);
            let made = Command::new("mkfifo").arg(fifo).status().await;
            anyhow::ensure!(
                made.is_ok_and(|s| s.success()),
                "cannot make the FIFO {}",
                fifo.display()
            );
        }
        // Opened before perf starts: read-write so the open does not wait for perf.
        let control = pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(&control_path)?;
        let ack = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&ack_path)?;
        let log = std::fs::File::create(dir.join(format!("{name}.perf.log")))?;
        let child = Command::new("perf")
            .args(args)
            .arg(output)
            .arg(format!(
                "--control=fifo:{},{}",
                control_path.display(),
                ack_path.display()
            ))
            .args(["--delay=-1", "-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .context("cannot start perf")?;
        Ok(Attached {
            child,
            control,
            ack: BufReader::new(ack),
            fifos: [control_path, ack_path],
            output: output.to_owned(),
        })
    }

    async fn command(&mut self, command: &str) -> anyhow::Result<()> {
        self.control
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        let mut line = String::new();
        let read = tokio::time::timeout(PERF_TIMEOUT, self.ack.read_line(&mut line)).await;
        // perf writes its answer with the C string's terminating NUL.
        let answer = line.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        match read {
            Ok(Ok(_)) if answer == "ack" => Ok(()),
            Ok(Ok(_)) => bail!("perf answered {answer:?} to {command}"),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => match self.child.try_wait() {
                Ok(Some(status)) => bail!("perf exited ({status}) before it was {command}d"),
                _ => bail!("perf did not acknowledge {command} within {PERF_TIMEOUT:?}"),
            },
        }
    }

    /// Switches the events on; returns once perf says they are.
    pub async fn enable(&mut self) -> anyhow::Result<()> {
        self.command("enable").await
    }

    /// Switches the events off and lets perf write its output and exit.
    pub async fn finish(mut self) -> anyhow::Result<PathBuf> {
        self.command("disable").await?;
        let pid = self.child.id().context("perf already exited")?;
        kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGINT)?;
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("perf did not exit after SIGINT")??;
        for fifo in &self.fifos {
            let _ = std::fs::remove_file(fifo);
        }
        // Whether perf calls an interrupted run a success varies; its output is what tells.
        let written = std::fs::metadata(&self.output).is_ok_and(|m| m.len() > 0);
        anyhow::ensure!(written, "perf wrote nothing ({status})");
        Ok(self.output.clone())
    }
}

/// Syscalls counted over a phase: the total and the kinds in [`SYSCALLS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyscallCounts {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
}

impl SyscallCounts {
    /// Reads `perf stat -x,` output: `value,unit,event,...` lines; a counter that never ran
    /// (`<not counted>`) counts zero.
    pub fn parse(text: &str) -> anyhow::Result<SyscallCounts> {
        let mut counts = SyscallCounts::default();
        let mut seen_total = false;
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            let [value, _unit, event, ..] = fields.as_slice() else {
                continue;
            };
            let value = value.parse::<u64>().unwrap_or(0);
            if *event == "raw_syscalls:sys_enter" {
                counts.total = value;
                seen_total = true;
            } else if let Some(kind) = event.strip_prefix("syscalls:sys_enter_") {
                counts.by_kind.insert(kind.to_owned(), value);
            }
        }
        anyhow::ensure!(seen_total, "no syscall count in perf's output");
        Ok(counts)
    }

    pub fn plus(&self, other: &SyscallCounts) -> SyscallCounts {
        let mut by_kind = self.by_kind.clone();
        for (kind, value) in &other.by_kind {
            *by_kind.entry(kind.clone()).or_default() += value;
        }
        SyscallCounts {
            total: self.total + other.total,
            by_kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perf_stat_csv() {
        let text = "# started on Mon Dec  7 13:20:42 2026\n\n\
                    Events enabled\n\
                    1234,,raw_syscalls:sys_enter,812,100.00,,\n\
                    <not counted>,,syscalls:sys_enter_futex,0,100.00,,\n\
                    56,,syscalls:sys_enter_writev,812,100.00,,\n\
                    Events disabled\n";
        let counts = SyscallCounts::parse(text).unwrap();
        assert_eq!(counts.total, 1234);
        assert_eq!(counts.by_kind["futex"], 0);
        assert_eq!(counts.by_kind["writev"], 56);
        let twice = counts.plus(&counts);
        assert_eq!((twice.total, twice.by_kind["writev"]), (2468, 112));
        assert!(SyscallCounts::parse("Events enabled\n").is_err());
    }

    /// A real `perf stat` on a process that only writes: skipped where perf cannot count.
    #[tokio::test]
    async fn counts_a_writers_syscalls() {
        if let Err(why) = syscalls_countable().await {
            eprintln!("skipped: {why:#}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Command::new("yes")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = writer.id().unwrap();
        let mut perf = Attached::count_syscalls(pid, dir.path(), "yes")
            .await
            .unwrap();
        perf.enable().await.unwrap();
        // Long enough for `yes` to get a core on a loaded machine.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let output = perf.finish().await.unwrap();
        writer.kill().await.unwrap();
        let counts = SyscallCounts::parse(&std::fs::read_to_string(output).unwrap()).unwrap();
        assert!(counts.by_kind["write"] > 0, "{counts:?}");
        // Separate counters are read at slightly different moments: the total may trail
        // the per-kind count by a few events out of millions.
        assert!(
            counts.total + counts.total / 100 >= counts.by_kind["write"],
            "{counts:?}"
        );
    }
}
