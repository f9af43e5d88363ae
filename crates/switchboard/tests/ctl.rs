//! The kubectl-style CLI (`get`, `describe`, `apply`, `delete`, `reload`, `approve`,
//! `deny`, `logs`) against a real running gateway: tables and `-o json`, and the exit
//! codes (0 done, 1 refused by the gateway, 2 bad input or unreachable, 3 credential).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, Proc, binary_beside, spawn_gateway_http_at};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN: &str = "admin-token-0123456789";
const ALICE: &str = "alice-key-0123456789";
const APPROVAL_KEY: &str = "dev.switchboard/approval";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"
[gateway]
state_dir = {state:?}
admin_token = "{ADMIN}"

[access]
anonymous = false

[[access.keys]]
id = "alice"
key = "{ALICE}"

[audit]
signing_key = "{seed}"

[approvals]
wait_ms = 100
expiry_ms = 60000

[[approvals.rules]]
tools = "fx__echo"
approver = "admin"

[servers.fx]
command = {fixture:?}
args = ["stdio"]
pin = "trust_first"
"#,
        state = dir.join("state").display().to_string(),
        seed = "33".repeat(32),
        fixture = fixture(),
    );
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{}", self.err);
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("{e}: {}", self.out))
    }
}

/// Runs the CLI against `gateway` (URL and token from the environment, as a script
/// would set them).
fn ctl(gateway: &Proc, token: Option<&str>, args: &[&str]) -> Run {
    let mut command = Command::new(GATEWAY);
    command
        .args(args)
        .env("SWITCHBOARD_URL", gateway.url.trim_end_matches("/mcp"))
        .env_remove("SWITCHBOARD_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("SWITCHBOARD_ADMIN_TOKEN", token);
    }
    let output = command.output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn admin(gateway: &Proc, args: &[&str]) -> Run {
    ctl(gateway, Some(ADMIN), args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_describe_apply_delete_approve_and_logs_against_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path()), &[])
        .await
        .unwrap();

    // get: JSON arrays, and tables with a heading.
    let servers = admin(&gateway, &["get", "servers", "-o", "json"]).json();
    assert_eq!(servers[0]["name"], "fx", "{servers}");
    let table = admin(&gateway, &["get", "servers"]);
    assert_eq!(table.code, 0, "{}", table.err);
    let mut lines = table.out.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{}", table.out);
    assert!(lines.next().unwrap().starts_with("fx "), "{}", table.out);
    let tools = admin(&gateway, &["get", "tools", "-o", "json"]).json();
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "fx__echo"),
        "{tools}"
    );
    let pins = admin(&gateway, &["get", "pins", "-o", "json"]).json();
    assert_eq!(
        (&pins[0]["pin"], &pins[0]["version"]),
        (&json!("trust_first"), &json!(1))
    );
    let table = admin(&gateway, &["get", "pins"]);
    assert!(table.out.contains("trust_first"), "{}", table.out);

    // describe: one server, its registry entry and its tools.
    let described = admin(&gateway, &["describe", "server", "fx", "-o", "json"]).json();
    assert_eq!(described["server"]["state"], "ready", "{described}");
    assert_eq!(described["registry"]["pin"], "trust_first");
    assert!(
        described["tools"]
            .as_array()
            .unwrap()
            .contains(&json!("fx__echo"))
    );
    let text = admin(&gateway, &["describe", "server", "fx"]);
    assert!(text.out.contains("state: ready"), "{}", text.out);
    let missing = admin(&gateway, &["describe", "server", "nope"]);
    assert_eq!(missing.code, 1, "{}", missing.err);
    assert!(missing.err.contains("not found"), "{}", missing.err);

    // apply: created, then replaced; reload; delete, then delete again is refused.
    let file = dir.path().join("extra.json");
    std::fs::write(
        &file,
        json!({ "mcpServers": { "extra": { "command": fixture(), "args": ["stdio"] } } })
            .to_string(),
    )
    .unwrap();
    let file = file.display().to_string();
    let applied = admin(&gateway, &["apply", "-f", &file]);
    assert_eq!(applied.code, 0, "{}", applied.err);
    assert_eq!(applied.out.trim(), "server \"extra\" created");
    let applied = admin(&gateway, &["apply", "-f", &file, "-o", "json"]).json();
    assert_eq!(applied, json!([{ "name": "extra", "action": "replaced" }]));
    let servers = admin(&gateway, &["get", "servers", "-o", "json"]).json();
    assert!(
        servers
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "extra")
    );
    let reloaded = admin(&gateway, &["reload", "server", "extra"]);
    assert_eq!(
        (reloaded.code, reloaded.out.trim()),
        (0, "server \"extra\" reloaded"),
        "{}",
        reloaded.err
    );
    let deleted = admin(&gateway, &["delete", "server", "extra"]);
    assert_eq!(
        (deleted.code, deleted.out.trim()),
        (0, "server \"extra\" deleted"),
        "{}",
        deleted.err
    );
    let again = admin(&gateway, &["delete", "server", "extra"]);
    assert_eq!(again.code, 1, "{}", again.err);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"servers\": 1}").unwrap();
    let refused = admin(&gateway, &["apply", "-f", &bad.display().to_string()]);
    assert_eq!(refused.code, 2, "{}", refused.err);

    // approvals: listed pending, approved from the CLI, the retry runs; denied too.
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let echo = |text: &str| json!({ "name": "fx__echo", "arguments": { "text": text } });
    let waited = alice.request("tools/call", echo("ship it")).await;
    let id = waited.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    let approvals = admin(&gateway, &["get", "approvals", "-o", "json"]).json();
    let entry = approvals
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(entry["state"], "pending");
    let table = admin(&gateway, &["get", "approvals"]);
    assert!(
        table.out.contains(&id) && table.out.contains("pending"),
        "{}",
        table.out
    );
    let approved = admin(&gateway, &["approve", &id]);
    assert_eq!(approved.code, 0, "{}", approved.err);
    let mut retry = echo("ship it");
    retry["_meta"] = json!({ APPROVAL_KEY: id });
    let retried = alice.request("tools/call", retry).await;
    assert_eq!(retried.result()["content"][0]["text"], "ship it");
    let twice = admin(&gateway, &["approve", &id]);
    assert_eq!(twice.code, 1, "decided already: {}", twice.err);
    let waited = alice.request("tools/call", echo("no")).await;
    let denied = waited.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = admin(
        &gateway,
        &["deny", &denied, "--reason", "not today", "-o", "json"],
    )
    .json();
    assert!(answer.to_string().contains("denied"), "{answer}");

    // logs: the audit records, oldest first, as JSON lines or a table.
    let logs = admin(&gateway, &["logs", "--limit", "50", "-o", "json"]);
    assert_eq!(logs.code, 0, "{}", logs.err);
    let records: Vec<Value> = logs
        .out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert!(!records.is_empty());
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(
        records.iter().any(|r| r["tool"] == "fx__echo"),
        "{}",
        logs.out
    );
    let table = admin(&gateway, &["logs", "--tool", "fx__echo"]);
    assert!(table.out.starts_with("SEQ"), "{}", table.out);
    assert!(
        table.out.lines().skip(1).all(|l| l.contains("fx__echo")),
        "{}",
        table.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_credentials_from_refusals_and_unreachable_gateways() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path()), &[])
        .await
        .unwrap();
    let none = ctl(&gateway, None, &["get", "servers"]);
    assert_eq!(none.code, 2, "{}", none.err);
    assert!(none.err.contains("SWITCHBOARD_ADMIN_TOKEN"), "{}", none.err);
    let wrong = ctl(&gateway, Some("wrong"), &["get", "servers"]);
    assert_eq!(wrong.code, 3, "{}", wrong.err);
    // A client key without the admin role: known, not allowed.
    let alice = ctl(&gateway, Some(ALICE), &["get", "servers"]);
    assert_eq!(alice.code, 3, "{}", alice.err);
    let unreachable = Command::new(GATEWAY)
        .args([
            "get",
            "servers",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            ADMIN,
        ])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    let usage = admin(&gateway, &["get", "widgets"]);
    assert_eq!(usage.code, 2, "{}", usage.err);
}
