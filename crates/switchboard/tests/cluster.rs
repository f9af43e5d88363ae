//! The cluster tier: a real `redis-server` (started here on a free loopback port, in a
//! temporary directory, killed at the end) and several real gateway processes sharing it
//! through `[cluster] redis`. Without `redis-server` the tier is skipped with a message,
//! except in CI (`CI` set), where its absence fails.
//!
//! Timings are printed (propagation of a hot-load), never asserted beyond generous
//! deadlines that only catch a change that never arrives.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{LegacyHttp, ModernHttp, Proc, binary_beside, spawn_gateway_http};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::sync::mpsc::UnboundedReceiver;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "test-admin-token-0123456789";
const ALICE: &str = "alice-key-0123456789";
const BOB: &str = "bob-key-0123456789abc";

/// A `redis-server` of this test, killed when dropped.
struct Redis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn redis_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    })
}

impl Redis {
    /// Starts one, or `None` (skip) when `redis-server` is not installed outside CI.
    async fn start() -> Option<Redis> {
        if redis_binary().is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed, and the cluster tier must run in CI (apt-get install redis-server)"
            );
            eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        redis.run().await;
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and directory: with an append-only file
    /// synced on every write, what was written before a stop is there after a restart.
    async fn run(&mut self) {
        let child = Command::new(redis_binary().unwrap())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if ping(self.port).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not answer PING");
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

async fn ping(port: u16) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    matches!(
        tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut reply)).await,
        Ok(Ok(_)) if &reply == b"+PONG\r\n"
    )
}

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

/// The config every replica of a test uses (as in `examples/cluster.toml`).
fn replica_config(redis: &Redis, prefix: &str, access: &str) -> String {
    format!(
        r#"[gateway]
admin_token = {TOKEN:?}

[cluster]
redis = {url:?}
key_prefix = {prefix:?}

{access}

[servers.fx]
command = {fixture:?}
args = ["stdio"]
"#,
        url = redis.url(),
        fixture = fixture(),
    )
}

const KEYS: &str = r#"[access]
anonymous = false

[[access.keys]]
id = "alice"
key = "alice-key-0123456789"

[[access.keys]]
id = "bob"
key = "bob-key-0123456789abc"
"#;

async fn replicas(config: &str, count: usize) -> Vec<Proc> {
    let mut replicas = Vec::new();
    for _ in 0..count {
        replicas.push(spawn_gateway_http(GATEWAY, config).await.unwrap());
    }
    replicas
}

async fn admin(
    gateway: &Proc,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let base = gateway.url.trim_end_matches("/mcp");
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for(rx: &mut UnboundedReceiver<Value>, method: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(message)) if message["method"] == method => return true,
            Ok(Some(_)) => continue,
            _ => return false,
        }
    }
    false
}

async fn echo(session: &LegacyHttp, text: &str) -> Value {
    session
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": text } }),
        )
        .await
        .result()["content"][0]["text"]
        .clone()
}

