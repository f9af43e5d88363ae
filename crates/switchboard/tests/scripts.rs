//! Orchestration scripts (`switchboard__run`) and batches (`switchboard__batch`) end to
//! end, through the real gateway binary and the fixture server: a loop of 50 calls, a
//! parallel fan-out that overlaps, every `[scripts]` limit giving a clear error with no
//! inner call after it (counted by the fixture's `stats`), an inner call denied by an
//! allow-list (two tenants), a script that tries to reach the file system or the network
//! (nothing there to reach), errors that name their line, and a batch with a failing call.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, Proc, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const ACME_KEY: &str = "acme-key-0123456789";
const GLOBEX_KEY: &str = "globex-key-0123456789";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

fn server(name: &str) -> String {
    format!(
        "[servers.{name}]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture()
    )
}

/// The gateway with `run` and `batch` offered to every client, `scripts` as the
/// `[scripts]` section's body, and one fixture server `fx`.
async fn gateway(scripts: &str) -> Proc {
    let config = format!(
        "[gateway]\nmeta_tools = [\"run\", \"batch\"]\nmeta_tools_by_default = true\n\n[scripts]\n{scripts}\n\n{}",
        server("fx")
    );
    spawn_gateway_http(GATEWAY, &config).await.unwrap()
}

async fn tool(client: &ModernHttp, name: &str, arguments: Value) -> Value {
    client
        .request(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
        .outcome
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

async fn run(client: &ModernHttp, script: &str) -> Value {
    tool(client, "switchboard__run", json!({ "script": script })).await
}

/// Tool calls the fixture behind `prefix` received so far, this `stats` call included.
async fn fixture_calls(client: &ModernHttp, prefix: &str) -> u64 {
    let stats = tool(client, &format!("{prefix}__stats"), json!({})).await;
    stats["structuredContent"]["calls"].as_u64().unwrap()
}

/// Calls the fixture received since `before` (a [`fixture_calls`] count), not counting
/// the `stats` call that asks.
async fn calls_since(client: &ModernHttp, prefix: &str, before: u64) -> u64 {
    fixture_calls(client, prefix).await - before - 1
}

/// A script's failure: `structuredContent.error`, after checking it is a tool error.
fn error_of(result: &Value) -> &Value {
    assert_eq!(result["isError"], true, "{result}");
    &result["structuredContent"]["error"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_of_fifty_calls_runs_through_the_pipeline() {
    let gateway = gateway("").await;
    let client = ModernHttp::new(&gateway.url);
    let names: Vec<String> = client.request("tools/list", json!({})).await.tool_names();
    assert!(
        names.contains(&"switchboard__run".to_owned())
            && names.contains(&"switchboard__batch".to_owned()),
        "{names:?}"
    );
    let before = fixture_calls(&client, "fx").await;
    let result = run(
        &client,
        r#"
        let total = 0;
        for i in 0..50 {
            let answer = call("fx__add", #{ a: i, b: 1 });
            total += parse_int(text(answer));
        }
        if total > 1000 { print(`big: ${total}`); }
        #{ total: total, echoed: call("fx__echo", #{ text: "done" }).structuredContent.text }
        "#,
    )
    .await;
    assert_ne!(result["isError"], true, "{result}");
    let structured = &result["structuredContent"];
    assert_eq!(
        structured["result"],
        json!({ "total": 1275, "echoed": "done" })
    );
    assert_eq!(structured["calls"], 51);
    assert_eq!(structured["log"], json!(["big: 1275"]));
    assert_eq!(
        serde_json::from_str::<Value>(result["content"][0]["text"].as_str().unwrap()).unwrap(),
        structured["result"]
    );
    assert_eq!(calls_since(&client, "fx", before).await, 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_calls_overlap() {
    let gateway = gateway("max_parallel = 8").await;
    let client = ModernHttp::new(&gateway.url);
    const SLEEP_MS: u64 = 400;
    const FAN_OUT: u64 = 5;
    let started = Instant::now();
    let result = run(
        &client,
        &format!(
            r#"
            let calls = [];
            for i in 0..{FAN_OUT} {{ calls.push(["fx__sleep", #{{ ms: {SLEEP_MS} }}]); }}
            let answers = parallel(calls);
            answers.map(|a| text(a))
            "#
        ),
    )
    .await;
    let elapsed = started.elapsed();
    assert_ne!(result["isError"], true, "{result}");
    assert_eq!(
        result["structuredContent"]["result"],
        json!(vec![format!("slept {SLEEP_MS} ms"); FAN_OUT as usize])
    );
    assert_eq!(result["structuredContent"]["calls"], FAN_OUT);
    // One after another they would take the sum of their sleeps.
    assert!(
        elapsed < Duration::from_millis(SLEEP_MS * FAN_OUT),
        "{elapsed:?} is not less than the sum of the sleeps"
    );
    // The map form and a failure by position: all are answered, the first failure thrown.
    let result = run(
        &client,
        r#"
        let caught = "not thrown";
        try {
            parallel([#{ name: "fx__echo", args: #{ text: "a" } }, ["fx__nope", #{}], ["fx__echo", #{ text: "b" }]]);
        } catch (e) { caught = e; }
        caught
        "#,
    )
    .await;
    let caught = &result["structuredContent"]["result"];
    assert_eq!(caught["index"], 1, "{result}");
    assert!(
        caught["message"]
            .as_str()
            .unwrap()
            .contains("parallel[1] (fx__nope)"),
        "{caught}"
    );
    assert_eq!(result["structuredContent"]["calls"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_limit_ends_the_script_and_no_call_follows() {
    let gateway = gateway("max_calls = 5").await;
    let client = ModernHttp::new(&gateway.url);
    let before = fixture_calls(&client, "fx").await;
    // Caught or not, the limit ends the script.
    let result = run(
        &client,
        "let n = 0;\nfor i in 0..20 {\n  try { call(\"fx__echo\", #{ text: `${i}` }); n += 1; } catch (e) { n += 100; }\n}\nn",
    )
    .await;
    let error = error_of(&result);
    assert_eq!(error["kind"], "limit", "{result}");
    assert_eq!(error["limit"], "max_calls");
    assert_eq!(error["line"], 3);
    assert!(
        error["message"].as_str().unwrap().contains("at most 5"),
        "{error}"
    );
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("line 3"),
        "{result}"
    );
    assert_eq!(result["structuredContent"]["calls"], 5);
    assert_eq!(calls_since(&client, "fx", before).await, 5);

    // A parallel that would pass the limit makes none of its calls.
    let before = fixture_calls(&client, "fx").await;
    let calls: Vec<String> = (0..6)
        .map(|i| format!("[\"fx__echo\", #{{ text: \"{i}\" }}]"))
        .collect();
    let result = run(&client, &format!("parallel([{}])", calls.join(", "))).await;
    assert_eq!(error_of(&result)["limit"], "max_calls", "{result}");
    assert_eq!(calls_since(&client, "fx", before).await, 0);

    // A batch larger than the limit is refused whole.
    let before = fixture_calls(&client, "fx").await;
    let entries: Vec<Value> = (0..6)
        .map(|i| json!({ "name": "fx__echo", "arguments": { "text": i.to_string() } }))
        .collect();
    let refused = client
        .request(
            "tools/call",
            json!({ "name": "switchboard__batch", "arguments": { "calls": entries } }),
        )
        .await;
    let error = refused.outcome.expect_err("refused");
    assert_eq!(error["code"], -32602, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("max_calls"),
        "{error}"
    );
    assert_eq!(calls_since(&client, "fx", before).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_limit_ends_a_busy_loop_and_a_slow_call() {
    // Operations effectively unbounded: only the clock can end the loop.
    let gateway = gateway("timeout_ms = 700\nmax_operations = 1000000000000").await;
    let client = ModernHttp::new(&gateway.url);
    let started = Instant::now();
    let result = run(&client, "let x = 0;\nloop {\n  x += 1;\n}").await;
    let error = error_of(&result);
    assert_eq!(error["kind"], "limit", "{result}");
    assert_eq!(error["limit"], "timeout_ms");
    assert!(error["line"].as_u64().is_some(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the loop was stopped"
    );

    let before = fixture_calls(&client, "fx").await;
    let result = run(
        &client,
        "call(\"fx__sleep\", #{ ms: 20000 });\ncall(\"fx__echo\", #{ text: \"after\" });",
    )
    .await;
    let error = error_of(&result);
    assert_eq!(error["limit"], "timeout_ms", "{result}");
    assert_eq!(error["line"], 1);
    assert_eq!(result["structuredContent"]["calls"], 1);
    assert_eq!(calls_since(&client, "fx", before).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operation_size_depth_and_length_limits_end_the_script() {
    let gateway = gateway(
        "max_operations = 2000\nmax_calls = 10000\nmax_string_bytes = 1000\nmax_array_len = 100\nmax_map_len = 20\n\
         max_call_depth = 8\nmax_script_bytes = 2000\nmax_result_bytes = 500",
    )
    .await;
    let client = ModernHttp::new(&gateway.url);
    let before = fixture_calls(&client, "fx").await;
    let cases = [
        (
            "let n = 0;\nloop {\n  call(\"fx__echo\", #{ text: \"x\" });\n  n += 1;\n}",
            "max_operations",
        ),
        ("let s = \"ab\";\nloop { s += s; }", "max_string_bytes"),
        ("let a = [];\nloop { a.push(1); }", "max_array_len"),
        (
            "let m = #{};\nfor i in 0..100 { m[`k${i}`] = i; }\nm",
            "max_map_len",
        ),
        (
            "fn deeper(n) { deeper(n + 1) }\ndeeper(0)",
            "max_call_depth",
        ),
    ];
    let mut made = 0;
    for (script, limit) in cases {
        let result = run(&client, script).await;
        let error = error_of(&result);
        assert_eq!(error["kind"], "limit", "{script}: {result}");
        assert_eq!(error["limit"], limit, "{script}: {result}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains(&format!("scripts.{limit}")),
            "{error}"
        );
        made += result["structuredContent"]["calls"].as_u64().unwrap();
    }
    assert!(made > 0, "the loop called before the operation limit");
    assert_eq!(
        calls_since(&client, "fx", before).await,
        made,
        "no call after a limit"
    );

    let long = format!(
        "let x = 1;\n{}\ncall(\"fx__echo\", #{{ text: \"x\" }})",
        "// padding\n".repeat(200)
    );
    let result = run(&client, &long).await;
    assert_eq!(error_of(&result)["limit"], "max_script_bytes", "{result}");
    assert_eq!(result["structuredContent"]["calls"], 0);

    // An oversized result is a call error the script may catch.
    let result = run(
        &client,
        "let r = \"kept\";\ntry { call(\"fx__huge\", #{ bytes: 5000 }); } catch (e) { r = e.limit; }\nr",
    )
    .await;
    assert_eq!(
        result["structuredContent"]["result"], "max_result_bytes",
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_beyond_max_running_are_refused_while_one_runs() {
    let gateway = gateway("max_running = 1").await;
    let client = ModernHttp::new(&gateway.url);
    let busy = ModernHttp::new(&gateway.url);
    let first =
        tokio::spawn(
            async move { run(&busy, "call(\"fx__sleep\", #{ ms: 3000 }); \"first\"").await },
        );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let refused = client
        .request(
            "tools/call",
            json!({ "name": "switchboard__run", "arguments": { "script": "1" } }),
        )
        .await;
    let error = refused.outcome.expect_err("refused while the first runs");
    assert!(
        error["message"].as_str().unwrap().contains("max_running"),
        "{error}"
    );
    assert_eq!(error["data"]["retryable"], true, "{error}");
    let first = first.await.unwrap();
    assert_eq!(first["structuredContent"]["result"], "first", "{first}");
    // The slot is free again.
    let again = run(&client, "40 + 2").await;
    assert_eq!(again["structuredContent"]["result"], 42, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_call_is_denied_by_the_callers_allow_list() {
    let config = format!(
        r#"[gateway]
meta_tools = ["run", "batch"]
meta_tools_by_default = true

[access]

[[access.keys]]
id = "acme-ci"
key = "{ACME_KEY}"
tenant = "acme"

[[access.keys]]
id = "globex-ci"
key = "{GLOBEX_KEY}"
tenant = "globex"

[access.tenants.acme]
servers = {{ allow = ["fa"] }}

[access.tenants.globex]
servers = {{ allow = ["fb"] }}

{}
{}"#,
        server("fa"),
        server("fb")
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let acme = ModernHttp::with_headers(&gateway.url, &[("x-api-key", ACME_KEY)]);
    let globex = ModernHttp::with_headers(&gateway.url, &[("x-api-key", GLOBEX_KEY)]);
    let fb_before = fixture_calls(&globex, "fb").await;

    let result = run(
        &acme,
        r#"
        let seen = [];
        try { call("fb__echo", #{ text: "x" }); seen.push("reached"); }
        catch (e) { seen.push(e.message); }
        seen.push(text(call("fa__echo", #{ text: "mine" })));
        seen
        "#,
    )
    .await;
    let seen = &result["structuredContent"]["result"];
    let denied = seen[0].as_str().unwrap();
    assert!(
        denied.contains("fb__echo") && denied.contains("Unknown tool"),
        "hidden is unknown: {result}"
    );
    assert_eq!(seen[1], "mine", "{result}");

    // Uncaught, the denial ends the script with its line.
    let result = run(&acme, "let a = 1;\ncall(\"fb__stats\")").await;
    let error = error_of(&result);
    assert_eq!(error["kind"], "call", "{result}");
    assert_eq!(error["line"], 2);

    // The other tenant reaches its own server, not acme's.
    let result = run(
        &globex,
        "let r = [];\ntry { call(\"fa__echo\", #{ text: \"x\" }) } catch (e) { r.push(\"denied\") }\nr.push(text(call(\"fb__echo\", #{ text: \"ok\" })));\nr",
    )
    .await;
    assert_eq!(
        result["structuredContent"]["result"],
        json!(["denied", "ok"]),
        "{result}"
    );
    // fb saw globex's one echo, none of acme's attempts.
    assert_eq!(calls_since(&globex, "fb", fb_before).await, 1);

    // A batch answers the denied call as an error and the allowed one with its result.
    let batch = tool(
        &acme,
        "switchboard__batch",
        json!({ "calls": [
            { "name": "fa__echo", "arguments": { "text": "a" } },
            { "name": "fb__echo", "arguments": { "text": "b" } }
        ] }),
    )
    .await;
    let results = &batch["structuredContent"]["results"];
    assert_eq!(results[0]["ok"], true, "{batch}");
    assert_eq!(results[1]["ok"], false, "{batch}");
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown tool"),
        "{batch}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_cannot_reach_files_the_network_or_other_scripts() {
    let gateway = gateway("").await;
    let client = ModernHttp::new(&gateway.url);
    let marker = std::env::temp_dir().join(format!("switchboard-script-{}", std::process::id()));
    let marker = marker.display().to_string();
    let attempts = [
        (format!("import {marker:?} as m;\n1"), "syntax"),
        ("eval(\"1 + 1\")".to_owned(), "syntax"),
        (format!("let f = open({marker:?});\nf"), "runtime"),
        (format!("write_file({marker:?}, \"x\")"), "runtime"),
        (format!("File({marker:?})"), "runtime"),
        ("fetch(\"http://127.0.0.1:9/\")".to_owned(), "runtime"),
        ("http_get(\"http://127.0.0.1:9/\")".to_owned(), "runtime"),
        ("system(\"touch /tmp/x\")".to_owned(), "runtime"),
        ("exec(\"ls\")".to_owned(), "runtime"),
        ("env(\"PATH\")".to_owned(), "runtime"),
    ];
    for (script, kind) in attempts {
        let result = run(&client, &script).await;
        let error = error_of(&result);
        assert_eq!(error["kind"], kind, "{script}: {result}");
        assert_eq!(error["line"], 1, "{script}: {result}");
        assert_eq!(result["structuredContent"]["calls"], 0);
    }
    assert!(!std::path::Path::new(&marker).exists());
    // Nor may a script start scripts or batches.
    let result = run(&client, "call(\"switchboard__run\", #{ script: \"1\" })").await;
    assert!(
        error_of(&result)["message"]
            .as_str()
            .unwrap()
            .contains("cannot be called from a script"),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syntax_and_runtime_errors_report_their_line() {
    let gateway = gateway("").await;
    let client = ModernHttp::new(&gateway.url);
    let result = run(&client, "let a = 1;\nlet b = ;\na").await;
    let error = error_of(&result);
    assert_eq!(error["kind"], "syntax", "{result}");
    assert_eq!(error["line"], 2);
    assert!(error["column"].as_u64().is_some());

    let result = run(&client, "let a = 1;\nlet b = 2;\nthrow \"boom\";").await;
    let error = error_of(&result);
    assert_eq!(
        (&error["kind"], &error["line"]),
        (&json!("runtime"), &json!(3)),
        "{result}"
    );
    assert_eq!(error["message"], "boom");

    let result = run(&client, "let a = 1;\n\na.no_such_method()").await;
    let error = error_of(&result);
    assert_eq!(
        (&error["kind"], &error["line"]),
        (&json!("runtime"), &json!(3)),
        "{result}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no_such_method"),
        "{error}"
    );

    // A tool error (isError) is thrown with the tool's text and result.
    let result = run(
        &client,
        "let x = 0;\ncall(\"fx__add\", #{ a: \"one\", b: 2 })",
    )
    .await;
    let error = error_of(&result);
    assert_eq!(
        (&error["kind"], &error["line"]),
        (&json!("call"), &json!(2)),
        "{result}"
    );
    assert_eq!(error["call"]["result"]["isError"], true, "{error}");

    let missing = client
        .request(
            "tools/call",
            json!({ "name": "switchboard__run", "arguments": {} }),
        )
        .await;
    assert_eq!(missing.outcome.expect_err("no script")["code"], -32602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_every_call_including_a_failing_one() {
    let gateway = gateway("").await;
    let client = ModernHttp::new(&gateway.url);
    let before = fixture_calls(&client, "fx").await;
    let started = Instant::now();
    let batch = tool(
        &client,
        "switchboard__batch",
        json!({ "calls": [
            { "name": "fx__echo", "arguments": { "text": "a" } },
            { "name": "fx__sleep", "arguments": { "ms": 400 } },
            { "name": "fx__nope" },
            { "name": "fx__add", "arguments": { "a": "one", "b": 2 } },
            { "name": "fx__sleep", "arguments": { "ms": 400 } },
            { "name": "fx__add", "arguments": { "a": 1, "b": 2 } }
        ] }),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "answered together"
    );
    assert_ne!(batch["isError"], true, "{batch}");
    let structured = &batch["structuredContent"];
    assert_eq!(structured["failed"], 2, "{batch}");
    let results = structured["results"].as_array().unwrap();
    let oks: Vec<bool> = results.iter().map(|r| r["ok"].as_bool().unwrap()).collect();
    assert_eq!(oks, [true, true, false, false, true, true]);
    assert_eq!(results[0]["result"]["structuredContent"]["text"], "a");
    assert_eq!(results[2]["name"], "fx__nope");
    assert_eq!(results[2]["error"]["code"], -32602, "{batch}");
    assert_eq!(results[3]["error"]["result"]["isError"], true, "{batch}");
    assert_eq!(results[5]["result"]["content"][0]["text"], "3");
    // The unknown tool and the invalid arguments (refused by validation) never reached
    // the server.
    assert_eq!(calls_since(&client, "fx", before).await, 4);

    for bad in [
        json!({}),
        json!({ "calls": [] }),
        json!({ "calls": [{ "arguments": {} }] }),
    ] {
        let refused = client
            .request(
                "tools/call",
                json!({ "name": "switchboard__batch", "arguments": bad }),
            )
            .await;
        assert_eq!(refused.outcome.expect_err("invalid")["code"], -32602);
    }
}
