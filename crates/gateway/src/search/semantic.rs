//! The semantic side of tool search (`[search] model`): a sentence encoder run in the
//! gateway (`switchboard_search::embed`, plain Rust, no service), mixed with the lexical
//! ranking as `Index::search_hybrid` does.
//!
//! - **Tool vectors** are computed once per tool *version* — keyed by a hash of the text
//!   embedded (name, title, description, parameter names), so a hot-load re-embeds only
//!   the tools it changed and the same tool behind two servers is embedded once — by one
//!   owned task (`warm`) that wakes when the catalog changes and runs the encoder on the
//!   blocking pool, one tool at a time (at most one core). They are kept in a bounded
//!   cache (`max_vectors`).
//! - **A search** mixes in similarity only when every tool of the caller's view has its
//!   vector; until then (start-up, right after a hot-load) it ranks lexically and says so
//!   (`ranking: "lexical"`, counted as `warming`). The query's vector is computed on the
//!   blocking pool (one at a time, bounded wait) and cached per query text.

use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use switchboard_config::SearchSettings;
use switchboard_search::ToolText;
use switchboard_search::embed::{EmbedError, Embedder};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::gateway::Inner;

/// A unit embedding.
pub(crate) type Vector = Arc<[f32]>;
/// What a tool vector is keyed by: the first 16 bytes of the SHA-256 of its text.
pub(crate) type TextKey = [u8; 16];

/// Longest a search waits for its turn at the encoder before ranking lexically.
const QUERY_WAIT: Duration = Duration::from_secs(5);

/// The model named by `[search] model` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    #[error("[search] model: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("[search] model {path}: {source}")]
    Model { path: String, source: EmbedError },
}

/// How a search was ranked (the `ranking` of its answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranking {
    Lexical,
    Hybrid,
}

impl Ranking {
    pub fn as_str(self) -> &'static str {
        match self {
            Ranking::Lexical => "lexical",
            Ranking::Hybrid => "hybrid",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RankingLabels {
    ranking: &'static str,
}

/// The encoder, the vectors and the warmer's wake-up.
pub(crate) struct Semantic {
    embedder: Arc<Embedder>,
    /// Share of similarity in a hit's score and relevance.
    pub(crate) weight: f32,
    /// Mixed relevance a hit needs to be offered.
    pub(crate) threshold: f32,
    vectors: Cache<TextKey, Vector>,
    queries: Option<Cache<String, Vector>>,
    /// The catalog changed: the warmer looks for tools without a vector.
    changed: Notify,
    /// Query embeddings computed at once (each holds a blocking thread for tens of ms).
    encoder: Semaphore,
    searches: Family<RankingLabels, Counter>,
    embedded: Counter,
}

impl std::fmt::Debug for Semantic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semantic")
            .field("weight", &self.weight)
            .field("vectors", &self.vectors.len())
            .finish_non_exhaustive()
    }
}

/// The text of `tool` that is embedded.
pub(crate) fn tool_text(tool: &serde_json::Value) -> String {
    Embedder::tool_text(&ToolText::of_tool(tool, "", None))
}

