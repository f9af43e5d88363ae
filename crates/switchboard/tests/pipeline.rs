//! The call pipeline, seen from outside: steps installed by the embedder see every client
//! request — lists, calls, prompts, reads, completions, the `switchboard__call` meta-tool —
//! on both faces and both eras, can deny each before the upstream with one error shape,
//! rewrite arguments and results, and hide entries from a caller's lists (hidden means
//! nonexistent). The gateway runs in-process (to install the steps) with its real faces:
//! the HTTP face on a loopback port, the stdio face over an in-memory pipe; the upstream
//! is the real fixture server.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use std::sync::Mutex as StdMutex;
use switchboard_config::{ConfigFormat, ListenSettings};
use switchboard_gateway::catalog::Listing;
use switchboard_gateway::error::Error;
use switchboard_gateway::pipeline::{Call, Filter, Flow, Hooks, Step, StepFuture, Target};
use switchboard_gateway::reply::Reply;
use switchboard_gateway::{Gateway, Principal, face};
use switchboard_testkit::client::{LEGACY, canned_answer, client_capabilities, with_modern_meta};
use switchboard_testkit::{LegacyHttp, ModernHttp, binary_beside};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

fn config() -> switchboard_config::Config {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let text = format!(
        "[gateway]\nrequest_timeout_ms = 20000\nmeta_tools = [\"call\"]\nmeta_tools_by_default = true\n\n\
         [servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture.display().to_string()
    );
    switchboard_config::parse(&text, ConfigFormat::Native, None).expect("valid config")
}

/// What a recording step saw of one call.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    method: String,
    target: String,
    face: &'static str,
    era: String,
}

fn describe(target: &Target) -> String {
    match target {
        Target::Gateway => "gateway".into(),
        Target::List(listing) => format!("list:{}", listing.field()),
        Target::Meta(short) => format!("meta:{short}"),
        Target::Upstream(route) => format!("{}:{}", route.server, route.name),
    }
}

#[derive(Default)]
struct Recorder {
    seen: StdMutex<Vec<Seen>>,
}

impl Step for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        self.seen.lock().unwrap().push(Seen {
            method: call.method.to_owned(),
            target: describe(&call.target),
            face: call.ctx.principal.face().as_str(),
            era: format!("{:?}", call.ctx.era),
        });
        Box::pin(async { Ok(Flow::Continue) })
    }
}

/// Denies every call except the fixture's `stats` tool (so the test can count calls).
struct Denier;

impl Step for Denier {
    fn name(&self) -> &'static str {
        "denier"
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        let allowed = matches!(&call.target, Target::Upstream(route) if route.name == "stats");
        Box::pin(async move {
            if allowed {
                Ok(Flow::Continue)
            } else {
                Err(Error::denied("denier", "denied by the test policy"))
            }
        })
    }
}

/// Rewrites `fx__echo`'s argument before, and marks every tools/call and tools/list result
/// after; hides the fixture's `add` tool from every caller.
struct Rewriter;

