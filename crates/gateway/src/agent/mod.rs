//! The router agent (`[agent]`): a plain-language query answered with the gateway's
//! tools through an OpenAI-compatible model. The agent is one more client of the call
//! pipeline: every tool call it makes is a `tools/call` through `Gateway::run` as the
//! requesting principal — authorized, rate-limited, approved, redacted and audited
//! exactly like a direct call — never a forward of its own.
//!
//! One query: the caller's view of the tools (the `top_k` best by tool search when the
//! view holds more than `max_tools`) + the conversation's history + the query → the
//! model → zero, one or several tool calls, run concurrently, each repaired against its
//! schema (`repair`) and its result cut to `result_budget_bytes` → back to the model →
//! … up to `max_steps` → the model's answer. Tools of dormant (`lazy`) servers are
//! offered from the registry's lists; calling one starts its server (the trace says
//! which), and the idle reaper stops it again. Malformed tool calls get one repair
//! retry, then a clear error; when the model fails after tools ran, their results are
//! returned as they are, marked unsynthesized.
//!
//! `llm` the model client, `repair` argument repair, `memory` chat memory in the
//! embedded database, `metrics` the `switchboard_agent_*` families; `face/agent` serves
//! `POST /query` and `/conversations/{id}`.

pub mod llm;
pub mod memory;
pub(crate) mod metrics;
pub mod repair;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_config::AgentSettings;
use tokio::time::Instant;

use crate::gateway::{ClientCtx, Gateway};
use llm::{Llm, LlmError, Usage};
use memory::{Memory, MemoryError, Message};

/// Longest query read, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

const SYSTEM_PROMPT: &str = "You are the switchboard agent. Answer the user's request, \
calling the available tools when they help. Call independent tools in the same turn. \
When you have what you need, answer in plain words.";

/// `text` cut to at most `max` bytes, on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Why a query got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(
        "no agent is configured: add an [agent] section with base_url (an OpenAI-compatible API root ending in /v1) and model to the gateway's config"
    )]
    NotConfigured,
    #[error("{0}")]
    BadRequest(String),
    #[error("no conversation `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the model's tool calls are malformed (after one repair retry): {0}")]
    MalformedToolCalls(String),
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

impl AgentError {
    /// The HTTP status of the edge's answer.
    pub fn http_status(&self) -> u16 {
        match self {
            AgentError::NotConfigured => 503,
            AgentError::BadRequest(_) => 400,
            AgentError::NotFound(_) => 404,
            AgentError::Llm(LlmError::Timeout(_)) => 504,
            AgentError::Llm(_) | AgentError::MalformedToolCalls(_) => 502,
            AgentError::Memory(_) => 500,
        }
    }

    /// A stable code for clients and the metrics' outcome label.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::NotConfigured => "agent_not_configured",
            AgentError::BadRequest(_) => "bad_request",
            AgentError::NotFound(_) => "not_found",
            AgentError::Llm(error) => error.label(),
            AgentError::MalformedToolCalls(_) => "malformed_tool_calls",
            AgentError::Memory(_) => "store_error",
        }
    }

    /// The structured error body.
    pub fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if matches!(self, AgentError::NotConfigured) {
            error["section"] = Value::String("agent".into());
        }
        json!({ "error": error })
    }
}

/// The agent of one gateway.
pub struct Agent {
    settings: AgentSettings,
    llm: Llm,
    memory: Memory,
    pub(crate) metrics: metrics::AgentMetrics,
}

impl Agent {
    /// `memory`: where conversations live (`Memory::new` embedded, `Memory::shared` in
    /// the cluster's Redis).
    pub fn new(settings: &AgentSettings, memory: Memory) -> Result<Agent, LlmError> {
        Ok(Agent {
            llm: Llm::new(settings)?,
            memory,
            settings: settings.clone(),
            metrics: Default::default(),
        })
    }
}

impl Agent {
    /// The conversations (`GET`/`DELETE /conversations/{id}`).
    pub fn memory(&self) -> &Memory {
        &self.memory
    }
}

