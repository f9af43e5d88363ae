//! Era bridging of server→client interaction: sampling and elicitation asked by a legacy
//! upstream (real server→client requests) or a modern upstream (MRTR `input_required`)
//! reach legacy clients as server→client requests and modern clients as `input_required`,
//! and the final result comes back either way.

use serde_json::{Value, json};
use switchboard_testkit::{
    Client, LegacyHttp, ModernHttp, Proc, Stdio, binary_beside, spawn_fixture_http,
    spawn_gateway_http, write_config,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

enum Up {
    Stdio(&'static str),
    Http(&'static str),
}

async fn gateway_for(upstream: &Up) -> (String, Option<Proc>) {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    match upstream {
        Up::Stdio(era) => (
            format!(
                "[servers.fx]\ncommand = {:?}\nargs = [\"stdio\", \"--era\", {era:?}]\n",
                fixture.display().to_string()
            ),
            None,
        ),
        Up::Http(era) => {
            let proc = spawn_fixture_http(&fixture, "http", &["--era", era])
                .await
                .unwrap();
            (format!("[servers.fx]\nurl = {:?}\n", proc.url), Some(proc))
        }
    }
}

async fn check(client: &Client, label: &str) {
    let sampled = client
        .request(
            "tools/call",
            json!({ "name": "fx__test_sampling", "arguments": { "prompt": "hi" } }),
        )
        .await;
    let text = sampled.result()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        text, "LLM response: canned sample",
        "{label}: {:?}",
        sampled.outcome
    );
    let elicited = client
        .request(
            "tools/call",
            json!({ "name": "fx__test_elicitation", "arguments": { "message": "Who?" } }),
        )
        .await;
    let text = elicited.result()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.starts_with("User response: action=accept") && text.contains("tester"),
        "{label}: {text}"
    );
    if client.is_modern() {
        // The first answer a modern client sees is input_required with sealed state.
        let first = match client {
            Client::Modern(http) => {
                http.raw_request(
                    "tools/call",
                    json!({ "name": "fx__test_sampling", "arguments": { "prompt": "x" } }),
                )
                .await
            }
            _ => return,
        };
        let result: &Value = first.result();
        assert_eq!(result["resultType"], "input_required", "{label}");
        assert!(
            result["requestState"]
                .as_str()
                .is_some_and(|s| s.contains('.')),
            "{label}: sealed state"
        );
    }
}

async fn run(upstream: Up) {
    let (config, _upstream_proc) = gateway_for(&upstream).await;
    let label = match upstream {
        Up::Stdio(era) => format!("stdio upstream ({era})"),
        Up::Http(era) => format!("http upstream ({era})"),
    };
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    check(
        &Client::Legacy(LegacyHttp::connect(&gateway.url).await.unwrap()),
        &format!("{label}, legacy http client"),
    )
    .await;
    check(
        &Client::Modern(ModernHttp::new(&gateway.url)),
        &format!("{label}, modern http client"),
    )
    .await;
    let (_dir, path) = write_config(&config);
    check(
        &Client::Stdio(Stdio::spawn(GATEWAY, &path, false).await.unwrap()),
        &format!("{label}, legacy stdio client"),
    )
    .await;
    check(
        &Client::Stdio(Stdio::spawn(GATEWAY, &path, true).await.unwrap()),
        &format!("{label}, modern stdio client"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_stdio_upstream_asks() {
    run(Up::Stdio("legacy")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_stdio_upstream_asks() {
    run(Up::Stdio("modern")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_http_upstream_asks() {
    run(Up::Http("legacy")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_http_upstream_asks() {
    run(Up::Http("modern")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_foreign_state_is_rejected() {
    let (config, _upstream) = gateway_for(&Up::Stdio("legacy")).await;
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    let first = client
        .raw_request(
            "tools/call",
            json!({ "name": "fx__test_sampling", "arguments": { "prompt": "x" } }),
        )
        .await;
    let state = first.result()["requestState"].as_str().unwrap().to_owned();
    let mut forged = state.clone();
    forged.insert(0, 'A');
    let retry = client
        .raw_request("tools/call", json!({ "name": "fx__test_sampling", "arguments": { "prompt": "x" }, "requestState": forged, "inputResponses": {} }))
        .await;
    assert_eq!(retry.error()["code"], -32602, "{:?}", retry.outcome);
}
