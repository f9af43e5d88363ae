//! Detectors: what counts as personal data or a credential in a string.
//!
//! Every regex detector is one or more patterns in one [`RegexSet`]: a string is scanned
//! once to learn which patterns occur at all (usually none), and only those are then run
//! on it to find their matches. Each match passes its detector's check, which rejects
//! near-misses the regex cannot express without lookaround (a card number whose Luhn
//! digit is wrong, an IBAN whose mod-97 checksum fails, an email address that is really a
//! URL's user name) and may narrow the span. The `regex` crate runs in linear time and
//! has no backtracking, so no input can make a scan slow. Built-in patterns use ASCII
//! word boundaries (`(?-u:\b)`), which keeps them on the fast DFA engines for any text.
//!
//! The `secret` detector has no regex: it is the literal matcher of `secrets.rs`.

use std::ops::Range;
use std::sync::Arc;

use base64::Engine as _;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use switchboard_config::{RedactPattern, RedactionSettings};

/// A detector's index: built-ins first, in [`RedactionSettings::BUILTIN_DETECTORS`] order
/// (which is also the order in which overlapping matches are labelled), then configured
/// patterns in the order written.
pub(super) type DetectorId = usize;

/// One finding: a byte range of the string and the detector that found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) detector: DetectorId,
}

/// Confirms a regex match (and may narrow it), or rejects it as a near-miss.
type Check = fn(&str, Range<usize>) -> Option<Range<usize>>;

struct Pattern {
    detector: DetectorId,
    regex: Regex,
    /// The capture group to redact instead of the whole match.
    group: Option<usize>,
    check: Check,
}

/// Every detector's patterns, compiled once.
pub(super) struct Detectors {
    names: Vec<Arc<str>>,
    patterns: Vec<Pattern>,
    set: RegexSet,
}

/// The built-in patterns: (detector, regex, check, group to redact).
const BUILTIN_PATTERNS: &[(&str, &str, Check, Option<usize>)] = &[
    // A PEM block up to its END line; a truncated one up to the end of its base64 body.
    (
        "private_key",
        r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=:,.\t\n\r \\-]*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\t\n\r \\]*)",
        accept,
        None,
    ),
    (
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
        check_jwt,
        None,
    ),
    (
        "github_token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})(?-u:\b)",
        accept,
        None,
    ),
    (
        "slack_token",
        r"(?-u:\b)(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[0-9]+-[A-Za-z0-9-]{10,})",
        accept,
        None,
    ),
    (
        "slack_token",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{16,}",
        accept,
        None,
    ),
    (
        "aws_key",
        r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16,}",
        check_aws_key_id,
        None,
    ),
    // A secret access key only where it is named: 40 base64 characters are too common.
    (
        "aws_key",
        r#"(?i-u:aws_?secret_?(?:access_?)?key)["']?[\t ]*[:=][\t ]*["']?([A-Za-z0-9/+]{40,})"#,
        check_base64_end,
        Some(1),
    ),
    (
        "google_key",
        r"(?-u:\b)AIza[0-9A-Za-z_-]{35,}",
        check_google_key,
        None,
    ),
    (
        "api_key",
        r"(?-u:\b)(?:sk|rk)[-_](?:live[-_]|test[-_]|proj[-_]|ant[-_]|or[-_]v1[-_]|svcacct[-_]|admin[-_])?[A-Za-z0-9_-]{20,}",
        check_api_key,
        None,
    ),
    (
        "card",
        r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,}(?-u:\b)",
        check_card,
        None,
    ),
    (
        "iban",
        r"(?-u:\b)[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){11,}(?-u:\b)",
        check_iban,
        None,
    ),
    (
        "email",
        r"(?-u:\b)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)",
        check_email,
        None,
    ),
    // International: a `+`, a country code and 8 to 15 digits in all.
    (
        "phone",
        r"\+[1-9][0-9]*(?:[ .-]?(?:\([0-9]+\)|[0-9]+))+",
        check_phone_international,
        None,
    ),
    // North American: (212) 555-0147, 212-555-0147, 212.555.0147.
    (
        "phone",
        r"(?:\([2-9][0-9]{2}\) ?|(?-u:\b)[2-9][0-9]{2}[-. ])[2-9][0-9]{2}[-. ][0-9]{4}(?-u:\b)",
        check_phone_national,
        None,
    ),
];

