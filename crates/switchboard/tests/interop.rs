//! Interop tier: the real `switchboard` binary between third-party MCP peers.
//!
//! Upstreams are the reference servers from the registries (`server-everything` over
//! stdio, Streamable HTTP and the 2024-11-05 HTTP+SSE transport, `mcp-server-time` over
//! stdio); clients are the official Python SDK (`interop/*.py`, legacy and 2026-07-28
//! modes) and the Inspector CLI (legacy and modern eras). Both gateway faces are
//! covered: `switchboard serve` (HTTP) and `switchboard stdio` spawned by the client.
//! Every client runs the same [`standard_assertions`] through a [`Driver`]. The
//! `oauth` module has a real MCP client log in with OAuth (discovery, registration,
//! PKCE) against a real authorization server (`oidc-provider`) before it calls a tool.
//!
//! The peers come from `scripts/install-interop`, which writes `tools.env` into the tools
//! directory (`$SWITCHBOARD_TOOLS_DIR`, default `$HOME/.cache/switchboard/tools`). When
//! they are missing every test here passes after printing why it skipped, unless
//! `SWITCHBOARD_INTEROP=1` (CI), which turns a missing tool into a failure;
//! `SWITCHBOARD_INTEROP=0` skips them always.
//!
//! Every test function name starts with `interop_`, so `scripts/test` can run the
//! hermetic tiers with `--skip interop_` and this tier on its own.
//!
//! Process hygiene is part of what is tested: each spawned process sits behind a
//! [`Proc`] guard that kills its whole process tree on drop (also when the test
//! panics), and the tests assert that the gateway exits cleanly and leaves none of its
//! upstreams behind.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// How long one client invocation may take: Python imports plus a cold gateway start
/// with two upstreams (Node and Python) on a loaded 2-core machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the gateway and upstreams may take to bind their ports.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a process gets between SIGTERM (or stdin EOF) and being called a leak.
const EXIT_GRACE: Duration = Duration::from_secs(15);

const SWITCHBOARD: &str = env!("CARGO_BIN_EXE_switchboard");

/// A real MCP client logs in with OAuth against a local authorization server.
#[path = "interop/oauth.rs"]
mod oauth;

/// Real SDK clients on the 2024-11-05 HTTP+SSE face (`GET /sse`).
#[path = "interop/sse_face.rs"]
mod sse_face;

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop")
}

// --- Tools -------------------------------------------------------------------------

/// The third-party peers installed by `scripts/install-interop`.
struct Tools {
    /// Node 22 (the Inspector needs >= 22.19).
    node: PathBuf,
    /// The Inspector's launcher script, run with `node` (no shebang or PATH lookup).
    inspector_js: PathBuf,
    /// `server-everything`'s entry script, run with `node`.
    everything_js: PathBuf,
    /// The venv's Python, with `mcp` and `mcp-server-time`.
    python: PathBuf,
    /// The `node_modules` holding `oidc-provider` (the OAuth login test's authorization
    /// server).
    oauth_modules: PathBuf,
}

impl Tools {
    /// The tools, or `None` (after saying why) when the test should skip.
    fn locate() -> Option<Tools> {
        let setting = std::env::var("SWITCHBOARD_INTEROP").unwrap_or_default();
        if setting == "0" {
            eprintln!("skipping interop test: SWITCHBOARD_INTEROP=0");
            return None;
        }
        let required = setting == "1";
        let dir = std::env::var_os("SWITCHBOARD_TOOLS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME").unwrap_or_default();
                Path::new(&home).join(".cache/switchboard/tools")
            });
        match Tools::load(&dir) {
            Ok(tools) => Some(tools),
            Err(reason) if required => {
                panic!("SWITCHBOARD_INTEROP=1 but {reason}; run scripts/install-interop")
            }
            Err(reason) => {
                eprintln!(
                    "skipping interop test: {reason}; run scripts/install-interop \
                     (SWITCHBOARD_INTEROP=1 turns this into a failure)"
                );
                None
            }
        }
    }

    fn load(dir: &Path) -> Result<Tools, String> {
        let env_file = dir.join("tools.env");
        let text = fs::read_to_string(&env_file)
            .map_err(|error| format!("cannot read {}: {error}", env_file.display()))?;
        let vars: HashMap<&str, &str> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .collect();
        let value = |key: &str| -> Result<PathBuf, String> {
            let value = vars
                .get(key)
                .ok_or_else(|| format!("{} does not set {key}", env_file.display()))?;
            let path = PathBuf::from(value);
            match path.try_exists() {
                Ok(true) => Ok(path),
                Ok(false) => Err(format!("{key}={value} does not exist")),
                Err(error) => Err(format!("{key}={value}: {error}")),
            }
        };
        // npm's `.bin` entries are symlinks to scripts with a `node` shebang: run the
        // scripts with our Node instead of trusting PATH. The venv's python must NOT be
        // resolved (the symlink is what makes it the venv's interpreter).
        let script = |key: &str| -> Result<PathBuf, String> {
            let link = value(key)?;
            fs::canonicalize(&link).map_err(|error| format!("{key}={}: {error}", link.display()))
        };
        Ok(Tools {
            node: value("INTEROP_NODE")?,
            inspector_js: script("INTEROP_INSPECTOR")?,
            everything_js: script("INTEROP_EVERYTHING")?,
            python: value("INTEROP_PYTHON")?,
            oauth_modules: value("INTEROP_OAUTH_MODULES")?,
        })
    }
}

