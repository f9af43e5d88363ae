//! DNS-rebinding protection for every HTTP route: `Host` must be local or allowed, and
//! `Origin`, when present, too. `/mcp` and `/admin` share one policy; `/metrics` may also
//! allow a scraper's host (`[listen] metrics_allowed_hosts`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchboard_config::ListenSettings;

/// Which `Host` and `Origin` values a route accepts besides the local ones.
pub(crate) struct OriginPolicy {
    allowed_origins: Vec<String>,
    allowed_hosts: Vec<String>,
    any_host: bool,
}

impl OriginPolicy {
    /// The policy of `/mcp` and `/admin`.
    pub(crate) fn new(listen: &ListenSettings) -> OriginPolicy {
        OriginPolicy {
            allowed_origins: listen.allowed_origins.clone(),
            allowed_hosts: listen.allowed_hosts.clone(),
            any_host: false,
        }
    }

    /// The policy of `/metrics`: the same, plus the scrapers' hosts.
    pub(crate) fn for_metrics(listen: &ListenSettings) -> OriginPolicy {
        let mut policy = OriginPolicy::new(listen);
        for host in &listen.metrics_allowed_hosts {
            if host == "*" {
                policy.any_host = true;
            } else {
                policy.allowed_hosts.push(host.clone());
            }
        }
        policy
    }

    /// Checks a request's `Host` and `Origin`; the error says which one failed.
    pub(crate) fn check(&self, request_headers: &HeaderMap) -> Result<(), String> {
        let host = request_headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let host_ok = self.any_host
            || is_local_host(host)
            || self.allowed_hosts.iter().any(|allowed| {
                allowed == host || host.rsplit_once(':').is_some_and(|(h, _)| h == allowed)
            });
        if !host_ok {
            return Err(format!("Host `{host}` is not allowed"));
        }
        if let Some(origin) = request_headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let local = origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && is_local_host(rest)
            });
            if !(local || self.allowed_origins.iter().any(|o| o == origin)) {
                return Err(format!("Origin `{origin}` is not allowed"));
            }
        }
        Ok(())
    }
}

fn is_local_host(host: &str) -> bool {
    let bare = if host.starts_with('[') {
        host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    matches!(bare, "localhost" | "127.0.0.1" | "::1")
}

/// Middleware for routes outside `/mcp` (which answers in JSON-RPC itself): 403 with a
/// JSON `{"error": ...}` body.
pub(crate) async fn guard(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match policy.check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(reason) => (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": reason }).to_string(),
        )
            .into_response(),
    }
}
