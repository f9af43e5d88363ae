//! A scripted OpenAI-compatible model server for the agent's tests: `POST
//! /v1/chat/completions` answers with the next scripted reply (an assistant message, an
//! HTTP error, or no answer at all) and records every request body, so a test decides
//! exactly what "the model" says and checks what the gateway sent it. Plain HTTP/1.1 on
//! a tokio listener, one request per connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// 200 with this assistant message as `choices[0].message`.
    Message(Value),
    /// This status and body.
    Status(u16, String),
    /// Read the request, then never answer (until the connection closes).
    Hang,
}

/// An assistant message answering in words.
pub fn text(answer: &str) -> Scripted {
    Scripted::Message(json!({ "role": "assistant", "content": answer }))
}

/// An assistant message calling tools: (name, arguments object) each.
pub fn calls(calls: &[(&str, Value)]) -> Scripted {
    let raw: Vec<(&str, String)> = calls
        .iter()
        .map(|(name, arguments)| (*name, arguments.to_string()))
        .collect();
    raw_calls(
        &raw.iter()
            .map(|(n, a)| (*n, a.as_str()))
            .collect::<Vec<_>>(),
    )
}

/// An assistant message calling tools with `arguments` strings as written (may be broken).
pub fn raw_calls(calls: &[(&str, &str)]) -> Scripted {
    let tool_calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(index, (name, arguments))| {
            json!({ "id": format!("call_{index}"), "type": "function",
                    "function": { "name": name, "arguments": arguments } })
        })
        .collect();
    Scripted::Message(json!({ "role": "assistant", "content": null, "tool_calls": tool_calls }))
}

/// The running server.
pub struct ScriptedLlm {
    /// The API root to configure as `[agent] base_url` (ends in `/v1`).
    pub base_url: String,
    script: Arc<Mutex<VecDeque<Scripted>>>,
    requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedLlm {
    /// Starts on a free loopback port with `script` (answers in order; an exhausted
    /// script answers 500).
    pub async fn start(script: Vec<Scripted>) -> ScriptedLlm {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (served_script, served_requests) = (script.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (script, requests) = (served_script.clone(), served_requests.clone());
                tokio::spawn(serve(stream, script, requests));
            }
        });
        ScriptedLlm {
            base_url: format!("http://{address}/v1"),
            script,
            requests,
            task,
        }
    }

    /// Appends answers to the script.
    pub fn push(&self, answers: Vec<Scripted>) {
        self.script.lock().unwrap().extend(answers);
    }

    /// Every request body received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }

    /// The `[agent]` section for this server, with `extra` lines.
    pub fn agent_section(&self, extra: &str) -> String {
        format!(
            "[agent]\nbase_url = {:?}\nmodel = \"scripted\"\n{extra}\n",
            self.base_url
        )
    }
}

async fn serve(
    mut stream: TcpStream,
    script: Arc<Mutex<VecDeque<Scripted>>>,
    requests: Arc<Mutex<Vec<Value>>>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    let body: Value =
        serde_json::from_slice(&buffer[header_end..header_end + length]).unwrap_or(Value::Null);
    let path_ok = head
        .lines()
        .next()
        .is_some_and(|line| line.starts_with("POST /v1/chat/completions "));
    requests.lock().unwrap().push(body);
    let next = if path_ok {
        script.lock().unwrap().pop_front()
    } else {
        Some(Scripted::Status(404, "no such path".into()))
    };
    let (status, body) = match next {
        None => (
            500,
            json!({ "error": { "message": "script exhausted" } }).to_string(),
        ),
        Some(Scripted::Status(status, body)) => (status, body),
        Some(Scripted::Hang) => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return;
        }
        Some(Scripted::Message(message)) => {
            let finish = if message.get("tool_calls").is_some() {
                "tool_calls"
            } else {
                "stop"
            };
            let answer = json!({
                "id": "chatcmpl-scripted", "object": "chat.completion", "model": "scripted",
                "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
                "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 },
            });
            (200, answer.to_string())
        }
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
