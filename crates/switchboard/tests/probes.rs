//! `/healthz` and `/readyz` on the real binary: unauthenticated, open to any Host (a
//! kubelet addresses the pod by its IP), revealing counts only; readiness follows the
//! config's validity and the `required = true` servers, and a probe starts a failed
//! required server again without any call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, binary_beside, replace_file, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const API_KEY: &str = "probe-test-key-0123456789abcdef";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

/// A required fixture server `payroll`, and `optional`, which cannot start; `extra` is
/// appended to `optional`'s block.
fn config(access: bool, optional_extra: &str) -> String {
    let access = match access {
        true => format!("[access]\n[[access.keys]]\nid = \"ops\"\nkey = {API_KEY:?}\n\n"),
        false => String::new(),
    };
    format!(
        "[gateway]\nadmin_token = \"admin-token-0123456789abcdef\"\n\n{access}\
         [servers.payroll]\ncommand = {:?}\nargs = [\"stdio\"]\nrequired = true\n\n\
         [servers.optional]\ncommand = \"/nonexistent/switchboard-probe-test\"\n{optional_extra}\n",
        fixture()
    )
}

async fn probe(base: &str, path: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        // What a kubelet sends: the pod's IP, no credentials.
        .header("host", "10.0.0.7:8931")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: {text}"));
    (status, body, headers)
}

/// Polls `/readyz` until `done` holds for its answer.
async fn readyz_until(base: &str, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, _) = probe(base, "/readyz").await;
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never {what}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_need_no_credentials_nor_a_local_host_and_reveal_nothing() {
    let gateway = spawn_gateway_http(GATEWAY, &config(true, ""))
        .await
        .unwrap();
    let base = gateway.url.trim_end_matches("/mcp").to_owned();

    let (status, body, headers) = probe(&base, "/healthz").await;
    assert_eq!((status, &body), (200, &json!({ "status": "ok" })));
    assert_eq!(headers["cache-control"], "no-store");
    let (status, body, _) = probe(&base, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "status": "ready", "ready": true, "config_valid": true, "accepting": true,
            "required_servers": 1, "required_ready": 1
        })
    );
    let text = body.to_string();
    for secret in ["payroll", "optional", "nonexistent", API_KEY, "admin-token"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let head = reqwest::Client::new()
        .head(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    let post = reqwest::Client::new()
        .post(format!("{base}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 405);

    // The other routes still hold their guards: credentials on /mcp, Host on /metrics.
    let mcp = ModernHttp::new(&gateway.url)
        .raw_request("tools/list", json!({}))
        .await;
    assert!(mcp.outcome.is_err(), "anonymous /mcp refused: {mcp:?}");
    let metrics = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .header("host", "10.0.0.7:8931")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status().as_u16(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_required_servers_and_the_config() {
    let gateway = spawn_gateway_http(GATEWAY, &config(false, ""))
        .await
        .unwrap();
    let base = gateway.url.trim_end_matches("/mcp").to_owned();
    let path = gateway.config.clone().unwrap();
    // `optional` failed to start, but it is not required.
    readyz_until(&base, "ready", |status, _| status == 200).await;

    // The required server crashes: not ready, until the probes themselves start it
    // again (no call reaches it meanwhile).
    let client = ModernHttp::new(&gateway.url);
    let crash = client
        .request(
            "tools/call",
            json!({ "name": "payroll__crash", "arguments": {} }),
        )
        .await;
    assert!(crash.outcome.is_err(), "{crash:?}");
    let down = readyz_until(&base, "reported the crash", |status, _| status == 503).await;
    assert_eq!(down["required_ready"], 0, "{down}");
    assert_eq!(down["config_valid"], true, "{down}");
    readyz_until(&base, "recovered", |status, _| status == 200).await;
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "switchboard_restarts_total{server=\"payroll\"} 1"),
        "{metrics}"
    );

    // A rejected config file: not ready while the last good config runs.
    replace_file(&path, "[servers.payroll\ncommand = ");
    let broken = readyz_until(&base, "saw the broken file", |status, _| status == 503).await;
    assert_eq!(broken["config_valid"], false, "{broken}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|l| l == "switchboard_ready 0"),
        "{metrics}"
    );

    // Fixed.
    replace_file(&path, &config(false, ""));
    readyz_until(&base, "ready again", |status, _| status == 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_server_that_cannot_start_keeps_the_gateway_unready() {
    let gateway = spawn_gateway_http(GATEWAY, &config(false, "required = true"))
        .await
        .unwrap();
    let base = gateway.url.trim_end_matches("/mcp").to_owned();
    let (status, body, _) = probe(&base, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({
            "status": "not_ready", "ready": false, "config_valid": true, "accepting": true,
            "required_servers": 2, "required_ready": 1
        })
    );
    // Probes keep trying it (within its restart backoff); it still cannot start.
    for _ in 0..5 {
        assert_eq!(probe(&base, "/readyz").await.0, 503);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, _) = probe(&base, "/healthz").await;
    assert_eq!(status, 200, "alive all the same");

    // Removing it from the file makes the gateway ready.
    let path = gateway.config.clone().unwrap();
    let without = config(false, "")
        .split("[servers.optional]")
        .next()
        .unwrap()
        .to_owned();
    replace_file(&path, &without);
    readyz_until(&base, "ready without it", |status, body| {
        status == 200 && body["required_servers"] == 1
    })
    .await;
}
