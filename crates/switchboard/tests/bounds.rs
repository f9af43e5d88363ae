//! Bounded under abuse (issues 21 and 11): slow HTTP clients are dropped at their read
//! deadlines, one client address cannot hold every connection or session, `persisted`
//! is true only when the state file was written, `list_changed` floods are coalesced,
//! null request ids are refused, and `/metrics` and `/admin` check Origin and Host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::client::with_modern_meta;
use switchboard_testkit::{LegacyHttp, ModernHttp, Proc, Stdio, binary_beside, write_config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "bounds-admin-token-0123456789";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

/// A config with one fixture server `fx`, an admin token and extra settings.
fn config(gateway_extra: &str, listen_extra: &str) -> String {
    format!(
        "[gateway]\nadmin_token = {TOKEN:?}\n{gateway_extra}\n\n[listen]\n{listen_extra}\n\n\
         [servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture()
    )
}

async fn gateway(text: &str) -> Proc {
    switchboard_testkit::spawn_gateway_http(GATEWAY, text)
        .await
        .expect("gateway starts")
}

fn address(gateway: &Proc) -> SocketAddr {
    let authority = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp");
    authority.parse().expect("socket address")
}

fn url(gateway: &Proc, path: &str) -> String {
    gateway.url.replace("/mcp", path)
}

/// A client whose connections come from `source` (any 127.0.0.0/8 address is local).
fn client_from(source: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(source))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Proof that the gateway serves a client: a modern echo call succeeds.
async fn still_serves(url: &str) {
    let echo = ModernHttp::new(url)
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "alive" } }),
        )
        .await;
    assert_eq!(echo.result()["content"][0]["text"], "alive");
}

/// Waits until the server closes `stream` (EOF or error), sending one byte every 200 ms
/// when `trickle`; `None` if it is still open after `limit`.
async fn closed_within(mut stream: TcpStream, trickle: bool, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // a 408 answer, then the close
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if trickle && stream.write_all(b"x").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

async fn connect(address: SocketAddr, first_bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("connects");
    stream.write_all(first_bytes).await.expect("writes");
    stream
}

#[tokio::test]
async fn slow_headers_and_bodies_are_dropped_at_their_deadlines() {
    let gateway = gateway(&config(
        "",
        "header_read_timeout_ms = 1500\nbody_read_timeout_ms = 1500\n",
    ))
    .await;
    let address = address(&gateway);
    let headers = |length: usize| {
        format!(
            "POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\ncontent-length: {length}\r\n\r\n"
        )
    };
    let limit = Duration::from_secs(30);
    let mut slow = Vec::new();
    for _ in 0..5 {
        // Headers one byte at a time, never finished.
        let stream = connect(address, b"POST /mcp HTTP/1.1\r\nx-slow: ").await;
        slow.push(tokio::spawn(closed_within(stream, true, limit)));
        // A body announced at 100,000 bytes and trickled.
        let stream = connect(address, headers(100_000).as_bytes()).await;
        slow.push(tokio::spawn(closed_within(stream, true, limit)));
        // Headers, then nothing.
        let stream = connect(address, headers(100).as_bytes()).await;
        slow.push(tokio::spawn(closed_within(stream, false, limit)));
    }
    // Everyone else is served meanwhile.
    for _ in 0..3 {
        still_serves(&gateway.url).await;
    }
    for (index, task) in slow.into_iter().enumerate() {
        let closed = task.await.unwrap();
        assert!(
            closed.is_some(),
            "slow connection {index} (kind {}) still open after {limit:?}",
            index % 3
        );
    }
    still_serves(&gateway.url).await;
}

#[tokio::test]
async fn one_client_address_cannot_hold_every_connection() {
    let gateway = gateway(&config("", "max_connections_per_client = 4\n")).await;
    let address = address(&gateway);
    // Four idle connections from 127.0.0.1 are allowed; more are closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(address).await.unwrap());
    }
    let mut refused = 0;
    for _ in 0..6 {
        let stream = TcpStream::connect(address).await.unwrap();
        if closed_within(stream, false, Duration::from_secs(10))
            .await
            .is_some()
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 6, "connections over the cap are closed");
    // Another client address is served while 127.0.0.1 holds its cap.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let status = other
        .get(url(&gateway, "/metrics"))
        .send()
        .await
        .expect("another address connects")
        .status();
    assert_eq!(status, 200);
    // Freed slots can be used again.
    drop(held);
    let reopened = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut stream = TcpStream::connect(address).await.unwrap();
            let request = b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
            let _ = stream.write_all(request).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            if answer.starts_with(b"HTTP/1.1 200") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(reopened.is_ok(), "a freed slot serves again");
}

