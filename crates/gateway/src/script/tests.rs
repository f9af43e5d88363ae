//! Scripts against an in-process gateway with no servers: what a script can do without
//! a tool (values, errors and their lines, every limit the interpreter enforces), and an
//! inner call to a tool that does not exist. The fixture-backed behaviour is in
//! `crates/switchboard/tests/scripts.rs`.

use serde_json::{Value, json};
use switchboard_config::{Config, ScriptSettings};
use tokio_util::sync::CancellationToken;

use crate::gateway::{ClientCtx, Gateway};
use crate::principal::{Face, Peer, Principal};

fn ctx() -> ClientCtx {
    ClientCtx {
        era: switchboard_protocol::Era::Modern,
        protocol_version: "2026-07-28".into(),
        capabilities: json!({ "elicitation": {} }),
        client_info: None,
        principal: Principal::anonymous_stateless(Face::Http, "t1", Peer::default()),
        notify: None,
        peer: None,
        cancel: CancellationToken::new(),
        meta_tools: true,
        tools_mode: Default::default(),
    }
}

async fn gateway(scripts: ScriptSettings) -> Gateway {
    let config = Config {
        scripts,
        ..Config::default()
    };
    Gateway::start(&config).await.expect("starts")
}

async fn run(gateway: &Gateway, script: &str) -> Value {
    gateway
        .run_script(&ctx(), &json!({ "script": script }))
        .await
        .expect("a tool result")
}

