//! `[access]`: who may call what. Client identities (API keys, JWT issuers, the stdio
//! principal), per-tenant and per-role allow-lists, CEL argument rules, rate limits, daily
//! call budgets and concurrency caps.
//! Raw shapes, validation and the validated model live together here, like `policy.rs`.
//!
//! Nothing here keeps a client secret: an API key is kept as its SHA-256 hash (a `key`
//! written in the file, usually `${ENV}`, is hashed at load), and the types that hold
//! hashes print a redaction.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};
use crate::raw::{Table, UniqueMap};

/// The validated `[access]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSettings {
    /// Whether a request without credentials is served (as an anonymous principal).
    /// Defaults to `true` only when no identity (key or JWT issuer) is configured.
    pub anonymous: bool,
    /// This gateway's resource URI (RFC 9728 `resource`), e.g.
    /// `https://gw.example.com/mcp`; `None`: derived from each request's `Host`.
    pub resource: Option<String>,
    pub keys: Vec<ApiKey>,
    pub jwt: Option<JwtSettings>,
    /// The principal of a stdio client.
    pub stdio: StdioIdentity,
    /// What each tenant sees (by tenant name).
    pub tenants: BTreeMap<String, Visibility>,
    /// What each role sees (by role name).
    pub roles: BTreeMap<String, Visibility>,
    /// Argument rules, in order; the first that matches decides.
    pub rules: Vec<ArgumentRule>,
    pub limits: Vec<RateLimit>,
    /// The role that may use the admin API (default `admin`).
    pub admin_role: String,
    /// Daily call budgets (UTC days), counted in the embedded database.
    pub budgets: Vec<DailyBudget>,
    /// How often budget counts are written to the database; zero: every admitted call
    /// is committed before it goes on (exact across a crash, one fsync per call).
    pub budget_flush: Duration,
    /// Caps on calls in flight.
    pub concurrency: Vec<ConcurrencyCap>,
}

impl Default for AccessSettings {
    fn default() -> AccessSettings {
        AccessSettings {
            anonymous: false,
            resource: None,
            keys: Vec::new(),
            jwt: None,
            stdio: StdioIdentity::default(),
            tenants: BTreeMap::new(),
            roles: BTreeMap::new(),
            rules: Vec::new(),
            limits: Vec::new(),
            admin_role: "admin".to_owned(),
            budgets: Vec::new(),
            budget_flush: AccessSettings::DEFAULT_BUDGET_FLUSH,
            concurrency: Vec::new(),
        }
    }
}

impl AccessSettings {
    /// The default of `budget_flush_ms`.
    pub const DEFAULT_BUDGET_FLUSH: Duration = Duration::from_millis(100);
    /// The largest `budget_flush_ms` (a crash forgets at most this much of the counts).
    pub const MAX_BUDGET_FLUSH: Duration = Duration::from_secs(10);

    /// Whether any identity source is configured.
    pub fn has_identities(&self) -> bool {
        !self.keys.is_empty() || self.jwt.is_some()
    }
}

/// A SHA-256 digest of a client secret. Prints as a redaction.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// The hash of `secret`.
    pub fn of(secret: &[u8]) -> SecretHash {
        SecretHash(Sha256::digest(secret).into())
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// One API key (`[[access.keys]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The principal's name (`key:ID` in logs and audit records).
    pub id: String,
    pub hash: SecretHash,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    /// How this client sees the tools unless it chooses (`tools = "search"`: meta mode).
    pub tools: Option<crate::model::ToolsMode>,
    /// Whether this client's sessions are pinned to the catalog they started with
    /// (`snapshot = "pin"`; run snapshots) unless a request says otherwise.
    pub snapshot: SnapshotMode,
}

/// Whether a client's sessions follow the live catalog or a run snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapshotMode {
    /// The live catalog, with `list_changed` (the default).
    #[default]
    Live,
    /// The catalog version the session started with, until it asks to refresh.
    Pin,
}

impl SnapshotMode {
    /// `live` or `pin`.
    pub fn parse(value: &str) -> Result<SnapshotMode, String> {
        match value {
            "live" => Ok(SnapshotMode::Live),
            "pin" => Ok(SnapshotMode::Pin),
            other => Err(format!("expected pin or live, not `{other}`")),
        }
    }
}

