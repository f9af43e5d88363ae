//! A small MCP client of switchboard's HTTP face, in either era, with the client
//! behaviours the conformance scenarios judge: answering elicitation with the schema's
//! defaults, sampling and roots; completing MRTR rounds; mirroring `x-mcp-header`
//! arguments into `Mcp-Param-*` headers. Legacy server→client requests arriving on a
//! response stream are answered with their own POST while the stream stays open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use switchboard_protocol::headers;
use tokio::sync::Mutex;

use crate::answers;

pub(crate) const MODERN: &str = "2026-07-28";

/// Rounds of `input_required` the client completes before giving up.
const MAX_INPUT_ROUNDS: usize = 10;

/// What one request came back with: its result or error object, and the notifications
/// that arrived before it.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) result: Result<Value, Value>,
    pub(crate) notifications: Vec<Value>,
}

impl Outcome {
    /// The result, or the error as a Rust error.
    pub(crate) fn into_result(self, what: &str) -> anyhow::Result<Value> {
        self.result
            .map_err(|error| anyhow::anyhow!("{what} answered with an error: {error}"))
    }
}

enum Era {
    Modern,
    Legacy { session: String, version: String },
}

pub(crate) struct Client {
    http: reqwest::Client,
    url: String,
    era: Era,
    next_id: AtomicU64,
    /// Input schemas of the tools seen in `tools/list`, for `Mcp-Param-*` mirroring.
    schemas: Mutex<HashMap<String, Value>>,
}

/// The capabilities this client declares: it can answer every server→client request.
pub(crate) fn capabilities() -> Value {
    json!({ "sampling": {}, "elicitation": { "form": {}, "url": {} }, "roots": {} })
}

fn client_info() -> Value {
    json!({ "name": "switchboard-conformance-driver", "version": env!("CARGO_PKG_VERSION") })
}

