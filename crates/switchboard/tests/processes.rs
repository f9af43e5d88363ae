//! Processes, upstream framing and the stdio face under abuse: a `kill -9`ed gateway takes
//! every process of a shell-wrapped server with it; a stdio client that leaves mid-call has
//! its calls cancelled upstream; unreadable and oversized answers fail their call at once;
//! the stdio face stays bounded for oversized lines and for clients that never read.
//!
//! The gateway and test binaries may be overridden (`PROCS_GATEWAY`) to take the "before"
//! figures of these reproductions against an older build.

use std::io::{BufRead as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio as ProcStdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{Stdio, binary_beside, children_of, spawn_gateway_http, write_config};

const GATEWAY_BUILT: &str = env!("CARGO_BIN_EXE_switchboard");

fn gateway() -> String {
    std::env::var("PROCS_GATEWAY").unwrap_or_else(|_| GATEWAY_BUILT.to_owned())
}

fn fixture() -> String {
    binary_beside(GATEWAY_BUILT, "switchboard-fixture")
        .display()
        .to_string()
}

fn stdio_server(name: &str, args: &[&str], extra: &str) -> String {
    let mut all = vec!["stdio".to_owned()];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = {:?}\n{extra}\n",
        fixture(),
        all
    )
}

/// `(state, process group)` of a live process.
fn stat(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.to_owned();
    let _parent = fields.next()?;
    let group = fields.next()?.parse().ok()?;
    Some((state, group))
}

/// Live (non-zombie) members of a process group.
fn members(group: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter(|pid| stat(*pid).is_some_and(|(state, g)| g == group && state != "Z"))
                .collect()
        })
        .unwrap_or_default()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn poll<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    assert!(pid > 1, "refusing to signal pid {pid}");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
}

/// Issue 11 defect 3: a server behind `sh -c` whose real process ignores stdin EOF must not
/// outlive a gateway killed with SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_gateway_takes_every_process_of_a_shell_wrapped_server() {
    let script = format!("{} stdio --ignore-eof; true", fixture());
    let config = format!(
        "[gateway]\nrequest_timeout_ms = 5000\n\n[servers.wrapped]\ncommand = \"sh\"\nargs = [\"-c\", {script:?}]\n"
    );
    let mut proc = spawn_gateway_http(&gateway(), &config).await.unwrap();
    let pid = proc.pid();
    // The shell leads the server's group; the fixture is its child.
    let (group, before) = poll(Duration::from_secs(30), || {
        let group = *children_of(pid).first()?;
        let alive = members(group);
        (alive.len() >= 2).then_some((group, alive))
    })
    .await
    .expect("the shell and the fixture run");
    kill(pid, nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let _ = proc.child.wait().await;
    let gone = poll(Duration::from_secs(20), || {
        members(group).is_empty().then(Instant::now)
    })
    .await;
    let survivors = members(group);
    for pid in &survivors {
        kill(*pid, nix::sys::signal::Signal::SIGKILL);
    }
    let gone = gone.unwrap_or_else(|| {
        panic!("{survivors:?} of the server's group {before:?} outlived the gateway")
    });
    eprintln!(
        "process tree gone {} ms after kill -9 of the gateway",
        (gone - killed).as_millis()
    );
}

