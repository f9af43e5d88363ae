//! `[redaction]`: what the gateway removes from results before a client sees them, and
//! whether tools whose descriptions carry hidden instructions are hidden. Raw shapes,
//! validation and the validated model live together here, like `access.rs`.
//!
//! Custom patterns are compiled here, at load, so a bad regex rejects the file with its
//! key path; the gateway compiles them again when it builds its pipeline. Nothing here
//! prints a secret: `hash_salt` and `secrets` are redacted in `Debug`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::access::Glob;
use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};
use crate::raw::{Table, UniqueMap};
use crate::secret::Secret;

/// What happens to a result in which a detector found something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RedactAction {
    /// The match is replaced by `[REDACTED:<detector>]`.
    Mask,
    /// The match is replaced by `[REDACTED:<detector>:<tag>]`, a short keyed SHA-256 tag
    /// that is the same for the same value (so equal values stay recognisable).
    Hash,
    /// The content block holding the match is removed (where there are no blocks, as in
    /// `structuredContent`, the match is masked).
    Drop,
    /// The whole result is withheld: a tool call answers a tool error (`isError`), a read
    /// or a prompt a JSON-RPC error.
    Block,
}

impl RedactAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RedactAction::Mask => "mask",
            RedactAction::Hash => "hash",
            RedactAction::Drop => "drop",
            RedactAction::Block => "block",
        }
    }
}

/// A configured regex detector (`[[redaction.patterns]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedactPattern {
    /// Its detector name (in masks, metrics, audit records and rules).
    pub name: String,
    /// The regex (Rust `regex` syntax; linear time). A capture group named `redact`
    /// limits the replacement to that group.
    pub regex: String,
    /// Where it is written (`redaction.patterns[0]`).
    pub path: String,
}

/// `[[redaction.rules]]`: the policy for the servers and names its globs match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedactRule {
    pub servers: Glob,
    /// Exposed tool and prompt names and resource URIs.
    pub tools: Glob,
    /// The detectors that apply here; `None`: those of the section.
    pub detectors: Option<Vec<String>>,
    /// The action of every detector here; `None`: the section's.
    pub action: Option<RedactAction>,
    /// Per-detector actions, over `action`.
    pub actions: BTreeMap<String, RedactAction>,
    /// Where the rule is written (`redaction.rules[0]`).
    pub path: String,
}

/// The validated `[redaction]` section (`hash_salt` and `secrets` print as redactions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedactionSettings {
    /// The detectors that apply by default: the built-ins listed in `detectors` (all of
    /// them when the key is absent), then every configured pattern.
    pub detectors: Vec<String>,
    /// The default action.
    pub action: RedactAction,
    /// Per-detector actions, over `action`.
    pub actions: BTreeMap<String, RedactAction>,
    pub patterns: Vec<RedactPattern>,
    /// Tried in order; the first whose globs match a call decides its policy.
    pub rules: Vec<RedactRule>,
    /// The key of `hash` tags; `None`: a random key per process.
    pub hash_salt: Option<Secret<String>>,
    /// Literal values treated like the gateway's own injected secrets.
    pub secrets: Vec<Secret<String>>,
    /// Hide tools whose descriptions are flagged as carrying hidden instructions (they are
    /// flagged, logged and shown in `/admin` either way).
    pub hide_poisoned: bool,
}

impl RedactionSettings {
    /// The built-in detectors, in the order their matches win over one another.
    pub const BUILTIN_DETECTORS: [&'static str; 12] = [
        "private_key",
        "secret",
        "jwt",
        "github_token",
        "slack_token",
        "aws_key",
        "google_key",
        "api_key",
        "card",
        "iban",
        "email",
        "phone",
    ];
    /// The shortest literal accepted in `secrets`.
    pub const MIN_SECRET_CHARS: usize = 6;
    /// The shortest accepted `hash_salt`.
    pub const MIN_SALT_CHARS: usize = 16;
    /// The largest compiled size of one pattern.
    pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;
    /// The most patterns a section may configure.
    pub const MAX_PATTERNS: usize = 64;

