//! Sandboxed stdio servers with real processes: a fixture server that allocates past its
//! memory limit, forks past its process limit, burns past its CPU time, writes outside its
//! writable paths or opens a socket with the network off fails in exactly that way, and
//! the gateway reports it (the caller's error, `/admin`, `/metrics`); a server beside it
//! keeps serving. What this machine cannot enforce is reported, and `require = true`
//! refuses to start such a sandbox.
//!
//! A test that needs a kernel feature the machine lacks (Landlock, cgroups, CAP_SYS_ADMIN
//! for a network namespace) prints why and returns: it reads that from the gateway's own
//! assessment in `/admin` (unit-tested in `upstream::sandbox`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, Proc, binary_beside, spawn_gateway_http_at, write_config};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "sandbox-admin-token-0123456789";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

/// The directories a fixture needs to run under a file system policy: its own, the
/// dynamic loader's and the libraries'.
fn runtime_paths() -> String {
    let bin = Path::new(GATEWAY).parent().unwrap().display().to_string();
    let paths: Vec<String> = [bin.as_str(), "/lib", "/lib64", "/usr", "/etc"]
        .iter()
        .filter(|path| Path::new(path).exists())
        .map(|path| format!("{path:?}"))
        .collect();
    paths.join(", ")
}

struct Gateway {
    proc: Proc,
    client: ModernHttp,
    _dir: tempfile::TempDir,
}

/// A gateway with `boxed` (the fixture with `sandbox` as its sandbox table) and `plain`
/// (the same fixture without one).
async fn gateway(sandbox: &str, env: &[(&str, &str)]) -> Gateway {
    let text = format!(
        "[gateway]\nadmin_token = {TOKEN:?}\nrequest_timeout_ms = 15000\n\n\
         [servers.boxed]\ncommand = {fixture:?}\nargs = [\"stdio\"]\n\
         restart_backoff_ms = 50\nrestart_backoff_max_ms = 50\n\
         [servers.boxed.sandbox]\n{sandbox}\n\n\
         [servers.plain]\ncommand = {fixture:?}\nargs = [\"stdio\"]\n",
        fixture = fixture()
    );
    let (dir, path) = write_config(&text);
    let proc = spawn_gateway_http_at(GATEWAY, &path, env).await.unwrap();
    let client = ModernHttp::new(&proc.url);
    Gateway {
        proc,
        client,
        _dir: dir,
    }
}

impl Gateway {
    async fn call(&self, tool: &str, arguments: Value) -> Result<Value, Value> {
        self.client
            .request(
                "tools/call",
                json!({ "name": tool, "arguments": arguments }),
            )
            .await
            .outcome
    }

