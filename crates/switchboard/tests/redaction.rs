//! `[redaction]` and tool-description screening end to end, through the real gateway
//! binary and the fixture server: a secret the gateway injects into an upstream (its
//! `env`) and that the upstream echoes back is masked, on both eras and through
//! `switchboard__call`, and so is one injected into a server registered while running;
//! emails in tool results, reads, prompts and upstream errors are masked with the rest of
//! the result unchanged; `block` withholds a tool result (a tool error) or a read (a
//! JSON-RPC error); findings are counted in `/metrics`. A tool whose description hides
//! instructions is flagged in `/admin/servers` and `/metrics`, and hidden (it then does
//! not exist) when `hide_poisoned` is set.

use serde_json::{Value, json};
use switchboard_testkit::{
    LegacyHttp, ModernHttp, Proc, binary_beside, spawn_fixture_http, spawn_gateway_http,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN: &str = "redaction-admin-token-0123456789";
const INJECTED: &str = "tok-0123456789abcdef";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn redacting_config() -> String {
    format!(
        r#"
[gateway]
admin_token = "{ADMIN}"
meta_tools = ["call"]
meta_tools_by_default = true

[servers.fx]
command = {fixture:?}
args = ["stdio"]
env = {{ API_TOKEN = "{INJECTED}", TZ = "UTC" }}

[redaction]
actions = {{ card = "block", static_text = "block" }}

[[redaction.patterns]]
name = "static_text"
regex = 'content of the static text'
"#,
        fixture = fixture(),
    )
}

fn screening_config(extra_args: &str, redaction: &str) -> String {
    format!(
        "[gateway]\nadmin_token = \"{ADMIN}\"\n\n[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"{extra_args}]\n\n{redaction}\n",
        fixture()
    )
}

async fn get(gateway: &Proc, path: &str) -> String {
    reqwest::Client::new()
        .get(gateway.url.replace("/mcp", path))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("gateway answers")
        .text()
        .await
        .expect("a body")
}

async fn admin_servers(gateway: &Proc) -> Value {
    serde_json::from_str(&get(gateway, "/admin/servers").await).expect("JSON")
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().expect("a text block")
}

