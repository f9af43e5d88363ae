//! Upstream lifecycle and resilience with real processes: crashes seen at once and
//! restarted, timeouts with cancellation and recycling of wedged instances, the circuit
//! breaker, bulkheads, sharing policies, oversized output, stderr floods, start/stop
//! cycles without leftovers, SIGTERM drain, and the metrics that report all of it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{
    LegacyHttp, ModernHttp, binary_beside, children_of, spawn_gateway_http, zombies_of,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const TOKEN: &str = "lifecycle-admin-token-0123";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn server(name: &str, extra: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = [\"stdio\"]\n{extra}\n",
        fixture()
    )
}

fn config(servers: &[String]) -> String {
    format!(
        "[gateway]\nadmin_token = {TOKEN:?}\nrequest_timeout_ms = 5000\n\n{}",
        servers.join("\n")
    )
}

async fn call(client: &ModernHttp, tool: &str, arguments: Value) -> Result<Value, Value> {
    client
        .request(
            "tools/call",
            json!({ "name": tool, "arguments": arguments }),
        )
        .await
        .outcome
}

async fn pid_of(client: &ModernHttp, server: &str) -> u64 {
    call(client, &format!("{server}__whoami"), json!({}))
        .await
        .unwrap()["structuredContent"]["pid"]
        .as_u64()
        .unwrap()
}

fn kill9(pid: u64) {
    assert!(pid > 1, "refusing to signal pid {pid}");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        })
        .unwrap_or(0)
}

