//! Roots for legacy upstreams. A legacy server asks `roots/list` on its own schedule (after
//! `initialized`, after `notifications/roots/list_changed`), outside any call, so no single
//! client owns the question. The gateway answers with the union of the roots of the legacy
//! clients it can ask right now (a stdio client, an HTTP session with its GET stream open),
//! and tells upstreams `roots/list_changed` whenever such a client arrives or says its
//! roots changed. A `per_tenant` instance hears only its own tenant's clients' roots.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_protocol::{Era, RpcError};
use tokio::sync::{mpsc, oneshot};

use crate::gateway::{Gateway, PeerRequest};
use crate::server::TenantKey;

/// How long one client may take to list its roots.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// A legacy client that can take server→client requests outside a call.
#[derive(Clone)]
pub(crate) struct RootsPeer {
    pub(crate) peer: mpsc::Sender<PeerRequest>,
    /// The client's tenant: only that tenant's `per_tenant` instances see its roots.
    tenant: Option<Arc<str>>,
}

impl Gateway {
    /// Registers a client that declared `roots` and can be asked at any time; upstreams
    /// are told to ask again.
    pub fn roots_peer_joined(
        &self,
        session: &str,
        tenant: Option<&str>,
        peer: mpsc::Sender<PeerRequest>,
    ) {
        let tenant = tenant.map(Arc::from);
        self.inner
            .roots_peers
            .lock()
            .insert(session.to_owned(), RootsPeer { peer, tenant });
        self.roots_changed();
    }

    pub fn roots_peer_left(&self, session: &str) {
        if self.inner.roots_peers.lock().remove(session).is_some() {
            self.roots_changed();
        }
    }

    /// A client's roots changed (or the set of clients did): every legacy upstream
    /// instance hears `notifications/roots/list_changed`.
    pub fn roots_changed(&self) {
        let gateway = self.clone();
        self.spawn(async move {
            for server in gateway.servers() {
                for instance in server.instances_snapshot() {
                    if instance.upstream.era() == Era::Legacy && instance.is_alive() {
                        let _ = instance
                            .upstream
                            .notify("notifications/roots/list_changed", None)
                            .await;
                    }
                }
            }
        });
    }

    /// The answer to an upstream's unowned `roots/list`: every reachable client's roots,
    /// each URI once; for a `per_tenant` instance (`tenant`), its tenant's clients only.
    pub(crate) async fn union_of_roots(
        &self,
        tenant: Option<&TenantKey>,
    ) -> Result<Value, RpcError> {
        let peers: Vec<RootsPeer> = self
            .inner
            .roots_peers
            .lock()
            .values()
            .filter(|peer| tenant.is_none_or(|tenant| tenant.0 == peer.tenant))
            .cloned()
            .collect();
        let asks = peers.into_iter().map(|peer| async move {
            let (reply, answer) = oneshot::channel();
            let request = PeerRequest {
                method: "roots/list".into(),
                params: None,
                reply,
            };
            if peer.peer.send(request).await.is_err() {
                return Vec::new();
            }
            match tokio::time::timeout(ASK_TIMEOUT, answer).await {
                Ok(Ok(Ok(result))) => result
                    .get("roots")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                _ => Vec::new(),
            }
        });
        let mut roots: Vec<Value> = Vec::new();
        for root in futures::future::join_all(asks).await.into_iter().flatten() {
            let uri = root.get("uri").cloned();
            if !roots.iter().any(|known| known.get("uri") == uri.as_ref()) {
                roots.push(root);
            }
        }
        Ok(json!({ "roots": roots }))
    }
}