/// Issue 11 defect 4: a stdio client that exits mid-call gets the call cancelled upstream,
/// every time (20 runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_client_leaving_mid_call_cancels_it_upstream() {
    let dir = tempfile::tempdir().unwrap();
    // Ids of the tools/call requests the upstream received, and of the requests it was
    // told to cancel.
    let calls = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("request tools/call "))
            .map(str::to_owned)
            .collect()
    };
    let cancelled = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("notification notifications/cancelled "))
            .filter_map(|params| serde_json::from_str::<Value>(params).ok())
            .map(|params| params["requestId"].to_string())
            .collect()
    };
    const RUNS: usize = 20;
    for run in 0..RUNS {
        // Each run's upstream is a fresh process (its ids repeat): one record file each.
        let record = dir.path().join(format!("received-{run}.log"));
        let record_arg = record.display().to_string();
        let (_config_dir, config) = write_config(&format!(
            "[gateway]\nrequest_timeout_ms = 60000\n\n{}",
            stdio_server("slow", &["--record", &record_arg], "")
        ));
        let received = || std::fs::read_to_string(&record).unwrap_or_default();
        let client = Stdio::spawn(&gateway(), &config, false).await.unwrap();
        let id = client.next_id();
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": { "name": "slow__sleep", "arguments": { "ms": 30000 } } });
        client
            .write_raw(&serde_json::to_vec(&message).unwrap())
            .await
            .unwrap();
        poll(Duration::from_secs(30), || {
            (!calls(&received()).is_empty()).then_some(())
        })
        .await
        .expect("the call reached the upstream");
        client.close_stdin().await;
        assert!(
            client.wait(Duration::from_secs(30)).await,
            "run {run}: the gateway exited after its client left"
        );
        let text = received();
        let call_id = calls(&text).pop().expect("this run's call");
        let cancels = cancelled(&text);
        assert_eq!(
            cancels.iter().filter(|c| **c == call_id).count(),
            1,
            "run {run}: call {call_id} not cancelled exactly once upstream ({cancels:?})"
        );
    }
}

async fn call_stdio(client: &Stdio, tool: &str, arguments: Value) -> Result<Value, Value> {
    client
        .request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
        .outcome
}

/// Issue 11 (safe defaults): an answer whose id is not near its start, and an answer that
/// is not JSON, fail their call at once instead of at the call timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_and_oversized_answers_fail_their_call_at_once() {
    let (_dir, config) = write_config(&format!(
        "[gateway]\nrequest_timeout_ms = 120000\nmax_message_bytes = 65536\n\n{}",
        stdio_server("up", &[], "")
    ));
    let client = Stdio::spawn(&gateway(), &config, false).await.unwrap();
    // Well under the timeout; a call waiting for its timeout would not end in time.
    let soon = Duration::from_secs(60);
    let fits = tokio::time::timeout(
        soon,
        call_stdio(
            &client,
            "up__answer_shaped",
            json!({ "shape": "id_last", "bytes": 1000 }),
        ),
    )
    .await
    .expect("answered");
    assert!(
        fits.is_ok(),
        "an id written last is still an answer: {fits:?}"
    );
    let oversized = tokio::time::timeout(
        soon,
        call_stdio(
            &client,
            "up__answer_shaped",
            json!({ "shape": "id_last", "bytes": 200_000 }),
        ),
    )
    .await
    .expect("an oversized answer with its id last fails at once");
    let error = oversized.expect_err("over the bound");
    assert!(
        error["message"].as_str().unwrap().contains("exceeds"),
        "{error}"
    );
    let broken = tokio::time::timeout(
        soon,
        call_stdio(&client, "up__answer_shaped", json!({ "shape": "broken" })),
    )
    .await
    .expect("an unreadable answer fails at once");
    let error = broken.expect_err("unreadable");
    assert!(
        error["message"].as_str().unwrap().contains("unreadable"),
        "{error}"
    );
    // The connection survives both.
    let after = call_stdio(&client, "up__echo", json!({ "text": "still here" })).await;
    assert!(after.is_ok(), "{after:?}");
}

/// A `switchboard stdio` driven with raw pipes (for byte-level abuse).
struct RawStdio {
    child: std::process::Child,
}

impl RawStdio {
    fn spawn(config: &Path) -> RawStdio {
        let child = Command::new(gateway())
            .arg("stdio")
            .arg("--config")
            .arg(config)
            .env("SWITCHBOARD_LOG", "error")
            .stdin(ProcStdio::piped())
            .stdout(ProcStdio::piped())
            .stderr(ProcStdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn switchboard stdio");
        RawStdio { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RawStdio {
    fn drop(&mut self) {
        switchboard_testkit::kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn initialize_line() -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "processes", "version": "0" } } }))
    .unwrap();
    line.push(b'\n');
    line
}

