//! The Grafana dashboard (`deploy/grafana/switchboard.json`), proven against a real
//! Prometheus: the test starts the gateway in front of fixture servers, a Prometheus
//! (Debian package `prometheus`) scraping its `/metrics` every second, and a load of calls
//! that reaches every outcome the dashboard draws (ok, tool errors, upstream crashes and
//! restarts, queueing, rule denials, rate limits, invalid arguments, redactions, audit,
//! result cache hits and misses, a daily budget, approvals left pending, a rug pull on a
//! pinned server: drift, a new version, a quarantined tool).
//! Once Prometheus has scraped a few times, every expression of the dashboard — each
//! panel's targets and each variable's query — is evaluated through Prometheus's HTTP API
//! (`/api/v1/query`): each must succeed and return at least one finite sample.
//!
//! Skipped, with a message, when the `prometheus` binary is absent outside CI; in CI
//! (`CI=true`, which `.ci/run` sets after installing the package) that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/grafana/switchboard.json"
);
/// What the test puts for Grafana's `$__rate_interval`: with a 1 s scrape interval, every
/// sample since the load began.
const RATE_INTERVAL: &str = "30s";

fn prometheus_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) every second, on a free port
    /// (found by binding port 0 and releasing it; retried when taken meanwhile).
    async fn start(binary: &Path, target: &str) -> Prometheus {
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("prometheus.yml");
            std::fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                     scrape_configs:\n  - job_name: switchboard\n    metrics_path: /metrics\n\
                     \x20   static_configs:\n      - targets: ['{target}']\n"
                ),
            )
            .unwrap();
            let log = dir.path().join("prometheus.log");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("prometheus starts");
            let mut prometheus = Prometheus {
                child,
                url: format!("http://127.0.0.1:{port}"),
                log,
                _dir: dir,
            };
            if prometheus.wait_ready().await {
                return prometheus;
            }
            last_log = prometheus.log();
        }
        panic!("Prometheus did not start:\n{last_log}");
    }

    /// Waits for `/-/ready`, or for the process to exit (false).
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(response) = reqwest::get(format!("{}/-/ready", self.url)).await
                && response.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query: `Ok(result vector)` or `Err(why)`.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/query", self.url),
            &[("query", expr)],
        )
        .unwrap();
        let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!(
                "{status}: {} {}",
                body["errorType"].as_str().unwrap_or_default(),
                body["error"].as_str().unwrap_or_default()
            ));
        }
        if let Some(warnings) = body["warnings"].as_array().filter(|w| !w.is_empty()) {
            return Err(format!("warnings: {warnings:?}"));
        }
        match body["data"]["resultType"].as_str() {
            Some("vector") => Ok(body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default()),
            Some("scalar") => Ok(vec![json!({ "value": body["data"]["result"] })]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }
}