#[tokio::test]
async fn an_injected_secret_echoed_back_is_masked_on_both_eras() {
    let gateway = spawn_gateway_http(GATEWAY, &redacting_config())
        .await
        .unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let env_call = json!({ "name": "fx__env", "arguments": { "name": "API_TOKEN" } });
    for result in [
        modern.request("tools/call", env_call.clone()).await,
        legacy.request("tools/call", env_call.clone()).await,
    ] {
        let result = result.result();
        assert_eq!(text_of(result), "[REDACTED:secret]", "{result}");
        assert_eq!(
            result["structuredContent"],
            json!({ "name": "API_TOKEN", "value": "[REDACTED:secret]" })
        );
    }
    // Plain settings are not secrets.
    let tz = modern
        .request(
            "tools/call",
            json!({ "name": "fx__env", "arguments": { "name": "TZ" } }),
        )
        .await;
    assert_eq!(text_of(tz.result()), "UTC");
    // The echo tool: everything but the findings stays as the upstream sent it.
    let echoed = modern
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": format!("token {INJECTED}, mail bob@example.org") } }),
        )
        .await;
    let result = echoed.result();
    assert_eq!(
        text_of(result),
        "token [REDACTED:secret], mail [REDACTED:email]"
    );
    assert_eq!(
        result["structuredContent"]["text"],
        "token [REDACTED:secret], mail [REDACTED:email]"
    );
    assert_eq!(result["x-fixture-result"], 1);
    assert_eq!(result["_meta"]["fixture/echo"], true);
    // Through the meta-tool, which re-enters the pipeline as the real tool's call.
    let via_meta = legacy
        .request(
            "tools/call",
            json!({ "name": "switchboard__call", "arguments": { "server": "fx", "tool": "env", "arguments": { "name": "API_TOKEN" } } }),
        )
        .await;
    assert!(
        !via_meta.result().to_string().contains(INJECTED),
        "{}",
        via_meta.result()
    );
    let metrics = get(&gateway, "/metrics").await;
    assert!(
        metrics.contains(r#"switchboard_redactions_total{server="fx",detector="secret"} 8"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchboard_redactions_total{server="fx",detector="email"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"switchboard_redacted_results_total{server="fx",outcome="redacted"} 4"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_server_registered_while_running_has_its_secrets_masked_too() {
    let gateway = spawn_gateway_http(GATEWAY, &redacting_config())
        .await
        .unwrap();
    let secret = "pw-runtime-0123456789";
    let response = reqwest::Client::new()
        .post(gateway.url.replace("/mcp", "/admin/servers"))
        .bearer_auth(ADMIN)
        .json(&json!({ "name": "fy", "server": {
            "command": fixture(), "args": ["stdio"], "env": { "DB_PASSWORD": secret } } }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let modern = ModernHttp::new(&gateway.url);
    let result = modern
        .request(
            "tools/call",
            json!({ "name": "fy__env", "arguments": { "name": "DB_PASSWORD" } }),
        )
        .await;
    assert_eq!(text_of(result.result()), "[REDACTED:secret]");
}

#[tokio::test]
async fn an_injected_header_echoed_by_an_http_upstream_is_masked() {
    let upstream = spawn_fixture_http(&binary_beside(GATEWAY, "switchboard-fixture"), "http", &[])
        .await
        .unwrap();
    let token = "hdr-0123456789abcdef";
    let config = format!(
        "[servers.remote]\nurl = {:?}\nheaders = {{ Authorization = \"Bearer {token}\", X-Trace = \"plain-value\" }}\n\n[redaction]\n",
        upstream.url
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let result = ModernHttp::new(&gateway.url)
        .request(
            "tools/call",
            json!({ "name": "remote__request_headers", "arguments": {} }),
        )
        .await;
    let result = result.result();
    let headers = &result["structuredContent"]["headers"];
    assert_eq!(headers["authorization"], "[REDACTED:secret]", "{result}");
    assert_eq!(headers["x-trace"], "plain-value", "{result}");
    assert!(!result.to_string().contains(token), "{result}");
}

#[tokio::test]
async fn block_withholds_tool_results_and_reads() {
    let gateway = spawn_gateway_http(GATEWAY, &redacting_config())
        .await
        .unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let card =
        json!({ "name": "fx__echo", "arguments": { "text": "pay with 4111 1111 1111 1111" } });
    for exchange in [
        modern.request("tools/call", card.clone()).await,
        legacy.request("tools/call", card.clone()).await,
    ] {
        let result = exchange.result();
        assert_eq!(result["isError"], true, "{result}");
        assert_eq!(
            text_of(result),
            "result withheld by the gateway's redaction policy (it contained: card)"
        );
        assert!(result.get("structuredContent").is_none(), "{result}");
    }
    let read = json!({ "uri": "switchboard://fx/test://static-text" });
    for exchange in [
        modern.request("resources/read", read.clone()).await,
        legacy.request("resources/read", read.clone()).await,
    ] {
        let error = exchange.error();
        assert_eq!(error["code"], -31007, "{error}");
        assert_eq!(error["data"]["step"], "redact", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("static_text"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn reads_prompts_and_upstream_errors_are_masked() {
    let gateway = spawn_gateway_http(GATEWAY, &redacting_config())
        .await
        .unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let read = modern
        .request(
            "resources/read",
            json!({ "uri": "switchboard://fx/test://template/bob@example.org/data" }),
        )
        .await;
    let text = read.result()["contents"][0]["text"].as_str().unwrap();
    assert_eq!(
        text,
        r#"{"id":"[REDACTED:email]","templateTest":true,"data":"Data for ID: [REDACTED:email]"}"#
    );
    let prompt = modern
        .request(
            "prompts/get",
            json!({ "name": "fx__test_prompt_with_arguments", "arguments": { "arg1": "bob@example.org", "arg2": "x" } }),
        )
        .await;
    assert_eq!(
        prompt.result()["messages"][0]["content"]["text"],
        "Prompt with arguments: arg1='[REDACTED:email]', arg2='x'"
    );
    let failed = modern
        .request(
            "resources/read",
            json!({ "uri": "switchboard://fx/test://missing/bob@example.org" }),
        )
        .await;
    let error = failed.error();
    assert_eq!(
        error["data"]["uri"], "test://missing/[REDACTED:email]",
        "{error}"
    );
}

#[tokio::test]
async fn a_poisoned_description_is_flagged_in_admin_and_results_pass_without_redaction() {
    let gateway = spawn_gateway_http(GATEWAY, &screening_config(", \"--poisoned-tool\"", ""))
        .await
        .unwrap();
    let servers = admin_servers(&gateway).await;
    let poisoned = &servers["servers"][0]["poisoned"];
    assert_eq!(poisoned.as_array().unwrap().len(), 1, "{servers}");
    assert_eq!(poisoned[0]["tool"], "poisoned_weather");
    assert_eq!(poisoned[0]["hidden"], false);
    let reasons: Vec<&str> = poisoned[0]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|flag| {
            assert_eq!(flag["field"], "description");
            flag["reason"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        reasons,
        [
            "invisible U+200B (zero-width)",
            "phrase: conceals from the user",
            "instruction block"
        ]
    );
    let modern = ModernHttp::new(&gateway.url);
    let tools = modern.request("tools/list", json!({})).await;
    assert!(
        tools
            .tool_names()
            .contains(&"fx__poisoned_weather".to_owned())
    );
    let metrics = get(&gateway, "/metrics").await;
    assert!(
        metrics.contains(r#"switchboard_poisoned_tools{server="fx"} 1"#),
        "{metrics}"
    );
    // Without `[redaction]` results are not touched.
    let echoed = modern
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "bob@example.org" } }),
        )
        .await;
    assert_eq!(text_of(echoed.result()), "bob@example.org");
}

#[tokio::test]
async fn hide_poisoned_makes_a_flagged_tool_nonexistent() {
    let gateway = spawn_gateway_http(
        GATEWAY,
        &screening_config(
            ", \"--poisoned-tool\"",
            "[redaction]\nhide_poisoned = true\n",
        ),
    )
    .await
    .unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    for tools in [
        modern.request("tools/list", json!({})).await,
        legacy.request("tools/list", json!({})).await,
    ] {
        let names = tools.tool_names();
        assert!(names.contains(&"fx__echo".to_owned()), "{names:?}");
        assert!(
            !names.contains(&"fx__poisoned_weather".to_owned()),
            "{names:?}"
        );
    }
    let hidden = modern
        .request(
            "tools/call",
            json!({ "name": "fx__poisoned_weather", "arguments": { "city": "Oslo" } }),
        )
        .await;
    let missing = modern
        .request(
            "tools/call",
            json!({ "name": "fx__no_such_tool", "arguments": {} }),
        )
        .await;
    assert_eq!(hidden.error()["code"], missing.error()["code"]);
    assert_eq!(
        hidden.error()["message"],
        missing.error()["message"]
            .as_str()
            .unwrap()
            .replace("fx__no_such_tool", "fx__poisoned_weather")
    );
    let servers = admin_servers(&gateway).await;
    let poisoned = &servers["servers"][0]["poisoned"];
    assert_eq!(poisoned[0]["tool"], "poisoned_weather", "{servers}");
    assert_eq!(poisoned[0]["hidden"], true);
}
