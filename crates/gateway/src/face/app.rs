//! Everything `switchboard serve` answers on its listener: `/mcp`, `/metrics` and (with
//! an admin token) `/admin`, each behind the Origin/Host check (`origin`), and the
//! probes `/healthz` and `/readyz` (`probes`), which are not.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::middleware;
use axum::routing::get;
use switchboard_config::ListenSettings;

use super::origin::{OriginPolicy, guard};
use crate::gateway::Gateway;
use crate::metrics::Format;

/// The routes of the HTTP listener.
pub fn app(gateway: Gateway, listen: &ListenSettings) -> Router {
    let metrics_gateway = gateway.clone();
    let metrics = Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let gateway = metrics_gateway.clone();
                async move {
                    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
                    let format = Format::negotiate(accept);
                    (
                        [("content-type", format.content_type())],
                        gateway.render_metrics(format),
                    )
                }
            }),
        )
        .layer(middleware::from_fn_with_state(
            Arc::new(OriginPolicy::for_metrics(listen)),
            guard,
        ));
    let mut app = super::http::router(gateway.clone(), listen)
        .merge(metrics)
        .merge(super::ws::router(gateway.clone(), listen))
        .merge(super::probes::router(gateway.clone()))
        .merge(super::agent::router(gateway.clone(), listen))
        .merge(super::cluster::router(
            gateway.clone(),
            listen.max_body_bytes,
        ));
    if let Some(admin) = super::admin::router(gateway, listen) {
        let admin = admin.layer(middleware::from_fn_with_state(
            Arc::new(OriginPolicy::new(listen)),
            guard,
        ));
        app = app.merge(admin);
        tracing::info!("admin API on /admin");
    }
    app
}