    /// A tool result's text (its first content block).
    async fn text(&self, tool: &str, arguments: Value) -> (bool, String) {
        let result = self.call(tool, arguments).await.unwrap_or_else(|error| {
            panic!("{tool} failed at the protocol level: {error}");
        });
        let is_error = result["isError"] == json!(true);
        (
            is_error,
            result["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    }

    async fn admin(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(self.proc.url.replace("/mcp", path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// `boxed`'s entry in `/admin/servers`.
    async fn boxed(&self) -> Value {
        let servers: Value = self.admin("/admin/servers").await.json().await.unwrap();
        servers["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|server| server["name"] == "boxed")
            .cloned()
            .unwrap()
    }

    async fn metrics(&self) -> String {
        self.admin("/metrics").await.text().await.unwrap()
    }

    /// Why `control` is not enforced here, if it is not.
    async fn gap(&self, control: &str) -> Option<String> {
        let sandbox = self.boxed().await["sandbox"].clone();
        sandbox["not_enforced"]
            .as_array()
            .unwrap()
            .iter()
            .find(|gap| gap["control"] == control)
            .map(|gap| gap["why"].as_str().unwrap_or("").to_owned())
    }

    /// The sandboxed server answers again (it was restarted after a kill).
    async fn boxed_serves_again(&self) {
        let started = Instant::now();
        loop {
            match self.call("boxed__echo", json!({ "text": "again" })).await {
                Ok(result) if result["structuredContent"]["text"] == "again" => return,
                other if started.elapsed() > Duration::from_secs(20) => {
                    panic!("boxed never served again: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn plain_serves(&self) {
        let result = self
            .call("plain__echo", json!({ "text": "still here" }))
            .await
            .unwrap();
        assert_eq!(result["structuredContent"]["text"], "still here");
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status
                .lines()
                .find(|line| line.starts_with("Uid:"))?
                .to_owned();
            Some(line.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_server_past_its_memory_limit_is_killed_and_reported() {
    let gateway = gateway("memory = \"96MiB\"", &[]).await;
    let boxed = gateway.boxed().await;
    let enforced = &boxed["sandbox"]["enforced"][0];
    assert_eq!(enforced["control"], "memory", "{boxed}");
    eprintln!("memory limit enforced by {}", enforced["by"]);
    // Within the limit: fine.
    let (is_error, _) = gateway.text("boxed__allocate", json!({ "mib": 16 })).await;
    assert!(!is_error);

    let error = gateway
        .call("boxed__allocate", json!({ "mib": 512, "hold_ms": 1000 }))
        .await
        .expect_err("the allocation must not succeed");
    assert_eq!(error["code"], -31010, "{error}");
    assert_eq!(error["data"]["sandboxLimit"], "memory", "{error}");
    assert_eq!(error["data"]["limit"], "96 MiB", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("memory limit (96 MiB)"), "{message}");

    gateway.plain_serves().await;
    let boxed = gateway.boxed().await;
    assert_eq!(boxed["sandbox"]["kills"]["memory"], 1, "{boxed}");
    assert!(
        boxed["sandbox"]["last_kill"]
            .as_str()
            .unwrap()
            .contains("memory limit"),
        "{boxed}"
    );
    assert!(
        boxed["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("memory limit"),
        "{boxed}"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("switchboard_sandbox_kills_total{server=\"boxed\",control=\"memory\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "switchboard_calls_total{server=\"boxed\",tool=\"allocate\",outcome=\"sandbox_limit\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_sandbox_enforced{server=\"boxed\",control=\"memory\"} 1"),
        "{metrics}"
    );
    gateway.boxed_serves_again().await;
}

#[tokio::test]
async fn a_server_past_its_process_limit_cannot_fork_and_the_refusals_are_counted() {
    let gateway = gateway("processes = 24", &[]).await;
    if let Some(why) = gateway.gap("processes").await {
        eprintln!("skipped: the process limit is not enforced on this machine: {why}");
        return;
    }
    let (is_error, text) = gateway
        .text(
            "boxed__spawn_children",
            json!({ "count": 4, "hold_ms": 5000 }),
        )
        .await;
    assert!(!is_error, "a few children fit: {text}");
    let (is_error, text) = gateway
        .text(
            "boxed__spawn_children",
            json!({ "count": 64, "hold_ms": 5000 }),
        )
        .await;
    assert!(is_error, "{text}");
    assert!(
        text.contains("process creation failed")
            && text.contains("Resource temporarily unavailable"),
        "{text}"
    );
    // The server is not killed: it keeps serving, and the refusals are on record.
    let (is_error, _) = gateway
        .text("boxed__echo", json!({ "text": "alive" }))
        .await;
    assert!(!is_error);
    let boxed = gateway.boxed().await;
    let hits = boxed["sandbox"]["limit_hits"]["processes"]
        .as_u64()
        .unwrap_or(0);
    assert!(hits >= 1, "{boxed}");
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(
            "switchboard_sandbox_limit_hits_total{server=\"boxed\",control=\"processes\"}"
        ),
        "{metrics}"
    );
    // The plain server forks as many as it likes.
    let (is_error, text) = gateway
        .text("plain__spawn_children", json!({ "count": 64 }))
        .await;
    assert!(!is_error, "{text}");
}

#[tokio::test]
async fn a_server_past_its_cpu_time_is_killed_by_sigxcpu() {
    let gateway = gateway("cpu_seconds = 1", &[]).await;
    let error = gateway
        .call("boxed__burn_cpu", json!({ "ms": 10000 }))
        .await
        .expect_err("the CPU limit must stop it");
    assert_eq!(error["code"], -31010, "{error}");
    assert_eq!(error["data"]["sandboxLimit"], "cpu_seconds", "{error}");
    assert!(
        error["data"]["evidence"]
            .as_str()
            .unwrap()
            .contains("SIGXCPU"),
        "{error}"
    );
    gateway.plain_serves().await;
    let boxed = gateway.boxed().await;
    assert_eq!(boxed["sandbox"]["kills"]["cpu_seconds"], 1, "{boxed}");
    gateway.boxed_serves_again().await;
}

#[tokio::test]
async fn a_server_cannot_write_outside_its_writable_paths() {
    let scratch = tempfile::tempdir().unwrap();
    let writable = scratch.path().join("writable");
    std::fs::create_dir(&writable).unwrap();
    let outside = scratch.path().join("outside.txt");
    let sandbox = format!(
        "read_only = [{}]\nwritable = [{:?}]",
        runtime_paths(),
        writable.display().to_string()
    );
    let gateway = gateway(&sandbox, &[]).await;
    if let Some(why) = gateway.gap("filesystem").await {
        eprintln!("skipped: no file system policy on this machine: {why}");
        return;
    }
    let inside = writable.join("inside.txt");
    let (is_error, text) = gateway
        .text("boxed__write_file", json!({ "path": inside, "text": "ok" }))
        .await;
    assert!(!is_error, "{text}");
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "ok");

    let (is_error, text) = gateway
        .text(
            "boxed__write_file",
            json!({ "path": outside, "text": "escaped" }),
        )
        .await;
    assert!(is_error, "{text}");
    assert!(text.contains("Permission denied"), "{text}");
    assert!(!outside.exists(), "nothing may be written outside");
    // Read-only paths are readable, and nothing else is.
    let (is_error, text) = gateway
        .text("boxed__read_file", json!({ "path": "/etc/hostname" }))
        .await;
    assert!(!is_error || !Path::new("/etc/hostname").exists(), "{text}");
    let secret = scratch.path().join("secret.txt");
    std::fs::write(&secret, "not for the server").unwrap();
    let (is_error, text) = gateway
        .text("boxed__read_file", json!({ "path": secret }))
        .await;
    assert!(is_error && text.contains("Permission denied"), "{text}");
    // The server beside it is not confined.
    let (is_error, text) = gateway
        .text(
            "plain__write_file",
            json!({ "path": outside, "text": "fine" }),
        )
        .await;
    assert!(!is_error, "{text}");
    let (is_error, text) = gateway
        .text("boxed__spawn_children", json!({ "count": 2 }))
        .await;
    assert!(!is_error, "programs beneath read_only still run: {text}");
}

#[tokio::test]
async fn a_server_without_network_cannot_open_a_socket() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let gateway = gateway("network = false", &[]).await;
    if let Some(why) = gateway.gap("network").await {
        eprintln!("skipped: the network is not (fully) cut off on this machine: {why}");
        return;
    }
    let (is_error, text) = gateway
        .text("boxed__connect", json!({ "address": address }))
        .await;
    assert!(is_error, "{text}");
    assert!(text.contains("unreachable"), "{text}");
    let (is_error, text) = gateway
        .text("plain__connect", json!({ "address": address }))
        .await;
    assert!(!is_error, "{text}");
}

#[tokio::test]
async fn without_cgroups_rlimits_take_over_and_the_gaps_are_reported() {
    let env = [("SWITCHBOARD_SANDBOX_CGROUPS", "off")];
    let gateway = gateway("memory = \"128MiB\"\nprocesses = 64\ncpus = 0.5", &env).await;
    let boxed = gateway.boxed().await;
    let sandbox = &boxed["sandbox"];
    assert_eq!(sandbox["enforced"][0]["by"], "RLIMIT_DATA", "{sandbox}");
    let why = gateway
        .gap("cpus")
        .await
        .expect("a CPU share needs cgroups");
    assert!(why.contains("SWITCHBOARD_SANDBOX_CGROUPS=off"), "{why}");
    match gateway.gap("processes").await {
        Some(why) => {
            assert!(is_root(), "only root escapes RLIMIT_NPROC: {why}");
            assert!(why.contains("RLIMIT_NPROC does not bind root"), "{why}");
        }
        None => assert!(!is_root()),
    }
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("switchboard_sandbox_enforced{server=\"boxed\",control=\"cpus\"} 0"),
        "{metrics}"
    );

    // Under RLIMIT_DATA the allocation fails and the fixture aborts (Rust's default).
    let error = gateway
        .call("boxed__allocate", json!({ "mib": 512 }))
        .await
        .expect_err("the allocation must fail");
    assert_eq!(error["code"], -31010, "{error}");
    assert_eq!(error["data"]["sandboxLimit"], "memory", "{error}");
    assert!(
        error["data"]["evidence"]
            .as_str()
            .unwrap()
            .contains("RLIMIT_DATA"),
        "{error}"
    );
    gateway.plain_serves().await;
    gateway.boxed_serves_again().await;
}

#[tokio::test]
async fn require_refuses_to_start_a_sandbox_the_machine_cannot_enforce() {
    let env = [("SWITCHBOARD_SANDBOX_CGROUPS", "off")];
    let gateway = gateway("cpus = 0.5\nrequire = true", &env).await;
    // It never started, so it offers no tools; `/admin` says why.
    let boxed = gateway.boxed().await;
    assert_eq!(boxed["state"], "failed", "{boxed}");
    let last_error = boxed["last_error"].as_str().unwrap();
    assert!(
        last_error.contains("cpus") && last_error.contains("require"),
        "{last_error}"
    );
    assert!(boxed["pids"].as_array().unwrap().is_empty(), "{boxed}");
    assert_eq!(boxed["sandbox"]["require"], true);
    assert_eq!(
        boxed["sandbox"]["not_enforced"][0]["control"], "cpus",
        "{boxed}"
    );
    let error = gateway
        .call("boxed__echo", json!({ "text": "hi" }))
        .await
        .expect_err("an unenforceable required sandbox must not start");
    assert!(
        error["message"].as_str().unwrap().contains("boxed__echo"),
        "{error}"
    );
    gateway.plain_serves().await;
}
