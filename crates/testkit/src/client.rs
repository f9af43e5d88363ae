//! Minimal MCP clients for tests: a stdio client of `switchboard stdio`, a legacy HTTP
//! session client, and a modern stateless HTTP client. They answer server→client
//! requests with canned replies so sampling, elicitation and roots can be exercised.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio as ProcStdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc, oneshot};

pub const MODERN: &str = "2026-07-28";
pub const LEGACY: &str = "2025-11-25";

/// Which face of the gateway a client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    Stdio,
    Http,
}

/// The outcome of one request: its result (or error object) and the notifications the
/// client saw while it was in flight.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub outcome: Result<Value, Value>,
    pub notifications: Vec<Value>,
    pub status: u16,
}

impl Exchange {
    pub fn result(&self) -> &Value {
        match &self.outcome {
            Ok(result) => result,
            Err(error) => panic!("expected a result, got error {error}"),
        }
    }

    /// The names a `tools/list` answer lists.
    pub fn tool_names(&self) -> Vec<String> {
        self.result()["tools"]
            .as_array()
            .expect("a tools array")
            .iter()
            .map(|tool| tool["name"].as_str().expect("a tool name").to_owned())
            .collect()
    }

    pub fn error(&self) -> &Value {
        match &self.outcome {
            Err(error) => error,
            Ok(result) => panic!("expected an error, got result {result}"),
        }
    }
}

/// The capabilities test clients declare.
pub fn client_capabilities() -> Value {
    json!({ "sampling": {}, "elicitation": { "form": {} }, "roots": { "listChanged": true } })
}

/// Canned answers to server→client requests.
pub fn canned_answer(method: &str) -> Value {
    match method {
        "sampling/createMessage" => json!({
            "role": "assistant", "content": { "type": "text", "text": "canned sample" },
            "model": "test-model", "stopReason": "endTurn"
        }),
        "elicitation/create" => {
            json!({ "action": "accept", "content": { "username": "tester", "name": "tester", "email": "t@example.com" } })
        }
        "roots/list" => json!({ "roots": [{ "uri": "file:///tmp", "name": "tmp" }] }),
        _ => json!({}),
    }
}

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": { "name": "switchboard-testkit", "version": "0" },
        "io.modelcontextprotocol/clientCapabilities": client_capabilities(),
    })
}

/// Adds the modern `_meta` identity to params.
pub fn with_modern_meta(mut params: Value) -> Value {
    if !params.is_object() {
        params = json!({});
    }
    let meta = params
        .as_object_mut()
        .unwrap()
        .entry("_meta")
        .or_insert_with(|| json!({}));
    for (key, value) in modern_meta().as_object().unwrap() {
        meta[key] = value.clone();
    }
    params
}

/// Answers a modern `input_required` result with canned input and retries, up to a few
/// rounds; returns the final exchange.
async fn drive_mrtr<F, Fut>(mut send: F, params: Value, first: Exchange) -> Exchange
where
    F: FnMut(Value) -> Fut,
    Fut: std::future::Future<Output = Exchange>,
{
    let mut exchange = first;
    for _ in 0..8 {
        let Ok(result) = &exchange.outcome else {
            return exchange;
        };
        if result.get("resultType").and_then(Value::as_str) != Some("input_required") {
            return exchange;
        }
        let mut responses = serde_json::Map::new();
        if let Some(requests) = result.get("inputRequests").and_then(Value::as_object) {
            for (key, request) in requests {
                let method = request
                    .get("method")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                responses.insert(key.clone(), canned_answer(method));
            }
        }
        let mut retry = params.clone();
        retry["inputResponses"] = Value::Object(responses);
        if let Some(state) = result.get("requestState") {
            retry["requestState"] = state.clone();
        }
        let mut notifications = exchange.notifications.clone();
        exchange = send(retry).await;
        notifications.append(&mut exchange.notifications);
        exchange.notifications = notifications;
    }
    exchange
}

// ---------------------------------------------------------------- stdio

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<(Result<Value, Value>, Vec<Value>)>>>>;

