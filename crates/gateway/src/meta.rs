//! Meta-tools: let an agent see and steer the gateway itself — list, load, reload, unload
//! and install servers, call any tool of any loaded server by server and tool name, and
//! run scripts and batches of calls (`script/`).
//! Off unless named in `[gateway] meta_tools`; installs also need `allow_install`, and
//! `load_server` runs a new definition only for a program in `allow_commands`.
//! Operational failures are tool results with `isError: true`, so the agent can read them.

use serde_json::{Value, json};
use switchboard_protocol::RpcError;

use crate::gateway::{ClientCtx, Gateway};
use crate::roster::{RosterError, parse_definition};

const PREFIX: &str = "switchboard__";

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
        "search_tools" => {
            let mut tool = switchboard_search::compact::meta_tools().swap_remove(0);
            tool["name"] = Value::String(format!("{PREFIX}{name}"));
            return Some(tool);
        }
        "install_server" => (
            "Install an MCP server from a package (\"npm:NAME\" or \"pypi:NAME\") into the gateway's managed \
             directory and register it.",
            object(
                json!({ "name": name_property, "package": { "type": "string" }, "bin": { "type": "string" },
                        "args": { "type": "array", "items": { "type": "string" } } }),
                &["name", "package"],
            ),
        ),
        "ask" => (
            "Ask the gateway's agent: a plain-language request answered with the tools you may use \
             (it picks and calls them, in parallel where it can). Returns the answer and a trace of \
             the tool calls. Give conversation_id to continue a conversation.",
            object(
                json!({ "query": { "type": "string", "description": "What to do, in plain words" },
                        "conversation_id": { "type": "string" } }),
                &["query"],
            ),
        ),
        "run" => (
            "Run a short script that calls tools, in a sandboxed interpreter (Rhai: no files, no \
             network). `call(name, args)` calls a tool you may use (its exposed name, as in \
             tools/list) and returns its result as a map (`text(result)` joins its text); a failure \
             is thrown as #{message, code?, result?}, catchable with try/catch. \
             `parallel([[name, args], ...])` makes independent calls at once and returns their \
             results in order. Loops, conditionals, variables, maps and arrays as in Rhai; the \
             script's last value (or `return`) is answered as JSON. An error answers its line and \
             message. Bounded in time, operations, size and number of calls.",
            object(
                json!({ "script": { "type": "string", "description": "The script's source text" } }),
                &["script"],
            ),
        ),
        "batch" => (
            "Call several tools at once, independently; every call is answered, in order, with \
             its result or its error (one failing call does not fail the others).",
            object(
                json!({ "calls": { "type": "array", "items": object(
                    json!({ "name": { "type": "string", "description": "The tool's exposed name" },
                            "arguments": { "type": "object" } }),
                    &["name"],
                ) } }),
                &["calls"],
            ),
        ),
        "set_secret" => (
            "Store a secret, encrypted, for server definitions to reference as ${secret:NAME} \
             (used by instances started afterwards). Admins only; the value is never shown again.",
            object(
                json!({ "name": { "type": "string", "description": "Secret name: letters, digits, `_`, `-`, `.`" },
                        "value": { "type": "string" } }),
                &["name", "value"],
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

    /// What a client that chose `meta_tools` and `tools` (`None`: it did not say) gets.
    pub fn choice_for(
        &self,
        meta_tools: Option<bool>,
        tools: Option<crate::gateway::ToolsMode>,
    ) -> crate::gateway::ClientChoice {
        crate::gateway::ClientChoice {
            meta_tools: self.meta_tools_for(meta_tools),
            tools_mode: tools.unwrap_or(self.inner.settings.tools),
        }
    }

    /// The meta-tools this client sees: the enabled ones, if it sees any.
    pub(crate) fn meta_tool_definitions(&self, ctx: &ClientCtx) -> Vec<Value> {
        // `switchboard__ask` is offered to every client while `[agent]` is configured.
        let ask = self.agent().is_some().then(|| definition("ask")).flatten();
        if !ctx.meta_tools {
            return ask.into_iter().collect();
        }
        self.inner
            .settings
            .meta_tools
            .iter()
            .filter(|name| self.may_use_meta_tool(ctx, name))
            .filter_map(|name| definition(name))
            .chain(ask)
            .collect()
    }

    /// The short name of the meta-tool `name` calls, when this client sees it.
    pub(crate) fn meta_tool_for<'a>(&self, ctx: &ClientCtx, name: &'a str) -> Option<&'a str> {
        if ctx.tools_mode == crate::gateway::ToolsMode::Search
            && crate::search::meta_mode::is_meta_mode_tool(name)
        {
            return Some(name);
        }
        let short = name.strip_prefix(PREFIX)?;
        if short == "ask" {
            return self.agent().is_some().then_some(short);
        }
        (ctx.meta_tools
            && self.inner.settings.meta_tools.iter().any(|t| t == short)
            && self.may_use_meta_tool(ctx, short))
        .then_some(short)
    }

    /// Admin-only meta-tools (`meta_policy::ADMIN_ONLY`) exist only for callers holding
    /// `[access] admin_role`; for anyone else they are unknown, like any hidden tool.
    fn may_use_meta_tool(&self, ctx: &ClientCtx, short: &str) -> bool {
        !crate::meta_policy::ADMIN_ONLY.contains(&short)
            || self.authenticator().is_some_and(|access| {
                ctx.principal
                    .roles()
                    .iter()
                    .any(|role| role == access.admin_role())
            })
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
                        if let Err(refusal) =
                            crate::meta_policy::check_definition(&self.inner.settings, &spec)
                        {
                            return failed(refusal);
                        }
                        match self.register_spec(name, spec, definition).await {
                            Ok(persisted) => ok(json!({ "loaded": name, "persisted": persisted })),
                            Err(RosterError::Invalid(error)) => Err(error),
                            Err(error) => failed(error.to_string()),
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
                Err(error) => failed(error.to_string()),
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
            "run" => Box::pin(self.run_script(ctx, arguments)).await,
            "batch" => Box::pin(self.run_batch(ctx, arguments)).await,
            "ask" => {
                let query = string_arg(arguments, "query")?;
                let conversation = arguments.get("conversation_id").and_then(Value::as_str);
                let agent_ctx = crate::agent::agent_ctx(ctx.principal.clone(), ctx.cancel.clone());
                match Box::pin(self.ask(&agent_ctx, query, conversation)).await {
                    Ok(answer) => ok(answer.to_json()),
                    Err(error) => failed(error.to_string()),
                }
            }
            "set_secret" => {
                let name = string_arg(arguments, "name")?;
                let value = string_arg(arguments, "value")?;
                match self
                    .store_secret(name, switchboard_config::Secret::new(value.to_owned()))
                    .await
                {
                    Some(Ok((entry, created))) => {
                        ok(json!({ "stored": entry.name, "created": created }))
                    }
                    Some(Err(error)) => failed(error.to_string()),
                    None => {
                        failed("no secret store: the gateway's config has no [secrets] section")
                    }
                }
            }
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
        let state_dir = self.inner.settings.state_dir.as_deref();
        let bin = arguments.get("bin").and_then(Value::as_str);
        let executable = match crate::install::install(state_dir, name, package, bin).await {
            Ok(executable) => executable,
            Err(error) => return failed(error.to_string()),
        };
        let extra_args: Vec<&str> = arguments
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let definition = json!({ "command": executable.display().to_string(), "args": extra_args });
        match self.register_server(name, &definition).await {
            Ok(_) => ok(json!({ "installed": name, "definition": definition })),
            Err(RosterError::Invalid(error)) => Err(error),
            Err(error) => failed(error.to_string()),
        }
    }
}
