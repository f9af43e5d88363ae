//! Stdio upstreams: a child process in its own process group, framed newline JSON on its
//! stdin/stdout, stderr captured into our logs.
//!
//! One task owns each resource: the writer owns stdin, the reader owns stdout, the stderr
//! task owns stderr and the supervisor owns the `Child` (and so reaps it). Dropping the
//! link (or calling `shutdown`) runs the stop sequence: close stdin, wait, SIGTERM the
//! group, wait, SIGKILL the group. The child also gets SIGKILL if the gateway dies
//! (`PR_SET_PDEATHSIG`), and its whole group is killed by the guardian (see `guardian.rs`),
//! so no process of a server outlives us even after `kill -9`.
//!
//! A server with a sandbox (`sandbox.rs`) is prepared before the spawn (cgroups, Landlock
//! ruleset, rlimits) and applies it between `fork` and `exec`; when it ends, the
//! supervisor reads its ending (a limit that killed it reaches waiting callers as
//! `CallError::SandboxLimit`) and removes its cgroups.

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
use crate::{ConnectError, ConnectOptions, UpstreamEvent, sandbox};

/// Environment variables a child inherits from the gateway; everything else must be
/// configured explicitly in the server's `env`.
const INHERITED_ENV: [&str; 7] = ["PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM"];
/// Time the child gets to exit after stdin closes, and again after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Longest stderr line logged as is.
const STDERR_LINE_LIMIT: usize = 4096;
/// Bound of the queue of messages waiting to be written to the child.
const WRITE_QUEUE: usize = 1024;
/// How long stdout's end waits for the process to exit, so callers learn why it ended.
const EXIT_AFTER_EOF: Duration = Duration::from_secs(1);
/// How long an exit waits for stderr's last lines (they explain the ending).
const STDERR_AFTER_EXIT: Duration = Duration::from_millis(500);

