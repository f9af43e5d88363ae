//! Cross-session routing: what an upstream sends outside a call reaches the sessions it
//! belongs to and no other. Log messages of a shared legacy server, list changes of a
//! per-session instance, a legacy server's resource updates for a modern listener, and a
//! legacy server's `roots/list` asked while a call that finishes first is in flight.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    LegacyHttp, ModernHttp, Stdio, binary_beside, spawn_gateway_http, write_config,
};
use tokio::sync::mpsc::UnboundedReceiver;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const PATIENCE: Duration = Duration::from_secs(15);

fn fixture_server(args: &[&str], extra: &str) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[gateway]\nrequest_timeout_ms = 20000\n\n[servers.fx]\ncommand = {:?}\nargs = [\"stdio\", {}]\n{extra}\n",
        fixture.display().to_string(),
        args.join(", ")
    )
}

/// The next message on a stream that satisfies `wanted`, within `PATIENCE`.
async fn next_matching(
    stream: &mut UnboundedReceiver<Value>,
    wanted: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.recv()).await {
            Ok(Some(message)) if wanted(&message) => return Some(message),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// Everything a stream delivers until it stays quiet for `quiet`.
async fn drain(stream: &mut UnboundedReceiver<Value>, quiet: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(quiet, stream.recv()).await {
        seen.push(message);
    }
    seen
}

fn is_method(message: &Value, method: &str) -> bool {
    message["method"] == method
}

fn log_lines(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| is_method(m, "notifications/message"))
        .map(|m| m["params"]["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn tool_names(exchange: &switchboard_testkit::Exchange) -> Vec<String> {
    exchange.result()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Defect 6: client A calls a tool that logs over 100 ms on a shared legacy stdio server
/// while client B's slow call is in flight. None of A's log lines may reach B; A, which
/// asked for logging, gets all of them (in its call, or on its session stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_messages_never_cross_into_another_sessions_call() {
    let gateway = spawn_gateway_http(GATEWAY, &fixture_server(&["--era", "legacy"], ""))
        .await
        .unwrap();
    let a = LegacyHttp::connect(&gateway.url).await.unwrap();
    let b = LegacyHttp::connect(&gateway.url).await.unwrap();
    let mut a_stream = a.open_stream().await.unwrap();
    a.request("logging/setLevel", json!({ "level": "info" }))
        .await
        .result();
    for round in 0..3 {
        let a_call = a.request(
            "tools/call",
            json!({ "name": "fx__test_tool_with_logging", "arguments": {} }),
        );
        let b_call = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            b.request(
                "tools/call",
                json!({ "name": "fx__sleep", "arguments": { "ms": 400 } }),
            )
            .await
        };
        let (a_done, b_done) = tokio::join!(a_call, b_call);
        a_done.result();
        b_done.result();
        assert_eq!(
            log_lines(&b_done.notifications),
            Vec::<String>::new(),
            "round {round}: B's call received A's log lines"
        );
        let mut a_lines = log_lines(&a_done.notifications);
        while a_lines.len() < 3 {
            let Some(message) =
                next_matching(&mut a_stream, |m| is_method(m, "notifications/message")).await
            else {
                break;
            };
            a_lines.extend(log_lines(&[message]));
        }
        assert_eq!(
            a_lines,
            [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed"
            ],
            "round {round}: A's log lines"
        );
    }
}

/// Defect 7: a `per_session` server's instance that announces a new tool changes its own
/// session's view only; the other session is not told and does not list it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_session_list_changed_reaches_only_its_session() {
    for era in ["legacy", "modern"] {
        let config = fixture_server(&["--era", era], "sharing = \"per_session\"");
        let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
        let a = LegacyHttp::connect(&gateway.url).await.unwrap();
        let b = LegacyHttp::connect(&gateway.url).await.unwrap();
        let mut a_stream = a.open_stream().await.unwrap();
        let mut b_stream = b.open_stream().await.unwrap();
        for client in [&a, &b] {
            client
                .request(
                    "tools/call",
                    json!({ "name": "fx__whoami", "arguments": {} }),
                )
                .await
                .result();
        }
        drain(&mut b_stream, Duration::from_millis(200)).await;
        a.request(
            "tools/call",
            json!({ "name": "fx__emit_list_changed", "arguments": { "kind": "tools" } }),
        )
        .await
        .result();
        let told = next_matching(&mut a_stream, |m| {
            is_method(m, "notifications/tools/list_changed")
        })
        .await;
        assert!(told.is_some(), "{era}: A was not told of its own new tool");
        let a_tools = tool_names(&a.request("tools/list", json!({})).await);
        assert!(
            a_tools.iter().any(|t| t == "fx__dynamic_tool"),
            "{era}: A does not list its new tool: {a_tools:?}"
        );
        let called = a
            .request(
                "tools/call",
                json!({ "name": "fx__dynamic_tool", "arguments": {} }),
            )
            .await;
        assert_eq!(
            called.result()["content"][0]["text"],
            "dynamic_tool called",
            "{era}"
        );
        let b_tools = tool_names(&b.request("tools/list", json!({})).await);
        assert!(
            !b_tools.iter().any(|t| t == "fx__dynamic_tool"),
            "{era}: B lists A's tool: {b_tools:?}"
        );
        let b_seen = drain(&mut b_stream, Duration::from_millis(500)).await;
        assert!(
            !b_seen
                .iter()
                .any(|m| is_method(m, "notifications/tools/list_changed")),
            "{era}: B was told of A's change: {b_seen:?}"
        );
    }
}

