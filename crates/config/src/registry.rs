//! `[registry]`: the capability registry's history bounds, drift webhook and inventory
//! TTL. Raw shape, validation and the validated model live together here, like
//! `audit.rs`. Per-server pinning is `pin` in `[servers.NAME]` (`policy.rs`).

use std::time::Duration;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};

/// The validated `[registry]` section (defaults without one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Versions kept per server; older ones are pruned (never the approved one).
    pub max_versions: u64,
    /// Versions older than this are pruned (never the newest nor the approved one).
    pub max_age: Duration,
    /// Called (HTTP POST, JSON body) when a server's live lists drift from the approved
    /// version; `None`: no webhook.
    pub drift_webhook: Option<String>,
    /// Deadline of one webhook call.
    pub webhook_timeout: Duration,
    /// Cached lists older than this are re-read from running servers; `None`: lists are
    /// refreshed only on `list_changed` and reload.
    pub list_ttl: Option<Duration>,
    /// Run snapshots kept at once (catalog versions sessions are pinned to); past it the
    /// least recently used one is dropped.
    pub max_snapshots: usize,
    /// A run snapshot older than this is dropped: requests naming it get a "snapshot
    /// expired" error saying how to refresh.
    pub snapshot_max_age: Duration,
}

impl RegistrySettings {
    pub const DEFAULT_MAX_VERSIONS: u64 = 100;
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
    pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(2);
    /// Longest accepted `webhook_timeout_ms`.
    pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
    /// Shortest accepted `list_ttl_ms`.
    pub const MIN_LIST_TTL: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX_SNAPSHOTS: usize = 64;
    /// Largest accepted `max_snapshots`.
    pub const MAX_SNAPSHOTS: usize = 10_000;
    pub const DEFAULT_SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
    /// Accepted `snapshot_max_age_ms`: one second to seven days.
    pub const MIN_SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(1);
    pub const MAX_SNAPSHOT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            max_versions: Self::DEFAULT_MAX_VERSIONS,
            max_age: Self::DEFAULT_MAX_AGE,
            drift_webhook: None,
            webhook_timeout: Self::DEFAULT_WEBHOOK_TIMEOUT,
            list_ttl: None,
            max_snapshots: Self::DEFAULT_MAX_SNAPSHOTS,
            snapshot_max_age: Self::DEFAULT_SNAPSHOT_MAX_AGE,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    max_versions: Option<u64>,
    max_age_days: Option<u64>,
    drift_webhook: Option<String>,
    webhook_timeout_ms: Option<u64>,
    list_ttl_ms: Option<u64>,
    max_snapshots: Option<u64>,
    snapshot_max_age_ms: Option<u64>,
}

