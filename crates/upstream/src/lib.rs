//! Upstream MCP transports: switchboard as an MCP client of stdio child processes,
//! Streamable HTTP servers (both eras) and deprecated HTTP+SSE servers.
//!
//! Architecture invariants:
//! - Forwarded payloads stay `serde_json::Value`; this crate adds or rewrites only the
//!   envelope (ids, progress tokens, protocol `_meta`), never drops fields.
//! - Every connection has exactly one owner task per resource (child process, stdout
//!   reader, stdin writer, SSE stream); dropping the [`Upstream`] handle ends them all.
//! - A caller waiting on a call always finishes: with the answer, the upstream's error,
//!   a timeout, its own cancellation, or `Closed` the moment the upstream dies.
//! - Queues are bounded: writes to a child wait for room, per-call event sinks drop
//!   notifications when their reader is slower than the upstream (never the final answer).

mod deadline;
mod detect;
mod error;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod guardian;
mod http;
pub mod idscan;
pub mod lines;
mod mux;
mod oauth;
pub mod sandbox;
mod sse;
mod stdio;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_config::{EraPreference, ServerSpec, TransportSpec};
use switchboard_protocol::{Era, RpcError, meta};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use detect::EraCache;
pub use error::{CallError, ConnectError};

/// What the gateway tells upstreams about itself.
pub const CLIENT_NAME: &str = "switchboard";
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Settings for connecting to one upstream, derived from its `ServerSpec`.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub server: String,
    pub spec: ServerSpec,
    pub max_message_bytes: usize,
    pub probe_timeout: Duration,
    pub connect_timeout: Duration,
    /// Capabilities declared to legacy upstreams at `initialize` (sampling, elicitation,
    /// roots), so their server→client requests can be bridged to clients that have them.
    pub legacy_client_capabilities: Value,
    /// The tenant whose credentials `spec` carries (a `per_tenant` server's instance), so
    /// what the connection obtains with them (OAuth tokens) stays that tenant's.
    pub tenant: Option<String>,
}

/// What the upstream said about itself when we connected.
#[derive(Clone, Debug)]
pub struct Handshake {
    pub era: Era,
    pub protocol_version: String,
    pub capabilities: Value,
    pub server_info: Value,
    pub instructions: Option<String>,
}

/// Something an upstream sent in relation to one call.
#[derive(Debug)]
pub enum CallEvent {
    /// `notifications/progress` (token already rewritten back to the caller's) or
    /// `notifications/message` that belongs to the call.
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A legacy server→client request (sampling, elicitation, roots) made while the call
    /// was in flight. The reply goes back to the upstream.
    Request(ServerRequest),
}

/// A server→client request from a legacy upstream.
#[derive(Debug)]
pub struct ServerRequest {
    pub method: String,
    pub params: Option<Value>,
    pub reply: oneshot::Sender<Result<Value, RpcError>>,
}

/// Something an upstream sent that belongs to no call.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// list_changed, resources/updated, unrelated log messages.
    Notification {
        method: String,
        params: Option<Value>,
    },
    /// A server→client request no in-flight call could own.
    Request(ServerRequest),
    /// The connection is gone (process exited, stream closed).
    Closed { reason: String },
    /// A sandboxed instance ended: the enforcement events not reported yet, and the limit
    /// that ended it, if one did. Sent before [`UpstreamEvent::Closed`].
    SandboxEnded {
        hits: sandbox::Counters,
        killed: Option<sandbox::LimitHit>,
    },
}

/// Per-call options.
#[derive(Debug)]
pub struct CallOptions {
    pub timeout: Duration,
    pub cancel: CancellationToken,
    /// Receives the call's notifications and server→client requests.
    pub events: Option<mpsc::Sender<CallEvent>>,
    /// The caller's progress token; when set the upstream is given a token of ours.
    pub progress_token: Option<Value>,
    /// Extra HTTP headers (e.g. `Mcp-Param-*` mirrored from `x-mcp-header`).
    pub headers: Vec<(String, String)>,
    /// Client capabilities to declare on a modern request (the calling client's).
    pub client_capabilities: Option<Value>,
    /// Client info to declare on a modern request.
    pub client_info: Option<Value>,
    /// Restart the timeout on each progress notification of the call…
    pub reset_timeout_on_progress: bool,
    /// …but never run longer than this.
    pub max_total_timeout: Option<Duration>,
    /// Who the call is for (the gateway's principal). A log message nothing ties to a call
    /// is attributed to one only while every call in flight has the same caller.
    pub caller: Option<String>,
}

