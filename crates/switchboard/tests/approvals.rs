//! Approval gates end to end, through the real gateway binary and the fixture server
//! (whose `stats` tool counts the tool calls it executed): approve, deny, expire, replay,
//! arguments changed after approval and another principal presenting the approval — in
//! band on both faces and eras (modern: `input_required` and its retry; legacy:
//! `elicitation/create` during the call), and out of band through the admin API (the
//! call's wait, its id in the error, the retry with the id); nothing runs upstream before
//! approval; the audit log records requests, decisions (by whom) and expiries.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{
    LegacyHttp, ModernHttp, Proc, Stdio, binary_beside, spawn_gateway_http_at,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN: &str = "admin-token-0123456789";
const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";
const META_KEY: &str = "dev.switchboard/approval";
const INPUT_KEY: &str = "switchboard_approval";

fn fixture() -> String {
    format!(
        "{:?}",
        binary_beside(GATEWAY, "switchboard-fixture")
            .display()
            .to_string()
    )
}

/// `fx__add` needs the caller's approval (in band when the client can), `fx__echo` an
/// administrator's (out of band); everything else runs freely.
fn config(dir: &Path, wait_ms: u64, expiry_ms: u64) -> PathBuf {
    let text = format!(
        r#"
[gateway]
state_dir = "{state}"
admin_token = "{ADMIN}"

[access]
anonymous = false

[[access.keys]]
id = "alice"
key = "{ALICE}"

[[access.keys]]
id = "bob"
key = "{BOB}"

[audit]
signing_key = "{seed}"

[approvals]
wait_ms = {wait_ms}
expiry_ms = {expiry_ms}

[[approvals.rules]]
tools = "fx__add"

[[approvals.rules]]
tools = "fx__echo"
approver = "admin"

[servers.fx]
command = {fixture}
args = ["stdio"]
"#,
        state = dir.join("state").display(),
        seed = "11".repeat(32),
        fixture = fixture(),
    );
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn add(a: i64, b: i64) -> Value {
    json!({ "name": "fx__add", "arguments": { "a": a, "b": b } })
}

fn echo(text: &str) -> Value {
    json!({ "name": "fx__echo", "arguments": { "text": text } })
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// Stats calls made so far (the fixture counts them too).
static STATS_CALLS: std::sync::Mutex<Vec<(String, u64)>> = std::sync::Mutex::new(Vec::new());

/// Counts a `stats` call to the fixture behind `url` and returns how many it made so far.
fn stats_made(url: &str) -> u64 {
    let mut made = STATS_CALLS.lock().unwrap();
    match made.iter_mut().find(|(known, _)| known == url) {
        Some((_, count)) => {
            *count += 1;
            *count
        }
        None => {
            made.push((url.to_owned(), 1));
            1
        }
    }
}

/// The fixture's count of executed tool calls, not counting the `stats` calls.
async fn executed(client: &ModernHttp) -> u64 {
    let stats = client
        .request("tools/call", json!({ "name": "fx__stats" }))
        .await;
    let calls = stats.result()["structuredContent"]["calls"]
        .as_u64()
        .unwrap_or_else(|| panic!("{:?}", stats.outcome));
    calls - stats_made(&client.url)
}

/// A modern retry of `params` answering the approval's input request with `answer`.
fn retry(params: &Value, state: &Value, answer: Value) -> Value {
    let mut params = params.clone();
    params["requestState"] = state.clone();
    params["inputResponses"] = json!({ INPUT_KEY: answer });
    params
}

fn with_approval(params: &Value, id: &str) -> Value {
    let mut params = params.clone();
    params["_meta"] = json!({ META_KEY: id });
    params
}

fn accept() -> Value {
    json!({ "action": "accept", "content": { "approve": true } })
}

fn status(error: &Value) -> &str {
    assert_eq!(error["data"]["step"], "approval", "{error}");
    error["data"]["status"].as_str().unwrap_or_default()
}

async fn admin(
    gateway: &Proc,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = gateway.url.replace("/mcp", path);
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

async fn pending(gateway: &Proc) -> Vec<Value> {
    let (code, body) = admin(gateway, reqwest::Method::GET, "/admin/approvals", None).await;
    assert_eq!(code, 200, "{body}");
    body["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "pending")
        .cloned()
        .collect()
}

async fn audit(gateway: &Proc, query: &str) -> Vec<Value> {
    let (code, body) = admin(
        gateway,
        reqwest::Method::GET,
        &format!("/admin/audit?{query}"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["records"].as_array().unwrap().clone()
}

/// Audit records are written behind the calls: waits until `query` finds `n`.
async fn audited(gateway: &Proc, query: &str, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let records = audit(gateway, query).await;
        if records.len() >= n {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} audit records for {query}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_http_in_band_approve_deny_replay_changed_arguments_another_principal() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path(), 30_000, 60_000), &[])
        .await
        .unwrap();
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let bob = ModernHttp::with_headers(&gateway.url, &[("x-api-key", BOB)]);
    let before = executed(&alice).await;

    // The call asks its user: an elicitation form naming server, tool and arguments.
    let asked = alice.raw_request("tools/call", add(2, 3)).await;
    let asked = asked.result();
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    let request = &asked["inputRequests"][INPUT_KEY];
    assert_eq!(request["method"], "elicitation/create");
    let message = request["params"]["message"].as_str().unwrap();
    for shown in ["server: fx", "tool: fx__add", "\"a\": 2", "\"b\": 3"] {
        assert!(message.contains(shown), "{message}");
    }
    assert_eq!(
        request["params"]["requestedSchema"]["properties"]["approve"]["type"],
        "boolean"
    );
    let state = asked["requestState"].clone();
    assert_eq!(
        executed(&alice).await,
        before,
        "nothing ran before approval"
    );

    // Changed arguments, or another principal, do not use it (and leave it pending).
    let changed = alice
        .raw_request("tools/call", retry(&add(2, 4), &state, accept()))
        .await;
    assert_eq!(status(changed.error()), "mismatch");
    assert!(
        changed.error()["message"]
            .as_str()
            .unwrap()
            .contains("arguments"),
        "{:?}",
        changed.error()
    );
    let stolen = bob
        .raw_request("tools/call", retry(&add(2, 3), &state, accept()))
        .await;
    assert_eq!(status(stolen.error()), "mismatch");
    assert_eq!(
        executed(&alice).await,
        before,
        "nothing ran before approval"
    );

    // The user approves: the call runs, once.
    let approved = alice
        .raw_request("tools/call", retry(&add(2, 3), &state, accept()))
        .await;
    assert_eq!(text(approved.result()), "5", "{:?}", approved.outcome);
    assert_eq!(executed(&alice).await, before + 1);
    let replay = alice
        .raw_request("tools/call", retry(&add(2, 3), &state, accept()))
        .await;
    assert_eq!(status(replay.error()), "used");
    assert_eq!(executed(&alice).await, before + 1, "a replay runs nothing");

    // Declined (or approve: false): refused, nothing runs.
    for answer in [
        json!({ "action": "decline" }),
        json!({ "action": "cancel" }),
        json!({ "action": "accept", "content": { "approve": false } }),
    ] {
        let asked = alice.raw_request("tools/call", add(7, 7)).await;
        let state = asked.result()["requestState"].clone();
        let denied = alice
            .raw_request("tools/call", retry(&add(7, 7), &state, answer))
            .await;
        assert_eq!(status(denied.error()), "denied");
        assert!(
            denied.error()["message"]
                .as_str()
                .unwrap()
                .contains("denied by key:alice")
        );
    }
    assert_eq!(executed(&alice).await, before + 1);

    // A tool no rule names runs at once.
    let free = alice
        .request("tools/call", json!({ "name": "fx__test_simple_text" }))
        .await;
    assert!(free.result()["content"].is_array());

    // The audit log has the requests (pending), the caller's decisions and the refusals.
    let approved = audited(&gateway, "decision=approved", 1).await;
    assert_eq!(approved[0]["by"], "key:alice");
    assert_eq!(approved[0]["outcome"], "ok");
    assert!(audited(&gateway, "decision=pending", 5).await.len() >= 5);
    assert!(audited(&gateway, "decision=denied_by", 3).await.len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_http_in_band_through_elicitation_create() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path(), 30_000, 60_000), &[])
        .await
        .unwrap();
    let counter = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let alice = LegacyHttp::connect_with(&gateway.url, &[("x-api-key", ALICE)])
        .await
        .unwrap();
    let before = executed(&counter).await;

    // The testkit client accepts elicitations: the call goes through in one request.
    let approved = alice.request("tools/call", add(20, 22)).await;
    assert_eq!(text(approved.result()), "42", "{:?}", approved.outcome);
    assert_eq!(executed(&counter).await, before + 1);

    // Declined: refused with the approval's id, which a retry cannot use either.
    alice.set_answer("elicitation/create", json!({ "action": "decline" }));
    let denied = alice.request("tools/call", add(1, 1)).await;
    assert_eq!(status(denied.error()), "denied");
    let id = denied.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    let retried = alice
        .request("tools/call", with_approval(&add(1, 1), &id))
        .await;
    assert_eq!(status(retried.error()), "denied");
    assert_eq!(
        executed(&counter).await,
        before + 1,
        "nothing ran after a denial"
    );
    let denied_by = audited(&gateway, "decision=denied_by", 1).await;
    assert_eq!(denied_by[0]["by"], "key:alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_through_the_admin_api_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path(), 200, 60_000), &[])
        .await
        .unwrap();
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let bob = ModernHttp::with_headers(&gateway.url, &[("x-api-key", BOB)]);
    let alice_legacy = LegacyHttp::connect_with(&gateway.url, &[("x-api-key", ALICE)])
        .await
        .unwrap();
    let before = executed(&alice).await;

    // The wait runs out: the error carries the approval's id; it is pending in /admin.
    let waited = alice.request("tools/call", echo("ship it")).await;
    let error = waited.error();
    assert_eq!(status(error), "pending");
    assert_eq!(error["data"]["retryable"], true);
    let id = error["data"]["approval"].as_str().unwrap().to_owned();
    assert_eq!(error["data"]["retryWith"]["_meta"][META_KEY], id.as_str());
    let listed = pending(&gateway).await;
    let entry = listed.iter().find(|a| a["id"] == id.as_str()).unwrap();
    assert_eq!(entry["tool"], "fx__echo");
    assert_eq!(entry["server"], "fx");
    assert_eq!(entry["principal"], "key:alice");
    assert_eq!(entry["arguments"], json!({ "text": "ship it" }));
    assert_eq!(entry["channel"], "admin");
    // Still pending: a retry with the id is told so, and nothing ran.
    let early = alice
        .request("tools/call", with_approval(&echo("ship it"), &id))
        .await;
    assert_eq!(status(early.error()), "pending");
    assert_eq!(executed(&alice).await, before);

    let (code, body) = admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["approval"]["by"], "admin_token");
    let (code, _) = admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{id}/deny"),
        None,
    )
    .await;
    assert_eq!(code, 409, "decided once");

    // Another principal, or other arguments, cannot use it; the caller can, once.
    let stolen = bob
        .request("tools/call", with_approval(&echo("ship it"), &id))
        .await;
    assert_eq!(status(stolen.error()), "mismatch");
    let changed = alice
        .request("tools/call", with_approval(&echo("ship it all"), &id))
        .await;
    assert_eq!(status(changed.error()), "mismatch");
    assert_eq!(executed(&alice).await, before);
    let used = alice
        .request("tools/call", with_approval(&echo("ship it"), &id))
        .await;
    assert_eq!(text(used.result()), "ship it");
    assert_eq!(executed(&alice).await, before + 1);
    let replay = alice
        .request("tools/call", with_approval(&echo("ship it"), &id))
        .await;
    assert_eq!(status(replay.error()), "used");
    assert_eq!(executed(&alice).await, before + 1);

    // Legacy session, denied with a reason.
    let waited = alice_legacy.request("tools/call", echo("drop it")).await;
    assert_eq!(status(waited.error()), "pending");
    let id = waited.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, body) = admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{id}/deny"),
        Some(json!({ "reason": "not on a Friday" })),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let denied = alice_legacy
        .request("tools/call", with_approval(&echo("drop it"), &id))
        .await;
    assert_eq!(status(denied.error()), "denied");
    assert!(
        denied.error()["message"]
            .as_str()
            .unwrap()
            .contains("not on a Friday"),
        "{:?}",
        denied.error()
    );
    // Legacy session, approved: its retry goes through.
    let waited = alice_legacy.request("tools/call", echo("legacy")).await;
    let id = waited.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{id}/approve"),
        None,
    )
    .await;
    let used = alice_legacy
        .request("tools/call", with_approval(&echo("legacy"), &id))
        .await;
    assert_eq!(text(used.result()), "legacy");
    assert_eq!(executed(&alice).await, before + 2);

    let (code, _) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/approvals/nope/approve",
        None,
    )
    .await;
    assert_eq!(code, 404);

    // Requests, administrators' decisions (by whom) and refusals are audited.
    let approved = audited(&gateway, "decision=approved", 3).await;
    assert!(
        approved
            .iter()
            .any(|r| r["by"] == "admin_token" && r.get("outcome").is_none())
    );
    assert!(approved.iter().any(|r| r["outcome"] == "ok"));
    let denied = audited(&gateway, "decision=denied_by", 2).await;
    assert!(denied.iter().any(|r| r["reason"] == "not on a Friday"));
    assert!(audited(&gateway, "decision=pending", 3).await.len() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_call_goes_on_when_an_administrator_approves() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path(), 30_000, 60_000), &[])
        .await
        .unwrap();
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let before = executed(&alice).await;
    let url = gateway.url.clone();
    let call = tokio::spawn(async move {
        let alice = ModernHttp::with_headers(&url, &[("x-api-key", ALICE)]);
        alice.request("tools/call", echo("waited")).await
    });
    let id = loop {
        if let Some(entry) = pending(&gateway).await.first() {
            break entry["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        executed(&alice).await,
        before,
        "nothing runs while it waits"
    );
    let (code, _) = admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let answered = call.await.unwrap();
    assert_eq!(text(answered.result()), "waited");
    assert_eq!(executed(&alice).await, before + 1);
    // The approval was used by the waiting call: a retry with its id is a replay.
    let replay = alice
        .request("tools/call", with_approval(&echo("waited"), &id))
        .await;
    assert_eq!(status(replay.error()), "used");

    // Denied while waiting: the call is refused at once.
    let url = gateway.url.clone();
    let call = tokio::spawn(async move {
        let alice = ModernHttp::with_headers(&url, &[("x-api-key", ALICE)]);
        alice.request("tools/call", echo("never")).await
    });
    let id = loop {
        if let Some(entry) = pending(&gateway).await.first() {
            break entry["id"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{id}/deny"),
        None,
    )
    .await;
    assert_eq!(status(call.await.unwrap().error()), "denied");
    assert_eq!(executed(&alice).await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_approvals_are_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config(dir.path(), 0, 1500), &[])
        .await
        .unwrap();
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let before = executed(&alice).await;
    // Out of band, never decided; in band, never answered; out of band, approved late.
    let waited = alice.request("tools/call", echo("late")).await;
    let late = waited.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    let asked = alice.raw_request("tools/call", add(1, 2)).await;
    let state = asked.result()["requestState"].clone();
    let waited = alice.request("tools/call", echo("granted")).await;
    let granted = waited.error()["data"]["approval"]
        .as_str()
        .unwrap()
        .to_owned();
    admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{granted}/approve"),
        None,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1700)).await;

    let (code, _) = admin(
        &gateway,
        reqwest::Method::POST,
        &format!("/admin/approvals/{late}/approve"),
        None,
    )
    .await;
    assert_eq!(code, 410, "too late to approve");
    let expired = alice
        .request("tools/call", with_approval(&echo("late"), &late))
        .await;
    assert_eq!(status(expired.error()), "expired");
    let expired = alice
        .raw_request("tools/call", retry(&add(1, 2), &state, accept()))
        .await;
    assert_eq!(status(expired.error()), "expired");
    let expired = alice
        .request("tools/call", with_approval(&echo("granted"), &granted))
        .await;
    assert_eq!(status(expired.error()), "expired");
    assert_eq!(executed(&alice).await, before, "nothing expired ever ran");
    let records = audited(&gateway, "decision=expired", 3).await;
    for id in [&late, &granted] {
        assert!(
            records.iter().any(|r| r["approval"] == id.as_str()),
            "{records:?}"
        );
    }
}

/// [`executed`] for a stdio client (`made`: its stats calls so far).
async fn count(client: &Stdio, made: &mut u64) -> u64 {
    let stats = client
        .request("tools/call", json!({ "name": "fx__stats" }))
        .await;
    *made += 1;
    stats.result()["structuredContent"]["calls"]
        .as_u64()
        .unwrap()
        - *made
}

/// The stdio face: legacy (elicitation/create) and modern (input_required) in band.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_in_band_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 30_000, 60_000);
    let legacy = Stdio::spawn(GATEWAY, &path, false).await.unwrap();
    let mut made = 0;
    let before = count(&legacy, &mut made).await;
    let approved = legacy.request("tools/call", add(4, 5)).await;
    assert_eq!(text(approved.result()), "9", "{:?}", approved.outcome);
    assert_eq!(count(&legacy, &mut made).await, before + 1);
    legacy.set_answer("elicitation/create", json!({ "action": "cancel" }));
    let denied = legacy.request("tools/call", add(4, 6)).await;
    assert_eq!(status(denied.error()), "denied");
    assert_eq!(count(&legacy, &mut made).await, before + 1);
    drop(legacy);

    // The database belongs to one gateway at a time: the modern client gets a new one.
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 30_000, 60_000);
    let modern = Stdio::spawn(GATEWAY, &path, true).await.unwrap();
    let mut made = 0;
    let before = count(&modern, &mut made).await;
    let asked = modern
        .request_with_id(modern.next_id(), "tools/call", add(3, 3))
        .await;
    assert_eq!(asked.result()["resultType"], "input_required");
    let state = asked.result()["requestState"].clone();
    assert_eq!(
        count(&modern, &mut made).await,
        before,
        "nothing ran before approval"
    );
    let changed = modern
        .request_with_id(
            modern.next_id(),
            "tools/call",
            retry(&add(3, 4), &state, accept()),
        )
        .await;
    assert_eq!(status(changed.error()), "mismatch");
    let approved = modern
        .request_with_id(
            modern.next_id(),
            "tools/call",
            retry(&add(3, 3), &state, accept()),
        )
        .await;
    assert_eq!(text(approved.result()), "6", "{:?}", approved.outcome);
    let replay = modern
        .request_with_id(
            modern.next_id(),
            "tools/call",
            retry(&add(3, 3), &state, accept()),
        )
        .await;
    assert_eq!(status(replay.error()), "used");
    let asked = modern
        .request_with_id(modern.next_id(), "tools/call", add(8, 8))
        .await;
    let state = asked.result()["requestState"].clone();
    let denied = modern
        .request_with_id(
            modern.next_id(),
            "tools/call",
            retry(&add(8, 8), &state, json!({ "action": "decline" })),
        )
        .await;
    assert_eq!(status(denied.error()), "denied");
    assert_eq!(count(&modern, &mut made).await, before + 1);
}

