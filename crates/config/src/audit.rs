//! `[audit]`: the tamper-evident audit log. Raw shape, validation and the validated model
//! live together here, like `access.rs`.
//!
//! The signing key is an Ed25519 secret (a 32-byte seed, written as base64 or 64 hex
//! digits), given inline (usually `${ENV}`) or in a file; it is kept in [`SigningSeed`],
//! which prints a redaction. Without either, the gateway keeps a key in
//! `state_dir/audit.key` (made on first start).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};

/// The validated `[audit]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditSettings {
    /// Where the signing key comes from.
    pub key: AuditKey,
    /// Whether records carry the calls' raw arguments (digests always).
    pub record_arguments: bool,
    /// Whether records carry the raw results (digests always).
    pub record_results: bool,
    /// Records waiting for the writer, at most.
    pub queue: usize,
    /// How long a call waits for room in a full queue before it is refused (zero: refused
    /// at once).
    pub queue_wait: Duration,
    /// Whether a call is answered only once its record is committed.
    pub sync: bool,
    /// Records kept; the oldest are pruned beyond it.
    pub max_records: u64,
    /// Where committed records are also written, as JSON lines.
    pub export: Option<AuditExport>,
}

impl AuditSettings {
    pub const DEFAULT_QUEUE: usize = 4096;
    pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX_RECORDS: u64 = 1_000_000;
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            key: AuditKey::StateDir,
            record_arguments: false,
            record_results: false,
            queue: Self::DEFAULT_QUEUE,
            queue_wait: Self::DEFAULT_QUEUE_WAIT,
            sync: false,
            max_records: Self::DEFAULT_MAX_RECORDS,
            export: None,
        }
    }
}

/// Where the audit log's signing key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditKey {
    /// Written in the config (usually through `${ENV}`).
    Inline(SigningSeed),
    /// A file holding the key (base64 or hex); made with a new key when it does not exist.
    File(PathBuf),
    /// `state_dir/audit.key`, made on first start (in memory without a state dir).
    StateDir,
}

/// Where committed records are exported as JSON lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditExport {
    Stdout,
    File(PathBuf),
}

/// An Ed25519 secret key seed. Prints as a redaction.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSeed(pub [u8; 32]);

impl fmt::Debug for SigningSeed {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SigningSeed(<redacted>)")
    }
}

impl SigningSeed {
    /// Reads a seed written as 64 hex digits or as base64 (standard or URL-safe, padded or
    /// not) of 32 bytes; surrounding whitespace is ignored. The error never echoes the text.
    pub fn parse(text: &str) -> Result<SigningSeed, &'static str> {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut seed = [0u8; 32];
            for (index, byte) in seed.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16)
                    .map_err(|_| "not hex")?;
            }
            return Ok(SigningSeed(seed));
        }
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text) {
                return <[u8; 32]>::try_from(bytes.as_slice())
                    .map(SigningSeed)
                    .map_err(|_| "must be 32 bytes (an Ed25519 seed)");
            }
        }
        Err(
            "expected an Ed25519 seed: 32 bytes as base64 or 64 hex digits (`switchboard audit keygen` makes one)",
        )
    }
}

/// `[audit]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    signing_key: Option<String>,
    signing_key_file: Option<String>,
    record_arguments: Option<bool>,
    record_results: Option<bool>,
    queue: Option<u64>,
    queue_wait_ms: Option<u64>,
    sync: Option<bool>,
    max_records: Option<u64>,
    export: Option<String>,
}