impl Step for Rewriter {
    fn name(&self) -> &'static str {
        "rewriter"
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        if matches!(&call.target, Target::Upstream(route) if route.name == "echo") {
            call.params["arguments"]["text"] = json!("rewritten before");
        }
        Box::pin(async { Ok(Flow::Continue) })
    }

    fn after<'a>(
        &'a self,
        call: &'a Call<'_>,
        outcome: &'a mut Result<Reply, Error>,
    ) -> StepFuture<'a, ()> {
        if let Ok(reply) = outcome {
            match call.method {
                "tools/call" => {
                    reply.value_mut()["x-rewritten-after"] = json!(true);
                }
                "tools/list" => {
                    if let Some(tools) = reply.value_mut()["tools"].as_array_mut() {
                        for tool in tools {
                            tool["description"] = json!("rewritten after");
                        }
                    }
                }
                _ => {}
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn filter(&self, _principal: &Principal) -> Option<Filter> {
        Some(Filter::new("no-add", |listing, _server, name| {
            !(listing == Listing::Tools && name == "fx__add")
        }))
    }
}

/// A gateway with `steps`, its HTTP face on a loopback port and a stdio face client.
struct Harness {
    gateway: Gateway,
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

async fn start(steps: Vec<Arc<dyn Step>>) -> Harness {
    let config = config();
    let gateway = Gateway::start_with_steps(&config, steps).await.unwrap();
    let router = face::http::router(gateway.clone(), &ListenSettings::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    Harness {
        gateway,
        url,
        _server: server,
    }
}

type Waiters = Arc<StdMutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A line client of the stdio face over an in-memory pipe.
struct PipeClient {
    write: tokio::sync::Mutex<tokio::io::WriteHalf<tokio::io::DuplexStream>>,
    waiters: Waiters,
    next: AtomicU64,
    modern: bool,
}

impl PipeClient {
    async fn connect(gateway: &Gateway, modern: bool) -> Arc<PipeClient> {
        let (client, face_end) = tokio::io::duplex(1 << 20);
        let (face_read, face_write) = tokio::io::split(face_end);
        tokio::spawn(face::stdio::serve(
            gateway.clone(),
            face_read,
            face_write,
            4 << 20,
            Some(true),
            None,
        ));
        let (read, write) = tokio::io::split(client);
        let waiters: Waiters = Arc::default();
        let write = tokio::sync::Mutex::new(write);
        let client = PipeClient {
            write,
            waiters: waiters.clone(),
            next: AtomicU64::new(1),
            modern,
        };
        let (answers_tx, mut answers_rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                match (
                    message.get("id").and_then(Value::as_u64),
                    message.get("method"),
                ) {
                    (Some(id), None) => {
                        if let Some(waiter) = waiters.lock().unwrap().remove(&id) {
                            let _ = waiter.send(message);
                        }
                    }
                    (_, Some(method)) if message.get("id").is_some() => {
                        let method = method.as_str().unwrap_or_default();
                        let _ = answers_tx.send(json!({ "jsonrpc": "2.0", "id": message["id"], "result": canned_answer(method) }));
                    }
                    _ => {}
                }
            }
        });
        // Server→client requests are answered from a second task through the same writer.
        let client = Arc::new(client);
        let answering = client.clone();
        tokio::spawn(async move {
            while let Some(answer) = answers_rx.recv().await {
                answering.send_line(&answer).await;
            }
        });
        if !modern {
            let init = client
                .request_raw(
                    "initialize",
                    json!({ "protocolVersion": LEGACY, "capabilities": client_capabilities(), "clientInfo": { "name": "pipeline-test", "version": "0" } }),
                )
                .await;
            assert!(init.get("result").is_some(), "{init}");
            client
                .send_line(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
                .await;
        }
        client
    }

    async fn send_line(&self, message: &Value) {
        let mut bytes = serde_json::to_vec(message).unwrap();
        bytes.push(b'\n');
        let mut write = self.write.lock().await;
        write.write_all(&bytes).await.unwrap();
        write.flush().await.unwrap();
    }

    async fn request_raw(&self, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(id, tx);
        self.send_line(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }))
            .await;
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("an answer in time")
            .expect("the reader is alive")
    }

    /// The response's `result` or `error`, as an `Ok`/`Err`.
    async fn request(&self, method: &str, params: Value) -> Result<Value, Value> {
        let params = if self.modern {
            with_modern_meta(params)
        } else {
            params
        };
        let answer = self.request_raw(method, params).await;
        match answer.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(answer["result"].clone()),
        }
    }
}

/// One client of each face and era, behind one interface.
enum AnyClient {
    Pipe(Arc<PipeClient>),
    Legacy(LegacyHttp),
    Modern(ModernHttp),
}

impl AnyClient {
    async fn request(&self, method: &str, params: Value) -> Result<Value, Value> {
        match self {
            AnyClient::Pipe(client) => client.request(method, params).await,
            AnyClient::Legacy(client) => client.request(method, params).await.outcome,
            AnyClient::Modern(client) => client.request(method, params).await.outcome,
        }
    }
}

async fn clients(harness: &Harness) -> Vec<(&'static str, AnyClient)> {
    vec![
        (
            "stdio legacy",
            AnyClient::Pipe(PipeClient::connect(&harness.gateway, false).await),
        ),
        (
            "stdio modern",
            AnyClient::Pipe(PipeClient::connect(&harness.gateway, true).await),
        ),
        (
            "http legacy",
            AnyClient::Legacy(LegacyHttp::connect(&harness.url).await.unwrap()),
        ),
        (
            "http modern",
            AnyClient::Modern(ModernHttp::new(&harness.url)),
        ),
    ]
}

