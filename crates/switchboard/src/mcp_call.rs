//! `switchboard call TOOL`: one `tools/call` on the gateway's `/mcp` endpoint, as any MCP
//! client makes it (modern era, one stateless POST), so the call goes through the whole
//! pipeline as the principal the `--key` credential names (anonymous without one).
//! Prints the result; exit code 1 on a JSON-RPC error or a tool error (`isError`).

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::ctl_cli::{Client, Failure, Out, print_json};

/// The protocol version the CLI speaks on `/mcp`.
const PROTOCOL_VERSION: &str = "2026-07-28";

/// The `_meta` key carrying an approval id on the retry of a call that waited for one.
const APPROVAL_KEY: &str = "dev.switchboard/approval";

/// Largest answer read: a tool result beyond this is refused rather than held.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// The arguments of `call`: the `--args` JSON object, then each `key=value` pair (the
/// value as JSON when it parses as JSON, else as a string: `n=42` is a number,
/// `text=hello` a string, `text='"42"'` the string "42").
pub(crate) fn arguments(json_text: Option<&str>, pairs: &[String]) -> anyhow::Result<Value> {
    let mut arguments = match json_text {
        Some(text) => {
            let value: Value = serde_json::from_str(text).context("--args is not JSON")?;
            anyhow::ensure!(value.is_object(), "--args must be a JSON object");
            value
        }
        None => json!({}),
    };
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            anyhow::bail!("`{pair}`: expected key=value");
        };
        anyhow::ensure!(!key.is_empty(), "`{pair}`: the key is empty");
        let value =
            serde_json::from_str::<Value>(value).unwrap_or_else(|_| Value::String(value.into()));
        arguments[key] = value;
    }
    Ok(arguments)
}

/// `Mcp-Name`: the name as it is when it is plain printable ASCII, else base64 in the
/// sentinel form the spec gives.
fn name_header(name: &str) -> String {
    use base64::Engine as _;
    let plain = name.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && name.trim() == name
        && !name.starts_with("=?base64?");
    if plain {
        name.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(name)
        )
    }
}

