//! `switchboard-conformance-driver`: the client program the MCP conformance suite runs
//! for its client scenarios (`conformance client --command "switchboard-conformance-driver"`).
//!
//! The suite starts a scenario server and runs this program with the server's URL as
//! the last argument, naming the scenario in `MCP_CONFORMANCE_SCENARIO` (its protocol
//! revision in `MCP_CONFORMANCE_PROTOCOL_VERSION`, extra input in
//! `MCP_CONFORMANCE_CONTEXT`). The driver starts `switchboard serve` with that URL as
//! its only upstream (passthrough, so names are unchanged), connects to the gateway as
//! a client of the same revision, and performs the scenario's calls through it. The
//! suite therefore judges switchboard's upstream side, end to end.
//!
//! ```text
//! switchboard-conformance-driver [--gateway PATH] URL
//! ```
//! The gateway binary defaults to `$SWITCHBOARD_BIN`, else `switchboard` beside this
//! program.

mod answers;
mod client;
mod scenarios;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::{Client, MODERN};

struct Args {
    gateway: PathBuf,
    url: String,
    scenario: String,
    version: String,
    context: Value,
}

fn args() -> anyhow::Result<Args> {
    let mut gateway = std::env::var_os("SWITCHBOARD_BIN").map(PathBuf::from);
    let mut url = None;
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--gateway" => gateway = Some(argv.next().context("--gateway needs a path")?.into()),
            "-h" | "--help" => {
                println!("usage: switchboard-conformance-driver [--gateway PATH] URL");
                std::process::exit(0);
            }
            _ => url = Some(arg),
        }
    }
    let gateway = match gateway {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the driver has no directory")?
            .join("switchboard"),
    };
    let context = match std::env::var("MCP_CONFORMANCE_CONTEXT") {
        Ok(text) => serde_json::from_str(&text).context("MCP_CONFORMANCE_CONTEXT is not JSON")?,
        Err(_) => Value::Null,
    };
    Ok(Args {
        gateway,
        url: url.context("usage: switchboard-conformance-driver [--gateway PATH] URL")?,
        scenario: std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default(),
        version: std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION")
            .unwrap_or_else(|_| "2025-11-25".into()),
        context,
    })
}

/// The gateway's configuration: the scenario server as its only, unprefixed upstream,
/// with the OAuth client information a deployment would give the gateway for it: the
/// scenario's pre-registered credentials, and the URL of the client metadata document the
/// suite expects a client to publish. For the authorization extensions, the grant the
/// deployment chose: keys and workload tokens as files in `dir` (as a secret mount
/// would provide them).
fn gateway_config(
    upstream: &str,
    scenario: &str,
    context: &Value,
    dir: &Path,
) -> anyhow::Result<String> {
    // A JSON string is a valid TOML string.
    let toml = |text: &str| Value::String(text.to_owned()).to_string();
    let mut config = format!(
        "[gateway]\nname = \"switchboard-conformance\"\npassthrough = true\n\
         request_timeout_ms = 25000\n\n[servers.upstream]\nurl = {}\n\n\
         [servers.upstream.oauth]\nclient_metadata_url = {}\n",
        toml(upstream),
        toml("https://conformance-test.local/client-metadata.json"),
    );
    for key in ["client_id", "client_secret"] {
        if let Some(value) = context[key].as_str() {
            config.push_str(&format!("{key} = {}\n", toml(value)));
        }
    }
    let file = |name: &str, key: &str| -> anyhow::Result<String> {
        let value = context[key]
            .as_str()
            .with_context(|| format!("the scenario context has no `{key}`"))?;
        let path = dir.join(name);
        std::fs::write(&path, value)?;
        Ok(toml(&path.to_string_lossy()))
    };
    let text = |key: &str| -> anyhow::Result<String> {
        Ok(toml(context[key].as_str().with_context(|| {
            format!("the scenario context has no `{key}`")
        })?))
    };
    match scenario {
        "auth/client-credentials-basic" => config.push_str("grant = \"client_credentials\"\n"),
        "auth/client-credentials-jwt" => config.push_str(&format!(
            "grant = \"client_credentials\"\nprivate_key_file = {}\nsigning_algorithm = {}\n",
            file("client-key.pem", "private_key_pem")?,
            text("signing_algorithm")?,
        )),
        "auth/wif-jwt-bearer" => config.push_str(&format!(
            "grant = \"jwt_bearer\"\nassertion_file = {}\n",
            file("workload-token.jwt", "valid_jwt")?,
        )),
        "auth/enterprise-managed-authorization" => config.push_str(&format!(
            "grant = \"enterprise\"\nidp_token_endpoint = {}\nidp_client_id = {}\nid_token = {}\n",
            text("idp_token_endpoint")?,
            text("idp_client_id")?,
            text("idp_id_token")?,
        )),
        "auth/dpop" | "auth/dpop-nonce" => config.push_str("dpop = true\n"),
        _ => {}
    }
    Ok(config)
}

/// `switchboard serve` on a free loopback port; returns the child and its `/mcp` URL.
async fn start_gateway(binary: &Path, config: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env(
            "SWITCHBOARD_LOG",
            std::env::var("SWITCHBOARD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let marker = "listening on ";
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find(marker) {
                return Ok(line[at + marker.len()..].trim().to_owned());
            }
        }
        bail!("the gateway exited before listening")
    })
    .await
    .context("the gateway did not start listening within 60 s")??;
    // Keep draining stdout so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, url))
}

async fn run(args: Args) -> anyhow::Result<()> {
    eprintln!(
        "driver: scenario {} at {} against {}",
        args.scenario, args.version, args.url
    );
    let dir = std::env::temp_dir().join(format!("switchboard-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("switchboard.toml");
    std::fs::write(
        &config,
        gateway_config(&args.url, &args.scenario, &args.context, &dir)?,
    )?;
    let started = start_gateway(&args.gateway, &config).await;
    let (mut gateway, url) = match started {
        Ok(started) => started,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(error);
        }
    };
    eprintln!("driver: gateway at {url}");
    let outcome = async {
        let client = if args.version == MODERN {
            Client::modern(&url)
        } else {
            Client::legacy(&url, &args.version).await?
        };
        scenarios::run(&client, &args.scenario, &args.context).await
    }
    .await;
    // A graceful stop, so the gateway ends its upstream session (DELETE) like a client.
    if let Some(pid) = gateway.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), gateway.wait())
        .await
        .is_err()
    {
        let _ = gateway.kill().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("driver: {error:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("driver: {error:#}");
            ExitCode::FAILURE
        }
    }
}
