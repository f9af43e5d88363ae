//! Hot-loading: servers added, reloaded and removed through the watched file, the admin
//! API and meta-tools reach live sessions (legacy and modern) without reconnecting; calls
//! in flight survive reloads; a broken file keeps the last good config; dormant servers
//! start on demand and idle ones stop.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    LegacyHttp, ModernHttp, Proc, binary_beside, children_of, replace_file, spawn_gateway_http,
    zombies_of,
};
use tokio::sync::mpsc::UnboundedReceiver;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "test-admin-token-0123456789";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn server_block(name: &str, extra_args: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = [\"stdio\"{extra_args}]\n",
        fixture()
    )
}

fn config(gateway_extra: &str, servers: &[String]) -> String {
    format!(
        "[gateway]\nadmin_token = {TOKEN:?}\ndrain_timeout_ms = 10000\n{gateway_extra}\n\n{}",
        servers.join("\n")
    )
}

async fn wait_for(
    rx: &mut UnboundedReceiver<Value>,
    method: &str,
    within: Duration,
) -> Option<Value> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(message)) if message["method"] == method => return Some(message),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
    None
}

async fn tool_names(client: &ModernHttp) -> Vec<String> {
    client.request("tools/list", json!({})).await.tool_names()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_reach_live_sessions() {
    let gateway = spawn_gateway_http(GATEWAY, &config("", &[server_block("a", "")]))
        .await
        .unwrap();
    let path = gateway.config.clone().unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let mut listen = modern
        .listen(json!({ "toolsListChanged": true }))
        .await
        .unwrap();
    assert!(
        wait_for(
            &mut listen,
            "notifications/subscriptions/acknowledged",
            Duration::from_secs(5)
        )
        .await
        .is_some()
    );
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let mut stream = legacy.open_stream().await.unwrap();

    // Add b through the file (atomic rename, as editors save).
    let written = Instant::now();
    replace_file(
        &path,
        &config("", &[server_block("a", ""), server_block("b", "")]),
    );
    let note = wait_for(
        &mut listen,
        "notifications/tools/list_changed",
        Duration::from_secs(10),
    )
    .await;
    let took = written.elapsed();
    let note = note.expect("modern session told");
    assert!(note["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"].is_number());
    assert!(
        wait_for(
            &mut stream,
            "notifications/tools/list_changed",
            Duration::from_secs(10)
        )
        .await
        .is_some(),
        "legacy session told"
    );
    eprintln!(
        "config write → list_changed at the client: {took:?} (including the new server's start-up)"
    );
    assert!(tool_names(&modern).await.contains(&"b__echo".to_owned()));
    let echo = legacy
        .request(
            "tools/call",
            json!({ "name": "b__echo", "arguments": { "text": "new" } }),
        )
        .await;
    assert_eq!(
        echo.result()["content"][0]["text"],
        "new",
        "the same legacy session calls the new server"
    );

    // Change b's definition: reloaded (a new process), a untouched.
    let a_pid = modern
        .request(
            "tools/call",
            json!({ "name": "a__whoami", "arguments": {} }),
        )
        .await
        .result()["structuredContent"]["pid"]
        .clone();
    let b_pid = modern
        .request(
            "tools/call",
            json!({ "name": "b__whoami", "arguments": {} }),
        )
        .await
        .result()["structuredContent"]["pid"]
        .clone();
    replace_file(
        &path,
        &config(
            "",
            &[
                server_block("a", ""),
                server_block("b", ", \"--name\", \"b2\""),
            ],
        ),
    );
    let mut b_after = b_pid.clone();
    for _ in 0..100 {
        b_after = modern
            .request(
                "tools/call",
                json!({ "name": "b__whoami", "arguments": {} }),
            )
            .await
            .result()["structuredContent"]["pid"]
            .clone();
        if b_after != b_pid {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a_after = modern
        .request(
            "tools/call",
            json!({ "name": "a__whoami", "arguments": {} }),
        )
        .await
        .result()["structuredContent"]["pid"]
        .clone();
    assert_ne!(b_pid, b_after, "b reloaded");
    assert_eq!(a_pid, a_after, "a untouched");

    // Remove b.
    replace_file(&path, &config("", &[server_block("a", "")]));
    assert!(
        wait_for(
            &mut stream,
            "notifications/tools/list_changed",
            Duration::from_secs(10)
        )
        .await
        .is_some()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !tool_names(&modern)
            .await
            .iter()
            .any(|n| n.starts_with("b__"))
    );
    let gone = legacy
        .request(
            "tools/call",
            json!({ "name": "b__echo", "arguments": { "text": "x" } }),
        )
        .await;
    assert_eq!(gone.error()["code"], -32602);
    assert_eq!(zombies_of(gateway.pid()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_keeps_the_last_good_one() {
    let gateway = spawn_gateway_http(GATEWAY, &config("", &[server_block("a", "")]))
        .await
        .unwrap();
    let path = gateway.config.clone().unwrap();
    let client = ModernHttp::new(&gateway.url);
    replace_file(
        &path,
        &format!(
            "{}\n[servers.b]\ncomand = \"oops\"\n",
            config("", &[server_block("a", "")])
        ),
    );
    let mut status = Value::Null;
    for _ in 0..50 {
        (_, status) = admin(&gateway, reqwest::Method::GET, "/admin/config", None).await;
        if status["valid"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["valid"], false, "{status}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("servers.b.comand"),
        "{status}"
    );
    let echo = client
        .request(
            "tools/call",
            json!({ "name": "a__echo", "arguments": { "text": "still" } }),
        )
        .await;
    assert_eq!(echo.result()["content"][0]["text"], "still");
    replace_file(
        &path,
        &config("", &[server_block("a", ""), server_block("c", "")]),
    );
    let mut names = Vec::new();
    for _ in 0..100 {
        names = tool_names(&client).await;
        if names.contains(&"c__echo".to_owned()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(names.contains(&"c__echo".to_owned()), "fixed file applied");
    let (_, status) = admin(&gateway, reqwest::Method::GET, "/admin/config", None).await;
    assert_eq!(status["valid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_registers_persists_reloads_and_removes() {
    let state = tempfile::tempdir().unwrap();
    let extra = format!("state_dir = {:?}", state.path().display().to_string());
    let text = config(&extra, &[server_block("a", "")]);
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    let unauthorized = reqwest::Client::new()
        .get(gateway.url.replace("/mcp", "/admin/servers"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status().as_u16(), 401);

    let definition = json!({ "name": "rt", "server": { "command": fixture(), "args": ["stdio"] } });
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(definition.clone()),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["persisted"], true);
    assert_eq!(body["server"]["state"], "ready");
    let (status, _) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(definition),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers",
        Some(json!({ "name": "bad", "server": { "comand": "x" } })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(tool_names(&client).await.contains(&"rt__echo".to_owned()));

    let (_, servers) = admin(&gateway, reqwest::Method::GET, "/admin/servers", None).await;
    let rt = servers["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "rt")
        .unwrap()
        .clone();
    assert_eq!(rt["origin"], "runtime");
    let (status, _) = admin(
        &gateway,
        reqwest::Method::POST,
        "/admin/servers/rt/reload",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, tools) = admin(&gateway, reqwest::Method::GET, "/admin/tools", None).await;
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "rt__echo" && t["server"] == "rt" && t["tool"] == "echo")
    );

    // A restart keeps what the API registered.
    drop(client);
    drop(gateway);
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    assert!(
        tool_names(&client).await.contains(&"rt__echo".to_owned()),
        "registration persisted"
    );
    let (status, _) = admin(&gateway, reqwest::Method::DELETE, "/admin/servers/rt", None).await;
    assert_eq!(status, 200);
    assert!(!tool_names(&client).await.contains(&"rt__echo".to_owned()));
    let (status, _) = admin(&gateway, reqwest::Method::DELETE, "/admin/servers/rt", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tools_let_an_agent_steer() {
    let extra = format!(
        "meta_tools = [\"list_servers\", \"load_server\", \"reload_server\", \"unload_server\", \"call\", \"install_server\"]\n\
         meta_tools_by_default = true\nallow_commands = [{:?}]",
        fixture()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config(&extra, &[server_block("a", "")]))
        .await
        .unwrap();
    let client = LegacyHttp::connect(&gateway.url).await.unwrap();
    let mut stream = client.open_stream().await.unwrap();
    let list = client.request("tools/list", json!({})).await;
    let names: Vec<&str> = list.result()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        &names[..6],
        [
            "switchboard__list_servers",
            "switchboard__load_server",
            "switchboard__reload_server",
            "switchboard__unload_server",
            "switchboard__call",
            "switchboard__install_server"
        ]
    );

    let load = client
        .request("tools/call", json!({ "name": "switchboard__load_server", "arguments": { "name": "agent", "definition": { "command": fixture(), "args": ["stdio"] } } }))
        .await;
    assert_ne!(load.result()["isError"], true, "{:?}", load.outcome);
    assert!(
        wait_for(
            &mut stream,
            "notifications/tools/list_changed",
            Duration::from_secs(10)
        )
        .await
        .is_some()
    );
    let call = client
        .request("tools/call", json!({ "name": "switchboard__call", "arguments": { "server": "agent", "tool": "echo", "arguments": { "text": "via meta" } } }))
        .await;
    assert_eq!(call.result()["content"][0]["text"], "via meta");
    let servers = client
        .request(
            "tools/call",
            json!({ "name": "switchboard__list_servers", "arguments": {} }),
        )
        .await;
    let listed = servers.result()["structuredContent"]["servers"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        listed
            .iter()
            .any(|s| s["name"] == "agent" && s["state"] == "ready")
    );
    let reload = client
        .request(
            "tools/call",
            json!({ "name": "switchboard__reload_server", "arguments": { "name": "agent" } }),
        )
        .await;
    assert_ne!(reload.result()["isError"], true);
    let unload = client
        .request(
            "tools/call",
            json!({ "name": "switchboard__unload_server", "arguments": { "name": "agent" } }),
        )
        .await;
    assert_ne!(unload.result()["isError"], true);
    let install = client
        .request("tools/call", json!({ "name": "switchboard__install_server", "arguments": { "name": "x", "package": "pypi:mcp-server-time" } }))
        .await;
    assert_eq!(
        install.result()["isError"],
        true,
        "installs are off unless allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_lose_no_call() {
    let gateway = spawn_gateway_http(GATEWAY, &config("", &[server_block("a", "")]))
        .await
        .unwrap();
    let url = gateway.url.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let url = url.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let client = ModernHttp::new(&url);
            let (mut ok, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let text = format!("w{worker}-{ok}");
                let tool = if ok % 3 == 0 {
                    json!({ "name": "a__sleep", "arguments": { "ms": 30 } })
                } else {
                    json!({ "name": "a__echo", "arguments": { "text": text } })
                };
                let call = client.request("tools/call", tool).await;
                match &call.outcome {
                    Ok(result) if result["isError"] != true => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    for _ in 0..20 {
        let (status, body) = admin(
            &gateway,
            reqwest::Method::POST,
            "/admin/servers/a/reload",
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for worker in workers {
        let (ok, failed) = worker.await.unwrap();
        assert!(failed.is_empty(), "failed calls during reloads: {failed:?}");
        total += ok;
    }
    assert!(total > 20, "calls kept flowing ({total})");
    // Retired instances drain and exit: only one fixture remains.
    for _ in 0..100 {
        if children_of(gateway.pid()).len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(children_of(gateway.pid()).len(), 1, "old instances stopped");
    assert_eq!(zombies_of(gateway.pid()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_servers_start_on_demand_and_idle_ones_stop() {
    let state = tempfile::tempdir().unwrap();
    let extra = format!("state_dir = {:?}", state.path().display().to_string());
    let lazy = format!(
        "{}lazy = true\nidle_timeout_ms = 600\n",
        server_block("sleepy", "")
    );
    let text = config(&extra, &[lazy]);
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    assert!(
        tool_names(&client)
            .await
            .contains(&"sleepy__echo".to_owned()),
        "listed while dormant"
    );
    assert_eq!(children_of(gateway.pid()).len(), 0, "dormant: no process");
    let started = Instant::now();
    let echo = client
        .request(
            "tools/call",
            json!({ "name": "sleepy__echo", "arguments": { "text": "wake" } }),
        )
        .await;
    eprintln!(
        "dormant first call (including the server's start-up): {:?}",
        started.elapsed()
    );
    assert_eq!(echo.result()["content"][0]["text"], "wake");
    assert_eq!(children_of(gateway.pid()).len(), 1, "started by the call");
    let mut stopped = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if children_of(gateway.pid()).is_empty() {
            stopped = true;
            break;
        }
    }
    assert!(stopped, "idle server stopped");
    assert_eq!(zombies_of(gateway.pid()), 0);
    // A restart lists it from the persisted catalog without starting it.
    drop(client);
    drop(gateway);
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    assert_eq!(children_of(gateway.pid()).len(), 0);
    assert!(
        tool_names(&ModernHttp::new(&gateway.url))
            .await
            .contains(&"sleepy__echo".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_list_changes_are_forwarded_to_every_session() {
    let gateway = spawn_gateway_http(GATEWAY, &config("", &[server_block("a", "")]))
        .await
        .unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let mut listen = modern
        .listen(json!({ "toolsListChanged": true, "promptsListChanged": true }))
        .await
        .unwrap();
    assert!(
        wait_for(
            &mut listen,
            "notifications/subscriptions/acknowledged",
            Duration::from_secs(5)
        )
        .await
        .is_some()
    );
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    let mut stream = legacy.open_stream().await.unwrap();
    assert!(
        !tool_names(&modern)
            .await
            .contains(&"a__dynamic_tool".to_owned())
    );
    // The upstream itself adds a tool and says so.
    let toggled = legacy
        .request(
            "tools/call",
            json!({ "name": "a__emit_list_changed", "arguments": { "kind": "tools" } }),
        )
        .await;
    toggled.result();
    assert!(
        wait_for(
            &mut listen,
            "notifications/tools/list_changed",
            Duration::from_secs(10)
        )
        .await
        .is_some()
    );
    assert!(
        wait_for(
            &mut stream,
            "notifications/tools/list_changed",
            Duration::from_secs(10)
        )
        .await
        .is_some()
    );
    assert!(
        tool_names(&modern)
            .await
            .contains(&"a__dynamic_tool".to_owned()),
        "the catalog was refreshed"
    );
    let prompts = legacy
        .request(
            "tools/call",
            json!({ "name": "a__emit_list_changed", "arguments": { "kind": "prompts" } }),
        )
        .await;
    prompts.result();
    assert!(
        wait_for(
            &mut listen,
            "notifications/prompts/list_changed",
            Duration::from_secs(10)
        )
        .await
        .is_some()
    );
}

/// Meta-tools are each client's choice: `/mcp?meta_tools=on|off` over HTTP, `--meta-tools
/// on|off` for `switchboard stdio`, the config's `meta_tools_by_default` otherwise. A
/// client that does not see them cannot call them either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tools_are_each_clients_choice() {
    let meta = "switchboard__list_servers".to_owned();
    let extra = "meta_tools = [\"list_servers\"]\nmeta_tools_by_default = false";
    let text = config(extra, &[server_block("a", "")]);
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();

    let plain = ModernHttp::new(&gateway.url);
    assert!(!tool_names(&plain).await.contains(&meta), "off by default");
    let refused = plain
        .request("tools/call", json!({ "name": meta, "arguments": {} }))
        .await;
    assert!(refused.outcome.is_err(), "{:?}", refused.outcome);

    let opted_in = ModernHttp::new(&format!("{}?meta_tools=on", gateway.url));
    assert!(tool_names(&opted_in).await.contains(&meta));
    let servers = opted_in
        .request("tools/call", json!({ "name": meta, "arguments": {} }))
        .await;
    assert_eq!(
        servers.result()["structuredContent"]["servers"][0]["name"],
        "a"
    );

    let legacy = LegacyHttp::connect(&format!("{}?meta_tools=on", gateway.url))
        .await
        .unwrap();
    assert!(
        legacy
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .contains(&meta)
    );

    let bad = ModernHttp::new(&format!("{}?meta_tools=maybe", gateway.url))
        .request("tools/list", json!({}))
        .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.error()["message"]
            .as_str()
            .unwrap()
            .contains("meta_tools")
    );

    // stdio: the flag, and the default when it is absent.
    let (_dir, path) = switchboard_testkit::write_config(&text);
    let stdio_on =
        switchboard_testkit::Stdio::spawn_with(GATEWAY, &path, false, &["--meta-tools", "on"])
            .await
            .unwrap();
    assert!(
        stdio_on
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .contains(&meta)
    );
    let stdio_default = switchboard_testkit::Stdio::spawn(GATEWAY, &path, false)
        .await
        .unwrap();
    assert!(
        !stdio_default
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .contains(&meta)
    );
}

/// With `meta_tools_by_default = true` a client can still turn them off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_can_turn_meta_tools_off() {
    let meta = "switchboard__list_servers".to_owned();
    let text = config(
        "meta_tools = [\"list_servers\"]\nmeta_tools_by_default = true",
        &[server_block("a", "")],
    );
    let gateway = spawn_gateway_http(GATEWAY, &text).await.unwrap();
    assert!(
        tool_names(&ModernHttp::new(&gateway.url))
            .await
            .contains(&meta)
    );
    let off = ModernHttp::new(&format!("{}?meta_tools=off", gateway.url));
    assert!(!tool_names(&off).await.contains(&meta));
    let legacy = LegacyHttp::connect(&format!("{}?meta_tools=off", gateway.url))
        .await
        .unwrap();
    assert!(
        !legacy
            .request("tools/list", json!({}))
            .await
            .tool_names()
            .contains(&meta)
    );
}
