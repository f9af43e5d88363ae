//! Discovery (`[[discovery]]`) with the real gateway and fixture: a directory of MCP
//! Registry `server.json` documents (a package run through a configured runner, a remote
//! over Streamable HTTP) hot-loads like the config file — added, changed, removed, a
//! broken file keeping its last good server, the config file winning a name — and
//! Kubernetes Services followed through a scripted API server.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    ModernHttp, Proc, binary_beside, replace_file, spawn_fixture_http, spawn_gateway_http_at,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "test-admin-token-0123456789";

fn fixture() -> std::path::PathBuf {
    binary_beside(GATEWAY, "switchboard-fixture")
}

async fn tool_names(client: &ModernHttp) -> Vec<String> {
    client.request("tools/list", json!({})).await.tool_names()
}

/// Polls `tools/list` until `done` holds (or 20 s pass) and returns the last names.
async fn tools_until(client: &ModernHttp, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names = tool_names(client).await;
        if done(&names) || Instant::now() > deadline {
            return names;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn discovery(gateway: &Proc) -> Value {
    let base = gateway.url.trim_end_matches("/mcp");
    reqwest::Client::new()
        .get(format!("{base}/admin/discovery"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls `/admin/discovery` until `done` holds for the first source (or 20 s pass).
async fn status_until(gateway: &Proc, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = discovery(gateway).await["sources"][0].clone();
        if done(&status) || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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

async fn call_text(client: &ModernHttp, tool: &str, arguments: Value) -> String {
    let answer = client
        .request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await;
    answer.result()["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn package_document(extra_args: Value) -> Value {
    let mut arguments = vec![json!({ "type": "positional", "value": "stdio" })];
    arguments.extend(extra_args.as_array().cloned().unwrap_or_default());
    json!({
        "$schema": "https://static.modelcontextprotocol.io/schemas/2025-10-17/server.schema.json",
        "name": "io.example/pkg",
        "version": "1.0.0",
        "packages": [{
            "registryType": "npm",
            "identifier": "@example/fixture-mcp",
            "version": "1.0.0",
            "transport": { "type": "stdio" },
            "packageArguments": arguments,
            "environmentVariables": [
                { "name": "DISCO_TOKEN", "isRequired": true, "isSecret": true },
                { "name": "DISCO_REGION", "value": "eu-${DISCO_TOKEN}" }
            ]
        }]
    })
}

fn write_json(path: &Path, value: &Value) {
    replace_file(path, &serde_json::to_string_pretty(value).unwrap());
}

/// The package's registry type (`npm`) cannot point at a local binary, so the source's
/// runner for it is configured to be our fixture (`[discovery.runners.npm]`: what an
/// operator does to run packages with another launcher); the package's arguments
/// (`stdio`, `--extra-tools`) and environment come from the `server.json` as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_directory_hot_loads_packages_and_remotes() {
    let remote = spawn_fixture_http(&fixture(), "http", &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let servers = dir.path().join("servers.d");
    std::fs::create_dir(&servers).unwrap();
    write_json(&servers.join("pkg.json"), &package_document(json!([])));
    write_json(
        &servers.join("remote.json"),
        &json!({ "name": "io.example/remote", "remotes": [{ "type": "streamable-http", "url": remote.url }] }),
    );
    // The config file holds `taken`: a document of that name is a reported conflict.
    write_json(
        &servers.join("taken.json"),
        &json!({ "name": "io.example/taken", "remotes": [{ "type": "streamable-http", "url": remote.url }] }),
    );
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nadmin_token = {TOKEN:?}\n\n[servers.taken]\ncommand = {fixture:?}\nargs = [\"stdio\", \"--name\", \"from-file\"]\n\n\
             [[discovery]]\nkind = \"registry\"\nname = \"local\"\npath = {servers:?}\n\
             [discovery.runners.npm]\ncommand = {fixture:?}\nargs = []\n",
            fixture = fixture().display().to_string(),
            servers = servers.display().to_string(),
        ),
    )
    .unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config, &[("DISCO_TOKEN", "t0k3n")])
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);

    // Both documents listed and callable; the package got its environment.
    let names = tools_until(&client, |names| {
        names.iter().any(|n| n == "pkg__echo") && names.iter().any(|n| n == "remote__echo")
    })
    .await;
    assert!(names.contains(&"pkg__echo".to_owned()), "{names:?}");
    assert!(names.contains(&"remote__echo".to_owned()), "{names:?}");
    assert_eq!(
        call_text(&client, "pkg__echo", json!({ "text": "hi" })).await,
        "hi"
    );
    assert_eq!(
        call_text(&client, "remote__echo", json!({ "text": "there" })).await,
        "there"
    );
    assert_eq!(
        call_text(&client, "pkg__env", json!({ "name": "DISCO_TOKEN" })).await,
        "t0k3n"
    );
    assert_eq!(
        call_text(&client, "pkg__env", json!({ "name": "DISCO_REGION" })).await,
        "eu-t0k3n"
    );
    let status = status_until(&gateway, |s| s["conflicts"]["taken"].is_string()).await;
    assert_eq!(status["conflicts"]["taken"], "config", "{status}");
    assert_eq!(status["servers"], json!(["pkg", "remote"]), "{status}");
    assert_eq!(status["valid"], true, "{status}");

    // Edit: the package now runs with two extra tools → list_changed, new tools.
    let mut listen = client
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
    );
    let before = names.iter().filter(|n| n.starts_with("pkg__")).count();
    write_json(
        &servers.join("pkg.json"),
        &package_document(json!([{ "type": "named", "name": "--extra-tools", "value": "2" }])),
    );
    assert!(
        wait_for(
            &mut listen,
            "notifications/tools/list_changed",
            Duration::from_secs(20)
        )
        .await,
        "an edited server.json reaches the session"
    );
    let names = tools_until(&client, |names| {
        names.iter().filter(|n| n.starts_with("pkg__")).count() == before + 2
    })
    .await;
    assert_eq!(
        names.iter().filter(|n| n.starts_with("pkg__")).count(),
        before + 2,
        "{names:?}"
    );

    // A broken file keeps its last good server and says why.
    replace_file(
        &servers.join("remote.json"),
        "{ \"name\": \"io.example/remote\", ",
    );
    let status = status_until(&gateway, |s| s["valid"] == false).await;
    let file = servers.join("remote.json").display().to_string();
    assert!(
        status["errors"][&file]
            .as_str()
            .unwrap_or("")
            .contains("not valid JSON"),
        "{status}"
    );
    assert_eq!(
        call_text(&client, "remote__echo", json!({ "text": "still" })).await,
        "still"
    );
    let config_status: Value = reqwest::Client::new()
        .get(format!(
            "{}/admin/config",
            gateway.url.trim_end_matches("/mcp")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config_status["discovery"][0]["valid"], false,
        "{config_status}"
    );

    // A document missing a required variable is refused, naming it.
    write_json(
        &servers.join("needs.json"),
        &json!({ "name": "io.example/needs", "packages": [{ "registryType": "npm", "identifier": "x", "version": "1",
                 "environmentVariables": [{ "name": "DISCO_NOT_SET_ANYWHERE", "isRequired": true }] }] }),
    );
    let needs = servers.join("needs.json").display().to_string();
    let status = status_until(&gateway, |s| s["errors"][&needs].is_string()).await;
    assert!(
        status["errors"][&needs]
            .as_str()
            .unwrap()
            .contains("DISCO_NOT_SET_ANYWHERE"),
        "{status}"
    );

    // Removing a file removes its server.
    std::fs::remove_file(servers.join("pkg.json")).unwrap();
    assert!(
        wait_for(
            &mut listen,
            "notifications/tools/list_changed",
            Duration::from_secs(20)
        )
        .await,
        "a removed server.json reaches the session"
    );
    let names = tools_until(&client, |names| {
        !names.iter().any(|n| n.starts_with("pkg__"))
    })
    .await;
    assert!(!names.iter().any(|n| n.starts_with("pkg__")), "{names:?}");
    assert!(names.contains(&"remote__echo".to_owned()), "{names:?}");
    assert!(
        names.contains(&"taken__echo".to_owned()),
        "the file's server stays: {names:?}"
    );

    // Fixing the broken file applies it again.
    write_json(
        &servers.join("remote.json"),
        &json!({ "name": "io.example/remote2", "remotes": [{ "type": "streamable-http", "url": remote.url }] }),
    );
    let names = tools_until(&client, |names| {
        names.iter().any(|n| n == "remote2__echo") && !names.iter().any(|n| n == "remote__echo")
    })
    .await;
    assert!(names.contains(&"remote2__echo".to_owned()), "{names:?}");
    assert!(!names.contains(&"remote__echo".to_owned()), "{names:?}");
}

/// A scripted stand-in for the Kubernetes API server (no cluster can run here): it
/// answers `GET …/services` lists from a shared set of Services, and `?watch=true` with a
/// chunked stream of the events the test pushes; the test can drop every open watch.
#[derive(Clone, Default)]
struct ApiDouble {
    state: Arc<Mutex<DoubleState>>,
}

#[derive(Default)]
struct DoubleState {
    services: BTreeMap<String, Value>,
    version: u64,
    lists: u64,
    selectors: Vec<String>,
    watchers: Vec<UnboundedSender<String>>,
}

impl ApiDouble {
    async fn start() -> (ApiDouble, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let double = ApiDouble::default();
        let serving = double.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let double = serving.clone();
                tokio::spawn(async move { double.serve(socket).await });
            }
        });
        (double, url)
    }

    async fn serve(&self, mut socket: tokio::net::TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
        if !head
            .to_ascii_lowercase()
            .contains("authorization: bearer k8s-token")
        {
            let _ = socket
                .write_all(
                    b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        }
        assert!(
            target.starts_with("/api/v1/namespaces/tools/services?"),
            "{target}"
        );
        if target.contains("watch=true") {
            let (events_tx, mut events) = unbounded_channel::<String>();
            self.state.lock().unwrap().watchers.push(events_tx);
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            while let Some(line) = events.recv().await {
                let chunk = format!("{:x}\r\n{line}\n\r\n", line.len() + 1);
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            // Dropped by the test: the connection ends without the last chunk.
            return;
        }
        let body = {
            let mut state = self.state.lock().unwrap();
            state.lists += 1;
            let selector = target
                .split("labelSelector=")
                .nth(1)
                .unwrap_or("")
                .split('&')
                .next()
                .unwrap_or("")
                .to_owned();
            state.selectors.push(selector);
            json!({
                "kind": "ServiceList", "apiVersion": "v1",
                "metadata": { "resourceVersion": state.version.to_string() },
                "items": state.services.values().cloned().collect::<Vec<_>>(),
            })
            .to_string()
        };
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
    }

    fn service(&self, name: &str, port: u16) -> Value {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        json!({
            "kind": "Service", "apiVersion": "v1",
            "metadata": { "name": name, "namespace": "tools", "resourceVersion": state.version.to_string(),
                          "labels": { "switchboard.dev/mcp": "true" } },
            "spec": { "type": "ClusterIP", "clusterIP": "127.0.0.1",
                      "ports": [{ "name": "metrics", "port": 1 }, { "name": "mcp", "port": port }] }
        })
    }

    /// Changes the set and tells the open watches (unless `silently`: an event lost).
    fn event(&self, kind: &str, service: Value, silently: bool) {
        let mut state = self.state.lock().unwrap();
        let name = service["metadata"]["name"].as_str().unwrap().to_owned();
        if kind == "DELETED" {
            state.services.remove(&name);
        } else {
            state.services.insert(name, service.clone());
        }
        if !silently {
            let line = json!({ "type": kind, "object": service }).to_string();
            state
                .watchers
                .retain(|watcher| watcher.send(line.clone()).is_ok());
        }
    }

    fn drop_watches(&self) {
        self.state.lock().unwrap().watchers.clear();
    }

    async fn watching(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.state.lock().unwrap().watchers.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !self.state.lock().unwrap().watchers.is_empty(),
            "the gateway watches"
        );
    }
}

/// Kubernetes discovery against the scripted API double above: a labelled Service added
/// through the watch becomes a callable server; a dropped watch is followed by a new list
/// (a resync that catches what happened while disconnected) and a new watch; a deleted
/// Service's server is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_services_follow_the_api_server() {
    let upstream = spawn_fixture_http(&fixture(), "http", &[]).await.unwrap();
    let port: u16 = upstream
        .url
        .trim_end_matches("/mcp")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let (api, api_url) = ApiDouble::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nadmin_token = {TOKEN:?}\n\n[[discovery]]\nkind = \"kubernetes\"\napi_url = {api_url:?}\n\
             token = \"${{K8S_TOKEN}}\"\nnamespace = \"tools\"\nselector = \"switchboard.dev/mcp=true\"\nmax_backoff_ms = 500\n"
        ),
    )
    .unwrap();
    let gateway = spawn_gateway_http_at(GATEWAY, &config, &[("K8S_TOKEN", "k8s-token")])
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    api.watching().await;
    let status = status_until(&gateway, |s| s["connected"] == true).await;
    assert_eq!(status["connected"], true, "{status}");
    assert_eq!(
        api.state.lock().unwrap().selectors[0],
        "switchboard.dev%2Fmcp%3Dtrue"
    );

    // Added through the watch → listed and callable.
    let weather = api.service("weather", port);
    api.event("ADDED", weather.clone(), false);
    let names = tools_until(&client, |names| names.iter().any(|n| n == "weather__echo")).await;
    assert!(names.contains(&"weather__echo".to_owned()), "{names:?}");
    assert_eq!(
        call_text(&client, "weather__echo", json!({ "text": "k8s" })).await,
        "k8s"
    );

    // The stream drops; meanwhile `weather` goes and `radar` comes, unseen by any watch.
    let lists_before = api.state.lock().unwrap().lists;
    api.event("DELETED", weather, true);
    api.event("ADDED", api.service("radar", port), true);
    api.drop_watches();
    let names = tools_until(&client, |names| {
        names.iter().any(|n| n == "radar__echo") && !names.iter().any(|n| n == "weather__echo")
    })
    .await;
    assert!(
        names.contains(&"radar__echo".to_owned()),
        "resynced: {names:?}"
    );
    assert!(
        !names.contains(&"weather__echo".to_owned()),
        "resynced: {names:?}"
    );
    assert!(
        api.state.lock().unwrap().lists > lists_before,
        "listed again after the drop"
    );
    assert_eq!(
        call_text(&client, "radar__echo", json!({ "text": "again" })).await,
        "again"
    );

    // Deleted through the new watch → gone.
    api.watching().await;
    let radar = api.state.lock().unwrap().services["radar"].clone();
    api.event("DELETED", radar, false);
    let names = tools_until(&client, |names| {
        !names.iter().any(|n| n.starts_with("radar__"))
    })
    .await;
    assert!(!names.iter().any(|n| n.starts_with("radar__")), "{names:?}");
    let status = discovery(&gateway).await["sources"][0].clone();
    assert_eq!(status["servers"], json!([]), "{status}");
}