fn error(result: &Value) -> &Value {
    assert_eq!(result["isError"], true, "{result}");
    &result["structuredContent"]["error"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_as_json() {
    let gateway = gateway(ScriptSettings::default()).await;
    let result = run(
        &gateway,
        "let xs = [1, 2, 3].map(|x| x * 2);\nprint(`sum ${xs.reduce(|a, b| a + b, 0)}`);\n#{ xs: xs, half: 0.5, none: (), ok: true, s: \"é\" }",
    )
    .await;
    assert_ne!(result["isError"], true, "{result}");
    assert_eq!(
        result["structuredContent"]["result"],
        json!({ "xs": [2, 4, 6], "half": 0.5, "none": null, "ok": true, "s": "é" })
    );
    assert_eq!(result["structuredContent"]["log"], json!(["sum 12"]));
    assert_eq!(result["structuredContent"]["calls"], 0);
    let early = run(&gateway, "if true { return \"early\"; }\n\"late\"").await;
    assert_eq!(early["structuredContent"]["result"], "early");
    let pointer = run(&gateway, "Fn(\"x\")").await;
    assert_eq!(error(&pointer)["kind"], "runtime", "{pointer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_kind_and_line() {
    let gateway = gateway(ScriptSettings::default()).await;
    let syntax = run(&gateway, "let a = 1;\n\nlet = 2;").await;
    assert_eq!(error(&syntax)["kind"], "syntax");
    assert_eq!(error(&syntax)["line"], 3);
    assert!(
        syntax["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("script error: line 3, column"),
        "{syntax}"
    );
    let thrown = run(&gateway, "let a = 1;\nthrow #{ message: \"custom\" };").await;
    assert_eq!(error(&thrown)["line"], 2);
    assert_eq!(error(&thrown)["kind"], "runtime");
    assert_eq!(error(&thrown)["message"], "custom");
    let in_function = run(&gateway, "fn f(x) {\n  x.nope()\n}\nf(1)").await;
    assert_eq!(
        error(&in_function)["line"],
        2,
        "the body's line: {in_function}"
    );
    let unknown = run(&gateway, "let x = 1;\ncall(\"nothing__here\", #{})").await;
    let unknown = error(&unknown);
    assert_eq!(
        (&unknown["kind"], &unknown["line"]),
        (&json!("call"), &json!(2))
    );
    assert_eq!(unknown["call"]["code"], -32602, "{unknown}");
    let not_a_name = run(&gateway, "call(42)").await;
    assert_eq!(error(&not_a_name)["kind"], "runtime", "{not_a_name}");
    let not_a_map = run(&gateway, "call(\"x\", [1])").await;
    assert_eq!(error(&not_a_map)["kind"], "runtime", "{not_a_map}");
    let bad_entry = run(&gateway, "parallel([42])").await;
    assert!(
        error(&bad_entry)["message"]
            .as_str()
            .unwrap()
            .contains("parallel[0]"),
        "{bad_entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interpreter_limits_end_the_script() {
    let settings = ScriptSettings {
        max_operations: 10_000,
        max_string_bytes: 100,
        max_array_len: 10,
        max_map_len: 10,
        max_call_depth: 5,
        max_expr_depth: 16,
        max_script_bytes: 200,
        ..ScriptSettings::default()
    };
    let gateway = gateway(settings).await;
    let cases = [
        ("loop { }", "max_operations"),
        (
            "let s = \"0123456789\";\nloop { s += s; }",
            "max_string_bytes",
        ),
        ("let a = [];\nloop { a.push(()); }", "max_array_len"),
        (
            "let a = [1, 2, 3, 4, 5, 6];\na.push([7, 8, 9, 10, 11]);",
            "max_array_len",
        ),
        (
            "let m = #{};\nfor i in 0..100 { m[`${i}`] = i; }\nm.len()",
            "max_map_len",
        ),
        // Grown by index assignment (not checked as it grows), refused where it leaves.
        (
            "let m = #{};\nfor i in 0..100 { m[`${i}`] = i; }\nm",
            "max_map_len",
        ),
        (
            "let m = #{};\nfor i in 0..100 { m[`${i}`] = i; }\ncall(\"x__y\", m)",
            "max_map_len",
        ),
        ("fn f(n) { f(n + 1) }\nf(0)", "max_call_depth"),
    ];
    for (script, limit) in cases {
        let result = run(&gateway, script).await;
        let error = error(&result);
        assert_eq!(error["kind"], "limit", "{script}: {result}");
        assert_eq!(error["limit"], limit, "{script}: {result}");
    }
    let deep = run(&gateway, &format!("{}1{}", "(".repeat(40), ")".repeat(40))).await;
    assert_eq!(error(&deep)["kind"], "syntax", "{deep}");
    let long = run(&gateway, &"1;".repeat(101)).await;
    assert_eq!(error(&long)["limit"], "max_script_bytes", "{long}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_and_the_client_stop_a_loop_that_calls_nothing() {
    let settings = ScriptSettings {
        timeout: std::time::Duration::from_millis(200),
        max_operations: u64::MAX,
        ..ScriptSettings::default()
    };
    let gateway = gateway(settings).await;
    let result = run(&gateway, "let n = 0;\nloop { n += 1; }").await;
    assert_eq!(error(&result)["limit"], "timeout_ms", "{result}");
    assert_eq!(error(&result)["line"], 2, "{result}");

    let gateway = self::gateway(ScriptSettings {
        max_operations: u64::MAX,
        ..ScriptSettings::default()
    })
    .await;
    let ctx = ctx();
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        cancel.cancel();
    });
    let result = gateway
        .run_script(&ctx, &json!({ "script": "loop { }" }))
        .await
        .unwrap();
    assert_eq!(error(&result)["kind"], "cancelled", "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_scripts_are_bounded() {
    let gateway = gateway(ScriptSettings {
        max_running: 1,
        max_operations: u64::MAX,
        timeout: std::time::Duration::from_millis(1500),
        ..ScriptSettings::default()
    })
    .await;
    let busy = gateway.clone();
    let first = tokio::spawn(async move { run(&busy, "loop { }").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let refused = gateway
        .run_script(&ctx(), &json!({ "script": "1" }))
        .await
        .expect_err("no slot");
    assert_eq!(refused.code, switchboard_protocol::error::gateway::DENIED);
    assert!(refused.message.contains("max_running"), "{refused:?}");
    let first = first.await.unwrap();
    assert_eq!(error(&first)["limit"], "timeout_ms");
    assert_eq!(
        run(&gateway, "1 + 1").await["structuredContent"]["result"],
        2
    );
}
