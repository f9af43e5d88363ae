//! Tool search in the gateway: ranked search (`switchboard_search`, BM25F with stemming)
//! over the tools *the caller may use* — one index per catalog snapshot and caller view,
//! built on the first search through that view from documents kept per server list
//! (`memo`), so it follows every hot-load (a new snapshot is a new index) and re-reads
//! only the servers that changed. A hidden tool is never indexed for a caller that cannot
//! see it, so it can be neither found nor inferred from the ranking's statistics.
//!
//! With `[search] model` (`semantic`), a search mixes in the similarity of a sentence
//! encoder's vectors once every tool of the view has one (hybrid); until then, lexical.
//!
//! Exposed as the meta-tool `switchboard__search_tools`, as `search_tools` in meta mode
//! (`meta_mode`), in `/admin/tools/search` and `switchboard tools search`.

pub(crate) mod memo;
pub(crate) mod meta_mode;
pub(crate) mod semantic;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_search::compact::compact;
use switchboard_search::{Hit, Index, Weights};

pub use semantic::Ranking;

use crate::catalog::{Catalog, View};
use crate::gateway::Gateway;

/// Results one search returns by default, and at most.
pub const DEFAULT_LIMIT: usize = 5;
pub const MAX_LIMIT: usize = 50;
/// Longest query read, in bytes; the rest is ignored.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Indexes kept per snapshot (one per distinct view searched); past it the cache starts
/// over (a new snapshot starts over anyway).
const MAX_INDEXES: usize = 256;

/// The index of one view of one snapshot.
#[derive(Debug)]
pub struct ViewIndex {
    index: Index,
    /// Position in the snapshot's `tools` of each indexed document.
    tools: Vec<usize>,
    /// The view it was built for, held so its address (the cache key) stays its own.
    _view: Option<Arc<View>>,
    /// With `[search] model`: the key of each indexed tool's vector, and the vectors once
    /// all were found.
    keys: Vec<semantic::TextKey>,
    vectors: std::sync::OnceLock<Vec<semantic::Vector>>,
}

impl ViewIndex {
    /// Every indexed tool's vector, or `None` while one is missing.
    fn vectors(&self, semantic: &semantic::Semantic) -> Option<&[semantic::Vector]> {
        if let Some(found) = self.vectors.get() {
            return Some(found);
        }
        let found = semantic.vectors_of(&self.keys)?;
        Some(self.vectors.get_or_init(|| found))
    }
}

/// One tool a search found.
#[derive(Clone, Debug)]
pub struct Found {
    /// The exposed name (what `tools/call` takes).
    pub name: String,
    pub server: String,
    pub score: f32,
    /// Share (0–1) of the query's information the tool matches.
    pub relevance: f32,
    /// Name, one-line description and argument schema.
    pub compact: Value,
    /// How the search that found it ranked.
    pub ranking: Ranking,
}

impl Found {
    /// As `/admin` and the CLI show it.
    pub fn to_admin_json(&self) -> Value {
        let mut entry = self.compact.clone();
        entry["server"] = Value::String(self.server.clone());
        entry["score"] = json!((self.score * 1000.0).round() / 1000.0);
        entry["relevance"] = json!((self.relevance * 1000.0).round() / 1000.0);
        entry["ranking"] = Value::String(self.ranking.as_str().to_owned());
        entry
    }
}

/// `limit` as a client asked for it, within bounds.
pub(crate) fn clamp_limit(limit: Option<u64>) -> usize {
    limit.map_or(DEFAULT_LIMIT, |l| {
        usize::try_from(l).unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT)
    })
}

/// At most `MAX_QUERY_BYTES` of `query`, cut on a character boundary.
fn bounded(query: &str) -> &str {
    if query.len() <= MAX_QUERY_BYTES {
        return query;
    }
    let mut end = MAX_QUERY_BYTES;
    while !query.is_char_boundary(end) {
        end -= 1;
    }
    &query[..end]
}

impl Gateway {
    /// The search threshold in force (`[gateway] search_threshold`).
    fn search_threshold(&self) -> f32 {
        f32::from(self.inner.settings.search_threshold_percent) / 100.0
    }