// --- Processes ----------------------------------------------------------------------

/// One process in `/proc`, identified across pid reuse by its start time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ProcessId {
    pid: i32,
    start_time: u64,
}

struct ProcStat {
    id: ProcessId,
    parent: i32,
    state: char,
}

fn read_stat(pid: i32) -> Option<ProcStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after
    // the last `)`. Field 22 overall (starttime) is index 19 after the comm.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        id: ProcessId {
            pid,
            start_time: fields.get(19)?.parse().ok()?,
        },
        parent: fields.get(1)?.parse().ok()?,
        state: fields.first()?.chars().next()?,
    })
}

/// Every living descendant of `root` (not `root` itself).
fn descendants(root: i32) -> Vec<ProcessId> {
    let mut children: HashMap<i32, Vec<ProcessId>> = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        if let Some(stat) = read_stat(pid).filter(|stat| stat.state != 'Z') {
            children.entry(stat.parent).or_default().push(stat.id);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for child in children.remove(&parent).unwrap_or_default() {
            queue.push(child.pid);
            found.push(child);
        }
    }
    found
}

/// The same process is still running (not exited, not a zombie, pid not reused).
fn is_alive(process: &ProcessId) -> bool {
    read_stat(process.pid)
        .is_some_and(|stat| stat.id == *process && stat.state != 'Z' && stat.state != 'X')
}

fn command_line(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .replace('\0', " ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn signal(process: &ProcessId, signal: Signal) {
    if is_alive(process) {
        let _ = kill(Pid::from_raw(process.pid), signal);
    }
}

/// A spawned process in its own process group. Dropping the guard kills the process and
/// every descendant (the gateway puts each upstream in a group of its own, so a group
/// kill alone would miss them), then reaps it.
struct Proc {
    name: String,
    child: Child,
    /// Where its stderr goes, shown when a test fails while it runs.
    log: Option<PathBuf>,
    /// Descendants observed while it ran: checked for leaks after it exits.
    seen: BTreeMap<ProcessId, String>,
}

impl Proc {
    /// Spawns `command` in a new process group, stdin closed unless set by the caller.
    fn spawn(name: &str, command: &mut Command, log: Option<PathBuf>) -> Proc {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        Proc {
            name: name.to_owned(),
            child,
            log,
            seen: BTreeMap::new(),
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// Records the current descendants so that leaks can be found after the exit.
    fn observe(&mut self) {
        for process in descendants(self.pid()) {
            let pid = process.pid;
            self.seen
                .entry(process)
                .or_insert_with(|| command_line(pid));
        }
    }

    /// Polls until the process exits or `deadline`, recording descendants meanwhile.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            self.observe();
            if let Some(status) = self.child.try_wait().expect("try_wait works") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Descendants seen while it ran that outlive it by more than [`EXIT_GRACE`]; they
    /// are killed before returning, and described as `pid command line`.
    fn leftovers(&mut self) -> Vec<String> {
        let deadline = Instant::now() + EXIT_GRACE;
        while self.seen.keys().any(is_alive) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        let mut leaked = Vec::new();
        for (process, line) in &self.seen {
            if is_alive(process) {
                leaked.push(format!("{} {line}", process.pid));
                signal(process, Signal::SIGKILL);
            }
        }
        leaked
    }

    /// Graceful stop: SIGTERM, wait up to [`EXIT_GRACE`]. Returns the exit status
    /// (`None`: it ignored SIGTERM and was killed) and the descendants it left behind.
    fn terminate(&mut self) -> (Option<ExitStatus>, Vec<String>) {
        self.observe();
        if self.child.try_wait().expect("try_wait works").is_none() {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        }
        let Some(status) = self.wait_until(Instant::now() + EXIT_GRACE) else {
            self.kill_tree();
            return (None, Vec::new());
        };
        (Some(status), self.leftovers())
    }

    /// SIGKILLs the process and all its descendants. Descendants are frozen first
    /// (SIGSTOP, repeated until the tree stops growing), so none can fork a new one
    /// between the snapshot and the kill.
    fn kill_tree(&mut self) {
        let root = self.pid();
        let mut frozen: Vec<ProcessId> = Vec::new();
        // Only while it is unreaped is `root` sure to still name our child (and its group).
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(Pid::from_raw(root), Signal::SIGSTOP);
            for _ in 0..50 {
                let fresh: Vec<ProcessId> = descendants(root)
                    .into_iter()
                    .filter(|p| !frozen.contains(p))
                    .collect();
                if fresh.is_empty() {
                    break;
                }
                for process in &fresh {
                    signal(process, Signal::SIGSTOP);
                }
                frozen.extend(fresh);
            }
            let _ = killpg(Pid::from_raw(root), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(root), Signal::SIGKILL);
        }
        for process in frozen.iter().chain(self.seen.keys()) {
            signal(process, Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = strip_ansi(&fs::read_to_string(log).unwrap_or_default());
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if thread::panicking() && self.log.is_some() {
            eprintln!(
                "--- last stderr lines of {} ---\n{}\n---",
                self.name,
                self.log_tail()
            );
        }
        self.kill_tree();
    }
}

/// Reads a pipe to the end on a thread of its own, so a chatty child never blocks.
fn drain<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        strip_ansi(&String::from_utf8_lossy(&bytes))
    })
}

/// Drops ANSI colour sequences (`ESC [ … m`): the gateway colours its log even when
/// stderr is a file or a pipe, which makes failure messages hard to read.
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Waits for a line on `stdout` containing `marker` and returns it; the rest of the
/// stream is drained in the background.
fn wait_for_line(name: &str, stdout: ChildStdout, marker: &'static str) -> String {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains(marker) {
                let _ = sender.send(line);
                break;
            }
        }
        for _ in lines {}
    });
    receiver
        .recv_timeout(STARTUP_TIMEOUT)
        .unwrap_or_else(|_| panic!("{name} did not print {marker:?} within {STARTUP_TIMEOUT:?}"))
}

