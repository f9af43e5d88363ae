//! List cursors are opaque and checked (issue 21, defect 7): a forged cursor — garbage,
//! a huge or signed offset, an offset off a page boundary — and a stale one (past the end
//! of a list that shrank) are answered -32602 on every list, in both eras, instead of
//! overflowing or silently returning an empty page.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use switchboard_testkit::{LegacyHttp, ModernHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");

fn cursors() -> Vec<String> {
    let encoded = |text: &str| URL_SAFE_NO_PAD.encode(text);
    vec![
        "garbage!".into(),
        encoded("sb:18446744073709551615"),
        encoded("sb:99999999999999999999999999"),
        encoded("sb:-1000"),
        encoded("sb:1"),
        // Page-aligned but past the end: a stale cursor of a list that shrank.
        encoded("sb:1000"),
        encoded("sb:5000"),
        "x".repeat(10_000),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_stale_cursors_are_invalid_params_in_both_eras() {
    let fixture = binary_beside(GATEWAY, "switchboard-fixture");
    let config = format!(
        "[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture.display().to_string()
    );
    let gateway = spawn_gateway_http(GATEWAY, &config).await.unwrap();
    let modern = ModernHttp::new(&gateway.url);
    let legacy = LegacyHttp::connect(&gateway.url).await.unwrap();
    for method in [
        "tools/list",
        "prompts/list",
        "resources/list",
        "resources/templates/list",
    ] {
        for cursor in cursors() {
            let params = json!({ "cursor": cursor });
            let answers: [(&str, Result<Value, Value>); 2] = [
                (
                    "modern",
                    modern.request(method, params.clone()).await.outcome,
                ),
                (
                    "legacy",
                    legacy.request(method, params.clone()).await.outcome,
                ),
            ];
            for (era, outcome) in answers {
                let error = outcome.expect_err("a bad cursor is an error");
                assert_eq!(
                    error["code"], -32602,
                    "{era} {method} cursor {:.40}: {error}",
                    cursor
                );
            }
        }
        // The first page still works.
        let first = modern.request(method, json!({})).await;
        assert!(first.outcome.is_ok(), "{method}: {:?}", first.outcome);
    }
}