fn peak_rss_while(pid: u32, running: impl Fn() -> bool) -> u64 {
    let mut peak = 0;
    while running() {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    peak.max(rss_kib(pid))
}

/// Issue 10: the stdio face skips an oversized line without buffering it.
#[test]
fn an_oversized_stdio_line_is_skipped_without_buffering_it() {
    let (_dir, config) = write_config(&format!(
        "[gateway]\nmax_message_bytes = 1048576\n\n{}",
        stdio_server("up", &[], "")
    ));
    let mut gateway = RawStdio::spawn(&config);
    let pid = gateway.pid();
    let mut stdin = gateway.child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(gateway.child.stdout.take().unwrap());
    stdin.write_all(&initialize_line()).unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let baseline = rss_kib(pid);
    // 256 MiB in one line (a request whose id comes first), then a normal request.
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        stdin
            .write_all(br#"{"jsonrpc":"2.0","id":"big","method":"tools/call","params":{"name":"up__echo","arguments":{"text":""#)
            .unwrap();
        for _ in 0..256 {
            stdin.write_all(&chunk).unwrap();
        }
        stdin.write_all(b"\"}}}\n").unwrap();
        let ping = json!({ "jsonrpc": "2.0", "id": "after", "method": "ping" });
        stdin.write_all(format!("{ping}\n").as_bytes()).unwrap();
        stdin
    });
    let peak = peak_rss_while(pid, || !writer.is_finished());
    let _stdin = writer.join().unwrap();
    // Two answers; notifications in between (the server's lists arriving after
    // initialize announce a list_changed) are not answers.
    let mut answers = Vec::new();
    while answers.len() < 2 {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        let message = serde_json::from_str::<Value>(&line).unwrap();
        if message.get("id").is_some() {
            answers.push(message);
        }
    }
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("RSS growth while skipping a 256 MiB line: {growth_mib} MiB");
    assert_eq!(answers[0]["id"], "big", "{:?}", answers[0]);
    assert!(
        answers[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds")
    );
    assert_eq!(answers[1]["id"], "after", "{:?}", answers[1]);
    assert!(growth_mib < 64, "grew by {growth_mib} MiB");
}

/// Issue 21 defect 8: a client that writes 20,000 requests with 4 KiB arguments and does not
/// read its answers cannot make the gateway grow without bound; once it reads, every
/// request is answered.
#[test]
fn a_stdio_client_that_does_not_read_cannot_grow_the_gateway() {
    const REQUESTS: usize = 20_000;
    let (_dir, config) = write_config(&format!(
        "[gateway]\nrequest_timeout_ms = 120000\n\n{}",
        stdio_server("up", &[], "")
    ));
    let mut gateway = RawStdio::spawn(&config);
    let pid = gateway.pid();
    let mut stdin = gateway.child.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(gateway.child.stdout.take().unwrap());
    stdin.write_all(&initialize_line()).unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Warm the server up so its start is not counted as growth.
    let warm = json!({ "jsonrpc": "2.0", "id": "warm", "method": "tools/call",
        "params": { "name": "up__echo", "arguments": { "text": "warm" } } });
    stdin.write_all(format!("{warm}\n").as_bytes()).unwrap();
    // Up to the warm-up's answer (a list_changed notification may come first).
    loop {
        line.clear();
        stdout.read_line(&mut line).unwrap();
        if serde_json::from_str::<Value>(&line).is_ok_and(|m| m["id"] == "warm") {
            break;
        }
    }
    let baseline = rss_kib(pid);
    let text = "a".repeat(4096);
    let writer = std::thread::spawn(move || {
        let mut written = 0;
        for id in 0..REQUESTS {
            let request = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": { "name": "up__echo", "arguments": { "text": text } } });
            if stdin.write_all(format!("{request}\n").as_bytes()).is_err() {
                break;
            }
            written += 1;
        }
        (stdin, written)
    });
    // The writer blocks once the gateway stops reading; watch RSS until it is stuck (no
    // growth for 3 s) or done.
    let mut peak = 0;
    let mut last_change = Instant::now();
    let started = Instant::now();
    while !writer.is_finished() && last_change.elapsed() < Duration::from_secs(3) {
        let now = rss_kib(pid);
        if now > peak {
            peak = now;
            last_change = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("RSS growth with a client that does not read: {growth_mib} MiB");
    // Now read everything: each request is answered.
    let reader = std::thread::spawn(move || {
        let mut answered = 0;
        let mut line = String::new();
        while answered < REQUESTS {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if serde_json::from_str::<Value>(&line).is_ok_and(|m| m.get("result").is_some()) {
                answered += 1;
            }
        }
        answered
    });
    let (_stdin, written) = writer.join().unwrap();
    let answered = reader.join().unwrap();
    assert_eq!(written, REQUESTS);
    assert_eq!(answered, REQUESTS);
    assert!(growth_mib < 64, "grew by {growth_mib} MiB");
}

/// Issue 10: a server removed while a call runs on it is retired in the background; a
/// SIGTERM then must still let that call finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_servers_being_retired() {
    let both = format!(
        "[gateway]\nrequest_timeout_ms = 30000\n\n{}\n{}",
        stdio_server("keep", &[], ""),
        stdio_server("gone", &[], "")
    );
    let mut proc = spawn_gateway_http(&gateway(), &both).await.unwrap();
    let path = proc.config.clone().unwrap();
    let client = switchboard_testkit::ModernHttp::new(&proc.url);
    let slow = client.request(
        "tools/call",
        json!({ "name": "gone__sleep", "arguments": { "ms": 4000 } }),
    );
    let remove_then_terminate = async {
        // The call is running upstream…
        let mut running = false;
        for _ in 0..200 {
            let stats = client
                .request(
                    "tools/call",
                    json!({ "name": "gone__stats", "arguments": {} }),
                )
                .await
                .outcome;
            if stats.is_ok_and(|s| s["structuredContent"]["inflight"].as_u64() >= Some(1)) {
                running = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(running, "the slow call reached the upstream");
        // …its server leaves the config (retired in the background)…
        switchboard_testkit::replace_file(
            &path,
            &format!(
                "[gateway]\nrequest_timeout_ms = 30000\n\n{}",
                stdio_server("keep", &[], "")
            ),
        );
        let mut removed = false;
        for _ in 0..400 {
            let tools = client.request("tools/list", json!({})).await.outcome;
            if tools.is_ok_and(|t| !t.to_string().contains("gone__sleep")) {
                removed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(removed, "the server was removed");
        // …and the gateway is asked to stop.
        kill(proc.pid(), nix::sys::signal::Signal::SIGTERM);
    };
    let (outcome, ()) = tokio::join!(slow, remove_then_terminate);
    assert!(
        outcome.outcome.is_ok(),
        "the call on the retiring server finished: {:?}",
        outcome.outcome
    );
    let status = tokio::time::timeout(Duration::from_secs(30), proc.child.wait())
        .await
        .expect("the gateway exits")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// Issue 10: retries back off by their own settings, not the restart backoff (here five
/// minutes, which a retry would wait for at least half of).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_use_their_own_backoff() {
    let extra = "restart_backoff_ms = 300000\nrestart_backoff_max_ms = 300000\n\
                 retry_backoff_ms = 10\nretry_backoff_max_ms = 20\n\
                 [servers.fx.tools.crash]\nretries = 3\n";
    let config = format!(
        "[gateway]\nrequest_timeout_ms = 5000\n\n{}",
        stdio_server("fx", &[], extra)
    );
    let proc = spawn_gateway_http(&gateway(), &config).await.unwrap();
    let client = switchboard_testkit::ModernHttp::new(&proc.url);
    let outcome = tokio::time::timeout(
        Duration::from_secs(90),
        client.request(
            "tools/call",
            json!({ "name": "fx__crash", "arguments": { "after_ms": 0 } }),
        ),
    )
    .await
    .expect("three attempts end long before a restart backoff would");
    assert!(outcome.outcome.is_err(), "crashes every time");
    let metrics = reqwest::get(proc.url.replace("/mcp", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let attempts = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchboard_calls_total{")
                && l.contains("tool=\"crash\"")
                && l.contains("outcome=\"unavailable\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(attempts, Some(3), "{metrics}");
}
