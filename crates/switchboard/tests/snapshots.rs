//! Run snapshots end to end, through the real gateway binary and the fixture server
//! (whose `rewrite_tool` changes a tool's description or schema at runtime, and
//! `test_trigger_tool_change` removes `test_dynamic_tool`): a session pinned to the
//! catalog it started with keeps its tool list across an upstream change, gets no
//! `list_changed` for it, runs calls the change left compatible and is refused, with the
//! change named, for an incompatible one or a removed tool; an unpinned session sees the
//! new schema at once. Legacy sessions are pinned by their key's configuration or the
//! `_meta` ask, stateless (2026-07-28) requests by the snapshot id they send back (or
//! the `Switchboard-Snapshot` header). A refresh moves a session to the live catalog; a
//! snapshot past its age bound answers an "expired" error that says how to refresh.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_testkit::{LegacyHttp, ModernHttp, Proc, binary_beside, spawn_gateway_http};
use tokio::sync::mpsc::UnboundedReceiver;

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const PATIENCE: Duration = Duration::from_secs(10);
const DENIED: i64 = -31007;
const KEY: &str = "io.switchboard/snapshot";
const PINNED_KEY: &str = "pinned-client-key-0123456789";
const PLAIN_KEY: &str = "plain-client-key-0123456789";

/// The schema the tests rewrite `echo` to: a new required property (incompatible).
fn stricter_echo() -> Value {
    json!({ "inputSchema": {
        "type": "object",
        "properties": { "text": { "type": "string" }, "mode": { "type": "string" } },
        "required": ["text", "mode"],
    } })
}

fn config(extra: &str) -> String {
    format!(
        "{extra}\n\
         [[access.keys]]\nid = \"pinned\"\nkey = {PINNED_KEY:?}\nsnapshot = \"pin\"\n\n\
         [[access.keys]]\nid = \"plain\"\nkey = {PLAIN_KEY:?}\n\n\
         [servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        binary_beside(GATEWAY, "switchboard-fixture")
            .display()
            .to_string(),
    )
}

async fn start(extra: &str) -> Proc {
    spawn_gateway_http(GATEWAY, &config(extra)).await.unwrap()
}

async fn legacy(gateway: &Proc, key: &str) -> LegacyHttp {
    LegacyHttp::connect_with(&gateway.url, &[("x-api-key", key)])
        .await
        .unwrap()
}

fn modern(gateway: &Proc, headers: &[(&str, &str)]) -> ModernHttp {
    let mut all = vec![("x-api-key", PLAIN_KEY)];
    all.extend_from_slice(headers);
    ModernHttp::with_headers(&gateway.url, &all)
}

/// `params` with the snapshot ask in `_meta`.
fn asking(mut params: Value, ask: &str) -> Value {
    params["_meta"] = json!({ KEY: ask });
    params
}

/// The `echo` tool as a `tools/list` result shows it.
fn echo_of(listed: &Value) -> Value {
    listed["tools"]
        .as_array()
        .expect("a tools array")
        .iter()
        .find(|tool| tool["name"] == "fx__echo")
        .cloned()
        .unwrap_or_else(|| panic!("fx__echo listed: {listed}"))
}

fn requires_mode(tool: &Value) -> bool {
    tool["inputSchema"]["required"]
        .as_array()
        .is_some_and(|required| required.contains(&json!("mode")))
}

fn echo_call(text: &str, mode: Option<&str>) -> Value {
    let mut arguments = json!({ "text": text });
    if let Some(mode) = mode {
        arguments["mode"] = json!(mode);
    }
    json!({ "name": "fx__echo", "arguments": arguments })
}

/// Rewrites `echo` on the fixture (through an unpinned session).
async fn rewrite_echo(client: &LegacyHttp, fields: Value) {
    let mut arguments = fields;
    arguments["name"] = json!("echo");
    client
        .request(
            "tools/call",
            json!({ "name": "fx__rewrite_tool", "arguments": arguments }),
        )
        .await
        .result();
}

/// Polls `list` until `done` holds for what it returns.
async fn until<F, Fut>(what: &str, mut list: F, done: impl Fn(&Value) -> bool) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let listed = list().await;
        if done(&listed) {
            return listed;
        }
        assert!(Instant::now() < deadline, "{what}: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn list(client: &LegacyHttp) -> Value {
    client
        .request("tools/list", json!({}))
        .await
        .result()
        .clone()
}

/// Tool `list_changed` notifications among what a session stream holds now.
fn tool_changes(stream: &mut UnboundedReceiver<Value>) -> usize {
    let mut seen = 0;
    while let Ok(message) = stream.try_recv() {
        if message["method"] == "notifications/tools/list_changed" {
            seen += 1;
        }
    }
    seen
}