pub(crate) fn text_key(text: &str) -> TextKey {
    let digest = Sha256::digest(text.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

impl Semantic {
    /// Loads the encoder from `settings.model` (a directory with `tokenizer.json`,
    /// `model.safetensors` and `config.json`).
    pub(crate) fn load(settings: &SearchSettings) -> Result<Semantic, SemanticError> {
        let read = |name: &str| {
            let path = settings.model.join(name);
            std::fs::read(&path).map_err(|source| SemanticError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let text =
            |name: &str| read(name).map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let embedder = Embedder::from_bytes(
            &text("tokenizer.json")?,
            &read("model.safetensors")?,
            &text("config.json")?,
        )
        .map_err(|source| SemanticError::Model {
            path: settings.model.display().to_string(),
            source,
        })?;
        Ok(Semantic::new(embedder, settings))
    }

    pub(crate) fn new(embedder: Embedder, settings: &SearchSettings) -> Semantic {
        Semantic {
            embedder: Arc::new(embedder),
            weight: f32::from(settings.weight_percent) / 100.0,
            threshold: f32::from(settings.threshold_percent) / 100.0,
            vectors: Cache::new(settings.max_vectors),
            queries: (settings.max_queries > 0).then(|| Cache::new(settings.max_queries)),
            changed: Notify::new(),
            encoder: Semaphore::new(1),
            searches: Family::default(),
            embedded: Counter::default(),
        }
    }

    /// The catalog changed: wake the warmer (coalesced: one pending wake-up at most).
    pub(crate) fn nudge(&self) {
        self.changed.notify_one();
    }

    /// The vector of every key, or `None` while one is missing (the warmer is told).
    pub(crate) fn vectors_of(&self, keys: &[TextKey]) -> Option<Vec<Vector>> {
        let found: Option<Vec<Vector>> = keys.iter().map(|key| self.vectors.get(key)).collect();
        if found.is_none() {
            self.nudge();
        }
        found
    }

    /// The vector of `query`, from the cache or computed now; `None` when the encoder
    /// stayed busy for [`QUERY_WAIT`].
    pub(crate) async fn query_vector(&self, query: &str) -> Option<Vector> {
        if let Some(found) = self.queries.as_ref().and_then(|q| q.get(query)) {
            return Some(found);
        }
        let _turn = tokio::time::timeout(QUERY_WAIT, self.encoder.acquire())
            .await
            .ok()?
            .ok()?;
        let embedder = self.embedder.clone();
        let text = query.to_owned();
        let vector: Vector = tokio::task::spawn_blocking(move || embedder.embed(&text))
            .await
            .ok()?
            .into();
        if let Some(queries) = &self.queries {
            queries.insert(query.to_owned(), vector.clone());
        }
        Some(vector)
    }

    /// Counts one search by how it was ranked (`warming`: hybrid asked, vectors missing).
    pub(crate) fn count(&self, ranking: &'static str) {
        self.searches
            .get_or_create(&RankingLabels { ranking })
            .inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "switchboard_search_rankings",
            "Tool searches by ranking: hybrid, lexical (semantic side unavailable) or warming (tool vectors not all computed yet)",
            self.searches.clone(),
        );
        registry.register(
            "switchboard_search_embedded_tools",
            "Tool versions embedded by the search encoder",
            self.embedded.clone(),
        );
        let held = Gauge::<i64>::default();
        held.set(self.vectors.len() as i64);
        registry.register(
            "switchboard_search_vectors",
            "Tool vectors held by the search encoder's cache",
            held,
        );
    }
}

/// The warmer: on every catalog change, embeds the tools that have no vector yet, one at
/// a time on the blocking pool, until `shutdown`. Holds the gateway only while reading
/// the catalog.
pub(crate) async fn warm(inner: Weak<Inner>, semantic: Arc<Semantic>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = semantic.changed.notified() => {}
        }
        let missing: Vec<(TextKey, String)> = {
            let Some(inner) = inner.upgrade() else { return };
            let catalog = inner.catalog.load_full();
            drop(inner);
            let mut seen = std::collections::HashSet::new();
            catalog
                .tools
                .iter()
                .filter_map(|tool| {
                    let text = tool_text(tool.upstream());
                    let key = text_key(&text);
                    (seen.insert(key) && semantic.vectors.get(&key).is_none())
                        .then_some((key, text))
                })
                .collect()
        };
        for (key, text) in missing {
            if shutdown.is_cancelled() {
                return;
            }
            let embedder = semantic.embedder.clone();
            let Ok(vector) = tokio::task::spawn_blocking(move || embedder.embed(&text)).await
            else {
                return;
            };
            semantic.vectors.insert(key, vector.into());
            semantic.embedded.inc();
        }
    }
}
