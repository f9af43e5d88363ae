//! Failover groups (`group = "NAME"`): two real fixture servers over Streamable HTTP as
//! members of one group behind the real gateway binary. The group is listed once, calls
//! are spread over healthy members, a member killed mid-run costs no call, and an error
//! that is not retryable is answered, not retried.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use switchboard_testkit::{
    ModernHttp, Proc, binary_beside, spawn_fixture_http, spawn_gateway_http,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

async fn fixture() -> Proc {
    spawn_fixture_http(
        &binary_beside(GATEWAY, "switchboard-fixture"),
        "http",
        &["--era", "modern"],
    )
    .await
    .unwrap()
}

/// Two members of group `search`, plus an ungrouped server `solo`.
fn config(alpha: &Proc, beta: &Proc, solo: &Proc) -> String {
    format!(
        "[gateway]\nrequest_timeout_ms = 10000\n\n\
         [servers.alpha]\nurl = {:?}\ngroup = \"search\"\nvalidate = false\n\n\
         [servers.beta]\nurl = {:?}\ngroup = \"search\"\nvalidate = false\n\n\
         [servers.solo]\nurl = {:?}\n",
        alpha.url, beta.url, solo.url
    )
}

async fn whoami(client: &ModernHttp) -> u64 {
    let answer = client
        .request(
            "tools/call",
            json!({ "name": "search__whoami", "arguments": {} }),
        )
        .await;
    answer.result()["structuredContent"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("whoami answered {}", answer.result()))
}

/// Tool calls a fixture received (its `stats` call not counted).
async fn calls_received(fixture: &Proc) -> u64 {
    let client = ModernHttp::new(&fixture.url);
    let stats = client
        .request("tools/call", json!({ "name": "stats", "arguments": {} }))
        .await;
    stats.result()["structuredContent"]["calls"]
        .as_u64()
        .unwrap()
        - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_listed_once_and_calls_are_spread_over_its_members() {
    let (alpha, beta, solo) = (fixture().await, fixture().await, fixture().await);
    let gateway = spawn_gateway_http(GATEWAY, &config(&alpha, &beta, &solo))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    let list = client.request("tools/list", json!({})).await;
    let names = list.tool_names();
    assert_eq!(
        names.iter().filter(|n| *n == "search__echo").count(),
        1,
        "{names:?}"
    );
    assert!(names.contains(&"solo__echo".to_owned()), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("alpha__") || n.starts_with("beta__")),
        "members are listed through their group only: {names:?}"
    );
    let mut seen = BTreeSet::new();
    for _ in 0..10 {
        seen.insert(whoami(&client).await);
    }
    let members = BTreeSet::from([u64::from(alpha.pid()), u64::from(beta.pid())]);
    assert_eq!(seen, members, "equally healthy members share the calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_mid_run_costs_no_call() {
    let (alpha, beta, solo) = (fixture().await, fixture().await, fixture().await);
    let gateway = spawn_gateway_http(GATEWAY, &config(&alpha, &beta, &solo))
        .await
        .unwrap();
    let client = Arc::new(ModernHttp::new(&gateway.url));
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(collect::Failures::default());
    const CALLS: usize = 160;
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, done, failed) = (client.clone(), done.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while done.fetch_add(1, Ordering::SeqCst) < CALLS {
                let answer = client
                    .raw_request(
                        "tools/call",
                        json!({ "name": "search__sleep", "arguments": { "ms": 20 } }),
                    )
                    .await;
                match &answer.outcome {
                    Ok(result) if result["isError"] != json!(true) => {}
                    Ok(result) => failed.push(result.clone()),
                    Err(error) => failed.push(error.clone()),
                }
            }
        }));
    }
    // Kill one member (its whole process group) once calls are flowing to both.
    while done.load(Ordering::SeqCst) < CALLS / 4 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let alpha_pid = alpha.pid();
    drop(alpha);
    for worker in workers {
        worker.await.unwrap();
    }
    let failures = failed.take();
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    // Every call since goes to the survivor.
    for _ in 0..4 {
        assert_eq!(whoami(&client).await, u64::from(beta.pid()));
    }
    assert_ne!(alpha_pid, beta.pid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_is_not_retryable_is_answered_not_retried() {
    let (alpha, beta, solo) = (fixture().await, fixture().await, fixture().await);
    let gateway = spawn_gateway_http(GATEWAY, &config(&alpha, &beta, &solo))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    let before = calls_received(&alpha).await + calls_received(&beta).await;
    // A tool error (`text` missing; the gateway's own argument check is off here).
    let answer = client
        .request(
            "tools/call",
            json!({ "name": "search__echo", "arguments": {} }),
        )
        .await;
    assert_eq!(answer.result()["isError"], true, "{:?}", answer.outcome);
    // `calls_received` itself costs one call per fixture.
    let after = calls_received(&alpha).await + calls_received(&beta).await - 2;
    assert_eq!(
        after - before,
        1,
        "the tool error reached exactly one member once"
    );

    // A JSON-RPC error from the upstream (a required prompt argument missing).
    let refused = client
        .raw_request(
            "prompts/get",
            json!({ "name": "search__test_prompt_with_arguments", "arguments": {} }),
        )
        .await;
    assert_eq!(refused.error()["code"], -32602, "{:?}", refused.outcome);
    let metrics = reqwest::get(gateway.url.replace("/mcp", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rpc_errors: u64 = metrics
        .lines()
        .filter(|line| {
            line.starts_with("switchboard_calls_total{")
                && line.contains("outcome=\"rpc_error\"")
                && (line.contains("server=\"alpha\"") || line.contains("server=\"beta\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(rpc_errors, 1, "one member asked once:\n{metrics}");
}

/// Failed answers collected across workers (std Mutex; no extra dependency).
mod collect {
    use serde_json::Value;

    #[derive(Default)]
    pub(crate) struct Failures(std::sync::Mutex<Vec<Value>>);

    impl Failures {
        pub(crate) fn push(&self, answer: Value) {
            self.0.lock().unwrap().push(answer);
        }

        pub(crate) fn take(&self) -> Vec<Value> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }
}