/// The result of one client invocation.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs a client to completion under [`CLIENT_TIMEOUT`] and checks that it leaves no
/// process behind (a stdio gateway it spawned must exit on EOF and stop its upstreams).
fn run_client(name: &str, command: &mut Command) -> Finished {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut client = Proc::spawn(name, command, None);
    let stdout = drain(client.child.stdout.take().expect("stdout is piped"));
    let stderr = drain(client.child.stderr.take().expect("stderr is piped"));
    let status = client.wait_until(Instant::now() + CLIENT_TIMEOUT);
    let leaked = match status {
        Some(_) => client.leftovers(),
        None => Vec::new(),
    };
    client.kill_tree();
    // Only now: a leftover holding a copy of a pipe would keep these reads open.
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "{name} did not finish within {CLIENT_TIMEOUT:?}\nstdout: {stdout}\nstderr: {stderr}"
        )
    };
    assert!(
        leaked.is_empty(),
        "{name} left processes behind {EXIT_GRACE:?} after it exited: {leaked:#?}\nstderr: {stderr}"
    );
    Finished {
        status,
        stdout,
        stderr,
    }
}

/// A loopback port that was free a moment ago (for servers that cannot take port 0).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("bound address").port()
}

// --- Gateway and upstreams ------------------------------------------------------------

/// A scratch directory for one test: configs, logs, the clients' `HOME`.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("switchboard-interop-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, contents).expect("write scratch file");
        path
    }

    /// A file to send a process's stderr to.
    fn log(&self, name: &str) -> (File, PathBuf) {
        let path = self.path(name);
        (File::create(&path).expect("create log file"), path)
    }
}

/// A TOML basic string: JSON string escapes are valid TOML.
fn toml_string(value: &Path) -> String {
    serde_json::to_string(value.to_str().expect("utf-8 path")).expect("a string serializes")
}

/// The network transports `server-everything` can serve.
#[derive(Clone, Copy)]
enum NetTransport {
    /// Streamable HTTP on `/mcp`.
    StreamableHttp,
    /// The 2024-11-05 HTTP+SSE transport: GET `/sse`, POST `/message`.
    Sse,
}

/// `server-everything` serving a network transport on a loopback port.
struct EverythingNet {
    /// Held for its `Drop`, which stops the server.
    _process: Proc,
    transport: NetTransport,
    url: String,
}