impl CallOptions {
    pub fn new(timeout: Duration) -> CallOptions {
        CallOptions {
            timeout,
            cancel: CancellationToken::new(),
            events: None,
            progress_token: None,
            headers: Vec::new(),
            client_capabilities: None,
            client_info: None,
            reset_timeout_on_progress: false,
            max_total_timeout: None,
            caller: None,
        }
    }
}

/// The answer to a server→client request that was handed to a call. A call that ends
/// without answering (it completed first, and its events were dropped) does not answer
/// for the client: the request is offered to the gateway as an unowned one instead.
pub(crate) async fn answer_of(
    reply: oneshot::Receiver<Result<Value, RpcError>>,
    method: String,
    handed_to_call: Option<Option<Value>>,
    events: &mpsc::Sender<UpstreamEvent>,
) -> Result<Value, RpcError> {
    if let Ok(outcome) = reply.await {
        return outcome;
    }
    // `handed_to_call` carries the request's params when a call had it.
    let Some(params) = handed_to_call else {
        return Err(RpcError::internal(format!(
            "no client could answer {method}"
        )));
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let request = ServerRequest {
        method: method.clone(),
        params,
        reply: reply_tx,
    };
    if events.send(UpstreamEvent::Request(request)).await.is_ok()
        && let Ok(outcome) = reply_rx.await
    {
        return outcome;
    }
    Err(RpcError::internal(format!(
        "no client could answer {method}"
    )))
}

/// A live connection to one upstream server instance.
#[derive(Clone)]
pub struct Upstream {
    link: Link,
    handshake: Arc<Handshake>,
}

#[derive(Clone)]
enum Link {
    Stdio(Arc<stdio::StdioLink>),
    Http(Arc<http::HttpLink>),
    Sse(Arc<sse::SseLink>),
}

impl Upstream {
    /// Connects (spawning the process for stdio), detects the era unless configured or
    /// cached, and performs the handshake. Events not tied to a call go to `events`.
    pub async fn connect(
        options: ConnectOptions,
        cache: &EraCache,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Result<Upstream, ConnectError> {
        let deadline = options.connect_timeout;
        match tokio::time::timeout(deadline, Self::connect_inner(options, cache, events)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout(deadline)),
        }
    }

    async fn connect_inner(
        options: ConnectOptions,
        cache: &EraCache,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Result<Upstream, ConnectError> {
        let cache_key = EraCache::key(&options.spec.transport);
        let preference = match options.spec.era {
            EraPreference::Legacy => Some(Era::Legacy),
            EraPreference::Modern => Some(Era::Modern),
            EraPreference::Auto => cache.get(&cache_key),
        };
        let (link, handshake) = match &options.spec.transport {
            TransportSpec::Stdio { .. } => {
                let link = Arc::new(stdio::StdioLink::spawn(&options, events)?);
                let handshake = detect::stdio(&link.mux, &options, preference).await;
                match handshake {
                    Ok(handshake) => (Link::Stdio(link), handshake),
                    Err(error) => {
                        link.shutdown().await;
                        return Err(error);
                    }
                }
            }
            TransportSpec::Http { .. } => {
                match detect::http(&options, preference, events.clone()).await? {
                    detect::HttpOutcome::Streamable(link, handshake) => {
                        (Link::Http(link), handshake)
                    }
                    detect::HttpOutcome::Sse(link, handshake) => (Link::Sse(link), handshake),
                }
            }
            TransportSpec::Sse { url, headers } => {
                let link = Arc::new(sse::SseLink::connect(&options, url, headers, events).await?);
                let handshake = detect::initialize(&link.mux, &options).await?;
                (Link::Sse(link), handshake)
            }
        };
        if options.spec.era == EraPreference::Auto {
            cache.put(cache_key, handshake.era);
        }
        Ok(Upstream {
            link,
            handshake: Arc::new(handshake),
        })
    }

    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    pub fn era(&self) -> Era {
        self.handshake.era
    }

    /// The transport, as a short label (`stdio`, `http`, `sse`).
    pub fn transport(&self) -> &'static str {
        match &self.link {
            Link::Stdio(_) => "stdio",
            Link::Http(_) => "http",
            Link::Sse(_) => "sse",
        }
    }

    /// Sends a request and waits for its outcome.
    pub async fn request(
        &self,
        method: &str,
        params: Option<Value>,
        options: CallOptions,
    ) -> Result<Value, CallError> {
        let params = self.prepare_params(params, &options);
        match &self.link {
            Link::Stdio(link) => link.mux.request(method, params, options).await,
            Link::Sse(link) => link.mux.request(method, params, options).await,
            Link::Http(link) => link.request(method, params, options).await,
        }
    }

    /// Sends a notification (e.g. `notifications/roots/list_changed`).
    pub async fn notify(&self, method: &str, params: Option<Value>) -> Result<(), CallError> {
        match &self.link {
            Link::Stdio(link) => link.mux.notify(method, params).await,
            Link::Sse(link) => link.mux.notify(method, params).await,
            Link::Http(link) => link.notify(method, params).await,
        }
    }

    /// Whether the connection is still usable.
    pub fn is_alive(&self) -> bool {
        match &self.link {
            Link::Stdio(link) => link.mux.is_alive(),
            Link::Sse(link) => link.mux.is_alive(),
            Link::Http(link) => link.is_alive(),
        }
    }

    /// Enforcement events of a sandboxed stdio instance (OOM kills, refused forks) since
    /// the last call; `None` when the instance has no sandbox.
    pub fn take_sandbox_hits(&self) -> Option<sandbox::Counters> {
        match &self.link {
            Link::Stdio(link) => link.take_sandbox_hits(),
            _ => None,
        }
    }

    /// The child's process id (stdio only).
    pub fn pid(&self) -> Option<u32> {
        match &self.link {
            Link::Stdio(link) => link.pid(),
            _ => None,
        }
    }

    /// Ends the connection gracefully: stdio closes stdin, waits, then signals the
    /// process group (TERM, then KILL); HTTP ends the session.
    pub async fn shutdown(&self) {
        match &self.link {
            Link::Stdio(link) => link.shutdown().await,
            Link::Sse(link) => link.shutdown(),
            Link::Http(link) => link.shutdown().await,
        }
    }

    /// Adds the modern per-request `_meta` fields; legacy requests travel as given.
    fn prepare_params(&self, params: Option<Value>, options: &CallOptions) -> Option<Value> {
        if self.handshake.era != Era::Modern {
            // The per-request log level is modern; legacy servers get `logging/setLevel`.
            return params.map(|mut params| {
                if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                    meta.remove(meta::LOG_LEVEL);
                    if meta.is_empty() {
                        params.as_object_mut().map(|o| o.remove("_meta"));
                    }
                }
                params
            });
        }
        let mut params = params.unwrap_or_else(|| json!({}));
        let protocol_version = self.handshake.protocol_version.clone();
        let meta = meta::get_mut(&mut params);
        meta.insert(
            meta::PROTOCOL_VERSION.into(),
            Value::String(protocol_version),
        );
        meta.insert(
            meta::CLIENT_CAPABILITIES.into(),
            options
                .client_capabilities
                .clone()
                .unwrap_or_else(|| json!({})),
        );
        meta.insert(
            meta::CLIENT_INFO.into(),
            options.client_info.clone().unwrap_or_else(client_info),
        );
        Some(params)
    }
}

/// switchboard's own `Implementation` object.
pub fn client_info() -> Value {
    json!({ "name": CLIENT_NAME, "version": CLIENT_VERSION })
}
