//! The admin endpoints behind the console's newer pages, without a browser: the live
//! event stream (`GET /admin/events`: what an event carries and leaves out, the
//! subscriber cap, a slow reader losing events counted and told), the recent errors,
//! `GET /admin/audit/verify`, stopping and starting a server, one tool's schema, and the
//! router agent as the admin (`/admin/agent…`) with and without `[agent]`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::llm::{ScriptedLlm, text};
use switchboard_testkit::{ModernHttp, Proc, binary_beside, spawn_gateway_http_at};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ADMIN: &str = "admin-token-0123456789";
const ALICE: &str = "alice-key-0123456789";
const PATIENCE: Duration = Duration::from_secs(20);

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

/// A gateway with the fixture as `fx`, an admin token, alice's key, an audit log, and
/// `extra` appended.
async fn gateway(dir: &std::path::Path, extra: &str) -> Proc {
    let text = format!(
        r#"
[gateway]
state_dir = {state:?}
admin_token = "{ADMIN}"

[access]
anonymous = false

[[access.keys]]
id = "alice"
key = "{ALICE}"

[audit]
signing_key = "{seed}"

[servers.fx]
command = {fixture:?}
args = ["stdio"]

{extra}
"#,
        state = dir.join("state").display().to_string(),
        seed = "33".repeat(32),
        fixture = fixture(),
    );
    let path = dir.join("switchboard.toml");
    std::fs::write(&path, text).unwrap();
    spawn_gateway_http_at(GATEWAY, &path, &[]).await.unwrap()
}

fn base(gateway: &Proc) -> String {
    gateway.url.trim_end_matches("/mcp").to_owned()
}

