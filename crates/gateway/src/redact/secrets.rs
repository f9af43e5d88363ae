//! The `secret` detector: the literal values the gateway itself injects into upstreams
//! (`env` of stdio servers, `headers` of HTTP servers, OAuth client secrets), its own
//! secrets (`admin_token`, `state_secret`, `hash_salt`) and `[redaction] secrets`. An
//! upstream that echoes one back (an error quoting the `Authorization` header, a tool
//! printing its environment) must not hand it to the client.
//!
//! Not every `env` value is a secret (`TZ = "UTC"` is not): a value counts when its key is
//! named like a credential, or when it looks random (long, no spaces, high entropy).
//! Values shorter than [`MIN_CHARS`] never count; they would match ordinary text.
//!
//! Matching is one Aho-Corasick automaton (leftmost-longest) over all literals. Servers
//! added while the gateway runs (hot reload, the admin API, `load_server`) teach it their
//! values ([`Secrets::learn`]); a value once learnt stays (a retired server's secret is
//! still a secret), up to [`MAX_LITERALS`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use switchboard_config::{Config, OAuthClient, Secret, ServerSpec, TransportSpec};

use super::detect::{DetectorId, Hit};

/// The shortest value taken as a secret.
pub(super) const MIN_CHARS: usize = 8;
/// The most literals kept; values past it are logged and not matched.
pub(super) const MAX_LITERALS: usize = 4096;

/// The literal secrets and their automaton.
#[derive(Default)]
pub struct Secrets {
    known: Mutex<BTreeSet<String>>,
    matcher: ArcSwapOption<AhoCorasick>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets(<{} redacted>)", self.len())
    }
}

/// Key names that mark a credential.
const SECRET_NAMES: &[&str] = &[
    "key",
    "token",
    "secret",
    "passw",
    "pwd",
    "auth",
    "credential",
    "private",
    "cookie",
    "session",
    "signature",
    "bearer",
];

fn is_secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_NAMES.iter().any(|marker| lower.contains(marker))
}

/// Long, unbroken and varied: an API key pasted under an unremarkable name. URLs and
/// paths are left out (a base URL is configuration, not a credential).
fn looks_random(value: &str) -> bool {
    if value.chars().count() < 20
        || value.chars().any(char::is_whitespace)
        || value.contains("://")
        || value.starts_with(['/', '.', '~'])
    {
        return false;
    }
    let mut counts = std::collections::HashMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let total = value.chars().count() as f64;
    let entropy: f64 = counts
        .values()
        .map(|&n| {
            let p = n as f64 / total;
            -p * p.log2()
        })
        .sum();
    entropy >= 3.5
}

/// The literals one value contributes: itself, and for `Scheme credential` header values
/// (`Bearer …`, `Basic …`) the credential alone.
fn literals_of(value: &str, named_secret: bool, out: &mut Vec<String>) {
    let value = value.trim();
    if value.chars().count() < MIN_CHARS || !(named_secret || looks_random(value)) {
        return;
    }
    out.push(value.to_owned());
    if let Some((scheme, credential)) = value.split_once(' ')
        && scheme.chars().all(|c| c.is_ascii_alphabetic())
        && credential.trim().chars().count() >= MIN_CHARS
    {
        out.push(credential.trim().to_owned());
    }
}

fn of_values(values: &BTreeMap<String, Secret<String>>, out: &mut Vec<String>) {
    for (name, value) in values {
        literals_of(value.expose_str(), is_secret_name(name), out);
    }
}

fn of_oauth(oauth: Option<&OAuthClient>, out: &mut Vec<String>) {
    if let Some(secret) = oauth.and_then(|o| o.client_secret.as_ref()) {
        literals_of(secret.expose_str(), true, out);
    }
}

/// What a server's definition injects: its transport's values and every tenant's
/// (a tenant's own token must not come back to that tenant either).
pub(super) fn of_spec(spec: &ServerSpec) -> Vec<String> {
    let mut out = Vec::new();
    match &spec.transport {
        TransportSpec::Stdio { env, .. } => of_values(env, &mut out),
        TransportSpec::Http { headers, oauth, .. } => {
            of_values(headers, &mut out);
            of_oauth(oauth.as_ref(), &mut out);
        }
        TransportSpec::Sse { headers, .. } => of_values(headers, &mut out),
    }
    for credentials in spec.tenants.values() {
        of_values(&credentials.env, &mut out);
        of_values(&credentials.headers, &mut out);
        of_oauth(credentials.oauth.as_ref(), &mut out);
    }
    out
}

impl Secrets {
    /// Every secret a config names: its servers', the gateway's own and `[redaction]`'s.
    pub fn from_config(config: &Config) -> Secrets {
        let mut literals = Vec::new();
        for spec in config.servers.values() {
            literals.extend(of_spec(spec));
        }
        for own in [&config.gateway.admin_token, &config.gateway.state_secret]
            .into_iter()
            .flatten()
        {
            literals_of(own.expose_str(), true, &mut literals);
        }
        if let Some(redaction) = &config.redaction {
            if let Some(salt) = &redaction.hash_salt {
                literals_of(salt.expose_str(), true, &mut literals);
            }
            // Listed explicitly: taken whatever their length (the config checked a minimum).
            literals.extend(redaction.secrets.iter().map(|s| s.expose_str().to_owned()));
        }
        let secrets = Secrets::default();
        secrets.add(literals);
        secrets
    }

