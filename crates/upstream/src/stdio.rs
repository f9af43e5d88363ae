//! Stdio upstreams: a child process in its own process group, framed newline JSON on its
//! stdin/stdout, stderr captured into our logs.
//!
//! One task owns each resource: the writer owns stdin, the reader owns stdout, the stderr
//! task owns stderr and the supervisor owns the `Child` (and so reaps it). Dropping the
//! link (or calling `shutdown`) runs the stop sequence: close stdin, wait, SIGTERM the
//! group, wait, SIGKILL the group. The child also gets SIGKILL if the gateway dies
//! (`PR_SET_PDEATHSIG`), and its whole group is killed by the guardian (see `guardian.rs`),
//! so no process of a server outlives us even after `kill -9`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use parking_lot::Mutex;
use switchboard_config::TransportSpec;
use switchboard_protocol::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::framing::{Frame, Framer};
use crate::lines::write_lines;
use crate::mux::Mux;
use crate::{ConnectError, ConnectOptions, UpstreamEvent};

/// Environment variables a child inherits from the gateway; everything else must be
/// configured explicitly in the server's `env`.
const INHERITED_ENV: [&str; 7] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM"];
/// Time the child gets to exit after stdin closes, and again after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Longest stderr line logged as is.
const STDERR_LINE_LIMIT: usize = 4096;
/// Bound of the queue of messages waiting to be written to the child.
const WRITE_QUEUE: usize = 1024;

pub(crate) struct StdioLink {
    pub(crate) mux: Arc<Mux>,
    pid: Option<u32>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    exited: CancellationToken,
}

impl StdioLink {
    pub(crate) fn spawn(
        options: &ConnectOptions,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Result<StdioLink, ConnectError> {
        let TransportSpec::Stdio {
            command,
            args,
            env,
            cwd,
        } = &options.spec.transport
        else {
            unreachable!("StdioLink::spawn is only called for stdio specs")
        };
        let program = resolve_program(command);
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for key in INHERITED_ENV {
            if let Ok(value) = std::env::var(key) {
                cmd.env(key, value);
            }
        }
        // Values are secrets: they reach the child and nothing else.
        cmd.envs(env.iter().map(|(key, value)| (key, value.expose())));
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|source| ConnectError::Spawn {
            command: command.clone(),
            source,
        })?;
        let pid = child.id();
        if let Some(pid) = pid {
            // The child leads its own group: the guardian kills it if we die.
            crate::guardian::watch(pid);
        }
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let (out_tx, out_rx) = mpsc::channel(WRITE_QUEUE);
        let mux = Arc::new(Mux::new(options.server.clone(), out_tx, events));
        let close_stdin = CancellationToken::new();
        let exited = CancellationToken::new();
        let recent_stderr = Arc::new(Mutex::new(VecDeque::new()));

        // Dropping stdin when the writer ends closes it: the polite stop signal.
        tokio::spawn(write_lines(
            stdin,
            out_rx,
            close_stdin.clone(),
            |line: &Vec<u8>, batch| batch.extend_from_slice(line),
        ));
        tokio::spawn(read_loop(mux.clone(), stdout, options.max_message_bytes));
        tokio::spawn(stderr_loop(
            options.server.clone(),
            stderr,
            recent_stderr.clone(),
        ));
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(supervise(
            child,
            mux.clone(),
            stop_rx,
            close_stdin,
            exited.clone(),
            recent_stderr,
        ));
        tracing::info!(server = %options.server, pid, command = %program.display(), "started stdio upstream");
        Ok(StdioLink {
            mux,
            pid,
            stop: Mutex::new(Some(stop_tx)),
            exited,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Runs the stop sequence and waits until the child has been reaped.
    pub(crate) async fn shutdown(&self) {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        self.exited.cancelled().await;
    }
}

/// A bare command name that exists next to our own executable wins over `PATH`, so the
/// shipped example configs can name `switchboard-fixture` wherever the binaries live.
fn resolve_program(command: &str) -> PathBuf {
    if !command.contains('/')
        && let Some(dir) = std::env::current_exe()
            .ok()
            .as_deref()
            .and_then(Path::parent)
    {
        let beside = dir.join(command);
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from(command)
}

#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and calls only prctl(2),
    // which is async-signal-safe; it allocates nothing and touches no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

async fn read_loop(mux: Arc<Mux>, stdout: tokio::process::ChildStdout, limit: usize) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut framer = Framer::new(limit);
    let mut garbage = 0u64;
    loop {
        match framer.next(&mut reader).await {
            Ok(Frame::Line(line)) => match Message::parse(&line) {
                Ok(message) => mux.handle(message).await,
                Err(error) => {
                    garbage += 1;
                    mux.fail_unparseable(&line, &error.to_string());
                    let excerpt: String =
                        String::from_utf8_lossy(&line).chars().take(200).collect();
                    tracing::warn!(server = %mux.server, %error, excerpt, garbage, "upstream wrote a non-MCP line to stdout");
                }
            },
            Ok(Frame::Oversized { id }) => mux.fail_oversized(id.as_ref(), limit),
            Ok(Frame::Eof) | Err(_) => break,
        }
    }
    mux.close("stdout closed");
}

async fn stderr_loop(
    server: String,
    stderr: tokio::process::ChildStderr,
    recent: Arc<Mutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bound each read: a flood without newlines must not grow memory.
        let read = (&mut reader)
            .take(STDERR_LINE_LIMIT as u64)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                if text.is_empty() {
                    continue;
                }
                tracing::info!(target: "switchboard::upstream::stderr", server = %server, "{text}");
                let mut recent = recent.lock();
                if recent.len() == 5 {
                    recent.pop_front();
                }
                recent.push_back(text);
            }
        }
    }
}

async fn supervise(
    mut child: Child,
    mux: Arc<Mux>,
    stop: oneshot::Receiver<()>,
    close_stdin: CancellationToken,
    exited: CancellationToken,
    recent_stderr: Arc<Mutex<VecDeque<String>>>,
) {
    let pid = child.id();
    let status = tokio::select! {
        status = child.wait() => {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            let last = recent_stderr.lock().back().cloned();
            let reason = match last {
                Some(line) => format!("process exited ({status}); last stderr: {line}"),
                None => format!("process exited ({status})"),
            };
            tracing::warn!(server = %mux.server, pid, %reason, "stdio upstream exited");
            mux.close(&reason);
            status
        }
        _ = stop => {
            mux.close_cancelling("server stopped");
            stop_child(&mut child, &close_stdin).await
        }
    };
    // Grandchildren share the group: make sure none outlives its parent.
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        crate::guardian::forget(pid);
    }
    tracing::debug!(server = %mux.server, pid, %status, "stdio upstream reaped");
    exited.cancel();
}

/// Close stdin, wait; SIGTERM the group, wait; SIGKILL the group. Always reaps.
async fn stop_child(child: &mut Child, close_stdin: &CancellationToken) -> String {
    close_stdin.cancel();
    if let Ok(Ok(status)) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
        return status.to_string();
    }
    let group = child.id().map(|pid| Pid::from_raw(pid as i32));
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGTERM);
        if let Ok(Ok(status)) = tokio::time::timeout(STOP_GRACE, child.wait()).await {
            return status.to_string();
        }
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = child.start_kill();
    child
        .wait()
        .await
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string())
}