impl EverythingNet {
    fn start(tools: &Tools, scratch: &Scratch, transport: NetTransport) -> EverythingNet {
        let (mode, path) = match transport {
            NetTransport::StreamableHttp => ("streamableHttp", "/mcp"),
            NetTransport::Sse => ("sse", "/sse"),
        };
        let port = free_port();
        let (log, log_path) = scratch.log(&format!("everything-{mode}.log"));
        let mut command = Command::new(&tools.node);
        command
            .arg(&tools.everything_js)
            .arg(mode)
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        let name = format!("server-everything ({mode})");
        let mut proc = Proc::spawn(&name, &mut command, Some(log_path));
        // It announces itself on stderr, mixed with other output: poll the port instead.
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = proc.child.try_wait().expect("try_wait works") {
                panic!("{name} exited with {status} before listening");
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on port {port} within {STARTUP_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
        EverythingNet {
            _process: proc,
            transport,
            url: format!("http://127.0.0.1:{port}{path}"),
        }
    }
}

/// How the `everything` upstream is reached.
enum Everything<'a> {
    Stdio,
    Net(&'a EverythingNet),
}

/// A gateway config with `everything` (any transport) and `time` (stdio) upstreams.
fn gateway_config(tools: &Tools, everything: Everything<'_>) -> String {
    let everything = match everything {
        Everything::Stdio => format!(
            "command = {}\nargs = [{}, \"stdio\"]",
            toml_string(&tools.node),
            toml_string(&tools.everything_js)
        ),
        Everything::Net(server) => {
            let url = serde_json::to_string(&server.url).expect("a string serializes");
            match server.transport {
                NetTransport::StreamableHttp => format!("url = {url}"),
                NetTransport::Sse => format!("url = {url}\ntransport = \"sse\""),
            }
        }
    };
    format!(
        r#"[gateway]
name = "switchboard-interop"
# Node and Python start slowly on a busy CI machine. The era probe gets as long: a
# dual-era server that answers it late is a separate test
# (interop_slow_dual_era_stdio_upstream), not something every test should trip on.
connect_timeout_ms = 60000
probe_timeout_ms = 30000

[servers.everything]
{everything}

[servers.time]
command = {python}
args = ["-m", "mcp_server_time", "--local-timezone=UTC"]
"#,
        python = toml_string(&tools.python),
    )
}

/// `switchboard serve` on an ephemeral loopback port.
struct Gateway {
    proc: Proc,
    url: String,
}

impl Gateway {
    fn serve(scratch: &Scratch, config: &Path) -> Gateway {
        Gateway::serve_at(scratch, config, "127.0.0.1:0")
    }

    /// `switchboard serve` on `listen` (a config that names its own URL needs the port
    /// before the gateway starts).
    fn serve_at(scratch: &Scratch, config: &Path, listen: &str) -> Gateway {
        let (log, log_path) = scratch.log("gateway.log");
        let mut command = Command::new(SWITCHBOARD);
        command
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", listen])
            .env("SWITCHBOARD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut proc = Proc::spawn("switchboard serve", &mut command, Some(log_path));
        let stdout = proc.child.stdout.take().expect("stdout is piped");
        let line = wait_for_line(&proc.name, stdout, "switchboard listening on ");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("a URL ends the line")
            .to_owned();
        assert!(
            url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
            "odd URL in {line:?}"
        );
        Gateway { proc, url }
    }

    /// SIGTERM; asserts a clean exit with every upstream process gone.
    fn stop(mut self) {
        let (status, leaked) = self.proc.terminate();
        let status = status.unwrap_or_else(|| {
            panic!("the gateway ignored SIGTERM for {EXIT_GRACE:?} (its log follows)")
        });
        assert!(
            status.success(),
            "the gateway exited with {status} after SIGTERM (its log follows)"
        );
        assert!(
            leaked.is_empty(),
            "the gateway left processes behind: {leaked:#?} (its log follows)"
        );
    }
}

/// Where a client connects: the HTTP face, or a command line serving stdio.
#[derive(Clone)]
enum Target {
    Http(String),
    Stdio(Vec<String>),
}

impl Target {
    fn stdio_gateway(config: &Path) -> Target {
        Target::Stdio(vec![
            SWITCHBOARD.to_owned(),
            "stdio".to_owned(),
            "--config".to_owned(),
            config.to_str().expect("utf-8 path").to_owned(),
        ])
    }

    fn args(&self) -> Vec<String> {
        match self {
            Target::Http(url) => vec![url.clone()],
            Target::Stdio(command) => command.clone(),
        }
    }
}

// --- Clients ------------------------------------------------------------------------

/// One third-party client in one era, reduced to what the assertions need. Results are
/// the MCP result objects as JSON.
trait Driver {
    fn describe(&self) -> String;
    fn list_tools(&self) -> Vec<String>;
    fn call_tool(&self, name: &str, arguments: Value) -> Value;
    /// Reads the listed resource whose URI ends with `suffix`; returns (URI, result).
    fn read_resource(&self, suffix: &str) -> (String, Value);
    fn get_prompt(&self, name: &str, arguments: Value) -> Value;
}

/// The official Python SDK's `mcp.Client`, via the scripts in `interop/`.
struct PythonClient<'a> {
    tools: &'a Tools,
    /// `legacy` or a modern protocol version.
    mode: &'static str,
    target: Target,
}

impl PythonClient<'_> {
    /// Runs `interop/SCRIPT MODE ARGS… TARGET…` and returns its JSON document.
    fn run(&self, script: &str, args: &[&str]) -> Value {
        let mut command = Command::new(&self.tools.python);
        command
            .arg(interop_dir().join(script))
            .arg(self.mode)
            .args(args)
            .args(self.target.args())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("SWITCHBOARD_LOG", "info")
            .env("NO_COLOR", "1");
        let name = format!("{} {script} {}", self.describe(), args.join(" "));
        let finished = run_client(&name, &mut command);
        assert!(
            finished.status.success(),
            "{name} failed ({})\nstdout: {}\nstderr: {}",
            finished.status,
            finished.stdout,
            finished.stderr
        );
        let document: Value = serde_json::from_str(finished.stdout.trim())
            .unwrap_or_else(|error| panic!("{name}: not JSON ({error}): {}", finished.stdout));
        let expected = if self.mode == "legacy" {
            None
        } else {
            Some(self.mode)
        };
        let negotiated = document["protocolVersion"].as_str().unwrap_or_default();
        match expected {
            Some(version) => assert_eq!(negotiated, version, "{name}: negotiated version"),
            None => assert!(
                !negotiated.is_empty() && negotiated < "2026-07-28",
                "{name}: legacy mode negotiated {negotiated:?}"
            ),
        }
        document
    }
}

impl Driver for PythonClient<'_> {
    fn describe(&self) -> String {
        format!("python mcp (mode {})", self.mode)
    }

    fn list_tools(&self) -> Vec<String> {
        let document = self.run("list_tools.py", &[]);
        serde_json::from_value(document["tools"].clone()).expect("tools is a list of names")
    }

    fn call_tool(&self, name: &str, arguments: Value) -> Value {
        self.run("call_tool.py", &[name, &arguments.to_string()])["result"].take()
    }

    fn read_resource(&self, suffix: &str) -> (String, Value) {
        let mut document = self.run("read_resource.py", &[suffix]);
        (
            document["uri"].as_str().unwrap_or_default().to_owned(),
            document["result"].take(),
        )
    }

    fn get_prompt(&self, name: &str, arguments: Value) -> Value {
        self.run("get_prompt.py", &[name, &arguments.to_string()])["result"].take()
    }
}