pub(crate) struct StdioLink {
    pub(crate) mux: Arc<Mux>,
    pid: Option<u32>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    exited: CancellationToken,
    sandbox: Option<Arc<sandbox::Tracker>>,
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
            sandbox: sandbox_spec,
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
        let prepared = match sandbox_spec {
            None => None,
            Some(spec) => {
                let report = sandbox::Report::assess(spec);
                let prepared = sandbox::prepare(&options.server, spec, &report)?;
                sandbox::install(&mut cmd, &prepared);
                tracing::debug!(server = %options.server, sandbox = %report, "starting a sandboxed stdio upstream");
                Some(prepared)
            }
        };
        let mut child = cmd.spawn().map_err(|source| match prepared {
            None => ConnectError::Spawn {
                command: command.clone(),
                source,
            },
            Some(_) => ConnectError::SandboxedSpawn {
                command: command.clone(),
                source,
            },
        })?;
        // The child has applied it; the parent keeps the tracker only.
        let tracker = prepared.map(|prepared| Arc::new(prepared.tracker));
        let pid = child.id();
        if let Some(pid) = pid {
            // The child leads its own group: the guardian kills it if we die.
            crate::guardian::watch(pid);
        }
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        let (out_tx, out_rx) = mpsc::channel(WRITE_QUEUE);
        let mux = Arc::new(Mux::new(options.server.clone(), out_tx, events.clone()));
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
        let stdout_done = CancellationToken::new();
        let stderr_done = CancellationToken::new();
        tokio::spawn(read_loop(
            mux.clone(),
            stdout,
            options.max_message_bytes,
            stdout_done.clone(),
        ));
        tokio::spawn(stderr_loop(
            options.server.clone(),
            stderr,
            recent_stderr.clone(),
            stderr_done.clone(),
        ));
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(supervise(
            child,
            Supervised {
                mux: mux.clone(),
                events,
                close_stdin,
                exited: exited.clone(),
                stdout_done,
                stderr_done,
                recent_stderr,
                sandbox: tracker.clone(),
            },
            stop_rx,
        ));
        tracing::info!(server = %options.server, pid, command = %program.display(), "started stdio upstream");
        Ok(StdioLink {
            mux,
            pid,
            stop: Mutex::new(Some(stop_tx)),
            exited,
            sandbox: tracker,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub(crate) fn take_sandbox_hits(&self) -> Option<sandbox::Counters> {
        self.sandbox.as_ref().map(|tracker| tracker.take_hits())
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

/// Reads the child's stdout until it ends; the supervisor then closes the mux (with the
/// process's ending when it follows shortly).
async fn read_loop(
    mux: Arc<Mux>,
    stdout: tokio::process::ChildStdout,
    limit: usize,
    done: CancellationToken,
) {
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
    done.cancel();
}

async fn stderr_loop(
    server: String,
    stderr: tokio::process::ChildStderr,
    recent: Arc<Mutex<VecDeque<String>>>,
    done: CancellationToken,
) {
    let _done = done.drop_guard();
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

/// What the supervisor works with besides the child.
struct Supervised {
    mux: Arc<Mux>,
    events: mpsc::Sender<UpstreamEvent>,
    close_stdin: CancellationToken,
    exited: CancellationToken,
    stdout_done: CancellationToken,
    stderr_done: CancellationToken,
    recent_stderr: Arc<Mutex<VecDeque<String>>>,
    sandbox: Option<Arc<sandbox::Tracker>>,
}

async fn supervise(mut child: Child, run: Supervised, stop: oneshot::Receiver<()>) {
    let pid = child.id();
    let mux = &run.mux;
    tokio::pin!(stop);
    let mut stdout_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break ended(status, &run, pid).await,
            () = run.stdout_done.cancelled(), if stdout_open => {
                stdout_open = false;
                // Usually the process is exiting: callers should learn why.
                if let Ok(status) = tokio::time::timeout(EXIT_AFTER_EOF, child.wait()).await {
                    break ended(status, &run, pid).await;
                }
                mux.close("stdout closed");
            }
            _ = &mut stop => {
                mux.close_cancelling("server stopped");
                let status = stop_child(&mut child, &run.close_stdin).await;
                if let Some(tracker) = &run.sandbox {
                    let (hits, _) = tracker.finish(None, &[]).await;
                    let _ = run.events.try_send(UpstreamEvent::SandboxEnded { hits, killed: None });
                }
                break status;
            }
        }
    };
    // Grandchildren share the group: make sure none outlives its parent.
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        crate::guardian::forget(pid);
    }
    tracing::debug!(server = %mux.server, pid, %status, "stdio upstream reaped");
    run.exited.cancel();
}

/// The process exited on its own: read why (a sandbox limit, or its status and last
/// stderr line) and tell waiting callers.
async fn ended(
    status: std::io::Result<std::process::ExitStatus>,
    run: &Supervised,
    pid: Option<u32>,
) -> String {
    // Its last words explain the ending; they may still be in the pipe.
    let _ = tokio::time::timeout(STDERR_AFTER_EXIT, run.stderr_done.cancelled()).await;
    let text = match &status {
        Ok(status) => status.to_string(),
        Err(error) => error.to_string(),
    };
    let killed = match &run.sandbox {
        None => None,
        Some(tracker) => {
            let stderr: Vec<String> = run.recent_stderr.lock().iter().cloned().collect();
            let (hits, killed) = tracker.finish(status.as_ref().ok().copied(), &stderr).await;
            let ended = UpstreamEvent::SandboxEnded {
                hits,
                killed: killed.clone(),
            };
            let _ = run.events.send(ended).await;
            killed
        }
    };
    match killed {
        Some(hit) => {
            tracing::warn!(server = %run.mux.server, pid, status = %text, control = hit.control.as_str(), "stdio upstream {hit}");
            run.mux.close_killed(&hit);
        }
        None => {
            let last = run.recent_stderr.lock().back().cloned();
            let reason = match last {
                Some(line) => format!("process exited ({text}); last stderr: {line}"),
                None => format!("process exited ({text})"),
            };
            tracing::warn!(server = %run.mux.server, pid, %reason, "stdio upstream exited");
            run.mux.close(&reason);
        }
    }
    text
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
