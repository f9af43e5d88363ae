//! Safe defaults of the meta-tools, through the real gateway: clients that do not ask do
//! not see them, `switchboard__load_server` runs only configured servers unless
//! `allow_commands` lists the program, and `switchboard__install_server` refuses path
//! traversal and option injection before it touches the file system.

use std::path::Path;

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn toml_string(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

async fn tool_names(client: &ModernHttp) -> Vec<String> {
    client.request("tools/list", json!({})).await.result()["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn meta(client: &ModernHttp, tool: &str, arguments: Value) -> Value {
    client
        .request(
            "tools/call",
            json!({ "name": format!("switchboard__{tool}"), "arguments": arguments }),
        )
        .await
        .outcome
        .unwrap_or_else(|error| panic!("{tool}: {error}"))
}

fn text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_tools_are_off_for_clients_that_do_not_ask() {
    let config = format!(
        "[gateway]\nmeta_tools = [\"list_servers\"]\n\n[servers.a]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let silent = ModernHttp::new(&gateway.url);
    let names = tool_names(&silent).await;
    assert!(names.contains(&"a__echo".to_owned()), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("switchboard__")),
        "{names:?}"
    );
    let refused = silent
        .request(
            "tools/call",
            json!({ "name": "switchboard__list_servers", "arguments": {} }),
        )
        .await;
    assert!(
        refused.outcome.is_err() || refused.result()["isError"] == true,
        "{:?}",
        refused.outcome
    );

    let opted_in = ModernHttp::new(&format!("{}?meta_tools=on", gateway.url));
    assert!(
        tool_names(&opted_in)
            .await
            .contains(&"switchboard__list_servers".to_owned())
    );
}

fn load_config(extra: &str) -> String {
    format!(
        "[gateway]\nmeta_tools = [\"list_servers\", \"load_server\"]\nmeta_tools_by_default = true\n{extra}\n\n\
         [servers.dormant]\ncommand = {:?}\nargs = [\"stdio\"]\nlazy = true\n",
        fixture()
    )
}

async fn server_names(client: &ModernHttp) -> Vec<String> {
    meta(client, "list_servers", json!({})).await["structuredContent"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_server_runs_configured_servers_only_unless_the_command_is_allowed() {
    let gateway = spawn_gateway_http(GATEWAY, &load_config("")).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    let definitions = [
        json!({ "command": fixture(), "args": ["stdio"] }),
        json!({ "command": "sh", "args": ["-c", "echo pwned > /dev/null"] }),
        json!({ "type": "http", "url": "http://127.0.0.1:9/mcp" }),
    ];
    for definition in &definitions {
        let refused = meta(
            &client,
            "load_server",
            json!({ "name": "agent", "definition": definition }),
        )
        .await;
        assert_eq!(refused["isError"], true, "{refused}");
        assert!(text(&refused).contains("configured servers"), "{refused}");
    }
    assert!(!server_names(&client).await.contains(&"agent".to_owned()));

    let dormant = meta(&client, "load_server", json!({ "name": "dormant" })).await;
    assert_ne!(dormant["isError"], true, "{dormant}");

    // An explicit list admits exactly the programs it names.
    let allowed = format!("allow_commands = [{:?}]", fixture());
    let gateway = spawn_gateway_http(GATEWAY, &load_config(&allowed))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    let loaded = meta(
        &client,
        "load_server",
        json!({ "name": "agent", "definition": definitions[0] }),
    )
    .await;
    assert_ne!(loaded["isError"], true, "{loaded}");
    let other = meta(
        &client,
        "load_server",
        json!({ "name": "other", "definition": definitions[1] }),
    )
    .await;
    assert_eq!(other["isError"], true, "{other}");
    let names = server_names(&client).await;
    assert!(names.contains(&"agent".to_owned()), "{names:?}");
    assert!(!names.contains(&"other".to_owned()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_refuses_traversal_and_option_injection_before_touching_files() {
    let scratch = tempfile::tempdir().unwrap();
    let state = scratch.path().join("state");
    let config = format!(
        "[gateway]\nstate_dir = {}\nmeta_tools = [\"install_server\"]\nmeta_tools_by_default = true\nallow_install = true\n",
        toml_string(&state)
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    let corpus = [
        json!({ "name": "../../escape", "package": "npm:--version" }),
        json!({ "name": "../escape", "package": "pypi:mcp-server-time" }),
        json!({ "name": "/tmp/escape", "package": "npm:left-pad" }),
        json!({ "name": "a/b", "package": "npm:left-pad" }),
        json!({ "name": "..", "package": "npm:left-pad" }),
        json!({ "name": "x", "package": "pypi:--version" }),
        json!({ "name": "x", "package": "npm:--version" }),
        json!({ "name": "x", "package": "pypi:-r/etc/passwd" }),
        json!({ "name": "x", "package": "npm:--prefix=/" }),
        json!({ "name": "x", "package": "npm:file:../../escape" }),
        json!({ "name": "x", "package": "pypi:https://example.com/x.whl" }),
        json!({ "name": "x", "package": "npm:left-pad", "bin": "../../../../bin/sh" }),
    ];
    for arguments in corpus {
        let refused = meta(&client, "install_server", arguments.clone()).await;
        assert_eq!(refused["isError"], true, "{arguments} → {refused}");
        assert!(
            text(&refused).starts_with("invalid"),
            "{arguments} → {refused}"
        );
    }
    assert!(!scratch.path().join("escape").exists());
    assert!(!state.join("escape").exists());
    assert!(
        !state.join("packages").exists(),
        "nothing is created for a refused install"
    );
    assert!(!Path::new("/tmp/escape").exists());
}