/// A client of `switchboard stdio`, legacy (after `initialize`) or modern.
pub struct Stdio {
    child: Child,
    stdin: Arc<Mutex<Option<ChildStdin>>>,
    pending: Pending,
    next_id: AtomicU64,
    modern: bool,
    /// Notifications not tied to a request (list_changed, resources/updated).
    pub unsolicited: Mutex<mpsc::UnboundedReceiver<Value>>,
    /// Answers to server→client requests set by the test, by method (else canned ones).
    roots: Answers,
}

impl Drop for Stdio {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            crate::process::kill_group(pid);
        }
        let _ = self.child.start_kill();
    }
}

impl Stdio {
    /// Spawns `gateway_bin stdio --config config` and, for legacy, initializes.
    pub async fn spawn(gateway_bin: &str, config: &Path, modern: bool) -> anyhow::Result<Stdio> {
        Stdio::spawn_with(gateway_bin, config, modern, &[]).await
    }

    /// [`Stdio::spawn`] with more arguments for `switchboard stdio`.
    pub async fn spawn_with(
        gateway_bin: &str,
        config: &Path,
        modern: bool,
        extra: &[&str],
    ) -> anyhow::Result<Stdio> {
        let mut child = Command::new(gateway_bin)
            .arg("stdio")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env(
                "SWITCHBOARD_LOG",
                std::env::var("SWITCHBOARD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(ProcStdio::piped())
            .stdout(ProcStdio::piped())
            .stderr(ProcStdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("spawn switchboard stdio")?;
        let stdin = Arc::new(Mutex::new(child.stdin.take()));
        let stdout = child.stdout.take().unwrap();
        let pending: Pending = Arc::default();
        let (unsolicited_tx, unsolicited_rx) = mpsc::unbounded_channel();
        let related: Arc<Mutex<Vec<Value>>> = Arc::default();
        let roots: Answers = Arc::default();
        {
            let pending = pending.clone();
            let stdin = stdin.clone();
            let roots = roots.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(message) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    let id = message
                        .get("id")
                        .filter(|v| !v.is_null())
                        .map(|v| v.to_string());
                    let method = message
                        .get("method")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    match (id, method) {
                        (Some(id), None) => {
                            let outcome = match message.get("error") {
                                Some(error) => Err(error.clone()),
                                None => Ok(message.get("result").cloned().unwrap_or_default()),
                            };
                            let notes = std::mem::take(&mut *related.lock().await);
                            if let Some(reply) = pending.lock().await.remove(&id) {
                                let _ = reply.send((outcome, notes));
                            }
                        }
                        (Some(_), Some(method)) => {
                            let result = answer_with(&method, &roots);
                            let reply =
                                json!({ "jsonrpc": "2.0", "id": message["id"], "result": result });
                            let mut bytes = serde_json::to_vec(&reply).unwrap();
                            bytes.push(b'\n');
                            if let Some(stdin) = stdin.lock().await.as_mut() {
                                let _ = stdin.write_all(&bytes).await;
                            }
                        }
                        (None, Some(method)) => {
                            let related_to_call = method == "notifications/progress"
                                || method == "notifications/message";
                            if related_to_call {
                                related.lock().await.push(message);
                            } else {
                                let _ = unsolicited_tx.send(message);
                            }
                        }
                        (None, None) => {
                            // An error without id (e.g. a parse error): hand it to the oldest waiter.
                            let _ = unsolicited_tx.send(message);
                        }
                    }
                }
            });
        }
        let client = Stdio {
            child,
            stdin,
            pending,
            next_id: AtomicU64::new(1),
            modern,
            unsolicited: Mutex::new(unsolicited_rx),
            roots,
        };
        if !modern {
            let init = client
                .raw_request(
                    "initialize",
                    json!({ "protocolVersion": LEGACY, "capabilities": client_capabilities(), "clientInfo": { "name": "switchboard-testkit", "version": "0" } }),
                )
                .await;
            init.outcome
                .map_err(|e| anyhow::anyhow!("initialize failed: {e}"))?;
            client
                .notify("notifications/initialized", json!({}))
                .await?;
        }
        Ok(client)
    }

    /// Writes raw bytes plus a newline (for malformed-input tests).
    pub async fn write_raw(&self, bytes: &[u8]) -> anyhow::Result<()> {
        let mut stdin = self.stdin.lock().await;
        let stdin = stdin.as_mut().context("stdin closed")?;
        stdin.write_all(bytes).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Closes the gateway's stdin (the client leaves).
    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }

