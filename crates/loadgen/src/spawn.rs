//! The processes under test: the fixture over HTTP, the gateway, and peer gateways. Each
//! runs in its own process group with stderr in a log file; `Spawned` owns it and kills the
//! whole group when dropped (a gateway's own children die with it through
//! `PR_SET_PDEATHSIG`), so an early return or a panic leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A running process under test.
pub struct Spawned {
    pub pid: u32,
    /// The MCP endpoint it announced (or that we gave it).
    pub url: String,
    /// From spawn to ready (listening line printed, or port accepting).
    pub ready_after: Duration,
    child: Child,
}

impl Spawned {
    /// Waits until the process uses less than 5 % of a core over half a second (start-up
    /// work finished), at most `limit`; returns how long that took.
    pub async fn settle(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        let window = Duration::from_millis(500);
        let mut before = crate::procs::cpu_seconds(self.pid);
        while started.elapsed() < limit {
            tokio::time::sleep(window).await;
            let now = crate::procs::cpu_seconds(self.pid);
            match (before, now) {
                (Some(a), Some(b)) if b - a < 0.05 * window.as_secs_f64() => break,
                (_, None) => break,
                _ => {}
            }
            before = now;
        }
        started.elapsed()
    }

    /// SIGTERM to the group, then SIGKILL if it is still there after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        self.signal(Signal::SIGTERM);
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.signal(Signal::SIGKILL);
            let _ = self.child.wait().await;
        }
    }

    fn signal(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(Signal::SIGKILL);
        }
    }
}

fn command(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Command> {
    let stderr = std::fs::File::create(log)
        .with_context(|| format!("cannot create log {}", log.display()))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .process_group(0)
        .kill_on_drop(true);
    Ok(command)
}

/// Starts a process that prints its URL (`... http://ADDR/mcp`) on stdout once listening.
pub async fn announced(
    name: &str,
    program: &Path,
    args: &[String],
    logs: &Path,
    ready_timeout: Duration,
) -> anyhow::Result<Spawned> {
    let log = logs.join(format!("{name}.log"));
    let started = Instant::now();
    let mut child = command(program, args, &log)?
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let pid = child.id().context("child exited at once")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(ready_timeout, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find("http://") {
                let url = line[at..].split_whitespace().next().unwrap_or_default();
                return Ok(url.to_owned());
            }
        }
        bail!(
            "{name} exited before announcing its address (see {})",
            log.display()
        )
    })
    .await
    .with_context(|| {
        format!(
            "{name} did not announce its address within {ready_timeout:?} (see {})",
            log.display()
        )
    })??;
    // Keep reading stdout so the child never blocks on a full pipe; ends at its EOF.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Spawned {
        pid,
        url,
        ready_after: started.elapsed(),
        child,
    })
}

/// `switchboard-fixture http --listen 127.0.0.1:0 EXTRA...`
pub async fn fixture_http(
    fixture: &Path,
    extra: &[&str],
    logs: &Path,
    name: &str,
) -> anyhow::Result<Spawned> {
    let mut args: Vec<String> = vec!["http".into(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    announced(name, fixture, &args, logs, Duration::from_secs(30)).await
}

/// `switchboard serve --config FILE --listen 127.0.0.1:0` with `config` written to FILE.
pub async fn gateway(
    gateway: &Path,
    config: &str,
    logs: &Path,
    name: &str,
    ready_timeout: Duration,
) -> anyhow::Result<Spawned> {
    // A directory of its own: the gateway watches its config's directory, and the logs
    // written next to it would otherwise wake that watcher all the time.
    let directory = logs.join(format!("{name}.config"));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("cannot create {}", directory.display()))?;
    let path = directory.join("switchboard.toml");
    std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))?;
    let args = vec![
        "serve".into(),
        "--config".into(),
        path.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    announced(name, gateway, &args, logs, ready_timeout).await
}

/// A server that does not announce itself: started on a port we picked, ready once the port
/// accepts connections.
pub async fn on_port(
    name: &str,
    program: &Path,
    args: &[String],
    url: String,
    port: u16,
    logs: &Path,
    ready_timeout: Duration,
) -> anyhow::Result<Spawned> {
    let log = logs.join(format!("{name}.log"));
    let started = Instant::now();
    let mut child = command(program, args, &log)?
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let pid = child.id().context("child exited at once")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(_)) = lines.next_line().await {}
    });
    let deadline = started + ready_timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("{name} exited with {status} (see {})", log.display());
        }
        if Instant::now() >= deadline {
            bail!(
                "{name} did not listen on port {port} within {ready_timeout:?} (see {})",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Spawned {
        pid,
        url,
        ready_after: started.elapsed(),
        child,
    })
}

/// A loopback port that was free a moment ago (for servers that cannot bind port 0).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// TOML for a string (paths, arguments): a basic string with escapes.
pub fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A gateway config with one `[servers.NAME]` table per entry.
pub fn gateway_config(servers: &[(String, Upstream)]) -> String {
    let mut config = String::from("# written by switchboard-load\n");
    for (name, upstream) in servers {
        config.push_str(&format!("\n[servers.{name}]\n"));
        match upstream {
            Upstream::Stdio { command, args } => {
                config.push_str(&format!(
                    "command = {}\nargs = [{}]\n",
                    toml_string(&command.display().to_string()),
                    args.iter()
                        .map(|a| toml_string(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Upstream::Http { url } => {
                config.push_str(&format!("url = {}\n", toml_string(url)));
            }
        }
    }
    config
}

/// How the gateway reaches one upstream.
#[derive(Clone, Debug)]
pub enum Upstream {
    Stdio { command: PathBuf, args: Vec<String> },
    Http { url: String },
}
