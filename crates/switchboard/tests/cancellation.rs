//! Cancellation on the legacy Streamable HTTP face once the request's answer has become an
//! event stream (progress went first): the stream ends without the response, and the
//! upstream hears the cancellation. (A POST still waiting for its JSON answer, stdio and
//! modern HTTP are covered per era by `matrix.rs`; the HTTP+SSE face by `sse_face.rs`.)

use std::time::Duration;

use serde_json::json;
use switchboard_testkit::{LegacyHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_streaming_post_ends_without_an_answer() {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let config = format!(
        "[gateway]\nrequest_timeout_ms = 30000\n\n[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture.display().to_string()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config)
        .await
        .expect("http gateway");
    let client = LegacyHttp::connect(&gateway.url)
        .await
        .expect("legacy session");
    let stats = || async {
        client
            .request(
                "tools/call",
                json!({ "name": "fx__stats", "arguments": {} }),
            )
            .await
            .result()["structuredContent"]["cancelled"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = stats().await;

    let id = client.next_id();
    let call = client.request_with_id(
        id,
        "tools/call",
        json!({ "name": "fx__progress", "arguments": { "steps": 100, "interval_ms": 100 },
                "_meta": { "progressToken": "p" } }),
    );
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                           "params": { "requestId": id, "reason": "test" } });
        let status = client.post(note).await.unwrap().status();
        assert_eq!(status, 202);
    };
    let (exchange, ()) = tokio::join!(call, cancel);
    assert!(
        !exchange.notifications.is_empty(),
        "the answer had become a stream (progress first)"
    );
    assert_eq!(
        exchange.outcome,
        Err(json!({ "message": "stream ended without an answer" })),
        "a cancelled request gets no answer, not even an error"
    );

    let mut after = before;
    for _ in 0..100 {
        after = stats().await;
        if after > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(after > before, "the upstream never saw the cancellation");
}
