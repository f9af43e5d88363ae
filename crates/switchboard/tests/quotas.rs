//! Daily call budgets and concurrency caps (`[[access.budgets]]`, `[[access.concurrency]]`)
//! end to end, through the real gateway binary and the fixture server: a budget is exact
//! at its boundary and still spent after a restart on the same `state_dir` (a clean stop
//! with write-behind, and `kill -9` with `budget_flush_ms = 0`) and after a reload that
//! changes it; a tenant's
//! cap admits N calls in flight, refuses the next, and admits again once calls end —
//! also when a client abandons its call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, Proc, binary_beside, replace_file, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";

fn config(state_dir: &std::path::Path, access: &str) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    format!(
        r#"
[gateway]
state_dir = {state_dir:?}

[access]
{access}

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "acme-ops"
key = "acme-ops-0123456789"
tenant = "acme"

[[access.keys]]
id = "globex-ci"
key = "{GLOBEX_KEY}"
tenant = "globex"

[servers.fx]
command = {fixture:?}
args = ["stdio"]
"#,
        state_dir = state_dir.display().to_string(),
        fixture = fixture.display().to_string(),
    )
}

fn client(gateway: &Proc, key: &str) -> ModernHttp {
    ModernHttp::with_headers(&gateway.url, &[("x-api-key", key)])
}

fn echo() -> Value {
    json!({ "name": "fx__echo", "arguments": { "text": "hi" } })
}

fn sleep(ms: u64) -> Value {
    json!({ "name": "fx__sleep", "arguments": { "ms": ms } })
}

/// Seconds until the next UTC midnight.
fn until_midnight() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    86_400 - now % 86_400
}

