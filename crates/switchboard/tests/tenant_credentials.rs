//! Per-tenant upstream credentials end to end, through the real gateway binary and the
//! fixture server: two tenants (API keys mapped to tenants by `[access]`) calling a
//! `per_tenant` stdio server each get their own process with their own secret in its
//! environment, and an HTTP upstream gets each tenant's own header; the client's own
//! credential never reaches an upstream ("no token passthrough"); and with debug JSON
//! logs on, the injected secrets appear nowhere the gateway writes or answers: logs,
//! responses, errors, `/admin`, `/metrics`, lists, `check-config`.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{
    ModernHttp, Proc, binary_beside, kill_group, spawn_fixture_http, spawn_gateway_http_at,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const ACME_KEY: &str = "acme-client-key-0123456789";
const GLOBEX_KEY: &str = "globex-client-key-0123456789";
/// The upstream secrets. Acme's comes from the gateway's environment (`${ACME_UPSTREAM}`),
/// globex's is written in the file, the server's own is the fallback for everyone else.
const ACME_SECRET: &str = "acme-upstream-secret-7f3a91";
const GLOBEX_SECRET: &str = "globex-upstream-secret-c44e02";
const SERVER_SECRET: &str = "server-own-secret-5b21d7";
const ACME_TOKEN: &str = "acme-http-token-9d8e11";
const GLOBEX_TOKEN: &str = "globex-http-token-a6b7c3";

fn fixture() -> String {
    format!(
        "{:?}",
        binary_beside(GATEWAY, "switchboard-fixture")
            .display()
            .to_string()
    )
}

/// Two tenants by API key; `keyed` (stdio) and `remote` (HTTP) are `per_tenant` with each
/// tenant's secret; `plain` is the same HTTP upstream shared, with no credential at all.
fn config(http_upstream: &str, extra: &str) -> String {
    let fixture = fixture();
    format!(
        r#"
[gateway]
admin_token = "{ADMIN_TOKEN}"
meta_tools = ["list_servers", "call"]
meta_tools_by_default = true

[access]

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "globex-ci"
key = "{GLOBEX_KEY}"
tenant = "globex"

[access.tenants.acme]
[access.tenants.globex]

[servers.keyed]
command = {fixture}
args = ["stdio"]
sharing = "per_tenant"
env = {{ UPSTREAM_KEY = "{SERVER_SECRET}", REGION = "eu" }}

[servers.keyed.tenants.acme]
env = {{ UPSTREAM_KEY = "${{ACME_UPSTREAM}}" }}

[servers.keyed.tenants.globex]
env = {{ UPSTREAM_KEY = "{GLOBEX_SECRET}" }}

[servers.remote]
url = "{http_upstream}"
sharing = "per_tenant"

[servers.remote.tenants.acme]
headers = {{ Authorization = "Bearer {ACME_TOKEN}" }}

[servers.remote.tenants.globex]
headers = {{ Authorization = "Bearer {GLOBEX_TOKEN}", X-Upstream-Key = "{GLOBEX_SECRET}" }}

[servers.plain]
url = "{http_upstream}"
{extra}
"#
    )
}

/// The gateway, killed with its process group when dropped.
struct Gateway {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            kill_group(pid);
        }
        let _ = self.child.start_kill();
    }
}

struct Setup {
    gateway: Gateway,
    upstream: Proc,
    /// Everything the gateway wrote on stdout and stderr.
    output: Arc<Mutex<String>>,
    acme: ModernHttp,
    globex: ModernHttp,
    _dir: tempfile::TempDir,
}

