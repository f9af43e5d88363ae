//! Semantic side of tool search: a small sentence encoder (all-MiniLM-L6-v2 or another
//! BERT-style model in safetensors) run in plain Rust, so semantic ranking works offline
//! with no service. The caller reads the model's files (`tokenizer.json`,
//! `model.safetensors`, `config.json`); this module only computes.

mod bert;
mod wordpiece;

use crate::document::ToolText;

/// Sequence length embedded (the model's tokenizer truncates at 128).
const MAX_TOKENS: usize = 128;

/// The model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("model: {0}")]
    Model(String),
}

/// A sentence encoder: text → unit vector.
pub struct Embedder {
    wordpiece: wordpiece::WordPiece,
    bert: bert::Bert,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedder")
    }
}

impl Embedder {
    /// From the contents of `tokenizer.json`, `model.safetensors` and `config.json`.
    pub fn from_bytes(
        tokenizer: &str,
        weights: &[u8],
        config: &str,
    ) -> Result<Embedder, EmbedError> {
        let config: serde_json::Value = serde_json::from_str(config)
            .map_err(|e| EmbedError::Model(format!("config.json: {e}")))?;
        let number = |key: &str| {
            config
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize)
                .ok_or_else(|| EmbedError::Model(format!("config.json: no {key}")))
        };
        let shape = bert::Shape {
            width: number("hidden_size")?,
            heads: number("num_attention_heads")?,
            layers: number("num_hidden_layers")?,
            intermediate: number("intermediate_size")?,
        };
        Ok(Embedder {
            wordpiece: wordpiece::WordPiece::from_json(tokenizer)?,
            bert: bert::Bert::load(weights, shape)?,
        })
    }

    /// The unit embedding of `text` (its first 126 word pieces).
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let max = MAX_TOKENS.min(self.bert.max_positions()).saturating_sub(2);
        let mut ids = vec![self.wordpiece.cls];
        ids.extend(self.wordpiece.encode(text, max));
        ids.push(self.wordpiece.sep);
        self.bert.embed(&ids)
    }

    /// The text of a tool that is embedded: its name in words, title, description and
    /// parameter names.
    pub fn tool_text(text: &ToolText<'_>) -> String {
        let mut out = String::new();
        for piece in text.name.split(|c: char| !c.is_alphanumeric()) {
            out.push_str(piece);
            out.push(' ');
        }
        if let Some(title) = text.title {
            out.push_str(title);
            out.push_str(". ");
        }
        if let Some(description) = text.description {
            out.push_str(description);
            out.push(' ');
        }
        if let Some(properties) = text
            .schema
            .and_then(|s| s.get("properties"))
            .and_then(serde_json::Value::as_object)
        {
            for name in properties.keys() {
                out.push_str(name);
                out.push(' ');
            }
        }
        out
    }
}

/// Cosine similarity of two unit embeddings.
pub fn similarity(a: &[f32], b: &[f32]) -> f32 {
    bert::cosine(a, b)
}
