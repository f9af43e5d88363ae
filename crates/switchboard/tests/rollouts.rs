//! Version rollouts (`[rollouts.NAME]`): two real fixture servers over Streamable HTTP
//! (2.0 offers `tool_0`, 2.1 also `tool_1`) behind the real gateway binary, as versions
//! of one logical server `crm`, with tenants identified by API keys. Each tenant lists
//! and calls its own version under the same names; a reload that moves a tenant moves
//! its view and tells it (and only the tenants whose view changed); `/admin/rollouts`
//! and `/metrics` show the split.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    ModernHttp, Proc, binary_beside, spawn_fixture_http, spawn_gateway_http,
};
use tokio::sync::mpsc::UnboundedReceiver;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ACME_KEY: &str = "acme-key-0123456789abcdef";
const GLOBEX_KEY: &str = "globex-key-0123456789abcdef";
const INITECH_KEY: &str = "initech-key-0123456789abcdef";
const OPS_KEY: &str = "ops-key-0123456789abcdef";

async fn fixture(name: &str, extra_tools: &str) -> Proc {
    spawn_fixture_http(
        &binary_beside(GATEWAY, "switchboard-fixture"),
        "http",
        &[
            "--era",
            "modern",
            "--name",
            name,
            "--extra-tools",
            extra_tools,
        ],
    )
    .await
    .unwrap()
}

/// `crm` rolled out from `crm-v20` to `crm-v21` for the tenants in `candidates`.
fn config(v20: &Proc, v21: &Proc, candidates: &str) -> String {
    format!(
        r#"
[gateway]
request_timeout_ms = 10000

[access]
[access.tenants.acme]
[access.tenants.globex]
[access.tenants.initech]

[[access.keys]]
id = "acme"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "globex"
key = "{GLOBEX_KEY}"
tenant = "globex"

[[access.keys]]
id = "initech"
key = "{INITECH_KEY}"
tenant = "initech"

[[access.keys]]
id = "ops"
key = "{OPS_KEY}"
roles = ["admin"]

[servers.crm-v20]
url = {:?}

[servers.crm-v21]
url = {:?}

[rollouts.crm]
stable = "crm-v20"
candidate = "crm-v21"
tenants = {candidates}
"#,
        v20.url, v21.url
    )
}

fn client(url: &str, key: &str) -> ModernHttp {
    ModernHttp::with_headers(url, &[("x-api-key", key)])
}

async fn tools(client: &ModernHttp) -> Vec<String> {
    client.request("tools/list", json!({})).await.tool_names()
}

/// The pid of the fixture process that answered `crm__whoami`.
async fn whoami(client: &ModernHttp) -> u64 {
    let answer = client
        .request(
            "tools/call",
            json!({ "name": "crm__whoami", "arguments": {} }),
        )
        .await;
    answer.result()["structuredContent"]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("whoami answered {}", answer.result()))
}

