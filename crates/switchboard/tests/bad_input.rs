//! Bad input gets the spec's error, and the gateway keeps serving everyone else:
//! malformed JSON, batches, oversized messages, unknown sessions, wrong Origin/Host,
//! header/body mismatches, and upstreams that crash, hang, print garbage or flood.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::client::with_modern_meta;
use switchboard_testkit::{
    LegacyHttp, ModernHttp, Proc, Stdio, binary_beside, spawn_gateway_http, write_config,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

fn fixture_server(extra: &str) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    format!(
        "[gateway]\nrequest_timeout_ms = 1500\nmax_message_bytes = 1048576\n\n[listen]\nmax_body_bytes = 65536\n\n[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n{extra}",
        fixture.display().to_string()
    )
}

async fn gateway() -> Proc {
    spawn_gateway_http(GATEWAY, &fixture_server(""))
        .await
        .expect("gateway starts")
}

async fn post_raw(
    url: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.expect("gateway answers");
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Proof that the gateway still serves: a modern echo call succeeds.
async fn still_serves(url: &str) {
    let echo = ModernHttp::new(url)
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "alive" } }),
        )
        .await;
    assert_eq!(echo.result()["content"][0]["text"], "alive");
}

#[tokio::test]
async fn malformed_json_batch_and_oversized_bodies_are_rejected() {
    let gateway = gateway().await;
    let (status, body) = post_raw(&gateway.url, "{not json", &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700)),
        "{body}"
    );
    assert_eq!(body["id"], Value::Null);

    let batch =
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
    let (status, body) = post_raw(&gateway.url, batch, &[]).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );

    let (status, body) = post_raw(
        &gateway.url,
        r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
        &[],
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32600)),
        "{body}"
    );

    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(100_000)
    );
    let (status, body) = post_raw(&gateway.url, huge, &[]).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], -31004);
    still_serves(&gateway.url).await;
}

#[tokio::test]
async fn sessions_origin_and_host_are_enforced() {
    let gateway = gateway().await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, _) = post_raw(&gateway.url, ping, &[("mcp-session-id", "no-such-session")]).await;
    assert_eq!(status, 404);
    let (status, body) = post_raw(&gateway.url, ping, &[]).await;
    assert_eq!(status, 400, "legacy request without a session: {body}");
    let (status, _) = post_raw(&gateway.url, ping, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403);
    let (status, _) = post_raw(&gateway.url, ping, &[("host", "evil.example")]).await;
    assert_eq!(status, 403);
    let (status, _) = post_raw(&gateway.url, ping, &[("origin", "http://localhost:3000")]).await;
    assert_ne!(status, 403, "a local origin is allowed");

    let client = reqwest::Client::new();
    assert_eq!(
        client
            .get(&gateway.url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        405
    );
    assert_eq!(
        client
            .delete(&gateway.url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        405
    );
    let session = LegacyHttp::connect(&gateway.url).await.unwrap();
    let delete = client
        .delete(&gateway.url)
        .header("mcp-session-id", &session.session)
        .send()
        .await
        .unwrap();
    assert!(delete.status().is_success());
    let after = session.request("tools/list", json!({})).await;
    assert_eq!(after.status, 404, "a deleted session is gone");
    still_serves(&gateway.url).await;
}

#[tokio::test]
async fn modern_header_rules() {
    let gateway = gateway().await;
    let client = ModernHttp::new(&gateway.url);
    let params = with_modern_meta(json!({ "name": "fx__echo", "arguments": { "text": "x" } }));
    let send = |builder: reqwest::RequestBuilder| async move {
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    // Mcp-Method disagrees with the body.
    let (status, body) = send(
        client
            .builder(Some(1), "tools/call", &params)
            .header("mcp-method", "tools/list"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{body}"
    );
    // Mcp-Name disagrees.
    let (status, body) = send(
        client
            .builder(Some(2), "tools/call", &params)
            .header("mcp-name", "fx__other"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{body}"
    );
    // Version header disagrees with _meta.
    let mismatched = reqwest::Client::new()
        .post(&gateway.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "fx__echo")
        .body(
            json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params })
                .to_string(),
        );
    let (status, body) = send(mismatched).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "{body}"
    );
    // Unsupported modern version.
    let mut future = params.clone();
    future["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let (status, body) = send(client.builder(Some(4), "tools/call", &future)).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32022)),
        "{body}"
    );
    assert!(
        body["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    // Missing client capabilities.
    let mut bare = params.clone();
    bare["_meta"]
        .as_object_mut()
        .unwrap()
        .remove("io.modelcontextprotocol/clientCapabilities");
    let (status, body) = send(client.builder(Some(5), "tools/call", &bare)).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32602)),
        "{body}"
    );
    // Unknown method: 404 with -32601.
    let unknown = with_modern_meta(json!({}));
    let (status, body) = send(client.builder(Some(6), "nope/nothing", &unknown)).await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (404, Some(-32601)),
        "{body}"
    );
    // Notification: 202.
    let response = client
        .builder(None, "notifications/initialized", &unknown)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    // Unknown tool: a JSON-RPC error, not a crash.
    let missing = client
        .request(
            "tools/call",
            json!({ "name": "fx__missing", "arguments": {} }),
        )
        .await;
    assert_eq!(missing.error()["code"], -32602);
    still_serves(&gateway.url).await;
}