/// A JWT issuer (`[access.jwt]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtSettings {
    pub issuer: String,
    /// Accepted `aud` values (at least one).
    pub audience: Vec<String>,
    /// Where the issuer publishes its keys; fetched, cached, refreshed on an unknown `kid`.
    pub jwks_url: Option<String>,
    /// Keys configured in the file (PEM public keys).
    pub keys: Vec<JwtKey>,
    /// The accepted `alg` values (asymmetric only; `none` and HMAC are refused).
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    pub subject_claim: String,
    pub tenant_claim: String,
    pub roles_claim: String,
}

impl JwtSettings {
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
    /// The algorithms that may be listed in `algorithms`.
    pub const SUPPORTED_ALGORITHMS: [&'static str; 9] = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];
}

/// A configured public key of the JWT issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwtKey {
    /// The `kid` tokens name it by; `None`: used for tokens without a `kid`.
    pub kid: Option<String>,
    /// PEM text (`-----BEGIN PUBLIC KEY-----` …).
    pub pem: String,
}

/// The principal a stdio client gets (`[access.stdio]`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StdioIdentity {
    /// `None`: the local user running the gateway.
    pub id: Option<String>,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
}

/// A `*`/`?` glob over names and URIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn new(pattern: impl Into<String>) -> Glob {
        Glob(pattern.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches: `*` any run (also empty), `?` one character. Runs on
    /// every call (allow-lists, limits) and per entry when a view is built: it walks both
    /// strings in place, without allocating.
    pub fn matches(&self, text: &str) -> bool {
        let pattern = self.0.as_str();
        let char_at = |s: &str, at: usize| s[at..].chars().next();
        let (mut p, mut t) = (0, 0);
        // The last `*` seen, and where in `text` its run currently ends.
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = char_at(text, t) {
            match char_at(pattern, p) {
                Some('*') => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(pc) if pc == '?' || pc == c => {
                    p += pc.len_utf8();
                    t += c.len_utf8();
                }
                _ => match star {
                    Some((star_p, star_t)) => {
                        // Let the `*` take one more character, and retry after it.
                        let grown = star_t + char_at(text, star_t).map_or(1, char::len_utf8);
                        p = star_p + 1;
                        t = grown;
                        star = Some((star_p, grown));
                    }
                    None => return false,
                },
            }
        }
        pattern[p..].bytes().all(|b| b == b'*')
    }
}

/// Allow and deny globs for one kind of entry; deny wins.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Globs {
    /// `None`: not restricted by this rule set.
    pub allow: Option<Vec<Glob>>,
    pub deny: Vec<Glob>,
}

/// What a tenant or role sees: servers, and tools, prompts and resources (exposed names
/// and URIs; resource globs also cover templates).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Visibility {
    pub servers: Globs,
    pub tools: Globs,
    pub prompts: Globs,
    pub resources: Globs,
}

/// What an argument rule does when its condition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// `[[access.rules]]`: a CEL condition over the call and the principal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgumentRule {
    /// CEL source; compiled at load (a rule that does not compile rejects the config).
    pub when: String,
    pub effect: Effect,
    /// What a denied caller is told.
    pub message: String,
    /// Where the rule is written (`access.rules[0]`), for errors and logs.
    pub path: String,
}

impl ArgumentRule {
    /// The variables a rule may use.
    pub const VARIABLES: [&'static str; 6] =
        ["method", "server", "tool", "args", "uri", "principal"];
}

/// Whose calls a rate limit, a budget or a concurrency cap counts together: each
/// principal, each tenant (a caller without a tenant counts as its own principal), each
/// server, each tool (exposed name or URI), or all calls at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Principal,
    Tenant,
    Server,
    Tool,
    Global,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Principal => "principal",
            LimitScope::Tenant => "tenant",
            LimitScope::Server => "server",
            LimitScope::Tool => "tool",
            LimitScope::Global => "global",
        }
    }
}

