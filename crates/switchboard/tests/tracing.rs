//! OpenTelemetry traces on the real binary: a client's W3C `traceparent` (HTTP header, or
//! `_meta.traceparent` in the body) continues through the gateway to a stdio fixture
//! server, which sees the same trace id in its request's `_meta` with the gateway's
//! upstream span as parent; the spans arrive over OTLP/HTTP in the expected shape
//! (client's span → request span → step span → upstream call span). With tracing off,
//! the client's `_meta.traceparent` passes through unchanged and none is added.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use switchboard_testkit::{ModernHttp, binary_beside, spawn_gateway_http};

const GATEWAY: &str = env!("CARGO_BIN_EXE_switchboard");
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn fixture() -> String {
    binary_beside(GATEWAY, "switchboard-fixture")
        .display()
        .to_string()
}

/// A test double for an OpenTelemetry collector: an OTLP/HTTP endpoint
/// (`POST /v1/traces`, protobuf) that decodes each export with `opentelemetry-proto`'s
/// types and keeps the spans. It stands in for a real collector, which no package
/// registry offers as something that installs offline here.
struct Receiver {
    url: String,
    spans: Arc<std::sync::Mutex<Vec<Span>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Receiver {
        let spans = Arc::new(std::sync::Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(receive))
            .with_state(spans.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            spans,
            _server: server,
        }
    }

    /// The spans of `trace` (hex), once `done` holds for them (at most 20 s).
    async fn trace_until(&self, trace: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|span| hex(&span.trace_id) == trace)
                .cloned()
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "trace {trace} incomplete: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(spans): State<Arc<std::sync::Mutex<Vec<Span>>>>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
    let mut spans = spans.lock().unwrap();
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    (
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    let value = span.attributes.iter().find(|kv| kv.key == key)?;
    Some(match value.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(text) => json!(text),
        any_value::Value::IntValue(number) => json!(number),
        any_value::Value::BoolValue(flag) => json!(flag),
        other => json!(format!("{other:?}")),
    })
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name}"))
}

/// The `_meta` the fixture received with a `request_meta` call.
async fn upstream_meta(client: &ModernHttp, params: Value) -> Value {
    let exchange = client.request("tools/call", params).await;
    exchange.result()["structuredContent"]["meta"].clone()
}

