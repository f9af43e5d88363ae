//! The HTTP+SSE face (protocol 2024-11-05) with a Rust client written against the
//! transport's text: `GET /sse`, the `endpoint` event, `POST /messages?sessionId=…`,
//! everything answered on the stream. Real processes: the gateway binary, a stdio and an
//! HTTP fixture upstream.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use switchboard_testkit::{Proc, binary_beside, spawn_fixture_http, spawn_gateway_http};
use tokio::sync::mpsc;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
/// How long a test waits for a message it expects.
const WAIT: Duration = Duration::from_secs(20);

/// One SSE event: its name and data.
#[derive(Debug)]
struct Event {
    name: String,
    data: String,
}

/// A 2024-11-05 HTTP+SSE client session.
struct SseClient {
    http: reqwest::Client,
    /// The POST URL the `endpoint` event named, resolved against the gateway's URL.
    endpoint: String,
    events: mpsc::UnboundedReceiver<Event>,
    next_id: u64,
}

/// Reads an event stream into a channel until it ends or the receiver is dropped.
fn events_of(response: reqwest::Response) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        loop {
            let chunk = tokio::select! {
                chunk = body.next() => chunk,
                () = tx.closed() => return,
            };
            let Some(Ok(chunk)) = chunk else { return };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let mut event = Event {
                    name: "message".into(),
                    data: String::new(),
                };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event.name = name.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(data.trim_start());
                        has_data = true;
                    }
                }
                if has_data && tx.send(event).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

impl SseClient {
    /// Opens the stream and reads the `endpoint` event (not yet initialized).
    async fn open(base: &str) -> SseClient {
        let http = reqwest::Client::new();
        let response = http
            .get(format!("{base}/sse"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("GET /sse");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut events = events_of(response);
        let first = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("endpoint event in time")
            .expect("endpoint event");
        assert_eq!(first.name, "endpoint", "the first event names the endpoint");
        assert!(first.data.starts_with("/messages?sessionId="), "{first:?}");
        SseClient {
            endpoint: format!("{base}{}", first.data),
            http,
            events,
            next_id: 1,
        }
    }

    /// Opens the stream and initializes the session.
    async fn connect(base: &str) -> SseClient {
        let mut client = SseClient::open(base).await;
        let init = client
            .request(
                "initialize",
                json!({ "protocolVersion": "2024-11-05", "capabilities": {},
                        "clientInfo": { "name": "sse-test", "version": "0" } }),
            )
            .await;
        assert_eq!(init["result"]["protocolVersion"], "2024-11-05", "{init}");
        let status = client
            .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        assert_eq!(status, 202);
        client
    }

    async fn post(&self, message: Value) -> u16 {
        self.http
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .json(&message)
            .send()
            .await
            .expect("POST /messages")
            .status()
            .as_u16()
    }

    /// Sends a request; returns its id.
    async fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let status = self
            .post(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        assert_eq!(
            status, 202,
            "a request is accepted; its answer is on the stream"
        );
        id
    }

    /// The next JSON message on the stream (keep-alive comments are not events).
    async fn next(&mut self) -> Option<Value> {
        let event = tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("a message in time")?;
        assert_eq!(event.name, "message", "{event:?}");
        Some(serde_json::from_str(&event.data).expect("JSON data"))
    }

    /// Waits for the response to `id`; returns it and the messages seen before it.
    async fn response(&mut self, id: u64) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let message = self.next().await.expect("stream open");
            if message["id"] == id && message.get("method").is_none() {
                return (message, before);
            }
            before.push(message);
        }
    }

    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).await;
        self.response(id).await.0
    }

    async fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
    }
}

fn fixture() -> std::path::PathBuf {
    binary_beside(GATEWAY, "switchboard-fixture")
}

/// A gateway with a stdio fixture (`st`) and an HTTP fixture (`ht`).
async fn gateway() -> (Proc, Proc) {
    let upstream = spawn_fixture_http(&fixture(), "http", &["--era", "legacy"])
        .await
        .expect("fixture http");
    let config = format!(
        "[gateway]\nrequest_timeout_ms = 30000\n\n\
         [servers.st]\ncommand = {:?}\nargs = [\"stdio\"]\n\n\
         [servers.ht]\nurl = {:?}\n",
        fixture().display().to_string(),
        upstream.url
    );
    let gateway = spawn_gateway_http(GATEWAY, &config)
        .await
        .expect("http gateway");
    (gateway, upstream)
}

/// The gateway's URL without the `/mcp` path.
fn base(gateway: &Proc) -> String {
    gateway.url.trim_end_matches("/mcp").to_owned()
}

async fn cancelled_count(client: &mut SseClient, server: &str) -> u64 {
    let stats = client.call(&format!("{server}__stats"), json!({})).await;
    stats["result"]["structuredContent"]["cancelled"]
        .as_u64()
        .unwrap_or(0)
}