/// The context the agent's tool calls run in: the caller's principal, as a modern
/// client that sees the catalog's tools and no meta-tools (so the agent cannot call
/// itself, nor steer the gateway).
pub fn agent_ctx(
    principal: crate::principal::Principal,
    cancel: tokio_util::sync::CancellationToken,
) -> ClientCtx {
    ClientCtx {
        era: switchboard_protocol::Era::Modern,
        protocol_version: switchboard_protocol::ProtocolVersion::MODERN.to_owned(),
        capabilities: json!({}),
        client_info: Some(json!({ "name": "switchboard-agent" })),
        principal,
        notify: None,
        peer: None,
        cancel,
        meta_tools: false,
        tools_mode: crate::gateway::ToolsMode::Catalog,
    }
}

/// A tool offered to the model.
struct Offered {
    exposed: String,
    server: String,
    tool: String,
    description: String,
    schema: Value,
}

/// One tool call in the answer's trace.
#[derive(Clone, Debug)]
pub struct TraceCall {
    pub server: String,
    pub tool: String,
    pub arguments: Value,
    /// The tool name and arguments as the model wrote them, and each repair, when repaired.
    pub repaired_from: Option<Value>,
    /// When the call started, after the query started.
    pub started: Duration,
    pub duration: Duration,
    /// `ok`, `tool_error`, `invalid_arguments`, `unknown_tool`, or the pipeline's
    /// outcome label (`denied`, `limited`, `timeout`, …).
    pub outcome: String,
    /// What the model was told (the result, cut to the budget), for an unsynthesized answer.
    result_text: String,
}

impl TraceCall {
    pub fn to_json(&self) -> Value {
        let mut entry = json!({
            "server": self.server,
            "tool": self.tool,
            "arguments": self.arguments,
            "started_ms": self.started.as_millis() as u64,
            "duration_ms": self.duration.as_millis() as u64,
            "outcome": self.outcome,
        });
        if let Some(from) = &self.repaired_from {
            entry["repaired_from"] = from.clone();
        }
        entry
    }
}

/// The answer to one query.
#[derive(Debug)]
pub struct Answer {
    pub conversation_id: String,
    /// The model's answer; `None` when synthesis failed (see `unsynthesized`).
    pub answer: Option<String>,
    /// Why the model could not answer after the tools ran; the results are returned as
    /// they are.
    pub unsynthesized: Option<String>,
    pub tool_calls: Vec<TraceCall>,
    pub servers_started: Vec<String>,
    pub usage: Usage,
    pub llm_requests: u32,
    pub llm_time: Duration,
}

impl Answer {
    pub fn to_json(&self) -> Value {
        let mut body = json!({
            "conversation_id": self.conversation_id,
            "answer": self.answer,
            "tool_calls": self.tool_calls.iter().map(TraceCall::to_json).collect::<Vec<_>>(),
            "servers_started": self.servers_started,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "llm_requests": self.llm_requests,
                "llm_ms": self.llm_time.as_millis() as u64,
            },
        });
        if let Some(reason) = &self.unsynthesized {
            body["unsynthesized"] = json!({
                "reason": reason,
                "results": self.tool_calls.iter().map(|call| json!({
                    "server": call.server, "tool": call.tool, "outcome": call.outcome,
                    "result": call.result_text,
                })).collect::<Vec<_>>(),
            });
        }
        body
    }
}

/// A tool call as the model wrote it.
struct Requested {
    id: String,
    name: String,
    arguments: Value,
}

