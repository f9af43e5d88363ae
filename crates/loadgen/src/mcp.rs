//! What the driver knows about MCP: the two eras' request shapes (legacy sessions and modern
//! stateless requests), pre-serialized request bodies, and the checks a reply must pass to
//! count as a successful call (JSON or SSE, matching id, no JSON-RPC error, no tool error).

use std::fmt;

use bytes::Bytes;
use http::HeaderValue;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The protocol version a legacy session asks for in `initialize`.
pub const LEGACY_VERSION: &str = "2025-11-25";
/// The stateless protocol version, declared on every modern request.
pub const MODERN_VERSION: &str = "2026-07-28";

/// Which protocol era the driver speaks to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Era {
    /// `initialize` once per session (one session per connection slot), then calls carrying
    /// `Mcp-Session-Id`.
    Legacy,
    /// Stateless: every request carries its version, capabilities and client info.
    Modern,
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Era::Legacy => "legacy",
            Era::Modern => "modern",
        })
    }
}

/// The `_meta` a modern request carries in its params.
pub fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "switchboard-load", "version": env!("CARGO_PKG_VERSION") },
    })
}

/// The `initialize` body of a legacy session.
pub fn initialize_body(id: u64) -> Bytes {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY_VERSION,
            "capabilities": {},
            "clientInfo": { "name": "switchboard-load", "version": env!("CARGO_PKG_VERSION") },
        },
    });
    Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"))
}

pub fn initialized_body() -> Bytes {
    Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
}

/// A request body with a hole for the id, serialized once: a call only formats its id.
#[derive(Clone, Debug)]
pub struct Template {
    /// `tools/call` or `tools/list`.
    pub method: &'static str,
    /// The tool name, mirrored into `Mcp-Name` for modern `tools/call`.
    pub name: Option<HeaderValue>,
    before_id: Vec<u8>,
    after_id: Vec<u8>,
}

impl Template {
    fn new(method: &'static str, name: Option<&str>, params: Value) -> anyhow::Result<Template> {
        let name = match name {
            // Tool names used for load are plain ASCII, so no `=?base64?` wrapping is needed.
            Some(name) => {
                anyhow::ensure!(
                    !name.is_empty() && name.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                    "tool name {name:?} is not plain visible ASCII"
                );
                Some(HeaderValue::from_str(name)?)
            }
            None => None,
        };
        let params = serde_json::to_string(&params)?;
        Ok(Template {
            method,
            name,
            before_id: br#"{"jsonrpc":"2.0","id":"#.to_vec(),
            after_id: format!(r#","method":"{method}","params":{params}}}"#).into_bytes(),
        })
    }

    /// `tools/call` of `tool` with `arguments`.
    pub fn tool_call(era: Era, tool: &str, arguments: &Value) -> anyhow::Result<Template> {
        let mut params = json!({ "name": tool, "arguments": arguments });
        if era == Era::Modern {
            params["_meta"] = modern_meta();
        }
        Template::new("tools/call", Some(tool), params)
    }

    /// The first page of `tools/list`.
    pub fn tools_list(era: Era) -> anyhow::Result<Template> {
        let params = match era {
            Era::Modern => json!({ "_meta": modern_meta() }),
            Era::Legacy => json!({}),
        };
        Template::new("tools/list", None, params)
    }

    pub fn body(&self, id: u64) -> Bytes {
        let id_text = id.to_string();
        let mut body =
            Vec::with_capacity(self.before_id.len() + id_text.len() + self.after_id.len());
        body.extend_from_slice(&self.before_id);
        body.extend_from_slice(id_text.as_bytes());
        body.extend_from_slice(&self.after_id);
        Bytes::from(body)
    }
}

/// The body of a later `tools/list` page.
pub fn tools_list_page(era: Era, id: u64, cursor: &str) -> Bytes {
    let mut params = json!({ "cursor": cursor });
    if era == Era::Modern {
        params["_meta"] = modern_meta();
    }
    let body = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params });
    Bytes::from(serde_json::to_vec(&body).expect("JSON serializes"))
}

/// Why one call did not succeed. `kind()` is the bounded label errors are counted under.
#[derive(Clone, Debug)]
pub enum CallError {
    Connect(String),
    Transport(String),
    Timeout,
    Http(u16, String),
    Rpc(i64, String),
    Tool(String),
    BadResponse(String),
    /// Open loop: the client could not start the call on schedule (too many waiting).
    Backlog,
}

