//! The client of a running gateway's admin API, shared by every remote command, and the
//! kubectl-style commands: `get servers|tools|approvals|pins`, `describe server NAME`,
//! `apply -f FILE`, `delete server NAME`, `approve ID`, `deny ID` and `logs` (the audit
//! log's records). The operator verbs (`ls`, `add`, `rm`, `reload`, `tools`, `call`,
//! `audit`, `approve --server`) are in `verbs_cli.rs` and `mcp_call.rs`, on this client.
//! The gateway's URL and credentials come from flags, else `SWITCHBOARD_URL` /
//! `SWITCHBOARD_ADMIN_TOKEN` / `SWITCHBOARD_KEY`, else the CLI's settings file
//! (`cli_config.rs`); tables by default, `--json` (or `-o json`) for scripts.
//!
//! Exit codes scripts can rely on: 0 done; 1 the gateway refused or the operation failed
//! (not found, conflict, invalid, a tool error, a log that does not verify); 2 bad input
//! or the gateway could not be reached; 3 the credential was missing or not allowed
//! (401/403).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

/// Where the gateway is, which credentials to present and how to print. Each setting
/// comes from its flag, else its environment variable, else the CLI's settings file
/// (`cli_config.rs`).
#[derive(Args, Clone)]
pub(crate) struct Remote {
    /// The gateway's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "SWITCHBOARD_URL")]
    url: Option<String>,
    /// The admin bearer token (or an `[access]` key with the admin role).
    #[arg(long, env = "SWITCHBOARD_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The credential `call` presents on `/mcp` (an `[access]` API key or JWT); without
    /// one, `call` is anonymous.
    #[arg(long, env = "SWITCHBOARD_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The CLI's settings file (TOML: `url`, `token`, `key`); default
    /// `$XDG_CONFIG_HOME/switchboard/cli.toml` (or `~/.config/switchboard/cli.toml`).
    #[arg(
        long = "cli-config",
        env = "SWITCHBOARD_CLI_CONFIG",
        value_name = "FILE"
    )]
    cli_config: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    output: Output,
    /// JSON output (the same as `-o json`).
    #[arg(long)]
    json: bool,
    /// Progress lines on stderr even when it is not a terminal (never with JSON output).
    #[arg(long)]
    progress: bool,
}

impl Remote {
    fn json(&self) -> bool {
        self.json || self.output == Output::Json
    }

    /// How to print: JSON or tables, and whether progress lines go to stderr (a terminal,
    /// or `--progress`; never with JSON output, which scripts read).
    fn out(&self) -> Out {
        let json = self.json();
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Out {
            json,
            progress: !json && (self.progress || terminal),
        }
    }
}

/// How a command prints.
pub(crate) struct Out {
    pub(crate) json: bool,
    progress: bool,
}

