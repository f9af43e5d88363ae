//! Text → terms: split on anything that is not a letter or digit, split identifiers at
//! case changes and letter/digit boundaries (`getWeatherV2` → get, weather, v, 2), lower
//! case, drop stop words, stem (Snowball English, `rust-stemmers`).
//!
//! The same function reads tool definitions and queries, so both sides meet on the same
//! stems ("booking" and "book" both become `book`).

use rust_stemmers::{Algorithm, Stemmer};

/// Longest word kept; longer runs (base64, hashes) are not words anyone searches for.
const MAX_WORD: usize = 40;

/// English words too common to tell tools apart. Kept short on purpose: words such as
/// "get", "list" or "new" carry meaning in tool names and stay.
const STOP_WORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by", "can", "could",
    "do", "does", "for", "from", "had", "has", "have", "he", "her", "here", "him", "his", "how",
    "i", "if", "in", "into", "is", "it", "its", "just", "me", "my", "of", "on", "or", "our",
    "please", "she", "should", "so", "some", "than", "that", "the", "their", "them", "then",
    "there", "these", "they", "this", "those", "to", "too", "us", "was", "we", "were", "what",
    "when", "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your",
];

/// Turns text into search terms.
pub struct Tokenizer {
    stemmer: Stemmer,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Tokenizer {
            stemmer: Stemmer::create(Algorithm::English),
        }
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer(english)")
    }
}

impl Tokenizer {
    /// Calls `each` with every term of `text`, in order.
    pub fn terms(&self, text: &str, mut each: impl FnMut(String)) {
        for word in words(text) {
            let lower = word.to_lowercase();
            if lower.len() > MAX_WORD || STOP_WORDS.binary_search(&lower.as_str()).is_ok() {
                continue;
            }
            each(self.stemmer.stem(&lower).into_owned());
        }
    }

    /// The terms of `text`, collected.
    pub fn collect(&self, text: &str) -> Vec<String> {
        let mut terms = Vec::new();
        self.terms(text, |term| terms.push(term));
        terms
    }
}

/// The words of `text`: runs of letters or of digits, identifiers split where a lower
/// case letter meets an upper case one (`fooBar`), where an acronym ends (`HTTPServer` →
/// HTTP, Server) and where letters meet digits.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|run| !run.is_empty())
        .flat_map(split_identifier)
}

fn split_identifier(run: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = run.char_indices().collect();
    let mut pieces = Vec::new();
    let mut start = 0;
    for window in 1..chars.len() {
        let (at, current) = chars[window];
        let previous = chars[window - 1].1;
        let next = chars.get(window + 1).map(|&(_, c)| c);
        let boundary = (previous.is_lowercase() && current.is_uppercase())
            || (previous.is_alphabetic() != current.is_alphabetic())
            || (previous.is_uppercase()
                && current.is_uppercase()
                && next.is_some_and(char::is_lowercase));
        if boundary {
            pieces.push(&run[start..at]);
            start = at;
        }
    }
    pieces.push(&run[start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn splits_identifiers() {
        assert_eq!(
            words("getWeatherV2 HTTPServer AclApi.add_mapping Events_3_FindEvents")
                .collect::<Vec<_>>(),
            [
                "get", "Weather", "V", "2", "HTTP", "Server", "Acl", "Api", "add", "mapping",
                "Events", "3", "Find", "Events"
            ]
        );
    }

    #[test]
    fn stems_and_drops_stop_words() {
        let tokenizer = Tokenizer::default();
        assert_eq!(
            tokenizer.collect("Booking the flights for my trips"),
            ["book", "flight", "trip"]
        );
        assert_eq!(tokenizer.collect("book_flight"), ["book", "flight"]);
    }
}