    /// Waits up to `limit` for the gateway to exit; whether it did.
    pub async fn wait(mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.child.wait()).await.is_ok()
    }

    pub async fn notify(&self, method: &str, params: Value) -> anyhow::Result<()> {
        let message = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        self.write_raw(&serde_json::to_vec(&message)?).await
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Answers `roots/list` with `result` from now on.
    pub fn set_roots(&self, result: Value) {
        self.set_answer("roots/list", result);
    }

    /// Answers server→client requests of `method` with `result` from now on (e.g. an
    /// `elicitation/create` that declines).
    pub fn set_answer(&self, method: &str, result: Value) {
        self.roots.lock().unwrap().insert(method.to_owned(), result);
    }

    /// Sends a request with a chosen id and waits for its answer.
    pub async fn request_with_id(&self, id: u64, method: &str, params: Value) -> Exchange {
        let params = if self.modern {
            with_modern_meta(params)
        } else {
            params
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(id.to_string(), tx);
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        if let Err(error) = self.write_raw(&serde_json::to_vec(&message).unwrap()).await {
            return Exchange {
                outcome: Err(json!({ "message": error.to_string() })),
                notifications: vec![],
                status: 0,
            };
        }
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok((outcome, notifications))) => Exchange {
                outcome,
                notifications,
                status: 200,
            },
            _ => Exchange {
                outcome: Err(json!({ "message": "no answer" })),
                notifications: vec![],
                status: 0,
            },
        }
    }

    async fn raw_request(&self, method: &str, params: Value) -> Exchange {
        let id = self.next_id();
        self.request_with_id(id, method, params).await
    }

    pub async fn request(&self, method: &str, params: Value) -> Exchange {
        let first = self.raw_request(method, params.clone()).await;
        drive_mrtr(|retry| self.raw_request(method, retry), params, first).await
    }
}

// ---------------------------------------------------------------- HTTP

/// A client sending `headers` (e.g. a credential) with every request.
fn http_with(headers: &[(&str, &str)]) -> reqwest::Client {
    let mut defaults = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        defaults.append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            reqwest::header::HeaderValue::from_str(value).expect("header value"),
        );
    }
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .default_headers(defaults)
        .build()
        .unwrap()
}

async fn read_http(
    response: reqwest::Response,
    answer: impl Fn(Value) -> Option<Value>,
) -> Exchange {
    let status = response.status().as_u16();
    let is_sse = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mut notifications = Vec::new();
    if !is_sse {
        let body = response.bytes().await.unwrap_or_default();
        let Ok(message) = serde_json::from_slice::<Value>(&body) else {
            return Exchange {
                outcome: Err(
                    json!({ "http_status": status, "body": String::from_utf8_lossy(&body) }),
                ),
                notifications,
                status,
            };
        };
        let outcome = match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message.get("result").cloned().unwrap_or_default()),
        };
        return Exchange {
            outcome,
            notifications,
            status,
        };
    }
    let mut messages = sse_messages(response);
    while let Some(message) = messages.recv().await {
        let has_id = message.get("id").is_some_and(|v| !v.is_null());
        let is_request = message.get("method").is_some();
        if has_id && is_request {
            answer(message);
            continue;
        }
        if !has_id {
            notifications.push(message);
            continue;
        }
        let outcome = match message.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(message.get("result").cloned().unwrap_or_default()),
        };
        return Exchange {
            outcome,
            notifications,
            status,
        };
    }
    Exchange {
        outcome: Err(json!({ "message": "stream ended without an answer" })),
        notifications,
        status,
    }
}

/// A legacy Streamable HTTP session.
pub struct LegacyHttp {
    pub url: String,
    pub session: String,
    client: reqwest::Client,
    next_id: AtomicU64,
    /// Answers to server→client requests set by the test, by method (else canned ones).
    roots: Answers,
}

/// Answers to server→client requests a test set, by method.
type Answers = Arc<std::sync::Mutex<HashMap<String, Value>>>;

