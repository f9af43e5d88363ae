//! Tool search and meta mode end to end, through the real gateway binary and the fixture
//! server: search finds only what the caller may use (two tenants, a tool hidden by a
//! glob), the index follows a hot-load within the list change that announces it, and
//! meta mode (`search_tools`, `call_tool`, `select_tools`) works in both eras on both
//! faces, with a selection changing only its own session's list and only that session
//! hearing `list_changed`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    LegacyHttp, ModernHttp, Stdio, binary_beside, replace_file, spawn_gateway_http, write_config,
};
use tokio::sync::mpsc::UnboundedReceiver;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "test-admin-token-0123456789";
const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";
const META_KEY: &str = "meta-key-0123456789";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn server_block(name: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture()
    )
}

fn config(servers: &[&str]) -> String {
    let servers: Vec<String> = servers.iter().map(|s| server_block(s)).collect();
    format!(
        "[gateway]\nadmin_token = {TOKEN:?}\nmeta_tools = [\"search_tools\"]\nmeta_tools_by_default = true\n\n{}",
        servers.join("\n")
    )
}

fn tenants_config() -> String {
    format!(
        r#"{}
[access]

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "globex-ci"
key = "{GLOBEX_KEY}"
tenant = "globex"

[[access.keys]]
id = "acme-agent"
key = "{META_KEY}"
tenant = "acme"
tools = "search"

[access.tenants.acme]
servers = {{ allow = ["fa"] }}

[access.tenants.globex]
servers = {{ allow = ["fb"] }}
tools = {{ deny = ["fb__sleep"] }}
"#,
        config(&["fa", "fb"])
    )
}

/// The names in a search result (`structuredContent.tools`).
fn found(result: &Value) -> Vec<String> {
    result["structuredContent"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("a search result, got {result}"))
        .iter()
        .map(|tool| tool["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn wait_for(
    rx: &mut UnboundedReceiver<Value>,
    method: &str,
    within: Duration,
) -> Option<Value> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(message)) if message["method"] == method => return Some(message),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
    None
}

