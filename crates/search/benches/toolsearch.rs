//! `toolsearch`: quality, speed and token savings of the tool search.
//!
//! `cargo bench -p switchboard-search --bench toolsearch` (a few seconds; a small crate, so
//! the release build is quick too). Reports, on the development set `data/bfcl-live.json`:
//! Recall@1/3/5/10, MRR and nDCG@5 over the pooled catalog; the threshold sweep (relevant
//! queries kept vs irrelevant queries answered with nothing); search latency at 10,000
//! tools; and tokens (cl100k_base, o200k_base) of a full `tools/list` against meta mode at
//! 100, 500 and 2,000 tools; with `SWITCHBOARD_EMBED_MODEL=DIR` (all-MiniLM-L6-v2's
//! `tokenizer.json`, `model.safetensors`, `config.json`) also the hybrid ranking over a
//! sweep of the semantic weight. Figures go to BENCHMARKS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_search::compact::{compact, meta_tools};
use switchboard_search::eval::{DevSet, evaluate, evaluate_with};
use switchboard_search::{DEFAULT_THRESHOLD, Document, Index, Tokenizer, ToolText, Weights};

fn main() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/bfcl-live.json");
    let set = DevSet::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    let tokenizer = Arc::new(Tokenizer::default());

    println!(
        "## Quality (development set: {} queries, pooled catalog of {} tools, {} irrelevant queries)\n",
        set.queries.len(),
        set.tools.len(),
        set.irrelevant.len()
    );
    let documents: Vec<Document> = set
        .tools
        .iter()
        .map(|tool| Document::new(&ToolText::of_tool(tool, "", None), &tokenizer))
        .collect();
    let index = Index::build(&documents, tokenizer.clone(), Weights::default());
    let report = evaluate(&set, &index, DEFAULT_THRESHOLD);
    let q = &report.quality;
    println!("| ranking | Recall@1 | Recall@3 | Recall@5 | Recall@10 | MRR | nDCG@5 |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| plain BM25 (reference, README of the set) | 0.598 | 0.790 | 0.844 | 0.896 | 0.708 | — |"
    );
    println!(
        "| switchboard BM25F + stemming (default weights) | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        q.recall_at_1, q.recall_at_3, q.recall_at_5, q.recall_at_10, q.mrr, q.ndcg_at_5
    );
    for (label, weights) in [
        (
            "one field weight (no BM25F)",
            Weights {
                field: [1.0; 4],
                b: [0.75; 4],
                ..Weights::default()
            },
        ),
        (
            "names ×4",
            Weights {
                field: [4.0, 1.0, 0.5, 0.4],
                ..Weights::default()
            },
        ),
    ] {
        let other = Index::build(&documents, tokenizer.clone(), weights);
        let q = evaluate(&set, &other, DEFAULT_THRESHOLD).quality;
        println!(
            "| variant: {label} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            q.recall_at_1, q.recall_at_3, q.recall_at_5, q.recall_at_10, q.mrr, q.ndcg_at_5
        );
    }

    println!("\n### Threshold (relevance = share of the query's idf mass a tool matches)\n");
    println!(
        "| threshold | relevant queries: gold in top 5 and above threshold | irrelevant queries: nothing above threshold |"
    );
    println!("|---|---|---|");
    for threshold in [0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4] {
        let r = evaluate(&set, &index, threshold);
        let marker = if threshold == DEFAULT_THRESHOLD {
            " (default)"
        } else {
            ""
        };
        println!(
            "| {threshold:.2}{marker} | {:.3} | {:.3} |",
            r.recall_at_5_thresholded, r.rejection
        );
    }

    if let Some(dir) = std::env::var_os("SWITCHBOARD_EMBED_MODEL") {
        hybrid(&set, &index, std::path::Path::new(&dir));
    } else {
        println!(
            "\n(hybrid: set SWITCHBOARD_EMBED_MODEL to a directory with all-MiniLM-L6-v2's tokenizer.json, model.safetensors and config.json)"
        );
    }

    println!("\n## Speed at 10,000 tools\n");
    let big = catalog(&set.tools, 10_000);
    let started = Instant::now();
    let big_documents: Vec<Document> = big
        .iter()
        .map(|(server, tool)| Document::new(&ToolText::of_tool(tool, server, None), &tokenizer))
        .collect();
    let tokenize_time = started.elapsed();
    let started = Instant::now();
    let big_index = Index::build(&big_documents, tokenizer.clone(), Weights::default());
    let build_time = started.elapsed();
    let mut times: Vec<Duration> = Vec::new();
    for round in 0..3 {
        for (query, _) in &set.queries {
            let started = Instant::now();
            let hits = big_index.search(query, 5, DEFAULT_THRESHOLD);
            let elapsed = started.elapsed();
            std::hint::black_box(hits);
            if round > 0 {
                times.push(elapsed);
            }
        }
    }
    times.sort_unstable();
    let at = |p: f64| times[((times.len() as f64 - 1.0) * p) as usize];
    println!("| what | time |");
    println!("|---|---|");
    println!("| tokenize 10,000 tools (once per tool version) | {tokenize_time:.1?} |");
    println!("| build the index over them (once per snapshot and view) | {build_time:.1?} |");
    println!("| search p50 ({} queries) | {:.1?} |", times.len(), at(0.5));
    println!("| search p90 | {:.1?} |", at(0.9));
    println!("| search p99 | {:.1?} |", at(0.99));

    println!("\n## Tokens: full tools/list vs meta mode\n");
    let encoders = [
        ("cl100k_base", tiktoken_rs::cl100k_base().unwrap()),
        ("o200k_base", tiktoken_rs::o200k_base().unwrap()),
    ];
    let meta_list = json!({ "tools": meta_tools() }).to_string();
    println!(
        "| tools | tokenizer | full tools/list | meta mode tools/list | saved | meta list + one search_tools result (5 tools) | saved |"
    );
    println!("|---|---|---|---|---|---|---|");
    for size in [100, 500, 2_000] {
        let tools: Vec<Value> = catalog(&set.tools, size)
            .into_iter()
            .map(|(server, mut tool)| {
                let name = format!("{server}__{}", tool["name"].as_str().unwrap_or_default());
                tool["name"] = Value::String(sanitize(&name));
                tool
            })
            .collect();
        let full = json!({ "tools": tools }).to_string();
        let found: Vec<Value> = tools.iter().take(5).map(compact).collect();
        let result = json!({ "tools": found }).to_string();
        for (label, encoder) in &encoders {
            let count = |text: &str| encoder.encode_ordinary(text).len();
            let (full_tokens, meta_tokens) = (count(&full), count(&meta_list));
            let with_search = meta_tokens + count(&result);
            println!(
                "| {size} | {label} | {full_tokens} | {meta_tokens} | {:.1} % | {with_search} | {:.1} % |",
                100.0 * (1.0 - meta_tokens as f64 / full_tokens as f64),
                100.0 * (1.0 - with_search as f64 / full_tokens as f64),
            );
        }
    }
}