/// The tool calls of an assistant message; `Err`: what is malformed about them.
fn requested_calls(message: &Value) -> Result<Vec<Requested>, String> {
    let Some(calls) = message.get("tool_calls") else {
        return Ok(Vec::new());
    };
    let calls = match calls {
        Value::Null => return Ok(Vec::new()),
        Value::Array(calls) => calls,
        _ => return Err("`tool_calls` is not an array".into()),
    };
    calls
        .iter()
        .enumerate()
        .map(|(index, call)| {
            let function = call
                .get("function")
                .ok_or_else(|| format!("tool call {index} has no `function`"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| format!("tool call {index} has no function name"))?;
            let arguments = match function.get("arguments") {
                None | Some(Value::Null) => json!({}),
                Some(Value::String(text)) if text.trim().is_empty() => json!({}),
                Some(Value::String(text)) => serde_json::from_str(text).map_err(|error| {
                    format!(
                        "the arguments of tool call {index} ({name}) are not valid JSON: {error}"
                    )
                })?,
                Some(object @ Value::Object(_)) => object.clone(),
                Some(_) => {
                    return Err(format!(
                        "the arguments of tool call {index} are not a JSON string"
                    ));
                }
            };
            Ok(Requested {
                id: call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("call_{index}"), str::to_owned),
                name: name.to_owned(),
                arguments,
            })
        })
        .collect()
}

