//! The audit log's Ed25519 signing key: loaded from the config (inline or a file), or kept
//! in `state_dir/audit.key`, made on first start. [`AuditKey`] never prints its secret.
//! A key is named by its id: the first 8 bytes of the SHA-256 of its public key, in hex.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use switchboard_config::{AuditKey as KeySource, SigningSeed};

use super::digest::hex;

/// The file under `state_dir` that holds the key when the config names none.
pub const STATE_DIR_FILE: &str = "audit.key";

/// Largest key file read, in bytes.
const MAX_KEY_FILE: u64 = 4096;

/// The key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("audit signing key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit signing key file {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: &'static str },
}

/// The signing key and its id.
pub struct AuditKey {
    signing: SigningKey,
    id: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AuditKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The id of a public key.
pub fn key_id(public: &[u8; 32]) -> String {
    hex(&Sha256::digest(public)[..8])
}

/// A public key as base64 (how `--public-key` takes it and the log prints it).
pub fn public_base64(public: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(public)
}

/// Reads a public key written as base64 or 64 hex digits.
pub fn parse_public(text: &str) -> Option<VerifyingKey> {
    let seed = SigningSeed::parse(text).ok()?;
    VerifyingKey::from_bytes(&seed.0).ok()
}

/// A fresh random seed.
pub fn generate_seed() -> SigningSeed {
    SigningSeed(rand::random())
}

impl AuditKey {
    pub fn from_seed(seed: &SigningSeed) -> AuditKey {
        let signing = SigningKey::from_bytes(&seed.0);
        let id = key_id(signing.verifying_key().as_bytes());
        AuditKey { signing, id }
    }

    /// The key the config names; without one, `state_dir/audit.key` (made when missing);
    /// without a state dir, a new key for this process only.
    pub fn load(source: &KeySource, state_dir: Option<&Path>) -> Result<AuditKey, KeyError> {
        match source {
            KeySource::Inline(seed) => Ok(AuditKey::from_seed(seed)),
            KeySource::File(path) => load_or_make(path),
            KeySource::StateDir => match state_dir {
                Some(dir) => load_or_make(&dir.join(STATE_DIR_FILE)),
                None => Ok(AuditKey::from_seed(&generate_seed())),
            },
        }
    }

    /// The key the config names, without making one: for checking a log against it.
    /// `None` when the config leaves the key to a state dir that has none.
    pub fn load_existing(
        source: &KeySource,
        state_dir: Option<&Path>,
    ) -> Result<Option<AuditKey>, KeyError> {
        let path = match source {
            KeySource::Inline(seed) => return Ok(Some(AuditKey::from_seed(seed))),
            KeySource::File(path) => path.clone(),
            KeySource::StateDir => match state_dir {
                Some(dir) => dir.join(STATE_DIR_FILE),
                None => return Ok(None),
            },
        };
        if !path.exists() {
            return Ok(None);
        }
        load_or_make(&path).map(Some)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn verifying(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }
}

/// Reads the key in `path`; when there is no such file, makes one (mode 0600) with a new
/// key. A file that others may read is used, with a warning.
fn load_or_make(path: &Path) -> Result<AuditKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(metadata) => {
            if !metadata.is_file() {
                return Err(KeyError::Invalid {
                    path: path.to_path_buf(),
                    reason: "not a regular file",
                });
            }
            if metadata.len() > MAX_KEY_FILE {
                return Err(KeyError::Invalid {
                    path: path.to_path_buf(),
                    reason: "larger than 4 KiB: not a key",
                });
            }
            if metadata.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the audit signing key file can be read by others (chmod 600 it)");
            }
            let text = std::fs::read_to_string(path).map_err(io)?;
            let seed = SigningSeed::parse(&text).map_err(|reason| KeyError::Invalid {
                path: path.to_path_buf(),
                reason,
            })?;
            Ok(AuditKey::from_seed(&seed))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let seed = generate_seed();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            let text = base64::engine::general_purpose::STANDARD.encode(seed.0);
            file.write_all(format!("{text}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            let key = AuditKey::from_seed(&seed);
            tracing::warn!(
                path = %path.display(),
                key = %key.id(),
                public_key = %public_base64(&key.public()),
                "made a new audit signing key; keep its public key outside this machine to verify the log with `switchboard audit verify --public-key`"
            );
            Ok(key)
        }
        Err(error) => Err(io(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;

    #[test]
    fn a_key_file_is_made_once_then_reused_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let first = AuditKey::load(&KeySource::StateDir, Some(dir.path())).unwrap();
        let path = dir.path().join(STATE_DIR_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = AuditKey::load(&KeySource::File(path.clone()), None).unwrap();
        assert_eq!(first.public(), again.public());
        assert_eq!(first.id().len(), 16);
        let printed = format!("{first:?}");
        let secret = std::fs::read_to_string(&path).unwrap();
        assert!(!printed.contains(secret.trim()), "{printed}");
        // Signatures verify with the public key as parsed from base64.
        let public = parse_public(&public_base64(&first.public())).unwrap();
        let signature = ed25519_dalek::Signature::from_bytes(&first.sign(b"m"));
        assert!(public.verify(b"m", &signature).is_ok());

        std::fs::write(&path, "garbage").unwrap();
        let error = AuditKey::load(&KeySource::File(path), None).unwrap_err();
        assert!(!error.to_string().contains("garbage"), "{error}");
    }
}