/// Waits until `server`'s upstream has seen more than `before` cancellations.
async fn upstream_sees_cancel(client: &mut SseClient, server: &str, before: u64) {
    let mut after = before;
    for _ in 0..100 {
        after = cancelled_count(client, server).await;
        if after > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{server}: upstream never saw the cancellation ({before} → {after})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_client_lists_calls_gets_progress_and_cancels() {
    let (gateway, _upstream) = gateway().await;
    let mut client = SseClient::connect(&base(&gateway)).await;

    let tools = client.request("tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"st__echo"), "{names:?}");
    assert!(names.contains(&"ht__echo"), "{names:?}");

    for server in ["st", "ht"] {
        let echo = client
            .call(&format!("{server}__echo"), json!({ "text": "hi" }))
            .await;
        assert_eq!(
            echo["result"]["content"][0]["text"], "hi",
            "{server}: {echo}"
        );

        // Progress: on the stream, before the answer, with the client's token.
        let id = client
            .send(
                "tools/call",
                json!({ "name": format!("{server}__progress"),
                        "arguments": { "steps": 3, "interval_ms": 20 },
                        "_meta": { "progressToken": "tok-7" } }),
            )
            .await;
        let (answer, before) = client.response(id).await;
        assert!(answer.get("result").is_some(), "{server}: {answer}");
        let tokens: Vec<&Value> = before
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .map(|m| &m["params"]["progressToken"])
            .collect();
        assert!(!tokens.is_empty(), "{server}: no progress in {before:?}");
        assert!(tokens.iter().all(|t| *t == "tok-7"), "{server}: {tokens:?}");

        // Cancel: the upstream sees it, and the cancelled request gets no answer.
        let before = cancelled_count(&mut client, server).await;
        let slow = client
            .send(
                "tools/call",
                json!({ "name": format!("{server}__sleep"), "arguments": { "ms": 20_000 } }),
            )
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = client
            .post(
                json!({ "jsonrpc": "2.0", "method": "notifications/cancelled",
                          "params": { "requestId": slow, "reason": "test" } }),
            )
            .await;
        assert_eq!(status, 202);
        upstream_sees_cancel(&mut client, server, before).await;
        // Everything the stream carried meanwhile was answered in order; the cancelled
        // request's answer never comes, even after a later request is answered.
        let probe = client.send("ping", json!({})).await;
        let (_, seen) = client.response(probe).await;
        assert!(
            seen.iter().all(|m| m["id"] != slow),
            "{server}: a cancelled request was answered: {seen:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_stream_closing_ends_the_session_and_cancels_its_calls() {
    let (gateway, _upstream) = gateway().await;
    let base = base(&gateway);
    let mut watcher = SseClient::connect(&base).await;
    let before = cancelled_count(&mut watcher, "ht").await;

    let mut client = SseClient::connect(&base).await;
    client
        .send(
            "tools/call",
            json!({ "name": "ht__sleep", "arguments": { "ms": 20_000 } }),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let endpoint = client.endpoint.clone();
    let http = client.http.clone();
    drop(client); // closes the stream

    // The call in flight is cancelled upstream …
    upstream_sees_cancel(&mut watcher, "ht", before).await;
    // … and the session is gone.
    let mut status = 0;
    for _ in 0..100 {
        status = http
            .post(&endpoint)
            .header("content-type", "application/json")
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404, "the session ended with its stream");
    // The other session is untouched.
    let echo = watcher.call("st__echo", json!({ "text": "still" })).await;
    assert_eq!(echo["result"]["content"][0]["text"], "still");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_face_refuses_what_the_mcp_endpoint_refuses() {
    let (gateway, _upstream) = gateway().await;
    let base = base(&gateway);
    // A fresh connection per request: the gateway closes the one a refused body came on.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    // Origin check first, on both routes.
    let foreign = http
        .get(format!("{base}/sse"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let foreign = http
        .post(format!("{base}/messages?sessionId=x"))
        .header("origin", "https://evil.example")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    // No session, an unknown one.
    let missing = http
        .post(format!("{base}/messages"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let unknown = http
        .post(format!("{base}/messages?sessionId=nope"))
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A request before initialize; then a body over the limit; then bad JSON.
    let mut client = SseClient::open(&base).await;
    let early = client
        .post(json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .await;
    assert_eq!(early, 400);
    let huge = "x".repeat(5 * 1024 * 1024);
    let too_large = http.post(&client.endpoint).body(huge).send().await.unwrap();
    assert_eq!(too_large.status(), 413);
    let broken = http
        .post(&client.endpoint)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);

    // Initialize works after all that, once; a second initialize is refused.
    let init = client
        .request(
            "initialize",
            json!({ "protocolVersion": "2024-11-05", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "0" } }),
        )
        .await;
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    let again = client
        .post(json!({ "jsonrpc": "2.0", "id": 9, "method": "initialize", "params": {} }))
        .await;
    assert_eq!(again, 400);
    // A null id is refused like on /mcp.
    let null_id = client
        .post(json!({ "jsonrpc": "2.0", "id": null, "method": "ping" }))
        .await;
    assert_eq!(null_id, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_is_not_read_bounds_its_session() {
    let (gateway, _upstream) = gateway().await;
    let base = base(&gateway);
    // A client that reads the endpoint event, then never reads again (the response is
    // kept open and never polled: the socket fills up).
    let http = reqwest::Client::new();
    let mut stream = http
        .get(format!("{base}/sse"))
        .send()
        .await
        .expect("GET /sse");
    let mut head = String::new();
    while !head.contains("\n\n") {
        let chunk = stream.chunk().await.expect("read").expect("open");
        head.push_str(&String::from_utf8_lossy(&chunk));
    }
    let path = head
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .expect("endpoint data");
    let endpoint = format!("{base}{path}");
    let init = http
        .post(&endpoint)
        .json(
            &json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2024-11-05", "capabilities": {},
            "clientInfo": { "name": "stalled", "version": "0" } } }),
        )
        .send()
        .await
        .expect("initialize");
    assert_eq!(init.status(), 202);
    // Requests keep being accepted until the frames waiting for the reader and the
    // requests waiting to put theirs fill the session's bounds; then POSTs are refused
    // instead of growing the gateway.
    let mut refused = None;
    for id in 100..3_000u64 {
        let response = http
            .post(&endpoint)
            .json(&json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
                           "params": { "name": "st__huge", "arguments": { "bytes": 65_536 } } }))
            .send()
            .await
            .expect("POST");
        match response.status().as_u16() {
            202 => {}
            503 => {
                let body: Value = response.json().await.expect("JSON error");
                assert_eq!(body["error"]["code"], -31006, "{body}");
                refused = Some(id);
                break;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let refused = refused.expect("an unread stream must not take requests without bound");
    assert!(
        refused > 100 + 256,
        "refused at {refused}: before the in-flight bound"
    );
    let rss = std::fs::read_to_string(format!(
        "/proc/{}/status",
        gateway.child.id().unwrap_or_default()
    ))
    .ok()
    .and_then(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:").map(|v| v.trim().to_owned()))
    })
    .unwrap_or_default();
    eprintln!(
        "stalled stream: {} requests of 64 KiB accepted before 503; gateway RSS {rss}",
        refused - 100
    );
    // Other sessions are unaffected, and closing the stalled stream frees everything.
    let mut other = SseClient::connect(&base).await;
    let echo = other.call("st__echo", json!({ "text": "fine" })).await;
    assert_eq!(echo["result"]["content"][0]["text"], "fine");
    drop(stream);
    let mut status = 0;
    for _ in 0..100 {
        status = http
            .post(&endpoint)
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404, "the stalled session ended with its stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_belongs_to_the_identity_that_opened_it() {
    let fixture = fixture();
    let config = format!(
        "[access]\nresource = \"https://gw.test/mcp\"\n\n\
         [[access.keys]]\nid = \"alice\"\nkey = \"alice-key-0123456789\"\n\n\
         [[access.keys]]\nid = \"bob\"\nkey = \"bob-key-0123456789\"\n\n\
         [servers.st]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture.display().to_string()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config)
        .await
        .expect("http gateway");
    let base = base(&gateway);
    let http = reqwest::Client::new();
    let alice = "Bearer alice-key-0123456789";
    let bob = "Bearer bob-key-0123456789";

    // No credential: 401 with the challenge, as on /mcp.
    let anonymous = http.get(format!("{base}/sse")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));

    let mut stream = http
        .get(format!("{base}/sse"))
        .header("authorization", alice)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut head = String::new();
    while !head.contains("\n\n") {
        let chunk = stream.chunk().await.expect("read").expect("open");
        head.push_str(&String::from_utf8_lossy(&chunk));
    }
    let path = head
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .expect("endpoint data");
    let endpoint = format!("{base}{path}");
    let initialize = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2024-11-05", "capabilities": {},
        "clientInfo": { "name": "t", "version": "0" } } });
    let post = |credential: Option<&'static str>| {
        let mut request = http.post(&endpoint).json(&initialize);
        if let Some(credential) = credential {
            request = request.header("authorization", credential);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(post(None).await, 401, "anonymous POST");
    assert_eq!(
        post(Some(bob)).await,
        404,
        "another identity's session does not exist for it"
    );
    assert_eq!(post(Some(alice)).await, 202, "the opener's POST");
}