fn config(telemetry: &str) -> String {
    format!(
        "{telemetry}\n[servers.fx]\ncommand = {:?}\nargs = [\"stdio\"]\n",
        fixture()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trace_continues_to_the_stdio_upstream_and_its_spans_arrive_in_shape() {
    let receiver = Receiver::start().await;
    let gateway = spawn_gateway_http(
        GATEWAY,
        &config(&format!(
            "[telemetry]\nendpoint = {:?}\nservice_name = \"gw-under-test\"\nexport_interval_ms = 50\n\
             [[access.rules]]\nwhen = \"tool == 'fx__echo'\"\nmessage = \"no echo here\"\n",
            receiver.url
        )),
    )
    .await
    .unwrap();
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let client = ModernHttp::with_headers(&gateway.url, &[("traceparent", &traceparent)]);

    // The header continues the client's trace; the fixture sees our upstream span.
    let meta = upstream_meta(
        &client,
        json!({ "name": "fx__request_meta", "arguments": {} }),
    )
    .await;
    let seen = meta["traceparent"].as_str().expect("traceparent in _meta");
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(parts.len(), 4, "{seen}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", CLIENT_TRACE, "01"));
    assert_ne!(parts[2], CLIENT_SPAN, "the upstream's parent is our span");

    let spans = receiver
        .trace_until(CLIENT_TRACE, |spans| {
            spans.iter().any(|s| s.name == "upstream tools/call")
                && spans.iter().any(|s| s.name == "mcp tools/call")
        })
        .await;
    let request = named(&spans, "mcp tools/call");
    let rules = named(&spans, "step rules");
    let step = named(&spans, "step validate");
    let upstream = named(&spans, "upstream tools/call");
    // client's span → request → steps, nested in chain order → upstream call; the
    // fixture's parent is the last.
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN);
    assert_eq!(rules.parent_span_id, request.span_id);
    assert_eq!(step.parent_span_id, rules.span_id);
    assert_eq!(upstream.parent_span_id, step.span_id);
    assert_eq!(spans.len(), 4, "one span each");
    assert_eq!(hex(&upstream.span_id), parts[2]);
    assert_eq!(attribute(request, "server"), Some(json!("fx")));
    assert_eq!(attribute(request, "tool"), Some(json!("request_meta")));
    assert_eq!(attribute(request, "transport"), Some(json!("http")));
    assert_eq!(attribute(request, "era"), Some(json!("modern")));
    assert_eq!(attribute(request, "outcome"), Some(json!("ok")));
    assert_eq!(attribute(step, "step"), Some(json!("validate")));
    assert_eq!(attribute(upstream, "server"), Some(json!("fx")));
    assert_eq!(attribute(upstream, "tool"), Some(json!("request_meta")));
    assert_eq!(attribute(upstream, "transport"), Some(json!("stdio")));
    assert_eq!(attribute(upstream, "outcome"), Some(json!("ok")));
    assert!(attribute(upstream, "era").is_some());
    assert!(attribute(upstream, "instance").is_some());
    for key in ["bytes.in", "bytes.out"] {
        let bytes = attribute(upstream, key)
            .and_then(|v| v.as_i64())
            .unwrap_or(0);
        assert!(bytes > 0, "{key}: {bytes}");
    }

    // A step that refuses: its span ends with the error, nothing after it runs.
    let denied_trace = "11111111111111111111111111111111";
    let denying = ModernHttp::with_headers(
        &gateway.url,
        &[(
            "traceparent",
            &format!("00-{denied_trace}-2222222222222222-01"),
        )],
    );
    let exchange = denying
        .request(
            "tools/call",
            json!({ "name": "fx__echo", "arguments": { "text": "hi" } }),
        )
        .await;
    assert!(exchange.outcome.is_err(), "denied: {:?}", exchange.outcome);
    let spans = receiver
        .trace_until(denied_trace, |spans| {
            spans.iter().any(|s| s.name == "mcp tools/call")
        })
        .await;
    let request = named(&spans, "mcp tools/call");
    let rules = named(&spans, "step rules");
    assert_eq!(rules.parent_span_id, request.span_id);
    assert_eq!(attribute(request, "outcome"), attribute(rules, "outcome"));
    assert_ne!(attribute(rules, "outcome"), Some(json!("ok")));
    assert_eq!(
        spans
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .len(),
        2,
        "no validate step, no upstream call: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );

    // `_meta.traceparent` in the body (as on stdio) continues a trace the same way.
    let plain = ModernHttp::new(&gateway.url);
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {},
                "_meta": { "traceparent": format!("00-{other_trace}-b7ad6b7169203331-01") } }),
    )
    .await;
    assert!(
        meta["traceparent"]
            .as_str()
            .is_some_and(|tp| tp.starts_with(&format!("00-{other_trace}-"))),
        "{meta}"
    );
    let spans = receiver
        .trace_until(other_trace, |spans| {
            spans.iter().any(|s| s.name == "mcp tools/call")
        })
        .await;
    assert_eq!(
        hex(&named(&spans, "mcp tools/call").parent_span_id),
        "b7ad6b7169203331"
    );

    // Without any traceparent the gateway starts a trace and still propagates it.
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {} }),
    )
    .await;
    let started = meta["traceparent"]
        .as_str()
        .expect("a new trace propagates");
    let trace = started.split('-').nth(1).unwrap().to_owned();
    let spans = receiver
        .trace_until(&trace, |spans| {
            spans.iter().any(|s| s.name == "mcp tools/call")
        })
        .await;
    assert!(
        named(&spans, "mcp tools/call").parent_span_id.is_empty(),
        "a root span"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tracing_off_the_client_traceparent_passes_through_unchanged() {
    let gateway = spawn_gateway_http(GATEWAY, &config("")).await.unwrap();
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");

    // In the body: forwarded as the client wrote it (a `_meta` key like any other).
    let plain = ModernHttp::new(&gateway.url);
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {},
                "_meta": { "traceparent": traceparent, "tracestate": "vendor=1" } }),
    )
    .await;
    assert_eq!(meta["traceparent"], json!(traceparent));
    assert_eq!(meta["tracestate"], json!("vendor=1"));

    // In a header only, or nowhere: the gateway adds none.
    let with_header = ModernHttp::with_headers(&gateway.url, &[("traceparent", &traceparent)]);
    for client in [&with_header, &plain] {
        let meta = upstream_meta(
            client,
            json!({ "name": "fx__request_meta", "arguments": {} }),
        )
        .await;
        assert!(meta.get("traceparent").is_none(), "{meta}");
        let keys: HashMap<String, Value> = meta
            .as_object()
            .map(|m| m.clone().into_iter().collect())
            .unwrap_or_default();
        assert!(!keys.contains_key("tracestate"), "{meta}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_call_goes_upstream_untouched_unless_it_continues_a_trace() {
    // Tracing on, sampling nothing of its own: only a client's sampled parent records.
    let receiver = Receiver::start().await;
    let gateway = spawn_gateway_http(
        GATEWAY,
        &config(&format!(
            "[telemetry]\nendpoint = {:?}\nsample_ratio = 0.0\nexport_interval_ms = 50\n",
            receiver.url
        )),
    )
    .await
    .unwrap();
    let plain = ModernHttp::new(&gateway.url);

    // No traceparent, not sampled: the trace keys reach the server as the client sent
    // them (the era's own `_meta` keys aside), none added.
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {},
                "_meta": { "tracestate": "vendor=1", "other": 2 } }),
    )
    .await;
    assert_eq!(meta["tracestate"], json!("vendor=1"), "{meta}");
    assert_eq!(meta["other"], json!(2), "{meta}");
    assert!(meta.get("traceparent").is_none(), "{meta}");
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {} }),
    )
    .await;
    assert!(
        meta.as_object()
            .is_none_or(|meta| !meta.contains_key("traceparent")),
        "{meta}"
    );

    // An unsampled client parent (body or header) still propagates, flag off, through
    // our span; the client's vendor state goes with it.
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {},
                "_meta": { "traceparent": unsampled, "tracestate": "vendor=1" } }),
    )
    .await;
    let seen = meta["traceparent"].as_str().expect("propagated");
    let parts: Vec<&str> = seen.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", CLIENT_TRACE, "00"),
        "{seen}"
    );
    assert_ne!(parts[2], CLIENT_SPAN, "the upstream's parent is our span");
    assert_eq!(meta["tracestate"], json!("vendor=1"));
    let with_header = ModernHttp::with_headers(&gateway.url, &[("traceparent", &unsampled)]);
    let meta = upstream_meta(
        &with_header,
        json!({ "name": "fx__request_meta", "arguments": {} }),
    )
    .await;
    assert!(
        meta["traceparent"]
            .as_str()
            .is_some_and(|tp| tp.starts_with(&format!("00-{CLIENT_TRACE}-")) && tp.ends_with("-00")),
        "{meta}"
    );

    // A malformed one is replaced by a valid trace of ours, not passed on.
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {},
                "_meta": { "traceparent": "not-a-traceparent" } }),
    )
    .await;
    let replaced = meta["traceparent"].as_str().expect("replaced");
    assert_ne!(replaced, "not-a-traceparent");
    assert_eq!(replaced.split('-').count(), 4, "{replaced}");

    // A sampled client parent is recorded despite the ratio, and propagates sampled.
    let sampled_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let meta = upstream_meta(
        &plain,
        json!({ "name": "fx__request_meta", "arguments": {},
                "_meta": { "traceparent": format!("00-{sampled_trace}-{CLIENT_SPAN}-01") } }),
    )
    .await;
    assert!(
        meta["traceparent"].as_str().is_some_and(|tp| tp
            .starts_with(&format!("00-{sampled_trace}-"))
            && tp.ends_with("-01")),
        "{meta}"
    );
    let spans = receiver
        .trace_until(sampled_trace, |spans| {
            spans.iter().any(|s| s.name == "upstream tools/call")
                && spans.iter().any(|s| s.name == "mcp tools/call")
        })
        .await;
    assert_eq!(spans.len(), 3, "request, validate step, upstream call");
    // Nothing of the unsampled calls was exported (the sampled one's export has arrived,
    // and every export carries all that ended before it).
    let other: Vec<String> = receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .map(|s| hex(&s.trace_id))
        .filter(|trace| trace != sampled_trace)
        .collect();
    assert!(other.is_empty(), "unsampled spans exported: {other:?}");
}
