//! The watched config file under an unlucky operator: files caught half-written, edits
//! made while the gateway starts, paths that are not regular files or are too large,
//! and SIGHUP. In every case calls keep being answered and the last good config runs
//! until the next good file arrives.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    ModernHttp, Proc, Stdio, binary_beside, replace_file, spawn_gateway_http, spawn_gateway_http_at,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "test-admin-token-0123456789";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn server(name: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture()
    )
}

/// A server whose start-up takes `seconds` (a shell sleeps, then runs the fixture).
fn slow_server(name: &str, seconds: u32) -> String {
    format!(
        "[servers.{name}]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep {seconds}; exec {} stdio\"]\n",
        fixture()
    )
}

fn config(servers: &[String]) -> String {
    format!(
        "[gateway]\nadmin_token = {TOKEN:?}\ndrain_timeout_ms = 10000\n\n{}",
        servers.join("\n")
    )
}

async fn config_status(gateway: &Proc) -> Value {
    let base = gateway.url.trim_end_matches("/mcp");
    reqwest::Client::new()
        .get(format!("{base}/admin/config"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `/admin/config` reports the file invalid; returns the status.
async fn rejected(gateway: &Proc) -> Value {
    eventually(Duration::from_secs(20), || async {
        let status = config_status(gateway).await;
        (status["valid"] == false).then_some(status)
    })
    .await
    .expect("reported as a config error")
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_tool(client: &ModernHttp, tool: &str) -> bool {
    eventually(Duration::from_secs(20), || async {
        client
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .iter()
            .any(|name| name == tool)
            .then_some(())
    })
    .await
    .is_some()
}

/// Workers calling `a__echo` until stopped; each returns (answered, failures).
struct CallLoop {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<(u32, Vec<String>)>>,
}

impl CallLoop {
    fn start(url: &str, workers: usize, tool: Value) -> CallLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|_| {
                let client = ModernHttp::new(url);
                let stop = stop.clone();
                let tool = tool.clone();
                tokio::spawn(async move {
                    let (mut answered, mut failed) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match client.request("tools/call", tool.clone()).await.outcome {
                            Ok(result) if result["isError"] != true => answered += 1,
                            other => failed.push(format!("{other:?}")),
                        }
                    }
                    (answered, failed)
                })
            })
            .collect();
        CallLoop { stop, workers }
    }

    async fn finish(self) -> (u32, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut answered, mut failed) = (0, Vec::new());
        for worker in self.workers {
            let (ok, mut bad) = worker.await.unwrap();
            answered += ok;
            failed.append(&mut bad);
        }
        (answered, failed)
    }
}

fn echo() -> Value {
    json!({ "name": "a__echo", "arguments": { "text": "hi" } })
}

