//! `[cluster]`: several replicas sharing one Redis. Raw shape, validation and the
//! validated model live together here, like `telemetry.rs`.
//!
//! Without the section nothing changes: one process, the embedded store, no Redis client,
//! no extra step. The section is read at start only (a reload that changes it takes
//! effect at the next restart).

use std::time::Duration;

use serde::Deserialize;

use crate::Secret;
use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};

/// The validated `[cluster]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    /// The Redis URL (`redis://[:password@]host:port[/db]`); a secret because it may
    /// carry a password.
    pub redis: Secret<String>,
    /// Prefix of every key and channel, so several clusters can share one Redis.
    pub key_prefix: String,
    /// Deadline of one Redis command; a shared operation that exceeds it fails with a
    /// clear error instead of holding the request.
    pub command_timeout: Duration,
}

impl ClusterSettings {
    pub const DEFAULT_KEY_PREFIX: &'static str = "switchboard";
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
    /// Upper bound of `command_timeout_ms`.
    pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
}

/// `[cluster]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    redis: Option<String>,
    key_prefix: Option<String>,
    command_timeout_ms: Option<u64>,
}

pub(crate) fn validate(
    raw: RawCluster,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<ClusterSettings, Problem> {
    let redis = raw.redis.ok_or_else(|| {
        Problem::new(
            path.key("redis"),
            "is required (redis://host:port of the shared Redis)",
        )
    })?;
    // The expanded value may hold a password: messages below never repeat it.
    let redis = expand(&redis, env).map_err(|message| Problem::new(path.key("redis"), message))?;
    let redis = redis.trim().to_owned();
    if !(redis.starts_with("redis://") || redis.starts_with("rediss://")) {
        return Err(Problem::new(
            path.key("redis"),
            "must be a redis:// or rediss:// URL",
        ));
    }
    let key_prefix = raw
        .key_prefix
        .unwrap_or_else(|| ClusterSettings::DEFAULT_KEY_PREFIX.to_owned());
    if key_prefix.is_empty()
        || key_prefix.len() > 64
        || !key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Problem::new(
            path.key("key_prefix"),
            "must be 1-64 characters of letters, digits, `-`, `_` or `.`",
        ));
    }
    let command_timeout = match raw.command_timeout_ms {
        None => ClusterSettings::DEFAULT_COMMAND_TIMEOUT,
        Some(0) => {
            return Err(Problem::new(
                path.key("command_timeout_ms"),
                "must be at least 1",
            ));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    if command_timeout > ClusterSettings::MAX_COMMAND_TIMEOUT {
        return Err(Problem::new(
            path.key("command_timeout_ms"),
            "must be at most 30000",
        ));
    }
    Ok(ClusterSettings {
        redis: Secret::new(redis),
        key_prefix,
        command_timeout,
    })
}

#[cfg(test)]
mod tests {
    use crate::{ConfigFormat, parse};

    fn cluster(section: &str) -> Result<crate::ClusterSettings, String> {
        parse(
            &format!("[cluster]\n{section}\n"),
            ConfigFormat::Native,
            None,
        )
        .map(|config| config.cluster.expect("[cluster]"))
        .map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_and_bounds() {
        let settings = cluster("redis = \"redis://:hunter2@10.0.0.5:6379/2\"").unwrap();
        assert_eq!(settings.key_prefix, "switchboard");
        assert_eq!(
            settings.command_timeout,
            super::ClusterSettings::DEFAULT_COMMAND_TIMEOUT
        );
        assert!(
            !format!("{settings:?}").contains("hunter2"),
            "the URL is redacted"
        );

        let missing = cluster("key_prefix = \"a\"").unwrap_err();
        assert!(missing.contains("cluster.redis"), "{missing}");
        let scheme = cluster("redis = \"http://:hunter2@x\"").unwrap_err();
        assert!(
            scheme.contains("cluster.redis") && !scheme.contains("hunter2"),
            "{scheme}"
        );
        let prefix = cluster("redis = \"redis://x\"\nkey_prefix = \"a b\"").unwrap_err();
        assert!(prefix.contains("cluster.key_prefix"), "{prefix}");
        let timeout = cluster("redis = \"redis://x\"\ncommand_timeout_ms = 0").unwrap_err();
        assert!(timeout.contains("cluster.command_timeout_ms"), "{timeout}");
        let timeout = cluster("redis = \"redis://x\"\ncommand_timeout_ms = 30001").unwrap_err();
        assert!(timeout.contains("cluster.command_timeout_ms"), "{timeout}");
        let unknown = cluster("redis = \"redis://x\"\nredis_url = \"y\"").unwrap_err();
        assert!(unknown.contains("redis_url"), "{unknown}");
        assert!(
            parse("", ConfigFormat::Native, None)
                .unwrap()
                .cluster
                .is_none(),
            "nothing without the section"
        );
    }
}
