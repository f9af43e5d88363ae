//! Argument validation and did-you-mean end to end, through the real gateway binary and
//! the fixture server: a call whose arguments do not fit the tool's `inputSchema` is
//! answered as a tool error naming the JSON path (valid in both eras, on both faces) and
//! never reaches the upstream (the fixture's own call counter says so); a misspelled
//! property gets the closest valid name; `validate = false` lets the same call through,
//! also when a reload turns it off; an unknown tool name gets the closest visible names,
//! and a tool hidden by `[access]` is never suggested.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::client::Exchange;
use switchboard_testkit::{
    LegacyHttp, ModernHttp, Proc, Stdio, binary_beside, replace_file, spawn_gateway_http,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const META_KEY: &str = "dev.switchboard/validation";
const ACME_KEY: &str = "acme-key-0123456789";
const OPS_KEY: &str = "ops-key-0123456789";

fn fixture() -> String {
    format!(
        "{:?}",
        binary_beside(GATEWAY, "switchboard-fixture")
            .display()
            .to_string()
    )
}

fn config(loose_validates: bool) -> String {
    let fixture = fixture();
    format!(
        "[servers.fx]\ncommand = {fixture}\nargs = [\"stdio\"]\n\n\
         [servers.loose]\ncommand = {fixture}\nargs = [\"stdio\"]\nvalidate = {loose_validates}\n"
    )
}

/// The fixture's count of calls it received (the `stats` call itself included).
async fn upstream_calls(client: &ModernHttp, server: &str) -> u64 {
    let stats = client
        .request(
            "tools/call",
            json!({ "name": format!("{server}__stats"), "arguments": {} }),
        )
        .await;
    stats.result()["structuredContent"]["calls"]
        .as_u64()
        .expect("a count")
}

fn errors(result: &Value) -> &Vec<Value> {
    result["_meta"][META_KEY]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no validation errors in {result}"))
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

async fn call(client: &ModernHttp, name: &str, arguments: Value) -> Exchange {
    client
        .request(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_a_tool_error_and_never_reach_the_upstream() {
    let gateway = spawn_gateway_http(GATEWAY, &config(false)).await.unwrap();
    let modern = ModernHttp::new(&gateway.url);

    let good = call(&modern, "fx__add", json!({ "a": 1, "b": 2 })).await;
    assert_eq!(text(good.result()), "3");

    let before = upstream_calls(&modern, "fx").await;
    // A wrong type and a missing property, on the modern face.
    let bad = call(&modern, "fx__add", json!({ "a": "1" })).await;
    let result = bad.result();
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(result["resultType"], "complete", "{result}");
    let found: Vec<&str> = errors(result)
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(found, ["/a", "/b"]);
    assert!(
        text(result).contains("- /a: expected number, got string"),
        "{result}"
    );
    assert!(
        text(result).contains("- /b: missing required property `b`"),
        "{result}"
    );

    // A misspelled property where the schema forbids others: the closest valid name.
    let misspelled = call(
        &modern,
        "fx__json_schema_2020_12_tool",
        json!({ "nmae": "Ada", "email": "ada@example.com" }),
    )
    .await;
    let result = misspelled.result();
    assert_eq!(result["isError"], true, "{result}");
    let error = &errors(result)[0];
    assert_eq!(error["path"], "/nmae");
    assert_eq!(error["keyword"], "additionalProperties");
    assert_eq!(error["suggestion"], "name");
    assert!(text(result).contains("did you mean `name`?"), "{result}");

    // A misspelled required property where others are allowed: named on the missing one.
    let misspelled = call(&modern, "fx__add", json!({ "a": 1, "bb": 2 })).await;
    let error = &errors(misspelled.result())[0];
    assert_eq!(
        (&error["path"], &error["suggestion"], &error["given"]),
        (&json!("/b"), &json!("b"), &json!("bb"))
    );

    // The same answer on the legacy face, without the modern-only members.
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let bad = legacy
        .request(
            "tools/call",
            json!({ "name": "fx__add", "arguments": { "a": 1, "b": [2] } }),
        )
        .await;
    let result = bad.result();
    assert_eq!(result["isError"], true, "{result}");
    assert!(result.get("resultType").is_none(), "{result}");
    assert_eq!(errors(result)[0]["path"], "/b");

    // And on the stdio face.
    let path = gateway.config.clone().unwrap();
    let stdio = Stdio::spawn(GATEWAY, &path, false).await.unwrap();
    let bad = stdio
        .request(
            "tools/call",
            json!({ "name": "fx__sleep", "arguments": { "ms": -5 } }),
        )
        .await;
    let result = bad.result();
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(errors(result)[0]["path"], "/ms");
    assert_eq!(errors(result)[0]["keyword"], "minimum");

    // Only this second `stats` call reached the HTTP gateway's fixture.
    let after = upstream_calls(&modern, "fx").await;
    assert_eq!(
        after,
        before + 1,
        "a call with bad arguments reached the upstream"
    );

    // `validate = false`: the same bad call goes through and the server answers it.
    let before = upstream_calls(&modern, "loose").await;
    let passed = call(&modern, "loose__add", json!({ "a": "1" })).await;
    let result = passed.result();
    assert!(result["_meta"].get(META_KEY).is_none(), "{result}");
    assert!(text(result).contains("must be a number"), "{result}");
    assert_eq!(upstream_calls(&modern, "loose").await, before + 2);

    // Counted per server.
    let metrics = reqwest::get(gateway.url.replace("/mcp", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_invalid_arguments_total{server=\"fx\"} 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_validation_off_and_on() {
    let gateway = spawn_gateway_http(GATEWAY, &config(true)).await.unwrap();
    let path = gateway.config.clone().unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let checked = |exchange: &Exchange| exchange.result()["_meta"].get(META_KEY).is_some();
    assert!(checked(
        &call(&modern, "loose__add", json!({ "a": "1" })).await
    ));

    replace_file(&path, &config(false));
    assert!(
        eventually(&modern, |e| !checked(e)).await,
        "validate = false was not applied"
    );
    replace_file(&path, &config(true));
    assert!(
        eventually(&modern, checked).await,
        "validate = true was not applied"
    );
}

/// Calls `loose__add` with bad arguments until `done` holds for the answer (10 s).
async fn eventually(modern: &ModernHttp, done: impl Fn(&Exchange) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let exchange = call(modern, "loose__add", json!({ "a": "1" })).await;
        if exchange.outcome.is_ok() && done(&exchange) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_get_the_closest_names() {
    let gateway = spawn_gateway_http(GATEWAY, &config(true)).await.unwrap();
    let modern = ModernHttp::new(&gateway.url);

    let error = call(&modern, "fx__ad", json!({})).await;
    let error = error.error();
    assert_eq!(error["code"], -32602, "{error}");
    assert_eq!(
        error["message"], "Unknown tool: fx__ad (did you mean fx__add?)",
        "{error}"
    );
    assert_eq!(error["data"]["suggestions"], json!(["fx__add"]));

    // The name without its server prefix finds it on every server.
    let error = call(&modern, "echo", json!({})).await;
    assert_eq!(
        error.error()["data"]["suggestions"],
        json!(["fx__echo", "loose__echo"])
    );

    // Nothing close: the error is as before.
    let error = call(&modern, "fx__zzzzzzzz", json!({})).await;
    let error = error.error();
    assert_eq!(error["message"], "Unknown tool: fx__zzzzzzzz");
    assert!(error.get("data").is_none(), "{error}");
}

fn access_config() -> String {
    format!(
        r#"
[access]

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "ops"
key = "{OPS_KEY}"

[access.tenants.acme]
tools = {{ allow = ["fx__echo", "fx__stats"] }}

[servers.fx]
command = {fixture}
args = ["stdio"]
"#,
        fixture = fixture()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_tools_are_never_suggested() {
    let gateway: Proc = spawn_gateway_http(GATEWAY, &access_config()).await.unwrap();
    let acme = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ACME_KEY)]);
    let ops = ModernHttp::with_headers(&gateway.url, &[("x-api-key", OPS_KEY)]);

    // ops sees `fx__add`, so it is suggested to ops.
    let error = call(&ops, "fx__ad", json!({})).await;
    assert_eq!(error.error()["data"]["suggestions"], json!(["fx__add"]));

    // acme does not: a name close to the hidden tool gets no suggestion, exactly like a
    // name close to nothing.
    let near_hidden = call(&acme, "fx__ad", json!({})).await;
    let near_nothing = call(&acme, "fx__qz", json!({})).await;
    assert_eq!(
        near_hidden.error(),
        &json!({ "code": -32602, "message": "Unknown tool: fx__ad" })
    );
    assert_eq!(
        near_nothing.error(),
        &json!({ "code": -32602, "message": "Unknown tool: fx__qz" })
    );
    // The hidden tool itself answers like a nonexistent name.
    let hidden = call(&acme, "fx__add", json!({ "a": 1, "b": 2 })).await;
    assert_eq!(
        hidden.error(),
        &json!({ "code": -32602, "message": "Unknown tool: fx__add" })
    );
    // Of the names close to a spelling, only the visible ones: `fx__eno` is one edit
    // from the hidden `fx__env` and two from the visible `fx__echo`.
    let error = call(&ops, "fx__eno", json!({})).await;
    assert_eq!(
        error.error()["data"]["suggestions"],
        json!(["fx__env", "fx__echo"])
    );
    let error = call(&acme, "fx__eno", json!({})).await;
    assert_eq!(error.error()["data"]["suggestions"], json!(["fx__echo"]));
    let error = call(&acme, "stat", json!({})).await;
    assert_eq!(error.error()["data"]["suggestions"], json!(["fx__stats"]));
}
