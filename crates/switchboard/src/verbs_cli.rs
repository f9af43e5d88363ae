//! The operator verbs of `switchboard ls | add | rm | reload | tools | call | logs | audit
//! | approve` that `ctl_cli.rs`'s kubectl-style commands do not already cover: `ls` (servers
//! with a health column), `add` (register, then wait for the first listing), `reload`
//! of one server or all, `tools` (filtered or searched), `audit` (records and the verify
//! status) and `approve --server` (a version of a server's lists). They use `ctl_cli`'s
//! admin client, failures and tables; `call` is in `mcp_call.rs`.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::ctl_cli::{Client, Column, Failure, Out, print_json, print_table, report, segment};

const LS_COLUMNS: &[Column] = &[
    ("NAME", "/name"),
    ("STATE", "/state"),
    ("ERA", "/era"),
    ("TRANSPORT", "/transport"),
    ("TOOLS", "/tools"),
    ("HEALTH", "/health"),
];

const TOOL_COLUMNS: &[Column] = &[
    ("NAME", "/name"),
    ("SERVER", "/server"),
    ("DESCRIPTION", "/description"),
];

const FOUND_COLUMNS: &[Column] = &[
    ("NAME", "/name"),
    ("SERVER", "/server"),
    ("SCORE", "/score"),
    ("DESCRIPTION", "/description"),
];

const AUDIT_COLUMNS: &[Column] = &[
    ("SEQ", "/seq"),
    ("TIME", "/time"),
    ("PRINCIPAL", "/principal"),
    ("METHOD", "/method"),
    ("TOOL", "/tool"),
    ("DECISION", "/decision"),
    ("OUTCOME", "/outcome"),
    ("KEY", "/key"),
];

/// How often `add` looks at a new server's state while it starts.
const POLL: Duration = Duration::from_millis(200);

/// One word for a server's health, from its state and its breaker: `healthy`,
/// `breaker-open`, `recovering` (half-open), `unhealthy` (failing health checks),
/// `failed`, `starting`, `dormant` (lazy, not started), `stopped`.
pub(crate) fn health(server: &Value) -> &'static str {
    let state = server["state"].as_str().unwrap_or_default();
    let breaker = server["breaker"].as_str().unwrap_or("closed");
    match (state, breaker) {
        ("ready" | "degraded", "open") => "breaker-open",
        ("ready" | "degraded", "half_open") => "recovering",
        ("ready", _) => "healthy",
        ("degraded", _) => "unhealthy",
        ("failed", _) => "failed",
        ("starting", _) => "starting",
        ("dormant", _) => "dormant",
        ("stopped", _) => "stopped",
        _ => "unknown",
    }
}

async fn servers(client: &Client) -> Result<Vec<Value>, Failure> {
    let answer = client.get("/admin/servers").await?;
    Ok(answer["servers"].as_array().cloned().unwrap_or_default())
}

/// `ls`: every server, as the admin API describes it plus `health`.
pub(crate) async fn list(client: &Client, out: &Out) -> Result<(), Failure> {
    let rows: Vec<Value> = servers(client)
        .await?
        .into_iter()
        .map(|mut server| {
            server["health"] = json!(health(&server));
            server
        })
        .collect();
    if out.json {
        print_json(&Value::Array(rows));
    } else {
        print_table(LS_COLUMNS, &rows);
    }
    Ok(())
}

/// `add`: registers `definition` (an `.mcp.json` entry) as `name`, then waits until the
/// server has listed its tools (ready), is dormant (`lazy`), or has failed.
pub(crate) async fn add(
    client: &Client,
    out: &Out,
    name: &str,
    definition: Value,
    wait: Duration,
) -> Result<(), Failure> {
    out.progress(format_args!("registering server \"{name}\""));
    let body = json!({ "name": name, "server": definition });
    let (_, answer) = client
        .send(reqwest::Method::POST, "/admin/servers", Some(&body))
        .await
        .map_err(|failure| failure.about(&format!("server \"{name}\"")))?;
    let server = settled(client, out, name, wait).await?;
    let mut server = server;
    server["health"] = json!(health(&server));
    if out.json {
        print_json(&json!({ "server": server, "persisted": answer["persisted"] }));
    } else {
        println!(
            "server \"{name}\" added: {}, {} tools",
            server["state"].as_str().unwrap_or_default(),
            server["tools"]
        );
    }
    Ok(())
}