impl Out {
    /// A progress line on stderr, when progress is on.
    pub(crate) fn progress(&self, line: impl std::fmt::Display) {
        if self.progress {
            eprintln!("switchboard: {line}");
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Resource {
    #[value(alias = "server")]
    Servers,
    #[value(alias = "tool")]
    Tools,
    #[value(alias = "approval")]
    Approvals,
    #[value(alias = "pin")]
    Pins,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Kind {
    Server,
}

/// One command against the admin API (`call`: against `/mcp`).
pub(crate) enum Request {
    Get(Resource),
    /// `ls`: the servers with a health column.
    List,
    Describe(String),
    Apply(PathBuf),
    /// `add`: register a server, then wait (up to `wait`) for its first listing.
    Add {
        name: String,
        server: Value,
        wait: Duration,
    },
    Delete(String),
    /// One server, or every running one.
    Reload(Option<String>),
    Tools {
        server: Option<String>,
        search: Option<String>,
        limit: u32,
    },
    Call {
        tool: String,
        arguments: Value,
        approval: Option<String>,
    },
    Decide {
        id: String,
        approve: bool,
        reason: Option<String>,
    },
    /// Approve a version of a server's lists (the capability registry).
    ApproveVersion {
        server: String,
        version: Option<u64>,
    },
    Logs {
        limit: u32,
        filters: BTreeMap<&'static str, String>,
        follow: bool,
    },
    Audit {
        limit: u32,
        verify: bool,
        public_keys: Vec<String>,
    },
}

/// A failure with its exit code: 1 the gateway refused or the operation failed, 2 bad
/// input or the gateway could not be reached, 3 the credential was missing or not
/// allowed.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Exit code 1: the gateway refused, or what was asked did not happen.
    pub(crate) fn refused(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }

    /// The same failure, its message prefixed with what it was about.
    pub(crate) fn about(self, what: &str) -> Failure {
        Failure {
            code: self.code,
            message: format!("{what}: {}", self.message),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure {
            code: 2,
            message: format!("{error:#}"),
        }
    }
}

/// The admin API's client (and the `/mcp` credential for `call`).
pub(crate) struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    token: Option<String>,
    pub(crate) key: Option<String>,
}

impl Client {
    /// `admin`: whether the command needs the admin token (all but `call`).
    fn new(remote: &Remote, admin: bool) -> anyhow::Result<Client> {
        let file = crate::cli_config::load(remote.cli_config.as_deref())?;
        let url = remote.url.clone().or(file.url);
        let token = remote.token.clone().or(file.token);
        let key = remote.key.clone().or(file.key);
        let Some(url) = url else {
            bail!("no gateway: pass --url or set SWITCHBOARD_URL (or `url` in the CLI config)");
        };
        if admin && token.is_none() {
            bail!(
                "no admin token: pass --token or set SWITCHBOARD_ADMIN_TOKEN (or `token` in the CLI config)"
            );
        }
        let base = url
            .trim_end_matches('/')
            .trim_end_matches("/mcp")
            .to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Client {
            http,
            base,
            token,
            key,
        })
    }

    /// The JSON answer of a 2xx; a refusal as its exit code and the gateway's message.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Failure> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token.as_deref().unwrap_or_default());
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let status = response.status().as_u16();
        let text = response.text().await.context("reading the answer")?;
        let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok((status, value));
        }
        let message = value["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string());
        Err(Failure {
            code: if matches!(status, 401 | 403) { 3 } else { 1 },
            message: format!("{message} (HTTP {status})"),
        })
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, Failure> {
        Ok(self.send(reqwest::Method::GET, path, None).await?.1)
    }
}

pub(crate) fn run(request: Request, remote: &Remote) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .map_err(Failure::from)
        .and_then(|runtime| runtime.block_on(execute(request, remote)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("switchboard: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn execute(request: Request, remote: &Remote) -> Result<(), Failure> {
    let client = Client::new(remote, !matches!(request, Request::Call { .. }))?;
    let out = remote.out();
    let json = out.json;
    match request {
        Request::Get(resource) => {
            let (path, key) = match resource {
                Resource::Servers => ("/admin/servers", "servers"),
                Resource::Tools => ("/admin/tools", "tools"),
                Resource::Approvals => ("/admin/approvals", "approvals"),
                Resource::Pins => ("/admin/registry", "servers"),
            };
            let answer = client.get(path).await?;
            let rows = answer[key].as_array().cloned().unwrap_or_default();
            if json {
                print_json(&Value::Array(rows));
            } else {
                print_table(columns(resource), &rows);
            }
        }
        Request::List => crate::verbs_cli::list(&client, &out).await?,
        Request::Add { name, server, wait } => {
            crate::verbs_cli::add(&client, &out, &name, server, wait).await?;
        }
        Request::Reload(name) => crate::verbs_cli::reload(&client, &out, name).await?,
        Request::Tools {
            server,
            search,
            limit,
        } => {
            crate::verbs_cli::tools(&client, &out, server.as_deref(), search.as_deref(), limit)
                .await?
        }
        Request::Call {
            tool,
            arguments,
            approval,
        } => crate::mcp_call::call(&client, &out, &tool, arguments, approval.as_deref()).await?,
        Request::ApproveVersion { server, version } => {
            crate::verbs_cli::approve_version(&client, &out, &server, version).await?;
        }
        Request::Audit {
            limit,
            verify,
            public_keys,
        } => crate::verbs_cli::audit(&client, &out, limit, verify, &public_keys).await?,
        Request::Describe(name) => {
            let servers = client.get("/admin/servers").await?;
            let Some(server) = servers["servers"]
                .as_array()
                .and_then(|all| all.iter().find(|s| s["name"] == name.as_str()))
                .cloned()
            else {
                return Err(Failure {
                    code: 1,
                    message: format!("server `{name}` not found"),
                });
            };
            let registry = client.get("/admin/registry").await?;
            let pin = registry["servers"]
                .as_array()
                .and_then(|all| all.iter().find(|s| s["server"] == name.as_str()))
                .cloned()
                .unwrap_or(Value::Null);
            let tools = client.get("/admin/tools").await?;
            let tools: Vec<Value> = tools["tools"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .filter(|t| t["server"] == name.as_str())
                        .map(|t| t["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            let described = json!({ "server": server, "registry": pin, "tools": tools });
            if json {
                print_json(&described);
            } else {
                print_described(&described);
            }
        }
        Request::Apply(file) => apply(&client, &file, json).await?,
        Request::Delete(name) => {
            let path = format!("/admin/servers/{}", segment(&name));
            let (_, answer) = client.send(reqwest::Method::DELETE, &path, None).await?;
            report(json, &answer, &format!("server \"{name}\" deleted"));
        }
        Request::Decide {
            id,
            approve,
            reason,
        } => {
            let verb = if approve { "approve" } else { "deny" };
            let path = format!("/admin/approvals/{}/{verb}", segment(&id));
            let body = reason.map(|reason| json!({ "reason": reason }));
            let (_, answer) = client
                .send(reqwest::Method::POST, &path, body.as_ref())
                .await?;
            let done = if approve { "approved" } else { "denied" };
            report(json, &answer, &format!("approval \"{id}\" {done}"));
        }
        Request::Logs {
            limit,
            filters,
            follow,
        } => logs(&client, limit, &filters, follow, json).await?,
    }
    Ok(())
}

/// `apply -f FILE` (or `-` for stdin): `{"mcpServers": {NAME: {...}}}` or `{"name": ...,
/// "server": {...}}`. A new server is registered; an existing one is replaced (removed,
/// then registered with the new definition).
async fn apply(client: &Client, file: &std::path::Path, json: bool) -> Result<(), Failure> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let document: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let entries: Vec<(String, Value)> = if let Some(servers) = document["mcpServers"].as_object() {
        servers
            .iter()
            .map(|(name, server)| (name.clone(), server.clone()))
            .collect()
    } else if let (Some(name), Some(server)) = (document["name"].as_str(), document.get("server")) {
        vec![(name.to_owned(), server.clone())]
    } else {
        return Err(anyhow::anyhow!(
            "{}: expected {{\"mcpServers\": {{...}}}} or {{\"name\": ..., \"server\": {{...}}}}",
            file.display()
        )
        .into());
    };
    if entries.is_empty() {
        return Err(anyhow::anyhow!("{}: no server to apply", file.display()).into());
    }
    let mut results = Vec::new();
    for (name, server) in entries {
        let body = json!({ "name": name, "server": server });
        let created = client
            .send(reqwest::Method::POST, "/admin/servers", Some(&body))
            .await;
        let action = match created {
            Ok(_) => "created",
            Err(failure) if failure.message.ends_with("(HTTP 409)") => {
                let path = format!("/admin/servers/{}", segment(&name));
                client.send(reqwest::Method::DELETE, &path, None).await?;
                client
                    .send(reqwest::Method::POST, "/admin/servers", Some(&body))
                    .await?;
                "replaced"
            }
            Err(failure) => {
                return Err(Failure {
                    code: failure.code,
                    message: format!("server \"{name}\": {}", failure.message),
                });
            }
        };
        if !json {
            println!("server \"{name}\" {action}");
        }
        results.push(json!({ "name": name, "action": action }));
    }
    if json {
        print_json(&Value::Array(results));
    }
    Ok(())
}

/// `logs`: the newest `limit` audit records, oldest first; with `follow`, then every new
/// one as it is written (polled each second) until interrupted.
async fn logs(
    client: &Client,
    limit: u32,
    filters: &BTreeMap<&'static str, String>,
    follow: bool,
    json: bool,
) -> Result<(), Failure> {
    let mut query: Vec<(String, String)> = filters
        .iter()
        .map(|(key, value)| ((*key).to_owned(), value.clone()))
        .collect();
    query.push(("limit".into(), limit.to_string()));
    let mut last_seq: Option<u64> = None;
    let mut first = true;
    loop {
        let path = format!(
            "/admin/audit?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", segment(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        let answer = client.get(&path).await?;
        let mut records: Vec<Value> = answer["records"].as_array().cloned().unwrap_or_default();
        records.reverse();
        records.retain(|r| last_seq.is_none_or(|last| r["seq"].as_u64() > Some(last)));
        if let Some(seq) = records.last().and_then(|r| r["seq"].as_u64()) {
            last_seq = Some(seq);
        }
        if json {
            for record in &records {
                println!("{record}");
            }
        } else {
            let columns = LOG_COLUMNS;
            if first {
                print_table(columns, &records);
            } else {
                print_rows(columns, &records, &widths(columns, &records));
            }
        }
        first = false;
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A path segment, percent-encoded.
pub(crate) fn segment(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub(crate) fn report(json: bool, answer: &Value, line: &str) {
    if json {
        print_json(answer);
    } else {
        println!("{line}");
    }
}

pub(crate) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// A column: its heading and the JSON pointer of its value in a row.
pub(crate) type Column = (&'static str, &'static str);

const LOG_COLUMNS: &[Column] = &[
    ("SEQ", "/seq"),
    ("TIME", "/time"),
    ("PRINCIPAL", "/principal"),
    ("METHOD", "/method"),
    ("SERVER", "/server"),
    ("TOOL", "/tool"),
    ("DECISION", "/decision"),
    ("OUTCOME", "/outcome"),
];

fn columns(resource: Resource) -> &'static [Column] {
    match resource {
        Resource::Servers => &[
            ("NAME", "/name"),
            ("STATE", "/state"),
            ("ERA", "/era"),
            ("TRANSPORT", "/transport"),
            ("BREAKER", "/breaker"),
            ("INFLIGHT", "/inflight"),
            ("TOOLS", "/tools"),
            ("RESTARTS", "/restarts"),
            ("LAST ERROR", "/last_error"),
        ],
        Resource::Tools => &[
            ("NAME", "/name"),
            ("SERVER", "/server"),
            ("TOOL", "/tool"),
            ("DESCRIPTION", "/description"),
        ],
        Resource::Approvals => &[
            ("ID", "/id"),
            ("STATE", "/state"),
            ("PRINCIPAL", "/principal"),
            ("SERVER", "/server"),
            ("TOOL", "/tool"),
            ("EXPIRES", "/expires"),
            ("BY", "/by"),
        ],
        Resource::Pins => &[
            ("SERVER", "/server"),
            ("PIN", "/pin"),
            ("VERSION", "/version"),
            ("APPROVED", "/approvedVersion"),
            ("DRIFT", "/drift/liveVersion"),
            ("QUARANTINED", "/quarantined"),
        ],
    }
}

/// A cell's text: strings as they are (one line, at most 60 characters), null as
/// nothing, arrays as their length, anything else as JSON.
fn cell(row: &Value, pointer: &str) -> String {
    let text = match row.pointer(pointer) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items.len().to_string(),
        Some(other) => other.to_string(),
    };
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() > 60 {
        let cut: String = line.chars().take(57).collect();
        format!("{cut}...")
    } else {
        line
    }
}

fn widths(columns: &[Column], rows: &[Value]) -> Vec<usize> {
    columns
        .iter()
        .map(|(heading, pointer)| {
            rows.iter()
                .map(|row| cell(row, pointer).chars().count())
                .chain([heading.len()])
                .max()
                .unwrap_or(0)
        })
        .collect()
}

pub(crate) fn print_table(columns: &[Column], rows: &[Value]) {
    let widths = widths(columns, rows);
    let heading: Vec<String> = columns
        .iter()
        .zip(&widths)
        .map(|((heading, _), width)| format!("{heading:<width$}"))
        .collect();
    println!("{}", heading.join("   ").trim_end());
    print_rows(columns, rows, &widths);
}

fn print_rows(columns: &[Column], rows: &[Value], widths: &[usize]) {
    for row in rows {
        let cells: Vec<String> = columns
            .iter()
            .zip(widths)
            .map(|((_, pointer), width)| format!("{:<width$}", cell(row, pointer)))
            .collect();
        println!("{}", cells.join("   ").trim_end());
    }
}

/// `describe`: one `key: value` line per field, nested objects indented.
fn print_described(value: &Value) {
    fn walk(value: &Value, indent: usize) {
        let Some(object) = value.as_object() else {
            return;
        };
        for (key, field) in object {
            let pad = " ".repeat(indent);
            match field {
                Value::Object(_) => {
                    println!("{pad}{key}:");
                    walk(field, indent + 2);
                }
                Value::Array(items) if items.iter().all(|i| !i.is_object()) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect();
                    println!("{pad}{key}: {}", items.join(", "));
                }
                Value::String(text) => println!("{pad}{key}: {text}"),
                Value::Null => println!("{pad}{key}:"),
                other => println!("{pad}{key}: {other}"),
            }
        }
    }
    walk(value, 0);
}

#[cfg(test)]
mod tests {
    use super::{cell, segment};
    use serde_json::json;

    #[test]
    fn cells_are_one_bounded_line() {
        let row = json!({ "a": "x\ny", "b": null, "c": [1, 2], "d": "é".repeat(80), "e": 3 });
        assert_eq!(cell(&row, "/a"), "x y");
        assert_eq!(cell(&row, "/b"), "");
        assert_eq!(cell(&row, "/c"), "2");
        assert_eq!(cell(&row, "/d").chars().count(), 60);
        assert_eq!(cell(&row, "/e"), "3");
        assert_eq!(cell(&row, "/missing"), "");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("fx_1.-~"), "fx_1.-~");
    }
}
