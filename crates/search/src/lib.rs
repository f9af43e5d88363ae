//! Tool search for switchboard: which of the tools a caller may use answer a request
//! written in plain words. No IO and no async: the gateway (`gateway::search`) keeps one
//! [`Index`] per catalog snapshot and caller view, built from [`Document`]s it keeps per
//! server list, so a hot-load re-reads only the servers that changed.
//!
//! - `tokenize`: words → terms (identifier splitting, stop words, Snowball stemming);
//! - `document`: a tool definition → counted terms per field;
//! - `index`: the inverted index over one set of documents;
//! - `rank`: BM25F scores and the relevance share used for "nothing relevant";
//! - `eval`: Recall@k, MRR and nDCG@k, for the benchmark and the quality test.

pub mod compact;
pub mod document;
pub mod embed;
pub mod eval;
pub mod index;
pub mod rank;
pub mod tokenize;

pub use document::{Document, Field, ToolText};
pub use index::Index;
pub use rank::{Hit, Weights};
pub use tokenize::Tokenizer;

/// Default share of a query's information a tool must match to be offered at all: below
/// it, the search answers "nothing relevant" (chosen on the development set's relevant
/// and irrelevant queries together; `BENCHMARKS.md`).
pub const DEFAULT_THRESHOLD: f32 = 0.1;
