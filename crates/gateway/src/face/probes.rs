//! `/healthz` and `/readyz` for orchestrators (Kubernetes liveness and readiness probes).
//!
//! Both are unauthenticated and skip the Origin/Host check — a kubelet addresses the pod
//! by its IP — so they answer only what is safe for anyone to read: `/healthz` a fixed
//! `ok`, `/readyz` the verdict and counts of `readiness::Readiness` (no server names,
//! no errors, no paths). `GET` and `HEAD` only.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::gateway::Gateway;

/// The probe routes.
pub(crate) fn router(gateway: Gateway) -> Router {
    Router::new().route("/healthz", get(healthz)).route(
        "/readyz",
        get(move || {
            let gateway = gateway.clone();
            async move { readyz(&gateway) }
        }),
    )
}

/// Liveness: the process runs and its runtime answers.
async fn healthz() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        r#"{"status":"ok"}"#,
    )
}

/// Readiness: 200 when ready, 503 otherwise, with the verdict as JSON. A probe also
/// starts required servers that failed again (in the background, within their backoff).
fn readyz(gateway: &Gateway) -> impl IntoResponse + use<> {
    let readiness = gateway.readiness();
    if !readiness.ready {
        gateway.restart_failed_required();
    }
    let status = match readiness.ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut body = serde_json::to_value(&readiness).unwrap_or_default();
    body["status"] = match readiness.ready {
        true => "ready".into(),
        false => "not_ready".into(),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
}