// ---------------------------------------------------------------- persistence

/// A mount made for one test, unmounted (lazily) when dropped.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], target: &Path) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(args)
        .arg(target)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(target.to_owned()))
}

async fn admin(
    gateway: &Proc,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url(gateway, path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn registration(name: &str) -> Value {
    json!({ "name": name, "server": { "command": fixture(), "args": ["stdio"] } })
}

async fn server_names(gateway: &Proc) -> Vec<String> {
    let (_, servers) = admin(gateway, reqwest::Method::GET, "/admin/servers", None).await;
    servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Files in the state directory other than the state file (temporary files).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !["switchboard-state.json", "switchboard.redb", "filler"].contains(&name.as_str())
        })
        .collect()
}

fn fill(dir: &Path) {
    let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
    let block = [0u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
}

/// The runtime registrations in the state dir's database (read beside the gateway).
fn stored_names(dir: &Path) -> Vec<String> {
    let db = switchboard_gateway::db::open_read_only(dir).expect("the database opens read-only");
    switchboard_gateway::registry::store::read_registered(&db)
        .expect("registrations read")
        .into_keys()
        .collect()
}

#[tokio::test]
async fn a_full_state_dir_refuses_registrations_truthfully() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    let Some(_mount) = mount(&["-t", "tmpfs", "-o", "size=256k", "tmpfs"], &dir) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root and mount permission)");
        return;
    };
    let gateway = gateway(&config(
        &format!("state_dir = {:?}", dir.display().to_string()),
        "",
    ))
    .await;
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(registration("one")),
    )
    .await;
    assert_eq!((status, &body["persisted"]), (201, &json!(true)), "{body}");

    fill(&dir);
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(registration("two")),
    )
    .await;
    assert_eq!(
        status, 507,
        "a registration that cannot be persisted fails: {body}"
    );
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not persisted"),
        "{body}"
    );
    assert!(
        !server_names(&gateway).await.contains(&"two".to_owned()),
        "not applied"
    );
    assert_eq!(
        leftovers(&dir),
        Vec::<String>::new(),
        "no temporary file left behind"
    );
    // Removing a registration that cannot be persisted is refused too (it would return
    // after a restart).
    let (status, body) = admin(
        &gateway,
        reqwest::Method::DELETE,
        "/admin/servers/one",
        None,
    )
    .await;
    assert_eq!(status, 507, "{body}");
    assert!(server_names(&gateway).await.contains(&"one".to_owned()));

    std::fs::remove_file(dir.join("filler")).unwrap();
    // redb refuses every write after an I/O error until the database is opened again:
    // still refused, truthfully, until a restart.
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(registration("three")),
    )
    .await;
    assert_eq!(
        status == 201,
        stored_names(&dir).contains(&"three".to_owned()),
        "answered as stored only if stored: {body}"
    );
    drop(gateway);
    let gateway = gateway_again(&dir).await;
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(registration("four")),
    )
    .await;
    assert_eq!((status, &body["persisted"]), (201, &json!(true)), "{body}");
    let stored = stored_names(&dir);
    assert!(
        stored.contains(&"one".to_owned()) && stored.contains(&"four".to_owned()),
        "{stored:?}"
    );
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

async fn gateway_again(dir: &Path) -> Proc {
    gateway(&config(
        &format!("state_dir = {:?}", dir.display().to_string()),
        "",
    ))
    .await
}