/// An approved call whose upstream asks for input (MRTR) is continued without a new
/// approval; the retry of a call nobody approved is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_call_continues_through_its_upstreams_input_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), 30_000, 60_000);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[[approvals.rules]]\ntools = \"fx__add\"",
        "[[approvals.rules]]\ntools = \"fx__add\"\n\n[[approvals.rules]]\ntools = \"fx__test_input_required_result_*\"",
    );
    std::fs::write(&path, text).unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let params = json!({ "name": "fx__test_input_required_result_elicitation", "arguments": {} });
    // Round 1: the gateway's approval; round 2: the upstream's own elicitation.
    let asked = alice.raw_request("tools/call", params.clone()).await;
    let state = asked.result()["requestState"].clone();
    assert!(asked.result()["inputRequests"][INPUT_KEY].is_object());
    let upstream = alice
        .raw_request("tools/call", retry(&params, &state, accept()))
        .await;
    let upstream = upstream.result();
    assert_eq!(upstream["resultType"], "input_required", "{upstream}");
    assert!(
        upstream["inputRequests"].get(INPUT_KEY).is_none(),
        "{upstream}"
    );
    let mut answers = serde_json::Map::new();
    for key in upstream["inputRequests"].as_object().unwrap().keys() {
        answers.insert(
            key.clone(),
            json!({ "action": "accept", "content": { "ok": true, "username": "u", "name": "n", "email": "e@example.com" } }),
        );
    }
    let mut continued = params.clone();
    continued["requestState"] = upstream["requestState"].clone();
    continued["inputResponses"] = Value::Object(answers.clone());
    // Another principal cannot continue it (the bridge's state is alice's, and the grant too).
    let bob = ModernHttp::with_headers(&gateway.url, &[("x-api-key", BOB)]);
    let stolen = bob.raw_request("tools/call", continued.clone()).await;
    assert!(
        stolen.result()["inputRequests"][INPUT_KEY].is_object(),
        "bob is asked for his own approval: {:?}",
        stolen.outcome
    );
    let done = alice.raw_request("tools/call", continued.clone()).await;
    let done = done.result();
    assert_ne!(done["resultType"], "input_required", "{done}");
    assert!(done["content"].is_array(), "{done}");
    // The grant is single-use: presenting the same state again asks for approval anew.
    let again = alice.raw_request("tools/call", continued).await;
    assert!(
        again.result()["inputRequests"][INPUT_KEY].is_object(),
        "{:?}",
        again.outcome
    );
    let (_, body) = admin(&gateway, reqwest::Method::GET, "/admin/approvals", None).await;
    let used = body["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "used")
        .count();
    assert_eq!(used, 1, "{body}");
}