/// The answer to a server→client request: the one set for its method, else canned.
fn answer_with(method: &str, answers: &std::sync::Mutex<HashMap<String, Value>>) -> Value {
    match answers.lock().unwrap().get(method) {
        Some(answer) => answer.clone(),
        None => canned_answer(method),
    }
}

impl LegacyHttp {
    pub async fn connect(url: &str) -> anyhow::Result<LegacyHttp> {
        LegacyHttp::connect_with(url, &[]).await
    }

    /// [`LegacyHttp::connect`], sending `headers` (a credential) with every request.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<LegacyHttp> {
        let client = http_with(headers);
        let response = client
            .post(url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .json(
                &json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": LEGACY, "capabilities": client_capabilities(),
                "clientInfo": { "name": "switchboard-testkit", "version": "0" } } }),
            )
            .send()
            .await?;
        let session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .context("no Mcp-Session-Id")?
            .to_owned();
        response.bytes().await?;
        let session = LegacyHttp {
            url: url.to_owned(),
            session,
            client,
            next_id: AtomicU64::new(1),
            roots: Arc::default(),
        };
        session
            .post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await?;
        Ok(session)
    }

    /// The same session, sent to another gateway (a replica of a cluster).
    pub fn at(&self, url: &str) -> LegacyHttp {
        LegacyHttp {
            url: url.to_owned(),
            session: self.session.clone(),
            client: self.client.clone(),
            next_id: AtomicU64::new(self.next_id.load(Ordering::Relaxed)),
            roots: self.roots.clone(),
        }
    }

    /// POSTs one message with the session headers.
    pub async fn post(&self, body: Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", LEGACY)
            .json(&body)
            .send()
            .await?)
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Answers `roots/list` with `result` from now on.
    pub fn set_roots(&self, result: Value) {
        self.set_answer("roots/list", result);
    }

    /// Answers server→client requests of `method` with `result` from now on (e.g. an
    /// `elicitation/create` that declines).
    pub fn set_answer(&self, method: &str, result: Value) {
        self.roots.lock().unwrap().insert(method.to_owned(), result);
    }

    /// Answers a server→client request (e.g. one that arrived on the GET stream).
    pub async fn answer(&self, request: &Value) -> anyhow::Result<()> {
        let method = request["method"].as_str().unwrap_or_default();
        let result = answer_with(method, &self.roots);
        self.post(json!({ "jsonrpc": "2.0", "id": request["id"], "result": result }))
            .await?;
        Ok(())
    }

    pub async fn request_with_id(&self, id: u64, method: &str, params: Value) -> Exchange {
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let response = match self.post(body).await {
            Ok(response) => response,
            Err(error) => {
                return Exchange {
                    outcome: Err(json!({ "message": error.to_string() })),
                    notifications: vec![],
                    status: 0,
                };
            }
        };
        let (answers_tx, mut answers_rx) = mpsc::unbounded_channel::<Value>();
        let url = self.url.clone();
        let session = self.session.clone();
        let client = self.client.clone();
        let roots = self.roots.clone();
        // Server→client requests arrive on the stream; answer them with separate POSTs.
        let responder = tokio::spawn(async move {
            while let Some(request) = answers_rx.recv().await {
                let method = request["method"].as_str().unwrap_or_default().to_owned();
                let reply = json!({ "jsonrpc": "2.0", "id": request["id"], "result": answer_with(&method, &roots) });
                let _ = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-session-id", &session)
                    .header("mcp-protocol-version", LEGACY)
                    .json(&reply)
                    .send()
                    .await;
            }
        });
        let exchange = read_http(response, move |request| {
            let _ = answers_tx.send(request);
            None
        })
        .await;
        // Requests seen before the answer are still answered (the closure, and so the
        // sender, is gone: the responder ends after the last one).
        let _ = responder.await;
        exchange
    }

    pub async fn request(&self, method: &str, params: Value) -> Exchange {
        let id = self.next_id();
        self.request_with_id(id, method, params).await
    }

    /// Opens the GET stream and returns a receiver of its messages.
    pub async fn open_stream(&self) -> anyhow::Result<mpsc::UnboundedReceiver<Value>> {
        let response = self
            .client
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.session)
            .header("mcp-protocol-version", LEGACY)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "GET stream answered {}",
            response.status()
        );
        Ok(sse_messages(response))
    }
}