#[tokio::test]
async fn a_read_only_state_dir_refuses_registrations_truthfully() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    let gateway = gateway(&config(
        &format!("state_dir = {:?}", dir.display().to_string()),
        "",
    ))
    .await;
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(registration("one")),
    )
    .await;
    assert_eq!((status, &body["persisted"]), (201, &json!(true)), "{body}");
    let source = dir.display().to_string();
    let Some(_bind) = mount(&["--bind", &source], &dir)
        .map(|bind| {
            let remounted = Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            (bind, remounted)
        })
        .filter(|(_, remounted)| *remounted)
    else {
        eprintln!("skipped: cannot bind-mount read-only here (needs root and mount permission)");
        return;
    };
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(registration("two")),
    )
    .await;
    // The database file was opened for writing before the remount, so redb may still
    // commit through it: either way the answer must say what happened.
    let stored = stored_names(&dir);
    assert_eq!(
        status == 201,
        stored.contains(&"two".to_owned()),
        "answered as stored only if stored: {body}"
    );
    assert_eq!(
        status == 201,
        server_names(&gateway).await.contains(&"two".to_owned()),
        "applied only if stored: {body}"
    );
    assert!(stored.contains(&"one".to_owned()));
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

// ---------------------------------------------------------------- list_changed floods

async fn fixture_stats(url: &str) -> Value {
    let stats = ModernHttp::new(url)
        .request(
            "tools/call",
            json!({ "name": "fx__stats", "arguments": {} }),
        )
        .await;
    stats.result()["structuredContent"].clone()
}