impl CallError {
    pub fn kind(&self) -> String {
        match self {
            CallError::Connect(_) => "connect".into(),
            CallError::Transport(_) => "transport".into(),
            CallError::Timeout => "timeout".into(),
            CallError::Http(status, _) => format!("http {status}"),
            CallError::Rpc(code, _) => format!("rpc {code}"),
            CallError::Tool(_) => "tool error".into(),
            CallError::BadResponse(_) => "bad response".into(),
            CallError::Backlog => "client backlog".into(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Connect(detail) => write!(f, "cannot connect: {detail}"),
            CallError::Transport(detail) => write!(f, "transport: {detail}"),
            CallError::Timeout => f.write_str("no answer before the request timeout"),
            CallError::Http(status, body) => write!(f, "HTTP {status}: {body}"),
            CallError::Rpc(code, message) => write!(f, "JSON-RPC error {code}: {message}"),
            CallError::Tool(text) => write!(f, "tool returned isError: {text}"),
            CallError::BadResponse(detail) => write!(f, "bad response: {detail}"),
            CallError::Backlog => f.write_str(
                "not started: too many calls already waiting for a slot (the schedule is not kept)",
            ),
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error: Option<ErrorObject>,
}

#[derive(Deserialize)]
struct ErrorObject {
    code: i64,
    #[serde(default)]
    message: String,
}

/// The parts of a result the driver looks at; everything else is skipped unparsed.
#[derive(Deserialize)]
struct ResultShape {
    #[serde(rename = "isError", default)]
    is_error: Option<bool>,
    #[serde(rename = "resultType", default)]
    result_type: Option<String>,
    #[serde(default)]
    tools: Option<Vec<IgnoredAny>>,
    #[serde(rename = "nextCursor", default)]
    next_cursor: Option<String>,
    #[serde(rename = "protocolVersion", default)]
    protocol_version: Option<String>,
}

/// What a successful reply said that the driver cares about.
#[derive(Debug, Default)]
pub struct Answer {
    /// `tools/list`: the number of tools on this page.
    pub tools: Option<usize>,
    pub next_cursor: Option<String>,
    /// `initialize`: the negotiated protocol version.
    pub protocol_version: Option<String>,
}

/// Checks one reply body against the id we sent. `content_type` picks JSON or SSE.
pub fn check_reply(content_type: &str, body: &[u8], id: u64) -> Result<Answer, CallError> {
    if content_type.starts_with("text/event-stream") {
        let text = std::str::from_utf8(body)
            .map_err(|_| CallError::BadResponse("SSE body is not UTF-8".into()))?;
        for line in text.lines() {
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            // Related notifications and server→client requests may precede the result.
            if let Some(answer) = check_message(data.trim_start().as_bytes(), id)? {
                return Ok(answer);
            }
        }
        return Err(CallError::BadResponse(
            "the event stream ended without our result".into(),
        ));
    }
    check_message(body, id)?
        .ok_or_else(|| CallError::BadResponse("the JSON body is not our result".into()))
}

/// `Ok(None)` when the message is not the reply to `id` (a notification, say).
fn check_message(message: &[u8], id: u64) -> Result<Option<Answer>, CallError> {
    let envelope: Envelope<'_> = serde_json::from_slice(message)
        .map_err(|e| CallError::BadResponse(format!("not JSON-RPC: {e}")))?;
    let Some(got_id) = envelope.id else {
        return Ok(None);
    };
    if got_id.get() != id.to_string() {
        if envelope.result.is_none() && envelope.error.is_none() {
            // A server→client request with its own id.
            return Ok(None);
        }
        return Err(CallError::BadResponse(format!(
            "answer for id {} while waiting for {id}",
            got_id.get()
        )));
    }
    if let Some(error) = envelope.error {
        return Err(CallError::Rpc(error.code, error.message));
    }
    let Some(result) = envelope.result else {
        // Same id but a request: not ours to answer.
        return Ok(None);
    };
    let shape: ResultShape = serde_json::from_str(result.get())
        .map_err(|e| CallError::BadResponse(format!("result is not an object: {e}")))?;
    if shape.is_error == Some(true) {
        let mut text = result.get().to_owned();
        text.truncate(200);
        return Err(CallError::Tool(text));
    }
    if let Some(kind) = shape.result_type.as_deref()
        && kind != "complete"
    {
        return Err(CallError::BadResponse(format!("resultType {kind}")));
    }
    Ok(Some(Answer {
        tools: shape.tools.map(|tools| tools.len()),
        next_cursor: shape.next_cursor,
        protocol_version: shape.protocol_version,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_inserts_the_id() {
        let template =
            Template::tool_call(Era::Legacy, "fx__echo", &json!({"text": "hi"})).unwrap();
        let body: Value = serde_json::from_slice(&template.body(42)).unwrap();
        assert_eq!(body["id"], 42);
        assert_eq!(body["method"], "tools/call");
        assert_eq!(body["params"]["name"], "fx__echo");
        assert_eq!(body["params"]["arguments"]["text"], "hi");
        let modern = Template::tool_call(Era::Modern, "echo", &json!({})).unwrap();
        let body: Value = serde_json::from_slice(&modern.body(1)).unwrap();
        assert_eq!(
            body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            MODERN_VERSION
        );
        assert_eq!(modern.name.unwrap(), "echo");
    }

    #[test]
    fn checks_json_and_sse_replies() {
        let ok = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#;
        assert!(check_reply("application/json", ok, 7).is_ok());
        assert!(matches!(
            check_reply("application/json", ok, 8),
            Err(CallError::BadResponse(_))
        ));
        let tool_error = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#;
        assert!(matches!(
            check_reply("application/json", tool_error, 7),
            Err(CallError::Tool(_))
        ));
        let rpc = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"no"}}"#;
        assert!(matches!(
            check_reply("application/json", rpc, 7),
            Err(CallError::Rpc(-32602, _))
        ));
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{},{}],\"nextCursor\":\"c\"}}\n\n";
        let answer = check_reply("text/event-stream", sse, 7).unwrap();
        assert_eq!(answer.tools, Some(2));
        assert_eq!(answer.next_cursor.as_deref(), Some("c"));
        assert!(check_reply("text/event-stream", b": keep-alive\n\n", 7).is_err());
    }

    #[test]
    fn reads_the_negotiated_version() {
        let init = br#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
        let answer = check_reply("application/json", init, 1).unwrap();
        assert_eq!(answer.protocol_version.as_deref(), Some("2025-06-18"));
    }
}
