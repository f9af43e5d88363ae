//! Aggregation: several servers behind one endpoint, namespaced and paginated in a
//! deterministic order; calls routed to the owning server; opt-in passthrough; mirrored
//! `x-mcp-header` parameters forwarded to HTTP upstreams.

use std::collections::HashSet;

use serde_json::{Value, json};
use switchboard_testkit::{
    LegacyHttp, ModernHttp, binary_beside, spawn_fixture_http, spawn_gateway_http,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

async fn all_tools(client: &ModernHttp) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(cursor) => json!({ "cursor": cursor }),
            None => json!({}),
        };
        let page = client.request("tools/list", params).await;
        pages += 1;
        let result = page.result();
        names.extend(
            result["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned()),
        );
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (names, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_servers_one_namespace() {
    let config = format!(
        "[servers.alpha]\ncommand = {f:?}\nargs = [\"stdio\", \"--extra-tools\", \"1200\"]\n\n[servers.beta]\ncommand = {f:?}\nargs = [\"stdio\", \"--era\", \"legacy\"]\n",
        f = fixture()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    let (names, pages) = all_tools(&client).await;
    assert!(pages >= 2, "1,200+ tools span pages");
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "no duplicates across pages");
    assert!(names.contains(&"alpha__echo".to_owned()) && names.contains(&"beta__echo".to_owned()));
    assert!(names.contains(&"alpha__tool_1199".to_owned()));
    let first_beta = names.iter().position(|n| n.starts_with("beta__")).unwrap();
    assert!(
        names[..first_beta].iter().all(|n| n.starts_with("alpha__")),
        "servers in name order"
    );
    assert!(names.iter().all(|n| {
        n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }));
    let (again, _) = all_tools(&client).await;
    assert_eq!(names, again, "deterministic order");

    let alpha = client
        .request(
            "tools/call",
            json!({ "name": "alpha__whoami", "arguments": {} }),
        )
        .await;
    let beta = client
        .request(
            "tools/call",
            json!({ "name": "beta__whoami", "arguments": {} }),
        )
        .await;
    assert_ne!(
        alpha.result()["structuredContent"]["pid"],
        beta.result()["structuredContent"]["pid"]
    );

    // A legacy session sees the same catalog.
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let page = legacy.request("tools/list", json!({})).await;
    assert_eq!(page.result()["tools"][0]["name"], json!(names[0]));
    let prompts = legacy.request("prompts/list", json!({})).await;
    assert!(
        prompts.result()["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "beta__test_simple_prompt")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_keeps_upstream_names() {
    let config = format!(
        "[gateway]\npassthrough = true\n\n[servers.only]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    let (names, _) = all_tools(&client).await;
    assert!(names.contains(&"echo".to_owned()) && !names.iter().any(|n| n.starts_with("only__")));
    let echo = client
        .request(
            "tools/call",
            json!({ "name": "echo", "arguments": { "text": "same" } }),
        )
        .await;
    assert_eq!(echo.result()["content"][0]["text"], "same");
    let read = client
        .request("resources/read", json!({ "uri": "test://static-text" }))
        .await;
    assert_eq!(read.result()["contents"][0]["uri"], "test://static-text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_parameters_reach_http_upstreams() {
    let upstream = spawn_fixture_http(
        &binary_beside(GATEWAY, "switchboard-fixture"),
        "http",
        &["--era", "modern"],
    )
    .await
    .unwrap();
    let config = format!("[servers.remote]\nurl = {:?}\n", upstream.url);
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let arguments = json!({ "region": "eu-west 1 ünïcode", "priority": 7, "query": "q" });
    // The modern client must mirror the header itself (the gateway checks it)…
    let client = ModernHttp::new(&gateway.url);
    let params = switchboard_testkit::client::with_modern_meta(
        json!({ "name": "remote__test_header_param", "arguments": arguments }),
    );
    let missing = client
        .builder(Some(1), "tools/call", &params)
        .send()
        .await
        .unwrap();
    assert_eq!(
        missing.status().as_u16(),
        400,
        "a client omitting Mcp-Param-Region is rejected"
    );
    let response = client
        .builder(Some(2), "tools/call", &params)
        .header(
            "mcp-param-region",
            "=?base64?ZXUtd2VzdCAxIMO8bsOvY29kZQ==?=",
        )
        .header("mcp-param-priority", "7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["result"]["isError"] != json!(true), "{body}");
    // …and a legacy client's call gets the headers added by the gateway.
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let call = legacy
        .request(
            "tools/call",
            json!({ "name": "remote__test_header_param", "arguments": arguments }),
        )
        .await;
    assert!(
        call.result()["isError"] != json!(true),
        "{:?}",
        call.outcome
    );
}