/// The exposed URI of the fixture's watched resource.
async fn watched_uri(client: &ModernHttp) -> String {
    let listed = client.request("resources/list", json!({})).await;
    listed.result()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .find(|uri| uri.contains("watched-resource"))
        .expect("the watched resource is listed")
        .to_owned()
}

/// A modern listen stream subscribed to `uri`, once acknowledged.
async fn listen_to(client: &ModernHttp, uri: &str) -> UnboundedReceiver<Value> {
    let mut listen = client
        .listen(json!({ "resourceSubscriptions": [uri] }))
        .await
        .unwrap();
    let acknowledged = next_matching(&mut listen, |m| {
        is_method(m, "notifications/subscriptions/acknowledged")
    })
    .await;
    assert!(acknowledged.is_some(), "listen was not acknowledged");
    listen
}

/// Defect 9: a modern listener's resource subscription on a legacy server subscribes
/// upstream and receives its updates; a legacy session holding and releasing the same URI
/// meanwhile does not end the listener's subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modern_listener_receives_a_legacy_servers_resource_updates() {
    let gateway = spawn_gateway_http(GATEWAY, &fixture_server(&["--era", "legacy"], ""))
        .await
        .unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let uri = watched_uri(&modern).await;
    let mut listen = listen_to(&modern, &uri).await;
    let updated = |m: &Value| {
        is_method(m, "notifications/resources/updated") && m["params"]["uri"] == uri.as_str()
    };
    let emit = || {
        modern.request(
            "tools/call",
            json!({ "name": "fx__emit_resource_updated", "arguments": {} }),
        )
    };
    emit().await.result();
    assert!(
        next_matching(&mut listen, updated).await.is_some(),
        "the listener never heard the update"
    );
    // A legacy session subscribes and unsubscribes the same URI: the listener still holds it.
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        legacy.request(method, json!({ "uri": uri })).await.result();
    }
    emit().await.result();
    assert!(
        next_matching(&mut listen, updated).await.is_some(),
        "a legacy session's unsubscribe ended the listener's subscription"
    );
    // The server restarts: the subscription is renewed on the new process.
    let _ = modern
        .request(
            "tools/call",
            json!({ "name": "fx__crash", "arguments": {} }),
        )
        .await;
    let deadline = Instant::now() + PATIENCE;
    let mut heard = false;
    while !heard && Instant::now() < deadline {
        let _ = emit().await;
        heard = matches!(
            tokio::time::timeout(Duration::from_millis(300), listen.recv()).await,
            Ok(Some(message)) if updated(&message)
        );
    }
    assert!(heard, "the restarted server was not subscribed again");
}

/// What a roots test drives: change the client's roots and tell the gateway.
trait RootsClient {
    fn set_roots(&self, result: Value);
    async fn roots_changed(&self);
    async fn request(&self, method: &str, params: Value) -> switchboard_testkit::Exchange;
}

impl RootsClient for Stdio {
    fn set_roots(&self, result: Value) {
        Stdio::set_roots(self, result)
    }
    async fn roots_changed(&self) {
        self.notify("notifications/roots/list_changed", json!({}))
            .await
            .unwrap();
    }
    async fn request(&self, method: &str, params: Value) -> switchboard_testkit::Exchange {
        Stdio::request(self, method, params).await
    }
}

impl RootsClient for LegacyHttp {
    fn set_roots(&self, result: Value) {
        LegacyHttp::set_roots(self, result)
    }
    async fn roots_changed(&self) {
        self.post(json!({ "jsonrpc": "2.0", "method": "notifications/roots/list_changed" }))
            .await
            .unwrap();
    }
    async fn request(&self, method: &str, params: Value) -> switchboard_testkit::Exchange {
        LegacyHttp::request(self, method, params).await
    }
}

