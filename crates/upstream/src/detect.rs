//! Era detection and handshakes, as the 2026-07-28 versioning page describes: stdio probes
//! with `server/discover` and falls back to `initialize` on anything but a modern answer;
//! HTTP tries a modern POST, then a legacy `initialize`, then the 2024-11-05 HTTP+SSE
//! transport. Verdicts are cached per server definition so a silent legacy server costs
//! the probe timeout once, not on every connect.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_config::TransportSpec;
use switchboard_protocol::{Era, Message, ProtocolVersion, RequestId, RpcError, meta};
use tokio::sync::mpsc;

use crate::http::{Exchange, HttpLink, header_map};
use crate::mux::Mux;
use crate::sse::SseLink;
use crate::{
    CallError, CallOptions, ConnectError, ConnectOptions, Handshake, UpstreamEvent, client_info,
};

/// Remembered era verdicts, keyed by the transport definition.
#[derive(Default)]
pub struct EraCache {
    verdicts: Mutex<HashMap<String, Era>>,
}

impl EraCache {
    pub fn new() -> EraCache {
        EraCache::default()
    }

    pub(crate) fn key(spec: &TransportSpec) -> String {
        format!("{spec:?}")
    }

    pub(crate) fn get(&self, key: &str) -> Option<Era> {
        self.verdicts.lock().get(key).copied()
    }

    pub(crate) fn put(&self, key: String, era: Era) {
        self.verdicts.lock().insert(key, era);
    }
}

fn discover_params() -> Value {
    json!({ "_meta": {
        meta::PROTOCOL_VERSION: ProtocolVersion::MODERN,
        meta::CLIENT_INFO: client_info(),
        meta::CLIENT_CAPABILITIES: {},
    }})
}

fn initialize_params(options: &ConnectOptions) -> Value {
    json!({
        "protocolVersion": ProtocolVersion::LEGACY_LATEST,
        "capabilities": options.legacy_client_capabilities,
        "clientInfo": client_info(),
    })
}

/// What a `server/discover` outcome says about the server.
enum Verdict {
    Modern(Handshake),
    Legacy,
    /// `UnsupportedProtocolVersionError` listing our modern version: ask again with it.
    Retry,
    Refused(RpcError),
}

/// Probes after an `UnsupportedProtocolVersionError` that named our version.
const DISCOVER_RETRIES: usize = 1;

/// The answer to `UnsupportedProtocolVersionError` (2026-07-28 versioning: "retry using
/// the advertised `supported` versions"): our modern version again, else the legacy
/// handshake when a legacy version is supported, else give up.
fn judge_unsupported(error: RpcError) -> Verdict {
    let supported: Vec<String> = error
        .data
        .as_ref()
        .and_then(|d| d.get("supported"))
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if supported.iter().any(|v| v == ProtocolVersion::MODERN) {
        Verdict::Retry
    } else if supported.iter().any(|v| ProtocolVersion::is_legacy(v)) {
        Verdict::Legacy
    } else {
        Verdict::Refused(error)
    }
}

