//! `switchboard`: the MCP gateway binary. Subcommands run the HTTP face (`serve`), the
//! stdio face (`stdio`), validate a configuration (`check-config`) or read the audit log
//! (`audit`, in `audit_cli.rs`) and the capability registry (`registry`, in `registry_cli.rs`),
//! or talk to a running gateway's admin API, kubectl-style (`get`, `describe`, `apply`,
//! `delete`, `reload`, `approve`, `deny`, `logs`, in `ctl_cli.rs`).

mod audit_cli;
mod ctl_cli;
mod registry_cli;
mod secrets_cli;

use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use switchboard_gateway::Gateway;
use switchboard_gateway::face;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;

/// A gateway allocates and frees many small, short-lived buffers per call (envelopes,
/// headers, JSON maps); mimalloc's thread-local free lists serve them far cheaper than
/// glibc's malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "One MCP endpoint in front of many MCP servers"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SWITCHBOARD_LOG_FORMAT")]
    log_format: LogFormat,
    /// Largest config file read, in bytes; a larger one is a config error.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = switchboard_config::DEFAULT_MAX_CONFIG_BYTES, env = "SWITCHBOARD_MAX_CONFIG_BYTES")]
    max_config_bytes: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve Streamable HTTP on one `/mcp` endpoint (both protocol eras).
    Serve {
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
        /// Listen address, overriding `listen.http` of the config.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Serve one client over stdin/stdout (for clients that spawn the gateway).
    Stdio {
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
        /// Whether this client sees the meta-tools the config enables (default: the
        /// config's `meta_tools_by_default`).
        #[arg(long, value_name = "on|off", value_parser = face::parse_switch)]
        meta_tools: Option<bool>,
        /// How this client sees the tools: the whole catalog, or meta mode (three tools:
        /// search_tools, call_tool, select_tools). Default: the config's `[gateway] tools`.
        #[arg(long, value_name = "catalog|search", value_parser = switchboard_config::ToolsMode::parse)]
        tools: Option<switchboard_config::ToolsMode>,
    },
    /// Work with the tools of the configured servers.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Ask the router agent (`[agent]`) in plain words; prints the answer, or with
    /// `--json` the answer and its trace of tool calls.
    Ask {
        /// What to do, in plain words.
        query: String,
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
        /// Continue this conversation (needs `state_dir` to outlive this run).
        #[arg(long)]
        conversation: Option<String>,
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a configuration file without running anything.
    CheckConfig { config: PathBuf },
    /// Read the tamper-evident audit log: verify, tail, keygen.
    Audit {
        #[command(subcommand)]
        command: audit_cli::AuditCommand,
    },
    /// The capability registry: a server's versions, diffs, approvals.
    Registry {
        #[command(subcommand)]
        command: registry_cli::RegistryCommand,
    },
    /// The encrypted secret store: rotate its key, make a key.
    Secrets {
        #[command(subcommand)]
        command: secrets_cli::SecretsCommand,
    },
    /// List servers, tools, approvals or pins of a running gateway (admin API).
    Get {
        resource: ctl_cli::Resource,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Show one server of a running gateway: status, registry version and pin, tools.
    Describe {
        kind: ctl_cli::Kind,
        name: String,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Register the servers of a JSON file (`.mcp.json` `mcpServers`, or `{"name",
    /// "server"}`; `-` for stdin) on a running gateway, replacing ones that exist.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Remove a server from a running gateway (its calls in flight finish first).
    Delete {
        kind: ctl_cli::Kind,
        name: String,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Restart a server of a running gateway without losing calls.
    Reload {
        kind: ctl_cli::Kind,
        name: String,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Grant a pending approval on a running gateway.
    Approve {
        id: String,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Refuse a pending approval on a running gateway.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// The audit log's newest records from a running gateway, oldest first.
    Logs {
        /// How many records.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        decision: Option<String>,
        /// Keep printing new records as they are written.
        #[arg(short = 'f', long)]
        follow: bool,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
}

/// The commands that talk to a running gateway's admin API, as a request; others back.
fn remote_request(command: Command) -> Result<(ctl_cli::Request, ctl_cli::Remote), Box<Command>> {
    use ctl_cli::Request;
    Ok(match command {
        Command::Get { resource, remote } => (Request::Get(resource), remote),
        Command::Describe { name, remote, .. } => (Request::Describe(name), remote),
        Command::Apply { file, remote } => (Request::Apply(file), remote),
        Command::Delete { name, remote, .. } => (Request::Delete(name), remote),
        Command::Reload { name, remote, .. } => (Request::Reload(name), remote),
        Command::Approve { id, remote } => (
            Request::Decide {
                id,
                approve: true,
                reason: None,
            },
            remote,
        ),
        Command::Deny { id, reason, remote } => (
            Request::Decide {
                id,
                approve: false,
                reason,
            },
            remote,
        ),
        Command::Logs {
            limit,
            server,
            tool,
            principal,
            decision,
            follow,
            remote,
        } => {
            let filters = [
                ("server", server),
                ("tool", tool),
                ("principal", principal),
                ("decision", decision),
            ]
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect();
            (
                Request::Logs {
                    limit,
                    filters,
                    follow,
                },
                remote,
            )
        }
        other => return Err(Box::new(other)),
    })
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Search every tool of the configured servers (starts them, searches, stops them).
    Search {
        /// What to do, in plain words.
        query: String,
        #[arg(long, env = "SWITCHBOARD_CONFIG")]
        config: PathBuf,
        /// Most tools to show.
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into pipes and files.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// stdin as a non-blocking pipe when it is one (as under a client that spawned us):
/// tokio's `stdin()` reads through the blocking pool, a thread hop per read. A terminal or
/// a file keeps the portable path.
fn stdin() -> Pin<Box<dyn AsyncRead + Send>> {
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Receiver::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdin()),
    }
}

/// stdout likewise.
fn stdout() -> Pin<Box<dyn AsyncWrite + Send>> {
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .and_then(pipe::Sender::from_owned_fd);
    match pipe {
        Ok(pipe) => Box::pin(pipe),
        Err(_) => Box::pin(tokio::io::stdout()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = match remote_request(cli.command) {
        Ok((request, remote)) => return ctl_cli::run(request, &remote),
        Err(command) => *command,
    };
    let cli = Cli { command, ..cli };
    if let Command::Audit { command } = cli.command {
        return match audit_cli::run(command, cli.max_config_bytes) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("switchboard: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Registry { command } = cli.command {
        return match registry_cli::run(command, cli.max_config_bytes) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("switchboard: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Secrets { command } = cli.command {
        return match secrets_cli::run(command, cli.max_config_bytes) {
            Ok(code) => code,
            Err(error) => {
                eprintln!("switchboard: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    if matches!(
        cli.command,
        Command::Serve { .. } | Command::Stdio { .. } | Command::Tools { .. } | Command::Ask { .. }
    ) {
        // Before the runtime: the guardian is forked while we have one thread.
        if let Err(error) = switchboard_upstream::guardian::start() {
            tracing::warn!(%error, "no guardian: a server's grandchildren may outlive a killed gateway");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("switchboard: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, cli.max_config_bytes)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchboard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, max_config_bytes: u64) -> anyhow::Result<()> {
    match command {
        Command::CheckConfig { config } => {
            let loaded = switchboard_config::load_with_limit(&config, max_config_bytes)?;
            for warning in &loaded.warnings {
                eprintln!("switchboard: warning: {warning}");
            }
            println!(
                "{}: ok ({} format, {} server(s): {})",
                config.display(),
                loaded.source.format,
                loaded.servers.len(),
                loaded
                    .servers
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::Audit { .. }
        | Command::Registry { .. }
        | Command::Secrets { .. }
        | Command::Get { .. }
        | Command::Describe { .. }
        | Command::Apply { .. }
        | Command::Delete { .. }
        | Command::Reload { .. }
        | Command::Approve { .. }
        | Command::Deny { .. }
        | Command::Logs { .. } => {
            unreachable!("handled before the runtime starts")
        }
        Command::Tools {
            command:
                ToolsCommand::Search {
                    query,
                    config,
                    limit,
                    json,
                },
        } => {
            let (loaded, _) = load(&config, max_config_bytes)?;
            let gateway = Gateway::start(&loaded).await?;
            let found = gateway.search_tools(&query, limit);
            if found.is_empty() {
                eprintln!("no tool matches");
            }
            for tool in &found {
                if json {
                    println!("{}", tool.to_admin_json());
                } else {
                    let line = tool.compact["description"].as_str().unwrap_or_default();
                    println!("{:.3}  {}  {line}", tool.score, tool.name);
                }
            }
            gateway.shutdown().await;
            Ok(())
        }
        Command::Ask {
            query,
            config,
            conversation,
            json,
        } => {
            let (loaded, _) = load(&config, max_config_bytes)?;
            let gateway = Gateway::start(&loaded).await?;
            let answer = gateway.ask_local(&query, conversation.as_deref()).await;
            gateway.shutdown().await;
            let answer = answer.map_err(|error| anyhow::anyhow!("{error}"))?;
            if json {
                println!("{}", answer.to_json());
            } else {
                match &answer.answer {
                    Some(text) => println!("{text}"),
                    None => println!("{}", answer.to_json()["unsynthesized"]),
                }
                for call in &answer.tool_calls {
                    eprintln!(
                        "  {}/{} {} ({} ms)",
                        call.server,
                        call.tool,
                        call.outcome,
                        call.duration.as_millis()
                    );
                }
            }
            Ok(())
        }
        Command::Stdio {
            config,
            meta_tools,
            tools,
        } => {
            let hangup = hangup_signal();
            let (loaded, text) = load(&config, max_config_bytes)?;
            if loaded.audit.as_ref().and_then(|a| a.export.as_ref())
                == Some(&switchboard_config::AuditExport::Stdout)
            {
                anyhow::bail!(
                    "audit.export = \"stdout\" cannot be used with `switchboard stdio`: stdout carries the MCP messages; export to a file"
                );
            }
            let gateway = Gateway::start(&loaded).await?;
            watch(&gateway, &config, &text, max_config_bytes, hangup);
            let max = loaded.gateway.max_message_bytes;
            let stop = shutdown_signal();
            let serving =
                face::stdio::serve(gateway.clone(), stdin(), stdout(), max, meta_tools, tools);
            tokio::select! {
                () = serving => {}
                () = stop => {
                    gateway.drain(loaded.gateway.drain_timeout).await;
                }
            }
            gateway.shutdown().await;
            Ok(())
        }
        Command::Serve { config, listen } => {
            let hangup = hangup_signal();
            let (loaded, text) = load(&config, max_config_bytes)?;
            let address = listen
                .or(loaded.listen.http)
                .context("no listen address: set listen.http in the config or pass --listen")?;
            let gateway = Gateway::start(&loaded).await?;
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address}"))?;
            let stop = shutdown_signal();
            let bound = listener.local_addr()?;
            gateway.cluster_listening(bound);
            // Tests and scripts read this line to learn the port.
            println!("switchboard listening on http://{bound}/mcp");
            tracing::info!(%bound, "serving Streamable HTTP on /mcp");
            watch(&gateway, &config, &text, max_config_bytes, hangup);
            let app = face::app(gateway.clone(), &loaded.listen);
            // SIGTERM: stop accepting, let calls in flight finish (up to the drain
            // deadline), give open streams a moment to close, then stop the upstreams.
            let (stop_accepting, stopped) = tokio::sync::oneshot::channel::<()>();
            let listen = loaded.listen.clone();
            let serving = tokio::spawn(async move {
                face::serve::serve(listener, app, &listen, async {
                    let _ = stopped.await;
                })
                .await;
            });
            stop.await;
            let _ = stop_accepting.send(());
            let drained = gateway.drain(loaded.gateway.drain_timeout).await;
            tracing::info!(drained, "calls in flight finished; closing");
            let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
            gateway.shutdown().await;
            Ok(())
        }
    }
}

/// Reads and validates the config file; returns the text too, so the watcher compares
/// later versions with what was actually loaded.
fn load(path: &Path, max_bytes: u64) -> anyhow::Result<(switchboard_config::Config, String)> {
    let text = switchboard_config::read(path, max_bytes)?;
    let config = switchboard_config::parse_file(path, &text)?;
    for warning in &config.warnings {
        tracing::warn!(%warning, "config key ignored");
    }
    Ok((config, text))
}

/// Hot-loading: the config file is watched for the life of the gateway, and SIGHUP
/// re-reads it.
fn watch(
    gateway: &Gateway,
    config: &Path,
    loaded: &str,
    max_bytes: u64,
    hangup: Option<tokio::signal::unix::Signal>,
) {
    let watch = switchboard_gateway::watch::watch_config(
        gateway.clone(),
        config.to_path_buf(),
        loaded,
        max_bytes,
    );
    let Some(mut hangup) = hangup else { return };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                received = hangup.recv() => {
                    if received.is_none() { return }
                    tracing::info!("SIGHUP: reloading the config");
                    watch.reload();
                }
                () = watch.stopped() => return,
            }
        }
    });
}

/// SIGHUP (a reload habit, and what a closing terminal or SSH session sends) must never
/// end the gateway: the handler is installed first thing, before start-up, and a signal
/// that arrives before the watcher runs is delivered to it once it does.
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .inspect_err(|error| tracing::warn!(%error, "SIGHUP not handled"))
        .ok()
}

/// SIGTERM / Ctrl-C. The handlers are installed when this is called (not when the future
/// is first polled), so call it before announcing readiness: a SIGTERM right after the
/// announcement must drain, not kill.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        let (Ok(mut term), Ok(mut interrupt)) = (term, interrupt) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: draining requests");
    }
}
