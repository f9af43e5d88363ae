//! Upstream hygiene and era detection: a child sees only the environment it was
//! configured with; a silent legacy server costs the probe timeout once, then the cached
//! verdict makes restarts skip the probe.

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_testkit::{ModernHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_see_only_configured_environment() {
    // The gateway itself runs with cargo's variables (CARGO_PKG_NAME, …): none may leak.
    let config = format!(
        "[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\nenv = {{ GIVEN = \"yes\" }}\n",
        fixture()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let client = ModernHttp::new(&gateway.url);
    let env = |name: &'static str| {
        let client = &client;
        async move {
            let call = client
                .request(
                    "tools/call",
                    json!({ "name": "fx__env", "arguments": { "name": name } }),
                )
                .await;
            call.result()["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
    };
    assert!(env("GIVEN").await.contains("yes"));
    assert!(
        !env("CARGO_PKG_NAME").await.contains("switchboard"),
        "gateway environment leaked"
    );
    assert!(!env("PATH").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_legacy_server_costs_the_probe_once() {
    let config = format!(
        "[gateway]\nprobe_timeout_ms = 1500\n\n[servers.old]\ncommand = {:?}\nargs = [\"stdio\", \"--era\", \"legacy\", \"--silent-until-initialize\"]\nrestart_backoff_ms = 1\n",
        fixture()
    );
    let started = Instant::now();
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let first_connect = started.elapsed();
    let client = ModernHttp::new(&gateway.url);
    let whoami = client
        .request(
            "tools/call",
            json!({ "name": "old__whoami", "arguments": {} }),
        )
        .await;
    let pid = whoami.result()["structuredContent"]["pid"].clone();
    assert!(
        first_connect >= Duration::from_millis(1500),
        "the first connect waited for the probe: {first_connect:?}"
    );
    client
        .request(
            "tools/call",
            json!({ "name": "old__crash", "arguments": {} }),
        )
        .await;
    let restarted = Instant::now();
    let again = client
        .request(
            "tools/call",
            json!({ "name": "old__whoami", "arguments": {} }),
        )
        .await;
    let restart = restarted.elapsed();
    assert_ne!(again.result()["structuredContent"]["pid"], pid);
    eprintln!(
        "first connect (with probe) {first_connect:?}; restart with the cached legacy verdict {restart:?}"
    );
    assert!(
        restart < Duration::from_millis(1500),
        "the restart skipped the probe: {restart:?}"
    );
}