fn judge_discover(outcome: Result<Value, RpcError>) -> Verdict {
    match outcome {
        Ok(result) => {
            let versions: Vec<&str> = result
                .get("supportedVersions")
                .and_then(Value::as_array)
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if versions.iter().any(|v| ProtocolVersion::is_modern(v)) {
                let server_info = meta::get(Some(&result))
                    .and_then(|m| m.get(meta::SERVER_INFO))
                    .or_else(|| result.get("serverInfo"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                Verdict::Modern(Handshake {
                    era: Era::Modern,
                    protocol_version: ProtocolVersion::MODERN.to_owned(),
                    capabilities: result
                        .get("capabilities")
                        .cloned()
                        .unwrap_or_else(|| json!({})),
                    server_info,
                    instructions: result
                        .get("instructions")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            } else {
                Verdict::Legacy
            }
        }
        Err(error) if error.code == switchboard_protocol::error::UNSUPPORTED_PROTOCOL_VERSION => {
            judge_unsupported(error)
        }
        Err(error) if error.is_modern_error() => Verdict::Refused(error),
        Err(_) => Verdict::Legacy,
    }
}

fn legacy_handshake(result: Value) -> Result<Handshake, ConnectError> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !ProtocolVersion::is_legacy(version) {
        return Err(ConnectError::Handshake(format!(
            "server chose unsupported protocol version {version:?}"
        )));
    }
    Ok(Handshake {
        era: Era::Legacy,
        protocol_version: version.to_owned(),
        capabilities: result
            .get("capabilities")
            .cloned()
            .unwrap_or_else(|| json!({})),
        server_info: result
            .get("serverInfo")
            .cloned()
            .unwrap_or_else(|| json!({})),
        instructions: result
            .get("instructions")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn call_to_connect(error: CallError) -> ConnectError {
    match error {
        CallError::Rpc(error) => ConnectError::Refused(error),
        CallError::Closed(reason) => ConnectError::Closed(reason),
        other => ConnectError::Handshake(other.to_string()),
    }
}

/// Stdio: probe (unless the era is known), then handshake.
pub(crate) async fn stdio(
    mux: &Mux,
    options: &ConnectOptions,
    known: Option<Era>,
) -> Result<Handshake, ConnectError> {
    if known != Some(Era::Legacy) {
        let timeout = if known == Some(Era::Modern) {
            options.connect_timeout
        } else {
            options.probe_timeout
        };
        let mut verdict = Verdict::Retry;
        for _ in 0..=DISCOVER_RETRIES {
            let outcome = mux
                .request(
                    "server/discover",
                    Some(discover_params()),
                    CallOptions::new(timeout),
                )
                .await;
            verdict = match outcome {
                Ok(result) => judge_discover(Ok(result)),
                Err(CallError::Rpc(error)) => judge_discover(Err(error)),
                Err(CallError::Closed(reason)) => return Err(ConnectError::Closed(reason)),
                Err(_) => Verdict::Legacy, // silence: a legacy server ignoring pre-initialize requests
            };
            if !matches!(verdict, Verdict::Retry) {
                break;
            }
        }
        match verdict {
            Verdict::Modern(handshake) => return Ok(handshake),
            Verdict::Refused(error) => return Err(ConnectError::Refused(error)),
            Verdict::Retry => {
                return Err(ConnectError::Handshake(
                    "server/discover kept answering UnsupportedProtocolVersionError".into(),
                ));
            }
            Verdict::Legacy if known == Some(Era::Modern) => {
                return Err(ConnectError::Handshake(
                    "configured as modern but the server did not answer server/discover".into(),
                ));
            }
            Verdict::Legacy => {}
        }
    }
    match initialize(mux, options).await {
        // A slow dual-era server answered our (timed-out) probe after all and now speaks
        // the modern era on this connection: it refuses `initialize` with a modern error.
        // It is modern: discover again, patiently.
        Err(ConnectError::Refused(error)) if error.is_modern_error() && known.is_none() => {
            let outcome = mux
                .request(
                    "server/discover",
                    Some(discover_params()),
                    CallOptions::new(options.connect_timeout),
                )
                .await;
            match outcome.map_err(|e| match e {
                CallError::Rpc(error) => error,
                other => RpcError::internal(other.to_string()),
            }) {
                Ok(result) => match judge_discover(Ok(result)) {
                    Verdict::Modern(handshake) => Ok(handshake),
                    _ => Err(ConnectError::Refused(error)),
                },
                Err(_) => Err(ConnectError::Refused(error)),
            }
        }
        other => other,
    }
}

/// The legacy handshake over a multiplexed link.
pub(crate) async fn initialize(
    mux: &Mux,
    options: &ConnectOptions,
) -> Result<Handshake, ConnectError> {
    let result = mux
        .request(
            "initialize",
            Some(initialize_params(options)),
            CallOptions::new(options.connect_timeout),
        )
        .await
        .map_err(call_to_connect)?;
    let handshake = legacy_handshake(result)?;
    mux.notify("notifications/initialized", None)
        .await
        .map_err(call_to_connect)?;
    Ok(handshake)
}

pub(crate) enum HttpOutcome {
    Streamable(Arc<HttpLink>, Handshake),
    Sse(Arc<SseLink>, Handshake),
}

/// HTTP: modern POST, then legacy `initialize`, then HTTP+SSE.
pub(crate) async fn http(
    options: &ConnectOptions,
    known: Option<Era>,
    events: mpsc::Sender<UpstreamEvent>,
) -> Result<HttpOutcome, ConnectError> {
    let TransportSpec::Http {
        url,
        headers,
        oauth,
    } = &options.spec.transport
    else {
        unreachable!("detect::http is only called for HTTP specs")
    };
    let headers_map = header_map(headers).map_err(ConnectError::Http)?;
    let url =
        reqwest::Url::parse(url).map_err(|e| ConnectError::Http(format!("url {url}: {e}")))?;
    let auth = crate::oauth::for_server(
        &options.server,
        options.tenant.as_deref(),
        &url,
        &headers_map,
        oauth.as_ref(),
    );
    let new_link = |era| {
        HttpLink::new(
            options.server.clone(),
            url.clone(),
            headers_map.clone(),
            auth.clone(),
            era,
            options.max_message_bytes,
            events.clone(),
        )
    };
    if known != Some(Era::Legacy) {
        let link = new_link(Era::Modern);
        let mut verdict = Verdict::Retry;
        for attempt in 0..=DISCOVER_RETRIES {
            // A retry is a new request: a new id.
            let id = match attempt {
                0 => RequestId::from(0),
                n => RequestId::String(format!("discover-retry-{n}")),
            };
            let probe = Message::request(id, "server/discover", Some(discover_params()));
            let exchange = link
                .exchange(&probe, &[], None)
                .await
                .map_err(|e| ConnectError::Http(e.to_string()))?;
            verdict = match exchange.0 {
                Exchange::Answer(outcome) => judge_discover(outcome),
                Exchange::Status { body, .. } => match Message::parse(body.as_bytes()) {
                    Ok(Message::Error { error, .. }) if error.is_modern_error() => {
                        judge_discover(Err(error))
                    }
                    _ => Verdict::Legacy,
                },
                Exchange::Accepted => Verdict::Legacy,
            };
            if !matches!(verdict, Verdict::Retry) {
                break;
            }
        }
        match verdict {
            Verdict::Modern(handshake) => {
                return Ok(HttpOutcome::Streamable(Arc::new(link), handshake));
            }
            Verdict::Refused(error) => return Err(ConnectError::Refused(error)),
            Verdict::Retry => {
                return Err(ConnectError::Handshake(
                    "server/discover kept answering UnsupportedProtocolVersionError".into(),
                ));
            }
            Verdict::Legacy if known == Some(Era::Modern) => {
                return Err(ConnectError::Handshake(
                    "configured as modern but the server is not".into(),
                ));
            }
            Verdict::Legacy => {}
        }
    }
    let link = Arc::new(new_link(Era::Legacy));
    let init = Message::request(
        RequestId::from(0),
        "initialize",
        Some(initialize_params(options)),
    );
    let (exchange, session) = link
        .exchange(&init, &[], None)
        .await
        .map_err(|e| ConnectError::Http(e.to_string()))?;
    match exchange {
        Exchange::Answer(Ok(result)) => {
            let handshake = legacy_handshake(result)?;
            link.set_session(session);
            *link.protocol_version.lock() = handshake.protocol_version.clone();
            link.notify("notifications/initialized", None)
                .await
                .map_err(call_to_connect)?;
            link.spawn_get_stream();
            Ok(HttpOutcome::Streamable(link, handshake))
        }
        Exchange::Answer(Err(error)) => Err(ConnectError::Refused(error)),
        Exchange::Status {
            status: 400 | 404 | 405,
            ..
        } => {
            let sse = Arc::new(SseLink::connect(options, url.as_str(), headers, events).await?);
            let handshake = initialize(&sse.mux, options).await?;
            Ok(HttpOutcome::Sse(sse, handshake))
        }
        Exchange::Status { status, body } => Err(ConnectError::Http(format!(
            "initialize answered {status}: {body}"
        ))),
        Exchange::Accepted => Err(ConnectError::Handshake("initialize answered 202".into())),
    }
}