impl Client {
    /// A modern (stateless) client: nothing to set up.
    pub(crate) fn modern(url: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            url: url.to_owned(),
            era: Era::Modern,
            next_id: AtomicU64::new(1),
            schemas: Mutex::default(),
        }
    }

    /// A legacy client: `initialize` at `version`, then `notifications/initialized`.
    pub(crate) async fn legacy(url: &str, version: &str) -> anyhow::Result<Client> {
        let http = reqwest::Client::new();
        let body = json!({
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": version, "capabilities": capabilities(), "clientInfo": client_info() },
        });
        let response = http
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .context("initialize")?;
        let session = response
            .headers()
            .get(headers::SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .context("initialize answered without Mcp-Session-Id")?
            .to_owned();
        let outcome = read_answer(response, &json!(0), |_| {}).await?;
        let result = outcome.into_result("initialize")?;
        let negotiated = result["protocolVersion"]
            .as_str()
            .unwrap_or(version)
            .to_owned();
        let client = Client {
            http,
            url: url.to_owned(),
            era: Era::Legacy {
                session,
                version: negotiated,
            },
            next_id: AtomicU64::new(1),
            schemas: Mutex::default(),
        };
        client.notify("notifications/initialized", None).await?;
        Ok(client)
    }

    fn builder(&self) -> reqwest::RequestBuilder {
        let builder = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json");
        match &self.era {
            Era::Modern => builder.header(headers::PROTOCOL_VERSION, MODERN),
            Era::Legacy { session, version } => builder
                .header(headers::SESSION_ID, session)
                .header(headers::PROTOCOL_VERSION, version),
        }
    }

    async fn notify(&self, method: &str, params: Option<Value>) -> anyhow::Result<()> {
        let mut body = json!({ "jsonrpc": "2.0", "method": method });
        if let Some(params) = params {
            body["params"] = params;
        }
        let response = self.builder().body(body.to_string()).send().await?;
        if !response.status().is_success() {
            bail!("{method} answered {}", response.status());
        }
        Ok(())
    }

    /// Sends a request and completes it: server→client requests are answered, modern
    /// `input_required` results are fulfilled and retried.
    pub(crate) async fn request(&self, method: &str, params: Value) -> anyhow::Result<Outcome> {
        let mut params = params;
        let mut notifications = Vec::new();
        for _ in 0..MAX_INPUT_ROUNDS {
            let mut outcome = self.send(method, params.clone()).await?;
            notifications.append(&mut outcome.notifications);
            let input_required = outcome.result.as_ref().is_ok_and(|r| {
                r.get("resultType").and_then(Value::as_str) == Some("input_required")
            });
            if !input_required {
                if method == "tools/list"
                    && let Ok(result) = &outcome.result
                {
                    self.remember_schemas(result).await;
                }
                outcome.notifications = notifications;
                return Ok(outcome);
            }
            let result = outcome.result.expect("checked above");
            let mut responses = Map::new();
            if let Some(requests) = result.get("inputRequests").and_then(Value::as_object) {
                for (key, request) in requests {
                    let method = request["method"].as_str().unwrap_or_default();
                    let answer = answers::answer(method, &request["params"])
                        .unwrap_or_else(|error| json!({ "error": error }));
                    responses.insert(key.clone(), answer);
                }
            }
            let object = params.as_object_mut().context("params must be an object")?;
            object.insert("inputResponses".into(), Value::Object(responses));
            // Echo the state exactly, or send none when the server sent none.
            match result.get("requestState") {
                Some(state) => object.insert("requestState".into(), state.clone()),
                None => object.remove("requestState"),
            };
        }
        bail!("{method}: still input_required after {MAX_INPUT_ROUNDS} rounds")
    }

    async fn remember_schemas(&self, result: &Value) {
        let mut schemas = self.schemas.lock().await;
        for tool in result["tools"].as_array().into_iter().flatten() {
            if let Some(name) = tool["name"].as_str() {
                schemas.insert(name.to_owned(), tool["inputSchema"].clone());
            }
        }
    }

    /// One JSON-RPC request, one HTTP exchange.
    async fn send(&self, method: &str, mut params: Value) -> anyhow::Result<Outcome> {
        let id = json!(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut builder = self.builder();
        if let Era::Modern = self.era {
            let meta = switchboard_protocol::meta::get_mut(&mut params);
            meta.insert(
                switchboard_protocol::meta::PROTOCOL_VERSION.into(),
                json!(MODERN),
            );
            meta.insert(
                switchboard_protocol::meta::CLIENT_INFO.into(),
                client_info(),
            );
            meta.insert(
                switchboard_protocol::meta::CLIENT_CAPABILITIES.into(),
                capabilities(),
            );
            builder = builder.header(headers::METHOD, method);
            let name = headers::name_field(method).and_then(|field| params[field].as_str());
            if let Some(name) = name {
                builder = builder.header(headers::NAME, headers::encode_value(name));
            }
            if method == "tools/call" {
                for (header, value) in self.param_headers(&params).await {
                    builder = builder.header(header, value);
                }
            }
        }
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = builder
            .body(body.to_string())
            .send()
            .await
            .with_context(|| format!("{method}: POST failed"))?;
        match &self.era {
            // Modern servers never send requests on a response stream.
            Era::Modern => read_answer(response, &id, |_| {}).await,
            Era::Legacy { .. } => {
                let mut replies = Vec::new();
                let outcome = read_answer(response, &id, |request| {
                    replies.push(self.reply_to(request));
                })
                .await;
                for reply in replies {
                    let _ = reply.await;
                }
                outcome
            }
        }
    }

    /// `Mcp-Param-*` headers for a tool call, from the tool's `x-mcp-header` annotations.
    async fn param_headers(&self, params: &Value) -> Vec<(String, String)> {
        let Some(name) = params["name"].as_str() else {
            return Vec::new();
        };
        let schemas = self.schemas.lock().await;
        let Some(schema) = schemas.get(name) else {
            return Vec::new();
        };
        match headers::param_headers(schema) {
            Ok(found) => headers::param_header_values(&found, params.get("arguments")),
            Err(_) => Vec::new(),
        }
    }

    /// Answers a legacy server→client request with a POST of its response. Runs while the
    /// stream that carried the request is still being read.
    fn reply_to(&self, request: Value) -> tokio::task::JoinHandle<()> {
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        let body = match answers::answer(&method, &request["params"]) {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": request["id"], "result": result }),
            Err(error) => json!({ "jsonrpc": "2.0", "id": request["id"], "error": error }),
        };
        eprintln!("driver: answering {method}");
        let post = self.builder().body(body.to_string());
        tokio::spawn(async move {
            if let Err(error) = post.send().await {
                eprintln!("driver: answer to {method} not delivered: {error}");
            }
        })
    }
}

/// Reads a JSON answer or an SSE stream until the response to `id`; requests on the
/// stream go to `on_request`, notifications are collected.
async fn read_answer(
    response: reqwest::Response,
    id: &Value,
    mut on_request: impl FnMut(Value),
) -> anyhow::Result<Outcome> {
    let status = response.status();
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut notifications = Vec::new();
    if !is_sse {
        let body = response.bytes().await?;
        let message: Value = serde_json::from_slice(&body)
            .with_context(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))?;
        return Ok(Outcome {
            result: answer_of(&message).unwrap_or_else(|| Err(message.clone())),
            notifications,
        });
    }
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|l| l.strip_prefix(' ').unwrap_or(l))
                    .collect();
                let Ok(message) = serde_json::from_str::<Value>(&data.join("\n")) else {
                    continue;
                };
                if message.get("method").is_some() {
                    if message.get("id").is_some() {
                        on_request(message);
                    } else {
                        notifications.push(message);
                    }
                } else if message.get("id") == Some(id)
                    && let Some(result) = answer_of(&message)
                {
                    return Ok::<_, anyhow::Error>(Some(result));
                }
            }
        }
        Ok(None)
    };
    match tokio::time::timeout(Duration::from_secs(60), read).await {
        Ok(Ok(Some(result))) => Ok(Outcome {
            result,
            notifications,
        }),
        Ok(Ok(None)) => bail!("the response stream ended without an answer"),
        Ok(Err(error)) => Err(error),
        Err(_) => bail!("no answer within 60 s"),
    }
}

fn answer_of(message: &Value) -> Option<Result<Value, Value>> {
    if let Some(result) = message.get("result") {
        return Some(Ok(result.clone()));
    }
    message.get("error").map(|error| Err(error.clone()))
}