/// The Inspector v2 CLI (`mcp-inspector --cli --format json`).
struct Inspector<'a> {
    tools: &'a Tools,
    /// `legacy` or `modern`.
    era: &'static str,
    target: Target,
    /// Its `HOME`, so the catalog and client config it writes stay in the scratch dir.
    home: PathBuf,
}

impl Inspector<'_> {
    fn run(&self, method_args: &[&str]) -> Value {
        let mut command = Command::new(&self.tools.node);
        command
            .arg(&self.tools.inspector_js)
            .args([
                "--cli",
                "--format",
                "json",
                "-q",
                "--protocol-era",
                self.era,
            ])
            .args(method_args)
            .env("HOME", &self.home)
            .env("MCP_CATALOG_PATH", self.home.join("catalog.json"))
            .env("MCP_CLIENT_CONFIG_PATH", self.home.join("client.json"))
            .env("NO_COLOR", "1");
        // Options first, then `--` and the target: it ends variadic options such as
        // `--prompt-args`, and keeps the gateway's own `--config` away from the
        // Inspector's option parser.
        command.arg("--").args(self.target.args());
        let name = format!("{} {}", self.describe(), method_args.join(" "));
        let finished = run_client(&name, &mut command);
        assert!(
            finished.status.success(),
            "{name} failed ({})\nstdout: {}\nstderr: {}",
            finished.status,
            finished.stdout,
            finished.stderr
        );
        let mut document: Value = serde_json::from_str(finished.stdout.trim())
            .unwrap_or_else(|error| panic!("{name}: not JSON ({error}): {}", finished.stdout));
        assert!(
            document.get("result").is_some(),
            "{name}: no result in {document}"
        );
        document["result"].take()
    }
}

