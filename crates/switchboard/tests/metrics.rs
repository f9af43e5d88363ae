//! `/metrics` with several servers: each family is one contiguous group in both text
//! formats (checked here, and by `promtool check metrics` where it is installed), and the
//! counters of a server that is removed and added again go on from where they were.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_testkit::{ModernHttp, Proc, binary_beside, replace_file, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0";

fn config(names: &[&str]) -> String {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let mut text = "[gateway]\nrequest_timeout_ms = 10000\n".to_owned();
    for name in names {
        text.push_str(&format!(
            "\n[servers.{name}]\ncommand = {:?}\nargs = [\"stdio\"]\n",
            fixture.display().to_string()
        ));
    }
    text
}

async fn scrape(gateway: &Proc, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::Client::new().get(gateway.url.replace("/mcp", "/metrics"));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

async fn echo(client: &ModernHttp, server: &str) {
    client
        .request(
            "tools/call",
            json!({ "name": format!("{server}__echo"), "arguments": { "text": "hi" } }),
        )
        .await
        .outcome
        .unwrap();
}

/// Checks that each metric family forms one contiguous group — its HELP/TYPE lines, then
/// all its samples — and that no family appears twice. Returns the families in order.
fn check_grouping(text: &str) -> Result<Vec<String>, String> {
    let mut families: Vec<String> = Vec::new();
    // The family being written and its type.
    let mut current: Option<(String, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, ' ');
            let keyword = words.next().unwrap_or_default();
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                continue;
            }
            let name = words
                .next()
                .ok_or(format!("line {number}: {keyword} without a name"))?;
            if current.as_ref().is_none_or(|(family, _)| family != name) {
                if families.iter().any(|family| family == name) {
                    return Err(format!(
                        "line {number}: family `{name}` starts again after other families"
                    ));
                }
                families.push(name.to_owned());
                current = Some((name.to_owned(), String::new()));
            }
            if keyword == "TYPE" {
                let kind = words.next().unwrap_or_default().trim().to_owned();
                current.as_mut().expect("set above").1 = kind;
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let sample = line.split(['{', ' ']).next().unwrap_or_default();
        let (family, kind) = current
            .as_ref()
            .ok_or(format!("line {number}: sample `{sample}` before any TYPE"))?;
        let suffixes: &[&str] = match kind.as_str() {
            "counter" => &["", "_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            _ => &[""],
        };
        if !suffixes
            .iter()
            .any(|suffix| sample.strip_suffix(suffix) == Some(family.as_str()))
        {
            return Err(format!(
                "line {number}: sample `{sample}` is not part of family `{family}` above it"
            ));
        }
    }
    Ok(families)
}

/// Prometheus naming conventions on a Prometheus-text exposition: every family is
/// `switchboard_`-prefixed; counters end in `_total`; histograms name their unit
/// (`_seconds`, `_bytes`); gauges do not pretend to be counters; no label that grows with
/// traffic (per session, principal, request or argument).
fn check_conventions(text: &str) -> Result<(), String> {
    const UNBOUNDED: [&str; 10] = [
        "session",
        "principal",
        "client",
        "peer",
        "args",
        "arguments",
        "id",
        "request_id",
        "uri",
        "trace_id",
    ];
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or(format!("bad TYPE line `{line}`"))?;
            if !name.starts_with("switchboard_") {
                return Err(format!("`{name}` lacks the switchboard_ prefix"));
            }
            let ok = match kind {
                "counter" => name.ends_with("_total"),
                "histogram" => name.ends_with("_seconds") || name.ends_with("_bytes"),
                "gauge" => !name.ends_with("_total"),
                _ => true,
            };
            if !ok {
                return Err(format!("{kind} `{name}` breaks the naming conventions"));
            }
        } else if !line.starts_with('#')
            && let Some((_, labels)) = line.split_once('{')
        {
            for pair in labels.split("\",").filter(|p| p.contains('=')) {
                let key = pair
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .trim_start_matches(',');
                if UNBOUNDED.contains(&key) {
                    return Err(format!("unbounded label `{key}` in `{line}`"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_convention_checker_rejects_misnamed_families() {
    assert!(check_conventions("# TYPE switchboard_calls counter\n").is_err());
    assert!(check_conventions("# TYPE switchboard_latency histogram\n").is_err());
    assert!(check_conventions("# TYPE calls_total counter\n").is_err());
    assert!(
        check_conventions(
            "# TYPE switchboard_x gauge\nswitchboard_x{server=\"a\",session=\"s\"} 1\n"
        )
        .is_err()
    );
    assert!(check_conventions("# TYPE switchboard_x_seconds histogram\n# TYPE switchboard_y_total counter\nswitchboard_y_total{server=\"a\",tool=\"t\"} 1\n").is_ok());
}

fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
}

/// `promtool check metrics` on `text`; skipped with a message when promtool is absent
/// outside CI (CI installs it: Debian package `prometheus`).
fn promtool_check(text: &str) {
    let Some(promtool) = promtool() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is missing in CI (.ci/run installs the Debian package `prometheus`)"
        );
        eprintln!(
            "skipping `promtool check metrics`: promtool is not installed (Debian package `prometheus`)"
        );
        return;
    };
    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_grouping_checker_rejects_interleaved_families() {
    let interleaved = "# HELP a_seconds A.\n# TYPE a_seconds histogram\n\
        a_seconds_bucket{server=\"x\",le=\"+Inf\"} 1\na_seconds_sum{server=\"x\"} 1\na_seconds_count{server=\"x\"} 1\n\
        # HELP b B.\n# TYPE b gauge\nb{server=\"x\"} 1\n\
        a_seconds_bucket{server=\"y\",le=\"+Inf\"} 1\n";
    assert!(check_grouping(interleaved).is_err());
    let repeated = "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\na 2\n";
    assert!(check_grouping(repeated).is_err());
    let grouped =
        "# HELP a_total A.\n# TYPE a_total counter\na_total{s=\"x\"} 1\na_total{s=\"y\"} 2\n";
    assert_eq!(check_grouping(grouped).unwrap(), ["a_total"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_family_is_one_group_with_several_servers() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&["a", "b", "c"]))
        .await
        .unwrap();
    let client = ModernHttp::new(&gateway.url);
    for server in ["a", "b", "c", "b"] {
        echo(&client, server).await;
    }

    let (content_type, text) = scrape(&gateway, None).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let families = check_grouping(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    for family in [
        "switchboard_calls_total",
        "switchboard_call_duration_seconds",
        "switchboard_queue_wait_seconds",
        "switchboard_restarts_total",
        "switchboard_inflight_calls",
        "switchboard_breaker_state",
        "switchboard_server_state",
        "switchboard_upstream_instances",
        "switchboard_upstream_processes",
        "switchboard_config_valid",
        "switchboard_config_reloads_total",
        "switchboard_config_rejected_total",
        "switchboard_catalog_tools",
    ] {
        assert!(
            families.iter().any(|f| f == family),
            "{family} missing:\n{text}"
        );
    }
    for line in [
        "switchboard_calls_total{server=\"b\",tool=\"echo\",outcome=\"ok\"} 2",
        "switchboard_calls_total{server=\"c\",tool=\"echo\",outcome=\"ok\"} 1",
        "switchboard_call_duration_seconds_count{server=\"a\"} 1",
        "switchboard_upstream_processes{server=\"c\"} 1",
        "switchboard_server_state{server=\"a\"} 2",
        "switchboard_config_valid 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("# HELP") && l.ends_with("..")),
        "{text}"
    );
    promtool_check(&text);

    let (content_type, open) = scrape(&gateway, Some(OPENMETRICS)).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let families = check_grouping(&open).unwrap_or_else(|error| panic!("{error}\n{open}"));
    assert!(families.iter().any(|f| f == "switchboard_calls"), "{open}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.lines()
            .any(|l| l == "switchboard_calls_total{server=\"b\",tool=\"echo\",outcome=\"ok\"} 2"),
        "{open}"
    );
}

/// Polls until `tools/list` has (or lacks) `tool`.
async fn wait_for_tool(client: &ModernHttp, tool: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = client.request("tools/list", json!({})).await;
        let listed = list.result()["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["name"] == tool));
        if listed == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{tool} never became present={present}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_survive_a_server_removed_and_added_again() {
    let gateway = spawn_gateway_http(GATEWAY, &config(&["a", "b"]))
        .await
        .unwrap();
    let path = gateway.config.clone().unwrap();
    let client = ModernHttp::new(&gateway.url);
    echo(&client, "b").await;
    echo(&client, "b").await;

    replace_file(&path, &config(&["a"]));
    wait_for_tool(&client, "b__echo", false).await;
    replace_file(&path, &config(&["a", "b"]));
    wait_for_tool(&client, "b__echo", true).await;
    echo(&client, "b").await;

    let (_, text) = scrape(&gateway, None).await;
    check_grouping(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    for line in [
        "switchboard_calls_total{server=\"b\",tool=\"echo\",outcome=\"ok\"} 3",
        "switchboard_call_duration_seconds_count{server=\"b\"} 3",
        "switchboard_config_reloads_total 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    promtool_check(&text);
}

const ADMIN_TOKEN: &str = "metrics-admin-token-0123456789";

fn config_with_admin(names: &[String]) -> String {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    config(&names).replacen(
        "[gateway]\n",
        &format!("[gateway]\nadmin_token = {ADMIN_TOKEN:?}\n"),
        1,
    )
}

/// The `server` label values of `family`'s samples.
fn servers_of(text: &str, family: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .filter_map(|line| {
            let start = line.find("server=\"")? + "server=\"".len();
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_owned())
        })
        .collect()
}

/// Polls `/admin/servers` (one page, unlike `tools/list` with 50 servers) until server
/// `name` is ready, or gone.
async fn wait_for_server(gateway: &Proc, name: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let servers: serde_json::Value = reqwest::Client::new()
            .get(gateway.url.replace("/mcp", "/admin/servers"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let state = servers["servers"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["name"] == name))
            .map(|server| server["state"].clone());
        let done = match present {
            true => state.as_ref().is_some_and(|state| state == "ready"),
            false => state.is_none(),
        };
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "server {name} never became present={present} (state {state:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The exposition stays valid text (`promtool check metrics`, families grouped) with 50
/// servers, after a config file edit adds and removes servers, and after servers are
/// registered and removed through the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_stays_valid_with_fifty_servers_and_after_hot_loading() {
    let names: Vec<String> = (0..50).map(|index| format!("s{index:02}")).collect();
    let gateway = spawn_gateway_http(GATEWAY, &config_with_admin(&names))
        .await
        .unwrap();
    let path = gateway.config.clone().unwrap();
    let client = ModernHttp::new(&gateway.url);
    for name in &names {
        echo(&client, name).await;
    }
    let (_, text) = scrape(&gateway, None).await;
    check_grouping(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    promtool_check(&text);
    check_conventions(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    assert_eq!(servers_of(&text, "switchboard_server_state").len(), 50);
    assert_eq!(servers_of(&text, "switchboard_calls_total").len(), 50);
    assert!(
        text.lines()
            .any(|l| l == "switchboard_upstream_processes{server=\"s49\"} 1")
    );

    // The file: s45..s49 removed, n1 and n2 added.
    let mut edited: Vec<String> = names[..45].to_vec();
    edited.extend(["n1".to_owned(), "n2".to_owned()]);
    replace_file(&path, &config_with_admin(&edited));
    for name in ["n1", "n2"] {
        wait_for_server(&gateway, name, true).await;
    }
    for name in ["s45", "s49"] {
        wait_for_server(&gateway, name, false).await;
    }
    echo(&client, "n1").await;
    // The admin API: one registered, one registered and removed again.
    let admin = reqwest::Client::new();
    let admin_url = gateway.url.replace("/mcp", "/admin/servers");
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    for name in ["rt1", "rt2"] {
        let response = admin
            .post(&admin_url)
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": name, "server": { "command": fixture, "args": ["stdio"] } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201, "{name} registered");
    }
    echo(&client, "rt2").await;
    let response = admin
        .delete(format!("{admin_url}/rt2"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "rt2 removed");
    wait_for_server(&gateway, "rt2", false).await;

    let (_, text) = scrape(&gateway, None).await;
    check_grouping(&text).unwrap_or_else(|error| panic!("{error}\n{text}"));
    promtool_check(&text);
    let live = servers_of(&text, "switchboard_server_state");
    assert_eq!(live.len(), 48, "45 + n1 + n2 + rt1: {live:?}");
    assert!(live.contains("rt1") && !live.contains("rt2") && !live.contains("s49"));
    // Counters of removed servers stay listed.
    let counted = servers_of(&text, "switchboard_calls_total");
    assert!(counted.contains("s49") && counted.contains("rt2") && counted.contains("n1"));
    let (_, open) = scrape(&gateway, Some(OPENMETRICS)).await;
    check_grouping(&open).unwrap_or_else(|error| panic!("{error}\n{open}"));
    assert!(open.ends_with("# EOF\n"));
}
