//! Spawning the gateway and fixture binaries, with kill-on-drop guards.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A child process killed (with its whole process group) when dropped.
pub struct Proc {
    pub child: Child,
    pub url: String,
    /// The config file the process was started with (gateways started by this module).
    pub config: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group first (children of the child), then the child itself.
            kill_group(pid);
        }
        let _ = self.child.start_kill();
        // Reap it (bounded): a restarted gateway must not find the old one still holding
        // its state dir's database lock.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// SIGKILLs the process group led by `pid` (every test child is a group leader). Never
/// for pids 0 and 1: `killpg(1)` would be `kill(-1)`, every process on the machine.
pub fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Replaces a file the way editors do: write a temporary file beside it, then rename.
pub fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("swp");
    std::fs::write(&temporary, text).expect("temporary written");
    std::fs::rename(&temporary, path).expect("renamed over");
}

fn stat_fields(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command: state, ppid, ...
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.to_owned();
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

fn processes() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// The live (non-zombie) direct children of a process, for process-count assertions.
pub fn children_of(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|candidate| {
            stat_fields(*candidate).is_some_and(|(state, parent)| parent == pid && state != "Z")
        })
        .collect()
}

/// Zombie children of a process (exited but never reaped).
pub fn zombies_of(pid: u32) -> usize {
    processes()
        .into_iter()
        .filter(|candidate| {
            stat_fields(*candidate).is_some_and(|(state, parent)| parent == pid && state == "Z")
        })
        .count()
}

/// A binary built into the same directory as `anchor` (e.g. the fixture beside the gateway).
pub fn binary_beside(anchor: &str, name: &str) -> PathBuf {
    Path::new(anchor)
        .parent()
        .expect("binary has a directory")
        .join(name)
}

/// Writes `text` as `switchboard.toml` in a fresh temporary directory.
pub fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, text).expect("config written");
    (dir, path)
}

async fn spawn_announcing(
    mut command: Command,
    marker: &str,
    dir: Option<tempfile::TempDir>,
) -> anyhow::Result<Proc> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().context("spawn")?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find(marker) {
                return Ok(line[at + marker.len()..].trim().to_owned());
            }
        }
        bail!("process exited before announcing its address")
    })
    .await
    .context("process did not announce its address in time")??;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc {
        child,
        url,
        config: None,
        _dir: dir,
    })
}

/// Starts `switchboard serve` on a free loopback port with the given config text.
pub async fn spawn_gateway_http(gateway_bin: &str, config: &str) -> anyhow::Result<Proc> {
    let (dir, path) = write_config(config);
    let mut proc = spawn_announcing(
        serve_command(gateway_bin, &path, &[]),
        "listening on ",
        Some(dir),
    )
    .await?;
    proc.config = Some(path);
    Ok(proc)
}

/// Starts `switchboard serve` on a free loopback port with a config file the caller
/// owns, and extra environment variables.
pub async fn spawn_gateway_http_at(
    gateway_bin: &str,
    config: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let mut proc = spawn_announcing(
        serve_command(gateway_bin, config, env),
        "listening on ",
        None,
    )
    .await?;
    proc.config = Some(config.to_path_buf());
    Ok(proc)
}

fn serve_command(gateway_bin: &str, config: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(gateway_bin);
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--listen")
        .arg("127.0.0.1:0");
    command.env(
        "SWITCHBOARD_LOG",
        std::env::var("SWITCHBOARD_LOG").unwrap_or_else(|_| "warn".into()),
    );
    command.envs(env.iter().copied());
    command
}

/// Starts the fixture server over HTTP (`transport` = "http" or "sse") with extra args.
pub async fn spawn_fixture_http(
    fixture_bin: &Path,
    transport: &str,
    args: &[&str],
) -> anyhow::Result<Proc> {
    let mut command = Command::new(fixture_bin);
    command
        .arg(transport)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(args);
    spawn_announcing(command, "listening on ", None).await
}
