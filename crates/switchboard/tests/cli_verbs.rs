//! The operator verbs (`ls`, `add`, `rm`, `reload`, `tools`, `call`, `logs`, `audit`,
//! `approve`, `deny`, `completions`) against a real running gateway with the fixture
//! server: each verb's round trip, its `--json` output parsed and checked, progress on
//! stderr only when asked for and never with `--json`, the exit codes (0 done, 1 refused
//! or failed, 2 usage or unreachable, 3 credential), the CLI settings file, and shell
//! completions that `bash -n` accepts.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use switchboard_testkit::{Proc, binary_beside, spawn_fixture_http, spawn_gateway_http_at};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN: &str = "admin-token-0123456789";
const ALICE: &str = "alice-key-0123456789";

fn fixture() -> PathBuf {
    binary_beside(GATEWAY, "switchboard-fixture")
}

/// A key pair from `switchboard audit keygen`: (secret, public).
fn keygen() -> (String, String) {
    let output = Command::new(GATEWAY)
        .args(["audit", "keygen"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    // `signing_key = "…"   # …` and `public_key  = "…"   # …`: the quoted values.
    let value = |label: &str| {
        text.lines()
            .find(|line| line.starts_with(label))
            .and_then(|line| line.split('"').nth(1))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no {label} in {text}"))
    };
    (value("signing_key"), value("public_key"))
}

fn config(dir: &Path, signing_key: &str) -> PathBuf {
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
signing_key = {signing_key}

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
        fixture = fixture().display().to_string(),
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
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.out, self.err);
        self
    }

    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "{}", self.err);
        serde_json::from_str(&self.out).unwrap_or_else(|e| panic!("{e}: {}", self.out))
    }
}

/// The CLI with nothing from the environment but what `env` sets (no settings file:
/// `XDG_CONFIG_HOME` points at an empty dir).
fn cli(env: &[(&str, &str)], args: &[&str]) -> Run {
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(GATEWAY);
    command
        .args(args)
        .env_remove("SWITCHBOARD_URL")
        .env_remove("SWITCHBOARD_ADMIN_TOKEN")
        .env_remove("SWITCHBOARD_KEY")
        .env_remove("SWITCHBOARD_CLI_CONFIG")
        .env("XDG_CONFIG_HOME", empty.path())
        .envs(env.iter().copied());
    let output = command.output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn base(gateway: &Proc) -> String {
    gateway.url.trim_end_matches("/mcp").to_owned()
}

/// As an operator: URL, admin token and Alice's key from the environment.
fn op(gateway: &Proc, args: &[&str]) -> Run {
    let url = base(gateway);
    cli(
        &[
            ("SWITCHBOARD_URL", url.as_str()),
            ("SWITCHBOARD_ADMIN_TOKEN", ADMIN),
            ("SWITCHBOARD_KEY", ALICE),
        ],
        args,
    )
}

/// The id in `approval ID pending: …`.
fn approval_id(stderr: &str) -> String {
    stderr
        .split("approval ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no approval id in {stderr}"))
        .to_owned()
}

