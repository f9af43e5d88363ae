//! The hot-load scenario: how fast a change reaches a connected client, and what waking a
//! dormant server costs a caller, each next to the upstream's own start-up (which no gateway
//! can hide).
//!
//! - *config write → `list_changed`*: a modern client holds `subscriptions/listen` open;
//!   each round atomically rewrites the watched config (adding one new stdio server and
//!   dropping the previous round's) and times the write until the notification arrives.
//! - *dormant first call*: a `lazy` server with a short `idle_timeout_ms` is stopped by the
//!   gateway between rounds; each round's first `tools/call` starts it again.
//! - *upstream start-up*: the fixture spawned directly, until it answers `initialize`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, replace_file};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::mpsc;

use crate::procs;
use crate::spawn::{self, Upstream};

/// How long a dormant server may stay idle before the gateway stops it.
pub const IDLE_TIMEOUT_MS: u64 = 300;
/// Time allowed for any single step (a notification, a stop, a call).
const STEP: Duration = Duration::from_secs(10);

/// The scenario's figures, each as (p50, max) in milliseconds over the rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HotLoadFigures {
    pub rounds: usize,
    pub write_to_list_changed_ms: (f64, f64),
    pub upstream_startup_ms: (f64, f64),
    pub dormant_first_call_ms: (f64, f64),
    pub warm_call_ms: (f64, f64),
}

fn median_and_max(mut samples: Vec<f64>) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_by(f64::total_cmp);
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

fn ms(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

/// The config of one round: the always-on server, the lazy one, and this round's new one.
fn config(fixture: &Path, round: usize) -> String {
    let stdio = || Upstream::Stdio {
        command: fixture.to_path_buf(),
        args: vec!["stdio".into()],
    };
    let mut servers = vec![
        ("steady".to_owned(), stdio()),
        ("sleepy".to_owned(), stdio()),
    ];
    if round > 0 {
        servers.push((format!("new{round}"), stdio()));
    }
    spawn::gateway_config(&servers).replace(
        "[servers.sleepy]\n",
        &format!("[servers.sleepy]\nlazy = true\nidle_timeout_ms = {IDLE_TIMEOUT_MS}\n"),
    )
}

/// Waits for a message with `method` on a listen stream.
async fn wait_for(stream: &mut mpsc::UnboundedReceiver<Value>, method: &str) -> anyhow::Result<()> {
    tokio::time::timeout(STEP, async {
        while let Some(message) = stream.recv().await {
            if message.get("method").and_then(Value::as_str) == Some(method) {
                return Ok(());
            }
        }
        bail!("the listen stream ended before {method}")
    })
    .await
    .with_context(|| format!("no {method} within {STEP:?}"))?
}

/// Whether `tools/list` (every page) names `tool`.
async fn lists_tool(client: &ModernHttp, tool: &str) -> anyhow::Result<bool> {
    let mut cursor: Option<String> = None;
    loop {
        let params = match &cursor {
            Some(cursor) => json!({ "cursor": cursor }),
            None => json!({}),
        };
        let exchange = client.request("tools/list", params).await;
        let Ok(result) = &exchange.outcome else {
            bail!("tools/list failed: {:?}", exchange.outcome);
        };
        let tools = result["tools"].as_array().cloned().unwrap_or_default();
        if tools.iter().any(|t| t["name"] == tool) {
            return Ok(true);
        }
        match result.get("nextCursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(false),
        }
    }
}

/// One call of the lazy server's echo tool; its wall time.
async fn echo(client: &ModernHttp) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let call = client.request(
        "tools/call",
        json!({ "name": "sleepy__echo", "arguments": { "text": "wake" } }),
    );
    let exchange = tokio::time::timeout(STEP, call)
        .await
        .context("the call did not answer")?;
    let took = started.elapsed();
    match &exchange.outcome {
        Ok(result) if result["content"][0]["text"] == "wake" => Ok(took),
        Ok(result) => bail!("unexpected answer: {result}"),
        Err(error) => bail!("the call failed: {error}"),
    }
}

