//! Meta-tools: let an agent see and steer the gateway itself — list, load, reload, unload
//! and install servers, and call any tool of any loaded server by server and tool name.
//! Off unless named in `[gateway] meta_tools`; installs also need `allow_install`.
//! Operational failures are tool results with `isError: true`, so the agent can read them.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_protocol::RpcError;

use crate::gateway::{ClientCtx, Gateway};
use crate::roster::parse_definition;
use crate::server::Origin;

const PREFIX: &str = "switchboard__";
/// Longest a package install may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

fn definition(name: &str) -> Option<Value> {
    let object = |properties: Value, required: &[&str]| json!({ "type": "object", "properties": properties, "required": required });
    let name_property =
        json!({ "type": "string", "description": "Server name (its key in the gateway)" });
    let (description, schema) = match name {
        "list_servers" => (
            "List the gateway's servers with their state, era and tool counts.",
            object(json!({}), &[]),
        ),
        "load_server" => (
            "Start a configured but dormant server, or register and start a new one from a definition \
             ({\"command\", \"args\", \"env\"} for stdio or {\"type\": \"http\", \"url\"} for HTTP).",
            object(
                json!({ "name": name_property, "definition": { "type": "object" } }),
                &["name"],
            ),
        ),
        "reload_server" => (
            "Restart a server without losing calls in flight.",
            object(json!({ "name": name_property }), &["name"]),
        ),
        "unload_server" => (
            "Remove a server (calls in flight finish first).",
            object(json!({ "name": name_property }), &["name"]),
        ),
        "call" => (
            "Call a tool of a loaded server by server and tool name.",
            object(
                json!({ "server": name_property, "tool": { "type": "string" }, "arguments": { "type": "object" } }),
                &["server", "tool"],
            ),
        ),
        "install_server" => (
            "Install an MCP server from a package (\"npm:NAME\" or \"pypi:NAME\") into the gateway's managed \
             directory and register it.",
            object(
                json!({ "name": name_property, "package": { "type": "string" }, "bin": { "type": "string" },
                        "args": { "type": "array", "items": { "type": "string" } } }),
                &["name", "package"],
            ),
        ),
        _ => return None,
    };
    Some(
        json!({ "name": format!("{PREFIX}{name}"), "description": description, "inputSchema": schema }),
    )
}

fn ok(value: Value) -> Result<Value, RpcError> {
    Ok(
        json!({ "content": [{ "type": "text", "text": value.to_string() }], "structuredContent": value }),
    )
}

fn failed(message: impl Into<String>) -> Result<Value, RpcError> {
    Ok(json!({ "content": [{ "type": "text", "text": message.into() }], "isError": true }))
}

fn string_arg<'a>(arguments: &'a Value, key: &str) -> Result<&'a str, RpcError> {
    arguments
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("missing `{key}`")))
}

impl Gateway {
    /// The enabled meta-tools' definitions, for `tools/list`.
    /// Whether a client that chose `choice` (`None`: it did not say) sees the meta-tools.
    pub fn meta_tools_for(&self, choice: Option<bool>) -> bool {
        choice.unwrap_or(self.inner.settings.meta_tools_by_default)
    }

    /// The meta-tools this client sees: the enabled ones, if it sees any.
    pub(crate) fn meta_tool_definitions(&self, ctx: &ClientCtx) -> Vec<Value> {
        if !ctx.meta_tools {
            return Vec::new();
        }
        self.inner
            .settings
            .meta_tools
            .iter()
            .filter_map(|name| definition(name))
            .collect()
    }

