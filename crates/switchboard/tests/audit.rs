//! The audit log end to end, through the real gateway binary, the fixture server and the
//! `switchboard audit` CLI on a real state dir: denied and executed calls are told apart
//! (allow-lists, argument rules, rate limits, unknown names, tool errors); 10,000 calls
//! from a concurrent loop verify, and each kind of tampering — done directly on the redb
//! tables of a copy — is named by `audit verify` with the right sequence number; a
//! `kill -9` mid-write leaves a log that verifies and goes on after a restart; the stdio
//! face is audited too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use redb::{ReadableTable as _, TableDefinition};
use serde_json::{Value, json};
use switchboard_config::SigningSeed;
use switchboard_gateway::audit::AuditKey;
use switchboard_gateway::audit::chain::{self, Anchor, AnchorKind};
use switchboard_testkit::{ModernHttp, Proc, Stdio, binary_beside, spawn_gateway_http_at};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN: &str = "admin-token-0123456789";
const ACME_KEY: &str = "acme-key-0123456789";
const SEED_A: [u8; 32] = [0xa1; 32];
const SEED_B: [u8; 32] = [0xb2; 32];

// The log's tables, as the gateway stores them (a change here is a format change).
const RECORDS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("audit_records");
const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("audit_meta");

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn key(seed: [u8; 32]) -> AuditKey {
    AuditKey::from_seed(&SigningSeed(seed))
}

fn public_a() -> String {
    b64(&key(SEED_A).public())
}

fn fixture() -> String {
    format!(
        "{:?}",
        binary_beside(GATEWAY, "switchboard-fixture")
            .display()
            .to_string()
    )
}

/// A config with the audit log (key A) in `dir/state`, exported to `dir/audit.jsonl`.
fn config(dir: &Path, audit_extra: &str, rest: &str) -> PathBuf {
    let text = format!(
        r#"
[gateway]
state_dir = "{state}"
admin_token = "{ADMIN}"

[audit]
signing_key = "{seed}"
export = "{export}"
{audit_extra}

[servers.fx]
command = {fixture}
args = ["stdio"]

{rest}
"#,
        state = dir.join("state").display(),
        seed = b64(&SEED_A),
        export = dir.join("audit.jsonl").display(),
        fixture = fixture(),
    );
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `switchboard audit ARGS`; returns the exit code and stdout (stderr when it failed
/// to run).
fn audit_cli(args: &[&str]) -> (i32, String) {
    let output = std::process::Command::new(GATEWAY)
        .arg("audit")
        .args(args)
        .output()
        .expect("switchboard runs");
    let code = output.status.code().unwrap_or(-1);
    if code == 2 {
        return (code, String::from_utf8_lossy(&output.stderr).into_owned());
    }
    (code, String::from_utf8(output.stdout).unwrap())
}

/// `audit verify --json` of a state dir with key A trusted.
fn verify(state: &Path) -> Value {
    let (code, out) = audit_cli(&[
        "verify",
        "--state-dir",
        state.to_str().unwrap(),
        "--public-key",
        &public_a(),
        "--json",
    ]);
    let report: Value = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out}"));
    assert_eq!(code == 0, report["ok"] == true, "{report}");
    report
}

fn echo(text: &str) -> Value {
    json!({ "name": "fx__echo", "arguments": { "text": text } })
}

/// SIGTERM, then waits for the gateway to exit (it drains and flushes the log).
async fn stop(mut gateway: Proc) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(20), gateway.child.wait())
        .await
        .expect("the gateway exits on SIGTERM")
        .unwrap();
}