fn names(rows: &Value) -> Vec<&str> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| row["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_verb_round_trips_against_a_running_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = keygen();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path(), &format!("{secret:?}")), &[])
        .await
        .unwrap();
    let fixture_bin = fixture().display().to_string();

    // ls: the servers with state, era, transport, tools and health.
    let servers = op(&gateway, &["ls", "--json"]).json();
    let fx = &servers[0];
    assert_eq!(
        (&fx["name"], &fx["state"], &fx["health"], &fx["transport"]),
        (
            &json!("fx"),
            &json!("ready"),
            &json!("healthy"),
            &json!("stdio")
        ),
        "{servers}"
    );
    assert!(
        fx["tools"].as_u64().unwrap() > 0 && fx["era"].is_string(),
        "{fx}"
    );
    let table = op(&gateway, &["ls"]).ok();
    let heading: Vec<&str> = table
        .out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        heading,
        ["NAME", "STATE", "ERA", "TRANSPORT", "TOOLS", "HEALTH"]
    );
    assert!(
        table.out.lines().nth(1).unwrap().starts_with("fx "),
        "{}",
        table.out
    );
    assert!(
        table.err.is_empty(),
        "no progress off a terminal: {}",
        table.err
    );

    // add (stdio): registered, waited for, described; progress only when asked for, and
    // never with --json.
    let added = op(
        &gateway,
        &[
            "add",
            "extra",
            "--env",
            "FIXTURE_UNUSED=1",
            "--json",
            "--progress",
            "--",
            &fixture_bin,
            "stdio",
        ],
    );
    let answer = added.json();
    assert_eq!(answer["server"]["name"], "extra", "{answer}");
    assert_eq!(answer["server"]["state"], "ready", "{answer}");
    assert!(answer["server"]["tools"].as_u64().unwrap() > 0, "{answer}");
    assert!(answer["persisted"].is_boolean(), "{answer}");
    assert!(
        added.err.is_empty(),
        "--json is silent on stderr: {}",
        added.err
    );
    let again = op(&gateway, &["add", "extra", "--", &fixture_bin, "stdio"]);
    assert_eq!(again.code, 1, "a second `extra` is refused: {}", again.err);
    assert!(again.err.contains("extra"), "{}", again.err);
    let nothing = op(&gateway, &["add", "empty"]);
    assert_eq!(nothing.code, 2, "{}", nothing.err);
    let bad_env = op(
        &gateway,
        &[
            "add",
            "e2",
            "--env",
            "NOEQUALS",
            "--",
            &fixture_bin,
            "stdio",
        ],
    );
    assert_eq!(bad_env.code, 2, "{}", bad_env.err);

    // add (HTTP), in text with progress lines on stderr.
    let web = spawn_fixture_http(&fixture(), "http", &[]).await.unwrap();
    let added = op(
        &gateway,
        &[
            "add",
            "web",
            "--url",
            &web.url,
            "--header",
            "X-Test=1",
            "--progress",
        ],
    )
    .ok();
    assert!(
        added.out.starts_with("server \"web\" added: ready"),
        "{}",
        added.out
    );
    assert!(
        added.err.contains("registering server \"web\""),
        "{}",
        added.err
    );
    assert!(added.err.contains("server \"web\": ready"), "{}", added.err);
    let servers = op(&gateway, &["ls", "--json"]).json();
    let mut listed = names(&servers);
    listed.sort_unstable();
    assert_eq!(listed, ["extra", "fx", "web"]);

    // tools: one server's, and a search.
    let tools = op(&gateway, &["tools", "--server", "extra", "--json"]).json();
    assert!(!tools.as_array().unwrap().is_empty());
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["server"] == "extra"),
        "{tools}"
    );
    assert!(names(&tools).contains(&"extra__echo"), "{tools}");
    let found = op(&gateway, &["tools", "--search", "echo text back", "--json"]).json();
    assert!(
        found[0]["name"].as_str().unwrap().ends_with("echo"),
        "{found}"
    );
    assert!(found[0]["score"].is_number(), "{found}");
    let table = op(&gateway, &["tools", "--server", "fx"]).ok();
    assert!(table.out.starts_with("NAME"), "{}", table.out);
    assert!(
        table.out.lines().skip(1).all(|l| l.starts_with("fx__")),
        "{}",
        table.out
    );

    // call: text, JSON, a tool error, an unknown tool, bad arguments, no credential.
    let sum = op(&gateway, &["call", "fx__add", "a=2", "b=3"]).ok();
    assert_eq!(sum.out.trim(), "5");
    let result = op(
        &gateway,
        &["call", "fx__add", "--args", r#"{"a": 40}"#, "b=2", "--json"],
    )
    .json();
    assert_eq!(result["content"][0]["text"], "42", "{result}");
    let failed = op(&gateway, &["call", "fx__add", "a=x", "b=1"]);
    assert_eq!(
        failed.code, 1,
        "a tool error fails the command: {}",
        failed.err
    );
    assert!(failed.err.contains("reported an error"), "{}", failed.err);
    let failed = op(&gateway, &["call", "fx__add", "a=x", "b=1", "--json"]);
    assert_eq!(failed.code, 1);
    let result: Value = serde_json::from_str(&failed.out).unwrap();
    assert_eq!(result["isError"], true, "{result}");
    let unknown = op(&gateway, &["call", "fx__nope", "--json"]);
    assert_eq!(unknown.code, 1, "{}", unknown.err);
    let error: Value = serde_json::from_str(&unknown.out).unwrap();
    assert!(error["error"]["code"].is_number(), "{error}");
    let bad = op(&gateway, &["call", "fx__add", "--args", "[1]"]);
    assert_eq!(bad.code, 2, "{}", bad.err);
    let url = base(&gateway);
    let anonymous = cli(
        &[("SWITCHBOARD_URL", url.as_str())],
        &["call", "fx__add", "a=1", "b=1"],
    );
    assert_eq!(anonymous.code, 3, "{}", anonymous.err);

    // A call that needs an approval: pending, approved from the CLI, retried.
    let waited = op(&gateway, &["call", "fx__echo", "text=ship it"]);
    assert_eq!(waited.code, 1, "{}", waited.err);
    let id = approval_id(&waited.err);
    let approved = op(&gateway, &["approve", &id, "--json"]).json();
    assert!(approved.to_string().contains("approved"), "{approved}");
    let retried = op(
        &gateway,
        &["call", "fx__echo", "text=ship it", "--approval", &id],
    )
    .ok();
    assert_eq!(retried.out.trim(), "ship it");
    let twice = op(&gateway, &["approve", &id]);
    assert_eq!(twice.code, 1, "{}", twice.err);
    let waited = op(&gateway, &["call", "fx__echo", "text=no"]);
    let denied_id = approval_id(&waited.err);
    op(&gateway, &["deny", &denied_id, "--reason", "not today"]).ok();

    // approve --server: a version of a server's lists.
    let approved = op(&gateway, &["approve", "--server", "fx", "--json"]).json();
    assert_eq!(approved["approvedVersion"], 1, "{approved}");
    let text = op(&gateway, &["approve", "--server", "fx", "--version", "1"]).ok();
    assert_eq!(text.out.trim(), "server \"fx\" version 1 approved");
    let unknown = op(&gateway, &["approve", "--server", "fx", "--version", "99"]);
    assert_eq!(unknown.code, 1, "{}", unknown.err);

    // reload: one server (JSON), then every running one with progress.
    let reloaded = op(&gateway, &["reload", "extra", "--json"]).json();
    assert_eq!(reloaded, json!({ "reloaded": ["extra"], "failed": [] }));
    let all = op(&gateway, &["reload", "--progress"]).ok();
    for name in ["extra", "fx", "web"] {
        assert!(
            all.out.contains(&format!("server \"{name}\" reloaded")),
            "{}",
            all.out
        );
        assert!(
            all.err.contains(&format!("reloading \"{name}\"")),
            "{}",
            all.err
        );
    }
    let missing = op(&gateway, &["reload", "nope"]);
    assert_eq!(missing.code, 1, "{}", missing.err);
    let usage = op(&gateway, &["reload", "a", "b"]);
    assert_eq!(usage.code, 2, "{}", usage.err);

    // rm: removed, then refused.
    let removed = op(&gateway, &["rm", "extra", "--json"]).json();
    assert_eq!(removed, json!({ "removed": "extra" }));
    let again = op(&gateway, &["rm", "extra"]);
    assert_eq!(again.code, 1, "{}", again.err);
    op(&gateway, &["rm", "web"]).ok();
    let servers = op(&gateway, &["ls", "--json"]).json();
    assert_eq!(names(&servers), ["fx"]);

    // logs: the calls above, oldest first, as JSON lines.
    let logs = op(&gateway, &["logs", "--limit", "100", "--json"]).ok();
    let records: Vec<Value> = logs
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r["tool"] == "fx__add"),
        "{}",
        logs.out
    );
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // audit: records and the verify status; a key the log was not signed with fails it.
    let audit = op(&gateway, &["audit", "--verify", "--limit", "5", "--json"]).json();
    assert_eq!(audit["records"].as_array().unwrap().len(), 5, "{audit}");
    assert_eq!(audit["verify"]["ok"], true, "{audit}");
    assert_eq!(audit["verify"]["trusted"], "gateway", "{audit}");
    assert!(
        audit["verify"]["verified"].as_u64().unwrap() >= 5,
        "{audit}"
    );
    let trusted = op(
        &gateway,
        &["audit", "--verify", "--public-key", &public, "--json"],
    )
    .json();
    assert_eq!(
        (&trusted["verify"]["ok"], &trusted["verify"]["trusted"]),
        (&json!(true), &json!("given"))
    );
    let table = op(&gateway, &["audit", "--verify"]).ok();
    assert!(table.out.starts_with("SEQ"), "{}", table.out);
    assert!(
        table
            .out
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("audit log ok"),
        "{}",
        table.out
    );
    let (_, stranger) = keygen();
    let refused = op(&gateway, &["audit", "--verify", "--public-key", &stranger]);
    assert_eq!(
        refused.code, 1,
        "a log not signed by the trusted key: {}",
        refused.out
    );
    assert!(refused.err.contains("does not verify"), "{}", refused.err);
    drop(web);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_where_the_gateway_and_credentials_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = keygen();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path(), &format!("{secret:?}")), &[])
        .await
        .unwrap();
    let url = base(&gateway);

    // Usage: an unknown flag, a missing argument (clap), no gateway configured.
    assert_eq!(op(&gateway, &["ls", "--bogus"]).code, 2);
    assert_eq!(op(&gateway, &["rm"]).code, 2);
    let nowhere = cli(&[], &["ls"]);
    assert_eq!(nowhere.code, 2, "{}", nowhere.err);
    assert!(nowhere.err.contains("SWITCHBOARD_URL"), "{}", nowhere.err);
    // Unreachable.
    let unreachable = cli(
        &[],
        &["ls", "--url", "http://127.0.0.1:9", "--token", ADMIN],
    );
    assert_eq!(unreachable.code, 2, "{}", unreachable.err);
    assert!(
        unreachable.err.contains("cannot reach"),
        "{}",
        unreachable.err
    );
    // Credentials: none, wrong, a client key without the admin role.
    let none = cli(&[("SWITCHBOARD_URL", url.as_str())], &["ls"]);
    assert_eq!(none.code, 2, "{}", none.err);
    for token in ["wrong", ALICE] {
        let refused = cli(
            &[
                ("SWITCHBOARD_URL", url.as_str()),
                ("SWITCHBOARD_ADMIN_TOKEN", token),
            ],
            &["ls"],
        );
        assert_eq!(refused.code, 3, "{}", refused.err);
    }
    let wrong_key = cli(
        &[
            ("SWITCHBOARD_URL", url.as_str()),
            ("SWITCHBOARD_KEY", "wrong-key-0123456789"),
        ],
        &["call", "fx__add", "a=1", "b=1"],
    );
    assert_eq!(wrong_key.code, 3, "{}", wrong_key.err);

    // The settings file: named explicitly, or at the XDG default; flags win over it.
    let settings = dir.path().join("cli.toml");
    std::fs::write(
        &settings,
        format!("url = {url:?}\ntoken = {ADMIN:?}\nkey = {ALICE:?}\n"),
    )
    .unwrap();
    let path = settings.display().to_string();
    let listed = cli(
        &[("SWITCHBOARD_CLI_CONFIG", path.as_str())],
        &["ls", "--json"],
    )
    .json();
    assert_eq!(listed[0]["name"], "fx");
    let called = cli(
        &[],
        &["call", "fx__add", "a=1", "b=1", "--cli-config", &path],
    )
    .ok();
    assert_eq!(called.out.trim(), "2");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("switchboard")).unwrap();
    std::fs::copy(&settings, xdg.join("switchboard").join("cli.toml")).unwrap();
    let xdg = xdg.display().to_string();
    let listed = cli(&[("XDG_CONFIG_HOME", xdg.as_str())], &["ls", "--json"]).json();
    assert_eq!(listed[0]["name"], "fx");
    let overridden = cli(
        &[("XDG_CONFIG_HOME", xdg.as_str())],
        &["ls", "--token", "wrong"],
    );
    assert_eq!(overridden.code, 3, "the flag wins: {}", overridden.err);
    let missing = cli(&[], &["ls", "--cli-config", "/nonexistent/cli.toml"]);
    assert_eq!(missing.code, 2, "{}", missing.err);
    std::fs::write(&settings, "tokn = \"x\"\n").unwrap();
    let invalid = cli(&[("SWITCHBOARD_CLI_CONFIG", path.as_str())], &["ls"]);
    assert_eq!(invalid.code, 2, "{}", invalid.err);
    assert!(invalid.err.contains("tokn"), "{}", invalid.err);
}

#[test]
fn completions_are_printed_for_each_shell_and_bash_accepts_its_script() {
    for shell in ["bash", "zsh", "fish"] {
        let run = cli(&[], &["completions", shell]).ok();
        for verb in [
            "ls", "add", "rm", "reload", "tools", "call", "logs", "audit", "approve",
        ] {
            assert!(run.out.contains(verb), "{shell}: no `{verb}`");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("switchboard.bash");
    std::fs::write(&script, cli(&[], &["completions", "bash"]).ok().out).unwrap();
    let checked = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // Sourced in a shell, it registers the completion function.
    let sourced = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p switchboard",
            script.display()
        ))
        .output()
        .unwrap();
    assert!(
        sourced.status.success(),
        "{}",
        String::from_utf8_lossy(&sourced.stderr)
    );
    assert_eq!(cli(&[], &["completions", "powershell-9"]).code, 2);
}