/// Spawns a reader that turns an SSE response into a channel of JSON messages. Dropping
/// the receiver closes the stream (which is how a modern client cancels a request).
pub fn sse_messages(response: reqwest::Response) -> mpsc::UnboundedReceiver<Value> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        loop {
            let chunk = tokio::select! {
                chunk = stream.next() => chunk,
                () = tx.closed() => return,
            };
            let Some(Ok(chunk)) = chunk else { return };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if let Ok(message) = serde_json::from_str::<Value>(&data.join("\n"))
                    && tx.send(message).is_err()
                {
                    return;
                }
            }
        }
    });
    rx
}

/// A modern stateless HTTP client.
pub struct ModernHttp {
    pub url: String,
    client: reqwest::Client,
    next_id: AtomicU64,
}

impl ModernHttp {
    pub fn new(url: &str) -> ModernHttp {
        ModernHttp::with_headers(url, &[])
    }

    /// A client sending `headers` (a credential) with every request.
    pub fn with_headers(url: &str, headers: &[(&str, &str)]) -> ModernHttp {
        ModernHttp {
            url: url.to_owned(),
            client: http_with(headers),
            next_id: AtomicU64::new(1),
        }
    }

    /// Builds a POST with the mirrored headers for `method`/`params`.
    pub fn builder(
        &self,
        id: Option<u64>,
        method: &str,
        params: &Value,
    ) -> reqwest::RequestBuilder {
        let mut body = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        let declared = params["_meta"]["io.modelcontextprotocol/protocolVersion"]
            .as_str()
            .unwrap_or(MODERN);
        let mut builder = self
            .client
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .header("mcp-protocol-version", declared)
            .header("mcp-method", method);
        let name = match method {
            "tools/call" | "prompts/get" => params.get("name").and_then(Value::as_str),
            "resources/read" => params.get("uri").and_then(Value::as_str),
            _ => None,
        };
        if let Some(name) = name {
            builder = builder.header("mcp-name", switchboard_name_header(name));
        }
        builder.body(serde_json::to_vec(&body).unwrap())
    }

    /// Opens a `subscriptions/listen` stream with `filter` and returns its messages.
    pub async fn listen(&self, filter: Value) -> anyhow::Result<mpsc::UnboundedReceiver<Value>> {
        let params = with_modern_meta(json!({ "notifications": filter }));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let response = self
            .builder(Some(id), "subscriptions/listen", &params)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "listen answered {}",
            response.status()
        );
        Ok(sse_messages(response))
    }

    pub async fn raw_request(&self, method: &str, params: Value) -> Exchange {
        let params = with_modern_meta(params);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match self.builder(Some(id), method, &params).send().await {
            Ok(response) => read_http(response, |_| None).await,
            Err(error) => Exchange {
                outcome: Err(json!({ "message": error.to_string() })),
                notifications: vec![],
                status: 0,
            },
        }
    }

    pub async fn request(&self, method: &str, params: Value) -> Exchange {
        let first = self.raw_request(method, params.clone()).await;
        drive_mrtr(|retry| self.raw_request(method, retry), params, first).await
    }
}

/// `Mcp-Name` value encoding (plain, or the base64 sentinel for unsafe values).
fn switchboard_name_header(value: &str) -> String {
    use base64::Engine as _;
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !value.starts_with("=?base64?");
    if plain {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// Any of the clients, for shared assertions across the transport matrix.
#[allow(clippy::large_enum_variant)] // one per test: size does not matter
pub enum Client {
    Stdio(Stdio),
    Legacy(LegacyHttp),
    Modern(ModernHttp),
}

impl Client {
    pub async fn request(&self, method: &str, params: Value) -> Exchange {
        match self {
            Client::Stdio(client) => client.request(method, params).await,
            Client::Legacy(client) => client.request(method, params).await,
            Client::Modern(client) => client.request(method, params).await,
        }
    }

    pub fn is_modern(&self) -> bool {
        match self {
            Client::Stdio(client) => client.modern,
            Client::Legacy(_) => false,
            Client::Modern(_) => true,
        }
    }
}
