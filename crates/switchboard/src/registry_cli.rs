//! `switchboard registry …`: a server's versions and the diff between two, read from the
//! state dir's database read-only (beside a running gateway, or after one died, like
//! `switchboard audit`: no token and no running gateway needed to look); and `approve`,
//! which goes through the running gateway's admin API, because an approval must reach
//! the live catalog (and the database has one writer, the gateway).

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use switchboard_gateway::registry::{Diff, StoredVersion, summary};

use crate::audit_cli::{Source, locate, open};

#[derive(Subcommand)]
pub(crate) enum RegistryCommand {
    /// List a server's kept versions, oldest first: number, time, digest, what changed.
    History {
        server: String,
        #[command(flatten)]
        source: Source,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// What changed from version A to version B of a server.
    Diff {
        server: String,
        from: u64,
        to: u64,
        #[command(flatten)]
        source: Source,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Approve version N of a server on a running gateway (admin API).
    Approve {
        server: String,
        version: u64,
        /// The gateway's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "SWITCHBOARD_URL")]
        url: String,
        /// The admin bearer token.
        #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
    },
}

fn versions(
    server: &str,
    source: &Source,
    max_config_bytes: u64,
) -> anyhow::Result<(Vec<StoredVersion>, Option<u64>)> {
    let located = locate(source, max_config_bytes)?;
    let db = open(located.state_dir.as_deref(), false)?;
    let (versions, approved) = db.registry_versions(server)?;
    if versions.is_empty() {
        bail!("server {server} has no recorded version");
    }
    Ok((versions, approved))
}

/// One line per change in a diff: `tools ~ echo: description, inputSchema`.
fn describe(diff: &Diff) -> Vec<String> {
    let mut lines = Vec::new();
    for (kind, part) in [
        ("tools", &diff.tools),
        ("prompts", &diff.prompts),
        ("resources", &diff.resources),
        ("resourceTemplates", &diff.templates),
    ] {
        lines.extend(part.added.iter().map(|name| format!("{kind} + {name}")));
        lines.extend(part.removed.iter().map(|name| format!("{kind} - {name}")));
        lines.extend(
            part.changed
                .iter()
                .map(|c| format!("{kind} ~ {}: {}", c.name, c.fields.join(", "))),
        );
    }
    lines
}

pub(crate) fn run(command: RegistryCommand, max_config_bytes: u64) -> anyhow::Result<ExitCode> {
    match command {
        RegistryCommand::History {
            server,
            source,
            json,
        } => {
            let (versions, approved) = versions(&server, &source, max_config_bytes)?;
            if json {
                let listed: Vec<Value> = versions.iter().map(|v| summary(v, approved)).collect();
                println!("{}", json!({ "server": server, "versions": listed }));
                return Ok(ExitCode::SUCCESS);
            }
            for version in &versions {
                let mark = if approved == Some(version.version) {
                    " (approved)"
                } else {
                    ""
                };
                println!(
                    "version {}{mark}  recorded {}  sha256 {}  tools {}",
                    version.version,
                    version.recorded_at,
                    version.digest.get(..16).unwrap_or(&version.digest),
                    version.lists.tools.len()
                );
                for line in describe(&version.diff) {
                    println!("    {line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Diff {
            server,
            from,
            to,
            source,
            json,
        } => {
            let (versions, _) = versions(&server, &source, max_config_bytes)?;
            let find = |number: u64| {
                versions
                    .iter()
                    .find(|v| v.version == number)
                    .with_context(|| format!("server {server} does not keep version {number}"))
            };
            let diff = Diff::between(&find(from)?.lists, &find(to)?.lists);
            if json {
                println!(
                    "{}",
                    json!({ "server": server, "from": from, "to": to, "diff": diff })
                );
            } else if diff.is_empty() {
                println!("no difference between versions {from} and {to}");
            } else {
                for line in describe(&diff) {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Approve {
            server,
            version,
            url,
            token,
        } => approve(&server, version, &url, &token),
    }
}

fn approve(server: &str, version: u64, url: &str, token: &str) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let base = url.trim_end_matches('/').trim_end_matches("/mcp");
    let endpoint = format!("{base}/admin/registry/{server}/approve");
    let body = serde_json::to_vec(&json!({ "version": version }))?;
    let (status, text) = runtime.block_on(async {
        let response = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?
            .post(&endpoint)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        anyhow::Ok((status, response.text().await?))
    })?;
    if status.is_success() {
        println!("{text}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("switchboard: approval refused ({status}): {text}");
        Ok(ExitCode::FAILURE)
    }
}
