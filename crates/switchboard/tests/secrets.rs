//! Secrets at rest, end to end through the real gateway binary and the fixture server:
//! secrets stored through `/admin/secrets` and the admin-only `set_secret` meta-tool are
//! encrypted in the state dir's redb file, resolved into a server's `env` when an instance
//! starts (`${secret:NAME}`; an update reaches the next instance), listed without values,
//! and never written to logs, answers or errors; a gateway started with the wrong key is
//! refused with a clear error; rotation (admin API and CLI) leaves every secret readable
//! under the new key only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, binary_beside, kill_group};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const OPS_KEY: &str = "ops-client-key-0123456789";
const DEV_KEY: &str = "dev-client-key-0123456789";
/// The stored values: each must show up in the fixture's environment and nowhere else.
const FIRST: &str = "stored-value-first-8c1d5e";
const SECOND: &str = "stored-value-second-2f7a90";
const THIRD: &str = "stored-value-by-meta-tool-61bb3c";
/// Keys as the config reads them (64 hex digits); printed nowhere either.
const KEY_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const KEY_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const KEY_C: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

fn config(state_dir: &Path, secrets: &str) -> String {
    let fixture = format!(
        "{:?}",
        binary_beside(GATEWAY, "switchboard-fixture")
            .display()
            .to_string()
    );
    format!(
        r#"
[gateway]
admin_token = "{ADMIN_TOKEN}"
state_dir = {state_dir:?}
meta_tools = ["set_secret", "list_servers"]
meta_tools_by_default = true

[access]

[[access.keys]]
id = "ops"
key = "{OPS_KEY}"
roles = ["admin"]

[[access.keys]]
id = "dev"
key = "{DEV_KEY}"

[secrets]
{secrets}

[servers.vaulted]
command = {fixture}
args = ["stdio"]
env = {{ UPSTREAM_KEY = "pre-${{secret:upstream_key}}", PLAIN = "$$literal" }}
"#,
        state_dir = state_dir.display().to_string(),
    )
}

/// The gateway, killed with its process group when dropped.
struct Gateway {
    child: tokio::process::Child,
    url: String,
    output: Arc<Mutex<String>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            kill_group(pid);
        }
        let _ = self.child.start_kill();
    }
}

impl Gateway {
    fn base(&self) -> &str {
        self.url.trim_end_matches("/mcp")
    }

    fn client(&self, key: &str) -> ModernHttp {
        ModernHttp::with_headers(&self.url, &[("x-api-key", key)])
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base()))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        self.output.lock().unwrap().push_str(&text);
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn text(&self, path: &str) -> String {
        let text = reqwest::Client::new()
            .get(format!("{}{path}", self.base()))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        self.output.lock().unwrap().push_str(&text);
        text
    }

    async fn put_secret(&self, name: &str, value: &str) -> (u16, Value) {
        self.admin(
            reqwest::Method::PUT,
            &format!("/admin/secrets/{name}"),
            Some(json!({ "value": value })),
        )
        .await
    }

    async fn reload(&self) {
        let (status, body) = self
            .admin(reqwest::Method::POST, "/admin/servers/vaulted/reload", None)
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// What the fixture's `env` tool sees for `name`, called as `key`.
    async fn upstream_env(&self, key: &str, name: &str) -> Value {
        let exchange = self
            .client(key)
            .request(
                "tools/call",
                json!({ "name": "vaulted__env", "arguments": { "name": name } }),
            )
            .await;
        let text = format!("{:?}", exchange.outcome);
        self.output.lock().unwrap().push_str(&text);
        exchange.result()["structuredContent"]["value"].clone()
    }
}

/// Starts `switchboard serve` on `config` (debug JSON logs captured); `Err` with what it
/// wrote when it exits before listening.
async fn start(config: &Path) -> Result<Gateway, (Option<i32>, String)> {
    let mut command = tokio::process::Command::new(GATEWAY);
    command
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(config)
        .env("SWITCHBOARD_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().expect("gateway spawns");
    let output = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = output.clone();
    let stderr_done = tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            output.lock().unwrap().push_str(&line);
            output.lock().unwrap().push('\n');
            if let Some(at) = line.find("listening on ") {
                url = Some(line[at + "listening on ".len()..].trim().to_owned());
                return;
            }
        }
    })
    .await;
    let Some(url) = url.filter(|_| found.is_ok()) else {
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|status| status.code());
        let _ = stderr_done.await;
        let text = output.lock().unwrap().clone();
        return Err((status, text));
    };
    let sink = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let mut output = sink.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
    Ok(Gateway { child, url, output })
}