#[tokio::test]
async fn crashing_upstream_fails_fast_and_restarts() {
    let gateway = gateway().await;
    let client = ModernHttp::new(&gateway.url);
    let before = client
        .request(
            "tools/call",
            json!({ "name": "fx__whoami", "arguments": {} }),
        )
        .await;
    let first_pid = before.result()["structuredContent"]["pid"].clone();
    let started = Instant::now();
    let crash = client
        .request(
            "tools/call",
            json!({ "name": "fx__crash", "arguments": { "after_ms": 0 } }),
        )
        .await;
    assert_eq!(crash.error()["code"], -31001, "{:?}", crash.outcome);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "crash seen after {:?}",
        started.elapsed()
    );
    let after = client
        .request(
            "tools/call",
            json!({ "name": "fx__whoami", "arguments": {} }),
        )
        .await;
    assert_ne!(
        after.result()["structuredContent"]["pid"],
        first_pid,
        "a new process serves"
    );
}

#[tokio::test]
async fn hanging_upstream_times_out_and_others_keep_working() {
    let gateway = gateway().await;
    let client = ModernHttp::new(&gateway.url);
    let (hang, echo) = tokio::join!(
        client.request("tools/call", json!({ "name": "fx__hang", "arguments": {} })),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client
                .request(
                    "tools/call",
                    json!({ "name": "fx__echo", "arguments": { "text": "meanwhile" } }),
                )
                .await
        }
    );
    assert_eq!(hang.error()["code"], -31002, "{:?}", hang.outcome);
    assert_eq!(echo.result()["content"][0]["text"], "meanwhile");
}

#[tokio::test]
async fn garbage_and_oversized_upstream_output() {
    let gateway = gateway().await;
    let client = ModernHttp::new(&gateway.url);
    let garbage = client
        .request(
            "tools/call",
            json!({ "name": "fx__garbage", "arguments": {} }),
        )
        .await;
    garbage.result();
    let huge = client
        .request(
            "tools/call",
            json!({ "name": "fx__huge", "arguments": { "bytes": 4_000_000 } }),
        )
        .await;
    assert_eq!(huge.error()["code"], -31004, "{:?}", huge.outcome);
    still_serves(&gateway.url).await;
}

#[tokio::test]
async fn stdio_face_survives_bad_lines() {
    let (_dir, path) = write_config(&fixture_server(""));
    let client = Stdio::spawn(GATEWAY, &path, false).await.unwrap();
    client.write_raw(b"{broken").await.unwrap();
    client
        .write_raw(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .await
        .unwrap();
    let mut errors = Vec::new();
    for _ in 0..2 {
        let message = tokio::time::timeout(Duration::from_secs(5), async {
            client.unsolicited.lock().await.recv().await
        })
        .await
        .expect("an error answer")
        .unwrap();
        errors.push(message["error"]["code"].as_i64());
    }
    assert_eq!(errors, vec![Some(-32700), Some(-32600)]);
    let echo = client
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "ok" } }),
        )
        .await;
    assert_eq!(echo.result()["content"][0]["text"], "ok");
}

/// The admin API's bodies have the listener's bound: an oversized registration or approval
/// body is refused with 413 before it is parsed, and the gateway keeps serving.
#[tokio::test]
async fn oversized_admin_bodies_are_refused() {
    let config = fixture_server("").replacen(
        "[gateway]\n",
        "[gateway]\nadmin_token = \"admin-secret-token\"\n",
        1,
    );
    let gateway = spawn_gateway_http(GATEWAY, &config)
        .await
        .expect("gateway starts");
    let base = gateway.url.trim_end_matches("/mcp");
    let huge = format!(r#"{{"name":"x","pad":"{}"}}"#, "x".repeat(100_000));
    for path in ["/admin/servers", "/admin/registry/fx/approve"] {
        let response = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .bearer_auth("admin-secret-token")
            .header("content-type", "application/json")
            .body(huge.clone())
            .send()
            .await
            .expect("gateway answers");
        assert_eq!(response.status().as_u16(), 413, "{path}");
    }
    still_serves(&gateway.url).await;
}