async fn session_status(url: &str, session: &str, key: &str, method: reqwest::Method) -> u16 {
    let mut request = reqwest::Client::new()
        .request(method.clone(), url)
        .header("x-api-key", key)
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", switchboard_testkit::client::LEGACY)
        .header("accept", "application/json, text/event-stream");
    if method == reqwest::Method::POST {
        request = request.json(&json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/list" }));
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_hot_loads_span_replicas() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let config = replica_config(&redis, "spans", KEYS);
    let replicas = replicas(&config, 3).await;
    let (r1, r2, r3) = (&replicas[0], &replicas[1], &replicas[2]);

    // A session opened on replica 1 continues on 2 and 3.
    let on1 = LegacyHttp::connect_with(&r1.url, &[("x-api-key", ALICE)])
        .await
        .unwrap();
    assert_eq!(echo(&on1, "one").await, "one");
    let on2 = on1.at(&r2.url);
    assert_eq!(echo(&on2, "two").await, "two");
    let on3 = on1.at(&r3.url);
    assert_eq!(echo(&on3, "three").await, "three");

    // A forged id, and another identity's id, are refused on a replica that never saw
    // them.
    assert_eq!(
        session_status(
            &r2.url,
            "0123456789abcdef0123456789abcdef",
            ALICE,
            reqwest::Method::POST
        )
        .await,
        404
    );
    let bob_on3 = LegacyHttp::connect_with(&r3.url, &[("x-api-key", BOB)])
        .await
        .unwrap();
    assert_eq!(
        session_status(&r1.url, &bob_on3.session, ALICE, reqwest::Method::POST).await,
        404
    );
    assert_eq!(
        session_status(&r1.url, &bob_on3.session, BOB, reqwest::Method::POST).await,
        200
    );

    // A hot-load through replica 2 (admin API) reaches the session on replica 3.
    let mut stream = on3.open_stream().await.unwrap();
    let started = Instant::now();
    let definition = json!({ "name": "rt", "server": { "command": fixture(), "args": ["stdio"] } });
    let (status, body) = admin(
        r2,
        reqwest::Method::POST,
        "/admin/servers",
        Some(definition),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let registered = started.elapsed();
    assert!(
        wait_for(
            &mut stream,
            "notifications/tools/list_changed",
            Duration::from_secs(20)
        )
        .await,
        "list_changed reached replica 3"
    );
    let propagated = started.elapsed();
    println!(
        "hot-load via replica 2: registered in {registered:?}, list_changed on replica 3 after {propagated:?} ({:?} after the admin answer)",
        propagated - registered
    );
    let names = on3.request("tools/list", json!({})).await.tool_names();
    assert!(names.contains(&"rt__echo".to_owned()), "{names:?}");
    let answer = on3
        .request(
            "tools/call",
            json!({ "name": "rt__echo", "arguments": { "text": "rt" } }),
        )
        .await;
    assert_eq!(answer.result()["content"][0]["text"], "rt");

    // Removed through replica 1: gone on replica 3 too.
    let (status, body) = admin(r1, reqwest::Method::DELETE, "/admin/servers/rt", None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    assert!(
        wait_for(
            &mut stream,
            "notifications/tools/list_changed",
            Duration::from_secs(20)
        )
        .await
    );
    let names = on3.request("tools/list", json!({})).await.tool_names();
    assert!(!names.contains(&"rt__echo".to_owned()), "{names:?}");

    // DELETE on replica 1: a replay is refused everywhere, including replica 3, which
    // holds the session in memory.
    assert_eq!(
        session_status(&r1.url, &on1.session, ALICE, reqwest::Method::DELETE).await,
        200
    );
    for replica in [r1, r2, r3] {
        assert_eq!(
            session_status(&replica.url, &on1.session, ALICE, reqwest::Method::POST).await,
            404
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_exact_across_replicas() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let access = format!(
        "{KEYS}\n[[access.limits]]\nper = \"principal\"\ntools = \"fx__add\"\nrequests = 7\nperiod_ms = 3600000\nburst = 7\n"
    );
    let config = replica_config(&redis, "limits", &access);
    let replicas = replicas(&config, 3).await;
    let clients: Vec<ModernHttp> = replicas
        .iter()
        .map(|r| ModernHttp::with_headers(&r.url, &[("x-api-key", ALICE)]))
        .collect();
    let mut passed = 0;
    let mut refused = 0;
    for round in 0..15 {
        let answer = clients[round % 3]
            .request(
                "tools/call",
                json!({ "name": "fx__add", "arguments": { "a": 1, "b": 2 } }),
            )
            .await;
        if answer.outcome.is_ok() {
            passed += 1;
        } else {
            let error = answer.error();
            assert_eq!(error["data"]["step"], "limits", "{error}");
            assert!(
                error["data"]["retryAfterMs"].as_u64().unwrap() > 0,
                "{error}"
            );
            refused += 1;
        }
    }
    assert_eq!(
        (passed, refused),
        (7, 8),
        "7 per hour for the whole cluster"
    );
    // Another principal has its own bucket.
    let bob = ModernHttp::with_headers(&replicas[1].url, &[("x-api-key", BOB)]);
    let answer = bob
        .request(
            "tools/call",
            json!({ "name": "fx__add", "arguments": { "a": 1, "b": 2 } }),
        )
        .await;
    assert!(answer.outcome.is_ok());
}

/// One `fx__add` call by `client`: `Ok(())`, or the error (which must be the budget's).
async fn budgeted_add(client: &ModernHttp) -> Result<(), Value> {
    let answer = client
        .request(
            "tools/call",
            json!({ "name": "fx__add", "arguments": { "a": 1, "b": 2 } }),
        )
        .await;
    if answer.outcome.is_ok() {
        Ok(())
    } else {
        let error = answer.error().clone();
        assert_eq!(error["data"]["step"], "budgets", "{error}");
        Err(error)
    }
}

/// Daily budgets count in Redis: 7 calls a day per principal hold for the cluster as a
/// whole (not 7 per replica), a replica started afresh knows the day's counts, and a
/// Redis that cannot be reached refuses budgeted calls (retryable) without forgetting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_budgets_are_exact_across_replicas_and_restarts() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let access = format!(
        "{KEYS}\n[[access.budgets]]\nper = \"principal\"\ntools = \"fx__add\"\ncalls = 7\n"
    );
    let config = replica_config(&redis, "budgets", &access);
    let mut replicas = replicas(&config, 3).await;
    let alice: Vec<ModernHttp> = replicas
        .iter()
        .map(|r| ModernHttp::with_headers(&r.url, &[("x-api-key", ALICE)]))
        .collect();
    let (mut passed, mut refused) = (0, 0);
    let started = Instant::now();
    for round in 0..15 {
        match budgeted_add(&alice[round % 3]).await {
            Ok(()) => passed += 1,
            Err(error) => {
                assert!(
                    error["message"].as_str().unwrap().contains("spent"),
                    "{error}"
                );
                assert!(
                    error["data"]["retryAfterMs"].as_u64().unwrap() > 0,
                    "{error}"
                );
                refused += 1;
            }
        }
    }
    println!(
        "15 budgeted calls over 3 replicas: {:?} per call (whole round trip)",
        started.elapsed() / 15
    );
    assert_eq!((passed, refused), (7, 8), "7 a day for the whole cluster");
    // Unbudgeted tools are not affected.
    assert_eq!(
        alice[1]
            .request(
                "tools/call",
                json!({ "name": "fx__echo", "arguments": { "text": "x" } })
            )
            .await
            .result()["content"][0]["text"],
        "x"
    );
    // Bob has his own count: 3 of his 7 on replica 2.
    let bob = ModernHttp::with_headers(&replicas[1].url, &[("x-api-key", BOB)]);
    for _ in 0..3 {
        budgeted_add(&bob).await.unwrap();
    }

    // Replica 1 restarts (its embedded database was in memory): the counts are Redis's.
    let restarted = switchboard_testkit::spawn_gateway_http(GATEWAY, &config)
        .await
        .unwrap();
    drop(std::mem::replace(&mut replicas[0], restarted));
    let alice = ModernHttp::with_headers(&replicas[0].url, &[("x-api-key", ALICE)]);
    budgeted_add(&alice).await.unwrap_err();
    let bob = ModernHttp::with_headers(&replicas[0].url, &[("x-api-key", BOB)]);
    for _ in 0..3 {
        budgeted_add(&bob).await.unwrap();
    }

    // Redis away: a budgeted call is refused, retryable, naming the store.
    redis.stop().await;
    let error = budgeted_add(&bob).await.unwrap_err();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("cluster store unavailable"),
        "{error}"
    );
    assert_eq!(error["data"]["retryable"], true, "{error}");
    // Back (append-only file): bob's seventh call, then his budget is spent.
    redis.run().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match budgeted_add(&bob).await {
            Ok(()) => break,
            Err(error) => assert!(
                Instant::now() < deadline
                    && error["message"]
                        .as_str()
                        .unwrap()
                        .contains("cluster store unavailable"),
                "{error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = budgeted_add(&bob).await.unwrap_err();
    assert!(
        error["message"].as_str().unwrap().contains("spent"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_then_restarted() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let access = format!(
        "{KEYS}\n[[access.limits]]\nper = \"principal\"\ntools = \"fx__add\"\nrequests = 100\nperiod_ms = 3600000\n"
    );
    let config = replica_config(&redis, "outage", &access);
    let replicas = replicas(&config, 2).await;
    let (r1, r2) = (&replicas[0], &replicas[1]);
    let session = LegacyHttp::connect_with(&r1.url, &[("x-api-key", ALICE)])
        .await
        .unwrap();
    assert_eq!(echo(&session, "before").await, "before");
    let mut stream = session.open_stream().await.unwrap();

    redis.stop().await;
    // Local work goes on: the session held by replica 1, and a stateless call.
    assert_eq!(echo(&session, "during").await, "during");
    let modern = ModernHttp::with_headers(&r2.url, &[("x-api-key", ALICE)]);
    let answer = modern
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "m" } }),
        )
        .await;
    assert_eq!(answer.result()["content"][0]["text"], "m");
    // Shared operations fail with clear errors, quickly.
    let started = Instant::now();
    let answer = modern
        .request(
            "tools/call",
            json!({ "name": "fx__add", "arguments": { "a": 1, "b": 2 } }),
        )
        .await;
    let error = answer.error();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("cluster store unavailable"),
        "{error}"
    );
    assert_eq!(error["data"]["retryable"], true, "{error}");
    let definition =
        json!({ "name": "late", "server": { "command": fixture(), "args": ["stdio"] } });
    let (status, body) = admin(
        r1,
        reqwest::Method::POST,
        "/admin/servers",
        Some(definition.clone()),
    )
    .await;
    assert_eq!(status, 507, "{body}");
    assert!(body.to_string().contains("Redis"), "{body}");
    let refused = LegacyHttp::connect_with(&r2.url, &[("x-api-key", ALICE)]).await;
    assert!(refused.is_err(), "no session opens while Redis is away");
    assert_eq!(
        session_status(&r2.url, &session.session, ALICE, reqwest::Method::POST).await,
        503
    );
    println!(
        "shared operations refused during the outage within {:?}",
        started.elapsed()
    );

    // Redis returns: everything shared works again, events included.
    redis.run().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = admin(
            r1,
            reqwest::Method::POST,
            "/admin/servers",
            Some(definition.clone()),
        )
        .await;
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "registration never recovered: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        wait_for(
            &mut stream,
            "notifications/tools/list_changed",
            Duration::from_secs(20)
        )
        .await
    );
    let on2 = session.at(&r2.url);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let names = on2.request("tools/list", json!({})).await.tool_names();
        if names.contains(&"late__echo".to_owned()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 2 never saw the registration: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = modern
        .request(
            "tools/call",
            json!({ "name": "fx__add", "arguments": { "a": 1, "b": 2 } }),
        )
        .await;
    assert!(answer.outcome.is_ok(), "{:?}", answer.error());
}

/// The router agent's chat memory on the shared Redis: a conversation begun on one
/// replica continues on another; another principal can neither read nor continue it
/// (from any replica); a deletion on one is seen by the other; the conversation carries
/// the configured TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_conversations_continue_on_another_replica_and_stay_with_their_principal() {
    use switchboard_testkit::llm::{ScriptedLlm, text};
    let Some(redis) = Redis::start().await else {
        return;
    };
    let llm = ScriptedLlm::start(vec![
        text("first answer"),
        text("second answer"),
        text("bob's answer"),
    ])
    .await;
    let prefix = "agentmem";
    let config = format!(
        "{}\n{}",
        replica_config(&redis, prefix, KEYS),
        llm.agent_section("max_tools = 512\nmemory_ttl_ms = 600000")
    );
    let replicas = replicas(&config, 2).await;
    let send = |replica: usize,
                method: reqwest::Method,
                path: String,
                body: Option<Value>,
                key: &'static str| {
        let base = replicas[replica].url.trim_end_matches("/mcp").to_owned();
        async move {
            let mut request = reqwest::Client::new()
                .request(method, format!("{base}{path}"))
                .bearer_auth(key);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let ask = |replica: usize, key: &'static str, text: &'static str| {
        send(
            replica,
            reqwest::Method::POST,
            "/query".into(),
            Some(json!({ "query": text, "conversation_id": "c1" })),
            key,
        )
    };
    let turn = |n: usize| -> Vec<Value> {
        llm.requests()[n]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "system")
            .cloned()
            .collect()
    };

    // Begun on replica 0, continued on replica 1: the model sees the first turn.
    let (status, first) = ask(0, ALICE, "my name is Alice").await;
    assert_eq!(status, 200, "{first}");
    let (status, second) = ask(1, ALICE, "what is my name?").await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        turn(1),
        [
            json!({ "role": "user", "content": "my name is Alice" }),
            json!({ "role": "assistant", "content": "first answer" }),
            json!({ "role": "user", "content": "what is my name?" }),
        ]
    );
    // Bob's "c1" is his own, on either replica.
    let (status, _) = ask(1, BOB, "what is her name?").await;
    assert_eq!(status, 200);
    assert_eq!(
        turn(2),
        [json!({ "role": "user", "content": "what is her name?" })]
    );
    let (status, alices) = send(
        1,
        reqwest::Method::GET,
        "/conversations/c1".into(),
        None,
        ALICE,
    )
    .await;
    assert_eq!(status, 200, "{alices}");
    let contents: Vec<&str> = alices["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "my name is Alice",
            "first answer",
            "what is my name?",
            "second answer"
        ]
    );
    let (status, bobs) = send(
        0,
        reqwest::Method::GET,
        "/conversations/c1".into(),
        None,
        BOB,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bobs["messages"].as_array().unwrap().len(), 2, "{bobs}");
    assert!(!bobs.to_string().contains("Alice"), "{bobs}");

    // In Redis, with the configured TTL.
    let keys = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "--scan",
            "--pattern",
            &format!("{prefix}:conv:*"),
        ])
        .output()
        .unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&keys.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(keys.len(), 2, "one per principal: {keys:?}");
    for key in &keys {
        let ttl = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "PTTL", key])
            .output()
            .unwrap();
        let ttl: i64 = String::from_utf8_lossy(&ttl.stdout).trim().parse().unwrap();
        assert!((1..=600_000).contains(&ttl), "{key}: {ttl}");
    }

    // Deleted on replica 0 by Alice: gone on replica 1; Bob's stays.
    let (status, _) = send(
        0,
        reqwest::Method::DELETE,
        "/conversations/c1".into(),
        None,
        ALICE,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        1,
        reqwest::Method::GET,
        "/conversations/c1".into(),
        None,
        ALICE,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        1,
        reqwest::Method::GET,
        "/conversations/c1".into(),
        None,
        BOB,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        1,
        reqwest::Method::DELETE,
        "/conversations/c1".into(),
        None,
        ALICE,
    )
    .await;
    assert_eq!(status, 404, "nothing of Alice's left to delete");
}