async fn metrics(url: &str) -> String {
    reqwest::get(url.replace("/mcp", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upstream_fails_callers_at_once_and_restarts() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("fx", "")]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    let pid = pid_of(&client, "fx").await;
    let (outcome, seen) = tokio::join!(
        async {
            let outcome = call(&client, "fx__sleep", json!({ "ms": 10_000 })).await;
            (outcome, Instant::now())
        },
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let killed = Instant::now();
            kill9(pid);
            killed
        }
    );
    let (outcome, answered) = outcome;
    let error = outcome.expect_err("the call fails");
    assert_eq!(error["code"], -31001, "{error}");
    let latency = answered.duration_since(seen);
    eprintln!("caller saw the upstream crash {latency:?} after kill -9");
    assert!(latency < Duration::from_secs(2), "{latency:?}");
    let restarted = pid_of(&client, "fx").await;
    assert_ne!(restarted, pid, "a fresh process serves the next call");
    assert_eq!(zombies_of(gateway.pid()), 0);
    assert!(
        metrics(&gateway.url)
            .await
            .contains("switchboard_restarts_total{server=\"fx\"} 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_cancel_upstream_and_wedged_instances_are_recycled() {
    let extra =
        "[servers.fx.tools.sleep]\ntimeout_ms = 300\n[servers.fx.tools.wedge]\ntimeout_ms = 300\n";
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("fx", extra)]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    let error = call(&client, "fx__sleep", json!({ "ms": 5_000 }))
        .await
        .expect_err("per-tool timeout");
    assert_eq!(error["code"], -31002);
    let mut cancelled = 0;
    for _ in 0..30 {
        cancelled =
            call(&client, "fx__stats", json!({})).await.unwrap()["structuredContent"]["cancelled"]
                .as_u64()
                .unwrap();
        if cancelled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        cancelled, 1,
        "the upstream got notifications/cancelled with its own id"
    );

    let pid = pid_of(&client, "fx").await;
    let error = call(&client, "fx__wedge", json!({}))
        .await
        .expect_err("wedged call times out");
    assert_eq!(error["code"], -31002);
    // The probe after the timeout finds the process silent and replaces it.
    let mut replaced = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(result) = call(&client, "fx__whoami", json!({})).await
            && result["structuredContent"]["pid"].as_u64() != Some(pid)
        {
            replaced = true;
            break;
        }
    }
    assert!(replaced, "the wedged instance was recycled");
    assert_eq!(zombies_of(gateway.pid()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_fails_fast_and_recovers() {
    let extra = "[servers.fx.breaker]\nfailures = 3\nopen_ms = 700\n[servers.fx.tools.hang]\ntimeout_ms = 150\n";
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("fx", extra)]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    for _ in 0..3 {
        assert_eq!(
            call(&client, "fx__hang", json!({})).await.unwrap_err()["code"],
            -31002
        );
    }
    let started = Instant::now();
    let fast = call(&client, "fx__echo", json!({ "text": "x" }))
        .await
        .expect_err("circuit open");
    assert!(
        fast["message"].as_str().unwrap().contains("circuit open"),
        "{fast}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "fails fast: {:?}",
        started.elapsed()
    );
    assert!(
        metrics(&gateway.url)
            .await
            .contains("switchboard_breaker_state{server=\"fx\"} 2")
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let trial = call(&client, "fx__echo", json!({ "text": "back" }))
        .await
        .expect("half-open trial succeeds");
    assert_eq!(trial["content"][0]["text"], "back");
    assert!(
        metrics(&gateway.url)
            .await
            .contains("switchboard_breaker_state{server=\"fx\"} 0")
    );
    // A tool error is an answer, not a failure: it never opens the circuit.
    for _ in 0..5 {
        let result = call(&client, "fx__test_error_handling", json!({}))
            .await
            .unwrap();
        assert_eq!(result["isError"], true);
    }
    call(&client, "fx__echo", json!({ "text": "still closed" }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulkhead_sheds_load_and_slow_servers_do_not_starve_fast_ones() {
    let slow = server(
        "slow",
        "[servers.slow.limits]\nmax_concurrency = 2\nmax_queue = 1\n",
    );
    let gateway = spawn_gateway_http(GATEWAY, &config(&[slow, server("fast", "")]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    let sleeps = (0..4).map(|_| call(&client, "slow__sleep", json!({ "ms": 800 })));
    let fast = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        for _ in 0..20 {
            call(&client, "fast__echo", json!({ "text": "quick" }))
                .await
                .unwrap();
        }
        started.elapsed()
    };
    let (outcomes, fast_took) = tokio::join!(futures::future::join_all(sleeps), fast);
    let shed: Vec<&Value> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(shed.len(), 1, "2 run, 1 queues, 1 is shed: {outcomes:?}");
    assert_eq!(shed[0]["code"], -31006);
    assert_eq!(shed[0]["data"]["retryable"], true);
    eprintln!("20 fast calls took {fast_took:?} while the slow server was saturated");
    assert!(
        fast_took < Duration::from_millis(700),
        "fast calls waited for the slow server: {fast_took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_policies() {
    let shared = server("shared", "");
    let per_session = server("mine", "sharing = \"per_session\"\n");
    let pool = server(
        "pool",
        "sharing = \"pool\"\n[servers.pool.pool]\nsize = 2\n",
    );
    let gateway = spawn_gateway_http(GATEWAY, &config(&[shared, per_session, pool]))
        .await
        .unwrap();
    let first = LegacyHttp::connect(&gateway.url).await.unwrap();
    let second = LegacyHttp::connect(&gateway.url).await.unwrap();
    let pid = |exchange: switchboard_testkit::Exchange| {
        exchange.result()["structuredContent"]["pid"]
            .as_u64()
            .unwrap()
    };
    let shared_a = pid(first
        .request(
            "tools/call",
            json!({ "name": "shared__whoami", "arguments": {} }),
        )
        .await);
    let shared_b = pid(second
        .request(
            "tools/call",
            json!({ "name": "shared__whoami", "arguments": {} }),
        )
        .await);
    assert_eq!(shared_a, shared_b, "one process for everyone");
    let mine_a = pid(first
        .request(
            "tools/call",
            json!({ "name": "mine__whoami", "arguments": {} }),
        )
        .await);
    let mine_b = pid(second
        .request(
            "tools/call",
            json!({ "name": "mine__whoami", "arguments": {} }),
        )
        .await);
    let mine_a_again = pid(first
        .request(
            "tools/call",
            json!({ "name": "mine__whoami", "arguments": {} }),
        )
        .await);
    assert_ne!(mine_a, mine_b, "one process per session");
    assert_eq!(mine_a, mine_a_again, "a session keeps its process");
    // Two concurrent calls to a pool of two: two processes.
    let client = ModernHttp::new(&gateway.url);
    let (_, _) = tokio::join!(call(&client, "pool__sleep", json!({ "ms": 400 })), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        call(&client, "pool__sleep", json!({ "ms": 100 })).await
    });
    let metrics = metrics(&gateway.url).await;
    assert!(
        metrics.contains("switchboard_upstream_processes{server=\"pool\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_upstream_processes{server=\"shared\"} 1"));
    assert!(metrics.contains("switchboard_upstream_processes{server=\"mine\"} 2"));
    // Ending a session stops its process.
    let ended = reqwest::Client::new()
        .delete(&gateway.url)
        .header("mcp-session-id", &second.session)
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success());
    let mut processes = usize::MAX;
    for _ in 0..50 {
        processes = children_of(gateway.pid()).len();
        if processes == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(processes, 4, "shared 1 + mine 1 + pool 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_output_and_stderr_floods_are_bounded() {
    let noisy = format!(
        "[servers.noisy]\ncommand = {:?}\nargs = [\"stdio\", \"--stderr-flood\"]\n",
        fixture()
    );
    // The debug fixture needs seconds to build 100 MB on a loaded machine: the refusal,
    // not the gateway-wide 5 s timeout, is what this test is about.
    let fx = server("fx", "request_timeout_ms = 120000");
    let gateway = spawn_gateway_http(GATEWAY, &config(&[fx, noisy]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    call(
        &client,
        "noisy__echo",
        json!({ "text": "through the flood" }),
    )
    .await
    .unwrap();
    let error = call(&client, "fx__huge", json!({ "bytes": 100_000_000 }))
        .await
        .expect_err("refused");
    assert_eq!(error["code"], -31004, "{error}");
    let rss = rss_kib(gateway.pid());
    eprintln!(
        "gateway RSS after refusing a 100 MB response: {} MiB",
        rss / 1024
    );
    // A debug-build gateway idles near 95 MiB here; holding the response would add
    // 100 MB or more, so 128 MiB tells the two apart with room for allocator noise.
    assert!(rss < 128 * 1024, "memory stayed bounded: {rss} KiB");
    call(&client, "fx__echo", json!({ "text": "after" }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_only_where_configured() {
    let extra = "restart_backoff_ms = 10\n[servers.fx.tools.crash]\nretries = 3\n";
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("fx", extra)]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    call(&client, "fx__crash", json!({ "after_ms": 0 }))
        .await
        .expect_err("crashes every time");
    call(&client, "fx__echo", json!({ "text": "x" }))
        .await
        .unwrap();
    let text = metrics(&gateway.url).await;
    assert!(
        text.contains(
            "switchboard_calls_total{server=\"fx\",tool=\"crash\",outcome=\"unavailable\"} 3"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_start_stop_cycles_leave_nothing_behind() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&[server("fx", "")]))
        .await
        .unwrap();
    let admin = reqwest::Client::new();
    let reload = gateway.url.replace("/mcp", "/admin/servers/fx/reload");
    let cycles: u32 = std::env::var("SWITCHBOARD_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let started = Instant::now();
    for _ in 0..cycles {
        let response = admin.post(&reload).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    eprintln!("{cycles} start/stop cycles in {:?}", started.elapsed());
    let mut children = usize::MAX;
    for _ in 0..100 {
        children = children_of(gateway.pid()).len();
        if children == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(children, 1, "only the current instance runs");
    assert_eq!(zombies_of(gateway.pid()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_calls_in_flight() {
    let mut gateway = spawn_gateway_http(GATEWAY, &config(&[server("fx", "")]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    let child_pid = pid_of(&client, "fx").await;
    let gateway_pid = gateway.pid();
    let (outcome, _) = tokio::join!(call(&client, "fx__sleep", json!({ "ms": 1_000 })), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(gateway_pid > 1);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(gateway_pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    });
    assert!(outcome.is_ok(), "the call in flight finished: {outcome:?}");
    let status = tokio::time::timeout(Duration::from_secs(10), gateway.child.wait())
        .await
        .expect("gateway exits")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{child_pid}")).exists(),
        "upstream stopped with the gateway"
    );
}
