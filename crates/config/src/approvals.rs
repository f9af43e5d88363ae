//! `[approvals]`: approval gates — which tool calls wait for a person's yes before they
//! run, who gives it, and how long anyone waits. Raw shape, validation and the validated
//! model live together here, like `audit.rs`.
//!
//! ```toml
//! [approvals]
//! wait_ms = 30000                 # an out-of-band call waits this long, then gets the approval id
//! expiry_ms = 900000              # an approval (pending or granted) lives this long
//! max_approvals = 1000            # approvals kept at once (pending, granted, used, denied)
//! webhook = "https://chat.example.com/hooks/approvals"
//! webhook_timeout_ms = 2000
//!
//! [[approvals.rules]]
//! tools = "fs__write_*"           # exposed tool names; `servers` globs server names
//! when = "destructive"            # or "not_read_only", "always" (default)
//! tenants = ["acme"]              # only these tenants' callers (default: everyone)
//! roles = ["agent"]               # only callers holding one of these roles
//! approver = "admin"              # "caller" (default): the calling user, in band when it can
//! ```
//!
//! The first rule that matches a call decides: `require = false` exempts what it matches.

use std::time::Duration;

use serde::Deserialize;

use crate::access::Glob;
use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};
use crate::raw::Table;

/// The validated `[approvals]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// How long a call waits for an out-of-band decision before it is answered with the
    /// approval's id (zero: at once).
    pub wait: Duration,
    /// How long an approval lives from its request: pending, then granted and unused.
    pub expiry: Duration,
    /// Approvals kept at once; a new one over it is refused.
    pub max_approvals: usize,
    /// Where a new out-of-band approval is announced (POST JSON).
    pub webhook: Option<String>,
    /// Bound of one webhook POST.
    pub webhook_timeout: Duration,
    /// The rules, in order; the first that matches decides.
    pub rules: Vec<ApprovalRule>,
}

impl ApprovalSettings {
    pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
    pub const MAX_WAIT: Duration = Duration::from_secs(600);
    pub const DEFAULT_EXPIRY: Duration = Duration::from_secs(900);
    pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const DEFAULT_MAX_APPROVALS: usize = 1000;
    pub const MAX_MAX_APPROVALS: usize = 100_000;
    pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);
    pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings {
            wait: Self::DEFAULT_WAIT,
            expiry: Self::DEFAULT_EXPIRY,
            max_approvals: Self::DEFAULT_MAX_APPROVALS,
            webhook: None,
            webhook_timeout: Self::DEFAULT_WEBHOOK_TIMEOUT,
            rules: Vec::new(),
        }
    }
}

/// Which tools a rule matches by their annotations (hints from the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnnotationMatch {
    /// Every tool.
    Always,
    /// Tools not marked `readOnlyHint: true`.
    NotReadOnly,
    /// Tools that may destroy: not read-only, and `destructiveHint` true or absent (MCP's
    /// default for a tool that is not read-only).
    Destructive,
}

impl AnnotationMatch {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnotationMatch::Always => "always",
            AnnotationMatch::NotReadOnly => "not_read_only",
            AnnotationMatch::Destructive => "destructive",
        }
    }
}

/// Who approves a call a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approver {
    /// The calling user: in band (MRTR or `elicitation/create`) when the client can ask
    /// its user, else out of band through the admin API.
    Caller,
    /// An administrator, out of band (admin API, webhook), whatever the client can do.
    Admin,
}

impl Approver {
    pub fn as_str(self) -> &'static str {
        match self {
            Approver::Caller => "caller",
            Approver::Admin => "admin",
        }
    }
}

/// `[[approvals.rules]]`: calls that need (or, with `require = false`, are exempt from)
/// approval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRule {
    pub servers: Glob,
    /// Exposed tool names.
    pub tools: Glob,
    pub when: AnnotationMatch,
    /// `None`: callers of every tenant (and none).
    pub tenants: Option<Vec<String>>,
    /// `None`: callers with any roles (and none).
    pub roles: Option<Vec<String>>,
    pub approver: Approver,
    pub require: bool,
    /// Where the rule is written (`approvals.rules[0]`), for audit records and errors.
    pub key: String,
}