// ---- issue 11 defect 1: a file caught half-written ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_writes_during_a_call_loop_fail_no_call() {
    let good = config(&[server("a")]);
    let gateway = spawn_gateway_http(GATEWAY, &good).await.unwrap();
    let path = gateway.config.clone().unwrap();
    let calls = CallLoop::start(&gateway.url, 4, echo());
    for _ in 0..15 {
        // What `>` and `open('w')` do: truncate in place, then write.
        std::fs::write(&path, "").unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        std::fs::write(&path, " \n\t\n").unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        std::fs::write(&path, &good).unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // A valid file without servers that is replaced before it settles is never applied.
    for _ in 0..5 {
        replace_file(&path, &config(&[]));
        tokio::time::sleep(Duration::from_millis(100)).await;
        replace_file(&path, &good);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (answered, failed) = calls.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed calls: {failed:?}",
        failed.len()
    );
    assert!(answered > 20, "calls kept flowing ({answered})");
    let status = config_status(&gateway).await;
    assert_eq!(status["valid"], true, "{status}");
    assert_eq!(status["rejected"], 0, "{status}");

    // A config without servers that stays is applied once it has settled.
    replace_file(&path, &config(&[]));
    let client = ModernHttp::new(&gateway.url);
    let emptied = eventually(Duration::from_secs(20), || async {
        client
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(emptied.is_some(), "a stable server-less config is applied");
}

// ---- issue 11 defect 2: an edit made while the gateway starts ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_during_serve_start_up_is_applied() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("switchboard.toml");
    std::fs::write(&path, config(&[slow_server("a", 3)])).unwrap();
    let starting = tokio::spawn({
        let path = path.clone();
        async move { spawn_gateway_http_at(GATEWAY, &path, &[]).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!starting.is_finished(), "the gateway is still starting");
    replace_file(&path, &config(&[slow_server("a", 3), server("b")]));
    let gateway = starting.await.unwrap().unwrap();
    let client = ModernHttp::new(&gateway.url);
    assert!(
        wait_for_tool(&client, "b__echo").await,
        "the edit is applied"
    );
    assert!(wait_for_tool(&client, "a__echo").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_during_stdio_start_up_is_applied() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("switchboard.toml");
    std::fs::write(&path, config(&[slow_server("a", 3)])).unwrap();
    let client = Stdio::spawn(GATEWAY, &path, true).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    replace_file(&path, &config(&[slow_server("a", 3), server("b")]));
    let listed = eventually(Duration::from_secs(20), || async {
        client
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .contains(&"b__echo".to_owned())
            .then_some(())
    })
    .await;
    assert!(listed.is_some(), "the edit is applied");
}

// ---- issue 21 defects 3 and 4: paths that are not regular files, or too large ----

/// Puts something at the config path that is not a good file, checks that it is
/// reported as a config error while the last good config keeps serving, then writes a
/// good file adding server `c` and checks that it is applied.
async fn bad_path_is_a_config_error(install: impl FnOnce(&Path), expected: &str) {
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("a")]))
        .await
        .unwrap();
    let path = gateway.config.clone().unwrap();
    install(&path);
    let status = rejected(&gateway).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    let client = ModernHttp::new(&gateway.url);
    let call = client.request("tools/call", echo()).await;
    assert_eq!(call.result()["content"][0]["text"], "hi", "last good kept");

    if path.is_dir() {
        std::fs::remove_dir(&path).unwrap();
    }
    replace_file(&path, &config(&[server("a"), server("c")]));
    assert!(
        wait_for_tool(&client, "c__echo").await,
        "next good file applied"
    );
    let status = config_status(&gateway).await;
    assert_eq!(status["valid"], true, "{status}");
}

/// Renames whatever was created at `temporary` over `path`.
fn rename_over(temporary: PathBuf, path: &Path) {
    std::fs::rename(temporary, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_at_the_config_path_is_a_config_error() {
    bad_path_is_a_config_error(
        |path| {
            let temporary = path.with_extension("fifo");
            let made = std::process::Command::new("mkfifo")
                .arg(&temporary)
                .status()
                .unwrap();
            assert!(made.success());
            rename_over(temporary, path);
        },
        "FIFO",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_zero_at_the_config_path_is_a_config_error() {
    bad_path_is_a_config_error(
        |path| {
            let temporary = path.with_extension("zero");
            std::os::unix::fs::symlink("/dev/zero", &temporary).unwrap();
            rename_over(temporary, path);
        },
        "character device",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_at_the_config_path_is_a_config_error() {
    bad_path_is_a_config_error(
        |path| {
            std::fs::remove_file(path).unwrap();
            std::fs::create_dir(path).unwrap();
        },
        "directory",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_loop_at_the_config_path_is_a_config_error() {
    bad_path_is_a_config_error(
        |path| {
            let temporary = path.with_extension("loop");
            // After the rename the link points at its own name.
            std::os::unix::fs::symlink(path.file_name().unwrap(), &temporary).unwrap();
            rename_over(temporary, path);
        },
        "cannot read config",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_config_is_a_config_error() {
    bad_path_is_a_config_error(
        |path| {
            let temporary = path.with_extension("big");
            // Sparse: 17 MiB, above the 16 MiB default, without writing it.
            std::fs::File::create(&temporary)
                .unwrap()
                .set_len(17 * 1024 * 1024)
                .unwrap();
            rename_over(temporary, path);
        },
        "larger than the limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_size_limit_is_configurable() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("switchboard.toml");
    let text = config(&[server("a")]);
    std::fs::write(&path, &text).unwrap();
    let limit = (text.len() + 100).to_string();
    let gateway = spawn_gateway_http_at(
        GATEWAY,
        &path,
        &[("SWITCHBOARD_MAX_CONFIG_BYTES", limit.as_str())],
    )
    .await
    .unwrap();
    let padded = format!("{text}\n# {}\n", "x".repeat(200));
    replace_file(&path, &padded);
    let status = rejected(&gateway).await;
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains(&format!("larger than the limit of {limit} bytes")),
        "{status}"
    );
    let checked = std::process::Command::new(GATEWAY)
        .args(["check-config", "--max-config-bytes", &limit])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("larger than the limit"), "{stderr}");
}

// ---- issue 21 defect 6: SIGHUP ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_and_loses_no_call() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("a")]))
        .await
        .unwrap();
    let path = gateway.config.clone().unwrap();
    let before = config_status(&gateway).await["reloads"].as_u64().unwrap();
    let calls = CallLoop::start(
        &gateway.url,
        4,
        json!({ "name": "a__sleep", "arguments": { "ms": 200 } }),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(gateway.pid()).unwrap());
    for _ in 0..3 {
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (answered, failed) = calls.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed calls: {failed:?}",
        failed.len()
    );
    assert!(answered > 4, "calls kept flowing ({answered})");
    let reloaded = eventually(Duration::from_secs(10), || async {
        let reloads = config_status(&gateway).await["reloads"].as_u64().unwrap();
        (reloads > before).then_some(reloads)
    })
    .await;
    assert!(reloaded.is_some(), "SIGHUP reloads the config");

    // The reload reads the file: an edit followed by SIGHUP is applied.
    replace_file(&path, &config(&[server("a"), server("b")]));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(wait_for_tool(&ModernHttp::new(&gateway.url), "b__echo").await);
}

// ---- issue 11: a type error never echoes the value ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_error_does_not_echo_the_value_into_admin_config() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("a")]))
        .await
        .unwrap();
    let path = gateway.config.clone().unwrap();
    replace_file(
        &path,
        &format!(
            "{}env = \"SECRET_TOKEN=hunter2-value\"\n",
            config(&[server("a")])
        ),
    );
    let status = rejected(&gateway).await;
    let error = status["last_error"].as_str().unwrap();
    assert!(error.contains("servers.a.env"), "{error}");
    assert!(error.contains("expected a table"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

// ---- issue 11 defect 12: .mcp.json files written by other hosts ----

#[test]
fn check_config_accepts_a_host_written_mcp_json_and_warns_on_unknown_keys() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join(".mcp.json");
    let text = json!({
        "globalShortcut": "Ctrl+Space",
        "mcpServers": {
            "github": {
                "command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"],
                "autoApprove": ["list_issues"], "disabled": false, "timeout": 60,
                "transportType": "stdio", "cwd": "/tmp"
            },
            "files": { "command": "python", "alwaysAllow": ["read"], "disabledTools": ["rm"] },
            "old": { "type": "sse", "url": "http://127.0.0.1:1/sse", "disabled": true }
        }
    });
    std::fs::write(&path, text.to_string()).unwrap();
    let checked = std::process::Command::new(GATEWAY)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&checked.stdout);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("3 server(s)"), "{stdout}");
    assert!(stderr.contains("warning"), "{stderr}");
    assert!(stderr.contains("globalShortcut"), "{stderr}");
    assert!(
        stderr.contains("mcpServers.files.disabledTools"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("autoApprove"),
        "keys with a meaning are not warned about: {stderr}"
    );
}