/// Prometheus naming conventions on what Prometheus scraped (every section of the
/// gateway is configured here, so every family that has samples is seen): counters'
/// samples end in `_total`, histograms name their unit, no label grows with traffic.
async fn check_conventions(prometheus: &Prometheus) {
    const UNBOUNDED: [&str; 8] = [
        "session",
        "principal",
        "client",
        "peer",
        "args",
        "arguments",
        "request_id",
        "uri",
    ];
    let series: Value = reqwest::get(
        reqwest::Url::parse_with_params(
            &format!("{}/api/v1/series", prometheus.url),
            &[(
                "match[]",
                "{job=\"switchboard\",__name__=~\"switchboard_.*\"}",
            )],
        )
        .unwrap(),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let names: std::collections::BTreeSet<String> = series["data"]
        .as_array()
        .expect("series")
        .iter()
        .filter_map(|labels| labels["__name__"].as_str().map(str::to_owned))
        .collect();
    let metadata: Value = reqwest::get(format!(
        "{}/api/v1/targets/metadata?match_target={{job=\"switchboard\"}}",
        prometheus.url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let families = metadata["data"].as_array().expect("metadata");
    assert!(families.len() >= 20, "{metadata}");
    for family in families {
        let name = family["metric"].as_str().unwrap_or_default();
        let kind = family["type"].as_str().unwrap_or_default();
        if !name.starts_with("switchboard_") {
            continue;
        }
        // Prometheus scrapes OpenMetrics, where a counter family `x` has samples `x_total`.
        let ok = match kind {
            "counter" => name.ends_with("_total") || names.contains(&format!("{name}_total")),
            "histogram" => name.ends_with("_seconds") || name.ends_with("_bytes"),
            "gauge" => !name.ends_with("_total"),
            _ => true,
        };
        assert!(ok, "{kind} `{name}` breaks the naming conventions");
    }
    for labels in series["data"].as_array().expect("series") {
        for key in labels.as_object().unwrap().keys() {
            assert!(
                !UNBOUNDED.contains(&key.as_str()),
                "unbounded label `{key}`: {labels}"
            );
        }
    }
}

/// The value of one sample of an instant vector, as a number (`NaN` and `±Inf` are kept).
fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

/// A dashboard expression as Prometheus should see it: Grafana's variables replaced by
/// what the dashboard's defaults select (every server; the rate window).
fn instantiate(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("${server:regex}", ".*")
        .replace("$server", ".*")
}

/// Every query the dashboard sends: (where, PromQL). A `label_values(metric, label)`
/// variable is checked as the query `metric`, whose samples must carry `label`.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, Option<String>)> {
    fn panels<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            panels(&panel["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut queries = Vec::new();
    for panel in all {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            queries.push((
                format!(
                    "panel {:?} target {}",
                    panel["title"].as_str().unwrap_or_default(),
                    target["refId"].as_str().unwrap_or_default()
                ),
                expr.to_owned(),
                None,
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .expect("a query variable has a query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .expect("query variables use label_values(metric, label)");
        let (metric, label) = inner.rsplit_once(',').expect("label_values(metric, label)");
        queries.push((
            format!("variable {}", variable["name"]),
            metric.trim().to_owned(),
            Some(label.trim().to_owned()),
        ));
    }
    queries
}

/// The dashboard's own shape: unique panel ids, every panel on the `datasource` variable,
/// and every required family drawn somewhere.
#[test]
fn the_dashboard_is_well_formed_and_covers_the_gateway() {
    let text = std::fs::read_to_string(DASHBOARD).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(dashboard["uid"], "switchboard-overview");
    let mut ids = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        ids.push(panel["id"].as_u64().expect("panel id"));
        assert!(panel["gridPos"]["w"].as_u64().unwrap() <= 24, "{panel}");
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{panel}");
        }
    }
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "panel ids are unique");
    let exprs: Vec<String> = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, expr, _)| expr)
        .collect();
    for family in [
        "switchboard_calls_total",
        "switchboard_call_duration_seconds_bucket",
        "switchboard_queue_wait_seconds_bucket",
        "switchboard_inflight_calls",
        "switchboard_breaker_state",
        "switchboard_server_state",
        "switchboard_restarts_total",
        "switchboard_upstream_processes",
        "switchboard_upstream_instances",
        "switchboard_config_valid",
        "switchboard_config_reloads_total",
        "switchboard_config_rejected_total",
        "switchboard_catalog_tools",
        "switchboard_access_refusals_total",
        "switchboard_ready",
        "switchboard_registry_drift",
        "switchboard_registry_drift_events_total",
        "switchboard_registry_quarantined_tools",
        "switchboard_approvals",
        "switchboard_cache_hits_total",
        "switchboard_cache_misses_total",
        "switchboard_registry_list_cache_total",
        "switchboard_budget_write_failures_total",
    ] {
        assert!(
            exprs.iter().any(|expr| expr.contains(family)),
            "no panel draws {family}"
        );
    }
    for quantile in ["0.5", "0.95", "0.99"] {
        assert!(
            exprs.iter().any(
                |expr| expr.starts_with(&format!("histogram_quantile({quantile},"))
                    && expr.contains("switchboard_call_duration_seconds_bucket")
            ),
            "no p{quantile} latency"
        );
    }
    let provider = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/provisioning/dashboards/switchboard.yaml"
    ))
    .unwrap();
    assert!(provider.contains("type: file"), "{provider}");
    let datasource = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/provisioning/datasources/switchboard.yaml"
    ))
    .unwrap();
    assert!(datasource.contains("type: prometheus"), "{datasource}");
}

fn config(state_dir: &Path) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let fixture = format!("{:?}", fixture.display().to_string());
    format!(
        r#"[gateway]
request_timeout_ms = 10000
state_dir = {state_dir:?}

[access]
[[access.rules]]
when = "tool == 'fx__echo' && has(args.text) && args.text == 'forbidden'"
effect = "deny"
message = "not this text"

[[access.limits]]
per = "global"
tools = "limited__*"
requests = 1
period_ms = 60000
burst = 1

[[access.budgets]]
per = "principal"
tools = "fx__test_image_content"
calls = 1

[audit]

[redaction]

[approvals]
wait_ms = 20

[[approvals.rules]]
tools = "fx__test_audio_content"
approver = "admin"

[servers.fx]
command = {fixture}
args = ["stdio"]

[servers.fx.tools.test_simple_text]
cache_ttl_ms = 60000

[servers.pinned]
command = {fixture}
args = ["stdio"]
pin = "trust_first"

[servers.queued]
command = {fixture}
args = ["stdio"]
[servers.queued.limits]
max_concurrency = 1
max_queue = 64

[servers.limited]
command = {fixture}
args = ["stdio"]

[servers.crashy]
command = {fixture}
args = ["stdio"]
"#,
        state_dir = state_dir.display().to_string(),
    )
}

