//! What clients subscribe to on upstreams, and who hears what.
//!
//! - **Logging.** A log message of a shared upstream that nothing ties to a call goes only
//!   to the sessions that asked that server for logging (`logging/setLevel`), on their
//!   session stream, never into another session's call; a per-session instance's message
//!   goes to its own session only, a per-tenant instance's to its tenant's sessions only.
//! - **Resources.** Every holder of a resource subscription counts: a legacy session's
//!   `resources/subscribe`, or one modern `subscriptions/listen` stream. A legacy upstream
//!   gets `resources/subscribe` when the first holder of a URI arrives and
//!   `resources/unsubscribe` when the last one leaves; a modern upstream's listen stream
//!   watches the URI while anyone holds it. Updates reach holders as `Change`s.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_config::Sharing;
use switchboard_protocol::{Era, RpcError};
use switchboard_upstream::CallOptions;

use crate::gateway::{ClientCtx, Gateway};
use crate::server::{Server, Source};

/// The sessions that asked one server for log messages, and the tenant of each.
pub(crate) type LogSubscribers = std::collections::BTreeMap<String, Option<Arc<str>>>;

impl Gateway {
    /// `session` (of `tenant`) asked `server` for log messages.
    pub(crate) fn subscribe_logs(&self, server: &str, session: &str, tenant: Option<&str>) {
        self.inner
            .log_subscribers
            .lock()
            .entry(server.to_owned())
            .or_default()
            .insert(session.to_owned(), tenant.map(Arc::from));
    }

    /// The sessions an unowned log message of `server` goes to: its log subscribers; of
    /// those, only the owner of the instance that sent it (per-session sharing) or the
    /// sessions of the tenant it serves (per-tenant sharing).
    pub(crate) fn log_audience(&self, server: &str, source: &Source) -> BTreeSet<String> {
        let subscribers = self.inner.log_subscribers.lock();
        let Some(sessions) = subscribers.get(server) else {
            return BTreeSet::new();
        };
        sessions
            .iter()
            .filter(|(session, tenant)| match (&source.owner, &source.tenant) {
                (Some(owner), _) => *session == owner,
                (None, Some(served)) => served.0 == **tenant,
                (None, None) => true,
            })
            .map(|(session, _)| session.clone())
            .collect()
    }

    /// A legacy session's `resources/subscribe` / `resources/unsubscribe` of `uri` (the
    /// upstream's) on `server`, held for the session: `Ok(None)` when the session has the
    /// server's instance to itself (a legacy `per_session` one), so the request goes to it
    /// as is — forwarding is the pipeline terminal's job, not this one's.
    pub(crate) async fn session_subscription(
        &self,
        ctx: &ClientCtx,
        method: &str,
        server: &str,
        uri: &str,
    ) -> Result<Option<Value>, crate::error::Error> {
        let owner = self
            .server(server)
            .ok_or_else(|| crate::error::Error::invalid_params("unknown server"))?;
        if owner.policy().sharing == Sharing::PerSession
            && owner.upstream(&self.inner.era_cache).await?.era() == Era::Legacy
        {
            // The session's own instance: nobody to share the subscription with.
            return Ok(None);
        }
        let on = method == "resources/subscribe";
        self.hold(&owner, ctx.principal.session(), uri, on).await?;
        Ok(Some(json!({})))
    }

    /// A modern listen stream (`holder`) starts or stops watching exposed URIs.
    pub(crate) async fn watch_resources(&self, holder: &str, uris: &[String], on: bool) {
        let catalog = self.catalog();
        for uri in uris {
            let Some((server, original)) = catalog.resolve_uri(uri) else {
                continue;
            };
            let Some(server) = self.server(&server) else {
                continue;
            };
            if let Err(error) = self.hold(&server, holder, original, on).await {
                tracing::debug!(server = %server.name, uri, %error, "resource subscription failed");
            }
        }
    }

    /// A server (re)connected: its upstream hears again of every URI still held (a
    /// restarted process has forgotten them). Owned by the upstream calls it makes.
    pub(crate) fn resubscribe(&self, server: Arc<Server>) {
        let gateway = self.clone();
        self.spawn(async move {
            let holds = server.holds.lock().await;
            for uri in holds.keys() {
                if let Err(error) = gateway.tell_upstream(&server, uri, true).await {
                    tracing::debug!(server = %server.name, uri, %error, "resubscription failed");
                }
            }
        });
    }

    /// A session ended: it holds no subscription any more.
    pub(crate) async fn drop_subscriptions(&self, session: &str) {
        for sessions in self.inner.log_subscribers.lock().values_mut() {
            sessions.remove(session);
        }
        self.inner.views.lock().remove(session);
        for server in self.servers() {
            let held: Vec<String> = server
                .holds
                .lock()
                .await
                .iter()
                .filter(|(_, holders)| holders.contains(session))
                .map(|(uri, _)| uri.clone())
                .collect();
            for uri in held {
                let _ = self.hold(&server, session, &uri, false).await;
            }
        }
    }

    /// Adds or removes one holder of `uri` on `server`; the upstream hears of the first
    /// holder and of the last one leaving. Serialized per server, so a subscribe and an
    /// unsubscribe never overtake each other upstream.
    async fn hold(
        &self,
        server: &Arc<Server>,
        holder: &str,
        uri: &str,
        on: bool,
    ) -> Result<(), RpcError> {
        let mut holds = server.holds.lock().await;
        let holders = holds.entry(uri.to_owned()).or_default();
        let changed = if on {
            holders.insert(holder.to_owned())
        } else {
            holders.remove(holder)
        };
        let upstream_must_hear = changed && holders.len() == usize::from(on);
        if holders.is_empty() {
            holds.remove(uri);
        }
        if !upstream_must_hear {
            return Ok(());
        }
        let told = self.tell_upstream(server, uri, on).await;
        if told.is_err() && on {
            holds.remove(uri);
        }
        told
    }

    async fn tell_upstream(
        &self,
        server: &Arc<Server>,
        uri: &str,
        on: bool,
    ) -> Result<(), RpcError> {
        let upstream = server.upstream(&self.inner.era_cache).await?;
        if upstream.era() == Era::Modern {
            server.watch_resource(uri, on);
            return Ok(());
        }
        let method = if on {
            "resources/subscribe"
        } else {
            "resources/unsubscribe"
        };
        upstream
            .request(
                method,
                Some(json!({ "uri": uri })),
                CallOptions::new(server.request_timeout),
            )
            .await
            .map(drop)
            .map_err(|e| e.to_rpc_error(&server.name))
    }
}