    /// The short name of the meta-tool `name` calls, when this client sees it.
    pub(crate) fn meta_tool_for<'a>(&self, ctx: &ClientCtx, name: &'a str) -> Option<&'a str> {
        let short = name.strip_prefix(PREFIX)?;
        (ctx.meta_tools && self.inner.settings.meta_tools.iter().any(|t| t == short))
            .then_some(short)
    }

    pub(crate) async fn run_meta_tool(
        &self,
        ctx: &ClientCtx,
        short: &str,
        arguments: &Value,
    ) -> Result<Value, RpcError> {
        match short {
            "list_servers" => ok(json!({ "servers": self.describe_servers() })),
            "load_server" => {
                let name = string_arg(arguments, "name")?;
                match arguments.get("definition") {
                    Some(definition) => {
                        let spec = parse_definition(name, definition)?;
                        match self.add_server(name, spec, Origin::Runtime).await {
                            Ok(()) => {
                                self.inner.store.put_registered(name, definition.clone());
                                ok(
                                    json!({ "loaded": name, "persisted": self.inner.store.is_persistent() }),
                                )
                            }
                            Err(error) => failed(error.message),
                        }
                    }
                    None => match self.server(name) {
                        Some(server) => match server.upstream(&self.inner.era_cache).await {
                            Ok(_) => ok(json!({ "loaded": name })),
                            Err(error) => failed(error.message),
                        },
                        None => failed(format!(
                            "unknown server `{name}`: give a definition to register it"
                        )),
                    },
                }
            }
            "reload_server" => match self
                .reload_server(string_arg(arguments, "name")?, None)
                .await
            {
                Ok(()) => ok(json!({ "reloaded": arguments["name"] })),
                Err(error) => failed(error.message),
            },
            "unload_server" => match self.remove_server(string_arg(arguments, "name")?).await {
                Ok(()) => ok(json!({ "unloaded": arguments["name"] })),
                Err(error) => failed(error.message),
            },
            "call" => {
                let server = string_arg(arguments, "server")?;
                let tool = string_arg(arguments, "tool")?;
                if self.server(server).is_none() {
                    return failed(format!("unknown server `{server}`"));
                }
                // The inner call is a tools/call of its own through the whole pipeline:
                // every step sees (and may refuse) the real tool, as if called directly.
                let Some(exposed) = self.catalog().exposed_tool(server, tool) else {
                    return failed(format!("unknown tool `{tool}` on server `{server}`"));
                };
                let params = json!({ "name": exposed, "arguments": arguments.get("arguments").cloned().unwrap_or_else(|| json!({})) });
                Box::pin(self.run(ctx, "tools/call", Some(params)))
                    .await
                    .map_err(|error| error.to_rpc(ctx.era))
                    .map(crate::reply::Reply::into_value)
            }
            "install_server" => self.install_server(arguments).await,
            other => Err(RpcError::method_not_found(other)),
        }
    }

    async fn install_server(&self, arguments: &Value) -> Result<Value, RpcError> {
        if !self.inner.settings.allow_install {
            return failed(
                "installing servers is disabled (set `allow_install = true` under [gateway])",
            );
        }
        let name = string_arg(arguments, "name")?;
        let package = string_arg(arguments, "package")?;
        let root = self
            .inner
            .settings
            .state_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("switchboard"))
            .join("packages")
            .join(name);
        let extra_args: Vec<String> = arguments
            .get("args")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let (command, bin) = match package.split_once(':') {
            Some(("npm", spec)) => {
                let bin = arguments
                    .get("bin")
                    .and_then(Value::as_str)
                    .map_or_else(|| npm_bin_name(spec), str::to_owned);
                (
                    vec![
                        "npm".to_owned(),
                        "install".into(),
                        "--no-fund".into(),
                        "--no-audit".into(),
                        "--prefix".into(),
                        root.display().to_string(),
                        spec.to_owned(),
                    ],
                    root.join("node_modules/.bin").join(bin),
                )
            }
            Some(("pypi", spec)) => {
                let venv = root.join("venv");
                let bin = arguments
                    .get("bin")
                    .and_then(Value::as_str)
                    .map_or_else(|| pypi_bin_name(spec), str::to_owned);
                if let Err(message) =
                    run_installer(&["python3", "-m", "venv", &venv.display().to_string()]).await
                {
                    return failed(message);
                }
                (
                    vec![
                        venv.join("bin/pip").display().to_string(),
                        "install".into(),
                        "--quiet".into(),
                        spec.to_owned(),
                    ],
                    venv.join("bin").join(bin),
                )
            }
            _ => return failed("package must be \"npm:NAME\" or \"pypi:NAME\""),
        };
        if let Err(error) = std::fs::create_dir_all(&root) {
            return failed(format!("cannot create {}: {error}", root.display()));
        }
        let args: Vec<&str> = command.iter().map(String::as_str).collect();
        if let Err(message) = run_installer(&args).await {
            return failed(message);
        }
        if !bin.exists() {
            return failed(format!(
                "installed, but no executable at {} (pass `bin`)",
                bin.display()
            ));
        }
        let definition = json!({ "command": bin.display().to_string(), "args": extra_args });
        let spec = parse_definition(name, &definition)?;
        match self.add_server(name, spec, Origin::Runtime).await {
            Ok(()) => {
                self.inner.store.put_registered(name, definition.clone());
                ok(json!({ "installed": name, "definition": definition }))
            }
            Err(error) => failed(error.message),
        }
    }
}

/// `@scope/server-x@1.2` → `server-x` (npm links a package's bin under its name by default).
fn npm_bin_name(spec: &str) -> String {
    let without_version = match spec.rfind('@') {
        Some(at) if at > 0 => &spec[..at],
        _ => spec,
    };
    without_version
        .rsplit('/')
        .next()
        .unwrap_or(without_version)
        .to_owned()
}

/// `mcp-server-time==1.0` → `mcp-server-time`.
fn pypi_bin_name(spec: &str) -> String {
    spec.split(['=', '<', '>', '!', '~', '[', ' '])
        .next()
        .unwrap_or(spec)
        .to_owned()
}

async fn run_installer(args: &[&str]) -> Result<(), String> {
    let Some((program, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    let mut command = tokio::process::Command::new(PathBuf::from(program));
    command
        .args(rest)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("`{}` took longer than {INSTALL_TIMEOUT:?}", args.join(" ")))?
        .map_err(|e| format!("`{program}` could not run: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Err(format!(
        "`{}` failed ({}): {tail}",
        args.join(" "),
        output.status
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_binary_names() {
        assert_eq!(
            npm_bin_name("@modelcontextprotocol/server-everything@2.0.0"),
            "server-everything"
        );
        assert_eq!(npm_bin_name("left-pad"), "left-pad");
        assert_eq!(pypi_bin_name("mcp-server-time==2025.1"), "mcp-server-time");
    }
}