    /// The index of `catalog` through `view` (`None`: every tool), built on first use.
    pub(crate) fn search_index(
        &self,
        catalog: &Catalog,
        view: Option<&Arc<View>>,
    ) -> Arc<ViewIndex> {
        let key = view.map_or_else(String::new, |v| format!("{:p}", Arc::as_ptr(v)));
        if let Some(found) = catalog.search.lock().get(&key) {
            return found.clone();
        }
        let memo = &self.inner.search_memo;
        let mut documents: HashMap<&str, memo::ServerDocuments> = HashMap::new();
        for (server, lists) in &catalog.sources {
            let instructions = self.server(server).and_then(|s| s.instructions());
            documents.insert(server, memo.documents(server, lists, instructions));
        }
        if std::ptr::eq(catalog, &*self.catalog()) {
            memo.retain(|server| catalog.sources.contains_key(server));
        }
        let mut tools = Vec::new();
        let mut indexed = Vec::new();
        for (position, tool) in catalog.tools.iter().enumerate() {
            let server = catalog.tool_owner(position);
            let exposed = tool.name();
            if view.is_some_and(|v| !v.admits(crate::catalog::Listing::Tools, server, exposed)) {
                continue;
            }
            let Some(target) = catalog.resolve_tool(exposed) else {
                continue;
            };
            let Some(document) = documents.get(server).and_then(|d| d.get(&target.name)) else {
                continue;
            };
            tools.push(position);
            indexed.push(document.clone());
        }
        let keys = if self.inner.semantic.is_some() {
            tools
                .iter()
                .map(|&position| {
                    semantic::text_key(&semantic::tool_text(catalog.tools[position].upstream()))
                })
                .collect()
        } else {
            Vec::new()
        };
        let index = Index::build(
            indexed.iter().map(|d| &**d),
            memo.tokenizer.clone(),
            Weights::default(),
        );
        let built = Arc::new(ViewIndex {
            index,
            tools,
            _view: view.cloned(),
            keys,
            vectors: std::sync::OnceLock::new(),
        });
        let mut cache = catalog.search.lock();
        if cache.len() >= MAX_INDEXES {
            cache.clear();
        }
        cache.insert(key, built.clone());
        built
    }

    /// The best `limit` tools of `catalog`, through `view`, for `query`; only tools whose
    /// relevance reaches the threshold. Hybrid when `[search] model` is set and the view's
    /// vectors are ready, else lexical.
    pub(crate) async fn search_in(
        &self,
        catalog: &Catalog,
        view: Option<&Arc<View>>,
        query: &str,
        limit: usize,
    ) -> Vec<Found> {
        let query = bounded(query);
        let index = self.search_index(catalog, view);
        let (hits, ranking) = match self.hybrid_hits(&index, query, limit).await {
            Some(hits) => (hits, Ranking::Hybrid),
            None => (
                index.index.search(query, limit, self.search_threshold()),
                Ranking::Lexical,
            ),
        };
        hits.into_iter()
            .map(|hit| {
                let position = index.tools[hit.doc as usize];
                let tool = &catalog.tools[position];
                let mut shown = compact(tool.upstream());
                shown["name"] = Value::String(tool.name().to_owned());
                Found {
                    name: tool.name().to_owned(),
                    server: catalog.tool_owner(position).to_owned(),
                    score: hit.score,
                    relevance: hit.relevance,
                    compact: shown,
                    ranking,
                }
            })
            .collect()
    }

    /// The hybrid ranking of `query` over `index`, when the semantic side is configured
    /// and ready.
    async fn hybrid_hits(&self, index: &ViewIndex, query: &str, limit: usize) -> Option<Vec<Hit>> {
        let semantic = self.inner.semantic.as_ref()?;
        let Some(vectors) = index.vectors(semantic) else {
            semantic.count("warming");
            return None;
        };
        let Some(query_vector) = semantic.query_vector(query).await else {
            semantic.count("lexical");
            return None;
        };
        semantic.count("hybrid");
        Some(index.index.search_hybrid(
            query,
            &query_vector,
            vectors,
            semantic.weight,
            limit,
            semantic.threshold,
        ))
    }

    /// Searches every tool of the shared catalog (operators: `/admin`, the CLI).
    pub async fn search_tools(&self, query: &str, limit: usize) -> Vec<Found> {
        self.search_in(&self.catalog(), None, query, limit.clamp(1, MAX_LIMIT))
            .await
    }

    /// Waits (up to `deadline`) until every tool of the catalog has its vector, so that
    /// the next search is hybrid; `true` when they do (always, without `[search] model`).
    pub async fn search_ready(&self, deadline: Duration) -> bool {
        let Some(semantic) = self.inner.semantic.clone() else {
            return true;
        };
        let ready = async {
            loop {
                let catalog = self.catalog();
                let keys: Vec<semantic::TextKey> = catalog
                    .tools
                    .iter()
                    .map(|tool| semantic::text_key(&semantic::tool_text(tool.upstream())))
                    .collect();
                if semantic.vectors_of(&keys).is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(deadline, ready).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_queries_are_bounded() {
        assert_eq!(clamp_limit(None), DEFAULT_LIMIT);
        assert_eq!(clamp_limit(Some(0)), 1);
        assert_eq!(clamp_limit(Some(10_000)), MAX_LIMIT);
        let long = "é".repeat(MAX_QUERY_BYTES);
        assert!(bounded(&long).len() <= MAX_QUERY_BYTES);
    }
}