    /// Learns the secrets of a server added while the gateway runs.
    pub fn learn(&self, spec: &ServerSpec) {
        self.add(of_spec(spec));
    }

    /// Learns a value stored in the secret store (`vault`), whatever its name.
    pub fn learn_value(&self, value: &Secret<String>) {
        let mut literals = Vec::new();
        literals_of(value.expose_str(), true, &mut literals);
        self.add(literals);
    }

    fn add(&self, literals: Vec<String>) {
        let mut known = self.known.lock();
        let before = known.len();
        let mut skipped = 0;
        for literal in literals {
            if known.len() >= MAX_LITERALS && !known.contains(&literal) {
                skipped += 1;
                continue;
            }
            known.insert(literal);
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                limit = MAX_LITERALS,
                "too many injected secrets to redact; the newest are not matched"
            );
        }
        if known.len() == before && self.matcher.load().is_some() {
            return;
        }
        if known.is_empty() {
            return;
        }
        match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(known.iter())
        {
            Ok(matcher) => self.matcher.store(Some(Arc::new(matcher))),
            Err(error) => tracing::error!(%error, "the injected-secret matcher cannot be built"),
        }
    }

    pub fn len(&self) -> usize {
        self.known.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends every occurrence of a known secret in `text` to `hits`.
    pub(super) fn find(&self, text: &str, detector: DetectorId, hits: &mut Vec<Hit>) {
        let matcher = self.matcher.load();
        let Some(matcher) = matcher.as_deref() else {
            return;
        };
        hits.extend(matcher.find_iter(text).map(|m| Hit {
            start: m.start(),
            end: m.end(),
            detector,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(env: &[(&str, &str)]) -> ServerSpec {
        let text = format!(
            "[servers.s]\ncommand = \"x\"\nenv = {{ {} }}\n",
            env.iter()
                .map(|(k, v)| format!("{k} = {v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let config =
            switchboard_config::parse(&text, switchboard_config::ConfigFormat::Native, None)
                .unwrap();
        config.servers.into_values().next().unwrap()
    }

    #[test]
    fn credential_names_and_random_values_count_plain_settings_do_not() {
        let literals = of_spec(&spec(&[
            ("TZ", "UTC"),
            ("NODE_ENV", "production"),
            ("API_TOKEN", "tok-12345678"),
            ("UPSTREAM", "Zx81kPq02LmN7vB4cT9wYr5s"),
            ("BASE_URL", "https://api.example.com/v1/endpoint"),
            ("SHORT_KEY", "abc"),
        ]));
        assert_eq!(literals, ["tok-12345678", "Zx81kPq02LmN7vB4cT9wYr5s"]);
    }

    #[test]
    fn every_tenant_s_credentials_count() {
        let text = "[servers.keyed]\ncommand = \"srv\"\nsharing = \"per_tenant\"\n\
                    env = { API_KEY = \"server-key-0001\" }\n\
                    [servers.keyed.tenants.acme]\nenv = { API_KEY = \"acme-key-00001\" }\n\
                    [servers.web]\nurl = \"http://a\"\nsharing = \"per_tenant\"\n\
                    [servers.web.tenants.globex]\nheaders = { Authorization = \"Bearer globex-000001\" }\n";
        let config =
            switchboard_config::parse(text, switchboard_config::ConfigFormat::Native, None)
                .unwrap();
        let literals: Vec<String> = config.servers.values().flat_map(of_spec).collect();
        assert_eq!(
            literals,
            [
                "server-key-0001",
                "acme-key-00001",
                "Bearer globex-000001",
                "globex-000001"
            ]
        );
    }

    #[test]
    fn a_bearer_header_contributes_its_credential_too() {
        let mut out = Vec::new();
        literals_of("Bearer abcdefgh12345678", true, &mut out);
        assert_eq!(out, ["Bearer abcdefgh12345678", "abcdefgh12345678"]);
    }

    #[test]
    fn finds_the_longest_literal_and_learns_new_ones() {
        let secrets = Secrets::default();
        secrets.add(vec!["abcdefgh".into(), "abcdefgh1234".into()]);
        let mut hits = Vec::new();
        secrets.find("x abcdefgh1234 y", 1, &mut hits);
        assert_eq!((hits[0].start, hits[0].end), (2, 14));
        secrets.learn(&spec(&[("PASSWORD", "hunter2hunter2")]));
        hits.clear();
        secrets.find("pw=hunter2hunter2", 1, &mut hits);
        assert_eq!(hits.len(), 1);
        assert_eq!(format!("{secrets:?}"), "Secrets(<3 redacted>)");
    }
}