impl Driver for Inspector<'_> {
    fn describe(&self) -> String {
        format!("inspector cli (era {})", self.era)
    }

    fn list_tools(&self) -> Vec<String> {
        let result = self.run(&["--method", "tools/list"]);
        let tools = result["tools"].as_array().expect("tools is a list");
        tools
            .iter()
            .map(|tool| tool["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn call_tool(&self, name: &str, arguments: Value) -> Value {
        let arguments = arguments.to_string();
        self.run(&[
            "--method",
            "tools/call",
            "--tool-name",
            name,
            "--tool-args-json",
            &arguments,
        ])
    }

    fn read_resource(&self, suffix: &str) -> (String, Value) {
        let listed = self.run(&["--method", "resources/list"]);
        let uri = listed["resources"]
            .as_array()
            .expect("resources is a list")
            .iter()
            .filter_map(|resource| resource["uri"].as_str())
            .find(|uri| uri.ends_with(suffix))
            .unwrap_or_else(|| panic!("no resource URI ends with {suffix:?}: {listed}"))
            .to_owned();
        let result = self.run(&["--method", "resources/read", "--uri", &uri]);
        (uri, result)
    }

    fn get_prompt(&self, name: &str, arguments: Value) -> Value {
        let pairs: Vec<String> = arguments
            .as_object()
            .expect("prompt arguments are an object")
            .iter()
            .map(|(key, value)| format!("{key}={}", value.as_str().expect("string argument")))
            .collect();
        let mut args = vec!["--method", "prompts/get", "--prompt-name", name];
        if !pairs.is_empty() {
            args.push("--prompt-args");
            args.extend(pairs.iter().map(String::as_str));
        }
        self.run(&args)
    }
}

// --- Shared assertions ----------------------------------------------------------------

fn text_of(content: &Value) -> &str {
    content["text"].as_str().unwrap_or_default()
}

/// What every client must see through the gateway, whatever the faces and eras:
/// namespaced tools from both upstreams, tool calls with structured and plain results, a
/// resource read and a prompt with arguments.
fn standard_assertions(driver: &dyn Driver) {
    let who = driver.describe();

    let tools = driver.list_tools();
    for expected in [
        "everything__echo",
        "everything__get-sum",
        "time__get_current_time",
        "time__convert_time",
    ] {
        assert!(
            tools.iter().any(|tool| tool == expected),
            "{who}: {expected} missing from {tools:?}"
        );
    }
    assert!(
        tools
            .iter()
            .all(|tool| tool.starts_with("everything__") || tool.starts_with("time__")),
        "{who}: un-namespaced tools in {tools:?}"
    );

    let time = driver.call_tool("time__get_current_time", json!({ "timezone": "UTC" }));
    assert_ne!(
        time["isError"],
        json!(true),
        "{who}: get_current_time failed: {time}"
    );
    let time_text = text_of(&time["content"][0]);
    assert!(
        time_text.contains("\"timezone\": \"UTC\""),
        "{who}: unexpected time result {time}"
    );
    if let Some(structured) = time.get("structuredContent") {
        assert_eq!(
            structured["timezone"], "UTC",
            "{who}: structuredContent {time}"
        );
    }

    let echo = driver.call_tool(
        "everything__echo",
        json!({ "message": "through switchboard" }),
    );
    assert_ne!(echo["isError"], json!(true), "{who}: echo failed: {echo}");
    assert_eq!(
        text_of(&echo["content"][0]),
        "Echo: through switchboard",
        "{who}: echo result {echo}"
    );

    let sum = driver.call_tool("everything__get-sum", json!({ "a": 2, "b": 40 }));
    assert!(
        text_of(&sum["content"][0]).contains("42"),
        "{who}: get-sum result {sum}"
    );

    let (uri, read) = driver.read_resource("/architecture.md");
    let contents = read["contents"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no contents in {read}"));
    assert_eq!(contents.len(), 1, "{who}: contents of {uri}: {read}");
    assert_eq!(
        contents[0]["uri"],
        uri.as_str(),
        "{who}: read result names another URI: {read}"
    );
    assert!(
        text_of(&contents[0]).starts_with("# Everything Server"),
        "{who}: unexpected text of {uri}: {read}"
    );

    let prompt = driver.get_prompt("everything__args-prompt", json!({ "city": "Paris" }));
    let message = &prompt["messages"][0];
    assert_eq!(message["role"], "user", "{who}: prompt {prompt}");
    assert!(
        text_of(&message["content"]).contains("Paris"),
        "{who}: prompt {prompt}"
    );
}

// --- Tests ----------------------------------------------------------------------------

/// Which client the test drives.
#[derive(Clone, Copy)]
enum ClientKind {
    PythonLegacy,
    PythonModern,
    InspectorLegacy,
    InspectorModern,
}

fn drive(tools: &Tools, scratch: &Scratch, kind: ClientKind, target: Target) {
    let home = scratch.path("home");
    fs::create_dir_all(&home).expect("create client home");
    match kind {
        ClientKind::PythonLegacy => standard_assertions(&PythonClient {
            tools,
            mode: "legacy",
            target,
        }),
        ClientKind::PythonModern => standard_assertions(&PythonClient {
            tools,
            mode: "2026-07-28",
            target,
        }),
        ClientKind::InspectorLegacy => standard_assertions(&Inspector {
            tools,
            era: "legacy",
            target,
            home,
        }),
        ClientKind::InspectorModern => standard_assertions(&Inspector {
            tools,
            era: "modern",
            target,
            home,
        }),
    }
}

/// `switchboard serve` with stdio upstreams, driven by `kind` over HTTP.
fn http_face_stdio_upstreams(kind: ClientKind) {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let config = scratch.write(
        "switchboard.toml",
        &gateway_config(&tools, Everything::Stdio),
    );
    let gateway = Gateway::serve(&scratch, &config);
    drive(&tools, &scratch, kind, Target::Http(gateway.url.clone()));
    gateway.stop();
}

/// `switchboard serve` with `everything` served over the network, driven by `kind` over HTTP.
fn http_face_net_upstream(kind: ClientKind, transport: NetTransport) {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let everything = EverythingNet::start(&tools, &scratch, transport);
    let config = scratch.write(
        "switchboard.toml",
        &gateway_config(&tools, Everything::Net(&everything)),
    );
    let gateway = Gateway::serve(&scratch, &config);
    drive(&tools, &scratch, kind, Target::Http(gateway.url.clone()));
    gateway.stop();
    drop(everything);
}

/// `switchboard stdio` spawned by the client (one gateway per invocation).
fn stdio_face_stdio_upstreams(kind: ClientKind) {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let config = scratch.write(
        "switchboard.toml",
        &gateway_config(&tools, Everything::Stdio),
    );
    drive(&tools, &scratch, kind, Target::stdio_gateway(&config));
}

#[test]
fn interop_http_face_stdio_upstreams_python_legacy() {
    http_face_stdio_upstreams(ClientKind::PythonLegacy);
}

#[test]
fn interop_http_face_stdio_upstreams_python_2026() {
    http_face_stdio_upstreams(ClientKind::PythonModern);
}

#[test]
fn interop_http_face_stdio_upstreams_inspector_legacy() {
    http_face_stdio_upstreams(ClientKind::InspectorLegacy);
}

#[test]
fn interop_http_face_stdio_upstreams_inspector_modern() {
    http_face_stdio_upstreams(ClientKind::InspectorModern);
}

#[test]
fn interop_http_face_http_upstream_python_legacy() {
    http_face_net_upstream(ClientKind::PythonLegacy, NetTransport::StreamableHttp);
}

#[test]
fn interop_http_face_sse_upstream_python_legacy() {
    http_face_net_upstream(ClientKind::PythonLegacy, NetTransport::Sse);
}

#[test]
fn interop_http_face_http_upstream_python_2026() {
    http_face_net_upstream(ClientKind::PythonModern, NetTransport::StreamableHttp);
}

#[test]
fn interop_http_face_sse_upstream_python_2026() {
    http_face_net_upstream(ClientKind::PythonModern, NetTransport::Sse);
}

#[test]
fn interop_http_face_http_upstream_inspector_legacy() {
    http_face_net_upstream(ClientKind::InspectorLegacy, NetTransport::StreamableHttp);
}

#[test]
fn interop_http_face_sse_upstream_inspector_legacy() {
    http_face_net_upstream(ClientKind::InspectorLegacy, NetTransport::Sse);
}

#[test]
fn interop_http_face_http_upstream_inspector_modern() {
    http_face_net_upstream(ClientKind::InspectorModern, NetTransport::StreamableHttp);
}

#[test]
fn interop_http_face_sse_upstream_inspector_modern() {
    http_face_net_upstream(ClientKind::InspectorModern, NetTransport::Sse);
}

#[test]
fn interop_stdio_face_python_legacy() {
    stdio_face_stdio_upstreams(ClientKind::PythonLegacy);
}

#[test]
fn interop_stdio_face_python_2026() {
    stdio_face_stdio_upstreams(ClientKind::PythonModern);
}

#[test]
fn interop_stdio_face_inspector_legacy() {
    stdio_face_stdio_upstreams(ClientKind::InspectorLegacy);
}

#[test]
fn interop_stdio_face_inspector_modern() {
    stdio_face_stdio_upstreams(ClientKind::InspectorModern);
}

/// The gateway stops every upstream it started when it is told to stop, and exits
/// successfully.
#[test]
fn interop_sigterm_stops_all_upstreams() {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let config = scratch.write(
        "switchboard.toml",
        &gateway_config(&tools, Everything::Stdio),
    );
    let gateway = Gateway::serve(&scratch, &config);
    // Serve one client first: a stop is only meaningful once both upstreams are up
    // and the gateway is serving.
    let client = PythonClient {
        tools: &tools,
        mode: "legacy",
        target: Target::Http(gateway.url.clone()),
    };
    let tools_listed = client.list_tools();
    assert!(
        tools_listed.iter().any(|tool| tool.starts_with("time__"))
            && tools_listed
                .iter()
                .any(|tool| tool.starts_with("everything__")),
        "both upstreams must be up: {tools_listed:?}"
    );
    gateway.stop();
}

/// `switchboard serve` with the stdio upstreams and a Python client in `mode`, for the
/// feature tests below.
fn with_python_client(mode: &'static str, test: impl FnOnce(&PythonClient<'_>)) {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let config = scratch.write(
        "switchboard.toml",
        &gateway_config(&tools, Everything::Stdio),
    );
    let gateway = Gateway::serve(&scratch, &config);
    test(&PythonClient {
        tools: &tools,
        mode,
        target: Target::Http(gateway.url.clone()),
    });
    gateway.stop();
}

/// The callbacks `interop/server_request.py` recorded that carry `key`.
fn callbacks_with<'a>(document: &'a Value, key: &str) -> Vec<&'a Value> {
    let callbacks = document["callbacks"]
        .as_array()
        .expect("callbacks is a list");
    callbacks
        .iter()
        .filter(|entry| entry.get(key).is_some())
        .collect()
}

