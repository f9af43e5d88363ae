//! The tasks extension (`io.modelcontextprotocol/tasks`) through the real binary: an
//! upstream's tasks passed through with sealed, principal-bound ids (the fixture with
//! `--tasks`), and gateway-made tasks for a tool that knows nothing of tasks (the
//! fixture's `sleep`, with `task_after_ms`): reconnect and poll, cancel reaching the
//! upstream, expiry with the TTL, and one not-found answer for every id a caller cannot
//! use (another principal's, forged, expired).

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const EXTENSION: &str = "io.modelcontextprotocol/tasks";
const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789";

fn config(fixture_args: &str, tools: &str) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    format!(
        r#"
[access]
anonymous = false

[[access.keys]]
id = "alice"
key = "{ALICE}"

[[access.keys]]
id = "bob"
key = "{BOB}"

[servers.fx]
command = {fixture:?}
args = {fixture_args}
{tools}
"#,
        fixture = fixture.display().to_string(),
    )
}

/// A modern client with an API key; `tasks` says whether its requests declare the
/// extension.
struct Client {
    http: ModernHttp,
    tasks: bool,
    next: std::sync::atomic::AtomicU64,
}

impl Client {
    fn new(url: &str, key: &str, tasks: bool) -> Client {
        Client {
            http: ModernHttp::with_headers(url, &[("x-api-key", key)]),
            tasks,
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Sends one request; `Ok(result)` or `Err(error)`.
    async fn send(&self, method: &str, mut params: Value) -> Result<Value, Value> {
        let mut capabilities = json!({ "elicitation": {} });
        if self.tasks {
            capabilities["extensions"] = json!({ EXTENSION: {} });
        }
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": { "name": "tasks-test", "version": "0" },
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        });
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut builder = self.http.builder(Some(id), method, &params);
        if let Some(task) = params.get("taskId").and_then(Value::as_str) {
            builder = builder.header("mcp-name", task);
        }
        let response = builder.send().await.expect("request sent");
        let sse = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap_or_default().contains("event-stream"));
        let text = response.text().await.expect("body read");
        let message: Value = if sse {
            text.lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
                .find(|message| message.get("id").is_some())
                .expect("an answer on the stream")
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message["result"].clone()),
        }
    }

    /// Opens a `subscriptions/listen` stream for `filter` (declaring the extension when
    /// this client does) and returns its messages.
    async fn listen(&self, filter: Value) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
        let mut capabilities = json!({});
        if self.tasks {
            capabilities["extensions"] = json!({ EXTENSION: {} });
        }
        let params = json!({
            "notifications": filter,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": { "name": "tasks-test", "version": "0" },
                "io.modelcontextprotocol/clientCapabilities": capabilities,
            },
        });
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = self
            .http
            .builder(Some(id), "subscriptions/listen", &params)
            .send()
            .await
            .expect("listen sent");
        assert!(response.status().is_success(), "{}", response.status());
        switchboard_testkit::client::sse_messages(response)
    }

    async fn call(&self, tool: &str, arguments: Value) -> Value {
        self.send(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
        .unwrap_or_else(|error| panic!("{tool} failed: {error}"))
    }

    async fn task(&self, method: &str, id: &str) -> Result<Value, Value> {
        let mut params = json!({ "taskId": id });
        if method == "tasks/update" {
            params["inputResponses"] = json!({});
        }
        self.send(method, params).await
    }

    /// Polls until the task is terminal (or `limit` passes).
    async fn settled(&self, id: &str, limit: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let task = self.task("tasks/get", id).await.expect("tasks/get");
            let status = task["status"].as_str().unwrap_or_default().to_owned();
            if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
                return task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task still {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The next message on a listen stream, within `limit`.
async fn next_message(
    stream: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    limit: Duration,
) -> Value {
    tokio::time::timeout(limit, stream.recv())
        .await
        .expect("a message in time")
        .expect("the stream is open")
}

/// Task notifications on `stream` until one is terminal; returns that one.
async fn terminal_notification(
    stream: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
    id: &str,
) -> Value {
    loop {
        let message = next_message(stream, Duration::from_secs(20)).await;
        if message["method"] != "notifications/tasks" {
            continue;
        }
        let task = &message["params"];
        assert_eq!(task["taskId"], id, "the client's own id: {message}");
        if matches!(
            task["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return task.clone();
        }
    }
}

/// The same not-found answer for every unusable id.
fn assert_not_found(outcome: Result<Value, Value>, reference: &Value, what: &str) {
    let error = outcome.expect_err(what);
    assert_eq!(error["code"], -32602, "{what}: {error}");
    assert_eq!(&error, reference, "{what}: a different answer");
}

fn forge(id: &str) -> String {
    // Flip one character of the body: the seal no longer verifies.
    let mut bytes: Vec<char> = id.chars().collect();
    bytes[3] = if bytes[3] == 'A' { 'B' } else { 'A' };
    bytes.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tasks_pass_through_bound_to_their_principal() {
    let gateway = spawn_gateway_http(GATEWAY, &config(r#"["stdio", "--tasks"]"#, ""))
        .await
        .unwrap();
    let alice = Client::new(&gateway.url, ALICE, true);
    let bob = Client::new(&gateway.url, BOB, true);
    let plain = Client::new(&gateway.url, ALICE, false);

    // Advertised because the upstream offers it.
    let discover = alice.send("server/discover", json!({})).await.unwrap();
    assert!(
        discover["capabilities"]["extensions"][EXTENSION].is_object(),
        "{discover}"
    );

    let created = alice
        .call("fx__slow_compute", json!({ "seconds": 1, "label": "pt" }))
        .await;
    assert_eq!(created["resultType"], "task", "{created}");
    let id = created["taskId"].as_str().unwrap().to_owned();
    assert!(id.contains('.'), "the upstream's id is sealed: {id}");
    assert!(created.get("requestState").is_none());

    let task = alice.settled(&id, Duration::from_secs(20)).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["taskId"], id.as_str(), "answers carry the client's id");
    assert_eq!(task["result"]["content"][0]["text"], "computed pt in 1s");

    // Another principal, a forged id, a made-up one: one answer.
    let reference = alice
        .task("tasks/get", "tasks-conformance-nonexistent-1")
        .await
        .expect_err("unknown id");
    assert_not_found(
        bob.task("tasks/get", &id).await,
        &reference,
        "bob polls alice's task",
    );
    assert_not_found(
        bob.task("tasks/cancel", &id).await,
        &reference,
        "bob cancels alice's task",
    );
    assert_not_found(
        alice.task("tasks/get", &forge(&id)).await,
        &reference,
        "a forged id",
    );

    // Without the extension in the request: -32021 naming it.
    let refused = plain
        .task("tasks/get", &id)
        .await
        .expect_err("not negotiated");
    assert_eq!(refused["code"], -32021, "{refused}");
    assert!(refused["data"]["requiredCapabilities"]["extensions"][EXTENSION].is_object());
    let sync = plain
        .call("fx__slow_compute", json!({ "seconds": 0, "label": "sync" }))
        .await;
    assert_eq!(
        sync["resultType"], "complete",
        "no task without the extension: {sync}"
    );

    // Input inside a task: surfaced by tasks/get, answered by tasks/update.
    let created = alice
        .call("fx__confirm_delete", json!({ "filename": "a.txt" }))
        .await;
    let id = created["taskId"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let asked = loop {
        let task = alice.task("tasks/get", &id).await.unwrap();
        if task["status"] == "input_required" {
            break task;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never asked: {task}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let key = asked["inputRequests"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let ack = alice
        .send(
            "tasks/update",
            json!({ "taskId": id, "inputResponses": { key: { "action": "accept", "content": { "confirm": true } } } }),
        )
        .await
        .unwrap();
    assert_eq!(ack["resultType"], "complete");
    let done = alice.settled(&id, Duration::from_secs(10)).await;
    assert_eq!(
        done["result"]["content"][0]["text"], "deleted a.txt",
        "{done}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_are_not_advertised_without_an_upstream_that_offers_them() {
    let gateway = spawn_gateway_http(GATEWAY, &config(r#"["stdio"]"#, ""))
        .await
        .unwrap();
    let alice = Client::new(&gateway.url, ALICE, true);
    let discover = alice.send("server/discover", json!({})).await.unwrap();
    assert!(
        discover["capabilities"].get("extensions").is_none(),
        "{discover}"
    );
}

const SLEEP_AS_TASK: &str = r#"
[servers.fx.tools.sleep]
task_after_ms = 1000
task_ttl_ms = 9000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_becomes_a_gateway_task_that_outlives_its_connection_and_expires() {
    let gateway = spawn_gateway_http(GATEWAY, &config(r#"["stdio"]"#, SLEEP_AS_TASK))
        .await
        .unwrap();
    let id = {
        let alice = Client::new(&gateway.url, ALICE, true);
        let created = alice.call("fx__sleep", json!({ "ms": 5000 })).await;
        assert_eq!(created["resultType"], "task", "{created}");
        assert_eq!(created["status"], "working");
        assert_eq!(created["ttlMs"], 9000);
        // Durable before the answer: an immediate poll finds it.
        let task = alice
            .task("tasks/get", created["taskId"].as_str().unwrap())
            .await;
        assert_eq!(task.unwrap()["status"], "working");
        created["taskId"].as_str().unwrap().to_owned()
        // The client (and its connections) goes away here.
    };
    let created_at = tokio::time::Instant::now();
    let alice = Client::new(&gateway.url, ALICE, true);
    let task = alice.settled(&id, Duration::from_secs(20)).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["taskId"], id.as_str());
    assert!(task["result"]["content"].is_array(), "{task}");

    let reference = alice
        .task("tasks/get", "not-a-task")
        .await
        .expect_err("unknown id");
    let bob = Client::new(&gateway.url, BOB, true);
    assert_not_found(
        bob.task("tasks/get", &id).await,
        &reference,
        "bob polls alice's task",
    );
    assert_not_found(
        alice.task("tasks/get", &forge(&id)).await,
        &reference,
        "a forged id",
    );

    // A plain call without the extension is never a task: it just waits.
    let plain = Client::new(&gateway.url, ALICE, false);
    let answer = plain.call("fx__sleep", json!({ "ms": 1500 })).await;
    assert_eq!(answer["resultType"], "complete", "{answer}");

    // Past the TTL the task and its result are gone, with the same answer.
    let expiry = Duration::from_millis(9000 + 1500);
    tokio::time::sleep(expiry.saturating_sub(created_at.elapsed())).await;
    assert_not_found(
        alice.task("tasks/get", &id).await,
        &reference,
        "an expired task",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_gateway_task_cancels_the_upstream_call() {
    let gateway = spawn_gateway_http(GATEWAY, &config(r#"["stdio"]"#, SLEEP_AS_TASK))
        .await
        .unwrap();
    let alice = Client::new(&gateway.url, ALICE, true);
    let created = alice.call("fx__sleep", json!({ "ms": 60000 })).await;
    let id = created["taskId"].as_str().unwrap().to_owned();
    let ack = alice.task("tasks/cancel", &id).await.unwrap();
    assert_eq!(ack["resultType"], "complete");
    assert!(ack.get("taskId").is_none(), "an empty ack: {ack}");
    let task = alice.task("tasks/get", &id).await.unwrap();
    assert_eq!(task["status"], "cancelled", "{task}");
    // The fixture saw the cancellation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = alice.call("fx__stats", json!({})).await;
        if stats["structuredContent"]["cancelled"].as_u64() >= Some(1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstream never cancelled: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Cancelling again (terminal) is the same empty ack.
    let again = alice.task("tasks/cancel", &id).await.unwrap();
    assert_eq!(again["resultType"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_upstream_died_is_reported_failed() {
    let gateway = spawn_gateway_http(GATEWAY, &config(r#"["stdio", "--tasks"]"#, ""))
        .await
        .unwrap();
    let alice = Client::new(&gateway.url, ALICE, true);
    let created = alice
        .call(
            "fx__slow_compute",
            json!({ "seconds": 60, "label": "doomed" }),
        )
        .await;
    let id = created["taskId"].as_str().unwrap().to_owned();
    // The upstream exits (the call itself is never answered): its tasks die with it.
    let _ = alice
        .send(
            "tools/call",
            json!({ "name": "fx__crash", "arguments": {} }),
        )
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match alice.task("tasks/get", &id).await {
            Ok(task) if task["status"] == "failed" => {
                assert!(task["error"]["message"].is_string(), "{task}");
                assert_eq!(task["taskId"], id.as_str());
                break;
            }
            Ok(task) => assert_eq!(task["status"], "working", "{task}"),
            Err(error) => panic!("a lost task must read as failed, not {error}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still polling a dead task"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_task_status_notifications_reach_the_owner_only() {
    let gateway = spawn_gateway_http(GATEWAY, &config(r#"["stdio", "--tasks"]"#, ""))
        .await
        .unwrap();
    let alice = Client::new(&gateway.url, ALICE, true);
    let bob = Client::new(&gateway.url, BOB, true);
    let created = alice
        .call("fx__slow_compute", json!({ "seconds": 3, "label": "nt" }))
        .await;
    let id = created["taskId"].as_str().unwrap().to_owned();

    let mut stream = alice.listen(json!({ "taskIds": [id] })).await;
    let ack = next_message(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        ack["method"], "notifications/subscriptions/acknowledged",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["taskIds"],
        json!([id]),
        "{ack}"
    );
    // Bob names alice's id: not acknowledged, and he hears nothing of it.
    let mut bobs = bob.listen(json!({ "taskIds": [id] })).await;
    let bob_ack = next_message(&mut bobs, Duration::from_secs(10)).await;
    assert!(
        bob_ack["params"]["notifications"].get("taskIds").is_none(),
        "{bob_ack}"
    );

    let task = terminal_notification(&mut stream, &id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["result"]["content"][0]["text"], "computed nt in 3s");
    assert!(
        task["_meta"].is_object(),
        "tagged with the subscription: {task}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(message) = bobs.try_recv() {
        assert_ne!(message["method"], "notifications/tasks", "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_task_announces_its_outcome_to_a_listening_owner() {
    let gateway = spawn_gateway_http(GATEWAY, &config(r#"["stdio"]"#, SLEEP_AS_TASK))
        .await
        .unwrap();
    let alice = Client::new(&gateway.url, ALICE, true);
    let created = alice.call("fx__sleep", json!({ "ms": 3000 })).await;
    assert_eq!(created["resultType"], "task", "{created}");
    let id = created["taskId"].as_str().unwrap().to_owned();
    let mut stream = alice.listen(json!({ "taskIds": [id] })).await;
    let ack = next_message(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(
        ack["params"]["notifications"]["taskIds"],
        json!([id]),
        "{ack}"
    );
    let task = terminal_notification(&mut stream, &id).await;
    assert_eq!(task["status"], "completed", "{task}");
    assert!(task["result"]["content"].is_array(), "{task}");
}