pub(crate) fn validate(
    raw: RawRegistry,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<RegistrySettings, Problem> {
    let defaults = RegistrySettings::default();
    let max_versions = match raw.max_versions {
        None => defaults.max_versions,
        Some(n) if n < 2 => {
            return Err(Problem::new(
                path.key("max_versions"),
                "must be at least 2 (the approved version and the newest)",
            ));
        }
        Some(n) => n,
    };
    let max_age = match raw.max_age_days {
        None => defaults.max_age,
        Some(0) => return Err(Problem::new(path.key("max_age_days"), "must be at least 1")),
        Some(days) => Duration::from_secs(days.saturating_mul(24 * 3600)),
    };
    let drift_webhook = match raw.drift_webhook {
        None => None,
        Some(url) => {
            // The URL may carry a token: errors name the key, never the value.
            let url = expand(&url, env)
                .map_err(|message| Problem::new(path.key("drift_webhook"), message))?;
            if url.trim().is_empty() {
                None
            } else if url.starts_with("http://") || url.starts_with("https://") {
                Some(url)
            } else {
                return Err(Problem::new(
                    path.key("drift_webhook"),
                    "must be an http:// or https:// URL",
                ));
            }
        }
    };
    let webhook_timeout = match raw.webhook_timeout_ms {
        None => defaults.webhook_timeout,
        Some(0) => {
            return Err(Problem::new(
                path.key("webhook_timeout_ms"),
                "must be a positive number of milliseconds",
            ));
        }
        Some(ms) if Duration::from_millis(ms) > RegistrySettings::MAX_WEBHOOK_TIMEOUT => {
            return Err(Problem::new(
                path.key("webhook_timeout_ms"),
                "must be at most 30000",
            ));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    let list_ttl = match raw.list_ttl_ms {
        None => None,
        Some(ms) if Duration::from_millis(ms) < RegistrySettings::MIN_LIST_TTL => {
            return Err(Problem::new(
                path.key("list_ttl_ms"),
                "must be at least 1000",
            ));
        }
        Some(ms) => Some(Duration::from_millis(ms)),
    };
    let max_snapshots = match raw.max_snapshots {
        None => defaults.max_snapshots,
        Some(n) if n == 0 || n > RegistrySettings::MAX_SNAPSHOTS as u64 => {
            return Err(Problem::new(
                path.key("max_snapshots"),
                "must be between 1 and 10000",
            ));
        }
        Some(n) => n as usize,
    };
    let snapshot_max_age = match raw.snapshot_max_age_ms {
        None => defaults.snapshot_max_age,
        Some(ms)
            if Duration::from_millis(ms) < RegistrySettings::MIN_SNAPSHOT_MAX_AGE
                || Duration::from_millis(ms) > RegistrySettings::MAX_SNAPSHOT_MAX_AGE =>
        {
            return Err(Problem::new(
                path.key("snapshot_max_age_ms"),
                "must be between 1000 (one second) and 604800000 (seven days)",
            ));
        }
        Some(ms) => Duration::from_millis(ms),
    };
    Ok(RegistrySettings {
        max_versions,
        max_age,
        drift_webhook,
        webhook_timeout,
        list_ttl,
        max_snapshots,
        snapshot_max_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn check(raw: RawRegistry) -> Result<RegistrySettings, Problem> {
        validate(raw, &KeyPath::root().key("registry"), &no_env)
    }

    #[test]
    fn snapshot_bounds_are_checked() {
        for (raw, key) in [
            (
                RawRegistry {
                    max_snapshots: Some(0),
                    ..RawRegistry::default()
                },
                "max_snapshots",
            ),
            (
                RawRegistry {
                    max_snapshots: Some(10_001),
                    ..RawRegistry::default()
                },
                "max_snapshots",
            ),
            (
                RawRegistry {
                    snapshot_max_age_ms: Some(999),
                    ..RawRegistry::default()
                },
                "snapshot_max_age_ms",
            ),
            (
                RawRegistry {
                    snapshot_max_age_ms: Some(8 * 24 * 3600 * 1000),
                    ..RawRegistry::default()
                },
                "snapshot_max_age_ms",
            ),
        ] {
            let error = format!("{:?}", check(raw).unwrap_err());
            assert!(error.contains(key), "{error}");
        }
        let defaults = check(RawRegistry::default()).unwrap();
        assert_eq!(defaults.max_snapshots, 64);
        assert_eq!(defaults.snapshot_max_age, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(
            check(RawRegistry::default()).unwrap(),
            RegistrySettings::default()
        );
        let one = RawRegistry {
            max_versions: Some(1),
            ..RawRegistry::default()
        };
        assert!(format!("{:?}", check(one).unwrap_err()).contains("max_versions"));
        let ftp = RawRegistry {
            drift_webhook: Some("ftp://secret@x".into()),
            ..RawRegistry::default()
        };
        let error = format!("{:?}", check(ftp).unwrap_err());
        assert!(
            error.contains("drift_webhook") && !error.contains("secret"),
            "{error}"
        );
        let short = RawRegistry {
            list_ttl_ms: Some(10),
            ..RawRegistry::default()
        };
        assert!(format!("{:?}", check(short).unwrap_err()).contains("list_ttl_ms"));
        let good = RawRegistry {
            max_versions: Some(5),
            max_age_days: Some(1),
            drift_webhook: Some("http://127.0.0.1:9/hook".into()),
            webhook_timeout_ms: Some(500),
            list_ttl_ms: Some(60_000),
            max_snapshots: Some(8),
            snapshot_max_age_ms: Some(60_000),
        };
        let settings = check(good).unwrap();
        assert_eq!(settings.max_versions, 5);
        assert_eq!(settings.max_snapshots, 8);
        assert_eq!(settings.snapshot_max_age, Duration::from_secs(60));
        assert_eq!(settings.list_ttl, Some(Duration::from_secs(60)));
    }
}