/// `[approvals]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApprovals {
    wait_ms: Option<u64>,
    expiry_ms: Option<u64>,
    max_approvals: Option<u64>,
    webhook: Option<String>,
    webhook_timeout_ms: Option<u64>,
    rules: Option<Vec<Table<RawRule>>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    servers: Option<String>,
    tools: Option<String>,
    when: Option<String>,
    tenants: Option<Vec<String>>,
    roles: Option<Vec<String>>,
    approver: Option<String>,
    require: Option<bool>,
}

fn bounded_ms(
    value: Option<u64>,
    default: Duration,
    max: Duration,
    min_ms: u64,
    path: &KeyPath,
) -> Result<Duration, Problem> {
    let Some(ms) = value else {
        return Ok(default);
    };
    if ms < min_ms {
        return Err(Problem::new(
            path.clone(),
            format!("must be at least {min_ms} ms"),
        ));
    }
    if u128::from(ms) > max.as_millis() {
        return Err(Problem::new(
            path.clone(),
            format!("must be at most {} ms", max.as_millis()),
        ));
    }
    Ok(Duration::from_millis(ms))
}

pub(crate) fn validate(
    raw: RawApprovals,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<ApprovalSettings, Problem> {
    let wait = bounded_ms(
        raw.wait_ms,
        ApprovalSettings::DEFAULT_WAIT,
        ApprovalSettings::MAX_WAIT,
        0,
        &path.key("wait_ms"),
    )?;
    let expiry = bounded_ms(
        raw.expiry_ms,
        ApprovalSettings::DEFAULT_EXPIRY,
        ApprovalSettings::MAX_EXPIRY,
        1000,
        &path.key("expiry_ms"),
    )?;
    if expiry < wait {
        return Err(Problem::new(
            path.key("expiry_ms"),
            "must be at least `wait_ms` (an approval must outlive the wait for it)",
        ));
    }
    let webhook_timeout = bounded_ms(
        raw.webhook_timeout_ms,
        ApprovalSettings::DEFAULT_WEBHOOK_TIMEOUT,
        ApprovalSettings::MAX_WEBHOOK_TIMEOUT,
        1,
        &path.key("webhook_timeout_ms"),
    )?;
    let max_approvals = match raw.max_approvals {
        None => ApprovalSettings::DEFAULT_MAX_APPROVALS,
        Some(0) => {
            return Err(Problem::new(
                path.key("max_approvals"),
                "must be at least 1",
            ));
        }
        Some(n) if n > ApprovalSettings::MAX_MAX_APPROVALS as u64 => {
            return Err(Problem::new(
                path.key("max_approvals"),
                format!("must be at most {}", ApprovalSettings::MAX_MAX_APPROVALS),
            ));
        }
        Some(n) => n as usize,
    };
    let webhook = match raw.webhook {
        None => None,
        Some(url) => {
            let url =
                expand(&url, env).map_err(|message| Problem::new(path.key("webhook"), message))?;
            let url = url.trim().to_owned();
            if url.is_empty() {
                None
            } else {
                match url.parse::<http::Uri>() {
                    Ok(uri)
                        if matches!(uri.scheme_str(), Some("http" | "https"))
                            && uri.host().is_some() =>
                    {
                        Some(url)
                    }
                    _ => {
                        return Err(Problem::new(
                            path.key("webhook"),
                            "must be an http:// or https:// URL",
                        ));
                    }
                }
            }
        }
    };
    let mut rules = Vec::new();
    for (index, raw_rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
        let rule_path = path.key("rules").index(index);
        rules.push(rule(raw_rule.0, &rule_path)?);
    }
    Ok(ApprovalSettings {
        wait,
        expiry,
        max_approvals,
        webhook,
        webhook_timeout,
        rules,
    })
}

fn rule(raw: RawRule, path: &KeyPath) -> Result<ApprovalRule, Problem> {
    let when = match raw.when.as_deref() {
        None | Some("always") => AnnotationMatch::Always,
        Some("not_read_only") => AnnotationMatch::NotReadOnly,
        Some("destructive") => AnnotationMatch::Destructive,
        Some(_) => {
            return Err(Problem::new(
                path.key("when"),
                "expected \"always\", \"not_read_only\" or \"destructive\"",
            ));
        }
    };
    let approver = match raw.approver.as_deref() {
        None | Some("caller") => Approver::Caller,
        Some("admin") => Approver::Admin,
        Some(_) => {
            return Err(Problem::new(
                path.key("approver"),
                "expected \"caller\" or \"admin\"",
            ));
        }
    };
    let names = |list: Option<Vec<String>>, key: &str| -> Result<Option<Vec<String>>, Problem> {
        match list {
            Some(list) if list.is_empty() => Err(Problem::new(
                path.key(key),
                "must name at least one (leave the key out to match everyone)",
            )),
            Some(list) if list.iter().any(|name| name.trim().is_empty()) => {
                Err(Problem::new(path.key(key), "names must not be empty"))
            }
            other => Ok(other),
        }
    };
    Ok(ApprovalRule {
        servers: Glob::new(raw.servers.unwrap_or_else(|| "*".into())),
        tools: Glob::new(raw.tools.unwrap_or_else(|| "*".into())),
        when,
        tenants: names(raw.tenants, "tenants")?,
        roles: names(raw.roles, "roles")?,
        approver,
        require: raw.require.unwrap_or(true),
        key: path.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<ApprovalSettings, Problem> {
        let raw: RawApprovals = toml::from_str(text).unwrap();
        validate(raw, &KeyPath::root().key("approvals"), &no_env)
    }

    #[test]
    fn defaults_rules_and_errors_name_the_key() {
        assert_eq!(parse("").unwrap(), ApprovalSettings::default());
        let settings = parse(
            "wait_ms = 0\nexpiry_ms = 5000\nwebhook = \"http://127.0.0.1:9/hook\"\n\
             [[rules]]\ntools = \"fx__add\"\nwhen = \"destructive\"\napprover = \"admin\"\n\
             [[rules]]\nservers = \"fx\"\nrequire = false\nroles = [\"ops\"]\n",
        )
        .unwrap();
        assert_eq!(settings.wait, Duration::ZERO);
        assert_eq!(settings.expiry, Duration::from_secs(5));
        assert_eq!(settings.webhook.as_deref(), Some("http://127.0.0.1:9/hook"));
        assert_eq!(settings.rules.len(), 2);
        assert_eq!(settings.rules[0].when, AnnotationMatch::Destructive);
        assert_eq!(settings.rules[0].approver, Approver::Admin);
        assert_eq!(settings.rules[0].servers.as_str(), "*");
        assert_eq!(settings.rules[0].key, "approvals.rules[0]");
        assert!(!settings.rules[1].require);
        assert_eq!(settings.rules[1].roles, Some(vec!["ops".to_owned()]));

        let key = |text: &str| parse(text).unwrap_err().key.to_string();
        assert_eq!(key("wait_ms = 600001"), "approvals.wait_ms");
        assert_eq!(key("expiry_ms = 10"), "approvals.expiry_ms");
        assert_eq!(
            key("wait_ms = 60000\nexpiry_ms = 1000"),
            "approvals.expiry_ms"
        );
        assert_eq!(key("max_approvals = 0"), "approvals.max_approvals");
        assert_eq!(key("webhook = \"ftp://x\""), "approvals.webhook");
        assert_eq!(
            key("webhook_timeout_ms = 0"),
            "approvals.webhook_timeout_ms"
        );
        assert_eq!(
            key("[[rules]]\nwhen = \"sometimes\""),
            "approvals.rules[0].when"
        );
        assert_eq!(
            key("[[rules]]\napprover = \"bob\""),
            "approvals.rules[0].approver"
        );
        assert_eq!(key("[[rules]]\ntenants = []"), "approvals.rules[0].tenants");
    }
}