/// Hybrid (lexical + all-MiniLM-L6-v2) quality, over a sweep of the semantic weight.
fn hybrid(set: &DevSet, index: &Index, dir: &std::path::Path) {
    use std::collections::HashMap;
    use switchboard_search::embed::Embedder;
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let embedder = Embedder::from_bytes(
        &String::from_utf8(read("tokenizer.json")).unwrap(),
        &read("model.safetensors"),
        &String::from_utf8(read("config.json")).unwrap(),
    )
    .unwrap();
    let mut cache = EmbedCache::open();
    let started = Instant::now();
    let tools: Vec<Vec<f32>> = set
        .tools
        .iter()
        .map(|tool| {
            cache.embed(
                &embedder,
                &Embedder::tool_text(&ToolText::of_tool(tool, "", None)),
            )
        })
        .collect();
    let per_tool = started.elapsed() / set.tools.len() as u32;
    // A variant of the embedded text: parameter descriptions too.
    let richer: Vec<Vec<f32>> = set
        .tools
        .iter()
        .map(|tool| cache.embed(&embedder, &richer_text(tool)))
        .collect();
    let started = Instant::now();
    let queries: HashMap<&str, Vec<f32>> = set
        .queries
        .iter()
        .map(|(q, _)| q.as_str())
        .chain(set.irrelevant.iter().map(String::as_str))
        .map(|q| (q, cache.embed(&embedder, q)))
        .collect();
    let per_query = started.elapsed() / queries.len() as u32;
    let cached = cache.added == 0 && cache.hits > 0;
    cache.save();
    println!("\n### Hybrid: BM25F + all-MiniLM-L6-v2 (embedded, plain Rust)\n");
    if cached {
        println!("Embedding: read from SWITCHBOARD_EMBED_CACHE (unset it to time the encoder).\n");
    } else {
        println!(
            "Embedding: {per_tool:.1?} per tool (once per tool version), {per_query:.1?} per query.\n"
        );
    }
    println!("| semantic weight | Recall@1 | Recall@3 | Recall@5 | Recall@10 | MRR | nDCG@5 |");
    println!("|---|---|---|---|---|---|---|");
    for weight in [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0] {
        let q = evaluate_with(set, 0.0, |query, limit, threshold| {
            index.search_hybrid(query, &queries[query], &tools, weight, limit, threshold)
        })
        .quality;
        println!(
            "| {weight:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            q.recall_at_1, q.recall_at_3, q.recall_at_5, q.recall_at_10, q.mrr, q.ndcg_at_5
        );
    }
    println!("\nOther ways to mix the two (same vectors):\n");
    println!("| mixing | Recall@1 | Recall@3 | Recall@5 | Recall@10 | MRR | nDCG@5 |");
    println!("|---|---|---|---|---|---|---|");
    let variants: [(&str, Fusion); 10] = [
        (
            "similarity rescaled to the query's range, w 0.5",
            Fusion::MinMax(0.5),
        ),
        (
            "similarity rescaled to the query's range, w 0.6",
            Fusion::MinMax(0.6),
        ),
        (
            "similarity rescaled to the query's range, w 0.7",
            Fusion::MinMax(0.7),
        ),
        (
            "similarity rescaled to the query's range, w 0.75",
            Fusion::MinMax(0.75),
        ),
        (
            "similarity rescaled to the query's range, w 0.8",
            Fusion::MinMax(0.8),
        ),
        ("reciprocal rank fusion, k 60", Fusion::Rrf(60.0)),
        ("reciprocal rank fusion, k 20", Fusion::Rrf(20.0)),
        ("reciprocal rank fusion, k 5", Fusion::Rrf(5.0)),
        ("z-scored similarity, w 0.5", Fusion::Z(0.5)),
        ("z-scored similarity, w 0.6", Fusion::Z(0.6)),
    ];
    let with_params = [
        (
            "parameter descriptions embedded too, w 0.6",
            Fusion::Plain(0.6),
        ),
        (
            "parameter descriptions embedded too, rescaled, w 0.7",
            Fusion::MinMax(0.7),
        ),
    ];
    let runs = variants
        .iter()
        .map(|&(label, fusion)| (label, fusion, &tools))
        .chain(
            with_params
                .iter()
                .map(|&(label, fusion)| (label, fusion, &richer)),
        );
    for (label, fusion, vectors) in runs {
        let q = evaluate_with(set, 0.0, |query, limit, _| {
            fuse(index, query, &queries[query], vectors, fusion, limit)
        })
        .quality;
        println!(
            "| {label} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            q.recall_at_1, q.recall_at_3, q.recall_at_5, q.recall_at_10, q.mrr, q.ndcg_at_5
        );
    }
    println!(
        "\n| semantic weight | threshold | relevant: gold in top 5 and above threshold | irrelevant: nothing above threshold |"
    );
    println!("|---|---|---|---|");
    for weight in [0.5, 0.7] {
        for threshold in [0.2, 0.25, 0.3, 0.35, 0.4, 0.45] {
            let r = evaluate_with(set, threshold, |query, limit, threshold| {
                index.search_hybrid(query, &queries[query], &tools, weight, limit, threshold)
            });
            println!(
                "| {weight:.1} | {threshold:.2} | {:.3} | {:.3} |",
                r.recall_at_5_thresholded, r.rejection
            );
        }
    }
}

