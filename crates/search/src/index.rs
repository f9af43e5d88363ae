//! The inverted index over one set of documents (one caller's view of one catalog
//! snapshot): terms interned to ids, one posting list per term with its count in each
//! field, average field lengths. Built from documents that are tokenized already, so a
//! new snapshot costs a merge, not a re-read of every tool.

use std::collections::HashMap;
use std::sync::Arc;

use crate::document::{Document, FIELDS};
use crate::rank::{self, Hit, Weights};
use crate::tokenize::Tokenizer;

/// One document's counts of a term, per field.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Posting {
    pub(crate) doc: u32,
    pub(crate) counts: [u32; FIELDS],
}

/// A searchable set of documents. Immutable once built.
#[derive(Debug)]
pub struct Index {
    pub(crate) terms: HashMap<Box<str>, u32>,
    pub(crate) postings: Vec<Vec<Posting>>,
    pub(crate) lengths: Vec<[u32; FIELDS]>,
    pub(crate) average: [f32; FIELDS],
    pub(crate) weights: Weights,
    tokenizer: Arc<Tokenizer>,
}

impl Index {
    /// Indexes `documents`; a hit's `doc` is its position here.
    pub fn build<'a>(
        documents: impl IntoIterator<Item = &'a Document>,
        tokenizer: Arc<Tokenizer>,
        weights: Weights,
    ) -> Index {
        let mut terms: HashMap<Box<str>, u32> = HashMap::new();
        let mut postings: Vec<Vec<Posting>> = Vec::new();
        let mut lengths = Vec::new();
        let mut totals = [0u64; FIELDS];
        for (doc, document) in documents.into_iter().enumerate() {
            let doc = u32::try_from(doc).expect("fewer than 2^32 tools");
            // Per term of this document, its counts in every field.
            let mut mine: HashMap<u32, [u32; FIELDS]> = HashMap::new();
            for (field, counted) in document.fields.iter().enumerate() {
                for (term, count) in counted {
                    let id = match terms.get(term) {
                        Some(&id) => id,
                        None => {
                            let id = u32::try_from(postings.len()).expect("fewer than 2^32 terms");
                            terms.insert(term.clone(), id);
                            postings.push(Vec::new());
                            id
                        }
                    };
                    mine.entry(id).or_default()[field] += count;
                }
            }
            for (id, counts) in mine {
                postings[id as usize].push(Posting { doc, counts });
            }
            for (field, total) in totals.iter_mut().enumerate() {
                *total += u64::from(document.lengths[field]);
            }
            lengths.push(document.lengths);
        }
        let docs = lengths.len().max(1) as f32;
        let average = totals.map(|total| (total as f32 / docs).max(1.0));
        Index {
            terms,
            postings,
            lengths,
            average,
            weights,
            tokenizer,
        }
    }

    /// How many documents the index holds.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Hybrid ranking: BM25F (scaled so the best lexical match scores 1) mixed with the
    /// cosine similarity of `query_embedding` to each document's (`embeddings`, in
    /// document order), `weight` on the semantic side (0: lexical only, 1: semantic
    /// only). A hit's relevance mixes the same way: lexical relevance and similarity.
    pub fn search_hybrid<E: AsRef<[f32]>>(
        &self,
        query: &str,
        query_embedding: &[f32],
        embeddings: &[E],
        weight: f32,
        limit: usize,
        threshold: f32,
    ) -> Vec<Hit> {
        let lexical = self.search(query, usize::MAX, 0.0);
        let best = lexical.first().map_or(0.0, |hit| hit.score);
        let mut by_doc = vec![(0f32, 0f32); self.len()];
        for hit in &lexical {
            by_doc[hit.doc as usize] = (hit.score / best.max(f32::MIN_POSITIVE), hit.relevance);
        }
        let mut hits: Vec<Hit> = embeddings
            .iter()
            .take(self.len())
            .enumerate()
            .map(|(doc, embedding)| {
                let similarity =
                    crate::embed::similarity(query_embedding, embedding.as_ref()).max(0.0);
                let (score, relevance) = by_doc[doc];
                Hit {
                    doc: doc as u32,
                    score: (1.0 - weight) * score + weight * similarity,
                    relevance: (1.0 - weight) * relevance + weight * similarity,
                }
            })
            .filter(|hit| hit.score > 0.0 && hit.relevance >= threshold)
            .collect();
        hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
        hits.truncate(limit);
        hits
    }

    /// The best `limit` documents for `query`, best first; only those whose relevance
    /// reaches `threshold` (0: every document that matches a term).
    pub fn search(&self, query: &str, limit: usize, threshold: f32) -> Vec<Hit> {
        let mut terms = self.tokenizer.collect(query);
        terms.sort_unstable();
        terms.dedup();
        rank::rank(self, &terms, limit, threshold)
    }
}