async fn admin_search(url: &str, query: &str) -> Vec<String> {
    let base = url.trim_end_matches("/mcp");
    let response = reqwest::Client::new()
        .get(format!(
            "{base}/admin/tools/search?q={}&limit=50",
            query.replace(' ', "%20")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_never_returns_a_tool_the_caller_may_not_use() {
    let gateway = spawn_gateway_http(GATEWAY, &tenants_config())
        .await
        .unwrap();
    let url = &gateway.url;
    let acme = ModernHttp::with_headers(url, &[("x-api-key", ACME_KEY)]);
    let globex = ModernHttp::with_headers(url, &[("x-api-key", GLOBEX_KEY)]);
    let search = |query: &str| json!({ "name": "switchboard__search_tools", "arguments": { "query": query, "limit": 50 } });
    let queries = [
        "wait then answer, honour cancellation",
        "sleep",
        "add two numbers",
        "echo text",
        "returns",
    ];
    for query in queries {
        let seen = found(acme.request("tools/call", search(query)).await.result());
        assert!(
            seen.iter().all(|n| n.starts_with("fa__")),
            "acme, {query}: {seen:?}"
        );
        let seen = found(globex.request("tools/call", search(query)).await.result());
        assert!(
            seen.iter().all(|n| n.starts_with("fb__")),
            "globex, {query}: {seen:?}"
        );
        assert!(
            !seen.contains(&"fb__sleep".to_owned()),
            "globex, {query}: {seen:?}"
        );
    }
    // The tool is found by whoever may use it, first.
    let seen = found(
        acme.request("tools/call", search("sleep: wait, then answer"))
            .await
            .result(),
    );
    assert_eq!(
        seen.first().map(String::as_str),
        Some("fa__sleep"),
        "{seen:?}"
    );
    let seen = found(
        globex
            .request("tools/call", search("add two numbers"))
            .await
            .result(),
    );
    assert_eq!(
        seen.first().map(String::as_str),
        Some("fb__add"),
        "{seen:?}"
    );
    // Operators search everything.
    let everything = admin_search(url, "sleep wait").await;
    assert!(
        everything.contains(&"fa__sleep".to_owned())
            && everything.contains(&"fb__sleep".to_owned()),
        "{everything:?}"
    );

    // Meta mode under the same rules: the hidden tool is not found, cannot be selected,
    // and calling it answers exactly as a tool that does not exist.
    let meta =
        ModernHttp::with_headers(&format!("{url}?tools=search"), &[("x-api-key", GLOBEX_KEY)]);
    let tools = meta.request("tools/list", json!({})).await.tool_names();
    assert_eq!(tools, ["search_tools", "call_tool", "select_tools"]);
    let seen = found(
        meta.request(
            "tools/call",
            json!({ "name": "search_tools", "arguments": { "query": "sleep", "limit": 50 } }),
        )
        .await
        .result(),
    );
    assert!(
        !seen.contains(&"fb__sleep".to_owned()) && seen.iter().all(|n| n.starts_with("fb__")),
        "{seen:?}"
    );
    let select = |name: &str| json!({ "name": "select_tools", "arguments": { "names": [name] } });
    let hidden = meta.request("tools/call", select("fb__sleep")).await;
    let missing = meta.request("tools/call", select("fb__nothing")).await;
    assert_eq!(hidden.result()["isError"], true);
    assert_eq!(
        hidden.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .replace("fb__sleep", "X"),
        missing.result()["content"][0]["text"]
            .as_str()
            .unwrap()
            .replace("fb__nothing", "X"),
    );
    let call = |name: &str| json!({ "name": "call_tool", "arguments": { "name": name, "arguments": { "ms": 1 } } });
    let hidden = meta.request("tools/call", call("fb__sleep")).await;
    let missing = meta.request("tools/call", call("fb__nothing")).await;
    let shape = |error: &Value, name: &str| json!({ "code": error["code"], "message": error["message"].as_str().unwrap().replace(name, "X") });
    assert_eq!(
        shape(hidden.error(), "fb__sleep"),
        shape(missing.error(), "fb__nothing")
    );
    assert!(
        meta.request("tools/call", call("fa__sleep"))
            .await
            .outcome
            .is_err(),
        "another tenant's tool"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_follows_hot_load_within_one_list_change() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&["a"])).await.unwrap();
    let path = gateway.config.clone().unwrap();
    let client = ModernHttp::new(&gateway.url);
    let search = || json!({ "name": "switchboard__search_tools", "arguments": { "query": "add two numbers", "limit": 50 } });
    let before = found(client.request("tools/call", search()).await.result());
    assert_eq!(
        before.first().map(String::as_str),
        Some("a__add"),
        "{before:?}"
    );
    let mut listen = client
        .listen(json!({ "toolsListChanged": true }))
        .await
        .unwrap();
    assert!(
        wait_for(
            &mut listen,
            "notifications/subscriptions/acknowledged",
            Duration::from_secs(5)
        )
        .await
        .is_some()
    );

    while wait_for(
        &mut listen,
        "notifications/tools/list_changed",
        Duration::from_millis(1500),
    )
    .await
    .is_some()
    {}
    replace_file(&path, &config(&["a", "b"]));
    assert!(
        wait_for(
            &mut listen,
            "notifications/tools/list_changed",
            Duration::from_secs(15)
        )
        .await
        .is_some()
    );
    // The first search after the announcement already sees the new server.
    let added = found(client.request("tools/call", search()).await.result());
    assert!(
        added.contains(&"a__add".to_owned()) && added.contains(&"b__add".to_owned()),
        "{added:?}"
    );

    // Let any further announcement of the addition pass (the new server's first lists),
    // so the next one is the removal's.
    while wait_for(
        &mut listen,
        "notifications/tools/list_changed",
        Duration::from_millis(1500),
    )
    .await
    .is_some()
    {}
    replace_file(&path, &config(&["b"]));
    assert!(
        wait_for(
            &mut listen,
            "notifications/tools/list_changed",
            Duration::from_secs(15)
        )
        .await
        .is_some()
    );
    let removed = found(client.request("tools/call", search()).await.result());
    assert!(removed.contains(&"b__add".to_owned()), "{removed:?}");
    assert!(removed.iter().all(|n| !n.starts_with("a__")), "{removed:?}");
    assert!(
        admin_search(&gateway.url, "add two numbers")
            .await
            .iter()
            .all(|n| !n.starts_with("a__"))
    );
}

/// What a meta-mode client sees and does, whatever the face and era.
async fn meta_mode_basics<F, Fut>(request: F)
where
    F: Fn(&'static str, Value) -> Fut,
    Fut: std::future::Future<Output = switchboard_testkit::Exchange>,
{
    let tools = request("tools/list", json!({})).await.tool_names();
    assert_eq!(tools, ["search_tools", "call_tool", "select_tools"]);
    let listed = request("tools/list", json!({})).await;
    let search_tool = &listed.result()["tools"][0];
    assert!(search_tool["inputSchema"]["properties"]["query"].is_object());

    let result = request("tools/call", json!({ "name": "search_tools", "arguments": { "query": "echo my text back", "limit": 3 } })).await;
    let hits = result.result()["structuredContent"]["tools"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!hits.is_empty() && hits.len() <= 3, "{hits:?}");
    assert_eq!(hits[0]["name"], "fa__echo");
    assert!(hits[0]["description"].is_string());
    assert!(
        hits[0]["inputSchema"]["properties"]["text"].is_object(),
        "{hits:?}"
    );

    let nothing = request(
        "tools/call",
        json!({ "name": "search_tools", "arguments": { "query": "translate a poem into French" } }),
    )
    .await;
    assert_eq!(nothing.result()["structuredContent"]["tools"], json!([]));

    let called = request("tools/call", json!({ "name": "call_tool", "arguments": { "name": "fa__echo", "arguments": { "text": "via meta mode" } } })).await;
    assert_eq!(
        called.result()["content"][0]["text"],
        "via meta mode",
        "{:?}",
        called.outcome
    );
    // Through the whole pipeline: the argument check refuses a bad call as a direct one would.
    let bad = request("tools/call", json!({ "name": "call_tool", "arguments": { "name": "fa__add", "arguments": { "a": "x" } } })).await;
    assert_eq!(bad.result()["isError"], true, "{:?}", bad.outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_mode_on_http_in_both_eras() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&["fa"])).await.unwrap();
    let meta_url = format!("{}?tools=search", gateway.url);

    // Modern, stateless.
    let modern = ModernHttp::new(&meta_url);
    meta_mode_basics(|method, params| modern.request(method, params)).await;

    // Legacy sessions: a selection changes this session's list only, and only it hears.
    let first = LegacyHttp::connect(&meta_url).await.unwrap();
    meta_mode_basics(|method, params| first.request(method, params)).await;
    let second = LegacyHttp::connect(&meta_url).await.unwrap();
    let catalog = LegacyHttp::connect(&gateway.url).await.unwrap();
    let mut first_stream = first.open_stream().await.unwrap();
    let mut second_stream = second.open_stream().await.unwrap();
    let mut catalog_stream = catalog.open_stream().await.unwrap();

    let selected = first
        .request(
            "tools/call",
            json!({ "name": "select_tools", "arguments": { "names": ["fa__echo", "fa__add"] } }),
        )
        .await;
    assert_eq!(
        selected.result()["structuredContent"]["added"],
        json!(["fa__echo", "fa__add"])
    );
    assert!(
        wait_for(
            &mut first_stream,
            "notifications/tools/list_changed",
            Duration::from_secs(5)
        )
        .await
        .is_some()
    );
    assert_eq!(
        first.request("tools/list", json!({})).await.tool_names(),
        [
            "search_tools",
            "call_tool",
            "select_tools",
            "fa__echo",
            "fa__add"
        ]
    );
    let direct = first
        .request(
            "tools/call",
            json!({ "name": "fa__echo", "arguments": { "text": "direct" } }),
        )
        .await;
    assert_eq!(direct.result()["content"][0]["text"], "direct");
    assert_eq!(
        second.request("tools/list", json!({})).await.tool_names(),
        ["search_tools", "call_tool", "select_tools"]
    );
    // Selecting again adds nothing and announces nothing.
    let again = first
        .request(
            "tools/call",
            json!({ "name": "select_tools", "arguments": { "names": ["fa__echo"] } }),
        )
        .await;
    assert_eq!(again.result()["structuredContent"]["added"], json!([]));
    let quiet = Duration::from_millis(1500);
    assert!(
        wait_for(
            &mut second_stream,
            "notifications/tools/list_changed",
            quiet
        )
        .await
        .is_none()
    );
    assert!(
        wait_for(
            &mut catalog_stream,
            "notifications/tools/list_changed",
            quiet
        )
        .await
        .is_none()
    );
    assert!(
        wait_for(&mut first_stream, "notifications/tools/list_changed", quiet)
            .await
            .is_none()
    );

    // Catalog mode stays the default.
    let names = catalog.request("tools/list", json!({})).await.tool_names();
    assert!(
        names.contains(&"fa__echo".to_owned())
            && names.contains(&"switchboard__search_tools".to_owned())
    );
    assert!(!names.contains(&"call_tool".to_owned()));
    let bad = reqwest::Client::new()
        .post(format!("{}?tools=everything", gateway.url))
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_mode_on_stdio_in_both_eras() {
    let (_dir, path) = write_config(&config(&["fa"]));
    for modern in [true, false] {
        let client = Stdio::spawn_with(GATEWAY, &path, modern, &["--tools", "search"])
            .await
            .unwrap();
        meta_mode_basics(|method, params| client.request(method, params)).await;
        let selected = client
            .request(
                "tools/call",
                json!({ "name": "select_tools", "arguments": { "names": ["fa__add"] } }),
            )
            .await;
        assert_eq!(
            selected.result()["structuredContent"]["selected"],
            json!(["fa__add"])
        );
        assert_eq!(
            client.request("tools/list", json!({})).await.tool_names(),
            ["search_tools", "call_tool", "select_tools", "fa__add"]
        );
        if !modern {
            let mut unsolicited = client.unsolicited.lock().await;
            let note = wait_for(
                &mut unsolicited,
                "notifications/tools/list_changed",
                Duration::from_secs(5),
            )
            .await;
            assert!(
                note.is_some(),
                "the stdio session hears its own list change"
            );
        }
    }
    // Without the flag, the catalog.
    let client = Stdio::spawn(GATEWAY, &path, false).await.unwrap();
    let names = client.request("tools/list", json!({})).await.tool_names();
    assert!(names.contains(&"fa__echo".to_owned()) && !names.contains(&"call_tool".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_searches_the_configured_servers() {
    let (_dir, path) = write_config(&config(&["fa"]));
    let output = tokio::process::Command::new(GATEWAY)
        .args(["tools", "search", "add two numbers", "--config"])
        .arg(&path)
        .args(["--limit", "2", "--json"])
        .env("SWITCHBOARD_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let first: Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(first["name"], "fa__add");
    assert_eq!(first["server"], "fa");
    assert!(stdout.lines().count() <= 2);
}