async fn admin_audit(gateway: &Proc, query: &str) -> Vec<Value> {
    let url = gateway
        .url
        .replace("/mcp", &format!("/admin/audit?{query}"));
    let body: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["records"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_executed_calls_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let access = format!(
        r#"
[access]

[[access.keys]]
id = "acme"
key = "{ACME_KEY}"
tenant = "acme"

[access.tenants.acme]
tools = {{ allow = ["fx__echo", "fx__add", "fx__test_error_handling"] }}

[[access.rules]]
when = "tool == 'fx__echo' && has(args.text) && args.text.startsWith('secret')"
message = "no secrets through echo"

[[access.limits]]
per = "principal"
tools = "fx__add"
requests = 2
period_ms = 3600000
"#
    );
    let path = config(dir.path(), "", &access);
    let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
    let acme = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ACME_KEY)]);

    assert_eq!(
        acme.request("tools/call", echo("hello")).await.result()["content"][0]["text"],
        "hello"
    );
    let denied = acme.request("tools/call", echo("secret plans")).await;
    assert_eq!(denied.error()["data"]["step"], "rules");
    // A tool the tenant may not see answers exactly like one that does not exist.
    let hidden = acme
        .request(
            "tools/call",
            json!({ "name": "fx__sleep", "arguments": { "ms": 1 } }),
        )
        .await;
    let missing = acme
        .request("tools/call", json!({ "name": "fx__nope", "arguments": {} }))
        .await;
    assert_eq!(hidden.error()["code"], missing.error()["code"]);
    assert_eq!(
        hidden.error()["message"]
            .as_str()
            .unwrap()
            .replace("fx__sleep", "X"),
        missing.error()["message"]
            .as_str()
            .unwrap()
            .replace("fx__nope", "X"),
    );
    for n in 0..3 {
        let added = acme
            .request(
                "tools/call",
                json!({ "name": "fx__add", "arguments": { "a": n, "b": 1 } }),
            )
            .await;
        assert_eq!(added.outcome.is_ok(), n < 2, "{added:?}");
    }
    let failing = acme
        .request(
            "tools/call",
            json!({ "name": "fx__test_error_handling", "arguments": {} }),
        )
        .await;
    assert_eq!(failing.result()["isError"], true);

    // `audit tail --follow` prints records as they are committed.
    let mut follow = tokio::process::Command::new(GATEWAY)
        .args(["audit", "tail", "--follow", "-n", "0", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut followed =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(follow.stdout.take().unwrap()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    acme.request("tools/call", echo("followed")).await.result();
    // Records of earlier calls still being committed when tail started may come first.
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = followed.next_line().await.unwrap().expect("tail runs");
            let line: Value = serde_json::from_str(&line).unwrap();
            if line["tool"] == "fx__echo" && line["decision"] == "allowed" {
                return line;
            }
        }
    })
    .await
    .expect("tail --follow prints the new record");
    assert_eq!(found["outcome"], "ok", "{found}");
    follow.kill().await.unwrap();

    // The records, through the admin API (newest first).
    let mut records = admin_audit(&gateway, "principal=key:acme&limit=100").await;
    records.reverse();
    let summary: Vec<(String, String, Value, Value, Value)> = records
        .iter()
        .map(|r| {
            (
                r["tool"].as_str().unwrap().to_owned(),
                r["decision"].as_str().unwrap().to_owned(),
                r["step"].clone(),
                r["rule"].clone(),
                r["outcome"].clone(),
            )
        })
        .collect();
    let expected = [
        ("fx__echo", "allowed", json!(null), json!(null), json!("ok")),
        (
            "fx__echo",
            "denied",
            json!("rules"),
            json!("access.rules[0]"),
            json!(null),
        ),
        (
            "fx__sleep",
            "denied",
            json!("allow"),
            json!("hidden"),
            json!(null),
        ),
        ("fx__nope", "unknown", json!(null), json!(null), json!(null)),
        ("fx__add", "allowed", json!(null), json!(null), json!("ok")),
        ("fx__add", "allowed", json!(null), json!(null), json!("ok")),
        (
            "fx__add",
            "rate_limited",
            json!("limits"),
            json!("access.limits[0]"),
            json!(null),
        ),
        (
            "fx__test_error_handling",
            "allowed",
            json!(null),
            json!(null),
            json!("tool_error"),
        ),
        ("fx__echo", "allowed", json!(null), json!(null), json!("ok")),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(t, d, s, r, o)| (t.to_owned(), d.to_owned(), s, r, o))
        .collect();
    assert_eq!(summary, expected);
    for record in &records {
        assert_eq!(record["tenant"], "acme");
        assert_eq!(record["face"], "http");
        assert_eq!(record["method"], "tools/call");
        assert!(
            record["args_sha256"].as_str().unwrap().len() == 64,
            "{record}"
        );
    }
    // Executed calls carry a result digest; refused ones the error the client got.
    assert_eq!(records[0]["result_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(records[1]["error"]["code"], -31007);
    assert!(records[1].get("result_sha256").is_none());
    // The hidden tool's record names its server; the client was never told.
    assert_eq!(records[2]["server"], "fx");
    // Raw arguments are not kept unless configured.
    assert!(records.iter().all(|r| r.get("args").is_none()));

    let denied = admin_audit(&gateway, "decision=denied").await;
    assert_eq!(denied.len(), 2);
    let limited = admin_audit(&gateway, "tool=fx__add&decision=rate_limited").await;
    assert_eq!(limited.len(), 1);
    assert_eq!(
        admin_audit(&gateway, "since=2999-01-01T00:00:00Z")
            .await
            .len(),
        0
    );
    assert_eq!(admin_audit(&gateway, "limit=2").await.len(), 2);

    // Verified while the gateway runs (a read-only handle beside the writer), trusting
    // the key the config names.
    let (code, out) = audit_cli(&["verify", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: 9 records verified"), "{out}");
    // Readers share the file; a second writer (another gateway on this state dir) does not.
    let second = std::process::Command::new(GATEWAY)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another switchboard"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    stop(gateway).await;
}

/// Edits the raw tables of a copy of `state`.
fn tampered(state: &Path, tamper: impl FnOnce(&redb::WriteTransaction)) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(state).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let db = switchboard_gateway::db::Db::open(Some(copy.path())).unwrap();
    let tx = db.database().begin_write().unwrap();
    tamper(&tx);
    tx.commit().unwrap();
    copy
}

fn line(tx: &redb::WriteTransaction, seq: u64) -> Vec<u8> {
    let table = tx.open_table(RECORDS).unwrap();
    table.get(seq).unwrap().unwrap().value().to_vec()
}

fn put(tx: &redb::WriteTransaction, seq: u64, line: &[u8]) {
    tx.open_table(RECORDS).unwrap().insert(seq, line).unwrap();
}

/// Re-seals records `from..=last` with key B, as someone with the file but not key A.
fn resign_with_b(tx: &redb::WriteTransaction, from: u64, last: u64) {
    let b = key(SEED_B);
    let mut prev = chain::open(&line(tx, from - 1)).unwrap().hash;
    for seq in from..=last {
        let original = line(tx, seq);
        let opened = chain::open(&original).unwrap();
        let text = String::from_utf8(original).unwrap();
        let body = format!("{}}}", &text[..text.find(",\"hash\":").unwrap()])
            .replace(
                &format!("\"prev\":\"{}\"", hex(&opened.prev)),
                &format!("\"prev\":\"{}\"", hex(&prev)),
            )
            .replace(
                &format!("\"key\":\"{}\"", opened.key),
                &format!("\"key\":\"{}\"", b.id()),
            );
        let (sealed, hash) = chain::seal(&b, body.as_bytes());
        put(tx, seq, &sealed);
        prev = hash;
    }
    let mut meta = tx.open_table(META).unwrap();
    let head = Anchor::sign(&b, AnchorKind::Head, last, &prev);
    meta.insert("head", head.to_bytes().as_slice()).unwrap();
    meta.insert(format!("key:{}", b.id()).as_str(), b.public().as_slice())
        .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_then_every_tampering_is_named_by_the_cli() {
    const WORKERS: u64 = 16;
    const CALLS: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "", "");
    let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let client = ModernHttp::new(&gateway.url);
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let call = next.fetch_add(1, Ordering::Relaxed);
                    if call >= CALLS {
                        return;
                    }
                    let exchange = client
                        .request("tools/call", echo(&format!("call {call}")))
                        .await;
                    assert_eq!(
                        exchange.result()["content"][0]["text"],
                        format!("call {call}")
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    stop(gateway).await;

    let state = dir.path().join("state");
    let report = verify(&state);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["verified"], CALLS, "{report}");
    assert_eq!(report["last"], CALLS, "{report}");
    // The export holds the same records, and verifies as written.
    let export = dir.path().join("audit.jsonl");
    let (code, out) = audit_cli(&[
        "verify",
        "--file",
        export.to_str().unwrap(),
        "--public-key",
        &public_a(),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("ok: {CALLS} records verified")),
        "{out}"
    );

    type Tamper = Box<dyn Fn(&redb::WriteTransaction)>;
    let cases: Vec<(&str, Tamper, u64, &str)> = vec![
        (
            "edit a field",
            Box::new(|tx| {
                let edited = String::from_utf8(line(tx, 4321))
                    .unwrap()
                    .replace("\"decision\":\"allowed\"", "\"decision\":\"denied\"");
                put(tx, 4321, edited.as_bytes());
            }),
            4321,
            "edited",
        ),
        (
            "delete one",
            Box::new(|tx| {
                tx.open_table(RECORDS).unwrap().remove(5000).unwrap();
            }),
            5000,
            "missing",
        ),
        (
            "swap two",
            Box::new(|tx| {
                let (first, second) = (line(tx, 100), line(tx, 200));
                put(tx, 100, &second);
                put(tx, 200, &first);
            }),
            100,
            "reordered",
        ),
        (
            "truncate the tail",
            Box::new(|tx| {
                let mut table = tx.open_table(RECORDS).unwrap();
                for seq in 9990..=CALLS {
                    table.remove(seq).unwrap();
                }
            }),
            9990,
            "truncated",
        ),
        (
            "re-sign with another key",
            Box::new(|tx| resign_with_b(tx, 7000, CALLS)),
            7000,
            "untrusted key",
        ),
    ];
    for (what, tamper, seq, says) in cases {
        let copy = tampered(&state, |tx| tamper(tx));
        let report = verify(copy.path());
        assert_eq!(report["ok"], false, "{what}: {report}");
        assert_eq!(report["first_bad_seq"], seq, "{what}: {report}");
        assert!(
            report["problem"].as_str().unwrap().contains(says),
            "{what}: {report}"
        );
        assert_eq!(report["verified"], seq - 1, "{what}: {report}");
    }

    // An edited export is caught too, at the line's seq.
    let text = std::fs::read_to_string(&export).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[2999] = lines[2999].replace("\"outcome\":\"ok\"", "\"outcome\":\"timeout\"");
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(&edited, lines.join("\n")).unwrap();
    let (code, out) = audit_cli(&[
        "verify",
        "--file",
        edited.to_str().unwrap(),
        "--public-key",
        &public_a(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("BROKEN at seq 3000"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_write_leaves_a_log_that_verifies_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "", "");
    let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
    let stop_calls = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let client = ModernHttp::new(&gateway.url);
            let (stop_calls, answered) = (stop_calls.clone(), answered.clone());
            tokio::spawn(async move {
                let mut call = 0;
                while !stop_calls.load(Ordering::Relaxed) {
                    call += 1;
                    let exchange = client
                        .request("tools/call", echo(&format!("{worker}-{call}")))
                        .await;
                    if exchange.outcome.is_ok() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Calls are being answered (and their records written) when the gateway dies.
    let state = dir.path().join("state");
    tokio::time::timeout(Duration::from_secs(30), async {
        while answered.load(Ordering::Relaxed) < 500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("calls are answered");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gateway.pid() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    stop_calls.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    drop(gateway);

    let report = verify(&state);
    assert_eq!(report["ok"], true, "{report}");
    let verified = report["verified"].as_u64().unwrap();
    assert!(verified > 0, "{report}");
    // Records are written after their calls answer, in batches: the last batch may be
    // lost with the process, never more than the calls that were made.
    let made = answered.load(Ordering::Relaxed) + 8;
    assert!(verified <= made, "{verified} records for {made} calls");
    // The export never runs ahead of the log.
    let exported = std::fs::read_to_string(dir.path().join("audit.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert!(
        exported <= verified,
        "{exported} exported, {verified} committed"
    );

    // A new gateway on the same state dir chains on from the last committed record.
    let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
    ModernHttp::new(&gateway.url)
        .request("tools/call", echo("after the crash"))
        .await
        .result();
    stop(gateway).await;
    let report = verify(&state);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["verified"].as_u64().unwrap(),
        verified + 1,
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_calls_are_audited_too_and_sync_answers_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "sync = true\nrecord_arguments = true", "");
    // The export goes to a file: stdout is the MCP channel here.
    let client = Stdio::spawn(GATEWAY, &path, false).await.unwrap();
    client
        .request("tools/call", echo("over stdio"))
        .await
        .result();
    // With `sync`, the record was committed before the answer: readable right away.
    let (code, out) = audit_cli(&[
        "tail",
        "-n",
        "1",
        "--state-dir",
        dir.path().join("state").to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let record: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(record["face"], "stdio");
    assert_eq!(record["outcome"], "ok");
    assert_eq!(record["args"], json!({ "text": "over stdio" }));
    client.close_stdin().await;
    assert!(client.wait(Duration::from_secs(20)).await);
    assert_eq!(verify(&dir.path().join("state"))["verified"], 1);

    // An export to stdout cannot share the stdio face's stdout.
    let path = config(dir.path(), "", "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("export = \"{}\"", dir.path().join("audit.jsonl").display()),
        "export = \"stdout\"",
    );
    std::fs::write(&path, text).unwrap();
    let output = std::process::Command::new(GATEWAY)
        .args(["stdio", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("stdout"));
}