pub(crate) fn validate(
    raw: RawAudit,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<AuditSettings, Problem> {
    let expanded = |value: &str, key: &str| {
        expand(value, env).map_err(|message| Problem::new(path.key(key), message))
    };
    let defaults = AuditSettings::default();
    let key = match (raw.signing_key, raw.signing_key_file) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(
                path.key("signing_key_file"),
                "conflicts with `signing_key`: write one of the two",
            ));
        }
        (Some(inline), None) => {
            let inline = expanded(&inline, "signing_key")?;
            // An empty value (`${VAR:-}` with VAR unset) means: no key given here.
            if inline.trim().is_empty() {
                AuditKey::StateDir
            } else {
                AuditKey::Inline(
                    SigningSeed::parse(&inline)
                        .map_err(|message| Problem::new(path.key("signing_key"), message))?,
                )
            }
        }
        (None, Some(file)) => {
            let file = expanded(&file, "signing_key_file")?;
            if file.trim().is_empty() {
                return Err(Problem::new(
                    path.key("signing_key_file"),
                    "must name a file",
                ));
            }
            AuditKey::File(file.into())
        }
        (None, None) => AuditKey::StateDir,
    };
    let queue = match raw.queue {
        None => defaults.queue,
        Some(0) => return Err(Problem::new(path.key("queue"), "must be at least 1")),
        Some(n) if n > 1 << 20 => {
            return Err(Problem::new(
                path.key("queue"),
                "must be at most 1048576 records",
            ));
        }
        Some(n) => n as usize,
    };
    let max_records = match raw.max_records {
        None => defaults.max_records,
        Some(0) => return Err(Problem::new(path.key("max_records"), "must be at least 1")),
        Some(n) => n,
    };
    let export = match raw.export {
        None => None,
        Some(target) => {
            let target = expanded(&target, "export")?;
            match target.trim() {
                "" => None,
                "stdout" => Some(AuditExport::Stdout),
                _ => Some(AuditExport::File(target.into())),
            }
        }
    };
    Ok(AuditSettings {
        key,
        record_arguments: raw.record_arguments.unwrap_or(false),
        record_results: raw.record_results.unwrap_or(false),
        queue,
        queue_wait: raw
            .queue_wait_ms
            .map_or(defaults.queue_wait, Duration::from_millis),
        sync: raw.sync.unwrap_or(false),
        max_records,
        export,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<AuditSettings, Problem> {
        let raw: RawAudit = toml::from_str(text).unwrap();
        validate(raw, &KeyPath::root().key("audit"), &no_env)
    }

    #[test]
    fn seeds_read_as_hex_or_base64_and_never_print() {
        let hex = "00".repeat(31) + "01";
        let seed = SigningSeed::parse(&hex).unwrap();
        assert_eq!(seed.0[31], 1);
        let base64 = base64::engine::general_purpose::STANDARD.encode(seed.0);
        assert_eq!(SigningSeed::parse(&base64).unwrap(), seed);
        assert_eq!(
            SigningSeed::parse(base64.trim_end_matches('=')).unwrap(),
            seed
        );
        assert!(SigningSeed::parse("c2hvcnQ=").is_err());
        assert!(SigningSeed::parse("not a key at all").is_err());
        assert_eq!(format!("{seed:?}"), "SigningSeed(<redacted>)");
    }

    #[test]
    fn defaults_and_errors_name_the_key() {
        let settings = parse("").unwrap();
        assert_eq!(settings, AuditSettings::default());
        let settings =
            parse("export = \"stdout\"\nqueue = 8\nqueue_wait_ms = 0\nsync = true").unwrap();
        assert_eq!(settings.export, Some(AuditExport::Stdout));
        assert_eq!((settings.queue, settings.queue_wait), (8, Duration::ZERO));
        assert!(settings.sync);

        let error = parse("signing_key = \"short\"").unwrap_err();
        assert_eq!(error.key.to_string(), "audit.signing_key");
        assert!(!error.message.contains("short"), "{}", error.message);
        let error = parse("signing_key = \"x\"\nsigning_key_file = \"/k\"").unwrap_err();
        assert_eq!(error.key.to_string(), "audit.signing_key_file");
        assert_eq!(
            parse("queue = 0").unwrap_err().key.to_string(),
            "audit.queue"
        );
        assert_eq!(
            parse("max_records = 0").unwrap_err().key.to_string(),
            "audit.max_records"
        );
        // `${VAR:-}` with the variable unset: no inline key.
        assert_eq!(
            parse("signing_key = \"${AUDIT_KEY:-}\"").unwrap().key,
            AuditKey::StateDir
        );
    }
}
