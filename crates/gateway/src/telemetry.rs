//! OpenTelemetry traces (`[telemetry]`): a span per client request, per pipeline step and
//! per upstream call, exported over OTLP/HTTP (protobuf) by a batch processor on its own
//! thread.
//!
//! Off by default, at no cost: without the section the gateway holds no [`Telemetry`],
//! and every hook is one `Option` branch; no span, context or log span is made.
//!
//! Propagation is W3C Trace Context. A request continues the trace named by its
//! `_meta.traceparent` (and `_meta.tracestate`); the HTTP face copies the `traceparent`
//! header there first ([`carry_headers`]), so the header wins over the body. Each upstream
//! call carries its own span's context to the server in `_meta.traceparent` on every
//! transport, and in the `traceparent` header too for HTTP upstreams. With tracing off the
//! gateway passes a client's `_meta.traceparent` through to the upstream unchanged (it is
//! a `_meta` key like any other) and adds none.
//!
//! Sampling is parent-based: a request whose client sent a sampled `traceparent` is
//! recorded, an unsampled one is not, and a request without one is recorded with the
//! configured ratio. An unrecorded request that continues a trace — the client sent a
//! `traceparent` (or it runs inside one that did) — still propagates it, with the sampled
//! flag off, as W3C Trace Context requires of a participant that received one. An
//! unrecorded request that started its own trace has nothing anyone will ever see: it is
//! marked [`Unpropagated`], its steps make no spans and its upstream calls carry no
//! `traceparent` (the request goes upstream as the client sent it, with no `_meta` rewrite
//! and no header), so sampling at 1 % costs the other 99 % one root span and nothing more.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use serde_json::{Map, Value};
use switchboard_config::TelemetrySettings;
use switchboard_protocol::meta;

use crate::gateway::ClientCtx;

/// `_meta` key (and HTTP header) of W3C Trace Context's parent.
pub const TRACEPARENT: &str = "traceparent";
/// `_meta` key (and HTTP header) of W3C Trace Context's vendor state.
pub const TRACESTATE: &str = "tracestate";

/// The exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

/// The tracer and its exporter, one per gateway.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Telemetry")
    }
}

impl Telemetry {
    /// Builds the OTLP/HTTP exporter and the tracer. Blocking (the exporter's HTTP client
    /// is the blocking one, which must not be built or dropped on a runtime thread): call
    /// it from `spawn_blocking` or outside a runtime.
    pub fn start(settings: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(|error| TelemetryError(error.to_string()))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        // Bounded: at most `max_queue_size` (2,048) spans wait; more are dropped.
        let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                opentelemetry_sdk::trace::BatchConfigBuilder::default()
                    .with_scheduled_delay(settings.export_interval)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("switchboard");
        Ok(Telemetry {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
        })
    }