async fn admin(gateway: &Proc, method: reqwest::Method, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", base(gateway)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An open event stream, parsed into (event, data) pairs.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(gateway: &Proc) -> Result<Events, u16> {
        let response = reqwest::Client::new()
            .get(format!("{}/admin/events", base(gateway)))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        if !response.status().is_success() {
            return Err(response.status().as_u16());
        }
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut events = Events {
            response,
            buffer: String::new(),
        };
        let (event, _) = events.next().await;
        assert_eq!(event, "ready");
        Ok(events)
    }

    async fn next(&mut self) -> (String, Value) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = name.to_owned();
                    } else if let Some(text) = line.strip_prefix("data: ") {
                        data.push_str(text);
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                return (event, serde_json::from_str(&data).unwrap());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("no event in time")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `call` event for `method`.
    async fn call(&mut self, method: &str) -> Value {
        loop {
            let (event, data) = self.next().await;
            if event == "call" && data["method"] == method {
                return data;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_stream_live_to_admins_without_their_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway(dir.path(), "").await;
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);

    // Not for clients: alice's key is known but has no admin role.
    let refused = reqwest::Client::new()
        .get(format!("{}/admin/events", base(&gateway)))
        .header("x-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let mut events = Events::open(&gateway).await.unwrap();
    let called = alice
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "private words" } }),
        )
        .await;
    assert!(called.outcome.is_ok(), "{:?}", called.outcome);
    let event = events.call("tools/call").await;
    assert_eq!(
        (
            &event["server"],
            &event["tool"],
            &event["principal"],
            &event["outcome"]
        ),
        (
            &json!("fx"),
            &json!("echo"),
            &json!("key:alice"),
            &json!("ok")
        ),
        "{event}"
    );
    assert!(event["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(event["seq"].as_u64().unwrap() >= 1);
    let shown = event.to_string();
    assert!(!shown.contains("private words"), "{shown}");
    let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
    for key in &keys {
        assert!(
            [
                "seq",
                "time_ms",
                "method",
                "server",
                "tool",
                "principal",
                "outcome",
                "error",
                "duration_ms"
            ]
            .contains(&key.as_str()),
            "unexpected field {key}"
        );
    }

    // A failure streams too, and stays in the recent errors after the stream is gone.
    let failed = alice
        .request("tools/call", json!({ "name": "fx__nope", "arguments": {} }))
        .await;
    assert!(failed.outcome.is_err());
    let event = events.call("tools/call").await;
    assert_eq!(event["outcome"], "rejected", "{event}");
    assert!(
        event["error"].as_str().unwrap().contains("fx__nope"),
        "{event}"
    );
    let tool_error = alice
        .request(
            "tools/call",
            json!({ "name": "fx__add", "arguments": { "a": "one", "b": 2 } }),
        )
        .await;
    assert!(tool_error.outcome.is_ok());
    assert_eq!(events.call("tools/call").await["outcome"], "tool_error");
    drop(events);

    // Nobody watches now; failures are still remembered.
    let (_, before) = admin(&gateway, reqwest::Method::GET, "/admin/events/errors").await;
    let waited = Instant::now() + PATIENCE;
    while admin(&gateway, reqwest::Method::GET, "/admin/events/errors")
        .await
        .1["subscribers"]
        != 0
    {
        assert!(Instant::now() < waited, "the subscriber never left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = alice
        .request(
            "tools/call",
            json!({ "name": "fx__again", "arguments": {} }),
        )
        .await;
    assert!(again.outcome.is_err());
    let (status, errors) = admin(&gateway, reqwest::Method::GET, "/admin/events/errors").await;
    assert_eq!(status, 200);
    let errors = errors["errors"].as_array().unwrap().clone();
    assert_eq!(
        errors.len(),
        before["errors"].as_array().unwrap().len() + 1,
        "{errors:?}"
    );
    assert!(
        errors[0]["error"].as_str().unwrap().contains("fx__again"),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e["outcome"] == "tool_error" && e["tool"] == "add"),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_caps_subscribers_and_counts_what_a_slow_reader_loses() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway(dir.path(), "").await;

    // At most 16 subscribers; one more is refused until one leaves.
    let mut open = Vec::new();
    for _ in 0..16 {
        open.push(Events::open(&gateway).await.unwrap());
    }
    assert_eq!(Events::open(&gateway).await.err(), Some(503));
    drop(open);
    let deadline = Instant::now() + PATIENCE;
    let reader = loop {
        match Events::open(&gateway).await {
            Ok(reader) => break reader,
            Err(503) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status}"),
        }
    };
    drop(reader);

    // A reader that does not read: a raw connection with a small receive buffer.
    let address: std::net::SocketAddr = base(&gateway)
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(address).await.unwrap();
    slow.write_all(
        format!(
            "GET /admin/events HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while admin(&gateway, reqwest::Method::GET, "/admin/events/errors")
        .await
        .1["subscribers"]
        != 1
    {
        assert!(
            Instant::now() < deadline,
            "the slow reader never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let long_name = format!("fx__{}", "n".repeat(480));
    let long_name = long_name.as_str();
    let mut dropped = 0;
    for round in 0..1000 {
        // Refused at once (an unknown tool), each still a completed request; the long
        // name makes each event large (its error message is kept, up to 512 bytes), so
        // the socket's buffers fill sooner.
        let calls = (0..50)
            .map(|_| client.request("tools/call", json!({ "name": long_name, "arguments": {} })));
        futures::future::join_all(calls).await;
        let (_, errors) = admin(&gateway, reqwest::Method::GET, "/admin/events/errors").await;
        dropped = errors["dropped_total"].as_u64().unwrap();
        if dropped > 0 {
            eprintln!("events started to drop after {} calls", (round + 1) * 50);
            break;
        }
    }
    assert!(dropped > 0, "a reader that never reads lost nothing");
    // Reading now, the reader is told how many it lost.
    let mut seen = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&seen);
        if let Some(at) = text.find("event: dropped\ndata: ") {
            let rest = &text[at + "event: dropped\ndata: ".len()..];
            let data: Value = serde_json::from_str(rest.split('\n').next().unwrap()).unwrap();
            assert!(data["dropped"].as_u64().unwrap() >= 1, "{data}");
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let read = tokio::time::timeout(left, slow.read(&mut chunk))
            .await
            .expect("no dropped event")
            .unwrap();
        assert!(read > 0, "the stream ended");
        seen.extend_from_slice(&chunk[..read]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_verifies_and_servers_stop_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway(dir.path(), "").await;
    let alice = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ALICE)]);
    let called = alice
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "audited" } }),
        )
        .await;
    assert!(called.outcome.is_ok());

    // The chain verifies against the gateway's own key.
    let deadline = Instant::now() + PATIENCE;
    let verify = loop {
        let (status, verify) = admin(&gateway, reqwest::Method::GET, "/admin/audit/verify").await;
        assert_eq!(status, 200, "{verify}");
        if verify["verified"].as_u64().unwrap() >= 1 || Instant::now() > deadline {
            break verify;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["verified"].as_u64().unwrap() >= 1, "{verify}");
    assert!(
        verify["summary"].as_str().unwrap().starts_with("ok:"),
        "{verify}"
    );
    assert_eq!(verify["first_bad_seq"], Value::Null);

    // One tool with its schema.
    let (status, tool) = admin(&gateway, reqwest::Method::GET, "/admin/tools/fx__add").await;
    assert_eq!(status, 200, "{tool}");
    assert_eq!(tool["server"], "fx");
    assert_eq!(
        tool["definition"]["inputSchema"]["required"],
        json!(["a", "b"]),
        "{tool}"
    );
    let (status, _) = admin(&gateway, reqwest::Method::GET, "/admin/tools/fx__none").await;
    assert_eq!(status, 404);

    // Stop: dormant, no process, still registered and listed; start: running again.
    let state = |servers: &Value| servers["servers"][0].clone();
    let (status, stopped) = admin(&gateway, reqwest::Method::POST, "/admin/servers/fx/stop").await;
    assert_eq!((status, &stopped), (200, &json!({ "stopped": "fx" })));
    let (_, servers) = admin(&gateway, reqwest::Method::GET, "/admin/servers").await;
    assert_eq!(state(&servers)["state"], "dormant", "{servers}");
    assert_eq!(state(&servers)["pids"], json!([]), "{servers}");
    let (_, tools) = admin(&gateway, reqwest::Method::GET, "/admin/tools").await;
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "fx__echo")
    );
    let (status, started) = admin(&gateway, reqwest::Method::POST, "/admin/servers/fx/start").await;
    assert_eq!((status, &started), (200, &json!({ "started": "fx" })));
    let (_, servers) = admin(&gateway, reqwest::Method::GET, "/admin/servers").await;
    assert_eq!(state(&servers)["state"], "ready", "{servers}");
    assert_eq!(state(&servers)["pids"].as_array().unwrap().len(), 1);
    for action in ["stop", "start"] {
        let (status, body) = admin(
            &gateway,
            reqwest::Method::POST,
            &format!("/admin/servers/nope/{action}"),
        )
        .await;
        assert_eq!(status, 404, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_answers_the_admin_and_says_when_it_is_not_configured() {
    // Without [agent]: a clear answer naming the section.
    let dir = tempfile::tempdir().unwrap();
    let plain = gateway(dir.path(), "").await;
    let (status, agent) = admin(&plain, reqwest::Method::GET, "/admin/agent").await;
    assert_eq!(status, 200);
    assert_eq!(agent["configured"], false);
    assert!(
        agent["error"].as_str().unwrap().contains("[agent]"),
        "{agent}"
    );
    let refused = reqwest::Client::new()
        .post(format!("{}/admin/agent/query", base(&plain)))
        .bearer_auth(ADMIN)
        .json(&json!({ "query": "hello" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "agent_not_configured", "{body}");
    drop(plain);

    // With the scripted model: the admin asks, and the conversation is the admin's.
    let llm = ScriptedLlm::start(vec![text("hello, operator")]).await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = gateway(dir.path(), &llm.agent_section("")).await;
    let (_, agent) = admin(&gateway, reqwest::Method::GET, "/admin/agent").await;
    assert_eq!(agent["configured"], true, "{agent}");
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/ui/admin/agent/query", base(&gateway)))
        .bearer_auth(ADMIN)
        .json(&json!({ "query": "hello" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["answer"], "hello, operator", "{answer}");
    let id = answer["conversation_id"].as_str().unwrap().to_owned();
    let (status, conversation) = admin(
        &gateway,
        reqwest::Method::GET,
        &format!("/admin/agent/conversations/{id}"),
    )
    .await;
    assert_eq!(status, 200, "{conversation}");
    assert!(conversation.to_string().contains("hello, operator"));
    // Alice cannot read it through /conversations (another principal's).
    let other = reqwest::Client::new()
        .get(format!("{}/conversations/{id}", base(&gateway)))
        .header("x-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    let (status, _) = admin(
        &gateway,
        reqwest::Method::DELETE,
        &format!("/admin/agent/conversations/{id}"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin(
        &gateway,
        reqwest::Method::GET,
        &format!("/admin/agent/conversations/{id}"),
    )
    .await;
    assert_eq!(status, 404);
}
