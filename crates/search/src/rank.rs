//! Ranking: BM25F. A term's counts in the fields of a document are normalised by each
//! field's length, weighted per field and summed into one pseudo-frequency, which is then
//! saturated once (`k1`) and weighted by the term's rarity (idf) — so a word in the name
//! counts more than the same word in a parameter's description, but repeating a word in
//! many fields cannot outweigh a second query word.
//!
//! Each hit also carries its *relevance*: the share of the query's information (idf
//! mass, words the catalog never uses counted as rare) that the tool matches. It does not
//! depend on the catalog's size the way raw scores do, so one threshold tells "nothing
//! relevant" across catalogs.

use crate::document::FIELDS;
use crate::index::Index;

/// Ranking parameters, per field in `Field` order.
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    pub k1: f32,
    pub field: [f32; FIELDS],
    pub b: [f32; FIELDS],
}

impl Default for Weights {
    /// Set once on the development set as a whole (`benches/toolsearch.rs`), never per
    /// query: names count most, then descriptions, then parameters and the server.
    fn default() -> Self {
        Weights {
            k1: 1.2,
            field: [2.5, 1.0, 0.5, 0.4],
            b: [0.5, 0.75, 0.75, 0.75],
        }
    }
}

/// One ranked document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The document's position in the index.
    pub doc: u32,
    pub score: f32,
    /// The share (0–1) of the query's idf mass this document matches.
    pub relevance: f32,
}

fn idf(documents: f32, frequency: f32) -> f32 {
    (1.0 + (documents - frequency + 0.5) / (frequency + 0.5)).ln()
}

/// The best `limit` documents of `index` for the (deduplicated) query `terms`.
pub(crate) fn rank(index: &Index, terms: &[String], limit: usize, threshold: f32) -> Vec<Hit> {
    if index.is_empty() || limit == 0 {
        return Vec::new();
    }
    let documents = index.len() as f32;
    let weights = &index.weights;
    let mut scores = vec![0f32; index.len()];
    let mut matched = vec![0f32; index.len()];
    let mut touched: Vec<u32> = Vec::new();
    let mut query_mass = 0f32;
    for term in terms {
        let Some(&id) = index.terms.get(term.as_str()) else {
            // A word no tool uses: as informative as the rarest word.
            query_mass += idf(documents, 1.0);
            continue;
        };
        let postings = &index.postings[id as usize];
        let term_idf = idf(documents, postings.len() as f32);
        query_mass += term_idf;
        for posting in postings {
            let lengths = &index.lengths[posting.doc as usize];
            let mut frequency = 0f32;
            for (field, &count) in posting.counts.iter().enumerate() {
                if count == 0 {
                    continue;
                }
                let norm = 1.0 - weights.b[field]
                    + weights.b[field] * lengths[field] as f32 / index.average[field];
                frequency += weights.field[field] * count as f32 / norm;
            }
            let doc = posting.doc as usize;
            if scores[doc] == 0.0 && matched[doc] == 0.0 {
                touched.push(posting.doc);
            }
            scores[doc] += term_idf * frequency * (weights.k1 + 1.0) / (weights.k1 + frequency);
            matched[doc] += term_idf;
        }
    }
    let mut hits: Vec<Hit> = touched
        .into_iter()
        .map(|doc| Hit {
            doc,
            score: scores[doc as usize],
            relevance: if query_mass > 0.0 {
                matched[doc as usize] / query_mass
            } else {
                0.0
            },
        })
        .filter(|hit| hit.relevance >= threshold)
        .collect();
    let order = |a: &Hit, b: &Hit| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc));
    if hits.len() > limit {
        hits.select_nth_unstable_by(limit - 1, order);
        hits.truncate(limit);
    }
    hits.sort_unstable_by(order);
    hits
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::document::{Document, ToolText};
    use crate::tokenize::Tokenizer;
    use crate::{Index, Weights};

    fn index(tools: &[serde_json::Value]) -> Index {
        let tokenizer = Arc::new(Tokenizer::default());
        let documents: Vec<Document> = tools
            .iter()
            .map(|tool| Document::new(&ToolText::of_tool(tool, "s", None), &tokenizer))
            .collect();
        Index::build(&documents, tokenizer, Weights::default())
    }

    #[test]
    fn ranks_name_matches_first_and_breaks_ties_by_position() {
        let index = index(&[
            json!({ "name": "send_email", "description": "Send a message to a mailbox" }),
            json!({ "name": "book_flight", "description": "Book a flight; sends an email receipt" }),
            json!({ "name": "read_email", "description": "Read a mailbox" }),
        ]);
        let hits = index.search("send an email", 10, 0.0);
        assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(hits[0].relevance > 0.99);
        assert_eq!(index.search("email", 2, 0.0).len(), 2);
        assert!(index.search("weather in paris", 10, 0.0).is_empty());
    }

    #[test]
    fn hybrid_mixes_similarity_with_the_lexical_score() {
        let index = index(&[
            json!({ "name": "send_email", "description": "Send a message" }),
            json!({ "name": "get_weather", "description": "Conditions for a city" }),
        ]);
        let embeddings = vec![vec![0.0, 1.0], vec![1.0, 0.0]];
        let query = [1.0, 0.0];
        // No word in common with the weather tool: only similarity finds it.
        let semantic = index.search_hybrid("will it rain", &query, &embeddings, 1.0, 5, 0.5);
        assert_eq!(semantic.iter().map(|h| h.doc).collect::<Vec<_>>(), [1]);
        let mixed = index.search_hybrid("send message", &query, &embeddings, 0.3, 5, 0.0);
        assert_eq!(mixed[0].doc, 0, "lexical weight 0.7 on an exact match wins");
        assert!(
            index
                .search_hybrid("send", &query, &embeddings, 0.0, 5, 0.0)
                .len()
                == 1
        );
    }

    #[test]
    fn threshold_drops_weak_matches() {
        let index = index(&[
            json!({ "name": "send_email", "description": "Send a message" }),
            json!({ "name": "get_weather", "description": "Weather forecast for a city" }),
        ]);
        let hits = index.search("what is the weather forecast for paris tomorrow", 10, 0.0);
        assert_eq!(hits[0].doc, 1);
        let strict = index.search("send me the stock price of apple", 10, 0.9);
        assert!(strict.is_empty(), "{strict:?}");
    }
}