impl Detectors {
    /// The built-in detectors and the configured patterns. A pattern that does not
    /// compile (the config already refused it at load) is logged and left out.
    pub(super) fn new(custom: &[RedactPattern]) -> Detectors {
        let mut names: Vec<Arc<str>> = RedactionSettings::BUILTIN_DETECTORS
            .iter()
            .map(|name| Arc::from(*name))
            .collect();
        let mut patterns = Vec::new();
        for (name, source, check, group) in BUILTIN_PATTERNS {
            let detector = names
                .iter()
                .position(|n| &**n == *name)
                .expect("built-in patterns name built-in detectors");
            patterns.push(Pattern {
                detector,
                regex: Regex::new(source).expect("built-in patterns compile"),
                group: *group,
                check: *check,
            });
        }
        for pattern in custom {
            let compiled = RegexBuilder::new(&pattern.regex)
                .size_limit(RedactionSettings::PATTERN_SIZE_LIMIT)
                .build();
            let regex = match compiled {
                Ok(regex) => regex,
                Err(error) => {
                    tracing::error!(pattern = %pattern.path, %error, "redaction pattern does not compile");
                    continue;
                }
            };
            let group = regex
                .capture_names()
                .position(|name| name == Some("redact"));
            names.push(Arc::from(pattern.name.as_str()));
            patterns.push(Pattern {
                detector: names.len() - 1,
                regex,
                group,
                check: accept,
            });
        }
        let set = RegexSetBuilder::new(patterns.iter().map(|p| p.regex.as_str()))
            .size_limit(64 << 20)
            .build()
            .expect("every pattern compiled on its own");
        Detectors {
            names,
            patterns,
            set,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    pub(super) fn name(&self, id: DetectorId) -> &Arc<str> {
        &self.names[id]
    }

    pub(super) fn id(&self, name: &str) -> Option<DetectorId> {
        self.names.iter().position(|n| &**n == name)
    }

    /// Appends what the `enabled` detectors (by id) find in `text` to `hits`.
    pub(super) fn find(&self, text: &str, enabled: &[bool], hits: &mut Vec<Hit>) {
        if !self.set.is_match(text) {
            return;
        }
        for index in self.set.matches(text).iter() {
            let pattern = &self.patterns[index];
            if !enabled[pattern.detector] {
                continue;
            }
            let mut push = |span: Range<usize>| {
                if let Some(span) = (pattern.check)(text, span)
                    && !span.is_empty()
                {
                    hits.push(Hit {
                        start: span.start,
                        end: span.end,
                        detector: pattern.detector,
                    });
                }
            };
            match pattern.group {
                None => pattern.regex.find_iter(text).for_each(|m| push(m.range())),
                Some(group) => pattern
                    .regex
                    .captures_iter(text)
                    .filter_map(|c| c.get(group))
                    .for_each(|m| push(m.range())),
            }
        }
    }
}

/// Sorts `hits` and merges overlapping ones into one hit over their union, labelled with
/// the detector that ranks first (the lowest id), so that no part of a match is left.
pub(super) fn merge(hits: &mut Vec<Hit>) {
    if hits.len() < 2 {
        return;
    }
    hits.sort_unstable_by_key(|hit| (hit.start, std::cmp::Reverse(hit.end), hit.detector));
    let mut merged: Vec<Hit> = Vec::with_capacity(hits.len());
    for hit in hits.drain(..) {
        match merged.last_mut() {
            Some(last) if hit.start < last.end => {
                last.end = last.end.max(hit.end);
                last.detector = last.detector.min(hit.detector);
            }
            _ => merged.push(hit),
        }
    }
    *hits = merged;
}

// ---- checks ----

fn accept(_: &str, span: Range<usize>) -> Option<Range<usize>> {
    Some(span)
}

fn char_before(text: &str, at: usize) -> Option<char> {
    text[..at].chars().next_back()
}

fn char_after(text: &str, at: usize) -> Option<char> {
    text[at..].chars().next()
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

// Patterns repeat without upper bounds (a bounded repetition is unrolled into states of
// the set's automaton); lengths are checked here instead.

/// An access key id is 20 characters.
fn check_aws_key_id(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    (span.len() == 20 && !char_after(text, span.end).is_some_and(|c| c.is_ascii_alphanumeric()))
        .then_some(span)
}

/// A Google API key is 39 characters, not followed by more token characters.
fn check_google_key(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    (span.len() == 39 && !char_after(text, span.end).is_some_and(is_token_char)).then_some(span)
}

/// A secret access key is 40 base64 characters.
fn check_base64_end(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    (span.len() == 40 && char_after(text, span.end) != Some('=')).then_some(span)
}

/// A JWT's first segment is a JSON header naming its algorithm.
fn check_jwt(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let header = text[span.clone()].split('.').next()?;
    let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
    header.get("alg")?.as_str()?;
    (!char_after(text, span.end).is_some_and(|c| is_token_char(c) || c == '.')).then_some(span)
}

/// A generic `sk-…` key is random: its body mixes upper case, lower case and digits
/// (`sk-learn-compatible` is a word, not a key).
fn check_api_key(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    if span.len() > 512 {
        return None;
    }
    let body = &text[span.start + 3..span.end];
    let has = |f: fn(&u8) -> bool| body.as_bytes().iter().any(f);
    (has(u8::is_ascii_uppercase) && has(u8::is_ascii_lowercase) && has(u8::is_ascii_digit))
        .then_some(span)
}

/// The Luhn checksum of a string of ASCII digits.
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, digit)| {
            let value = u32::from(digit - b'0');
            match index % 2 {
                1 if value > 4 => value * 2 - 9,
                1 => value * 2,
                _ => value,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a card number's first digits and length belong to an issuer network (Visa,
/// Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro).
fn card_network(digits: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        digits[..n]
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let len = digits.len();
    match digits[0] {
        b'4' => matches!(len, 13 | 16 | 19),
        b'2' => len == 16 && (2221..=2720).contains(&prefix(4)),
        b'5' => match prefix(2) {
            51..=55 => len == 16,
            50 | 56..=59 => (12..=19).contains(&len),
            _ => false,
        },
        b'3' => match prefix(2) {
            34 | 37 => len == 15,
            35 => (3528..=3589).contains(&prefix(4)) && (16..=19).contains(&len),
            30 | 36 | 38 | 39 => (14..=19).contains(&len),
            _ => false,
        },
        b'6' => (16..=19).contains(&len) || ((12..=19).contains(&len) && prefix(2) >= 63),
        _ => false,
    }
}

fn check_card(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let candidate = &text[span.clone()];
    let digits: Vec<u8> = candidate.bytes().filter(u8::is_ascii_digit).collect();
    let mut separators = candidate.bytes().filter(|b| !b.is_ascii_digit());
    if let Some(first) = separators.next()
        && separators.any(|other| other != first)
    {
        return None;
    }
    (card_network(&digits) && luhn(&digits)).then_some(span)
}

/// IBAN length per country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SC", 31),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
];

/// The ISO 7064 mod-97 check of an IBAN (country, check digits, then the account).
pub(crate) fn iban_checksum(iban: &[u8]) -> bool {
    let (head, tail) = iban.split_at(4);
    let mut remainder: u32 = 0;
    for &byte in tail.iter().chain(head) {
        let value = match byte {
            b'0'..=b'9' => u32::from(byte - b'0'),
            b'A'..=b'Z' => u32::from(byte - b'A') + 10,
            _ => return false,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

/// The country's length narrows the match (a capitalised word after the IBAN is not part
/// of it), then the checksum decides.
fn check_iban(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let candidate = &text[span.clone()];
    let length = IBAN_LENGTHS
        .iter()
        .find(|(country, _)| candidate.starts_with(country))?
        .1;
    let mut compact = Vec::with_capacity(length);
    let mut end = span.start;
    for (offset, byte) in candidate.bytes().enumerate() {
        if compact.len() == length {
            break;
        }
        if byte != b' ' {
            compact.push(byte);
            end = span.start + offset + 1;
        }
    }
    if compact.len() != length || char_after(text, end).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    iban_checksum(&compact).then_some(span.start..end)
}

/// Top-level domains that are really file extensions (`icon@2x.png`).
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "tif", "tiff", "avif", "heic",
];

/// How far back a match looks for the URL it may sit in.
const URL_LOOKBACK: usize = 2048;

fn check_email(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let candidate = &text[span.clone()];
    let (local, domain) = candidate.split_once('@')?;
    if local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || domain.len() > 253
    {
        return None;
    }
    let labels_ok = domain.split('.').all(|label| {
        (1..=63).contains(&label.len()) && !label.starts_with('-') && !label.ends_with('-')
    });
    let tld = domain.rsplit('.').next()?;
    if !labels_ok || tld.len() > 24 {
        return None;
    }
    if FILE_EXTENSIONS
        .iter()
        .any(|ext| tld.eq_ignore_ascii_case(ext))
    {
        return None;
    }
    // `scheme://user@host` and `scheme://user:password@host` name a URL's user, not a
    // mailbox: look back through the token for a `://` with no `/` after it.
    let mut from = span.start.saturating_sub(URL_LOOKBACK);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let before = &text[from..span.start];
    let token_start = before
        .rfind(|c: char| c.is_whitespace() || "\"'<>()[]{}`,;".contains(c))
        .map_or(0, |at| at + 1);
    let token = &before[token_start..];
    if let Some(at) = token.rfind("://")
        && !token[at + 3..].contains('/')
    {
        return None;
    }
    Some(span)
}

fn digit_count(text: &str) -> usize {
    text.bytes().filter(u8::is_ascii_digit).count()
}

fn check_phone_international(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    if char_before(text, span.start).is_some_and(|c| c.is_alphanumeric() || c == '+')
        || char_after(text, span.end).is_some_and(|c| c.is_ascii_digit())
    {
        return None;
    }
    let groups = text[span.clone()]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|group| !group.is_empty())
        .count();
    ((8..=15).contains(&digit_count(&text[span.clone()])) && groups <= 7).then_some(span)
}

fn check_phone_national(text: &str, span: Range<usize>) -> Option<Range<usize>> {
    let after_digit = char_before(text, span.start)
        .is_some_and(|c| c.is_alphanumeric() || c == '+' || c == '-' || c == '.');
    (!after_digit).then_some(span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_detector_has_a_place() {
        let detectors = Detectors::new(&[]);
        assert_eq!(detectors.len(), RedactionSettings::BUILTIN_DETECTORS.len());
        for (name, ..) in BUILTIN_PATTERNS {
            assert!(detectors.id(name).is_some(), "{name}");
        }
    }

    #[test]
    fn luhn_and_mod97() {
        assert!(luhn(b"4111111111111111"));
        assert!(!luhn(b"4111111111111112"));
        assert!(luhn(b"79927398713"));
        assert!(iban_checksum(b"DE89370400440532013000"));
        assert!(iban_checksum(b"GB82WEST12345698765432"));
        assert!(!iban_checksum(b"DE89370400440532013001"));
    }

    #[test]
    fn overlapping_hits_merge_under_the_first_ranked_detector() {
        let mut hits = vec![
            Hit {
                start: 5,
                end: 9,
                detector: 10,
            },
            Hit {
                start: 0,
                end: 6,
                detector: 8,
            },
            Hit {
                start: 12,
                end: 14,
                detector: 3,
            },
        ];
        merge(&mut hits);
        assert_eq!(
            hits,
            [
                Hit {
                    start: 0,
                    end: 9,
                    detector: 8
                },
                Hit {
                    start: 12,
                    end: 14,
                    detector: 3
                }
            ]
        );
    }
}