/// The text of a tool result the model reads: its text blocks (else structured content,
/// else the whole result), cut to `budget` bytes with a note saying so.
fn result_text(result: &Value, budget: usize) -> String {
    let texts: Vec<&str> = result
        .get("content")
        .and_then(Value::as_array)
        .map(|blocks| {
            blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let full = if !texts.is_empty() {
        texts.join("\n")
    } else if let Some(structured) = result.get("structuredContent") {
        structured.to_string()
    } else {
        result.to_string()
    };
    if full.len() <= budget {
        return full;
    }
    format!(
        "{}\n[truncated: {budget} of {} bytes shown]",
        cut(&full, budget),
        full.len()
    )
}

impl Gateway {
    /// The agent, when `[agent]` is configured.
    pub fn agent(&self) -> Option<&Arc<Agent>> {
        self.inner.agent.as_ref()
    }

    /// Answers `query` as the local (stdio) principal: `switchboard ask`.
    pub async fn ask_local(
        &self,
        query: &str,
        conversation_id: Option<&str>,
    ) -> Result<Answer, AgentError> {
        let ctx = agent_ctx(
            crate::face::stdio::stdio_principal(self),
            tokio_util::sync::CancellationToken::new(),
        );
        self.ask(&ctx, query, conversation_id).await
    }

    /// The tools this caller may use, as offered to the model: its whole view, or the
    /// `top_k` best for `query` when the view is larger than `max_tools`.
    async fn offered_tools(
        &self,
        ctx: &ClientCtx,
        settings: &AgentSettings,
        query: &str,
    ) -> Vec<Offered> {
        let catalog = self
            .catalog_for(ctx.principal.session())
            .for_tenant(ctx.principal.tenant());
        let chain = self.inner.chain.load();
        let view = chain
            .filter(&ctx.principal)
            .map(|filter| catalog.view(&filter.key, &filter.admit));
        let mut visible = Vec::new();
        for (position, tool) in catalog.tools.iter().enumerate() {
            let server = catalog.tool_owner(position);
            let exposed = tool.name();
            if view
                .as_ref()
                .is_some_and(|v| !v.admits(crate::catalog::Listing::Tools, server, exposed))
            {
                continue;
            }
            visible.push(position);
        }
        if visible.len() > settings.max_tools {
            // The best first, as tool search ranks them.
            let found = self
                .search_in(&catalog, view.as_ref(), query, settings.top_k)
                .await;
            let rank: HashMap<&str, usize> = found
                .iter()
                .enumerate()
                .map(|(rank, f)| (f.name.as_str(), rank))
                .collect();
            let rank_of = |position: &usize| rank.get(catalog.tools[*position].name()).copied();
            visible.retain(|position| rank_of(position).is_some());
            visible.sort_by_key(|position| rank_of(position));
        }
        visible
            .into_iter()
            .filter_map(|position| {
                let tool = &catalog.tools[position];
                let exposed = tool.name().to_owned();
                let target = catalog.resolve_tool(&exposed)?;
                Some(Offered {
                    server: catalog.tool_owner(position).to_owned(),
                    tool: target.name.clone(),
                    description: tool
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    schema: tool
                        .get("inputSchema")
                        .cloned()
                        .unwrap_or_else(|| json!({ "type": "object" })),
                    exposed,
                })
            })
            .collect()
    }

    /// Answers `query` for the caller of `ctx`, continuing `conversation_id` when given
    /// (another principal's conversation is not found, like a missing one).
    pub async fn ask(
        &self,
        ctx: &ClientCtx,
        query: &str,
        conversation_id: Option<&str>,
    ) -> Result<Answer, AgentError> {
        let Some(agent) = self.agent().cloned() else {
            return Err(AgentError::NotConfigured);
        };
        let started = Instant::now();
        let result = self
            .ask_with(&agent, ctx, query, conversation_id, started)
            .await;
        let outcome = match &result {
            Ok(answer) if answer.unsynthesized.is_some() => "unsynthesized",
            Ok(_) => "answered",
            Err(error) => error.code(),
        };
        agent
            .metrics
            .queries
            .get_or_create(&metrics::OutcomeLabels { outcome })
            .inc();
        agent.metrics.query_duration.observe(started.elapsed());
        if let Ok(answer) = &result {
            agent
                .metrics
                .tool_calls_per_query
                .observe(answer.tool_calls.len() as f64);
        }
        result
    }

    async fn ask_with(
        &self,
        agent: &Agent,
        ctx: &ClientCtx,
        query: &str,
        conversation_id: Option<&str>,
        started: Instant,
    ) -> Result<Answer, AgentError> {
        let settings = &agent.settings;
        if query.trim().is_empty() {
            return Err(AgentError::BadRequest("`query` must not be empty".into()));
        }
        if query.len() > MAX_QUERY_BYTES {
            return Err(AgentError::BadRequest(format!(
                "`query` is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        let principal = ctx.principal.id().to_owned();
        let (conversation_id, history) = match conversation_id {
            Some(id) if !memory::valid_id(id) => {
                return Err(AgentError::BadRequest(format!(
                    "`conversation_id` must be 1 to {} characters of A-Z a-z 0-9 _ - . :",
                    memory::MAX_ID_LEN
                )));
            }
            Some(id) => (
                id.to_owned(),
                agent.memory.load(&principal, id).await?.unwrap_or_default(),
            ),
            None => (uuid::Uuid::new_v4().to_string(), Vec::new()),
        };
        let offered = self.offered_tools(ctx, settings, query).await;
        let tool_defs: Vec<Value> = offered
            .iter()
            .map(|tool| {
                json!({ "type": "function", "function": {
                    "name": tool.exposed,
                    "description": tool.description,
                    "parameters": tool.schema,
                }})
            })
            .collect();
        let mut messages = vec![json!({ "role": "system", "content": SYSTEM_PROMPT })];
        messages.extend(history.iter().map(Message::to_json));
        messages.push(json!({ "role": "user", "content": query }));
        let mut answer = Answer {
            conversation_id: conversation_id.clone(),
            answer: None,
            unsynthesized: None,
            tool_calls: Vec::new(),
            servers_started: Vec::new(),
            usage: Usage::default(),
            llm_requests: 0,
            llm_time: Duration::ZERO,
        };
        let mut repair_retried = false;
        let mut steps = 0;
        while steps < settings.max_steps {
            steps += 1;
            let completion = match agent.llm.complete(&messages, &tool_defs).await {
                Ok(completion) => completion,
                Err(error) if !answer.tool_calls.is_empty() => {
                    answer.unsynthesized = Some(error.to_string());
                    break;
                }
                Err(error) => return Err(error.into()),
            };
            answer.llm_requests += 1;
            answer.llm_time += completion.latency;
            answer.usage.add(completion.usage);
            agent.metrics.llm_latency.observe(completion.latency);
            for (kind, n) in [
                ("prompt", completion.usage.prompt_tokens),
                ("completion", completion.usage.completion_tokens),
            ] {
                agent
                    .metrics
                    .llm_tokens
                    .get_or_create(&metrics::KindLabels { kind })
                    .inc_by(n);
            }
            let message = completion.message;
            let requested = match requested_calls(&message) {
                Ok(requested) => requested,
                Err(reason) if !repair_retried => {
                    repair_retried = true;
                    // Not counted as a step: the same turn, asked again.
                    steps -= 1;
                    messages.push(json!({ "role": "user", "content": format!(
                        "Your last reply had malformed tool calls: {reason}. Reply again; \
                         each tool call's `arguments` must be a JSON object encoded as a string."
                    )}));
                    continue;
                }
                Err(reason) => return Err(AgentError::MalformedToolCalls(reason)),
            };
            if requested.is_empty() {
                let text = message
                    .get("content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                answer.answer = Some(text);
                break;
            }
            let mut assistant = json!({ "role": "assistant", "tool_calls": message["tool_calls"] });
            if let Some(content) = message.get("content").filter(|c| !c.is_null()) {
                assistant["content"] = content.clone();
            }
            messages.push(assistant);
            // Independent calls run concurrently; each is its own pipeline call.
            let results = futures::future::join_all(
                requested
                    .iter()
                    .map(|call| self.agent_call(agent, ctx, &offered, call, started)),
            )
            .await;
            for (call, (trace, started_server)) in requested.iter().zip(results) {
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": trace.result_text,
                }));
                if let Some(server) = started_server
                    && !answer.servers_started.contains(&server)
                {
                    agent
                        .metrics
                        .hot_plugs
                        .get_or_create(&metrics::ServerLabels {
                            server: server.clone(),
                        })
                        .inc();
                    answer.servers_started.push(server);
                }
                answer.tool_calls.push(trace);
            }
        }
        if answer.answer.is_none() && answer.unsynthesized.is_none() {
            if answer.tool_calls.is_empty() {
                return Err(AgentError::Llm(LlmError::Malformed(
                    "no answer within the step limit".into(),
                )));
            }
            answer.unsynthesized = Some(format!(
                "the model gave no answer within max_steps = {}",
                settings.max_steps
            ));
        }
        let reply = match (&answer.answer, &answer.unsynthesized) {
            (Some(text), _) => text.clone(),
            (None, Some(reason)) => format!("[unsynthesized: {reason}]"),
            (None, None) => String::new(),
        };
        agent
            .memory
            .append(
                &principal,
                &conversation_id,
                vec![
                    Message::new("user", query),
                    Message::new("assistant", &reply),
                ],
            )
            .await?;
        Ok(answer)
    }

    /// One tool call of the model: the tool found (repairing its name), the arguments
    /// repaired, then a `tools/call` through the whole pipeline as the caller. Returns
    /// the trace entry and the server it started, if it was dormant.
    async fn agent_call(
        &self,
        agent: &Agent,
        ctx: &ClientCtx,
        offered: &[Offered],
        call: &Requested,
        query_started: Instant,
    ) -> (TraceCall, Option<String>) {
        let began = Instant::now();
        let budget = agent.settings.result_budget_bytes;
        let mut trace = TraceCall {
            server: String::new(),
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            repaired_from: None,
            started: began.duration_since(query_started),
            duration: Duration::ZERO,
            outcome: String::new(),
            result_text: String::new(),
        };
        let finish = |mut trace: TraceCall, outcome: &str, text: String| {
            trace.duration = began.elapsed();
            trace.outcome = outcome.to_owned();
            trace.result_text = text;
            trace
        };
        // The tool: exactly, else case-insensitively, else the closest spelling.
        let mut renamed_from = None;
        let tool = offered.iter().find(|t| t.exposed == call.name).or_else(|| {
            let found = offered
                .iter()
                .find(|t| t.exposed.eq_ignore_ascii_case(&call.name))
                .or_else(|| {
                    let closest = crate::suggest::closest(
                        &call.name,
                        offered.iter().map(|t| t.exposed.as_str()),
                    );
                    let best = closest.first()?;
                    offered.iter().find(|t| &t.exposed == best)
                });
            if found.is_some() {
                renamed_from = Some(call.name.clone());
            }
            found
        });
        let Some(tool) = tool else {
            let names: Vec<&str> = offered.iter().map(|t| t.exposed.as_str()).collect();
            let text = format!(
                "error: unknown tool `{}`; the tools are: {}",
                call.name,
                names.join(", ")
            );
            return (finish(trace, "unknown_tool", text), None);
        };
        trace.server = tool.server.clone();
        trace.tool = tool.tool.clone();
        if renamed_from.is_some() {
            agent
                .metrics
                .repairs
                .get_or_create(&metrics::KindLabels { kind: "tool_name" })
                .inc();
        }
        let repaired = match repair::repair(&tool.schema, call.arguments.clone()) {
            Ok(repaired) => repaired,
            Err(problem) => {
                let text = format!(
                    "error: invalid arguments for `{}`: {problem}. Fix them and call again.",
                    tool.exposed
                );
                return (finish(trace, "invalid_arguments", text), None);
            }
        };
        for done in &repaired.repairs {
            agent
                .metrics
                .repairs
                .get_or_create(&metrics::KindLabels {
                    kind: done.kind.as_str(),
                })
                .inc();
        }
        if renamed_from.is_some() || !repaired.repairs.is_empty() {
            let mut from = json!({
                "arguments": call.arguments,
                "repairs": repaired.repairs.iter().map(repair::Repair::to_json).collect::<Vec<_>>(),
            });
            if let Some(name) = &renamed_from {
                from["tool"] = Value::String(name.clone());
            }
            trace.repaired_from = Some(from);
        }
        trace.arguments = repaired.arguments.clone();
        let server = self.server(&tool.server);
        let dormant = server.as_ref().is_some_and(|s| s.instance_count() == 0);
        let params = json!({ "name": tool.exposed, "arguments": repaired.arguments });
        let outcome = Box::pin(self.run(ctx, "tools/call", Some(params))).await;
        let started_server = (dormant && server.as_ref().is_some_and(|s| s.instance_count() > 0))
            .then(|| tool.server.clone());
        let trace = match outcome {
            Ok(reply) => {
                let result = reply.into_value();
                let is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
                let text = result_text(&result, budget);
                if is_error {
                    finish(trace, "tool_error", format!("error: {text}"))
                } else {
                    finish(trace, "ok", text)
                }
            }
            Err(error) => {
                let outcome = error.outcome();
                finish(trace, outcome, format!("error ({outcome}): {error}"))
            }
        };
        (trace, started_server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_are_read_or_refused_with_a_reason() {
        let message = json!({ "tool_calls": [
            { "id": "c1", "type": "function", "function": { "name": "a__add", "arguments": "{\"a\":1,\"b\":2}" } },
            { "id": "c2", "type": "function", "function": { "name": "a__echo", "arguments": "" } },
        ]});
        let calls = requested_calls(&message).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, json!({ "a": 1, "b": 2 }));
        assert_eq!(calls[1].arguments, json!({}));
        assert!(
            requested_calls(&json!({ "content": "hi" }))
                .unwrap()
                .is_empty()
        );
        let broken = json!({ "tool_calls": [
            { "id": "c1", "function": { "name": "a__add", "arguments": "{\"a\":1," } } ] });
        let reason = requested_calls(&broken).err().unwrap();
        assert!(reason.contains("not valid JSON"), "{reason}");
    }

    #[test]
    fn results_are_cut_to_the_budget() {
        let result = json!({ "content": [{ "type": "text", "text": "é".repeat(300) }] });
        let text = result_text(&result, 257);
        assert!(text.starts_with(&"é".repeat(128)));
        assert!(
            text.ends_with("[truncated: 257 of 600 bytes shown]"),
            "{text}"
        );
        let small = json!({ "content": [{ "type": "text", "text": "ok" }] });
        assert_eq!(result_text(&small, 256), "ok");
    }
}
