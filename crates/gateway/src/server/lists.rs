//! A server's last known lists: seeding from the stored catalog, full re-lists after a
//! start, one-kind refreshes after `list_changed` (shared or per-session instance), paged
//! reads, and the resource URIs watched on a modern server.

use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_config::Sharing;
use switchboard_protocol::RpcError;
use switchboard_upstream::{CallOptions, EraCache, Upstream};

use super::{Server, ServerSignal};
use crate::catalog::{ListKind, ServerLists};
const LIST_PAGES_MAX: usize = 100;

/// One kind of list, just read from an upstream.
struct Fresh {
    kind: ListKind,
    items: Vec<Value>,
    templates: Vec<Value>,
}

impl Fresh {
    /// `lists` with this kind replaced.
    fn apply(&self, lists: &ServerLists) -> ServerLists {
        let mut lists = lists.clone();
        match self.kind {
            ListKind::Tools => lists.tools = self.items.clone(),
            ListKind::Prompts => lists.prompts = self.items.clone(),
            ListKind::Resources => {
                lists.resources = self.items.clone();
                lists.templates = self.templates.clone();
            }
        }
        lists
    }
}

impl Server {
    pub fn lists(&self) -> Arc<ServerLists> {
        self.lists.load_full()
    }

    /// Seeds the lists of a dormant server from the last known catalog.
    pub(crate) fn seed_lists(&self, lists: Arc<ServerLists>) {
        self.lists.store(lists);
    }

    /// Lists everything after a (re)start and tells the gateway, which rebuilds the catalog.
    pub(super) async fn relist(&self, upstream: &Upstream) {
        if let Err(error) = self.refresh_all(upstream).await {
            tracing::warn!(server = %self.name, %error, "listing capabilities failed");
        }
        let _ = self
            .signals
            .send(ServerSignal::Connected(self.name.clone(), self.instance))
            .await;
    }

    /// Re-reads every list the server offers.
    async fn refresh_all(&self, upstream: &Upstream) -> Result<(), RpcError> {
        let capabilities = &upstream.handshake().capabilities;
        let mut lists = ServerLists::default();
        if capabilities.get("tools").is_some() {
            lists.tools = self.list(upstream, "tools/list", "tools").await?;
        }
        if capabilities.get("prompts").is_some() {
            lists.prompts = self.list(upstream, "prompts/list", "prompts").await?;
        }
        if capabilities.get("resources").is_some() {
            lists.resources = self.list(upstream, "resources/list", "resources").await?;
            lists.templates = self
                .list(upstream, "resources/templates/list", "resourceTemplates")
                .await
                .unwrap_or_default();
        }
        self.lists.store(Arc::new(lists));
        Ok(())
    }

    /// Re-reads one kind of list after the server said it changed.
    pub(crate) async fn refresh(
        self: &Arc<Self>,
        cache: &EraCache,
        kind: ListKind,
    ) -> Result<(), RpcError> {
        let upstream = self.upstream(cache).await?;
        let fresh = self.list_kind(&upstream, kind).await?;
        // Read-modify-write on the current lists (not a copy taken before the awaits), so a
        // concurrent refresh of another kind is never undone.
        self.lists.rcu(|current| fresh.apply(current));
        Ok(())
    }

    /// Re-reads one kind of list of one session's own instance (per-session sharing),
    /// which then serves that session's view. `None` when the instance is gone.
    pub(crate) async fn refresh_instance(
        &self,
        instance: u64,
        kind: ListKind,
    ) -> Result<Option<()>, RpcError> {
        let Some(instance) = self
            .instances_snapshot()
            .into_iter()
            .find(|i| i.id == instance)
        else {
            return Ok(None);
        };
        let fresh = self.list_kind(&instance.upstream, kind).await?;
        let current = instance.own_lists().unwrap_or_else(|| self.lists());
        instance.set_own_lists(fresh.apply(&current));
        Ok(Some(()))
    }

    /// The lists `session` sees of this server: its own instance's when that instance
    /// announced changes of its own (per-session sharing), else `None` (the server's).
    pub(crate) fn own_lists_for(&self, session: &str) -> Option<Arc<ServerLists>> {
        if self.policy().sharing != Sharing::PerSession {
            return None;
        }
        self.instances
            .lock()
            .iter()
            .find(|i| i.is_owned_by(session))?
            .own_lists()
    }

    async fn list_kind(&self, upstream: &Upstream, kind: ListKind) -> Result<Fresh, RpcError> {
        Ok(match kind {
            ListKind::Tools => Fresh {
                kind,
                items: self.list(upstream, "tools/list", "tools").await?,
                templates: Vec::new(),
            },
            ListKind::Prompts => Fresh {
                kind,
                items: self.list(upstream, "prompts/list", "prompts").await?,
                templates: Vec::new(),
            },
            ListKind::Resources => Fresh {
                kind,
                items: self.list(upstream, "resources/list", "resources").await?,
                templates: self
                    .list(upstream, "resources/templates/list", "resourceTemplates")
                    .await
                    .unwrap_or_default(),
            },
        })
    }

    async fn list(
        &self,
        upstream: &Upstream,
        method: &str,
        field: &str,
    ) -> Result<Vec<Value>, RpcError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..LIST_PAGES_MAX {
            let params = cursor.as_ref().map(|c| json!({ "cursor": c }));
            let result = upstream
                .request(method, params, CallOptions::new(self.request_timeout))
                .await
                .map_err(|e| e.to_rpc_error(&self.name))?;
            if let Some(page) = result.get(field).and_then(Value::as_array) {
                items.extend(page.iter().cloned());
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        Ok(items)
    }

    /// Adds or removes a resource URI from the updates this (modern) server reports.
    pub(crate) fn watch_resource(&self, uri: &str, on: bool) {
        let changed = if on {
            self.watch.0.lock().insert(uri.to_owned())
        } else {
            self.watch.0.lock().remove(uri)
        };
        if changed {
            self.watch.1.notify_waiters();
        }
    }
}
