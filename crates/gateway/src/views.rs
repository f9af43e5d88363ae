//! Per-session views of the catalog. A `per_session` server runs one instance per client
//! session, and an instance may change what it offers (a tool added by a call): its
//! `list_changed` re-lists that instance only, its session is told, and that session's
//! view is the catalog with the instance's own lists in place of the server's. Every other
//! session keeps the server's lists and hears nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::catalog::{Catalog, ListKind, ServerLists};
use crate::gateway::{Change, Gateway};
use crate::server::Server;

/// A session's catalog, built from the base snapshot and the session's own lists.
pub(crate) struct View {
    base: Arc<Catalog>,
    own: Vec<(String, Arc<ServerLists>)>,
    catalog: Arc<Catalog>,
}

impl Gateway {
    /// The catalog `session` sees: the shared snapshot, unless one of its own per-session
    /// instances lists something else.
    pub(crate) fn catalog_for(&self, session: &str) -> Arc<Catalog> {
        let base = self.catalog();
        if !self.inner.has_views.load(Ordering::Acquire) {
            return base;
        }
        let own: Vec<(String, Arc<ServerLists>)> = self
            .inner
            .servers
            .read()
            .values()
            .filter_map(|s| {
                s.own_lists_for(session)
                    .map(|l| (s.name.clone(), self.inner.screen.session_lists(l)))
            })
            .collect();
        if own.is_empty() {
            return base;
        }
        let mut views = self.inner.views.lock();
        if let Some(view) = views.get(session)
            && Arc::ptr_eq(&view.base, &base)
            && same_lists(&view.own, &own)
        {
            return view.catalog.clone();
        }
        let (mut lists, digests) = self.server_lists();
        // A session's own instances are not in the registry: hashed at the build.
        lists.extend(own.iter().cloned());
        let catalog = Arc::new(self.build_catalog(&lists, &digests));
        // Views of an older snapshot are stale (and may belong to sessions long gone).
        views.retain(|_, view| Arc::ptr_eq(&view.base, &base));
        views.insert(
            session.to_owned(),
            View {
                base,
                own,
                catalog: catalog.clone(),
            },
        );
        catalog
    }

    /// A per-session instance announced a list change: re-list that instance, and tell
    /// its session only. Runs off the signal loop.
    pub(crate) fn session_list_changed(
        &self,
        server: Arc<Server>,
        kind: ListKind,
        instance: u64,
        session: String,
    ) {
        let gateway = self.clone();
        self.spawn(async move {
            match server.refresh_instance(instance, kind).await {
                Ok(Some(())) => {
                    gateway.inner.has_views.store(true, Ordering::Release);
                    gateway.inner.views.lock().remove(&session);
                    let _ = gateway
                        .inner
                        .changes
                        .send(Change::SessionListChanged { kind, session });
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(server = %server.name, %error, "session list refresh failed")
                }
            }
        });
    }
}

fn same_lists(a: &[(String, Arc<ServerLists>)], b: &[(String, Arc<ServerLists>)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((n1, l1), (n2, l2))| n1 == n2 && Arc::ptr_eq(l1, l2))
}
