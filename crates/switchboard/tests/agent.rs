//! The router agent end to end: the real gateway binary, the real fixture server, and a
//! scripted OpenAI-compatible model (`switchboard_testkit::llm`) whose replies each test
//! writes. Covers no tool, one tool, two tools in parallel (overlap read from the trace's
//! start offsets and durations), a chain of two steps, malformed tool-call JSON (one
//! repair retry, then a clear error), the model down / timing out / failing, a tool
//! error, a call the pipeline denies, argument repair (renamed, misspelled, positional,
//! coerced, unrepairable), a dormant server hot-plugged and back to dormant, chat memory
//! across turns and isolation between principals, `switchboard__ask`, `switchboard ask`,
//! the metrics, and the clear error without `[agent]`.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_testkit::llm::{Scripted, ScriptedLlm, calls, raw_calls, text};
use switchboard_testkit::{ModernHttp, Proc, binary_beside, children_of, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ALICE_KEY: &str = "alice-key-0123456789";
const BOB_KEY: &str = "bob-key-0123456789";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn server(name: &str, extra: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = [\"stdio\"]\n{extra}\n",
        fixture()
    )
}

/// A gateway with the fixture as `fx` and the scripted model behind `[agent]`, which
/// offers every tool (the fixture has more than the default `max_tools`) unless
/// `agent_extra` says otherwise.
async fn gateway_with(llm: &ScriptedLlm, agent_extra: &str, rest: &str) -> Proc {
    let agent_extra = if agent_extra.contains("max_tools") {
        agent_extra.to_owned()
    } else {
        format!("max_tools = 512\n{agent_extra}")
    };
    let config = format!(
        "{}\n{}\n{rest}",
        llm.agent_section(&agent_extra),
        server("fx", "")
    );
    spawn_gateway_http(GATEWAY, &config).await.unwrap()
}

fn base(gateway: &Proc) -> String {
    gateway.url.trim_end_matches("/mcp").to_owned()
}

async fn send(
    gateway: &Proc,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", base(gateway)));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn query(gateway: &Proc, body: Value) -> (u16, Value) {
    send(gateway, reqwest::Method::POST, "/query", Some(body), None).await
}

async fn ask_ok(gateway: &Proc, text: &str) -> Value {
    let (status, answer) = query(gateway, json!({ "query": text })).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The messages of the model request `n`.
fn messages(llm: &ScriptedLlm, n: usize) -> Vec<Value> {
    llm.requests()[n]["messages"].as_array().unwrap().clone()
}

fn tool_messages(llm: &ScriptedLlm, n: usize) -> Vec<String> {
    messages(llm, n)
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_agent_section_query_names_the_section() {
    let gateway = spawn_gateway_http(GATEWAY, &server("fx", ""))
        .await
        .unwrap();
    let (status, body) = query(&gateway, json!({ "query": "add 2 and 3" })).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "agent_not_configured");
    assert_eq!(body["error"]["section"], "agent");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("[agent]") && message.contains("base_url"),
        "{message}"
    );
    let names = ModernHttp::new(&gateway.url)
        .request("tools/list", json!({}))
        .await
        .tool_names();
    assert!(!names.contains(&"switchboard__ask".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_a_tool_and_offers_the_view() {
    let llm = ScriptedLlm::start(vec![text("Hello there.")]).await;
    let gateway = gateway_with(&llm, "", "").await;
    let answer = ask_ok(&gateway, "say hello").await;
    assert_eq!(answer["answer"], "Hello there.");
    assert_eq!(answer["tool_calls"], json!([]));
    assert_eq!(answer["servers_started"], json!([]));
    assert_eq!(answer["usage"]["prompt_tokens"], 10);
    assert_eq!(answer["usage"]["llm_requests"], 1);
    assert!(answer["conversation_id"].as_str().is_some());
    let request = &llm.requests()[0];
    assert_eq!(request["model"], "scripted");
    let offered: Vec<&str> = request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"fx__add") && offered.contains(&"fx__echo"));
    assert!(!offered.iter().any(|name| name.starts_with("switchboard__")));
    let add = request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["function"]["name"] == "fx__add")
        .unwrap();
    assert_eq!(add["function"]["parameters"]["required"], json!(["a", "b"]));
    let last = messages(&llm, 0).last().cloned().unwrap();
    assert_eq!(last, json!({ "role": "user", "content": "say hello" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_view_is_cut_to_the_top_k_by_tool_search() {
    let llm = ScriptedLlm::start(vec![text("ok")]).await;
    let gateway = gateway_with(&llm, "max_tools = 4\ntop_k = 2", "").await;
    ask_ok(&gateway, "add two numbers together").await;
    let offered: Vec<String> = llm.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(!offered.is_empty() && offered.len() <= 2, "{offered:?}");
    assert_eq!(offered[0], "fx__add");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tool_call_runs_through_the_gateway() {
    let llm = ScriptedLlm::start(vec![
        calls(&[("fx__add", json!({ "a": 2, "b": 3 }))]),
        text("2 + 3 = 5"),
    ])
    .await;
    let gateway = gateway_with(&llm, "", "").await;
    let answer = ask_ok(&gateway, "add 2 and 3").await;
    assert_eq!(answer["answer"], "2 + 3 = 5");
    let call = &answer["tool_calls"][0];
    assert_eq!(call["server"], "fx");
    assert_eq!(call["tool"], "add");
    assert_eq!(call["arguments"], json!({ "a": 2, "b": 3 }));
    assert_eq!(call["outcome"], "ok");
    assert!(call.get("repaired_from").is_none());
    assert!(call["duration_ms"].is_u64());
    assert_eq!(tool_messages(&llm, 1), ["5"]);
    // The assistant turn that asked for the call precedes its result.
    let second = messages(&llm, 1);
    let assistant = &second[second.len() - 2];
    assert_eq!(assistant["tool_calls"][0]["function"]["name"], "fx__add");
    assert_eq!(second.last().unwrap()["tool_call_id"], "call_0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_calls_run_concurrently() {
    let llm = ScriptedLlm::start(vec![
        calls(&[
            ("fx__sleep", json!({ "ms": 700 })),
            ("fy__sleep", json!({ "ms": 700 })),
        ]),
        text("both slept"),
    ])
    .await;
    let gateway = gateway_with(&llm, "", &server("fy", "")).await;
    let answer = ask_ok(&gateway, "sleep twice").await;
    let calls = answer["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    let span = |call: &Value| {
        let start = call["started_ms"].as_u64().unwrap();
        (start, start + call["duration_ms"].as_u64().unwrap())
    };
    let (a, b) = (span(&calls[0]), span(&calls[1]));
    for call in calls {
        assert_eq!(call["outcome"], "ok");
        assert!(call["duration_ms"].as_u64().unwrap() >= 700);
    }
    // Each started before the other ended: the two sleeps overlapped.
    assert!(a.0 < b.1 && b.0 < a.1, "no overlap: {a:?} {b:?}");
    assert_eq!(tool_messages(&llm, 1), ["slept 700 ms", "slept 700 ms"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_two_steps_feeds_each_result_to_the_next_turn() {
    let llm = ScriptedLlm::start(vec![
        calls(&[("fx__add", json!({ "a": 20, "b": 22 }))]),
        calls(&[("fx__echo", json!({ "text": "the sum is 42" }))]),
        text("Saved: the sum is 42"),
    ])
    .await;
    let gateway = gateway_with(&llm, "", "").await;
    let answer = ask_ok(&gateway, "add then echo").await;
    assert_eq!(answer["answer"], "Saved: the sum is 42");
    let tools: Vec<&str> = answer["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["add", "echo"]);
    assert_eq!(llm.requests().len(), 3);
    assert_eq!(tool_messages(&llm, 1), ["42"]);
    assert_eq!(tool_messages(&llm, 2), ["42", "the sum is 42"]);
    assert_eq!(answer["usage"]["llm_requests"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_tool_calls_get_one_repair_retry() {
    let broken = || raw_calls(&[("fx__add", "{\"a\": 1, \"b\":")]);
    // Repaired on the retry.
    let llm = ScriptedLlm::start(vec![
        broken(),
        calls(&[("fx__add", json!({ "a": 1, "b": 1 }))]),
        text("2"),
    ])
    .await;
    let gateway = gateway_with(&llm, "", "").await;
    let answer = ask_ok(&gateway, "add 1 and 1").await;
    assert_eq!(answer["answer"], "2");
    let retry = messages(&llm, 1);
    let note = retry.last().unwrap();
    assert_eq!(note["role"], "user");
    assert!(
        note["content"].as_str().unwrap().contains("malformed"),
        "{note}"
    );
    // Broken twice: a clear failure.
    llm.push(vec![broken(), broken()]);
    let (status, body) = query(&gateway, json!({ "query": "add again" })).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "malformed_tool_calls");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failures_are_clear_errors() {
    // Down: nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = format!(
        "[agent]\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmodel = \"m\"\nretries = 1\nretry_backoff_ms = 10\n\n{}",
        server("fx", "")
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let (status, body) = query(&gateway, json!({ "query": "hi" })).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (502, &json!("llm_unreachable")),
        "{body}"
    );
    drop(gateway);

    // Too slow, then a 500 that retries cannot cure, then one a retry does.
    let llm = ScriptedLlm::start(vec![Scripted::Hang]).await;
    let gateway = gateway_with(
        &llm,
        "request_timeout_ms = 300\nretries = 1\nretry_backoff_ms = 10",
        "",
    )
    .await;
    let (status, body) = query(&gateway, json!({ "query": "hi" })).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (504, &json!("llm_timeout")),
        "{body}"
    );
    llm.push(vec![
        Scripted::Status(500, "boom".into()),
        Scripted::Status(500, "boom".into()),
    ]);
    let (status, body) = query(&gateway, json!({ "query": "hi" })).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (502, &json!("llm_error")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("500"));
    llm.push(vec![Scripted::Status(503, "busy".into()), text("fine")]);
    let answer = ask_ok(&gateway, "hi").await;
    assert_eq!(answer["answer"], "fine");
    // A failure after tools ran: their results come back, marked unsynthesized.
    llm.push(vec![
        calls(&[("fx__echo", json!({ "text": "raw result" }))]),
        Scripted::Status(500, "x".into()),
        Scripted::Status(500, "x".into()),
    ]);
    let answer = ask_ok(&gateway, "echo").await;
    assert_eq!(answer["answer"], Value::Null);
    assert_eq!(
        answer["unsynthesized"]["results"][0]["result"],
        "raw result"
    );
    assert!(
        answer["unsynthesized"]["reason"]
            .as_str()
            .unwrap()
            .contains("500")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_errors_and_denials_go_back_to_the_model() {
    let llm = ScriptedLlm::start(vec![
        calls(&[
            ("fx__test_error_handling", json!({})),
            ("fx__echo", json!({ "text": "secret plans" })),
        ]),
        text("could not"),
    ])
    .await;
    let rule = "[access]\n\n[[access.rules]]\nwhen = \"tool == 'fx__echo' && args.text.startsWith('secret')\"\nmessage = \"no secrets through echo\"\n";
    let gateway = gateway_with(&llm, "", rule).await;
    let answer = ask_ok(&gateway, "try both").await;
    assert_eq!(answer["answer"], "could not");
    assert_eq!(answer["tool_calls"][0]["outcome"], "tool_error");
    assert_eq!(answer["tool_calls"][1]["outcome"], "denied");
    let results = tool_messages(&llm, 1);
    assert!(results[0].starts_with("error:"), "{results:?}");
    assert!(
        results[1].contains("no secrets through echo"),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_repaired_against_the_schema() {
    let llm = ScriptedLlm::start(vec![
        calls(&[
            ("FX__ADD", json!({ "A": "2", "B": 3 })),
            ("fx__echo", json!({ "txet": "hi" })),
            ("fx__add", json!({ "x": 4, "y": 5 })),
            ("fx__add", json!({ "a": 1 })),
        ]),
        text("done"),
    ])
    .await;
    let gateway = gateway_with(&llm, "", "").await;
    let answer = ask_ok(&gateway, "repair me").await;
    let calls = answer["tool_calls"].as_array().unwrap();
    let kinds = |call: &Value| -> Vec<String> {
        call["repaired_from"]["repairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    // Renamed tool, renamed properties, coerced string.
    assert_eq!(calls[0]["repaired_from"]["tool"], "FX__ADD");
    assert_eq!(
        calls[0]["repaired_from"]["arguments"],
        json!({ "A": "2", "B": 3 })
    );
    assert_eq!(calls[0]["arguments"], json!({ "a": 2, "b": 3 }));
    assert_eq!(kinds(&calls[0]), ["renamed", "renamed", "coerced"]);
    assert_eq!(calls[0]["outcome"], "ok");
    assert_eq!(kinds(&calls[1]), ["misspelled"]);
    assert_eq!(calls[1]["arguments"], json!({ "text": "hi" }));
    assert_eq!(kinds(&calls[2]), ["positional", "positional"]);
    assert_eq!(calls[2]["arguments"], json!({ "a": 4, "b": 5 }));
    assert_eq!(calls[3]["outcome"], "invalid_arguments");
    let results = tool_messages(&llm, 1);
    assert_eq!(&results[..3], ["5", "hi", "9"]);
    assert!(
        results[3].contains("missing required property `b`"),
        "{results:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", base(&gateway)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_agent_repairs_total{kind=\"positional\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("switchboard_agent_repairs_total{kind=\"tool_name\"} 1"));
    assert!(metrics.contains("switchboard_agent_queries_total{outcome=\"answered\"} 1"));
    assert!(metrics.contains("switchboard_agent_llm_tokens_total{kind=\"prompt\"} 20"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dormant_server_is_started_for_a_call_and_goes_dormant_again() {
    let state = tempfile::tempdir().unwrap();
    let llm = ScriptedLlm::start(vec![
        calls(&[("sleepy__echo", json!({ "text": "wake" }))]),
        text("woke it"),
    ])
    .await;
    let config = format!(
        "[gateway]\nstate_dir = {:?}\n\n{}\n{}",
        state.path().display().to_string(),
        llm.agent_section("max_tools = 512"),
        server("sleepy", "lazy = true\nidle_timeout_ms = 600")
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    assert!(children_of(gateway.pid()).is_empty(), "dormant at start");
    let answer = ask_ok(&gateway, "wake the sleepy one").await;
    let offered: Vec<String> = llm.requests()[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        offered.contains(&"sleepy__echo".to_owned()),
        "offered while dormant"
    );
    assert_eq!(answer["servers_started"], json!(["sleepy"]));
    assert_eq!(answer["tool_calls"][0]["outcome"], "ok");
    assert_eq!(children_of(gateway.pid()).len(), 1, "started by the call");
    let mut dormant = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if children_of(gateway.pid()).is_empty() {
            dormant = true;
            break;
        }
    }
    assert!(dormant, "stopped after its idle timeout");
    // Asked again, it is started again.
    llm.push(vec![
        calls(&[("sleepy__echo", json!({ "text": "again" }))]),
        text("again"),
    ]);
    let answer = ask_ok(&gateway, "wake it again").await;
    assert_eq!(answer["servers_started"], json!(["sleepy"]));
    let metrics = reqwest::get(format!("{}/metrics", base(&gateway)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("switchboard_agent_hot_plugs_total{server=\"sleepy\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_carries_a_conversation_and_stays_with_its_principal() {
    let llm = ScriptedLlm::start(vec![
        text("first answer"),
        text("second answer"),
        text("bob's answer"),
    ])
    .await;
    let access = format!(
        "[access]\n\n[[access.keys]]\nid = \"alice\"\nkey = \"{ALICE_KEY}\"\n\n[[access.keys]]\nid = \"bob\"\nkey = \"{BOB_KEY}\"\n"
    );
    let gateway = gateway_with(&llm, "memory_messages = 50", &access).await;
    let post = |key: &'static str, text: &'static str| {
        let gateway = &gateway;
        async move {
            send(
                gateway,
                reqwest::Method::POST,
                "/query",
                Some(json!({ "query": text, "conversation_id": "c1" })),
                Some(key),
            )
            .await
        }
    };
    // Without a credential: 401, like /mcp.
    let (status, _) = query(&gateway, json!({ "query": "hi" })).await;
    assert_eq!(status, 401);
    let (status, first) = post(ALICE_KEY, "my name is Alice").await;
    assert_eq!(
        (status, first["conversation_id"].as_str()),
        (200, Some("c1"))
    );
    let (status, _) = post(ALICE_KEY, "what is my name?").await;
    assert_eq!(status, 200);
    let turn: Vec<Value> = messages(&llm, 1)
        .into_iter()
        .filter(|m| m["role"] != "system")
        .collect();
    assert_eq!(
        turn,
        [
            json!({ "role": "user", "content": "my name is Alice" }),
            json!({ "role": "assistant", "content": "first answer" }),
            json!({ "role": "user", "content": "what is my name?" }),
        ]
    );
    // Bob's "c1" is his own: nothing of Alice's reaches the model.
    let (status, _) = post(BOB_KEY, "what is her name?").await;
    assert_eq!(status, 200);
    let bobs: Vec<Value> = messages(&llm, 2)
        .into_iter()
        .filter(|m| m["role"] != "system")
        .collect();
    assert_eq!(
        bobs,
        [json!({ "role": "user", "content": "what is her name?" })]
    );
    let get = |key: &'static str, id: &'static str| {
        let gateway = &gateway;
        async move {
            send(
                gateway,
                reqwest::Method::GET,
                &format!("/conversations/{id}"),
                None,
                Some(key),
            )
            .await
        }
    };
    let (status, alices) = get(ALICE_KEY, "c1").await;
    assert_eq!(status, 200);
    assert_eq!(alices["messages"].as_array().unwrap().len(), 4);
    assert_eq!(alices["messages"][3]["content"], "second answer");
    // Deleting: Bob removes his own; Alice's stays; a missing id and another's look alike.
    let delete = |key: &'static str| {
        let gateway = &gateway;
        async move {
            send(
                gateway,
                reqwest::Method::DELETE,
                "/conversations/c1",
                None,
                Some(key),
            )
            .await
        }
    };
    assert_eq!(delete(BOB_KEY).await.0, 200);
    let (missing_status, missing) = get(BOB_KEY, "c1").await;
    let (other_status, other) = get(BOB_KEY, "nope").await;
    assert_eq!(missing_status, 404);
    assert_eq!(other_status, 404);
    assert_eq!(missing["error"]["code"], other["error"]["code"]);
    assert_eq!(delete(BOB_KEY).await.0, 404);
    assert_eq!(get(ALICE_KEY, "c1").await.0, 200);
    assert_eq!(delete(ALICE_KEY).await.0, 200);
    assert_eq!(get(ALICE_KEY, "c1").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_is_one_mcp_tool_too() {
    let llm = ScriptedLlm::start(vec![
        calls(&[("fx__add", json!({ "a": 1, "b": 2 }))]),
        text("three"),
    ])
    .await;
    let gateway = gateway_with(&llm, "", "").await;
    let client = ModernHttp::new(&gateway.url);
    let names = client.request("tools/list", json!({})).await.tool_names();
    assert!(names.contains(&"switchboard__ask".to_owned()), "{names:?}");
    let result = client
        .request(
            "tools/call",
            json!({ "name": "switchboard__ask", "arguments": { "query": "add 1 and 2" } }),
        )
        .await;
    let answer = &result.result()["structuredContent"];
    assert_eq!(answer["answer"], "three", "{answer}");
    assert_eq!(answer["tool_calls"][0]["tool"], "add");
    // The agent's own view has no meta-tools: it cannot call itself.
    let offered = llm.requests()[0]["tools"].to_string();
    assert!(!offered.contains("switchboard__ask"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_ask_answers_on_the_command_line() {
    let llm = ScriptedLlm::start(vec![
        calls(&[("fx__echo", json!({ "text": "from the cli" }))]),
        text("The fixture said: from the cli"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(
        &path,
        format!("{}\n{}", llm.agent_section(""), server("fx", "")),
    )
    .unwrap();
    let output = tokio::process::Command::new(GATEWAY)
        .args(["ask", "echo something", "--json", "--config"])
        .arg(&path)
        .env("SWITCHBOARD_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["answer"], "The fixture said: from the cli");
    assert_eq!(answer["tool_calls"][0]["outcome"], "ok");
}