    /// Exports what is buffered and stops the exporter. Blocking, like [`Telemetry::start`].
    pub fn shutdown(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "telemetry: spans not exported at shutdown");
        }
        let _ = self.provider.shutdown();
    }

    /// The span of one client request: a child of the trace the request's
    /// `_meta.traceparent` names, else of the ambient context (a meta-tool re-entering the
    /// pipeline), else a new trace.
    ///
    /// Marked [`Unpropagated`] when it is not sampled and continues no trace: no
    /// `traceparent` from the client (a malformed one counts as sent: ours replaces it
    /// upstream) and no ambient span that continues one.
    pub(crate) fn request(&self, ctx: &ClientCtx, method: &str, params: Option<&Value>) -> Context {
        let (parent, continued) =
            match meta::get(params).filter(|meta| meta.contains_key(TRACEPARENT)) {
                // From an empty context: an ambient mark does not apply to a sent parent.
                Some(meta) => (
                    self.propagator
                        .extract_with_context(&Context::new(), &MetaCarrier(meta)),
                    true,
                ),
                None => {
                    let ambient = Context::current();
                    let continued = ambient.span().span_context().is_valid()
                        && ambient.get::<Unpropagated>().is_none();
                    (ambient, continued)
                }
            };
        let span = self
            .tracer
            .span_builder(format!("mcp {method}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("mcp.method", method.to_owned()),
                KeyValue::new("era", ctx.era.as_str()),
                KeyValue::new("transport", ctx.principal.face().as_str()),
            ])
            .start_with_context(&self.tracer, &parent);
        let sampled = span.span_context().is_sampled();
        let cx = parent.with_span(span);
        if sampled || continued {
            cx
        } else {
            cx.with_value(Unpropagated)
        }
    }

    /// The span of one pipeline step (its `before`, everything inside it, its `after`).
    /// None under an [`Unpropagated`] request: the request's own (unrecorded) context
    /// stands for it, and ending it again is a no-op.
    pub(crate) fn step(&self, parent: &Context, step: &'static str) -> Context {
        if parent.get::<Unpropagated>().is_some() {
            return parent.clone();
        }
        let span = self
            .tracer
            .span_builder(format!("step {step}"))
            .with_kind(SpanKind::Internal)
            .with_attributes([KeyValue::new("step", step)])
            .start_with_context(&self.tracer, parent);
        parent.with_span(span)
    }

    /// The span of one upstream call, a child of the ambient context (the innermost step,
    /// or the request). Its context goes to the server in `params._meta` and, for HTTP
    /// upstreams, in `headers`. None under an [`Unpropagated`] request: no span, and
    /// `params` and `headers` stay as they are.
    pub(crate) fn upstream(
        &self,
        call: UpstreamCall<'_>,
        params: &mut Value,
        headers: &mut Vec<(String, String)>,
    ) -> Option<Context> {
        let parent = Context::current();
        if parent.get::<Unpropagated>().is_some() {
            return None;
        }
        let span = self
            .tracer
            .span_builder(format!("upstream {}", call.method))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("server", call.server.to_owned()),
                KeyValue::new("tool", call.tool.to_owned()),
                KeyValue::new("mcp.method", call.method.to_owned()),
                KeyValue::new("era", call.era),
                KeyValue::new("transport", call.transport),
                KeyValue::new("instance", call.instance as i64),
            ])
            .start_with_context(&self.tracer, &parent);
        let cx = parent.with_span(span);
        let mut carried = Carried::default();
        self.propagator.inject_context(&cx, &mut carried);
        if let Some(traceparent) = carried.traceparent {
            let meta = meta::get_mut(params);
            meta.insert(TRACEPARENT.into(), Value::String(traceparent.clone()));
            match &carried.tracestate {
                Some(state) => meta.insert(TRACESTATE.into(), Value::String(state.clone())),
                None => meta.remove(TRACESTATE),
            };
            if call.transport == "http" {
                headers.retain(|(name, _)| {
                    !name.eq_ignore_ascii_case(TRACEPARENT)
                        && !name.eq_ignore_ascii_case(TRACESTATE)
                });
                headers.push((TRACEPARENT.into(), traceparent));
                if let Some(state) = carried.tracestate {
                    headers.push((TRACESTATE.into(), state));
                }
            }
        }
        if cx.span().is_recording() {
            cx.span()
                .set_attribute(KeyValue::new("bytes.out", json_len(params)));
        }
        Some(cx)
    }
}

/// Marks a request's context as unsampled with no trace to continue: nothing of it is
/// recorded, and nothing is sent upstream for it.
#[derive(Clone, Copy, Debug)]
struct Unpropagated;

/// What an upstream span is about.
pub(crate) struct UpstreamCall<'a> {
    pub server: &'a str,
    pub tool: &'a str,
    pub method: &'a str,
    pub era: &'static str,
    pub transport: &'static str,
    pub instance: u64,
}

/// Ends an upstream call's span with its outcome and the size of its answer.
pub(crate) fn end_upstream(cx: &Context, outcome: &Result<Value, switchboard_upstream::CallError>) {
    let span = cx.span();
    if span.is_recording() {
        let label = crate::server::call_outcome(outcome).as_str();
        span.set_attribute(KeyValue::new("outcome", label));
        match outcome {
            Ok(result) => span.set_attribute(KeyValue::new("bytes.in", json_len(result))),
            Err(error) => span.set_status(Status::error(error.to_string())),
        }
    }
    span.end();
}