/// Server→client traffic from an upstream reaches the client and the answers get back:
/// progress notifications, sampling and elicitation (relayed requests on a legacy
/// session; `input_required` rounds on 2026-07-28).
fn server_requests(mode: &'static str) {
    with_python_client(mode, |client| {
        let progress = client.run("server_request.py", &["progress"]);
        assert!(
            !callbacks_with(&progress, "progress").is_empty(),
            "mode {mode}: no progress notification reached the client: {progress}"
        );

        let sampling = client.run("server_request.py", &["sampling"]);
        assert_eq!(
            callbacks_with(&sampling, "sampling").len(),
            1,
            "mode {mode}: the sampling request did not reach the client once: {sampling}"
        );
        assert!(
            text_of(&sampling["result"]["content"][0]).contains("sampled by interop"),
            "mode {mode}: the sampling answer did not get back to the upstream: {sampling}"
        );

        let elicitation = client.run("server_request.py", &["elicitation"]);
        assert_eq!(
            callbacks_with(&elicitation, "elicitation").len(),
            1,
            "mode {mode}: the elicitation did not reach the client once: {elicitation}"
        );
        let contents = elicitation["result"]["content"].to_string();
        assert!(
            contents.contains("interop@example.com"),
            "mode {mode}: the elicitation answer did not get back to the upstream: {elicitation}"
        );
    });
}

#[test]
fn interop_server_requests_python_legacy() {
    server_requests("legacy");
}

#[test]
fn interop_server_requests_python_2026() {
    server_requests("2026-07-28");
}

/// The roots a client declares reach an upstream that asks for them (the README says
/// roots are bridged in every era combination). server-everything asks when a client
/// session starts and on `notifications/roots/list_changed`; `get-roots-list` reports
/// what it got.
fn roots(mode: &'static str) {
    with_python_client(mode, |client| {
        let roots = client.run("server_request.py", &["roots"]);
        let text = text_of(&roots["result"]["content"][0]);
        assert!(
            text.contains("file:///interop-root"),
            "mode {mode}: the upstream never saw the client's root (client asked {} time(s)): {text}",
            callbacks_with(&roots, "roots").len()
        );
    });
}

#[test]
fn interop_roots_python_legacy() {
    roots("legacy");
}

// A modern client is asked for input only inside its own calls (MRTR), so a legacy
// upstream's roots/list outside a call cannot reach it: no 2026-07-28 roots test here
// (see ARCHITECTURE.md, "What a gateway cannot do").

