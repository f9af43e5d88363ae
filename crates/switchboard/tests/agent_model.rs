//! The router agent's real-model tier: Gemma 3 270M (base) served by node-llama-cpp
//! through `interop/llm_server.mjs`, an OpenAI-compatible server whose tool calls are
//! grammar-constrained, in front of the real gateway and fixture. It proves the round
//! trip — real tokens and latency, `tool_calls` JSON the gateway parses, repairs or
//! rejects, a real MCP server called, the model's answer after the results — not
//! routing quality: a wrong tool choice is not a failure, a well-formed reply the
//! gateway mishandles is. The tool each query got is printed (routing figures).
//!
//! Installed by `scripts/install-interop` (`llm/` in the tools directory); gated like the
//! interop tier: skipped with a message when missing, a failure with
//! `SWITCHBOARD_INTEROP=1`, never run with `SWITCHBOARD_INTEROP=0`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{binary_beside, spawn_gateway_http};
use tokio::io::{AsyncBufReadExt, BufReader};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

struct Tools {
    node: PathBuf,
    modules: PathBuf,
    model: PathBuf,
}

fn locate() -> Option<Tools> {
    let setting = std::env::var("SWITCHBOARD_INTEROP").unwrap_or_default();
    if setting == "0" {
        eprintln!("skipping the real-model tier: SWITCHBOARD_INTEROP=0");
        return None;
    }
    let dir = std::env::var_os("SWITCHBOARD_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/switchboard/tools")
        });
    let found = (|| -> Result<Tools, String> {
        let env_file = dir.join("tools.env");
        let text = std::fs::read_to_string(&env_file)
            .map_err(|error| format!("cannot read {}: {error}", env_file.display()))?;
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let path = |key: &str, fallback: PathBuf| -> Result<PathBuf, String> {
            let path = vars.get(key).map_or(fallback, PathBuf::from);
            if path.exists() {
                Ok(path)
            } else {
                Err(format!("{key}: {} does not exist", path.display()))
            }
        };
        Ok(Tools {
            node: path("INTEROP_NODE", PathBuf::from("/nonexistent"))?,
            modules: path("INTEROP_LLM_MODULES", dir.join("llm/node_modules"))?,
            model: path(
                "INTEROP_LLM_MODEL",
                dir.join("llm/gemma-3-270m-q4_k_m.gguf"),
            )?,
        })
    })();
    match found {
        Ok(tools) => Some(tools),
        Err(reason) if setting == "1" => {
            panic!("SWITCHBOARD_INTEROP=1 but {reason}; run scripts/install-interop")
        }
        Err(reason) => {
            eprintln!("skipping the real-model tier: {reason}; run scripts/install-interop");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_agent_round_trip_with_a_real_small_model() {
    let Some(tools) = locate() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/llm_server.mjs");
    let mut server = tokio::process::Command::new(&tools.node)
        .arg(&script)
        .arg("--modules")
        .arg(&tools.modules)
        .arg("--model")
        .arg(&tools.model)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let base_url = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("the model server exited before listening");
    })
    .await
    .expect("the model server starts within 2 minutes");
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let config = format!(
        "[agent]\nbase_url = {base_url:?}\nmodel = \"gemma-3-270m\"\nrequest_timeout_ms = 120000\n\
         retries = 0\nmax_steps = 2\nmax_tools = 3\ntop_k = 3\n\n\
         [servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture.display().to_string()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let url = format!("{}/query", gateway.url.trim_end_matches("/mcp"));
    let client = reqwest::Client::new();
    let cases = [
        ("add the numbers 2 and 3", "add"),
        ("echo the text hello", "echo"),
        ("add 7 and 8 together", "add"),
    ];
    let mut right = 0;
    for (query, expected) in cases {
        let started = Instant::now();
        let response = client
            .post(&url)
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "{query}: {answer}");
        // The grammar made the first turn a tool call: the gateway must have parsed it
        // and run it through the pipeline.
        let calls = answer["tool_calls"].as_array().expect("a trace");
        assert!(!calls.is_empty(), "{query}: no tool call parsed: {answer}");
        for call in calls {
            // The grammar names only offered tools with their properties: the call
            // must reach the tool (whatever the tool then makes of the model's values).
            let outcome = call["outcome"].as_str().unwrap();
            assert!(
                !matches!(outcome, "unknown_tool" | "rejected"),
                "{query}: a well-formed call mishandled: {call}"
            );
            assert_eq!(call["server"], "fx", "{call}");
        }
        assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert!(answer["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert!(
            answer["answer"].is_string() || answer["unsynthesized"].is_object(),
            "{answer}"
        );
        let chosen = calls[0]["tool"].as_str().unwrap_or_default().to_owned();
        if chosen == expected {
            right += 1;
        }
        eprintln!(
            "real model: {query:?} → {chosen} ({}), {} ms total, {} ms in the model, {} + {} tokens, answer {}",
            calls[0]["outcome"],
            elapsed.as_millis(),
            answer["usage"]["llm_ms"],
            answer["usage"]["prompt_tokens"],
            answer["usage"]["completion_tokens"],
            answer["answer"]
        );
    }
    eprintln!(
        "real model routing: {right} of {} chose the expected tool",
        cases.len()
    );
    drop(gateway);
    let _ = server.kill().await;
}