fn refusal(error: &Value, reason: &str) -> Value {
    assert_eq!(error["code"], DENIED, "{error}");
    let data = &error["data"];
    assert_eq!(data["step"], "snapshot", "{error}");
    assert_eq!(data["reason"], reason, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("refresh"),
        "says how to refresh: {error}"
    );
    assert_eq!(data["refresh"]["_meta"][KEY], "refresh", "{error}");
    data.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_legacy_session_keeps_its_schema_across_an_upstream_change() {
    let gateway = start("").await;
    // Pinned by its key's configuration; the other session is live.
    let pinned = legacy(&gateway, PINNED_KEY).await;
    let plain = legacy(&gateway, PLAIN_KEY).await;
    let mut pinned_stream = pinned.open_stream().await.unwrap();
    let mut plain_stream = plain.open_stream().await.unwrap();

    let before = list(&pinned).await;
    let snapshot = before["_meta"][KEY]["id"]
        .as_str()
        .expect("a pinned list names its snapshot")
        .to_owned();
    let original = echo_of(&before);
    assert!(!requires_mode(&original));
    assert!(
        list(&plain)
            .await
            .get("_meta")
            .is_none_or(|meta| meta.get(KEY).is_none())
    );

    // A compatible change (the description): the pinned list keeps the old text, and
    // its calls run.
    rewrite_echo(&plain, json!({ "description": "Echoes, reworded." })).await;
    until(
        "plain sees the new description",
        || list(&plain),
        |listed| echo_of(listed)["description"] == "Echoes, reworded.",
    )
    .await;
    assert_eq!(echo_of(&list(&pinned).await), original);
    let echoed = pinned.request("tools/call", echo_call("still", None)).await;
    assert_eq!(echoed.result()["content"][0]["text"], "still");

    // An incompatible change: a new required property.
    rewrite_echo(&plain, stricter_echo()).await;
    until(
        "plain sees the new schema",
        || list(&plain),
        |listed| requires_mode(&echo_of(listed)),
    )
    .await;
    let kept = list(&pinned).await;
    assert_eq!(
        echo_of(&kept),
        original,
        "the pinned session keeps its schema"
    );
    assert_eq!(kept["_meta"][KEY]["id"], json!(snapshot));
    let refused = pinned.request("tools/call", echo_call("hi", None)).await;
    let data = refusal(refused.error(), "incompatible");
    assert_eq!(data["tool"], "fx__echo");
    assert_eq!(data["snapshot"], json!(snapshot));
    assert_eq!(
        data["changed"],
        json!(["inputSchema/required: `mode` is now required"])
    );
    assert!(
        refused.error()["message"]
            .as_str()
            .unwrap()
            .contains("fx__echo"),
        "{}",
        refused.error()
    );
    // The unpinned session runs against the new schema.
    let live = plain
        .request("tools/call", echo_call("live", Some("loud")))
        .await;
    assert_eq!(live.result()["content"][0]["text"], "live");

    // Told: the live session; not: the pinned one (its list did not change).
    assert!(tool_changes(&mut plain_stream) >= 1);
    assert_eq!(tool_changes(&mut pinned_stream), 0);

    // A refresh moves it to the live catalog, pinned there.
    let refreshed = pinned
        .request("tools/list", asking(json!({}), "refresh"))
        .await
        .result()
        .clone();
    assert!(requires_mode(&echo_of(&refreshed)));
    assert_ne!(refreshed["_meta"][KEY]["id"], json!(snapshot));
    let now = pinned
        .request("tools/call", echo_call("new", Some("x")))
        .await;
    assert_eq!(now.result()["content"][0]["text"], "new");

    // A tool removed upstream: a clear error, not "unknown tool".
    assert!(
        list(&pinned)
            .await
            .to_string()
            .contains("fx__test_dynamic_tool")
    );
    plain
        .request(
            "tools/call",
            json!({ "name": "fx__test_trigger_tool_change", "arguments": {} }),
        )
        .await
        .result();
    until(
        "plain sees the dynamic tool gone",
        || list(&plain),
        |listed| !listed.to_string().contains("fx__test_dynamic_tool"),
    )
    .await;
    let gone = pinned
        .request(
            "tools/call",
            json!({ "name": "fx__test_dynamic_tool", "arguments": {} }),
        )
        .await;
    assert_eq!(
        refusal(gone.error(), "removed")["tool"],
        "fx__test_dynamic_tool"
    );
    // Unpinned, the same name is simply unknown.
    let unknown = plain
        .request(
            "tools/call",
            json!({ "name": "fx__test_dynamic_tool", "arguments": {} }),
        )
        .await;
    assert_ne!(unknown.error()["code"], DENIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_session_pins_itself_with_the_meta_ask_and_can_go_live() {
    let gateway = start("").await;
    let session = legacy(&gateway, PLAIN_KEY).await;
    let other = legacy(&gateway, PLAIN_KEY).await;
    let pinned = session
        .request("tools/list", asking(json!({}), "pin"))
        .await
        .result()
        .clone();
    assert!(pinned["_meta"][KEY]["id"].is_string());
    rewrite_echo(&other, stricter_echo()).await;
    until(
        "the other session sees the new schema",
        || list(&other),
        |listed| requires_mode(&echo_of(listed)),
    )
    .await;
    // Later requests need not repeat the ask: the session holds its snapshot.
    assert!(!requires_mode(&echo_of(&list(&session).await)));
    let refused = session.request("tools/call", echo_call("hi", None)).await;
    refusal(refused.error(), "incompatible");
    // "live" unpins: the live list, and no snapshot named.
    let live = session
        .request("tools/list", asking(json!({}), "live"))
        .await
        .result()
        .clone();
    assert!(requires_mode(&echo_of(&live)));
    assert!(live.get("_meta").is_none_or(|meta| meta.get(KEY).is_none()));
    assert!(requires_mode(&echo_of(&list(&session).await)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_request_is_pinned_by_the_snapshot_id_it_sends_back() {
    let gateway = start("").await;
    let mutator = legacy(&gateway, PLAIN_KEY).await;
    let client = modern(&gateway, &[]);
    // The header asks for a pin; the answer names the snapshot.
    let by_header = modern(&gateway, &[("switchboard-snapshot", "pin")]);
    let first = by_header.request("tools/list", json!({})).await;
    let id = first.result()["_meta"][KEY]["id"]
        .as_str()
        .expect("a snapshot id")
        .to_owned();
    let original = echo_of(first.result());
    assert!(
        first.result()["_meta"][KEY]["expiresInMs"]
            .as_u64()
            .unwrap()
            > 0
    );

    rewrite_echo(&mutator, stricter_echo()).await;
    // Unpinned stateless requests see the new schema.
    until(
        "a stateless request sees the new schema",
        || async {
            client
                .request("tools/list", json!({}))
                .await
                .result()
                .clone()
        },
        |listed| requires_mode(&echo_of(listed)),
    )
    .await;
    // With the id, the old one.
    let pinned = client
        .request("tools/list", asking(json!({}), &id))
        .await
        .result()
        .clone();
    assert_eq!(echo_of(&pinned), original);
    assert_eq!(pinned["_meta"][KEY]["id"], json!(id));
    let refused = client
        .request("tools/call", asking(echo_call("hi", None), &id))
        .await;
    let data = refusal(refused.error(), "incompatible");
    assert_eq!(data["snapshot"], json!(id));
    // Without the id the same call runs live (and fits the new schema).
    let live = client
        .request("tools/call", echo_call("hi", Some("m")))
        .await;
    assert_eq!(live.result()["content"][0]["text"], "hi");
    // A refresh gives a new id, on the new schema.
    let refreshed = client
        .request("tools/list", asking(json!({}), "refresh"))
        .await
        .result()
        .clone();
    let new_id = refreshed["_meta"][KEY]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, id);
    assert!(requires_mode(&echo_of(&refreshed)));
    let runs = client
        .request("tools/call", asking(echo_call("ok", Some("m")), &new_id))
        .await;
    assert_eq!(runs.result()["content"][0]["text"], "ok");
    // A key pinned by configuration gets an id on its stateless lists too.
    let configured = ModernHttp::with_headers(&gateway.url, &[("x-api-key", PINNED_KEY)]);
    let listed = configured.request("tools/list", json!({})).await;
    assert!(listed.result()["_meta"][KEY]["id"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_snapshot_says_so_and_how_to_refresh_in_both_eras() {
    let gateway = start("[registry]\nsnapshot_max_age_ms = 1000\n").await;
    let session = legacy(&gateway, PINNED_KEY).await;
    let client = modern(&gateway, &[]);
    let legacy_id = list(&session).await["_meta"][KEY]["id"].clone();
    let modern_id = client
        .request("tools/list", asking(json!({}), "pin"))
        .await
        .result()["_meta"][KEY]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let expired = session.request("tools/list", json!({})).await;
    let data = refusal(expired.error(), "expired");
    assert_eq!(data["snapshot"], legacy_id);
    assert_eq!(data["maxAgeMs"], 1000);
    assert!(
        expired.error()["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    let call = session.request("tools/call", echo_call("hi", None)).await;
    refusal(call.error(), "expired");
    let refreshed = session
        .request("tools/list", asking(json!({}), "refresh"))
        .await;
    assert_ne!(refreshed.result()["_meta"][KEY]["id"], legacy_id);

    let expired = client
        .request("tools/list", asking(json!({}), &modern_id))
        .await;
    refusal(expired.error(), "expired");
    // An id the gateway never gave (or gave before a restart) is answered the same way.
    let unknown = client
        .request("tools/call", asking(echo_call("hi", None), "deadbeef-7"))
        .await;
    refusal(unknown.error(), "expired");
}