/// `[[access.limits]]`: `requests` per `period` (GCRA), up to `burst` at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per: LimitScope,
    /// Which servers' calls count.
    pub servers: Glob,
    /// Which tools (exposed names), prompts and resources count.
    pub tools: Glob,
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
    /// Where the limit is written (`access.limits[0]`).
    pub path: String,
}

/// `[[access.budgets]]`: at most `calls` calls per UTC day, for each key of `per`, of the
/// matching servers and tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyBudget {
    pub per: LimitScope,
    pub servers: Glob,
    pub tools: Glob,
    pub calls: u64,
    /// Where the budget is written (`access.budgets[0]`).
    pub path: String,
}

impl DailyBudget {
    /// What the budget's counts are stored under: its selectors, not its place in the
    /// file or its `calls`, so reordering budgets or raising one keeps the day's count.
    pub fn identity(&self) -> String {
        format!(
            "{}|{}|{}",
            self.per.as_str(),
            self.servers.as_str(),
            self.tools.as_str()
        )
    }
}

/// `[[access.concurrency]]`: at most `max` calls in flight for each key of `per`, of the
/// matching servers and tools; a call over the cap waits up to `wait` for a slot, then
/// is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConcurrencyCap {
    pub per: LimitScope,
    pub servers: Glob,
    pub tools: Glob,
    pub max: u32,
    /// Zero: refused at once.
    pub wait: Duration,
    /// Where the cap is written (`access.concurrency[0]`).
    pub path: String,
}

impl ConcurrencyCap {
    /// The longest `wait_ms`.
    pub const MAX_WAIT: Duration = Duration::from_secs(60);
}

