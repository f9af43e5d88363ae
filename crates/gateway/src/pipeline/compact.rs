//! Output compaction (after-only, between the result cache and redaction): large JSON in
//! a tool result's text blocks is replaced by a shorter form that carries exactly the same
//! JSON value, so a model reads the same data for fewer tokens.
//!
//! Opt-in per tool (`[servers.NAME.tools.TOOL] compact = true`). A text block is
//! considered when it is at least [`MIN_BYTES`] long and is, trimmed, one JSON value. Two
//! forms are tried and the shortest is used, only if it is shorter than the original:
//!
//! - **minified**: the value without insignificant whitespace;
//! - **table**: minified, with every array of two or more objects that have the same keys
//!   in the same order written as `{"@table":{"columns":[...],"rows":[[...],...]}}`
//!   (recursively). [`expand`] turns it back; a value that already uses the key `@table`
//!   anywhere is never tabulated, so decoding is unambiguous.
//!
//! Lossless: numbers keep their text (`arbitrary_precision`), key order is kept
//! (`preserve_order`), and a text whose object keys repeat (which parsing would merge) is
//! left alone. The result's `_meta["dev.switchboard/compaction"]` says which blocks were
//! rewritten and how. Savings are counted in bytes and estimated tokens per server.

use serde_json::{Map, Value, json};

use super::{Call, Hooks, Step, StepFuture, Target};
use crate::error::Error;
use crate::metrics::CompactionMetrics;
use crate::reply::Reply;

/// Shortest text block considered (smaller ones gain too little to be worth a parse).
pub const MIN_BYTES: usize = 256;
/// Longest text block considered (bounded work per result).
pub const MAX_BYTES: usize = 8 * 1024 * 1024;
/// The key of the table encoding.
pub const TABLE_KEY: &str = "@table";
const META_KEY: &str = "dev.switchboard/compaction";

/// Which form a block was rewritten to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Minified,
    Table,
}

impl Form {
    fn as_str(self) -> &'static str {
        match self {
            Form::Minified => "minified",
            Form::Table => "table",
        }
    }
}

/// The shorter form of `text`, when it is JSON and one of the forms is shorter.
pub fn compact(text: &str) -> Option<(String, Form)> {
    if text.len() < MIN_BYTES || text.len() > MAX_BYTES {
        return None;
    }
    let trimmed = text.trim();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        return None;
    }
    let value: Value = serde_json::from_str(trimmed).ok()?;
    let minified = serde_json::to_string(&value).ok()?;
    // Parsing merges repeated keys: the minified text would then hold fewer members.
    if members(trimmed) != members(&minified) {
        return None;
    }
    let mut best = (minified, Form::Minified);
    if !uses_table_key(&value) {
        let tabular = tabulate(&value);
        if tabular != value
            && let Ok(text) = serde_json::to_string(&tabular)
            && text.len() < best.0.len()
        {
            best = (text, Form::Table);
        }
    }
    (best.0.len() < text.len()).then_some(best)
}

/// Counts the structural `:` and `,` of a JSON text (outside strings).
fn members(text: &str) -> (usize, usize) {
    let (mut colons, mut commas) = (0, 0);
    let mut in_string = false;
    let mut escaped = false;
    for byte in text.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b':' => colons += 1,
                b',' => commas += 1,
                _ => {}
            }
        }
    }
    (colons, commas)
}

fn uses_table_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key(TABLE_KEY) || map.values().any(uses_table_key),
        Value::Array(items) => items.iter().any(uses_table_key),
        _ => false,
    }
}

/// The columns of an array of two or more objects with the same keys in the same order.
fn uniform_columns(items: &[Value]) -> Option<Vec<&String>> {
    let first = items.first()?.as_object()?;
    if items.len() < 2 || first.is_empty() {
        return None;
    }
    let columns: Vec<&String> = first.keys().collect();
    items[1..]
        .iter()
        .all(|item| {
            item.as_object().is_some_and(|map| {
                map.len() == columns.len() && map.keys().eq(columns.iter().copied())
            })
        })
        .then_some(columns)
}

