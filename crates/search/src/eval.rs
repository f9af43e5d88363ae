//! Retrieval quality over a labelled query set: each query has one gold tool; a run gives
//! the rank at which the search put it (or none). Binary relevance, one relevant item per
//! query, so nDCG@k is 1/log2(rank + 1) when the gold tool is within k.

/// Quality figures over a set of queries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quality {
    pub queries: usize,
    pub recall_at_1: f64,
    pub recall_at_3: f64,
    pub recall_at_5: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
    pub ndcg_at_5: f64,
}

/// Figures from the 1-based rank of the gold tool per query (`None`: not found).
pub fn quality(ranks: &[Option<usize>]) -> Quality {
    let queries = ranks.len();
    if queries == 0 {
        return Quality::default();
    }
    let share = |hit: &dyn Fn(usize) -> f64| {
        ranks.iter().map(|rank| rank.map_or(0.0, hit)).sum::<f64>() / queries as f64
    };
    let within = |k: usize| move |rank: usize| if rank <= k { 1.0 } else { 0.0 };
    Quality {
        queries,
        recall_at_1: share(&within(1)),
        recall_at_3: share(&within(3)),
        recall_at_5: share(&within(5)),
        recall_at_10: share(&within(10)),
        mrr: share(&|rank| 1.0 / rank as f64),
        ndcg_at_5: share(&|rank| {
            if rank <= 5 {
                1.0 / ((rank + 1) as f64).log2()
            } else {
                0.0
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures() {
        let q = quality(&[Some(1), Some(2), Some(6), None]);
        assert_eq!(q.recall_at_1, 0.25);
        assert_eq!(q.recall_at_3, 0.5);
        assert_eq!(q.recall_at_10, 0.75);
        assert!((q.mrr - (1.0 + 0.5 + 1.0 / 6.0) / 4.0).abs() < 1e-12);
        assert!((q.ndcg_at_5 - (1.0 + 1.0 / 3f64.log2()) / 4.0).abs() < 1e-12);
    }
}

/// A labelled development set (`data/bfcl-live.json`'s shape): a pooled catalog of tools,
/// queries each with its gold tool, and queries no tool answers.
#[derive(Debug, Default)]
pub struct DevSet {
    pub tools: Vec<serde_json::Value>,
    /// (query, gold tool name)
    pub queries: Vec<(String, String)>,
    pub irrelevant: Vec<String>,
}

impl DevSet {
    pub fn parse(json: &str) -> Result<DevSet, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(json)?;
        let text = |v: &serde_json::Value, key: &str| {
            v.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let array = |key: &str| {
            value
                .get(key)
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        Ok(DevSet {
            tools: array("tools"),
            queries: array("queries")
                .iter()
                .filter_map(|q| {
                    let gold = q.get("gold")?.get(0)?.as_str()?.to_owned();
                    Some((text(q, "query")?, gold))
                })
                .collect(),
            irrelevant: array("irrelevant")
                .iter()
                .filter_map(|q| text(q, "query"))
                .collect(),
        })
    }
}

/// How a search does on a development set.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Over every relevant query, no threshold.
    pub quality: Quality,
    /// Relevant queries whose gold tool is within the top 5 and above the threshold.
    pub recall_at_5_thresholded: f64,
    /// Irrelevant queries answered with nothing above the threshold.
    pub rejection: f64,
}

/// Runs every query of `set` against `index` (documents in the order of `set.tools`).
pub fn evaluate(set: &DevSet, index: &crate::Index, threshold: f32) -> Report {
    evaluate_with(set, threshold, |query, limit, threshold| {
        index.search(query, limit, threshold)
    })
}

/// Runs every query of `set` through `search(query, limit, threshold)`, whose hits name
/// documents in the order of `set.tools`.
pub fn evaluate_with(
    set: &DevSet,
    threshold: f32,
    search: impl Fn(&str, usize, f32) -> Vec<crate::Hit>,
) -> Report {
    let position: std::collections::HashMap<&str, u32> = set
        .tools
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((t.get("name")?.as_str()?, i as u32)))
        .collect();
    let mut ranks = Vec::new();
    let mut kept = 0usize;
    for (query, gold) in &set.queries {
        let hits = search(query, 10, 0.0);
        let gold = position.get(gold.as_str()).copied();
        let rank = hits.iter().position(|h| Some(h.doc) == gold).map(|i| i + 1);
        if let Some(rank) = rank
            && rank <= 5
            && hits[rank - 1].relevance >= threshold
        {
            kept += 1;
        }
        ranks.push(rank);
    }
    let rejected = set
        .irrelevant
        .iter()
        .filter(|query| search(query, 1, threshold).is_empty())
        .count();
    Report {
        quality: quality(&ranks),
        recall_at_5_thresholded: kept as f64 / set.queries.len().max(1) as f64,
        rejection: rejected as f64 / set.irrelevant.len().max(1) as f64,
    }
}
