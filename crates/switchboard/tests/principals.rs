//! Principals and sessions through the real binary: two stateless (2026-07-28) HTTP
//! clients are two sessions, so a `per_session` server gives each its own instance and
//! neither sees the other's state (issue 11, defect 11), while one client's requests on
//! its connection keep reaching the same instance.

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

async fn whoami(client: &ModernHttp) -> Value {
    let exchange = client
        .request(
            "tools/call",
            json!({ "name": "mine__whoami", "arguments": {} }),
        )
        .await;
    exchange.result()["structuredContent"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_modern_clients_never_share_a_per_session_instance() {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let config = format!(
        "[servers.mine]\ncommand = {:?}\nargs = [\"stdio\"]\nsharing = \"per_session\"\n",
        fixture.display().to_string()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    // Two clients: two connection pools, so two connections.
    let a = ModernHttp::new(&gateway.url);
    let b = ModernHttp::new(&gateway.url);
    let a_first = whoami(&a).await;
    let b_first = whoami(&b).await;
    assert_ne!(
        a_first["instance"], b_first["instance"],
        "two modern clients shared one per_session instance: {a_first} {b_first}"
    );
    // Each client keeps its own instance across requests on its connection.
    assert_eq!(whoami(&a).await["instance"], a_first["instance"]);
    assert_eq!(whoami(&b).await["instance"], b_first["instance"]);
}