/// Waits for `name` to be ready, degraded or dormant; its last state and error when it
/// failed, stopped or did not settle within `wait`.
async fn settled(client: &Client, out: &Out, name: &str, wait: Duration) -> Result<Value, Failure> {
    let deadline = Instant::now() + wait;
    let mut shown = String::new();
    loop {
        let Some(server) = servers(client)
            .await?
            .into_iter()
            .find(|s| s["name"] == name)
        else {
            return Err(Failure::refused(format!(
                "server \"{name}\" is no longer registered"
            )));
        };
        let state = server["state"].as_str().unwrap_or_default().to_owned();
        if state != shown {
            out.progress(format_args!("server \"{name}\": {state}"));
            shown.clone_from(&state);
        }
        match state.as_str() {
            "ready" | "degraded" | "dormant" => return Ok(server),
            "failed" | "stopped" => {
                let error = server["last_error"].as_str().unwrap_or("no error recorded");
                return Err(Failure::refused(format!(
                    "server \"{name}\" {state}: {error}"
                )));
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(Failure::refused(format!(
                "server \"{name}\" not ready after {} s (state: {state})",
                wait.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `reload [NAME]`: one server, or every server that runs (dormant and stopped ones are
/// left alone), one at a time so the others keep serving. Each reload returns once the
/// restarted server is ready. JSON: `{"reloaded": [names], "failed": [{"name", "error"}]}`.
pub(crate) async fn reload(
    client: &Client,
    out: &Out,
    name: Option<String>,
) -> Result<(), Failure> {
    let single = name.is_some();
    let names: Vec<String> = match name {
        Some(name) => vec![name],
        None => servers(client)
            .await?
            .iter()
            .filter(|s| !matches!(s["state"].as_str(), Some("dormant" | "stopped")))
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect(),
    };
    let mut reloaded = Vec::new();
    let mut failed = Vec::new();
    for (index, name) in names.iter().enumerate() {
        out.progress(format_args!(
            "reloading \"{name}\" ({}/{})",
            index + 1,
            names.len()
        ));
        let started = Instant::now();
        let path = format!("/admin/servers/{}/reload", segment(name));
        match client.send(reqwest::Method::POST, &path, None).await {
            Ok(_) => {
                out.progress(format_args!(
                    "\"{name}\" ready again after {} ms",
                    started.elapsed().as_millis()
                ));
                if !out.json {
                    println!("server \"{name}\" reloaded");
                }
                reloaded.push(name.clone());
            }
            // One server asked for, or a credential refused: nothing else to try.
            Err(failure) if single || failure.code != 1 => {
                return Err(failure.about(&format!("server \"{name}\"")));
            }
            Err(failure) => {
                eprintln!("switchboard: server \"{name}\": {}", failure.message);
                failed.push(json!({ "name": name, "error": failure.message }));
            }
        }
    }
    if out.json {
        print_json(&json!({ "reloaded": reloaded, "failed": failed }));
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::refused(format!(
            "{} of {} servers did not reload",
            failed.len(),
            names.len()
        )))
    }
}

/// `tools [--server S] [--search Q]`: the merged catalog, or a ranked search of it.
pub(crate) async fn tools(
    client: &Client,
    out: &Out,
    server: Option<&str>,
    search: Option<&str>,
    limit: u32,
) -> Result<(), Failure> {
    let (answer, columns) = match search {
        Some(query) => {
            let path = format!("/admin/tools/search?q={}&limit={limit}", segment(query));
            (client.get(&path).await?, FOUND_COLUMNS)
        }
        None => (client.get("/admin/tools").await?, TOOL_COLUMNS),
    };
    let rows: Vec<Value> = answer["tools"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|tool| server.is_none_or(|server| tool["server"] == server))
        .collect();
    if out.json {
        print_json(&Value::Array(rows));
    } else {
        print_table(columns, &rows);
    }
    Ok(())
}

/// `approve --server S [--version N]`: approves a version of a server's lists; by
/// default the live one (the drifted version, else the newest recorded).
pub(crate) async fn approve_version(
    client: &Client,
    out: &Out,
    server: &str,
    version: Option<u64>,
) -> Result<(), Failure> {
    let version = match version {
        Some(version) => version,
        None => {
            let registry = client.get("/admin/registry").await?;
            let entry = registry["servers"]
                .as_array()
                .and_then(|all| all.iter().find(|s| s["server"] == server))
                .ok_or_else(|| {
                    Failure::refused(format!("server \"{server}\" keeps no versions"))
                })?;
            entry["drift"]["liveVersion"]
                .as_u64()
                .or_else(|| entry["version"].as_u64())
                .ok_or_else(|| {
                    Failure::refused(format!("server \"{server}\" has no version recorded yet"))
                })?
        }
    };
    let path = format!("/admin/registry/{}/approve", segment(server));
    let body = json!({ "version": version });
    let (_, answer) = client
        .send(reqwest::Method::POST, &path, Some(&body))
        .await?;
    report(
        out.json,
        &answer,
        &format!("server \"{server}\" version {version} approved"),
    );
    Ok(())
}

/// `audit [--verify] [--limit N]`: the newest records, oldest first, and with `--verify`
/// the whole log's verification (exit 1 when it does not verify). JSON: `{"records":
/// [...], "verify": {...} | null}`.
pub(crate) async fn audit(
    client: &Client,
    out: &Out,
    limit: u32,
    verify: bool,
    public_keys: &[String],
) -> Result<(), Failure> {
    let answer = client.get(&format!("/admin/audit?limit={limit}")).await?;
    let mut records = answer["records"].as_array().cloned().unwrap_or_default();
    records.reverse();
    let verified = if verify {
        let mut path = "/admin/audit/verify".to_owned();
        if !public_keys.is_empty() {
            path.push_str(&format!("?public_key={}", segment(&public_keys.join(","))));
        }
        Some(client.get(&path).await?)
    } else {
        None
    };
    if out.json {
        print_json(&json!({ "records": records, "verify": verified }));
    } else {
        print_table(AUDIT_COLUMNS, &records);
        if let Some(verified) = &verified {
            println!("{}", verify_line(verified));
        }
    }
    match verified {
        Some(verified) if verified["ok"] != true => Err(Failure::refused(format!(
            "the audit log does not verify: {}",
            verify_line(&verified)
        ))),
        _ => Ok(()),
    }
}

/// One line for a verification report.
fn verify_line(report: &Value) -> String {
    let keys: Vec<&str> = report["keys"]
        .as_array()
        .map(|keys| keys.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let trusted = match report["trusted"].as_str() {
        Some("given") => "the keys given",
        Some("gateway") => "the gateway's own signing key",
        _ => "the keys the log lists",
    };
    if report["ok"] == true {
        format!(
            "audit log ok: {} records verified (seq {}–{}), signed by {}, trusting {trusted}",
            report["verified"],
            report["first"],
            report["last"],
            if keys.is_empty() {
                "-".to_owned()
            } else {
                keys.join(", ")
            }
        )
    } else {
        format!(
            "audit log BROKEN at seq {}: {} ({} records before it verified)",
            report["first_bad_seq"],
            report["problem"].as_str().unwrap_or_default(),
            report["verified"]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::{health, verify_line};
    use serde_json::json;

    #[test]
    fn health_reads_state_and_breaker() {
        let server = |state: &str, breaker: &str| json!({ "state": state, "breaker": breaker });
        assert_eq!(health(&server("ready", "closed")), "healthy");
        assert_eq!(health(&server("ready", "open")), "breaker-open");
        assert_eq!(health(&server("degraded", "half_open")), "recovering");
        assert_eq!(health(&server("degraded", "closed")), "unhealthy");
        assert_eq!(health(&server("dormant", "closed")), "dormant");
        assert_eq!(health(&server("failed", "closed")), "failed");
        assert_eq!(health(&json!({})), "unknown");
    }

    #[test]
    fn a_broken_log_names_its_first_bad_seq() {
        let broken =
            json!({ "ok": false, "verified": 4, "first_bad_seq": 5, "problem": "hash mismatch" });
        assert_eq!(
            verify_line(&broken),
            "audit log BROKEN at seq 5: hash mismatch (4 records before it verified)"
        );
        let ok = json!({ "ok": true, "verified": 2, "first": 1, "last": 2, "keys": ["k1"], "trusted": "given" });
        assert!(
            verify_line(&ok)
                .starts_with("audit log ok: 2 records verified (seq 1–2), signed by k1")
        );
    }
}