/// Every method that reaches an upstream or reveals the catalog, with its params and the
/// target the pipeline must resolve it to.
fn requests() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("tools/list", json!({}), "list:tools"),
        ("prompts/list", json!({}), "list:prompts"),
        ("resources/list", json!({}), "list:resources"),
        (
            "resources/templates/list",
            json!({}),
            "list:resourceTemplates",
        ),
        (
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "hi" } }),
            "fx:echo",
        ),
        (
            "tools/call",
            json!({ "name": "switchboard__call", "arguments": { "server": "fx", "tool": "echo", "arguments": { "text": "via meta" } } }),
            "meta:call",
        ),
        (
            "prompts/get",
            json!({ "name": "fx__test_simple_prompt" }),
            "fx:test_simple_prompt",
        ),
        (
            "resources/read",
            json!({ "uri": "switchboard://fx/test://static-text" }),
            "fx:test://static-text",
        ),
        (
            "completion/complete",
            json!({ "ref": { "type": "ref/prompt", "name": "fx__test_prompt_with_arguments" }, "argument": { "name": "arg1", "value": "par" } }),
            "fx:test_prompt_with_arguments",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_step_sees_every_method_on_both_faces_and_eras() {
    let recorder = Arc::new(Recorder::default());
    let harness = start(vec![recorder.clone()]).await;
    for (label, client) in clients(&harness).await {
        for (method, params, target) in requests() {
            recorder.seen.lock().unwrap().clear();
            let outcome = client.request(method, params.clone()).await;
            assert!(outcome.is_ok(), "{label} {method}: {outcome:?}");
            let seen = recorder.seen.lock().unwrap().clone();
            assert!(
                seen.iter()
                    .any(|s| s.method == method && s.target == target),
                "{label} {method}: the step saw {seen:?}"
            );
            let face = if label.starts_with("stdio") {
                "stdio"
            } else {
                "http"
            };
            let era = if label.ends_with("modern") {
                "Modern"
            } else {
                "Legacy"
            };
            assert!(
                seen.iter().all(|s| s.face == face && s.era == era),
                "{label}: {seen:?}"
            );
            if target == "meta:call" {
                // The meta-tool's inner call runs the pipeline again, as the real tool.
                assert!(
                    seen.iter().any(|s| s.target == "fx:echo"),
                    "{label}: {seen:?}"
                );
            }
        }
    }
    harness.gateway.shutdown().await;
}

async fn fixture_calls(client: &AnyClient) -> u64 {
    let stats = client
        .request(
            "tools/call",
            json!({ "name": "fx__stats", "arguments": {} }),
        )
        .await
        .expect("stats is allowed");
    stats["structuredContent"]["calls"]
        .as_u64()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denying_step_stops_every_method_before_the_upstream() {
    let harness = start(vec![Arc::new(Denier)]).await;
    let mut shapes = Vec::new();
    for (label, client) in clients(&harness).await {
        let before = fixture_calls(&client).await;
        for (method, params, _) in requests() {
            let error = client.request(method, params).await.expect_err("denied");
            assert_eq!(error["code"], -31007, "{label} {method}: {error}");
            assert_eq!(error["data"]["step"], "denier", "{label} {method}: {error}");
            shapes.push(error);
        }
        // Only the two stats calls reached the fixture: nothing denied got through.
        let after = fixture_calls(&client).await;
        assert_eq!(
            after,
            before + 1,
            "{label}: denied calls reached the upstream"
        );
    }
    assert!(
        shapes.windows(2).all(|pair| pair[0] == pair[1]),
        "one error shape everywhere: {shapes:?}"
    );
    harness.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_steps_change_what_upstream_and_client_see() {
    let harness = start(vec![Arc::new(Rewriter)]).await;
    for (label, client) in clients(&harness).await {
        let result = client
            .request(
                "tools/call",
                json!({ "name": "fx__echo", "arguments": { "text": "original" } }),
            )
            .await
            .unwrap();
        // The upstream echoed what the before-step wrote; the after-step marked the result.
        assert_eq!(
            result["structuredContent"]["text"], "rewritten before",
            "{label}: {result}"
        );
        assert_eq!(result["x-rewritten-after"], true, "{label}: {result}");

        let listed = client.request("tools/list", json!({})).await.unwrap();
        let tools = listed["tools"].as_array().unwrap();
        assert!(tools.len() > 5, "{label}: {listed}");
        assert!(
            tools.iter().all(|t| t["description"] == "rewritten after"),
            "{label}: {listed}"
        );
        // Hidden means nonexistent: not listed, and not callable.
        assert!(
            tools.iter().all(|t| t["name"] != "fx__add"),
            "{label}: fx__add is listed"
        );
        let error = client
            .request(
                "tools/call",
                json!({ "name": "fx__add", "arguments": { "a": 1, "b": 2 } }),
            )
            .await
            .expect_err("hidden");
        assert_eq!(
            error["message"], "Unknown tool: fx__add",
            "{label}: {error}"
        );
    }
    harness.gateway.shutdown().await;
}