/// The embedded text of a tool plus its parameters' descriptions.
fn richer_text(tool: &Value) -> String {
    use switchboard_search::embed::Embedder;
    let mut text = Embedder::tool_text(&ToolText::of_tool(tool, "", None));
    if let Some(properties) = tool
        .pointer("/inputSchema/properties")
        .or_else(|| tool.pointer("/parameters/properties"))
        .and_then(Value::as_object)
    {
        for property in properties.values() {
            if let Some(description) = property.get("description").and_then(Value::as_str) {
                text.push_str(description);
                text.push_str(". ");
            }
        }
    }
    text
}

/// A way to mix the lexical and the semantic ranking (the benchmark's variants).
#[derive(Clone, Copy)]
enum Fusion {
    /// As `Index::search_hybrid`: lexical over its best, similarity as it is.
    Plain(f32),
    /// Lexical score over its best, mixed with similarity rescaled to the query's
    /// lowest–highest range, weight on the semantic side.
    MinMax(f32),
    /// Sum of 1 / (k + rank) over both rankings.
    Rrf(f32),
    /// Lexical score over its best, mixed with similarity in standard deviations above
    /// the query's mean (clamped to 0–1 over 3 deviations).
    Z(f32),
}

fn fuse(
    index: &Index,
    query: &str,
    query_vector: &[f32],
    tools: &[Vec<f32>],
    fusion: Fusion,
    limit: usize,
) -> Vec<switchboard_search::Hit> {
    use switchboard_search::embed::similarity;
    let lexical = index.search(query, usize::MAX, 0.0);
    let best = lexical
        .first()
        .map_or(0.0, |h| h.score)
        .max(f32::MIN_POSITIVE);
    let mut lex = vec![0f32; tools.len()];
    let mut lex_rank = vec![usize::MAX; tools.len()];
    for (rank, hit) in lexical.iter().enumerate() {
        lex[hit.doc as usize] = hit.score / best;
        lex_rank[hit.doc as usize] = rank;
    }
    let sims: Vec<f32> = tools.iter().map(|t| similarity(query_vector, t)).collect();
    let (lo, hi) = sims
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
    let mean = sims.iter().sum::<f32>() / sims.len() as f32;
    let sd = (sims.iter().map(|s| (s - mean) * (s - mean)).sum::<f32>() / sims.len() as f32)
        .sqrt()
        .max(1e-6);
    let mut order: Vec<usize> = (0..tools.len()).collect();
    order.sort_by(|&a, &b| sims[b].total_cmp(&sims[a]));
    let mut sem_rank = vec![0usize; tools.len()];
    for (rank, &doc) in order.iter().enumerate() {
        sem_rank[doc] = rank;
    }
    let mut hits: Vec<switchboard_search::Hit> = (0..tools.len())
        .map(|doc| {
            let score = match fusion {
                Fusion::Plain(w) => (1.0 - w) * lex[doc] + w * sims[doc].max(0.0),
                Fusion::MinMax(w) => {
                    (1.0 - w) * lex[doc] + w * (sims[doc] - lo) / (hi - lo).max(1e-6)
                }
                Fusion::Rrf(k) => {
                    let lexical = if lex_rank[doc] == usize::MAX {
                        0.0
                    } else {
                        1.0 / (k + lex_rank[doc] as f32 + 1.0)
                    };
                    lexical + 1.0 / (k + sem_rank[doc] as f32 + 1.0)
                }
                Fusion::Z(w) => {
                    (1.0 - w) * lex[doc] + w * ((sims[doc] - mean) / sd / 3.0).clamp(0.0, 1.0)
                }
            };
            switchboard_search::Hit {
                doc: doc as u32,
                score,
                relevance: score,
            }
        })
        .collect();
    hits.sort_unstable_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
    hits.truncate(limit);
    hits
}