/// URIs inside tool results (`resource_link` blocks, embedded resources) name resources
/// a client can read back through the gateway, as a client following a link would.
fn resource_links(mode: &'static str) {
    with_python_client(mode, |client| {
        for (tool, arguments) in [
            ("everything__get-resource-links", r#"{"count":2}"#),
            (
                "everything__get-resource-reference",
                r#"{"resourceType":"Text","resourceId":1}"#,
            ),
        ] {
            let followed = client.run("follow_resource_links.py", &[tool, arguments]);
            let reads = followed["reads"].as_array().expect("reads is a list");
            assert!(
                !reads.is_empty(),
                "mode {mode}: {tool} returned no links: {followed}"
            );
            let failed: Vec<&Value> = reads.iter().filter(|read| read["ok"] != true).collect();
            assert!(
                failed.is_empty(),
                "mode {mode}: URIs from {tool} cannot be read through the gateway: {failed:?}"
            );
        }
    });
}

#[test]
fn interop_resource_links_python_legacy() {
    resource_links("legacy");
}

#[test]
fn interop_resource_links_python_2026() {
    resource_links("2026-07-28");
}

/// A supervisor may stop the gateway the moment it reports readiness: SIGTERM right
/// after the `listening` line must already take the graceful path (a handler installed
/// only later leaves the default action, death by signal, with no drain and upstreams
/// killed by their parent-death signal instead of being stopped).
#[test]
fn interop_sigterm_at_readiness_is_graceful() {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let config = scratch.write(
        "switchboard.toml",
        &gateway_config(&tools, Everything::Stdio),
    );
    let gateway = Gateway::serve(&scratch, &config);
    // Before anything else (`stop` first scans /proc, which takes long enough to miss
    // the window); its own SIGTERM then finds the gateway stopping or gone.
    let _ = kill(Pid::from_raw(gateway.proc.pid()), Signal::SIGTERM);
    gateway.stop();
}

/// A stdio gateway exits when its client closes stdin, and takes its upstreams along.
#[test]
fn interop_stdio_eof_stops_all_upstreams() {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let config = scratch.write(
        "switchboard.toml",
        &gateway_config(&tools, Everything::Stdio),
    );
    let (log, log_path) = scratch.log("gateway-stdio.log");
    let mut command = Command::new(SWITCHBOARD);
    command
        .args(["stdio", "--config"])
        .arg(&config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log);
    let mut gateway = Proc::spawn("switchboard stdio", &mut command, Some(log_path));
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while gateway.seen.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "upstreams never started: {:?}",
            gateway.seen
        );
        thread::sleep(Duration::from_millis(100));
        gateway.observe();
    }
    drop(gateway.child.stdin.take());
    let status = gateway.wait_until(Instant::now() + EXIT_GRACE);
    let status = status.unwrap_or_else(|| {
        panic!("the stdio gateway ignored EOF for {EXIT_GRACE:?} (its log follows)")
    });
    assert!(
        status.success(),
        "the stdio gateway exited with {status} on EOF (its log follows)"
    );
    let leaked = gateway.leftovers();
    assert!(
        leaked.is_empty(),
        "the stdio gateway left processes behind: {leaked:#?} (its log follows)"
    );
}

/// `mcp-server-time` (dual era) behind a 3 s start delay, with the default era probe
/// timeout: when the probe times out the server has not answered `server/discover` yet,
/// but it will, and then it serves the 2026-07-28 protocol on that connection. The
/// gateway must still end up with a working upstream (wait for the late answer, or
/// fall back on a fresh process), not lose the server.
#[test]
fn interop_slow_dual_era_stdio_upstream() {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let config = format!(
        r#"[gateway]
name = "switchboard-interop"
connect_timeout_ms = 60000

[servers.time]
command = "/bin/sh"
args = ["-c", "sleep 3; exec \"$0\" -m mcp_server_time --local-timezone=UTC", {python}]
"#,
        python = toml_string(&tools.python),
    );
    let config = scratch.write("switchboard.toml", &config);
    let gateway = Gateway::serve(&scratch, &config);
    let client = PythonClient {
        tools: &tools,
        mode: "legacy",
        target: Target::Http(gateway.url.clone()),
    };
    let listed = client.list_tools();
    assert!(
        listed.iter().any(|tool| tool == "time__get_current_time"),
        "the slow dual-era upstream was lost: tools {listed:?} (the gateway log follows)"
    );
    let time = client.call_tool("time__get_current_time", json!({ "timezone": "UTC" }));
    assert_ne!(
        time["isError"],
        json!(true),
        "get_current_time failed: {time}"
    );
    gateway.stop();
}

/// An agent installs a real server from PyPI through the `switchboard__install_server`
/// meta-tool, then calls its tool, all in one session.
#[test]
fn interop_install_server_from_pypi() {
    let Some(tools) = Tools::locate() else { return };
    let scratch = Scratch::new();
    let state = scratch.path("state");
    let config = scratch.write(
        "switchboard.toml",
        &format!(
            "[gateway]\nstate_dir = {}\nmeta_tools = [\"install_server\", \"list_servers\"]\nmeta_tools_by_default = true\nallow_install = true\nrequest_timeout_ms = 120000\n",
            toml_string(&state)
        ),
    );
    let gateway = Gateway::serve(&scratch, &config);
    let client = PythonClient {
        tools: &tools,
        mode: "legacy",
        target: Target::Http(gateway.url.clone()),
    };
    let installed = client.call_tool(
        "switchboard__install_server",
        json!({ "name": "tz", "package": "pypi:mcp-server-time" }),
    );
    assert_ne!(
        installed["isError"],
        json!(true),
        "install failed: {installed}"
    );
    let now = client.call_tool("tz__get_current_time", json!({ "timezone": "UTC" }));
    assert!(
        now.to_string().contains("UTC"),
        "the installed server answers: {now}"
    );
    assert!(state.join("packages/tz/venv/bin/mcp-server-time").exists());
    gateway.stop();
}