async fn metrics(gateway: &Proc) -> String {
    reqwest::get(gateway.url.replace("/mcp", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// SIGTERM, then waits for the gateway to exit (it drains and writes what it owes).
async fn stop(mut gateway: Proc) {
    kill(Pid::from_raw(gateway.pid() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), gateway.child.wait())
        .await
        .expect("the gateway exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

fn assert_budget_refusal(error: &Value) {
    assert_eq!(error["code"], -31007, "{error}");
    assert_eq!(error["data"]["step"], "budgets", "{error}");
    let retry_after = error["data"]["retryAfter"].as_u64().unwrap();
    let expected = until_midnight();
    assert!(
        retry_after <= expected + 1 && retry_after + 60 >= expected,
        "retryAfter {retry_after} s, expected about {expected} s (until UTC midnight)"
    );
    assert!(error["data"]["retryAfterMs"].as_u64().unwrap() >= (retry_after - 1) * 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_budget_is_exact_and_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    // Written every 10 s: within this test only the write at shutdown can save the count.
    let text = config(
        state.path(),
        r#"
budget_flush_ms = 10000

[[access.budgets]]
per = "tenant"
tools = "fx__echo"
calls = 3
"#,
    );
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    let (acme, acme_ops, globex) = (
        client(&gateway, ACME_KEY),
        client(&gateway, "acme-ops-0123456789"),
        client(&gateway, GLOBEX_KEY),
    );
    // Three calls for tenant acme, from two of its principals.
    for caller in [&acme, &acme_ops, &acme] {
        let call = caller.request("tools/call", echo()).await;
        assert!(call.outcome.is_ok(), "{:?}", call.outcome);
    }
    let refused = acme_ops.request("tools/call", echo()).await;
    assert_budget_refusal(refused.error());
    // Other tools, and other tenants, are not counted.
    let add = json!({ "name": "fx__add", "arguments": { "a": 1, "b": 2 } });
    assert!(acme.request("tools/call", add).await.outcome.is_ok());
    assert!(globex.request("tools/call", echo()).await.outcome.is_ok());
    let text_metrics = metrics(&gateway).await;
    assert!(
        text_metrics.contains("switchboard_access_refusals_total{step=\"budgets\"} 1"),
        "{text_metrics}"
    );

    // A clean stop, then a new gateway on the same state_dir: the day's budget is spent.
    stop(gateway).await;
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    let refused = client(&gateway, ACME_KEY)
        .request("tools/call", echo())
        .await;
    assert_budget_refusal(refused.error());
    let globex = client(&gateway, GLOBEX_KEY);
    assert!(globex.request("tools/call", echo()).await.outcome.is_ok());
    assert!(globex.request("tools/call", echo()).await.outcome.is_ok());
    assert_budget_refusal(globex.request("tools/call", echo()).await.error());

    // A reload that raises the budget to 5 keeps the day's count: acme has 2 calls left.
    let acme = client(&gateway, ACME_KEY);
    replace_file(
        gateway.config.as_ref().unwrap(),
        &text.replace("calls = 3", "calls = 5"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acme.request("tools/call", echo()).await.outcome.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "never reloaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(acme.request("tools/call", echo()).await.outcome.is_ok());
    assert_budget_refusal(acme.request("tools/call", echo()).await.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_commit_per_call_the_budget_survives_kill_9() {
    let state = tempfile::tempdir().unwrap();
    let text = config(
        state.path(),
        r#"
budget_flush_ms = 0

[[access.budgets]]
per = "principal"
calls = 2
"#,
    );
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    let acme = client(&gateway, ACME_KEY);
    for _ in 0..2 {
        let call = acme.request("tools/call", echo()).await;
        assert!(call.outcome.is_ok(), "{:?}", call.outcome);
    }
    assert_budget_refusal(acme.request("tools/call", echo()).await.error());
    // SIGKILL the moment the calls were answered: nothing is written after this.
    drop(gateway);
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    assert_budget_refusal(
        client(&gateway, ACME_KEY)
            .request("tools/call", echo())
            .await
            .error(),
    );
    // Another principal of the same tenant has its own budget.
    let other = client(&gateway, "acme-ops-0123456789");
    assert!(other.request("tools/call", echo()).await.outcome.is_ok());
}

/// Waits until `n` calls are in flight to the fixture (`/metrics`), so that a probe does
/// not race the calls it should find there.
async fn until_in_flight(gateway: &Proc, n: u64) {
    let line = format!("switchboard_inflight_calls{{server=\"fx\"}} {n}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !metrics(gateway).await.lines().any(|l| l == line) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {n} in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `fx__echo` until the cap refuses it; returns the refusal.
async fn until_refused(caller: &ModernHttp) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let call = caller.request("tools/call", echo()).await;
        if let Err(error) = call.outcome {
            return error;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cap never filled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `fx__echo` until the cap admits it again.
async fn until_admitted(caller: &ModernHttp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let call = caller.request("tools/call", echo()).await;
        if call.outcome.is_ok() {
            return;
        }
        assert_eq!(call.error()["data"]["step"], "concurrency");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_cap_admits_n_in_flight_and_frees_slots_however_calls_end() {
    let state = tempfile::tempdir().unwrap();
    let text = config(
        state.path(),
        r#"
[[access.concurrency]]
per = "tenant"
servers = "fx"
max = 2
"#,
    );
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    let url = gateway.url.clone();
    let acme = client(&gateway, ACME_KEY);

    // Two slow calls of tenant acme (from two principals) fill its cap.
    let slow = |key: &'static str, ms: u64| {
        let url = url.clone();
        tokio::spawn(async move {
            ModernHttp::with_headers(&url, &[("x-api-key", key)])
                .request("tools/call", sleep(ms))
                .await
        })
    };
    let first = slow(ACME_KEY, 4_000);
    let second = slow("acme-ops-0123456789", 4_000);
    until_in_flight(&gateway, 2).await;
    let refused = until_refused(&acme).await;
    assert_eq!(refused["code"], -31007, "{refused}");
    assert_eq!(refused["data"]["step"], "concurrency", "{refused}");
    assert_eq!(refused["data"]["retryable"], true, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("at most 2 calls in flight per tenant"),
        "{refused}"
    );
    // Another tenant is not held back by acme's calls.
    let globex = client(&gateway, GLOBEX_KEY);
    assert!(globex.request("tools/call", echo()).await.outcome.is_ok());
    // Both slow calls finish normally; then acme is admitted again.
    for call in [first, second] {
        let exchange = call.await.unwrap();
        assert!(exchange.outcome.is_ok(), "{:?}", exchange.outcome);
    }
    assert!(acme.request("tools/call", echo()).await.outcome.is_ok());

    // A call whose client goes away mid-call gives its slot back at once: long before
    // its 60 s sleep would have ended (`until_admitted` gives up after 20 s).
    let abandoned = slow(ACME_KEY, 60_000);
    let other = slow("acme-ops-0123456789", 60_000);
    until_in_flight(&gateway, 2).await;
    until_refused(&acme).await;
    abandoned.abort();
    let _ = abandoned.await;
    until_admitted(&acme).await;
    other.abort();
    let text_metrics = metrics(&gateway).await;
    assert!(
        text_metrics.contains("switchboard_access_refusals_total{step=\"concurrency\"}"),
        "{text_metrics}"
    );
}