    /// Every detector name a rule or `actions` may use.
    pub fn known_detectors(&self) -> impl Iterator<Item = &str> {
        Self::BUILTIN_DETECTORS
            .iter()
            .copied()
            .chain(self.patterns.iter().map(|p| p.name.as_str()))
    }
}

impl Default for RedactionSettings {
    fn default() -> Self {
        RedactionSettings {
            detectors: Self::BUILTIN_DETECTORS.map(str::to_owned).to_vec(),
            action: RedactAction::Mask,
            actions: BTreeMap::new(),
            patterns: Vec::new(),
            rules: Vec::new(),
            hash_salt: None,
            secrets: Vec::new(),
            hide_poisoned: false,
        }
    }
}

// ---- raw shapes ----

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedaction {
    detectors: Option<Vec<String>>,
    action: Option<RawAction>,
    actions: Option<UniqueMap<RawAction>>,
    patterns: Option<Vec<Table<RawPattern>>>,
    rules: Option<Vec<Table<RawRule>>>,
    hash_salt: Option<String>,
    secrets: Option<Vec<String>>,
    hide_poisoned: Option<bool>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    Mask,
    Hash,
    Drop,
    Block,
}

impl From<RawAction> for RedactAction {
    fn from(raw: RawAction) -> Self {
        match raw {
            RawAction::Mask => RedactAction::Mask,
            RawAction::Hash => RedactAction::Hash,
            RawAction::Drop => RedactAction::Drop,
            RawAction::Block => RedactAction::Block,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawPattern {
    name: Option<String>,
    regex: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawRule {
    servers: Option<String>,
    tools: Option<String>,
    detectors: Option<Vec<String>>,
    action: Option<RawAction>,
    actions: Option<UniqueMap<RawAction>>,
}

// ---- validation ----

fn is_detector_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn pattern(
    raw: RawPattern,
    path: &KeyPath,
    earlier: &[RedactPattern],
) -> Result<RedactPattern, Problem> {
    let name = raw
        .name
        .ok_or_else(|| Problem::new(path.key("name"), "is required"))?;
    if !is_detector_name(&name) {
        return Err(Problem::new(
            path.key("name"),
            "must be 1 to 32 characters of a-z, 0-9 and _",
        ));
    }
    if RedactionSettings::BUILTIN_DETECTORS.contains(&name.as_str())
        || earlier.iter().any(|p| p.name == name)
    {
        return Err(Problem::new(
            path.key("name"),
            format!("`{name}` is already a detector"),
        ));
    }
    let regex = raw
        .regex
        .ok_or_else(|| Problem::new(path.key("regex"), "is required"))?;
    let compiled = regex::RegexBuilder::new(&regex)
        .size_limit(RedactionSettings::PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|error| {
            let why = match error {
                regex::Error::CompiledTooBig(_) => "compiles larger than 1 MiB".to_owned(),
                other => other
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .to_owned(),
            };
            Problem::new(path.key("regex"), format!("does not compile: {why}"))
        })?;
    if compiled.is_match("") {
        return Err(Problem::new(
            path.key("regex"),
            "matches the empty string (it would match everywhere)",
        ));
    }
    Ok(RedactPattern {
        name,
        regex,
        path: path.to_string(),
    })
}

fn detector_list(
    names: Vec<String>,
    known: &[&str],
    path: &KeyPath,
) -> Result<Vec<String>, Problem> {
    for (index, name) in names.iter().enumerate() {
        if !known.contains(&name.as_str()) {
            return Err(Problem::new(
                path.index(index),
                format!(
                    "unknown detector `{name}`; expected one of {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(names)
}

fn action_map(
    raw: Option<UniqueMap<RawAction>>,
    known: &[&str],
    path: &KeyPath,
) -> Result<BTreeMap<String, RedactAction>, Problem> {
    let raw = raw.map(|map| map.0).unwrap_or_default();
    for name in raw.keys() {
        if !known.contains(&name.as_str()) {
            return Err(Problem::new(
                path.key(name),
                format!("unknown detector; expected one of {}", known.join(", ")),
            ));
        }
    }
    Ok(raw.into_iter().map(|(k, v)| (k, v.into())).collect())
}

pub(crate) fn validate(
    raw: RawRedaction,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<RedactionSettings, Problem> {
    let raw_patterns = raw.patterns.unwrap_or_default();
    if raw_patterns.len() > RedactionSettings::MAX_PATTERNS {
        return Err(Problem::new(
            path.key("patterns"),
            format!("at most {} patterns", RedactionSettings::MAX_PATTERNS),
        ));
    }
    let mut patterns = Vec::new();
    for (index, raw_pattern) in raw_patterns.into_iter().enumerate() {
        let pattern = pattern(raw_pattern.0, &path.key("patterns").index(index), &patterns)?;
        patterns.push(pattern);
    }
    let known: Vec<&str> = RedactionSettings::BUILTIN_DETECTORS
        .iter()
        .copied()
        .chain(patterns.iter().map(|p| p.name.as_str()))
        .collect();
    let mut detectors = match raw.detectors {
        Some(names) => detector_list(
            names,
            &RedactionSettings::BUILTIN_DETECTORS,
            &path.key("detectors"),
        )?,
        None => RedactionSettings::BUILTIN_DETECTORS
            .map(str::to_owned)
            .to_vec(),
    };
    detectors.extend(patterns.iter().map(|p| p.name.clone()));
    let actions = action_map(raw.actions, &known, &path.key("actions"))?;
    let mut rules = Vec::new();
    for (index, raw_rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let rule_path = path.key("rules").index(index);
        let raw_rule = raw_rule.0;
        rules.push(RedactRule {
            servers: Glob::new(raw_rule.servers.unwrap_or_else(|| "*".to_owned())),
            tools: Glob::new(raw_rule.tools.unwrap_or_else(|| "*".to_owned())),
            detectors: raw_rule
                .detectors
                .map(|names| detector_list(names, &known, &rule_path.key("detectors")))
                .transpose()?,
            action: raw_rule.action.map(RedactAction::from),
            actions: action_map(raw_rule.actions, &known, &rule_path.key("actions"))?,
            path: rule_path.to_string(),
        });
    }
    let hash_salt = match raw.hash_salt {
        Some(salt) => {
            let salt_path = path.key("hash_salt");
            let salt =
                expand(&salt, env).map_err(|message| Problem::new(salt_path.clone(), message))?;
            if salt.chars().count() < RedactionSettings::MIN_SALT_CHARS {
                return Err(Problem::new(
                    salt_path,
                    format!(
                        "must be at least {} characters",
                        RedactionSettings::MIN_SALT_CHARS
                    ),
                ));
            }
            Some(Secret::new(salt))
        }
        None => None,
    };
    let mut secrets = Vec::new();
    for (index, secret) in raw.secrets.unwrap_or_default().into_iter().enumerate() {
        let secret_path = path.key("secrets").index(index);
        let secret =
            expand(&secret, env).map_err(|message| Problem::new(secret_path.clone(), message))?;
        if secret.chars().count() < RedactionSettings::MIN_SECRET_CHARS {
            return Err(Problem::new(
                secret_path,
                format!(
                    "must be at least {} characters (shorter values would match ordinary text)",
                    RedactionSettings::MIN_SECRET_CHARS
                ),
            ));
        }
        secrets.push(Secret::new(secret));
    }
    Ok(RedactionSettings {
        detectors,
        action: raw.action.map_or(RedactAction::Mask, RedactAction::from),
        actions,
        patterns,
        rules,
        hash_salt,
        secrets,
        hide_poisoned: raw.hide_poisoned.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_names_are_short_snake_case() {
        assert!(is_detector_name("employee_id"));
        assert!(!is_detector_name("Employee"));
        assert!(!is_detector_name(""));
        assert!(!is_detector_name(&"a".repeat(33)));
    }

    #[test]
    fn debug_redacts_salt_and_secrets() {
        let settings = RedactionSettings {
            hash_salt: Some(Secret::new("salt-salt-salt-salt".into())),
            secrets: vec![Secret::new("literal-secret".into())],
            ..RedactionSettings::default()
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("salt-salt"), "{printed}");
        assert!(!printed.contains("literal-secret"), "{printed}");
    }
}