/// A webhook listener: hands each POST's JSON body to the channel, answering 200 — or
/// never answering (`hang`).
async fn webhook(hang: bool) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                let mut buffer = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    bytes.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = text[..end]
                        .lines()
                        .find_map(|line| {
                            let (name, value) = line.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if bytes.len() < end + 4 + length {
                        continue;
                    }
                    let body: Value =
                        serde_json::from_slice(&bytes[end + 4..end + 4 + length]).unwrap();
                    let _ = tx.send(body);
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (url, rx)
}

/// A modern request whose client declares no elicitation capability.
async fn without_elicitation(client: &ModernHttp, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let response = client
        .builder(Some(1), "tools/call", &params)
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

/// A client that can ask nobody gets the out-of-band path even where its user approves;
/// new approvals are announced to the webhook, and one that never answers holds no call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_band_for_clients_without_elicitation_announced_to_the_webhook() {
    for hang in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (url, mut announced) = webhook(hang).await;
        let path = config(dir.path(), 200, 60_000);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "[approvals]\n",
            &format!("[approvals]\nwebhook = \"{url}\"\nwebhook_timeout_ms = 500\n"),
        );
        std::fs::write(&path, text).unwrap();
        let gateway = spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap();
        let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
        let before = executed(&alice).await;
        for round in 0..3 {
            let answer = without_elicitation(&alice, add(round, 1)).await;
            let error = &answer["error"];
            assert_eq!(status(error), "pending", "{answer}");
            let id = error["data"]["approval"].as_str().unwrap();
            let body = tokio::time::timeout(Duration::from_secs(10), announced.recv())
                .await
                .expect("announced")
                .unwrap();
            assert_eq!(body["event"], "approval.pending");
            assert_eq!(body["id"], id);
            assert_eq!(body["tool"], "fx__add");
            assert_eq!(body["channel"], "admin");
            assert_eq!(body["arguments"], json!({ "a": round, "b": 1 }));
        }
        assert_eq!(pending(&gateway).await.len(), 3);
        assert_eq!(executed(&alice).await, before);
    }
}