async fn admin_get(url: &str, path: &str) -> Value {
    let base = url.trim_end_matches("/mcp");
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(OPS_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn metrics(url: &str) -> String {
    let base = url.trim_end_matches("/mcp");
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn next_list_changed(stream: &mut UnboundedReceiver<Value>) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.recv())
            .await
            .expect("a notification within 10 s")
            .expect("stream open");
        if message.get("id").is_none()
            && let Some(method) = message["method"].as_str()
            && method.contains("list_changed")
        {
            return method.to_owned();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_lists_and_calls_its_own_version() {
    let (v20, v21) = (fixture("crm-2.0", "1").await, fixture("crm-2.1", "2").await);
    let gateway = spawn_gateway_http(GATEWAY, &config(&v20, &v21, "[\"acme\"]"))
        .await
        .unwrap();
    let url = &gateway.url;
    let (acme, globex, ops) = (
        client(url, ACME_KEY),
        client(url, GLOBEX_KEY),
        client(url, OPS_KEY),
    );

    let acme_tools = tools(&acme).await;
    let globex_tools = tools(&globex).await;
    assert!(
        acme_tools.contains(&"crm__tool_1".to_owned()),
        "{acme_tools:?}"
    );
    assert!(
        acme_tools.contains(&"crm__tool_0".to_owned()),
        "{acme_tools:?}"
    );
    assert!(
        globex_tools.contains(&"crm__tool_0".to_owned()),
        "{globex_tools:?}"
    );
    assert!(
        !globex_tools.contains(&"crm__tool_1".to_owned()),
        "{globex_tools:?}"
    );
    for listed in [&acme_tools, &globex_tools] {
        assert!(
            listed.iter().all(|t| t.starts_with("crm__")),
            "versions are listed under the rollout's name only: {listed:?}"
        );
    }
    // A caller without a tenant gets the stable version.
    assert_eq!(tools(&ops).await, globex_tools);

    // Calls follow the same version, every time.
    for _ in 0..3 {
        assert_eq!(whoami(&acme).await, u64::from(v21.pid()));
        assert_eq!(whoami(&globex).await, u64::from(v20.pid()));
        assert_eq!(whoami(&ops).await, u64::from(v20.pid()));
    }
    let answer = acme
        .request(
            "tools/call",
            json!({ "name": "crm__tool_1", "arguments": {} }),
        )
        .await;
    assert_ne!(
        answer.result()["isError"],
        json!(true),
        "{:?}",
        answer.outcome
    );
    // The candidate's tool does not exist for a tenant on the stable version.
    let refused = globex
        .raw_request(
            "tools/call",
            json!({ "name": "crm__tool_1", "arguments": {} }),
        )
        .await;
    let error = refused.error().to_string();
    assert!(error.contains("crm__tool_1"), "{error}");

    // The split is visible to operators.
    let status = admin_get(url, "/admin/rollouts").await;
    let rollout = &status["rollouts"][0];
    assert_eq!(rollout["name"], "crm");
    assert_eq!(rollout["versions"]["stable"]["server"], "crm-v20");
    assert_eq!(rollout["versions"]["candidate"]["server"], "crm-v21");
    assert_eq!(rollout["rule"]["tenants"], json!(["acme"]));
    assert_eq!(rollout["rule"]["percent"], json!(0.0));
    assert_eq!(
        rollout["versions"]["candidate"]["tenants_seen"], 1,
        "{status}"
    );
    assert_eq!(rollout["versions"]["stable"]["tenants_seen"], 1, "{status}");
    assert_eq!(rollout["versions"]["candidate"]["calls"], 4, "{status}");
    assert_eq!(rollout["versions"]["stable"]["calls"], 6, "{status}");
    let exposition = metrics(url).await;
    assert!(
        exposition
            .contains(r#"switchboard_rollout_calls_total{rollout="crm",version="crm-v21"} 4"#),
        "{exposition}"
    );
    assert!(
        exposition.contains(r#"switchboard_rollout_tenants{rollout="crm",version="crm-v21"} 1"#),
        "{exposition}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_tenant_in_the_list_moves_its_view_after_a_reload() {
    let (v20, v21) = (fixture("crm-2.0", "1").await, fixture("crm-2.1", "2").await);
    let gateway = spawn_gateway_http(GATEWAY, &config(&v20, &v21, "[\"acme\"]"))
        .await
        .unwrap();
    let url = gateway.url.clone();
    let path = gateway.config.clone().unwrap();
    let (acme, globex, initech) = (
        client(&url, ACME_KEY),
        client(&url, GLOBEX_KEY),
        client(&url, INITECH_KEY),
    );
    assert!(tools(&acme).await.contains(&"crm__tool_1".to_owned()));
    assert!(!tools(&globex).await.contains(&"crm__tool_1".to_owned()));
    assert!(!tools(&initech).await.contains(&"crm__tool_1".to_owned()));
    let filter = json!({ "toolsListChanged": true });
    let mut acme_listen = acme.listen(filter.clone()).await.unwrap();
    let mut globex_listen = globex.listen(filter.clone()).await.unwrap();
    let mut initech_listen = initech.listen(filter).await.unwrap();

    // acme back to 2.0, globex on to 2.1; initech stays on 2.0.
    std::fs::write(&path, config(&v20, &v21, "[\"globex\"]")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tools(&globex).await.contains(&"crm__tool_1".to_owned()) {
        assert!(Instant::now() < deadline, "the new rule applies");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!tools(&acme).await.contains(&"crm__tool_1".to_owned()));
    assert_eq!(whoami(&globex).await, u64::from(v21.pid()));
    assert_eq!(whoami(&acme).await, u64::from(v20.pid()));
    assert_eq!(whoami(&initech).await, u64::from(v20.pid()));
    assert_eq!(
        next_list_changed(&mut globex_listen).await,
        "notifications/tools/list_changed"
    );
    assert_eq!(
        next_list_changed(&mut acme_listen).await,
        "notifications/tools/list_changed"
    );
    // initech's view did not change: it was not told (the others were told at the same
    // moment, so anything for initech would be queued by now).
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(message) = initech_listen.try_recv() {
        assert!(
            !message["method"]
                .as_str()
                .unwrap_or_default()
                .contains("list_changed"),
            "initech was told about a change it cannot see: {message}"
        );
    }
    let status = admin_get(&url, "/admin/rollouts").await;
    assert_eq!(status["rollouts"][0]["rule"]["tenants"], json!(["globex"]));
    assert_eq!(
        status["rollouts"][0]["versions"]["candidate"]["tenants_seen"], 1,
        "the tenants seen carry over, on the new rule: {status}"
    );
    assert_eq!(
        status["rollouts"][0]["versions"]["stable"]["tenants_seen"], 2,
        "{status}"
    );
}