/// Changes the client's roots and calls tools at once, 20 times; returns the changes the
/// server never learned.
async fn lost_roots_changes(client: &impl RootsClient) -> Vec<usize> {
    let mut lost = Vec::new();
    for change in 0..20 {
        let root = format!("file:///change-{change}");
        client.set_roots(json!({ "roots": [{ "uri": root, "name": "r" }] }));
        client.roots_changed().await;
        // Calls of different lengths: the server's `roots/list` lands in one of them, which
        // may well finish before the client has answered.
        let calls = (1..=4).map(|ms| {
            client.request(
                "tools/call",
                json!({ "name": "fx__sleep", "arguments": { "ms": ms } }),
            )
        });
        for call in futures::future::join_all(calls).await {
            call.result();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let known = client
                .request(
                    "tools/call",
                    json!({ "name": "fx__whoami", "arguments": {} }),
                )
                .await;
            if known.result()["structuredContent"]["roots"] == json!([root]) {
                break;
            }
            if Instant::now() > deadline {
                lost.push(change);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    lost
}

/// Defect 10: a legacy client changes its roots and calls a tool at once; the server's
/// `roots/list` is attributed to a call that may finish first, and must still be answered
/// with the client's roots. stdio face.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_changes_followed_by_calls_are_never_lost_stdio() {
    let (_dir, config) = write_config(&fixture_server(
        &["--era", "legacy", "--track-roots", "3"],
        "",
    ));
    let client = Stdio::spawn(GATEWAY, &config, false).await.unwrap();
    assert_eq!(lost_roots_changes(&client).await, Vec::<usize>::new());
}

/// Defect 10 on the HTTP face: the call's response stream closes when it completes, so a
/// `roots/list` relayed on it cannot be asked there any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_changes_followed_by_calls_are_never_lost_http() {
    let config = fixture_server(&["--era", "legacy", "--track-roots", "3"], "");
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let client = std::sync::Arc::new(LegacyHttp::connect(&gateway.url).await.unwrap());
    // The session stream: where the gateway asks for roots outside any call.
    let mut stream = client.open_stream().await.unwrap();
    let responder = {
        let client = client.clone();
        tokio::spawn(async move {
            while let Some(message) = stream.recv().await {
                if message.get("id").is_some() && message.get("method").is_some() {
                    let _ = client.answer(&message).await;
                }
            }
        })
    };
    let lost = lost_roots_changes(&*client).await;
    responder.abort();
    assert_eq!(lost, Vec::<usize>::new());
}

/// `node` and server-everything's script from `scripts/install-interop`'s `tools.env`, or
/// `None` (after saying why) when the interop tier should skip (see `tests/interop.rs`).
fn server_everything() -> Option<(String, String)> {
    let setting = std::env::var("SWITCHBOARD_INTEROP").unwrap_or_default();
    let dir = std::env::var("SWITCHBOARD_TOOLS_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/switchboard/tools",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let found = std::fs::read_to_string(format!("{dir}/tools.env"))
        .ok()
        .and_then(|text| {
            let value = |key: &str| {
                text.lines()
                    .find_map(|line| line.strip_prefix(&format!("{key}=")))
                    .map(str::to_owned)
            };
            let node = value("INTEROP_NODE")?;
            let script = std::fs::canonicalize(value("INTEROP_EVERYTHING")?).ok()?;
            Some((node, script.display().to_string()))
        });
    match (found, setting.as_str()) {
        (_, "0") => None,
        (None, "1") => panic!("server-everything is not installed in {dir}"),
        (None, _) => {
            eprintln!("skipping interop test: no server-everything in {dir}");
            None
        }
        (found, _) => found,
    }
}

/// Defect 9 against a third-party server: server-everything (legacy, stdio) sends
/// simulated updates for subscribed resources; a modern listener hears them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_modern_listener_receives_server_everything_resource_updates() {
    let Some((node, everything)) = server_everything() else {
        return;
    };
    let config = format!(
        "[gateway]\nrequest_timeout_ms = 30000\n\n[servers.everything]\ncommand = {node:?}\nargs = [{everything:?}, \"stdio\"]\nera = \"legacy\"\n"
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let listed = modern.request("resources/list", json!({})).await;
    let uri = listed.result()["resources"][0]["uri"]
        .as_str()
        .expect("server-everything lists resources")
        .to_owned();
    let mut listen = listen_to(&modern, &uri).await;
    modern
        .request(
            "tools/call",
            json!({ "name": "everything__toggle-subscriber-updates", "arguments": {} }),
        )
        .await
        .result();
    let updated = next_matching(&mut listen, |m| {
        is_method(m, "notifications/resources/updated") && m["params"]["uri"] == uri.as_str()
    })
    .await;
    assert!(
        updated.is_some(),
        "no update from server-everything reached the listener"
    );
}