pub(crate) async fn call(
    client: &Client,
    out: &Out,
    tool: &str,
    arguments: Value,
    approval: Option<&str>,
) -> Result<(), Failure> {
    let mut meta = json!({
        "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
        "io.modelcontextprotocol/clientInfo": { "name": "switchboard-cli", "version": env!("CARGO_PKG_VERSION") },
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    if let Some(approval) = approval {
        meta[APPROVAL_KEY] = json!(approval);
    }
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": { "name": tool, "arguments": arguments, "_meta": meta },
    });
    let mut request = client
        .http
        .post(format!("{}/mcp", client.base))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .header("mcp-method", "tools/call")
        .header("mcp-name", name_header(tool))
        .body(body.to_string());
    if let Some(key) = &client.key {
        request = request.bearer_auth(key);
    }
    out.progress(format_args!("calling {tool}"));
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the gateway at {}", client.base))?;
    let status = response.status().as_u16();
    let message = answer(response).await?;
    if matches!(status, 401 | 403) {
        let why = message
            .as_ref()
            .and_then(|m| m["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "not allowed".into());
        return Err(Failure {
            code: 3,
            message: format!("{why} (HTTP {status}; pass --key or set SWITCHBOARD_KEY)"),
        });
    }
    let Some(message) = message else {
        return Err(Failure::refused(format!(
            "the gateway answered HTTP {status} without a JSON-RPC answer"
        )));
    };
    if let Some(error) = message.get("error") {
        if out.json {
            print_json(&json!({ "error": error }));
        }
        return Err(Failure::refused(error_line(error)));
    }
    let result = message.get("result").cloned().unwrap_or_default();
    if result["resultType"] == "input_required" {
        return Err(Failure::refused(format!(
            "{tool} asked the client for input (elicitation or sampling), which the CLI cannot give"
        )));
    }
    if out.json {
        print_json(&result);
    } else {
        print_result(&result);
    }
    if result["isError"] == true {
        return Err(Failure::refused(format!("{tool} reported an error")));
    }
    Ok(())
}

/// One line for a JSON-RPC error, with what to do when the call waits for an approval.
fn error_line(error: &Value) -> String {
    let message = error["message"].as_str().unwrap_or("error");
    let code = &error["code"];
    match error["data"]["approval"].as_str() {
        // The gateway's message tells an MCP client about `_meta`; this one the CLI user.
        Some(id) => format!(
            "approval {id} pending: once it is approved (`switchboard approve {id}`), repeat the call with --approval {id}"
        ),
        None => format!("{message} ({code})"),
    }
}

/// A result for a person: text content as it is, other content and structured content
/// as JSON.
fn print_result(result: &Value) {
    let content = result["content"].as_array().cloned().unwrap_or_default();
    for item in &content {
        match item["text"].as_str() {
            Some(text) if item["type"] == "text" => println!("{text}"),
            _ => println!("{item}"),
        }
    }
    if content.is_empty()
        && let Some(structured) = result.get("structuredContent")
    {
        print_json(structured);
    }
}

/// The JSON-RPC answer with id 1, from a JSON body or an event stream; `None` when the
/// body holds none (an HTTP error page).
async fn answer(mut response: reqwest::Response) -> Result<Option<Value>, Failure> {
    let is_stream = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.context("reading the answer")? {
        buffer.extend_from_slice(&chunk);
        if buffer.len() > MAX_ANSWER_BYTES {
            return Err(Failure::refused(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )));
        }
        if is_stream && let Some(found) = from_events(&buffer, false) {
            return Ok(Some(found));
        }
    }
    if is_stream {
        return Ok(from_events(&buffer, true));
    }
    Ok(serde_json::from_slice::<Value>(&buffer).ok())
}

/// The answer among the complete events of `buffer` (and the last, unterminated one
/// when the stream has ended).
fn from_events(buffer: &[u8], ended: bool) -> Option<Value> {
    let text = String::from_utf8_lossy(buffer).replace("\r\n", "\n");
    let mut events: Vec<&str> = text.split("\n\n").collect();
    if !ended {
        events.pop();
    }
    events.into_iter().find_map(|event| {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| data.strip_prefix(' ').unwrap_or(data))
            .collect();
        let message: Value = serde_json::from_str(&data.join("\n")).ok()?;
        let answers = message["id"] == 1
            && (message.get("result").is_some() || message.get("error").is_some());
        answers.then_some(message)
    })
}

#[cfg(test)]
mod tests {
    use super::{arguments, from_events, name_header};
    use serde_json::json;

    #[test]
    fn pairs_are_json_when_they_parse_and_strings_otherwise() {
        let parsed = arguments(
            Some(r#"{"a": 1}"#),
            &[
                "n=42".into(),
                "text=hello".into(),
                "quoted=\"42\"".into(),
                "eq=a=b".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            parsed,
            json!({ "a": 1, "n": 42, "text": "hello", "quoted": "42", "eq": "a=b" })
        );
        assert!(arguments(Some("[1]"), &[]).is_err());
        assert!(arguments(Some("{"), &[]).is_err());
        assert!(arguments(None, &["novalue".into()]).is_err());
        assert!(arguments(None, &["=x".into()]).is_err());
    }

    #[test]
    fn the_answer_is_found_among_stream_events() {
        let stream = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n";
        assert_eq!(
            from_events(stream, false).unwrap()["result"],
            json!({ "content": [] })
        );
        let partial = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        assert!(from_events(partial, false).is_none());
        assert!(from_events(partial, true).is_some());
    }

    #[test]
    fn unsafe_names_are_base64_encoded() {
        assert_eq!(name_header("fx__echo"), "fx__echo");
        assert_eq!(name_header("é"), "=?base64?w6k=?=");
    }
}