/// Starts the HTTP fixture and the gateway in front of it, with debug JSON logs captured.
async fn setup(extra: &str) -> Setup {
    let upstream = spawn_fixture_http(&binary_beside(GATEWAY, "switchboard-fixture"), "http", &[])
        .await
        .expect("fixture starts");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, config(&upstream.url, extra)).unwrap();
    let (gateway, output) = spawn_captured(&path).await;
    let acme = ModernHttp::with_headers(&gateway.url, &[("authorization", &bearer(ACME_KEY))]);
    let globex = ModernHttp::with_headers(&gateway.url, &[("x-api-key", GLOBEX_KEY)]);
    Setup {
        gateway,
        upstream,
        output,
        acme,
        globex,
        _dir: dir,
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `switchboard --log-format json serve` with debug logs, its stdout and stderr kept.
async fn spawn_captured(config: &Path) -> (Gateway, Arc<Mutex<String>>) {
    let mut command = tokio::process::Command::new(GATEWAY);
    command
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(config)
        .env("SWITCHBOARD_LOG", "debug")
        .env("RUST_LOG", "debug")
        .env("ACME_UPSTREAM", ACME_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().expect("gateway spawns");
    let output = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let sink = output.clone();
    tokio::spawn(async move {
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
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = stdout.next_line().await {
            output.lock().unwrap().push_str(&line);
            output.lock().unwrap().push('\n');
            if let Some(at) = line.find("listening on ") {
                return line[at + "listening on ".len()..].trim().to_owned();
            }
        }
        panic!(
            "gateway exited before listening: {}",
            output.lock().unwrap()
        );
    })
    .await
    .expect("gateway announces its address");
    let sink = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stdout.next_line().await {
            let mut output = sink.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
    (Gateway { child, url }, output)
}

async fn call(client: &ModernHttp, tool: &str, arguments: Value) -> Value {
    let exchange = client
        .request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await;
    exchange.result().clone()
}

/// What the stdio fixture's `env` tool sees for `UPSTREAM_KEY`, and its process id.
async fn secret_and_pid(client: &ModernHttp, server: &str) -> (String, u64) {
    let env = call(
        client,
        &format!("{server}__env"),
        json!({ "name": "UPSTREAM_KEY" }),
    )
    .await;
    let whoami = call(client, &format!("{server}__whoami"), json!({})).await;
    (
        env["structuredContent"]["value"]
            .as_str()
            .unwrap_or("<unset>")
            .to_owned(),
        whoami["structuredContent"]["pid"].as_u64().unwrap(),
    )
}

/// The headers the HTTP fixture saw on the request that ran `tool`.
async fn upstream_headers(client: &ModernHttp, tool: &str) -> serde_json::Map<String, Value> {
    let result = call(client, tool, json!({})).await;
    result["structuredContent"]["headers"]
        .as_object()
        .unwrap_or_else(|| panic!("headers reported: {result}"))
        .clone()
}

async fn admin(gateway: &Gateway, path: &str) -> (u16, String) {
    let base = gateway.url.trim_end_matches("/mcp");
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn described<'a>(servers: &'a Value, name: &str) -> &'a Value {
    servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} described: {servers}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_gets_its_own_instance_with_its_own_secret() {
    let setup = setup("").await;

    // Each tenant its own process, its own secret.
    let (acme_secret, acme_pid) = secret_and_pid(&setup.acme, "keyed").await;
    let (globex_secret, globex_pid) = secret_and_pid(&setup.globex, "keyed").await;
    assert_eq!(acme_secret, ACME_SECRET);
    assert_eq!(globex_secret, GLOBEX_SECRET);
    assert_ne!(acme_pid, globex_pid, "tenants never share a process");
    // Credentials are laid over the server's own env: the rest is still there.
    let region = call(&setup.acme, "keyed__env", json!({ "name": "REGION" })).await;
    assert_eq!(region["structuredContent"]["value"], "eu");

    // Interleaved and concurrent calls: every call lands on its own tenant's process.
    for _ in 0..5 {
        let (acme, globex) = tokio::join!(
            secret_and_pid(&setup.acme, "keyed"),
            secret_and_pid(&setup.globex, "keyed")
        );
        assert_eq!(acme, (ACME_SECRET.to_owned(), acme_pid));
        assert_eq!(globex, (GLOBEX_SECRET.to_owned(), globex_pid));
    }

    // Operators see which tenants have an instance, and three processes: the server's
    // own (it lists the tools, on the server's credentials) and one per tenant.
    let (status, body) = admin(&setup.gateway, "/admin/servers").await;
    assert_eq!(status, 200, "{body}");
    let servers: Value = serde_json::from_str(&body).unwrap();
    let keyed = described(&servers, "keyed");
    assert_eq!(keyed["sharing"], "per_tenant");
    assert_eq!(keyed["tenants"], json!(["acme", "globex"]), "{keyed}");
    let pids: Vec<u64> = keyed["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "{keyed}");
    assert!(
        pids.contains(&acme_pid) && pids.contains(&globex_pid),
        "{keyed}"
    );
    // Agents do not learn which other tenants use a server.
    let listed = call(&setup.globex, "switchboard__list_servers", json!({})).await;
    let listed_keyed = described(&listed["structuredContent"], "keyed");
    assert!(listed_keyed.get("tenants").is_none(), "{listed_keyed}");

    // A tenant's instance that dies is restarted with that tenant's secret again.
    let crashed = setup
        .acme
        .request(
            "tools/call",
            json!({ "name": "keyed__crash", "arguments": {} }),
        )
        .await;
    assert!(crashed.outcome.is_err(), "{:?}", crashed.outcome);
    let mut restarted = None;
    for _ in 0..50 {
        let exchange = setup
            .acme
            .request(
                "tools/call",
                json!({ "name": "keyed__env", "arguments": { "name": "UPSTREAM_KEY" } }),
            )
            .await;
        if let Ok(result) = &exchange.outcome {
            restarted = Some(result["structuredContent"]["value"].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(restarted, Some(json!(ACME_SECRET)));
    let (globex_after, globex_pid_after) = secret_and_pid(&setup.globex, "keyed").await;
    assert_eq!(
        (globex_after.as_str(), globex_pid_after),
        (GLOBEX_SECRET, globex_pid),
        "the other tenant's instance is untouched"
    );

    // HTTP upstream: each tenant's own header, never the other's, never the client's key.
    let acme_headers = upstream_headers(&setup.acme, "remote__request_headers").await;
    assert_eq!(acme_headers["authorization"], bearer(ACME_TOKEN));
    assert!(
        !acme_headers.contains_key("x-upstream-key"),
        "{acme_headers:?}"
    );
    let globex_headers = upstream_headers(&setup.globex, "remote__request_headers").await;
    assert_eq!(globex_headers["authorization"], bearer(GLOBEX_TOKEN));
    assert_eq!(globex_headers["x-upstream-key"], GLOBEX_SECRET);
    for headers in [&acme_headers, &globex_headers] {
        let all = format!("{headers:?}");
        for client_credential in [ACME_KEY, GLOBEX_KEY] {
            assert!(!all.contains(client_credential), "passed through: {all}");
        }
        assert!(!headers.contains_key("x-api-key"), "{all}");
    }
}

/// MCP "no token passthrough": the credential a client presents to the gateway is the
/// gateway's business; the upstream sees only what the gateway is configured to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_own_token_never_reaches_an_upstream() {
    let setup = setup("").await;
    for (client, credential) in [(&setup.acme, ACME_KEY), (&setup.globex, GLOBEX_KEY)] {
        // Directly and through the `call` meta-tool.
        let direct = upstream_headers(client, "plain__request_headers").await;
        let result = call(
            client,
            "switchboard__call",
            json!({ "server": "plain", "tool": "request_headers", "arguments": {} }),
        )
        .await;
        let via_meta = result["structuredContent"]["headers"]
            .as_object()
            .cloned()
            .unwrap_or_else(|| panic!("{result}"));
        for headers in [direct, via_meta] {
            assert!(!headers.contains_key("authorization"), "{headers:?}");
            assert!(!headers.contains_key("x-api-key"), "{headers:?}");
            assert!(!format!("{headers:?}").contains(credential), "{headers:?}");
            // The gateway's own request reached it (the report is real).
            assert!(headers.contains_key("mcp-protocol-version"), "{headers:?}");
        }
    }
}

/// Every string the secrets-nowhere test must not find.
const SECRETS: [&str; 5] = [
    ACME_SECRET,
    GLOBEX_SECRET,
    SERVER_SECRET,
    ACME_TOKEN,
    GLOBEX_TOKEN,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_secrets_appear_nowhere() {
    // `late` is a per-tenant HTTP server whose upstream goes away after it was listed, so
    // a tenant's first call fails to start an instance that carries the tenant's secret.
    let late_upstream =
        spawn_fixture_http(&binary_beside(GATEWAY, "switchboard-fixture"), "http", &[])
            .await
            .unwrap();
    let extra = format!(
        "\n[servers.late]\nurl = \"{}\"\nsharing = \"per_tenant\"\n\
         [servers.late.tenants.acme]\nheaders = {{ Authorization = \"Bearer {ACME_TOKEN}\" }}\n",
        late_upstream.url
    );
    let mut setup = setup(&extra).await;
    // Control: the secret really is in the tenant's process (an upstream may show its own
    // environment; that answer is the upstream's, so it is kept out of what is searched).
    let (injected, _) = secret_and_pid(&setup.acme, "keyed").await;
    assert_eq!(injected, ACME_SECRET);
    let mut seen: Vec<String> = Vec::new();
    let mut keep = |label: &str, text: String| seen.push(format!("--- {label}\n{text}"));

    // Calls, lists, a meta-tool, a legacy session, for both tenants.
    for client in [&setup.acme, &setup.globex] {
        for method in [
            "tools/list",
            "prompts/list",
            "resources/list",
            "resources/templates/list",
        ] {
            let exchange = client.request(method, json!({})).await;
            keep(method, format!("{:?}", exchange.outcome));
        }
        for (tool, arguments) in [
            ("keyed__echo", json!({ "text": "hello" })),
            ("keyed__whoami", json!({})),
            ("remote__echo", json!({ "text": "hello" })),
            ("keyed__no_such_tool", json!({})),
            ("switchboard__list_servers", json!({})),
            ("keyed__add", json!({ "a": "not a number" })),
        ] {
            let exchange = client
                .request(
                    "tools/call",
                    json!({ "name": tool, "arguments": arguments }),
                )
                .await;
            keep(tool, format!("{:?}", exchange.outcome));
        }
    }
    let legacy = switchboard_testkit::LegacyHttp::connect_with(
        &setup.gateway.url,
        &[("authorization", &bearer(ACME_KEY))],
    )
    .await
    .expect("legacy session opens");
    let exchange = legacy
        .request(
            "tools/call",
            json!({ "name": "keyed__echo", "arguments": { "text": "legacy" } }),
        )
        .await;
    keep("legacy call", format!("{:?}", exchange.outcome));

    // Failures: a tenant's process crashes mid-call; a tenant's instance cannot start
    // (its upstream is gone); the shared HTTP upstream is gone too.
    let crashed = setup
        .globex
        .request(
            "tools/call",
            json!({ "name": "keyed__crash", "arguments": {} }),
        )
        .await;
    assert!(crashed.outcome.is_err());
    keep("crash", format!("{:?}", crashed.outcome));
    drop(late_upstream);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = setup
        .acme
        .request(
            "tools/call",
            json!({ "name": "late__echo", "arguments": { "text": "x" } }),
        )
        .await;
    let error = refused.error().to_string();
    assert!(error.contains("tenant `acme`"), "{error}");
    keep("tenant start failure", error);
    setup.upstream.child.start_kill().unwrap();
    let _ = setup.upstream.child.wait().await;
    for client in [&setup.acme, &setup.globex] {
        let exchange = client
            .request(
                "tools/call",
                json!({ "name": "remote__echo", "arguments": { "text": "gone" } }),
            )
            .await;
        keep("upstream gone", format!("{:?}", exchange.outcome));
    }

    // What operators see.
    for path in [
        "/admin/servers",
        "/admin/tools",
        "/admin/config",
        "/metrics",
    ] {
        let (status, body) = if path == "/metrics" {
            let base = setup.gateway.url.trim_end_matches("/mcp");
            let response = reqwest::get(format!("{base}{path}")).await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        } else {
            admin(&setup.gateway, path).await
        };
        assert_eq!(status, 200, "{path}: {body}");
        keep(path, body);
    }

    // `check-config` on a file whose tenant header is invalid: the error names the key.
    let bad = setup._dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "[servers.x]\nurl = \"http://127.0.0.1:1/mcp\"\nsharing = \"per_tenant\"\n\
             [servers.x.tenants.acme]\nheaders = {{ X-Key = \"{ACME_SECRET}\\u0001\" }}\n"
        ),
    )
    .unwrap();
    let checked = tokio::process::Command::new(GATEWAY)
        .arg("check-config")
        .arg(&bad)
        .output()
        .await
        .unwrap();
    assert!(!checked.status.success());
    let checked = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.contains("servers.x.tenants.acme.headers.X-Key"),
        "{checked}"
    );
    keep("check-config", checked);

    // Stop the gateway gracefully so its shutdown logs are in too.
    let pid = nix::unistd::Pid::from_raw(setup.gateway.child.id().unwrap() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = tokio::time::timeout(Duration::from_secs(15), setup.gateway.child.wait()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = setup.output.lock().unwrap().clone();
    // The logs are the debug JSON ones, and they did record this run's events.
    assert!(
        logs.contains("\"level\":\"DEBUG\""),
        "no debug logs: {logs}"
    );
    assert!(logs.contains("upstream ready"), "{logs}");
    assert!(logs.contains("acme"), "tenants named in the logs: {logs}");
    keep("gateway stdout and stderr", logs);

    let everything = seen.join("\n");
    for secret in SECRETS {
        if let Some(at) = everything.find(secret) {
            let start = everything[..at].rfind("\n---").unwrap_or(0);
            let context: String = everything[start..].chars().take(600).collect();
            panic!("secret {secret} leaked:\n{context}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_admission_is_checked_at_load() {
    // Credentials on a server that is not per_tenant are refused with the key path, by
    // check-config and by serve alike; the secret is not echoed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(
        &path,
        format!(
            "[servers.x]\ncommand = {}\nargs = [\"stdio\"]\n\
             [servers.x.tenants.acme]\nenv = {{ KEY = \"{ACME_SECRET}\" }}\n",
            fixture()
        ),
    )
    .unwrap();
    let checked = std::process::Command::new(GATEWAY)
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(stderr.contains("servers.x.tenants"), "{stderr}");
    assert!(stderr.contains("per_tenant"), "{stderr}");
    assert!(!stderr.contains(ACME_SECRET), "{stderr}");
    let served: anyhow::Result<Proc> = spawn_gateway_http_at(GATEWAY, &path, &[]).await;
    assert!(served.is_err(), "serve refuses it too");
}

/// A `per_tenant` server holds at most `[pool] size` instances (the least recently used
/// idle one makes room), and each tenant's instance idles out on its own while the others
/// keep the server busy; the tenant's next call starts a new one with its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_instances_are_bounded_and_idle_out_one_by_one() {
    let upstream = spawn_fixture_http(&binary_beside(GATEWAY, "switchboard-fixture"), "http", &[])
        .await
        .unwrap();
    let extra = "\n[servers.keyed.pool]\nsize = 2\n";
    let text = config(&upstream.url, "").replace(
        "sharing = \"per_tenant\"\nenv =",
        "sharing = \"per_tenant\"\nidle_timeout_ms = 1000\nenv =",
    ) + extra;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    let (gateway, _output) = spawn_captured(&path).await;
    let acme = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ACME_KEY)]);
    let globex = ModernHttp::with_headers(&gateway.url, &[("x-api-key", GLOBEX_KEY)]);
    let keyed = || async {
        let (_, body) = admin(&gateway, "/admin/servers").await;
        let servers: Value = serde_json::from_str(&body).unwrap();
        described(&servers, "keyed").clone()
    };

    let (_, acme_pid) = secret_and_pid(&acme, "keyed").await;
    let (_, globex_pid) = secret_and_pid(&globex, "keyed").await;
    let described = keyed().await;
    assert_eq!(
        described["tenants"],
        json!(["acme", "globex"]),
        "{described}"
    );
    assert_eq!(
        described["instances"], 2,
        "bounded by pool.size: {described}"
    );

    // globex keeps calling; acme's instance idles out alone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (secret, pid) = secret_and_pid(&globex, "keyed").await;
        assert_eq!((secret.as_str(), pid), (GLOBEX_SECRET, globex_pid));
        if keyed().await["tenants"] == json!(["globex"]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acme's instance never idled out: {}",
            keyed().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !keyed().await["pids"]
            .as_array()
            .unwrap()
            .contains(&json!(acme_pid))
    );
    // acme's next call starts a fresh instance, with acme's secret.
    let (secret, pid) = secret_and_pid(&acme, "keyed").await;
    assert_eq!(secret, ACME_SECRET);
    assert_ne!(pid, acme_pid);
}