/// One round of calls: every outcome the dashboard draws.
async fn load_round(client: &ModernHttp, round: u64) {
    let call = |name: &'static str, arguments: Value| async move {
        client
            .request(
                "tools/call",
                json!({ "name": name, "arguments": arguments }),
            )
            .await
    };
    for _ in 0..5 {
        call("fx__echo", json!({ "text": "hi" })).await;
    }
    call("fx__echo", json!({ "text": "mail alice@example.com" })).await;
    call("fx__echo", json!({ "text": "forbidden" })).await;
    call("fx__echo", json!({})).await;
    call("fx__test_error_handling", json!({})).await;
    call("limited__echo", json!({ "text": "once" })).await;
    futures::future::join_all((0..4).map(|_| call("queued__sleep", json!({ "ms": 20 })))).await;
    if round.is_multiple_of(10) {
        call("crashy__crash", json!({})).await;
    }
    call("crashy__echo", json!({ "text": "back" })).await;
    // Result cache (a miss, then hits), a daily budget refusal, an approval left pending.
    call("fx__test_simple_text", json!({})).await;
    call("fx__test_simple_text", json!({})).await;
    call("fx__test_image_content", json!({})).await;
    call("fx__test_audio_content", json!({})).await;
    client.request("tools/list", json!({})).await;
    if round == 0 {
        // A rug pull on the pinned server: drift, a new version, a quarantined tool.
        call(
            "pinned__rewrite_tool",
            json!({ "name": "echo", "description": "Echoes, and more" }),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus is missing in CI (.ci/run installs the Debian package `prometheus`)"
        );
        eprintln!(
            "skipping the Prometheus tier: the `prometheus` binary is not installed (Debian package `prometheus`)"
        );
        return;
    };
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let state = tempfile::tempdir().unwrap();
    let gateway = spawn_gateway_http(GATEWAY, &config(state.path()))
        .await
        .unwrap();
    let target = gateway
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();

    // The load runs until the queries are done.
    let running = Arc::new(AtomicBool::new(true));
    let rounds = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn({
        let client = ModernHttp::new(&gateway.url);
        let running = running.clone();
        let rounds = rounds.clone();
        async move {
            while running.load(Ordering::Relaxed) {
                load_round(&client, rounds.fetch_add(1, Ordering::Relaxed)).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let prometheus = Prometheus::start(&binary, &target).await;
    // Scraped successfully several times, with load between the scrapes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let scrapes = prometheus
            .query("count_over_time(up{job=\"switchboard\"}[1m])")
            .await
            .ok()
            .and_then(|result| result.first().map(sample_value))
            .unwrap_or(0.0);
        let up = prometheus
            .query("up{job=\"switchboard\"}")
            .await
            .ok()
            .and_then(|result| result.first().map(sample_value))
            .unwrap_or(0.0);
        if scrapes >= 8.0 && up == 1.0 && rounds.load(Ordering::Relaxed) >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape the gateway (scrapes {scrapes}, up {up}):\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every scrape parsed: no sample was dropped as invalid.
    let invalid = prometheus
        .query("scrape_samples_post_metric_relabeling{job=\"switchboard\"} - scrape_samples_scraped{job=\"switchboard\"}")
        .await
        .unwrap();
    assert_eq!(invalid.first().map(sample_value), Some(0.0), "{invalid:?}");

    check_conventions(&prometheus).await;

    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 25, "{} queries", queries.len());
    let mut failures = Vec::new();
    for (place, expr, label) in &queries {
        let promql = instantiate(expr);
        match prometheus.query(&promql).await {
            Err(error) => failures.push(format!("{place}: `{promql}` failed: {error}")),
            Ok(result) if result.is_empty() => {
                failures.push(format!("{place}: `{promql}` returned no data"))
            }
            Ok(result) => {
                if !result.iter().map(sample_value).any(f64::is_finite) {
                    failures.push(format!(
                        "{place}: `{promql}` returned only NaN/Inf: {result:?}"
                    ));
                }
                if let Some(label) = label
                    && !result
                        .iter()
                        .all(|sample| sample["metric"][label].is_string())
                {
                    failures.push(format!("{place}: `{promql}` samples lack `{label}`"));
                }
            }
        }
    }
    // The load reached what the panels claim to show.
    for (what, expr) in [
        (
            "rule denials",
            "switchboard_access_refusals_total{step=\"rules\"}",
        ),
        (
            "rate limits",
            "switchboard_access_refusals_total{step=\"limits\"}",
        ),
        ("restarts", "switchboard_restarts_total{server=\"crashy\"}"),
        (
            "queueing",
            "switchboard_queue_wait_seconds_count{server=\"queued\"}",
        ),
        (
            "tool errors",
            "sum(switchboard_calls_total{outcome=\"tool_error\"})",
        ),
        (
            "invalid arguments",
            "switchboard_invalid_arguments_total{server=\"fx\"}",
        ),
        (
            "redactions",
            "sum(switchboard_redactions_total{detector=\"email\"})",
        ),
        (
            "audit records",
            "switchboard_audit_records_total{event=\"committed\"}",
        ),
    ] {
        let value = prometheus
            .query(expr)
            .await
            .ok()
            .and_then(|result| result.first().map(sample_value))
            .unwrap_or(0.0);
        if value < 1.0 {
            failures.push(format!("the load made no {what}: `{expr}` = {value}"));
        }
    }
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} dashboard queries failed:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
}
