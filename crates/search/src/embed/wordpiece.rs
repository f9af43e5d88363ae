//! BERT's uncased WordPiece tokenizer, read from a `tokenizer.json` vocabulary: clean and
//! lower-case the text, split on whitespace and punctuation, then match each word
//! greedily against the vocabulary (longest prefix first, `##` pieces after it).

use std::collections::HashMap;

use super::EmbedError;

/// Longest word matched; longer ones become `[UNK]` (as BERT does).
const MAX_WORD_CHARS: usize = 100;

#[derive(Debug)]
pub(crate) struct WordPiece {
    vocab: HashMap<String, u32>,
    unknown: u32,
    pub(crate) cls: u32,
    pub(crate) sep: u32,
}

impl WordPiece {
    /// From a Hugging Face `tokenizer.json` whose model is WordPiece.
    pub(crate) fn from_json(json: &str) -> Result<WordPiece, EmbedError> {
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let vocab: HashMap<String, u32> = value
            .pointer("/model/vocab")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| EmbedError::Tokenizer("no model.vocab".into()))?
            .iter()
            .filter_map(|(piece, id)| Some((piece.clone(), u32::try_from(id.as_u64()?).ok()?)))
            .collect();
        let id = |piece: &str| {
            vocab
                .get(piece)
                .copied()
                .ok_or_else(|| EmbedError::Tokenizer(format!("no {piece} in the vocabulary")))
        };
        Ok(WordPiece {
            unknown: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            vocab,
        })
    }

    /// The ids of `text`, without the special tokens, at most `max` of them.
    pub(crate) fn encode(&self, text: &str, max: usize) -> Vec<u32> {
        let mut ids = Vec::new();
        for word in words(text) {
            if ids.len() >= max {
                break;
            }
            self.word_pieces(&word, &mut ids);
        }
        ids.truncate(max);
        ids
    }

    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > MAX_WORD_CHARS {
            ids.push(self.unknown);
            return;
        }
        let mut pieces = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let mut piece: String = chars[start..end].iter().collect();
                if start > 0 {
                    piece.insert_str(0, "##");
                }
                if let Some(&id) = self.vocab.get(&piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => pieces.push(id),
                None => {
                    ids.push(self.unknown);
                    return;
                }
            }
            start = end;
        }
        ids.extend(pieces);
    }
}

fn is_punctuation(c: char) -> bool {
    let code = c as u32;
    (33..=47).contains(&code)
        || (58..=64).contains(&code)
        || (91..=96).contains(&code)
        || (123..=126).contains(&code)
        || (!c.is_ascii() && !c.is_alphanumeric() && !c.is_whitespace())
}

/// Lower-cased words and single punctuation marks, control characters dropped.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_whitespace() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
        } else if c.is_control() || c == '\u{fffd}' {
            continue;
        } else if is_punctuation(c) {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            words.push(c.to_string());
        } else {
            current.extend(c.to_lowercase());
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> WordPiece {
        let json = r###"{"model":{"vocab":{"[UNK]":0,"[CLS]":1,"[SEP]":2,"play":3,"##ing":4,"the":5,",":6,"un":7,"##aff":8,"##able":9}}}"###;
        WordPiece::from_json(json).unwrap()
    }

    #[test]
    fn splits_words_into_pieces() {
        let wordpiece = tiny();
        assert_eq!(
            wordpiece.encode("The PLAYING, unaffable", 10),
            [5, 3, 4, 6, 7, 8, 9]
        );
        assert_eq!(wordpiece.encode("xyz play", 10), [0, 3]);
        assert_eq!(wordpiece.encode("play play play", 2), [3, 3]);
    }
}