/// The fixture started directly, until it answers `initialize`.
async fn upstream_startup(fixture: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(fixture)
        .arg("stdio")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", fixture.display()))?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": { "name": "switchboard-load", "version": "0" } }
    });
    stdin
        .write_all(format!("{initialize}\n").as_bytes())
        .await?;
    let mut line = String::new();
    tokio::time::timeout(STEP, BufReader::new(stdout).read_line(&mut line))
        .await
        .context("the fixture did not answer initialize")??;
    let took = started.elapsed();
    drop(stdin);
    let _ = tokio::time::timeout(STEP, child.wait()).await;
    Ok(took)
}

/// Waits until the gateway has `count` children (servers started or stopped).
async fn children_settle(gateway: u32, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + STEP;
    while procs::descendants(gateway).len() != count {
        if Instant::now() > deadline {
            bail!(
                "the gateway kept {} processes, expected {count}",
                procs::descendants(gateway).len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

pub async fn run(
    gateway_bin: &Path,
    fixture: &Path,
    logs: &Path,
    rounds: usize,
) -> anyhow::Result<HotLoadFigures> {
    let name = "gateway-hotload";
    let gateway = spawn::gateway(gateway_bin, &config(fixture, 0), logs, name, STEP * 6).await?;
    let path = logs.join(format!("{name}.config")).join("switchboard.toml");
    let client = ModernHttp::new(&gateway.url);
    let mut listen = client.listen(json!({ "toolsListChanged": true })).await?;
    wait_for(&mut listen, "notifications/subscriptions/acknowledged").await?;
    // The steady server runs; the lazy one is dormant.
    children_settle(gateway.pid, 1).await?;

    let mut to_list_changed = Vec::new();
    for round in 1..=rounds {
        while listen.try_recv().is_ok() {} // nothing left over from the last round
        let written = Instant::now();
        replace_file(&path, &config(fixture, round));
        // The notification that counts is the one after which the new tools are listed
        // (removing the last round's server may be announced first).
        let new_tool = format!("new{round}__echo");
        loop {
            wait_for(&mut listen, "notifications/tools/list_changed").await?;
            let told = written.elapsed();
            if lists_tool(&client, &new_tool).await? {
                to_list_changed.push(ms(told));
                break;
            }
            anyhow::ensure!(written.elapsed() < STEP, "{new_tool} never listed");
        }
        // The previous round's server stopped, this one's running.
        children_settle(gateway.pid, 2).await?;
    }

    let mut first_calls = Vec::new();
    let mut warm_calls = Vec::new();
    for _ in 0..rounds {
        first_calls.push(ms(echo(&client).await?));
        warm_calls.push(ms(echo(&client).await?));
        // Idle long enough to be stopped again.
        children_settle(gateway.pid, 2).await?;
    }

    let mut startups = Vec::new();
    for _ in 0..rounds {
        startups.push(ms(upstream_startup(fixture).await?));
    }
    gateway.stop(Duration::from_secs(10)).await;
    Ok(HotLoadFigures {
        rounds,
        write_to_list_changed_ms: median_and_max(to_list_changed),
        upstream_startup_ms: median_and_max(startups),
        dormant_first_call_ms: median_and_max(first_calls),
        warm_call_ms: median_and_max(warm_calls),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_add_one_server_and_keep_the_lazy_one() {
        let text = config(Path::new("/bin/fx"), 3);
        assert!(text.contains("[servers.steady]"));
        assert!(text.contains("[servers.new3]"));
        assert!(!text.contains("[servers.new2]"));
        assert!(text.contains("[servers.sleepy]\nlazy = true\nidle_timeout_ms = 300\n"));
        assert_eq!(median_and_max(vec![3.0, 1.0, 2.0]), (2.0, 3.0));
    }
}
