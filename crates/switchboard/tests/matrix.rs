//! The transport matrix: every downstream face × upstream transport × protocol era, with
//! one set of shared assertions (list, call with unknown fields, progress, cancellation,
//! resource read, prompt). Real processes throughout: the gateway binary and the fixture.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{
    Client, Face, LegacyHttp, ModernHttp, Proc, Stdio, binary_beside, spawn_fixture_http,
    spawn_gateway_http, write_config,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

#[derive(Clone, Copy, Debug)]
enum Upstream {
    Stdio,
    Http,
    Sse,
}

struct Setup {
    client: Client,
    _gateway: Option<Proc>,
    _upstream: Option<Proc>,
    _config_dir: Option<tempfile::TempDir>,
}

fn fixture() -> std::path::PathBuf {
    binary_beside(GATEWAY, "switchboard-fixture")
}

async fn setup(face: Face, modern_client: bool, upstream: Upstream, upstream_era: &str) -> Setup {
    let (server_block, upstream_proc) = match upstream {
        Upstream::Stdio => (
            format!(
                "command = {:?}\nargs = [\"stdio\", \"--era\", {upstream_era:?}]\n",
                fixture().display().to_string()
            ),
            None,
        ),
        Upstream::Http => {
            let proc = spawn_fixture_http(&fixture(), "http", &["--era", upstream_era])
                .await
                .expect("fixture http");
            (format!("url = {:?}\n", proc.url), Some(proc))
        }
        Upstream::Sse => {
            let proc = spawn_fixture_http(&fixture(), "sse", &[])
                .await
                .expect("fixture sse");
            (
                format!("transport = \"sse\"\nurl = {:?}\n", proc.url),
                Some(proc),
            )
        }
    };
    let config = format!("[gateway]\nrequest_timeout_ms = 20000\n\n[servers.fx]\n{server_block}");
    match face {
        Face::Stdio => {
            let (dir, path) = write_config(&config);
            let client = Stdio::spawn(GATEWAY, &path, modern_client)
                .await
                .expect("stdio gateway");
            Setup {
                client: Client::Stdio(client),
                _gateway: None,
                _upstream: upstream_proc,
                _config_dir: Some(dir),
            }
        }
        Face::Http => {
            let gateway = spawn_gateway_http(GATEWAY, &config)
                .await
                .expect("http gateway");
            let client = if modern_client {
                Client::Modern(ModernHttp::new(&gateway.url))
            } else {
                Client::Legacy(
                    LegacyHttp::connect(&gateway.url)
                        .await
                        .expect("legacy session"),
                )
            };
            Setup {
                client,
                _gateway: Some(gateway),
                _upstream: upstream_proc,
                _config_dir: None,
            }
        }
    }
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn cancelled_count(client: &Client) -> u64 {
    let stats = client
        .request(
            "tools/call",
            json!({ "name": "fx__stats", "arguments": {} }),
        )
        .await;
    stats.result()["structuredContent"]["cancelled"]
        .as_u64()
        .unwrap_or(0)
}

/// Starts a slow call and cancels it the way the client's transport does.
async fn cancel_slow_call(setup: &Setup) {
    let params = json!({ "name": "fx__sleep", "arguments": { "ms": 10_000 } });
    match &setup.client {
        Client::Stdio(client) => {
            let id = client.next_id();
            let call = client.request_with_id(id, "tools/call", params);
            let cancel = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                client
                    .notify(
                        "notifications/cancelled",
                        json!({ "requestId": id, "reason": "test" }),
                    )
                    .await
                    .unwrap();
            };
            // The cancelled request gets no answer: stop waiting once the cancel is out.
            tokio::select! {
                _ = call => panic!("a cancelled call must not be answered"),
                () = async { cancel.await; tokio::time::sleep(Duration::from_millis(500)).await } => {}
            }
        }
        Client::Legacy(client) => {
            let id = client.next_id();
            let call = client.request_with_id(id, "tools/call", params);
            let cancel = async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let note = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": id } });
                client.post(note).await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            // The POST is closed by a stream that ends without any message: no answer,
            // and in particular no (retryable) error, exactly as on stdio.
            let (exchange, ()) = tokio::join!(call, cancel);
            assert_eq!(
                exchange.outcome,
                Err(json!({ "message": "stream ended without an answer" })),
                "a cancelled legacy HTTP call must not be answered"
            );
        }
        Client::Modern(client) => {
            // Modern HTTP cancellation is closing the response stream: drop the request.
            let call = client.raw_request("tools/call", params);
            let _ = tokio::time::timeout(Duration::from_millis(300), call).await;
        }
    }
}