// ---- raw shapes ----

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccess {
    anonymous: Option<bool>,
    resource: Option<String>,
    keys: Option<Vec<Table<RawKey>>>,
    jwt: Option<Table<RawJwt>>,
    stdio: Option<Table<RawStdio>>,
    tenants: Option<UniqueMap<Table<RawVisibility>>>,
    roles: Option<UniqueMap<Table<RawVisibility>>>,
    rules: Option<Vec<Table<RawRule>>>,
    limits: Option<Vec<Table<RawLimit>>>,
    admin_role: Option<String>,
    budgets: Option<Vec<Table<RawBudget>>>,
    budget_flush_ms: Option<u64>,
    concurrency: Option<Vec<Table<RawConcurrency>>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawKey {
    id: Option<String>,
    key: Option<String>,
    sha256: Option<String>,
    tenant: Option<String>,
    roles: Option<Vec<String>>,
    tools: Option<String>,
    snapshot: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    issuer: Option<String>,
    audience: Option<OneOrMany>,
    jwks_url: Option<String>,
    keys: Option<Vec<Table<RawJwtKey>>>,
    algorithms: Option<Vec<String>>,
    leeway_s: Option<u64>,
    subject_claim: Option<String>,
    tenant_claim: Option<String>,
    roles_claim: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawJwtKey {
    kid: Option<String>,
    pem: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawStdio {
    id: Option<String>,
    tenant: Option<String>,
    roles: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawVisibility {
    servers: Option<Table<RawGlobs>>,
    tools: Option<Table<RawGlobs>>,
    prompts: Option<Table<RawGlobs>>,
    resources: Option<Table<RawGlobs>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobs {
    allow: Option<Vec<String>>,
    deny: Option<Vec<String>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawRule {
    when: Option<String>,
    effect: Option<RawEffect>,
    message: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawEffect {
    Allow,
    Deny,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    per: Option<RawScope>,
    servers: Option<String>,
    tools: Option<String>,
    requests: Option<u32>,
    period_ms: Option<u64>,
    burst: Option<u32>,
}

#[derive(Deserialize, Debug, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawScope {
    Principal,
    Tenant,
    Server,
    Tool,
    Global,
}

impl RawScope {
    /// `per`, defaulting to each principal.
    fn scope(raw: Option<RawScope>) -> LimitScope {
        match raw {
            None | Some(RawScope::Principal) => LimitScope::Principal,
            Some(RawScope::Tenant) => LimitScope::Tenant,
            Some(RawScope::Server) => LimitScope::Server,
            Some(RawScope::Tool) => LimitScope::Tool,
            Some(RawScope::Global) => LimitScope::Global,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    per: Option<RawScope>,
    servers: Option<String>,
    tools: Option<String>,
    calls: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawConcurrency {
    per: Option<RawScope>,
    servers: Option<String>,
    tools: Option<String>,
    max: Option<u32>,
    wait_ms: Option<u64>,
}

// ---- validation ----

fn non_empty(value: Option<String>, path: &KeyPath) -> Result<String, Problem> {
    match value {
        Some(value) if !value.trim().is_empty() => Ok(value),
        Some(_) => Err(Problem::new(path.clone(), "must not be empty")),
        None => Err(Problem::new(path.clone(), "is required")),
    }
}

fn hex_digest(text: &str, path: &KeyPath) -> Result<SecretHash, Problem> {
    let bad = || Problem::new(path.clone(), "must be 64 hex digits (a SHA-256 digest)");
    if text.len() != 64 || !text.is_ascii() {
        return Err(bad());
    }
    let mut digest = [0u8; 32];
    for (index, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| bad())?;
    }
    Ok(SecretHash(digest))
}

pub(crate) fn validate(
    raw: RawAccess,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<AccessSettings, Problem> {
    let mut keys = Vec::new();
    for (index, raw_key) in raw.keys.unwrap_or_default().into_iter().enumerate() {
        let key_path = path.key("keys").index(index);
        keys.push(api_key(raw_key.0, &key_path, env, &keys)?);
    }
    let jwt = raw
        .jwt
        .map(|table| jwt(table.0, &path.key("jwt"), env))
        .transpose()?;
    let stdio = raw.stdio.map(|t| t.0).unwrap_or_default();
    let stdio = StdioIdentity {
        id: stdio.id,
        tenant: stdio.tenant,
        roles: stdio.roles.unwrap_or_default(),
    };
    let visibilities = |map: Option<UniqueMap<Table<RawVisibility>>>| {
        map.map(|m| m.0)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, v)| (name, visibility(v.0)))
            .collect::<BTreeMap<_, _>>()
    };
    let tenants = visibilities(raw.tenants);
    let roles = visibilities(raw.roles);
    let mut rules = Vec::new();
    for (index, raw_rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        rules.push(rule(raw_rule.0, &path.key("rules").index(index))?);
    }
    let mut limits = Vec::new();
    for (index, raw_limit) in raw.limits.unwrap_or_default().into_iter().enumerate() {
        limits.push(limit(raw_limit.0, &path.key("limits").index(index))?);
    }
    let mut budgets: Vec<DailyBudget> = Vec::new();
    for (index, raw_budget) in raw.budgets.unwrap_or_default().into_iter().enumerate() {
        let budget = budget(raw_budget.0, &path.key("budgets").index(index))?;
        if let Some(earlier) = budgets.iter().find(|b| b.identity() == budget.identity()) {
            return Err(Problem::new(
                path.key("budgets").index(index),
                format!(
                    "counts the same calls as {} (same `per`, `servers` and `tools`); merge them",
                    earlier.path
                ),
            ));
        }
        budgets.push(budget);
    }
    let budget_flush = match raw.budget_flush_ms {
        None => AccessSettings::DEFAULT_BUDGET_FLUSH,
        Some(ms) if Duration::from_millis(ms) > AccessSettings::MAX_BUDGET_FLUSH => {
            return Err(Problem::new(
                path.key("budget_flush_ms"),
                format!(
                    "must be at most {} (0: commit every call)",
                    AccessSettings::MAX_BUDGET_FLUSH.as_millis()
                ),
            ));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    let mut concurrency = Vec::new();
    for (index, raw_cap) in raw.concurrency.unwrap_or_default().into_iter().enumerate() {
        concurrency.push(concurrency_cap(
            raw_cap.0,
            &path.key("concurrency").index(index),
        )?);
    }
    let has_identities = !keys.is_empty() || jwt.is_some();
    let settings = AccessSettings {
        anonymous: raw.anonymous.unwrap_or(!has_identities),
        resource: raw.resource,
        keys,
        jwt,
        stdio,
        tenants,
        roles,
        rules,
        limits,
        admin_role: raw.admin_role.unwrap_or_else(|| "admin".to_owned()),
        budgets,
        budget_flush,
        concurrency,
    };
    if !settings.tenants.is_empty() {
        for (index, key) in settings.keys.iter().enumerate() {
            if let Some(tenant) = &key.tenant
                && !settings.tenants.contains_key(tenant)
            {
                return Err(Problem::new(
                    path.key("keys").index(index).key("tenant"),
                    format!("unknown tenant `{tenant}` (not in access.tenants)"),
                ));
            }
        }
    }
    Ok(settings)
}

fn api_key(
    raw: RawKey,
    path: &KeyPath,
    env: EnvLookup<'_>,
    earlier: &[ApiKey],
) -> Result<ApiKey, Problem> {
    let id = non_empty(raw.id, &path.key("id"))?;
    if earlier.iter().any(|key| key.id == id) {
        return Err(Problem::new(
            path.key("id"),
            format!("duplicate key id `{id}`"),
        ));
    }
    let hash = match (raw.key, raw.sha256) {
        (Some(key), None) => {
            let key_path = path.key("key");
            let secret =
                expand(&key, env).map_err(|message| Problem::new(key_path.clone(), message))?;
            if secret.len() < 16 {
                return Err(Problem::new(key_path, "must be at least 16 characters"));
            }
            SecretHash::of(secret.as_bytes())
        }
        (None, Some(digest)) => hex_digest(&digest, &path.key("sha256"))?,
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                path.clone(),
                "give either `key` or `sha256`, not both",
            ));
        }
        (None, None) => {
            return Err(Problem::new(
                path.clone(),
                "needs `key` (usually \"${ENV_VAR}\") or `sha256` (hex digest of the key)",
            ));
        }
    };
    let tools = match raw.tools.as_deref() {
        None => None,
        Some(value) => Some(
            crate::model::ToolsMode::parse(value)
                .map_err(|reason| Problem::new(path.key("tools"), reason))?,
        ),
    };
    let snapshot = match raw.snapshot.as_deref() {
        None => SnapshotMode::Live,
        Some(value) => SnapshotMode::parse(value)
            .map_err(|reason| Problem::new(path.key("snapshot"), reason))?,
    };
    Ok(ApiKey {
        id,
        hash,
        tenant: raw.tenant,
        roles: raw.roles.unwrap_or_default(),
        tools,
        snapshot,
    })
}

fn jwt(raw: RawJwt, path: &KeyPath, env: EnvLookup<'_>) -> Result<JwtSettings, Problem> {
    let issuer = non_empty(raw.issuer, &path.key("issuer"))?;
    let audience = match raw.audience {
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
        None => Vec::new(),
    };
    if audience.is_empty() || audience.iter().any(|a| a.trim().is_empty()) {
        return Err(Problem::new(
            path.key("audience"),
            "is required: this gateway's resource URI (e.g. \"https://gw.example.com/mcp\")",
        ));
    }
    if let Some(url) = &raw.jwks_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(Problem::new(path.key("jwks_url"), "must be an http(s) URL"));
    }
    let mut keys = Vec::new();
    for (index, key) in raw.keys.unwrap_or_default().into_iter().enumerate() {
        let key_path = path.key("keys").index(index);
        let pem = non_empty(key.0.pem, &key_path.key("pem"))?;
        let pem =
            expand(&pem, env).map_err(|message| Problem::new(key_path.key("pem"), message))?;
        if !pem.contains("-----BEGIN") || pem.contains("PRIVATE KEY") {
            return Err(Problem::new(
                key_path.key("pem"),
                "must be a PEM public key (-----BEGIN PUBLIC KEY----- …)",
            ));
        }
        keys.push(JwtKey {
            kid: key.0.kid,
            pem,
        });
    }
    if keys.is_empty() && raw.jwks_url.is_none() {
        return Err(Problem::new(path.clone(), "needs `jwks_url` or `keys`"));
    }
    let algorithms = raw
        .algorithms
        .unwrap_or_else(|| vec!["RS256".to_owned(), "ES256".to_owned()]);
    for (index, algorithm) in algorithms.iter().enumerate() {
        if !JwtSettings::SUPPORTED_ALGORITHMS.contains(&algorithm.as_str()) {
            let why = if algorithm.eq_ignore_ascii_case("none") {
                "`none` is never accepted".to_owned()
            } else if algorithm.starts_with("HS") {
                "HMAC algorithms are not accepted (a shared secret; and the RSA-key confusion)"
                    .to_owned()
            } else {
                format!(
                    "unsupported algorithm `{algorithm}`; expected one of {}",
                    JwtSettings::SUPPORTED_ALGORITHMS.join(", ")
                )
            };
            return Err(Problem::new(path.key("algorithms").index(index), why));
        }
    }
    if algorithms.is_empty() {
        return Err(Problem::new(path.key("algorithms"), "must not be empty"));
    }
    Ok(JwtSettings {
        issuer,
        audience,
        jwks_url: raw.jwks_url,
        keys,
        algorithms,
        leeway: raw
            .leeway_s
            .map_or(JwtSettings::DEFAULT_LEEWAY, Duration::from_secs),
        subject_claim: raw.subject_claim.unwrap_or_else(|| "sub".to_owned()),
        tenant_claim: raw.tenant_claim.unwrap_or_else(|| "tenant".to_owned()),
        roles_claim: raw.roles_claim.unwrap_or_else(|| "roles".to_owned()),
    })
}

fn globs(raw: Option<Table<RawGlobs>>) -> Globs {
    let raw = raw.map(|t| t.0).unwrap_or_default();
    let list = |patterns: Vec<String>| patterns.into_iter().map(Glob).collect::<Vec<_>>();
    Globs {
        allow: raw.allow.map(list),
        deny: list(raw.deny.unwrap_or_default()),
    }
}

fn visibility(raw: RawVisibility) -> Visibility {
    Visibility {
        servers: globs(raw.servers),
        tools: globs(raw.tools),
        prompts: globs(raw.prompts),
        resources: globs(raw.resources),
    }
}

fn rule(raw: RawRule, path: &KeyPath) -> Result<ArgumentRule, Problem> {
    let when = non_empty(raw.when, &path.key("when"))?;
    let program = cel::Program::compile(&when).map_err(|error| {
        Problem::new(
            path.key("when"),
            format!("does not compile as CEL: {error}"),
        )
    })?;
    let references = program.references();
    let mut unknown: Vec<&str> = references
        .variables()
        .into_iter()
        .filter(|name| !ArgumentRule::VARIABLES.contains(name))
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        return Err(Problem::new(
            path.key("when"),
            format!(
                "unknown variable(s) {}; a rule may use {}",
                unknown.join(", "),
                ArgumentRule::VARIABLES.join(", ")
            ),
        ));
    }
    let effect = match raw.effect {
        Some(RawEffect::Allow) => Effect::Allow,
        Some(RawEffect::Deny) | None => Effect::Deny,
    };
    Ok(ArgumentRule {
        message: raw.message.unwrap_or_else(|| format!("denied by {path}")),
        when,
        effect,
        path: path.to_string(),
    })
}

fn limit(raw: RawLimit, path: &KeyPath) -> Result<RateLimit, Problem> {
    let requests = match raw.requests {
        Some(0) => return Err(Problem::new(path.key("requests"), "must be at least 1")),
        Some(n) => n,
        None => return Err(Problem::new(path.key("requests"), "is required")),
    };
    let period = match raw.period_ms {
        Some(0) => {
            return Err(Problem::new(
                path.key("period_ms"),
                "must be a positive number of milliseconds",
            ));
        }
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(60),
    };
    if period / requests < Duration::from_nanos(1) {
        return Err(Problem::new(
            path.key("requests"),
            "too many for the period",
        ));
    }
    let burst = match raw.burst {
        Some(0) => return Err(Problem::new(path.key("burst"), "must be at least 1")),
        Some(n) => n,
        None => requests,
    };
    Ok(RateLimit {
        per: RawScope::scope(raw.per),
        servers: Glob(raw.servers.unwrap_or_else(|| "*".to_owned())),
        tools: Glob(raw.tools.unwrap_or_else(|| "*".to_owned())),
        requests,
        period,
        burst,
        path: path.to_string(),
    })
}

fn budget(raw: RawBudget, path: &KeyPath) -> Result<DailyBudget, Problem> {
    let calls = match raw.calls {
        Some(0) => return Err(Problem::new(path.key("calls"), "must be at least 1")),
        Some(n) => n,
        None => {
            return Err(Problem::new(
                path.key("calls"),
                "is required (calls per UTC day)",
            ));
        }
    };
    Ok(DailyBudget {
        per: RawScope::scope(raw.per),
        servers: Glob(raw.servers.unwrap_or_else(|| "*".to_owned())),
        tools: Glob(raw.tools.unwrap_or_else(|| "*".to_owned())),
        calls,
        path: path.to_string(),
    })
}

fn concurrency_cap(raw: RawConcurrency, path: &KeyPath) -> Result<ConcurrencyCap, Problem> {
    let max = match raw.max {
        Some(0) => return Err(Problem::new(path.key("max"), "must be at least 1")),
        Some(n) => n,
        None => {
            return Err(Problem::new(
                path.key("max"),
                "is required (calls in flight)",
            ));
        }
    };
    let wait = Duration::from_millis(raw.wait_ms.unwrap_or(0));
    if wait > ConcurrencyCap::MAX_WAIT {
        return Err(Problem::new(
            path.key("wait_ms"),
            format!("must be at most {}", ConcurrencyCap::MAX_WAIT.as_millis()),
        ));
    }
    Ok(ConcurrencyCap {
        per: RawScope::scope(raw.per),
        servers: Glob(raw.servers.unwrap_or_else(|| "*".to_owned())),
        tools: Glob(raw.tools.unwrap_or_else(|| "*".to_owned())),
        max,
        wait,
        path: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_and_uris() {
        let glob = Glob::new("fx__*");
        assert!(glob.matches("fx__echo"));
        assert!(!glob.matches("fy__echo"));
        assert!(Glob::new("*").matches(""));
        assert!(Glob::new("a?c*d").matches("abcxxd"));
        assert!(!Glob::new("a?c*d").matches("acxxd"));
        assert!(Glob::new("file:///*").matches("file:///a/b"));
        assert!(Glob::new("fx__echo").matches("fx__echo"));
        assert!(!Glob::new("fx__echo").matches("fx__echo2"));
        // `?` is one character, also beyond ASCII; `*` backtracks over them.
        assert!(Glob::new("a?c").matches("aéc"));
        assert!(!Glob::new("a?c").matches("aééc"));
        assert!(Glob::new("*é*x").matches("ééyéx"));
        assert!(!Glob::new("*é*x").matches("ééyéy"));
        assert!(Glob::new("**").matches("ü"));
        assert!(Glob::new("*__tool_49?").matches("fx01__tool_493"));
        assert!(!Glob::new("*__tool_49?").matches("fx01__tool_4930"));
        assert!(!Glob::new("").matches("a"));
        assert!(Glob::new("").matches(""));
    }

    /// Every pattern and text up to 4 characters over a small alphabet (with a two-byte
    /// character) agrees with a plain recursive matcher.
    #[test]
    fn globs_agree_with_a_reference_matcher() {
        fn reference(pattern: &[char], text: &[char]) -> bool {
            match pattern.split_first() {
                None => text.is_empty(),
                Some(('*', rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
                Some((&c, rest)) => text
                    .split_first()
                    .is_some_and(|(&t, tail)| (c == '?' || c == t) && reference(rest, tail)),
            }
        }
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let texts = all(&['a', 'é', 'b'], 4);
        for pattern in all(&['a', 'é', '*', '?'], 4) {
            let glob = Glob::new(pattern.as_str());
            let chars: Vec<char> = pattern.chars().collect();
            for text in &texts {
                let text_chars: Vec<char> = text.chars().collect();
                assert_eq!(
                    glob.matches(text),
                    reference(&chars, &text_chars),
                    "{pattern:?} vs {text:?}"
                );
            }
        }
    }

    #[test]
    fn secret_hashes_print_a_redaction() {
        let hash = SecretHash::of(b"0123456789abcdef");
        assert_eq!(format!("{hash:?}"), "<redacted>");
    }
}
