//! switchboard configuration: native TOML and .mcp.json, validated.
//!
//! Pipeline: text → `raw` (serde shapes, unknown keys denied) → `validate`
//! (names, transports, URLs, bounds, `${VAR}` expansion) → [`Config`], which holds
//! only valid values. Errors name the file, the key path and what was expected;
//! see [`ConfigError`].
//!
//! This crate does no I/O besides reading the one file in [`load`] (regular files
//! only, bounded: see [`read`]); it knows nothing about processes, sockets or the MCP
//! protocol.

mod access;
mod agent;
mod approvals;
mod audit;
mod cluster;
mod decode;
mod discovery;
mod error;
mod expand;
mod model;
mod name;
mod policy;
mod raw;
mod read;
mod redaction;
mod registry;
mod rollouts;
mod sandbox;
mod scripts;
mod search;
mod secret;
mod telemetry;
mod tenants;
mod validate;
mod vault;

use std::path::Path;

pub use access::{
    AccessSettings, ApiKey, ArgumentRule, ConcurrencyCap, DailyBudget, Effect, Glob, Globs, JwtKey,
    JwtSettings, LimitScope, RateLimit, SecretHash, SnapshotMode, StdioIdentity, Visibility,
};
pub use agent::AgentSettings;
pub use approvals::{AnnotationMatch, ApprovalRule, ApprovalSettings, Approver};
pub use audit::{AuditExport, AuditKey, AuditSettings, SigningSeed};
pub use cluster::ClusterSettings;
pub use discovery::{
    DiscoveryKind, DiscoverySource, KubernetesSource, Prefer, RegistrySource, Runner,
};
pub use error::{ConfigError, ConfigWarning};
pub use model::{
    Config, ConfigFormat, ConfigSource, CredentialSource, EraPreference, GatewaySettings,
    ListenSettings, OAuthClient, OAuthGrant, ServerSpec, SigningKey, ToolsMode, TransportSpec,
};
pub use name::{InvalidServerName, ServerName};
pub use policy::{
    BreakerPolicy, HealthPolicy, LimitPolicy, Pin, PoolPolicy, ServerPolicy, Sharing, ToolPolicy,
};
pub use raw::ClusterMode;
pub use read::{DEFAULT_MAX_CONFIG_BYTES, read};
pub use redaction::{RedactAction, RedactPattern, RedactRule, RedactionSettings};
pub use registry::RegistrySettings;
pub use rollouts::{MAX_ROLLOUTS, Rollout};
pub use sandbox::{Bytes, FsPolicy, SandboxSpec};
pub use scripts::ScriptSettings;
pub use search::SearchSettings;
pub use secret::{REDACTED, Secret};
pub use telemetry::TelemetrySettings;
pub use tenants::TenantCredentials;
pub use vault::{
    KeyBytes, REF_OPEN, SECRET_NAME_RULE, SecretsSettings, VaultKey, has_secret_refs,
    is_secret_name, resolve_secret_refs, secret_refs,
};

/// Reads `path` (at most [`DEFAULT_MAX_CONFIG_BYTES`]), detects its format, parses
/// and validates it.
///
/// `${VAR}` references are expanded from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_limit(path, DEFAULT_MAX_CONFIG_BYTES)
}

/// [`load`] with another bound on the file's size.
pub fn load_with_limit(path: &Path, max_bytes: u64) -> Result<Config, ConfigError> {
    parse_file(path, &read(path, max_bytes)?)
}

/// Parses and validates `text`, read from `path`, in the format [`detect_format`] picks.
pub fn parse_file(path: &Path, text: &str) -> Result<Config, ConfigError> {
    parse(text, detect_format(path, text), Some(path))
}

/// Parses and validates `text`; `path` is only used in errors and [`ConfigSource`].
///
/// `${VAR}` references are expanded from the process environment.
pub fn parse(text: &str, format: ConfigFormat, path: Option<&Path>) -> Result<Config, ConfigError> {
    parse_with_env(text, format, path, &expand::process_env)
}

/// Like [`parse`], but `${VAR}` references are resolved with `env` (`None` = unset).
pub fn parse_with_env(
    text: &str,
    format: ConfigFormat,
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let validated = match format {
        ConfigFormat::Native => {
            let raw: raw::Table<raw::RawNative> = decode::toml(text, path)?;
            validate::native(raw.0, env)
        }
        ConfigFormat::McpJson => {
            let raw: raw::Table<raw::RawMcpJson> = decode::json(text, path)?;
            validate::mcp_json(raw.0, env)
        }
    }
    .map_err(|problem| problem.into_error(path))?;
    Ok(Config {
        gateway: validated.gateway,
        listen: validated.listen,
        servers: validated.servers,
        access: validated.access,
        audit: validated.audit,
        redaction: validated.redaction,
        registry: validated.registry,
        approvals: validated.approvals,
        secrets: validated.secrets,
        telemetry: validated.telemetry,
        cluster: validated.cluster,
        agent: validated.agent,
        search: validated.search,
        discovery: validated.discovery,
        rollouts: validated.rollouts,
        scripts: validated.scripts,
        source: ConfigSource {
            path: path.map(Path::to_path_buf),
            format,
        },
        warnings: validated
            .warnings
            .into_iter()
            .map(|problem| problem.into_warning(path))
            .collect(),
    })
}

/// `.json` → [`ConfigFormat::McpJson`], `.toml` → [`ConfigFormat::Native`];
/// otherwise text starting with `{` is JSON and anything else TOML.
pub fn detect_format(path: &Path, text: &str) -> ConfigFormat {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("json") => ConfigFormat::McpJson,
        Some("toml") => ConfigFormat::Native,
        _ => {
            let text = text.strip_prefix('\u{feff}').unwrap_or(text);
            if text.trim_start().starts_with('{') {
                ConfigFormat::McpJson
            } else {
                ConfigFormat::Native
            }
        }
    }
}