/// Ends a request's or a step's span with its outcome.
pub(crate) fn end<T>(cx: &Context, outcome: &Result<T, crate::error::Error>) {
    let span = cx.span();
    if span.is_recording() {
        match outcome {
            Ok(_) => span.set_attribute(KeyValue::new("outcome", "ok")),
            Err(error) => {
                span.set_attribute(KeyValue::new("outcome", error.outcome()));
                span.set_status(Status::error(error.to_string()));
            }
        }
    }
    span.end();
}

/// Names the server and tool a request resolved to on its span.
pub(crate) fn resolved(cx: &Context, server: &str, tool: &str) {
    let span = cx.span();
    if span.is_recording() {
        span.set_attribute(KeyValue::new("server", server.to_owned()));
        span.set_attribute(KeyValue::new("tool", tool.to_owned()));
    }
}

/// A log span carrying the request's trace and span ids, so every log line written while
/// the request runs names them.
pub(crate) fn log_span(cx: &Context) -> tracing::Span {
    let span = cx.span();
    let context = span.span_context();
    tracing::info_span!(
        "request",
        trace_id = %context.trace_id(),
        span_id = %context.span_id()
    )
}

/// Copies an HTTP request's `traceparent` / `tracestate` headers into its params'
/// `_meta`, where the pipeline reads them (the header wins). Only called while tracing.
pub fn carry_headers(headers: &http::HeaderMap, params: &mut Option<Value>) {
    let Some(traceparent) = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let params = params.get_or_insert_with(|| Value::Object(Map::new()));
    if !params.is_object() {
        return; // refused by the pipeline as it is
    }
    let meta = meta::get_mut(params);
    meta.insert(TRACEPARENT.into(), Value::String(traceparent.to_owned()));
    match headers.get(TRACESTATE).and_then(|v| v.to_str().ok()) {
        Some(state) => meta.insert(TRACESTATE.into(), Value::String(state.to_owned())),
        None => meta.remove(TRACESTATE),
    };
}

/// `_meta` read as a W3C carrier.
struct MetaCarrier<'a>(&'a Map<String, Value>);

impl Extractor for MetaCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        [TRACEPARENT, TRACESTATE]
            .into_iter()
            .filter(|key| self.0.contains_key(*key))
            .collect()
    }
}

/// What the propagator writes for an upstream call.
#[derive(Default)]
struct Carried {
    traceparent: Option<String>,
    tracestate: Option<String>,
}

impl Injector for Carried {
    fn set(&mut self, key: &str, value: String) {
        match key {
            TRACEPARENT => self.traceparent = Some(value),
            TRACESTATE if !value.is_empty() => self.tracestate = Some(value),
            _ => {}
        }
    }
}

/// The size of a value as JSON, counted without building the text.
fn json_len(value: &Value) -> i64 {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0 as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_header_lands_in_meta_and_wins() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let mut params =
            Some(json!({"name": "x", "_meta": {"traceparent": "old", "tracestate": "a=b"}}));
        carry_headers(&headers, &mut params);
        let meta = &params.unwrap()["_meta"];
        assert_eq!(
            meta["traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert!(
            meta.get("tracestate").is_none(),
            "state belongs to the header's parent"
        );
        let mut none = None;
        carry_headers(&http::HeaderMap::new(), &mut none);
        assert!(none.is_none(), "no header, params untouched");
    }

    #[test]
    fn meta_reads_as_a_w3c_carrier() {
        let meta = json!({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "other": 1});
        let cx = TraceContextPropagator::new().extract(&MetaCarrier(meta.as_object().unwrap()));
        let parent = cx.span().span_context().clone();
        assert!(parent.is_remote() && parent.is_sampled());
        assert_eq!(
            parent.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
    }

    #[test]
    fn json_len_counts_the_serialized_bytes() {
        let value = json!({"a": [1, "two"], "b": null});
        assert_eq!(
            json_len(&value) as usize,
            serde_json::to_vec(&value).unwrap().len()
        );
    }
}