fn tabulate(value: &Value) -> Value {
    match value {
        Value::Array(items) => match uniform_columns(items) {
            Some(columns) => {
                let rows: Vec<Value> = items
                    .iter()
                    .map(|item| {
                        let map = item.as_object().expect("checked uniform");
                        Value::Array(map.values().map(tabulate).collect())
                    })
                    .collect();
                json!({ TABLE_KEY: { "columns": columns, "rows": rows } })
            }
            None => Value::Array(items.iter().map(tabulate).collect()),
        },
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), tabulate(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The value a compacted text stands for: tables turned back into arrays of objects.
pub fn expand(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(table) = map.get(TABLE_KEY)
                && let (Some(columns), Some(rows)) = (
                    table.get("columns").and_then(Value::as_array),
                    table.get("rows").and_then(Value::as_array),
                )
            {
                return Value::Array(
                    rows.iter()
                        .map(|row| {
                            let cells = row.as_array().map(Vec::as_slice).unwrap_or_default();
                            Value::Object(
                                columns
                                    .iter()
                                    .zip(cells)
                                    .map(|(column, cell)| {
                                        (
                                            column.as_str().unwrap_or_default().to_owned(),
                                            expand(cell),
                                        )
                                    })
                                    .collect::<Map<String, Value>>(),
                            )
                        })
                        .collect(),
                );
            }
            Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), expand(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(expand).collect()),
        other => other.clone(),
    }
}

/// A rough token count of `text` in the style of BPE tokenizers for JSON: each run of
/// letters is one token per 4 letters begun, digits one per 3, each punctuation mark one,
/// a run of whitespace one, each other character one. An estimate, for the savings metric.
pub fn estimate_tokens(text: &str) -> u64 {
    #[derive(PartialEq)]
    enum Class {
        Letter,
        Digit,
        Space,
        Other,
    }
    let mut tokens = 0u64;
    let mut run = 0u64;
    let mut class = Class::Other;
    let flush = |class: &Class, run: u64| match class {
        Class::Letter => run.div_ceil(4),
        Class::Digit => run.div_ceil(3),
        Class::Space => u64::from(run > 0),
        Class::Other => 0,
    };
    for character in text.chars() {
        let next = if character.is_alphabetic() {
            Class::Letter
        } else if character.is_ascii_digit() {
            Class::Digit
        } else if character.is_whitespace() {
            Class::Space
        } else {
            Class::Other
        };
        if next != class {
            tokens += flush(&class, run);
            run = 0;
            class = next;
        }
        if class == Class::Other {
            tokens += 1;
        } else {
            run += 1;
        }
    }
    tokens + flush(&class, run)
}

/// The compaction step.
pub struct Compact {
    metrics: CompactionMetrics,
}

impl Compact {
    pub fn new(metrics: &crate::metrics::Metrics) -> Compact {
        Compact {
            metrics: metrics.compaction(),
        }
    }

    /// Whether any tool of `config` asks for compaction (else the step is not built).
    pub fn is_needed(config: &switchboard_config::Config) -> bool {
        config
            .servers
            .values()
            .any(|server| server.policy.tools.values().any(|tool| tool.compact))
    }

    /// Rewrites the text blocks of `result`; what was saved, per block form.
    fn rewrite(&self, server: &str, result: &mut Value) {
        let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) else {
            return;
        };
        let mut rewritten = Vec::new();
        for (index, block) in content.iter_mut().enumerate() {
            if block.get("type").and_then(Value::as_str) != Some("text") {
                continue;
            }
            let Some(text) = block.get("text").and_then(Value::as_str) else {
                continue;
            };
            let Some((compacted, form)) = compact(text) else {
                continue;
            };
            let saved_bytes = (text.len() - compacted.len()) as u64;
            let saved_tokens = estimate_tokens(text).saturating_sub(estimate_tokens(&compacted));
            self.metrics.compacted.inc(server);
            self.metrics.saved_bytes.inc_by(server, saved_bytes);
            self.metrics.saved_tokens.inc_by(server, saved_tokens);
            block["text"] = Value::String(compacted);
            rewritten
                .push(json!({ "index": index, "form": form.as_str(), "savedBytes": saved_bytes }));
        }
        if rewritten.is_empty() {
            return;
        }
        if let Some(object) = result.as_object_mut() {
            let meta = object
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert(
                    META_KEY.to_owned(),
                    json!({ "blocks": rewritten, "table": TABLE_KEY }),
                );
            }
        }
    }
}

impl Step for Compact {
    fn name(&self) -> &'static str {
        "compact"
    }

    fn hooks(&self) -> Hooks {
        Hooks::AFTER
    }

    fn after<'a>(
        &'a self,
        call: &'a Call<'_>,
        outcome: &'a mut Result<Reply, Error>,
    ) -> StepFuture<'a, ()> {
        if call.method == "tools/call"
            && let Target::Upstream(route) = &call.target
            && let Some(facts) = call.catalog.server_facts(&route.server)
            && facts
                .policy
                .tools
                .get(&route.name)
                .is_some_and(|t| t.compact)
            && let Ok(Reply::Value(result)) = outcome
        {
            self.rewrite(&route.server, result);
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests;