async fn stop(gateway: Gateway) -> String {
    let output = gateway.output.clone();
    drop(gateway);
    // Let the killed process release the database's lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    output.lock().unwrap().clone()
}

fn write(dir: &Path, secrets: &str) -> PathBuf {
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, config(&dir.join("state"), secrets)).unwrap();
    path
}

fn redb_file(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("state").join("switchboard.redb")).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_secrets_reach_new_instances_encrypted_and_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &format!("key = \"{KEY_A}\""));
    let gateway = start(&path).await.expect("gateway starts");

    // The server references a secret not stored yet: it cannot start, and says which.
    let (status, servers) = gateway
        .admin(reqwest::Method::GET, "/admin/servers", None)
        .await;
    assert_eq!(status, 200);
    let last_error = servers["servers"][0]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        last_error.contains("unknown secret `upstream_key`"),
        "{servers}"
    );

    // Stored through the admin API: created, then the next instance has it.
    let (status, body) = gateway.put_secret("upstream_key", FIRST).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["secret"]["name"], "upstream_key");
    assert!(body["secret"]["created"].is_string(), "{body}");
    gateway.reload().await;
    assert_eq!(
        gateway.upstream_env(OPS_KEY, "UPSTREAM_KEY").await,
        format!("pre-{FIRST}")
    );
    assert_eq!(gateway.upstream_env(OPS_KEY, "PLAIN").await, "$literal");

    // Replaced: the running instance keeps what it started with, a new one gets the update.
    let (status, body) = gateway.put_secret("upstream_key", SECOND).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        gateway.upstream_env(OPS_KEY, "UPSTREAM_KEY").await,
        format!("pre-{FIRST}")
    );
    gateway.reload().await;
    assert_eq!(
        gateway.upstream_env(OPS_KEY, "UPSTREAM_KEY").await,
        format!("pre-{SECOND}")
    );

    // The meta-tool: listed and callable for an admin only; unknown to anyone else.
    let dev = gateway.client(DEV_KEY);
    let listed = dev.request("tools/list", json!({})).await;
    let names = listed.tool_names();
    assert!(
        names.contains(&"switchboard__list_servers".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"switchboard__set_secret".to_owned()),
        "{names:?}"
    );
    let refused = dev
        .request(
            "tools/call",
            json!({ "name": "switchboard__set_secret", "arguments": { "name": "upstream_key", "value": "dev-attempt-value-001" } }),
        )
        .await;
    let refusal = refused.error().to_string();
    assert!(refusal.contains("switchboard__set_secret"), "{refusal}");
    assert!(!refusal.contains("dev-attempt-value"), "{refusal}");
    let ops = gateway.client(OPS_KEY);
    assert!(
        ops.request("tools/list", json!({}))
            .await
            .tool_names()
            .contains(&"switchboard__set_secret".to_owned())
    );
    let stored = ops
        .request(
            "tools/call",
            json!({ "name": "switchboard__set_secret", "arguments": { "name": "upstream_key", "value": THIRD } }),
        )
        .await;
    assert_eq!(
        stored.result()["structuredContent"],
        json!({ "stored": "upstream_key", "created": false }),
        "{:?}",
        stored.outcome
    );
    assert!(!format!("{:?}", stored.outcome).contains(THIRD));
    gateway.reload().await;
    assert_eq!(
        gateway.upstream_env(OPS_KEY, "UPSTREAM_KEY").await,
        format!("pre-{THIRD}")
    );

    // Listed by name and times, never by value; bad requests answered clearly.
    let (status, listed) = gateway
        .admin(reqwest::Method::GET, "/admin/secrets", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["secrets"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["secrets"][0]["name"], "upstream_key");
    assert!(listed["secrets"][0]["updated"].is_string());
    assert!(listed["secrets"][0].get("value").is_none());
    let (status, body) = gateway
        .admin(
            reqwest::Method::PUT,
            "/admin/secrets/bad%20name",
            Some(json!({ "value": "x" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = gateway
        .admin(
            reqwest::Method::PUT,
            "/admin/secrets/x",
            Some(json!({ "value": 1 })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = gateway.put_secret("to_delete", "short-lived-value-9").await;
    assert_eq!(status, 201);
    let (status, _) = gateway
        .admin(reqwest::Method::DELETE, "/admin/secrets/to_delete", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = gateway
        .admin(reqwest::Method::DELETE, "/admin/secrets/to_delete", None)
        .await;
    assert_eq!(status, 404);
    // Without a credential, nothing.
    let anonymous = reqwest::get(format!("{}/admin/secrets", gateway.base()))
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);

    // Sealed at rest: the database file holds none of the values.
    let raw = redb_file(dir.path());
    assert!(!raw.is_empty());
    for value in [FIRST, SECOND, THIRD] {
        assert!(!contains(&raw, value), "{value} is in the redb file");
    }

    // Nowhere else either: /admin, /metrics, logs (debug JSON), errors.
    for path in [
        "/admin/servers",
        "/admin/config",
        "/admin/tools",
        "/metrics",
    ] {
        gateway.text(path).await;
    }
    // An instance that cannot resolve its secret says so by name only.
    let (status, _) = gateway
        .admin(reqwest::Method::DELETE, "/admin/secrets/upstream_key", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = gateway
        .admin(reqwest::Method::POST, "/admin/servers/vaulted/reload", None)
        .await;
    assert_eq!(status, 502);
    let output = stop(gateway).await;
    assert!(output.contains("unknown secret `upstream_key`"), "{output}");
    for value in [FIRST, SECOND, THIRD, KEY_A] {
        // The fixture's answers (the env tool's result) were captured too: only the
        // answers of that tool may carry a value, never a log line or another answer.
        let leaked: Vec<&str> = output
            .lines()
            .filter(|line| line.contains(value) && !line.contains("structuredContent"))
            .collect();
        assert!(leaked.is_empty(), "{value} leaked: {leaked:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_refused_and_rotation_moves_every_secret_to_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &format!("key = \"{KEY_A}\""));
    let gateway = start(&path).await.expect("gateway starts");
    let (status, _) = gateway.put_secret("upstream_key", FIRST).await;
    assert_eq!(status, 201);
    stop(gateway).await;

    // Another key: refused at start, saying what to do, printing no key.
    let path = write(dir.path(), &format!("key = \"{KEY_B}\""));
    let (code, output) = start(&path).await.err().expect("refused");
    assert_ne!(code, Some(0));
    assert!(
        output.contains("does not open the stored secrets"),
        "{output}"
    );
    for key in [KEY_A, KEY_B, &KEY_A[..16], &KEY_B[..16]] {
        assert!(!output.contains(key), "a key is printed: {output}");
    }

    // The new key with the old one as `previous_key`: readable, then rotated in place.
    let path = write(
        dir.path(),
        &format!("key = \"{KEY_B}\"\nprevious_key = \"{KEY_A}\""),
    );
    let gateway = start(&path).await.expect("starts with both keys");
    assert_eq!(
        gateway.upstream_env(OPS_KEY, "UPSTREAM_KEY").await,
        format!("pre-{FIRST}")
    );
    let (status, body) = gateway
        .admin(reqwest::Method::POST, "/admin/secrets/rotate", None)
        .await;
    assert_eq!((status, &body), (200, &json!({ "rotated": 1 })));
    stop(gateway).await;

    // The new key alone reads it; the old one alone is refused.
    let path = write(dir.path(), &format!("key = \"{KEY_B}\""));
    let gateway = start(&path).await.expect("starts with the new key");
    assert_eq!(
        gateway.upstream_env(OPS_KEY, "UPSTREAM_KEY").await,
        format!("pre-{FIRST}")
    );
    stop(gateway).await;
    let path = write(dir.path(), &format!("key = \"{KEY_A}\""));
    let (_, output) = start(&path).await.err().expect("the old key is refused");
    assert!(
        output.contains("does not open the stored secrets"),
        "{output}"
    );

    // The CLI rotates a state dir no gateway runs on.
    let path = write(
        dir.path(),
        &format!("key = \"{KEY_C}\"\nprevious_key = \"{KEY_B}\""),
    );
    let rotated = std::process::Command::new(GATEWAY)
        .args(["secrets", "rotate", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(stdout.contains("1 secret(s) re-encrypted"), "{stdout}");
    let path = write(dir.path(), &format!("key = \"{KEY_C}\""));
    let gateway = start(&path).await.expect("starts with the CLI's key");
    assert_eq!(
        gateway.upstream_env(OPS_KEY, "UPSTREAM_KEY").await,
        format!("pre-{FIRST}")
    );
    assert!(!contains(&redb_file(dir.path()), FIRST));
    stop(gateway).await;
}