async fn shared_assertions(
    face: Face,
    modern_client: bool,
    upstream: Upstream,
    upstream_era: &str,
) {
    let label = format!(
        "{face:?} face, {} client, {upstream:?} upstream ({upstream_era})",
        if modern_client { "modern" } else { "legacy" }
    );
    let setup = setup(face, modern_client, upstream, upstream_era).await;
    let client = &setup.client;

    // List: namespaced, unknown fields kept.
    let tools = client.request("tools/list", json!({})).await;
    let list = tools.result()["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{label}: no tools"));
    let echo = list
        .iter()
        .find(|t| t["name"] == "fx__echo")
        .unwrap_or_else(|| panic!("{label}: no fx__echo in {list:?}"));
    assert_eq!(
        echo["x-fixture-extension"],
        json!({ "kept": true }),
        "{label}: unknown tool field"
    );
    assert!(echo["outputSchema"].is_object(), "{label}: outputSchema");
    if modern_client {
        assert_eq!(tools.result()["resultType"], "complete", "{label}");
    }

    // Call: result forwarded faithfully.
    let call = client
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "hello" } }),
        )
        .await;
    let result = call.result();
    assert_eq!(text_of(result), "hello", "{label}");
    assert_eq!(
        result["structuredContent"],
        json!({ "text": "hello" }),
        "{label}"
    );
    assert_eq!(
        result["x-fixture-result"],
        json!(1),
        "{label}: unknown result field"
    );
    assert_eq!(
        result["_meta"]["fixture/echo"],
        json!(true),
        "{label}: result _meta"
    );

    // Progress: tokens mapped back to the client's.
    let progress = client
        .request("tools/call", json!({ "name": "fx__progress", "arguments": { "steps": 3, "interval_ms": 20 }, "_meta": { "progressToken": "tok-7" } }))
        .await;
    progress.result();
    let tokens: Vec<&Value> = progress
        .notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .map(|n| &n["params"]["progressToken"])
        .collect();
    assert_eq!(
        tokens.len(),
        3,
        "{label}: progress notifications {:?}",
        progress.notifications
    );
    assert!(
        tokens.iter().all(|t| **t == json!("tok-7")),
        "{label}: {tokens:?}"
    );

    // Resource read through a rewritten URI.
    let resources = client.request("resources/list", json!({})).await;
    let uri = resources.result()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .find(|u| u.ends_with("test://static-text"))
        .unwrap_or_else(|| panic!("{label}: static-text not listed"))
        .to_owned();
    assert_eq!(uri, "switchboard://fx/test://static-text", "{label}");
    let read = client
        .request("resources/read", json!({ "uri": uri }))
        .await;
    assert_eq!(read.result()["contents"][0]["uri"], json!(uri), "{label}");
    assert!(read.result()["contents"][0]["text"].is_string(), "{label}");

    // Prompt.
    let prompt = client
        .request("prompts/get", json!({ "name": "fx__test_simple_prompt" }))
        .await;
    assert!(
        !prompt.result()["messages"].as_array().unwrap().is_empty(),
        "{label}"
    );

    // Cancellation reaches the upstream.
    let before = cancelled_count(client).await;
    cancel_slow_call(&setup).await;
    let mut after = before;
    for _ in 0..40 {
        after = cancelled_count(client).await;
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        after > before,
        "{label}: upstream never saw the cancellation ({before} → {after})"
    );
}

macro_rules! matrix {
    ($($name:ident: $face:expr, $modern:expr, $upstream:expr, $era:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            shared_assertions($face, $modern, $upstream, $era).await;
        }
    )*};
}

matrix! {
    stdio_legacy_client_stdio_legacy_upstream: Face::Stdio, false, Upstream::Stdio, "legacy";
    stdio_legacy_client_stdio_modern_upstream: Face::Stdio, false, Upstream::Stdio, "modern";
    stdio_modern_client_stdio_legacy_upstream: Face::Stdio, true, Upstream::Stdio, "legacy";
    stdio_modern_client_stdio_modern_upstream: Face::Stdio, true, Upstream::Stdio, "modern";
    stdio_legacy_client_http_legacy_upstream: Face::Stdio, false, Upstream::Http, "legacy";
    stdio_modern_client_http_modern_upstream: Face::Stdio, true, Upstream::Http, "modern";
    stdio_legacy_client_sse_upstream: Face::Stdio, false, Upstream::Sse, "legacy";
    stdio_modern_client_sse_upstream: Face::Stdio, true, Upstream::Sse, "legacy";
    http_legacy_client_stdio_legacy_upstream: Face::Http, false, Upstream::Stdio, "legacy";
    http_legacy_client_stdio_modern_upstream: Face::Http, false, Upstream::Stdio, "modern";
    http_modern_client_stdio_legacy_upstream: Face::Http, true, Upstream::Stdio, "legacy";
    http_modern_client_stdio_modern_upstream: Face::Http, true, Upstream::Stdio, "modern";
    http_legacy_client_http_legacy_upstream: Face::Http, false, Upstream::Http, "legacy";
    http_legacy_client_http_modern_upstream: Face::Http, false, Upstream::Http, "modern";
    http_modern_client_http_legacy_upstream: Face::Http, true, Upstream::Http, "legacy";
    http_modern_client_http_modern_upstream: Face::Http, true, Upstream::Http, "modern";
    http_legacy_client_sse_upstream: Face::Http, false, Upstream::Sse, "legacy";
    http_modern_client_sse_upstream: Face::Http, true, Upstream::Sse, "legacy";
    stdio_legacy_client_http_dual_upstream: Face::Stdio, false, Upstream::Http, "dual";
    http_modern_client_stdio_dual_upstream: Face::Http, true, Upstream::Stdio, "dual";
}