const CLUSTER_SECRET: &str = "cluster-secret-0123456789abcdef";

/// Every replica's config with one `cluster = "owned"` stdio server `sh`, whose fixture
/// carries `marker` on its command line (so its processes can be counted).
fn owned_config(redis: &Redis, prefix: &str, marker: &str) -> String {
    format!(
        r#"[gateway]
admin_token = {TOKEN:?}

[cluster]
redis = {url:?}
key_prefix = {prefix:?}
secret = {CLUSTER_SECRET:?}
lease_ms = 2000

[servers.sh]
command = {fixture:?}
args = ["stdio", "--name", {marker:?}]
cluster = "owned"

[servers.fx]
command = {fixture:?}
args = ["stdio"]
"#,
        url = redis.url(),
        fixture = fixture(),
    )
}

/// A name no other process on this machine has on its command line.
fn unique(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{label}-{}-{nanos}", std::process::id())
}

/// The processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let output = std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .expect("pgrep runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// Waits until exactly one process holds `marker`; returns its pid.
async fn exactly_one(marker: &str, within: Duration) -> u32 {
    let deadline = Instant::now() + within;
    loop {
        let found = processes_with(marker);
        if found.len() == 1 {
            return found[0];
        }
        assert!(
            Instant::now() < deadline,
            "expected exactly one `{marker}` process, found {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // pid (comm) state ppid …: the command may hold spaces, so read after the last ')'.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

/// Waits until `session` lists `tool` (a replica that does not run the server learns its
/// tools from the shared registry).
async fn lists(session: &LegacyHttp, tool: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = session.request("tools/list", json!({})).await.tool_names();
        if names.iter().any(|name| name == tool) {
            return;
        }
        assert!(Instant::now() < deadline, "{tool} never listed: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many calls the fixture behind `sh` saw cancelled.
async fn cancelled(session: &LegacyHttp) -> u64 {
    session
        .request(
            "tools/call",
            json!({ "name": "sh__stats", "arguments": {} }),
        )
        .await
        .result()["structuredContent"]["cancelled"]
        .as_u64()
        .unwrap()
}

async fn whoami(session: &LegacyHttp) -> Result<u64, Value> {
    let answer = session
        .request(
            "tools/call",
            json!({ "name": "sh__whoami", "arguments": {} }),
        )
        .await;
    answer
        .outcome
        .map(|result| result["structuredContent"]["pid"].as_u64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owned_stdio_server_runs_once_and_moves_when_its_owner_dies() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let marker = unique("owned");
    let config = owned_config(&redis, "owned", &marker);
    let mut replicas = replicas(&config, 3).await;
    let pid = exactly_one(&marker, Duration::from_secs(20)).await;
    let owner = replicas
        .iter()
        .position(|replica| replica.pid() == parent_of(pid))
        .expect("a replica runs the fixture");

    // Callable from every replica, always the same process.
    let mut sessions = Vec::new();
    for replica in &replicas {
        let session = LegacyHttp::connect(&replica.url).await.unwrap();
        lists(&session, "sh__whoami").await;
        assert_eq!(whoami(&session).await.unwrap(), u64::from(pid));
        sessions.push(session);
    }
    assert_eq!(processes_with(&marker), vec![pid], "still one process");
    let other = (owner + 1) % 3;
    let third = (owner + 2) % 3;

    // Progress from a forwarded call reaches the client, in order, with its token.
    let answer = sessions[other]
        .request(
            "tools/call",
            json!({ "name": "sh__progress", "arguments": { "steps": 3, "interval_ms": 20 },
                    "_meta": { "progressToken": "p-7" } }),
        )
        .await;
    assert_eq!(
        answer.result()["content"][0]["text"],
        "completed 3 steps",
        "{answer:?}"
    );
    let progress: Vec<&Value> = answer
        .notifications
        .iter()
        .filter(|n| n["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{:?}", answer.notifications);
    assert!(
        progress
            .iter()
            .all(|n| n["params"]["progressToken"] == "p-7")
    );
    assert_eq!(progress[2]["params"]["progress"], 3);

    // A server→client request (elicitation) travels to the calling replica's client and
    // its answer back to the owner.
    let elicited = sessions[other]
        .request(
            "tools/call",
            json!({ "name": "sh__test_elicitation", "arguments": { "message": "Who?" } }),
        )
        .await;
    let text = elicited.result()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        text.starts_with("User response: action=accept") && text.contains("tester"),
        "{text}"
    );

    // A modern client's input request, through a replica that does not own the server
    // (the owner parks the call and seals its state; the retry finds it there).
    let modern = ModernHttp::new(&replicas[third].url);
    let elicited = modern
        .request(
            "tools/call",
            json!({ "name": "sh__test_elicitation", "arguments": { "message": "Who?" } }),
        )
        .await;
    let text = elicited.result()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.starts_with("User response: action=accept"), "{text}");

    // A client that goes away cancels the forwarded call upstream, on the owner.
    let cancelled_before = cancelled(&sessions[owner]).await;
    let abandoned = modern.request(
        "tools/call",
        json!({ "name": "sh__sleep", "arguments": { "ms": 60000 } }),
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(700), abandoned)
            .await
            .is_err()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while cancelled(&sessions[owner]).await == cancelled_before {
        assert!(
            Instant::now() < deadline,
            "the upstream never heard the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The internal channel refuses a caller without the secret.
    let base = replicas[owner].url.trim_end_matches("/mcp").to_owned();
    let refused = reqwest::Client::new()
        .post(format!("{base}/cluster/call"))
        .bearer_auth("not-the-secret-0123456789")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // A call in flight through another replica when the owner is killed: a clear,
    // retryable error, soon.
    let in_flight = sessions[other].at(&replicas[other].url);
    let slow = tokio::spawn(async move {
        in_flight
            .request(
                "tools/call",
                json!({ "name": "sh__sleep", "arguments": { "ms": 60000 } }),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    replicas[owner].child.start_kill().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), slow)
        .await
        .expect("the call in flight on the dead owner ended")
        .unwrap();
    let error = answer.error();
    assert_eq!(error["data"]["retryable"], true, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("went away"),
        "{error}"
    );
    println!(
        "in-flight call failed {:?} after the kill",
        killed.elapsed()
    );

    // Another replica takes over within the lease time (and a margin); calls succeed.
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_pid = loop {
        match whoami(&sessions[third]).await {
            Ok(new_pid) => break new_pid,
            Err(error) => {
                assert_eq!(error["data"]["retryable"], true, "{error}");
                assert!(Instant::now() < deadline, "no takeover: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    println!(
        "owner killed: calls succeed again after {:?}",
        killed.elapsed()
    );
    assert_ne!(new_pid, u64::from(pid), "a new process");
    let survivor = exactly_one(&marker, Duration::from_secs(20)).await;
    assert_eq!(u64::from(survivor), new_pid);
    for index in [other, third] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match whoami(&sessions[index]).await {
                Ok(seen) => {
                    assert_eq!(seen, new_pid);
                    break;
                }
                Err(error) => assert!(Instant::now() < deadline, "{error}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(replicas.remove(owner));
}

/// Not a test of behaviour: the added latency of a call forwarded to the owner, printed
/// (`cargo test -p switchboard --test cluster forwarded_call_latency -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run by hand"]
async fn forwarded_call_latency() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let marker = unique("bench");
    let config = owned_config(&redis, "bench", &marker);
    let replicas = replicas(&config, 2).await;
    let pid = exactly_one(&marker, Duration::from_secs(20)).await;
    let owner = replicas
        .iter()
        .position(|replica| replica.pid() == parent_of(pid))
        .unwrap();
    let local = LegacyHttp::connect(&replicas[owner].url).await.unwrap();
    let remote = LegacyHttp::connect(&replicas[1 - owner].url).await.unwrap();
    lists(&remote, "sh__echo").await;
    let mut figures = Vec::new();
    for (label, session) in [("local", &local), ("forwarded", &remote)] {
        let call = json!({ "name": "sh__echo", "arguments": { "text": "x" } });
        for _ in 0..200 {
            session.request("tools/call", call.clone()).await.result();
        }
        let mut times = Vec::new();
        for _ in 0..2000 {
            let started = Instant::now();
            session.request("tools/call", call.clone()).await.result();
            times.push(started.elapsed());
        }
        times.sort();
        let (p50, p99) = (times[times.len() / 2], times[times.len() * 99 / 100]);
        println!("{label}: p50 {p50:?} p99 {p99:?}");
        figures.push(p50);
    }
    println!(
        "added by forwarding (p50): {:?}",
        figures[1].saturating_sub(figures[0])
    );
}
