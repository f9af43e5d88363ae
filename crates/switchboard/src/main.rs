//! `switchboard`: the MCP gateway binary. Subcommands run the HTTP face (`serve`), the
//! stdio face (`stdio`), validate a configuration (`check-config`) or read the audit log
//! (`audit`, in `audit_cli.rs`) and the capability registry (`registry`, in `registry_cli.rs`),
//! or talk to a running gateway's admin API: the operator verbs (`ls`, `add`, `rm`,
//! `reload`, `tools`, `call`, `logs`, `audit`, `approve`, `deny`; `verbs_cli.rs`,
//! `mcp_call.rs`) and kubectl-style ones (`get`, `describe`, `apply`, `delete`), on one
//! client (`ctl_cli.rs`). `completions` prints a shell completion script.

mod audit_cli;
mod cli_config;
mod ctl_cli;
mod mcp_call;
mod registry_cli;
mod secrets_cli;
mod verbs_cli;

use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};
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
    /// A running gateway's tools (admin API): all, one server's (`--server`), or a
    /// ranked search (`--search`). `tools search` searches a config's servers instead.
    #[command(args_conflicts_with_subcommands = true)]
    Tools {
        #[command(subcommand)]
        command: Option<ToolsCommand>,
        /// Only this server's tools.
        #[arg(long)]
        server: Option<String>,
        /// Rank the tools against these words.
        #[arg(long, value_name = "QUERY")]
        search: Option<String>,
        /// Most tools a search returns.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Call a tool through a running gateway's `/mcp` (as the `--key` principal) and print
    /// its result; exit 1 on a tool error.
    Call {
        /// The tool's exposed name (`switchboard tools` lists them).
        tool: String,
        /// The arguments as one JSON object.
        #[arg(long = "args", value_name = "JSON")]
        args_json: Option<String>,
        /// Arguments as key=value (the value read as JSON when it is JSON, else a
        /// string); added to `--args`.
        #[arg(value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Retry a call that waited for this approval (once it is approved).
        #[arg(long, value_name = "ID")]
        approval: Option<String>,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// A running gateway's servers: state, era, transport, tools, health.
    Ls {
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Register a server on a running gateway and wait for its first listing:
    /// `add NAME -- CMD ARGS...` (stdio) or `add NAME --url URL` (HTTP). Here `--url` is
    /// the server's: the gateway's is `--gateway` (or SWITCHBOARD_URL).
    #[command(mut_arg("url", |arg| arg.long("gateway")))]
    Add {
        name: String,
        /// The server's URL (Streamable HTTP, or legacy SSE with `--transport sse`).
        #[arg(
            id = "server_url",
            long = "url",
            value_name = "URL",
            conflicts_with = "command"
        )]
        url: Option<String>,
        /// `http` (default for `--url`) or `sse`.
        #[arg(long, requires = "server_url", value_parser = ["http", "sse"])]
        transport: Option<String>,
        /// An environment variable of the server's process (repeatable).
        #[arg(long = "env", value_name = "KEY=VALUE")]
        envs: Vec<String>,
        /// An HTTP header sent to the server (repeatable).
        #[arg(long = "header", value_name = "NAME=VALUE", requires = "server_url")]
        headers: Vec<String>,
        /// The working directory of the server's process.
        #[arg(long)]
        cwd: Option<String>,
        /// How long to wait for the server to be ready, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 60)]
        wait: u64,
        /// The command and its arguments, after `--`.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Remove a server from a running gateway (its calls in flight finish first).
    Rm {
        name: String,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Print a shell completion script: `switchboard completions bash > …`.
    Completions { shell: clap_complete::Shell },
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
    /// A running gateway's audit log: the newest records and, with `--verify`, whether
    /// the whole log verifies (exit 1 when not). The subcommands read a state dir
    /// instead: verify, tail, keygen.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        command: Option<audit_cli::AuditCommand>,
        /// Verify the whole log (order, hash chain, signatures, signed head).
        #[arg(long)]
        verify: bool,
        /// How many records.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Trust only this public key when verifying (repeatable; default: the keys the
        /// log lists).
        #[arg(long = "public-key", value_name = "KEY", requires = "verify")]
        public_keys: Vec<String>,
        #[command(flatten)]
        remote: ctl_cli::Remote,
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
    /// Restart a server of a running gateway without losing calls (`reload NAME`, or
    /// `reload server NAME`), or every running server (`reload`), waiting for each to be
    /// ready again.
    Reload {
        #[arg(num_args = 0..=2, value_name = "NAME")]
        target: Vec<String>,
        #[command(flatten)]
        remote: ctl_cli::Remote,
    },
    /// Grant a pending approval on a running gateway, or (`--server`) approve a version
    /// of a server's lists.
    Approve {
        #[arg(required_unless_present = "server", conflicts_with = "server")]
        id: Option<String>,
        /// Approve a version of this server's lists (the capability registry).
        #[arg(long)]
        server: Option<String>,
        /// The version to approve (default: the live one).
        #[arg(long, requires = "server")]
        version: Option<u64>,
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
    /// Not a command: what `remote_request` answers for arguments clap accepted but a
    /// verb refuses (exit 2).
    #[command(skip)]
    Invalid(String),
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
        Command::Reload { target, remote } => match target.as_slice() {
            [] => (Request::Reload(None), remote),
            [name] | [_, name] if target.len() == 1 || target[0] == "server" => {
                (Request::Reload(Some(name.clone())), remote)
            }
            _ => return Err(Box::new(Command::Reload { target, remote })),
        },
        Command::Approve {
            id: Some(id),
            remote,
            ..
        } => (
            Request::Decide {
                id,
                approve: true,
                reason: None,
            },
            remote,
        ),
        Command::Approve {
            server: Some(server),
            version,
            remote,
            ..
        } => (Request::ApproveVersion { server, version }, remote),
        Command::Ls { remote } => (Request::List, remote),
        Command::Rm { name, remote } => (Request::Delete(name), remote),
        Command::Add {
            name,
            url,
            transport,
            envs,
            headers,
            cwd,
            wait,
            command,
            remote,
        } => {
            let server = match definition(url, transport, &envs, &headers, cwd, command) {
                Ok(server) => server,
                Err(error) => return Err(Box::new(Command::Invalid(format!("{error:#}")))),
            };
            (
                Request::Add {
                    name,
                    server,
                    wait: Duration::from_secs(wait),
                },
                remote,
            )
        }
        Command::Tools {
            command: None,
            server,
            search,
            limit,
            remote,
        } => (
            Request::Tools {
                server,
                search,
                limit,
            },
            remote,
        ),
        Command::Call {
            tool,
            args_json,
            pairs,
            approval,
            remote,
        } => match mcp_call::arguments(args_json.as_deref(), &pairs) {
            Ok(arguments) => (
                Request::Call {
                    tool,
                    arguments,
                    approval,
                },
                remote,
            ),
            Err(error) => return Err(Box::new(Command::Invalid(format!("{error:#}")))),
        },
        Command::Audit {
            command: None,
            verify,
            limit,
            public_keys,
            remote,
        } => (
            Request::Audit {
                limit,
                verify,
                public_keys,
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

/// The `.mcp.json` entry `add` registers: a command and its arguments, or a URL.
fn definition(
    url: Option<String>,
    transport: Option<String>,
    envs: &[String],
    headers: &[String],
    cwd: Option<String>,
    command: Vec<String>,
) -> anyhow::Result<serde_json::Value> {
    fn pairs(
        flag: &str,
        items: &[String],
    ) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        let mut map = serde_json::Map::new();
        for item in items {
            let (key, value) = item
                .split_once('=')
                .filter(|(key, _)| !key.is_empty())
                .with_context(|| format!("--{flag} `{item}`: expected KEY=VALUE"))?;
            anyhow::ensure!(
                map.insert(key.to_owned(), value.into()).is_none(),
                "--{flag} `{key}` given twice"
            );
        }
        Ok(map)
    }
    let mut server = serde_json::Map::new();
    match (url, command.split_first()) {
        (Some(url), None) => {
            server.insert(
                "type".into(),
                transport.unwrap_or_else(|| "http".into()).into(),
            );
            server.insert("url".into(), url.into());
            if !headers.is_empty() {
                server.insert("headers".into(), pairs("header", headers)?.into());
            }
        }
        (None, Some((program, args))) => {
            server.insert("command".into(), program.clone().into());
            server.insert("args".into(), args.to_vec().into());
        }
        (None, None) => {
            anyhow::bail!("add: give the command after `--` (add NAME -- CMD ARGS...) or --url URL")
        }
        (Some(_), Some(_)) => anyhow::bail!("add: a command or --url, not both"),
    }
    if !envs.is_empty() {
        server.insert("env".into(), pairs("env", envs)?.into());
    }
    if let Some(cwd) = cwd {
        server.insert("cwd".into(), cwd.into());
    }
    Ok(server.into())
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
    match cli.command {
        Command::Invalid(message) => {
            eprintln!("switchboard: {message}");
            return ExitCode::from(2);
        }
        Command::Reload { target, .. } => {
            eprintln!(
                "switchboard: reload takes a server name (`reload NAME` or `reload server NAME`), not {target:?}"
            );
            return ExitCode::from(2);
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "switchboard",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    if let Command::Audit {
        command: Some(command),
        ..
    } = cli.command
    {
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
        | Command::Logs { .. }
        | Command::Ls { .. }
        | Command::Add { .. }
        | Command::Rm { .. }
        | Command::Call { .. }
        | Command::Completions { .. }
        | Command::Invalid(_)
        | Command::Tools { command: None, .. } => {
            unreachable!("handled before the runtime starts")
        }
        Command::Tools {
            command:
                Some(ToolsCommand::Search {
                    query,
                    config,
                    limit,
                    json,
                }),
            ..
        } => {
            let (loaded, _) = load(&config, max_config_bytes)?;
            let gateway = Gateway::start(&loaded).await?;
            // With `[search] model`, give the encoder time to embed the catalog first, so
            // the answer is the hybrid ranking the running gateway would give.
            if !gateway
                .search_ready(std::time::Duration::from_secs(120))
                .await
            {
                eprintln!("search: tool vectors not ready after 120 s; ranking lexically");
            }
            let found = gateway.search_tools(&query, limit).await;
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

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory as _;

    /// clap's own checks of every subcommand (unique names, valid references), which
    /// otherwise only fire when that subcommand is parsed.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
