//! The WebSocket face (`GET /ws`) on the real binary, driven by a real WebSocket client
//! (tokio-tungstenite): a legacy session and modern requests over one socket, progress and
//! cancellation, the Origin/Host check and API-key identity at the upgrade, and the
//! message-size bound and text-only rule.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard_testkit::client::with_modern_meta;
use switchboard_testkit::{Proc, binary_beside, spawn_gateway_http};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const API_KEY: &str = "ws-test-key-0123456789abcdef";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn config(extra: &str) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    format!(
        "{extra}\n[servers.fixture]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture.display().to_string()
    )
}

fn ws_url(gateway: &Proc) -> String {
    gateway
        .url
        .replace("http://", "ws://")
        .trim_end_matches("/mcp")
        .to_owned()
        + "/ws"
}

/// Connects with extra headers; the HTTP status when the upgrade is refused.
async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(error) => panic!("connect: {error}"),
    }
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON-RPC message from the gateway (bounded wait).
async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a message within 20 s")
            .expect("the socket is open")
            .expect("a readable message");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The answer to request `id`, and the notifications that came before it.
async fn answer(socket: &mut Socket, id: u64) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let message = next(socket).await;
        if message["id"] == id && message.get("method").is_none() {
            return (message, before);
        }
        before.push(message);
    }
}

async fn initialize(socket: &mut Socket) {
    send(
        socket,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "ws-test", "version": "1"}
        }}),
    )
    .await;
    let (reply, _) = answer(socket, 1).await;
    assert!(reply["result"]["serverInfo"].is_object(), "{reply}");
    send(
        socket,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
}

/// The close frame the gateway ends the connection with.
async fn close_code(socket: &mut Socket) -> CloseCode {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("the gateway closes within 20 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => panic!("read: {error}"),
        }
    }
}

#[tokio::test]
async fn websocket_session_lists_calls_reports_progress_and_cancels() {
    let gateway = spawn_gateway_http(GATEWAY, &config("")).await.unwrap();
    let mut socket = connect(&ws_url(&gateway), &[]).await.unwrap();
    initialize(&mut socket).await;

    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let (list, _) = answer(&mut socket, 2).await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"fixture__echo"), "{names:?}");

    // A pretty-printed message (raw newlines between tokens) is one message.
    let pretty = serde_json::to_string_pretty(&json!({
        "jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "fixture__echo", "arguments": {"text": "over a\nwebsocket"}}
    }))
    .unwrap();
    assert!(pretty.contains('\n'));
    socket.send(Message::Text(pretty.into())).await.unwrap();
    let (echo, _) = answer(&mut socket, 3).await;
    assert_eq!(
        echo["result"]["structuredContent"]["text"],
        "over a\nwebsocket"
    );

    // Progress notifications arrive on the socket before the result.
    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "fixture__progress", "arguments": {"steps": 3},
            "_meta": {"progressToken": "p-1"}
        }}),
    )
    .await;
    let (done, before) = answer(&mut socket, 4).await;
    assert!(done["result"].is_object(), "{done}");
    let progress: Vec<&Value> = before
        .iter()
        .filter(|message| message["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{before:?}");
    assert!(
        progress
            .iter()
            .all(|message| message["params"]["progressToken"] == "p-1")
    );

    // A cancelled call gets no answer; the socket goes on serving.
    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "fixture__sleep", "arguments": {"ms": 60000}
        }}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 5, "reason": "test"}}),
    )
    .await;
    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {
            "name": "fixture__echo", "arguments": {"text": "after"}
        }}),
    )
    .await;
    let (after, before) = answer(&mut socket, 6).await;
    assert_eq!(after["result"]["structuredContent"]["text"], "after");
    assert!(
        before.iter().all(|message| message["id"] != 5),
        "{before:?}"
    );

    // A modern (stateless) request on the same socket, with its own `_meta`.
    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
               "params": with_modern_meta(json!({"name": "fixture__echo", "arguments": {"text": "modern"}}))}),
    )
    .await;
    let (modern, _) = answer(&mut socket, 7).await;
    assert_eq!(
        modern["result"]["structuredContent"]["text"], "modern",
        "{modern}"
    );

    // Garbage gets a parse error, not a closed socket.
    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    let error = next(&mut socket).await;
    assert_eq!(error["error"]["code"], -32700, "{error}");
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn websocket_upgrade_checks_origin_host_and_api_key() {
    let access = format!("[access]\n[[access.keys]]\nid = \"browser\"\nkey = {API_KEY:?}\n");
    let gateway = spawn_gateway_http(GATEWAY, &config(&access)).await.unwrap();
    let url = ws_url(&gateway);
    let key = ("x-api-key", API_KEY);

    assert_eq!(connect(&url, &[]).await.err(), Some(401), "no credential");
    assert_eq!(
        connect(&url, &[("x-api-key", "wrong-key-0123456789abcdef")])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        connect(&url, &[key, ("origin", "https://attacker.example")])
            .await
            .err(),
        Some(403),
        "a foreign Origin (DNS rebinding, cross-site page)"
    );
    assert_eq!(
        connect(&url, &[key, ("host", "attacker.example")])
            .await
            .err(),
        Some(403),
        "a foreign Host"
    );

    let mut socket = connect(&url, &[key, ("origin", "http://localhost:3000")])
        .await
        .expect("a local page with a valid key");
    initialize(&mut socket).await;
    send(
        &mut socket,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "fixture__echo", "arguments": {"text": "with a key"}
        }}),
    )
    .await;
    let (echo, _) = answer(&mut socket, 2).await;
    assert_eq!(echo["result"]["structuredContent"]["text"], "with a key");
}

#[tokio::test]
async fn websocket_bounds_message_size_and_refuses_binary() {
    let gateway = spawn_gateway_http(GATEWAY, &config("[listen]\nmax_body_bytes = 4096\n"))
        .await
        .unwrap();
    let url = ws_url(&gateway);

    let mut socket = connect(&url, &[]).await.unwrap();
    initialize(&mut socket).await;
    let big = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "fixture__echo", "arguments": {"text": "x".repeat(10_000)}
    }});
    send(&mut socket, big).await;
    assert_eq!(close_code(&mut socket).await, CloseCode::Size);

    let mut socket = connect(&url, &[]).await.unwrap();
    socket
        .send(Message::Binary(b"{}".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut socket).await, CloseCode::Unsupported);

    // The gateway still serves new sockets.
    let mut socket = connect(&url, &[]).await.unwrap();
    initialize(&mut socket).await;
}
