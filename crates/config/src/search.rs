//! `[search]`: semantic ranking for tool search, mixed with the lexical ranking (hybrid).
//! Raw shape, validation and the validated model live together here, like `agent.rs`.
//!
//! Without the section (or without `model`), tool search is lexical only (BM25F), as
//! `[gateway] search_threshold` sets it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};

/// The validated `[search]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSettings {
    /// A directory holding a BERT-style sentence encoder: `tokenizer.json`,
    /// `model.safetensors` (F32) and `config.json` (all-MiniLM-L6-v2 is what the weights
    /// were chosen on). Read once at start.
    pub model: PathBuf,
    /// Share (0–1) of the semantic side in a tool's score; the rest is lexical.
    pub weight_percent: u8,
    /// A tool is offered only when its mixed relevance (lexical share of the query's
    /// information and similarity, mixed by `weight`) reaches this, in percent.
    pub threshold_percent: u8,
    /// Tool embeddings kept (one per tool version, 1.5 KiB each for a 384-wide model);
    /// past it the least recently used go and are computed again when needed.
    pub max_vectors: usize,
    /// Query embeddings kept (the same query asked again costs nothing).
    pub max_queries: usize,
}

impl SearchSettings {
    /// On the development set (`BENCHMARKS.md`, hybrid), weight 0.6 gives the best
    /// Recall@5; threshold 0.25 keeps most relevant queries and rejects a third of the
    /// irrelevant ones.
    pub const DEFAULT_WEIGHT_PERCENT: u8 = 60;
    pub const DEFAULT_THRESHOLD_PERCENT: u8 = 25;
    pub const DEFAULT_MAX_VECTORS: usize = 50_000;
    pub const DEFAULT_MAX_QUERIES: usize = 1_024;

    /// Settings with every default, for `model` (tests, embedders).
    pub fn new(model: impl Into<PathBuf>) -> SearchSettings {
        SearchSettings {
            model: model.into(),
            weight_percent: Self::DEFAULT_WEIGHT_PERCENT,
            threshold_percent: Self::DEFAULT_THRESHOLD_PERCENT,
            max_vectors: Self::DEFAULT_MAX_VECTORS,
            max_queries: Self::DEFAULT_MAX_QUERIES,
        }
    }
}

/// `[search]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSearch {
    model: Option<String>,
    weight: Option<f64>,
    threshold: Option<f64>,
    max_vectors: Option<u64>,
    max_queries: Option<u64>,
}

/// A share written as 0–1, kept in whole percent.
fn percent(value: Option<f64>, default: u8, path: &KeyPath, key: &str) -> Result<u8, Problem> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Ok((v * 100.0).round() as u8),
        Some(_) => Err(Problem::new(path.key(key), "must be between 0 and 1")),
    }
}

fn count(
    value: Option<u64>,
    default: usize,
    range: std::ops::RangeInclusive<u64>,
    path: &KeyPath,
    key: &str,
) -> Result<usize, Problem> {
    let value = value.unwrap_or(default as u64);
    if range.contains(&value) {
        Ok(value as usize)
    } else {
        Err(Problem::new(
            path.key(key),
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

/// `None` when the section names no model (lexical search only, as without it).
pub(crate) fn validate(
    raw: RawSearch,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<Option<SearchSettings>, Problem> {
    let weight_percent = percent(
        raw.weight,
        SearchSettings::DEFAULT_WEIGHT_PERCENT,
        path,
        "weight",
    )?;
    let threshold_percent = percent(
        raw.threshold,
        SearchSettings::DEFAULT_THRESHOLD_PERCENT,
        path,
        "threshold",
    )?;
    let max_vectors = count(
        raw.max_vectors,
        SearchSettings::DEFAULT_MAX_VECTORS,
        1..=1_000_000,
        path,
        "max_vectors",
    )?;
    let max_queries = count(
        raw.max_queries,
        SearchSettings::DEFAULT_MAX_QUERIES,
        0..=100_000,
        path,
        "max_queries",
    )?;
    let Some(model) = raw.model else {
        return Ok(None);
    };
    let model = expand(&model, env).map_err(|message| Problem::new(path.key("model"), message))?;
    if model.trim().is_empty() {
        return Err(Problem::new(
            path.key("model"),
            "must name a directory with tokenizer.json, model.safetensors and config.json",
        ));
    }
    Ok(Some(SearchSettings {
        model: PathBuf::from(model),
        weight_percent,
        threshold_percent,
        max_vectors,
        max_queries,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawSearch) -> Result<Option<SearchSettings>, Problem> {
        let no_env = |_: &str| -> Option<String> { None };
        validate(raw, &KeyPath::root().key("search"), &no_env)
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(check(RawSearch::default()).unwrap(), None);
        let settings = check(RawSearch {
            model: Some("/models/minilm".into()),
            weight: Some(0.7),
            ..RawSearch::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(settings.weight_percent, 70);
        assert_eq!(
            settings.threshold_percent,
            SearchSettings::DEFAULT_THRESHOLD_PERCENT
        );
        let bad = check(RawSearch {
            model: Some("/m".into()),
            weight: Some(1.5),
            ..RawSearch::default()
        })
        .unwrap_err();
        assert_eq!(bad.key.to_string(), "search.weight");
        let bad = check(RawSearch {
            model: Some("/m".into()),
            max_vectors: Some(0),
            ..RawSearch::default()
        })
        .unwrap_err();
        assert_eq!(bad.key.to_string(), "search.max_vectors");
        let bad = check(RawSearch {
            model: Some(" ".into()),
            ..RawSearch::default()
        })
        .unwrap_err();
        assert_eq!(bad.key.to_string(), "search.model");
    }
}