/// Embeddings kept between runs in `SWITCHBOARD_EMBED_CACHE` (a JSON object, text →
/// vector), so changes to the mixing can be measured without re-running the encoder.
struct EmbedCache {
    path: Option<std::path::PathBuf>,
    vectors: std::collections::HashMap<String, Vec<f32>>,
    hits: usize,
    added: usize,
}

impl EmbedCache {
    fn open() -> EmbedCache {
        let path = std::env::var_os("SWITCHBOARD_EMBED_CACHE").map(std::path::PathBuf::from);
        let vectors = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        EmbedCache {
            path,
            vectors,
            hits: 0,
            added: 0,
        }
    }

    fn embed(&mut self, embedder: &switchboard_search::embed::Embedder, text: &str) -> Vec<f32> {
        if let Some(found) = self.vectors.get(text) {
            self.hits += 1;
            return found.clone();
        }
        let vector = embedder.embed(text);
        if self.path.is_some() {
            self.vectors.insert(text.to_owned(), vector.clone());
            self.added += 1;
        }
        vector
    }

    fn save(&self) {
        if let (Some(path), true) = (&self.path, self.added > 0) {
            std::fs::write(path, serde_json::to_vec(&self.vectors).unwrap()).unwrap();
        }
    }
}

/// A catalog of `size` tools: the development set's tools over and over, each round
/// offered by another server (`s00`, `s01`, …), as a gateway in front of many servers.
fn catalog(tools: &[Value], size: usize) -> Vec<(String, Value)> {
    (0..size)
        .map(|i| {
            (
                format!("s{:02}", i / tools.len()),
                tools[i % tools.len()].clone(),
            )
        })
        .collect()
}

/// A tool name as the gateway exposes it (`^[a-zA-Z0-9_-]{1,64}$`).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}
