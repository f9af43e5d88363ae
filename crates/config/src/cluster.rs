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
    /// The shared secret replicas present to each other on the internal channel
    /// (`/cluster/call`, bearer); required when a server is `cluster = "owned"`.
    pub secret: Option<Secret<String>>,
    /// The `host:port` other replicas reach this one on (its HTTP listener); `None`: the
    /// listener's bound address (loopback when it listens on every address).
    pub advertise: Option<String>,
    /// How long an owned server's lease lasts without renewal: the longest a dead owner's
    /// servers stay unreachable before another replica takes them over.
    pub lease: Duration,
}

impl ClusterSettings {
    pub const DEFAULT_KEY_PREFIX: &'static str = "switchboard";
    pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
    /// Upper bound of `command_timeout_ms`.
    pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
    /// Bounds of `lease_ms`.
    pub const MIN_LEASE: Duration = Duration::from_millis(1000);
    pub const MAX_LEASE: Duration = Duration::from_secs(60);
    /// The shortest cluster secret accepted.
    pub const MIN_SECRET_BYTES: usize = 16;
}

/// `[cluster]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    redis: Option<String>,
    key_prefix: Option<String>,
    command_timeout_ms: Option<u64>,
    secret: Option<String>,
    advertise: Option<String>,
    lease_ms: Option<u64>,
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
    let secret = match raw.secret {
        None => None,
        Some(secret) => {
            // Never repeated in a message.
            let secret = expand(&secret, env)
                .map_err(|message| Problem::new(path.key("secret"), message))?;
            if secret.len() < ClusterSettings::MIN_SECRET_BYTES {
                return Err(Problem::new(
                    path.key("secret"),
                    format!(
                        "must be at least {} bytes long",
                        ClusterSettings::MIN_SECRET_BYTES
                    ),
                ));
            }
            Some(Secret::new(secret))
        }
    };
    if let Some(advertise) = &raw.advertise {
        let valid = advertise.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid || advertise.contains('/') {
            return Err(Problem::new(
                path.key("advertise"),
                "must be host:port (how other replicas reach this one's HTTP listener)",
            ));
        }
    }
    let lease = raw
        .lease_ms
        .map_or(ClusterSettings::DEFAULT_LEASE, Duration::from_millis);
    if !(ClusterSettings::MIN_LEASE..=ClusterSettings::MAX_LEASE).contains(&lease) {
        return Err(Problem::new(
            path.key("lease_ms"),
            "must be between 1000 and 60000",
        ));
    }
    Ok(ClusterSettings {
        redis: Secret::new(redis),
        key_prefix,
        command_timeout,
        secret,
        advertise: raw.advertise,
        lease,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        let short = cluster("redis = \"redis://x\"\nsecret = \"tiny-secret\"").unwrap_err();
        assert!(
            short.contains("cluster.secret") && !short.contains("tiny-secret"),
            "{short}"
        );
        let lease = cluster("redis = \"redis://x\"\nlease_ms = 10").unwrap_err();
        assert!(lease.contains("cluster.lease_ms"), "{lease}");
        let advertise = cluster("redis = \"redis://x\"\nadvertise = \"http://a:1\"").unwrap_err();
        assert!(advertise.contains("cluster.advertise"), "{advertise}");
        let full = cluster(
            "redis = \"redis://x\"\nsecret = \"0123456789abcdef-secret\"\nadvertise = \"10.0.0.7:8080\"\nlease_ms = 3000",
        )
        .unwrap();
        assert_eq!(full.lease, Duration::from_secs(3));
        assert_eq!(full.advertise.as_deref(), Some("10.0.0.7:8080"));
        assert!(!format!("{full:?}").contains("0123456789abcdef"));
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

    fn servers(text: &str) -> Result<crate::Config, String> {
        parse(text, ConfigFormat::Native, None).map_err(|error| error.to_string())
    }

    #[test]
    fn owned_servers() {
        let cluster = "[cluster]\nredis = \"redis://x\"\nsecret = \"0123456789abcdef-secret\"\n";
        let config = servers(&format!(
            "{cluster}[servers.a]\ncommand = \"x\"\ncluster = \"owned\"\n[servers.b]\ncommand = \"y\"\n"
        ))
        .unwrap();
        assert_eq!(config.servers["a"].cluster, crate::ClusterMode::Owned);
        assert_eq!(config.servers["b"].cluster, crate::ClusterMode::Local);

        let http = servers(&format!(
            "{cluster}[servers.a]\nurl = \"http://h/mcp\"\ncluster = \"owned\"\n"
        ))
        .unwrap_err();
        assert!(http.contains("servers.a.cluster"), "{http}");
        let pooled = servers(&format!(
            "{cluster}[servers.a]\ncommand = \"x\"\nsharing = \"pool\"\ncluster = \"owned\"\n"
        ))
        .unwrap_err();
        assert!(pooled.contains("servers.a.cluster"), "{pooled}");
        let unknown =
            servers("[servers.a]\ncommand = \"x\"\ncluster = \"everywhere\"\n").unwrap_err();
        assert!(unknown.contains("cluster"), "{unknown}");
        let no_secret = servers(
            "[cluster]\nredis = \"redis://x\"\n[servers.a]\ncommand = \"x\"\ncluster = \"owned\"\n",
        )
        .unwrap_err();
        assert!(no_secret.contains("cluster.secret"), "{no_secret}");
        // Without `[cluster]`, `owned` means one process anyway: accepted, run locally.
        servers("[servers.a]\ncommand = \"x\"\ncluster = \"owned\"\n").unwrap();
    }
}