async fn tool_names(url: &str) -> Vec<String> {
    let list = ModernHttp::new(url).request("tools/list", json!({})).await;
    list.result()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_list_changed_flood_is_coalesced() {
    let gateway = gateway(&config("", "")).await;
    let session = LegacyHttp::connect(&gateway.url).await.unwrap();
    let mut stream = session.open_stream().await.unwrap();
    let before = fixture_stats(&gateway.url).await["tools_lists"]
        .as_u64()
        .unwrap();
    let flood = session
        .request(
            "tools/call",
            json!({ "name": "fx__emit_list_changed", "arguments": { "kind": "tools", "repeat": 5000 } }),
        )
        .await;
    assert!(flood.outcome.is_ok(), "{:?}", flood.outcome);
    // The flip is seen, then the re-lists settle.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tool_names(&gateway.url)
        .await
        .contains(&"fx__dynamic_tool".to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "the change never reached the catalog"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut lists = 0;
    let mut stable_since = Instant::now();
    while stable_since.elapsed() < Duration::from_secs(2) {
        let now = fixture_stats(&gateway.url).await["tools_lists"]
            .as_u64()
            .unwrap()
            - before;
        if now != lists {
            lists = now;
            stable_since = Instant::now();
        }
        assert!(Instant::now() < deadline, "re-lists never settle");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut notifications = 0;
    while let Ok(message) = stream.try_recv() {
        if message["method"] == "notifications/tools/list_changed" {
            notifications += 1;
        }
    }
    let metrics = reqwest::get(url(&gateway, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let coalesced = metric(
        &metrics,
        "switchboard_list_changed_coalesced_total{server=\"fx\"}",
    );
    eprintln!(
        "5,000 list_changed: {lists} re-lists, {notifications} client notifications, {coalesced:?} coalesced"
    );
    assert!((1..=10).contains(&lists), "{lists} re-lists");
    assert!(
        (1..=10).contains(&notifications),
        "{notifications} notifications"
    );
    // The upstream connection's bounded event queue already drops part of a flood; what
    // reaches the gateway beyond one queued re-list is counted.
    assert!(
        coalesced.is_some_and(|c| c >= 100.0),
        "{coalesced:?} coalesced"
    );
}

// ---------------------------------------------------------------- null ids

#[tokio::test]
async fn a_request_with_a_null_id_is_invalid_on_both_faces() {
    let gateway = gateway(&config("", "")).await;
    let client = reqwest::Client::new();
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let response = legacy
        .post(json!({ "jsonrpc": "2.0", "id": null, "method": "ping" }))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!(-32600)),
        "legacy: {body}"
    );

    let params = with_modern_meta(json!({}));
    let response = client
        .post(&gateway.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header(
            "mcp-protocol-version",
            params["_meta"]["io.modelcontextprotocol/protocolVersion"]
                .as_str()
                .unwrap(),
        )
        .header("mcp-method", "tools/list")
        .json(&json!({ "jsonrpc": "2.0", "id": null, "method": "tools/list", "params": params }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!(-32600)),
        "modern: {body}"
    );

    let (_dir, path) = write_config(&config("", ""));
    let stdio = Stdio::spawn(GATEWAY, &path, false).await.unwrap();
    stdio
        .write_raw(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#)
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        stdio.unsolicited.lock().await.recv().await
    })
    .await
    .expect("stdio answers a null-id request")
    .unwrap();
    assert_eq!(answer["error"]["code"], -32600, "stdio: {answer}");
    assert_eq!(answer["id"], Value::Null);
}

// ---------------------------------------------------------------- safe defaults

async fn initialize_from(client: &reqwest::Client, url: &str) -> String {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": { "name": "bounds", "version": "0" } } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "initialize is answered");
    response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn ping_status(client: &reqwest::Client, url: &str, session: &str) -> u16 {
    client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn sessions_per_client_address_are_capped_shedding_the_oldest_idle() {
    let gateway = gateway(&config("", "max_sessions_per_client = 5\n")).await;
    let a = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let b = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let b_session = initialize_from(&b, &gateway.url).await;
    // A's oldest session is busy with a call: it is not shed while the call runs.
    let busy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let call = tokio::spawn(async move {
        let answer = busy
            .request(
                "tools/call",
                json!({ "name": "fx__sleep", "arguments": { "ms": 3000 } }),
            )
            .await;
        (busy, answer)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a_sessions = Vec::new();
    for _ in 0..30 {
        a_sessions.push(initialize_from(&a, &gateway.url).await);
    }
    let (busy, answer) = call.await.unwrap();
    assert!(
        answer.outcome.is_ok(),
        "the busy session's call finished: {:?}",
        answer.outcome
    );
    assert_eq!(
        ping_status(&a, &gateway.url, &busy.session).await,
        200,
        "busy session kept"
    );
    let mut alive = 0;
    for session in &a_sessions {
        if ping_status(&a, &gateway.url, session).await == 200 {
            alive += 1;
        }
    }
    assert_eq!(
        alive, 4,
        "A keeps its cap (5, one of them the busy session)"
    );
    for session in &a_sessions[26..] {
        assert_eq!(
            ping_status(&a, &gateway.url, session).await,
            200,
            "newest kept"
        );
    }
    assert_eq!(
        ping_status(&b, &gateway.url, &b_session).await,
        200,
        "B is not locked out"
    );
}

#[tokio::test]
async fn metrics_and_admin_check_origin_and_host() {
    let gateway = gateway(&config(
        "",
        "metrics_allowed_hosts = [\"scraper.internal\"]\n",
    ))
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str, headers: &[(&str, &str)], auth: Option<&str>| {
        let mut request = client.get(url(&gateway, path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(get("/metrics", &[], None).await, 200);
    assert_eq!(
        get("/metrics", &[("host", "evil.example")], None).await,
        403
    );
    assert_eq!(
        get("/metrics", &[("origin", "https://evil.example")], None).await,
        403
    );
    assert_eq!(get("/admin/servers", &[], Some(&bearer)).await, 200);
    assert_eq!(
        get("/admin/servers", &[("host", "evil.example")], Some(&bearer)).await,
        403
    );
    assert_eq!(
        get(
            "/admin/servers",
            &[("origin", "https://evil.example")],
            Some(&bearer)
        )
        .await,
        403
    );
    // A scraper's host is allowed for /metrics only.
    assert_eq!(
        get("/metrics", &[("host", "scraper.internal:9090")], None).await,
        200
    );
    assert_eq!(
        get(
            "/admin/servers",
            &[("host", "scraper.internal")],
            Some(&bearer)
        )
        .await,
        403
    );
    let mcp = client
        .post(&gateway.url)
        .header("host", "scraper.internal")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(mcp, 403);
}

#[tokio::test]
async fn the_admin_auth_scheme_is_case_insensitive() {
    let gateway = gateway(&config("", "")).await;
    let client = reqwest::Client::new();
    for (auth, expected) in [
        (format!("Bearer {TOKEN}"), 200),
        (format!("bearer {TOKEN}"), 200),
        (format!("BEARER {TOKEN}"), 200),
        (format!("Bearer  {TOKEN}"), 200),
        (format!("Basic {TOKEN}"), 401),
        (format!("Bearer {TOKEN}x"), 401),
        ("Bearer".to_owned(), 401),
    ] {
        let status = client
            .get(url(&gateway, "/admin/servers"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_eq!(status, expected, "{auth}");
    }
}
