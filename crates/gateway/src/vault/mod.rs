//! Secrets at rest: values registered through `/admin/secrets` or the `set_secret`
//! meta-tool, kept encrypted (`cipher`) in the embedded database's `secrets.values` table
//! and resolved into a server's `env` and `headers` (`${secret:NAME}`) when an instance
//! starts, so an updated secret reaches the next instance.
//!
//! The key comes from `[secrets] key` / `key_file`. `secrets.meta` holds a *check*: a
//! fixed text sealed under the key in force, so a gateway started with another key is
//! refused at start by name ([`VaultError::WrongKey`]) instead of failing later on each
//! secret. Rotation: the new key as `key`, the old one as `previous_key`; the vault then
//! reads records of either, writes under the new one, and [`Vault::rotate`] re-encrypts
//! every record and the check in one transaction (all or nothing). Every write is
//! acknowledged only after its commit returned.
//!
//! Values live in [`Secret`]s; errors name secrets, never their values.

mod cipher;

use std::path::Path;
use std::sync::Arc;

use redb::{
    ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _, TableDefinition,
};
use switchboard_config::{
    KeyBytes, Secret, SecretsSettings, TransportSpec, VaultKey, has_secret_refs,
    resolve_secret_refs,
};

use crate::db::Db;
use cipher::{Key, Record, Times, hex};

/// Name → sealed record (`cipher`).
const VALUES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("secrets.values");
/// `check` → the check record.
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("secrets.meta");
const CHECK: &str = "check";
/// The check's name (associated data) and text; no secret can be named with a NUL.
const CHECK_NAME: &str = "\0check";
const CHECK_TEXT: &[u8] = b"switchboard secrets key check";

/// Largest value stored, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most secrets stored.
pub const MAX_SECRETS: usize = 10_000;
/// Largest key file read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// A vault operation failed. Messages name secrets and key ids, never a value or a key.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "the secrets key (key id {configured}) does not open the stored secrets, which were \
         encrypted under key id {stored}: set `[secrets] key` to the key they were stored \
         with, or give that one as `previous_key` beside the new key and rotate"
    )]
    WrongKey { configured: String, stored: String },
    #[error("secrets key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error(
        "stored secret `{0}` does not open: its record is damaged or was sealed under a key not configured"
    )]
    Damaged(String),
    #[error("unknown secret `{0}`")]
    Unknown(String),
    #[error("invalid secret name: expected a name {rule}", rule = switchboard_config::SECRET_NAME_RULE)]
    InvalidName,
    #[error("secret value too large: {0} bytes (at most {MAX_VALUE_BYTES})")]
    TooLarge(usize),
    #[error("the store already holds {MAX_SECRETS} secrets (the most it keeps)")]
    Full,
    #[error("the secret store cannot be written: {0}")]
    Storage(String),
    #[error("references stored secret `{0}`, but no `[secrets]` section configures a secret store")]
    NoStore(String),
    #[error(
        "stored secret `{secret}` cannot be used in header `{header}` (control characters are not allowed)"
    )]
    BadHeader { secret: String, header: String },
    #[error(
        "stored secret `{0}` contains a NUL character, which an environment variable cannot carry"
    )]
    Nul(String),
}

impl VaultError {
    fn storage(error: impl std::fmt::Display) -> VaultError {
        VaultError::Storage(error.to_string())
    }
}

/// One stored secret as operators see it: its name and times, never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl Entry {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "created": crate::audit::time::format_ms(self.created_ms),
            "updated": crate::audit::time::format_ms(self.updated_ms),
        })
    }
}

/// The encrypted secret store.
pub struct Vault {
    db: Arc<Db>,
    key: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Vault")
            .field("key", &self.key)
            .field("previous", &self.previous)
            .finish()
    }
}

/// Reads a key as configured: inline, or from its file (bounded, never echoed).
pub fn read_key(key: &VaultKey) -> Result<KeyBytes, VaultError> {
    match key {
        VaultKey::Inline(bytes) => Ok(bytes.clone()),
        VaultKey::File(path) => {
            let failed = |reason: String| VaultError::KeyFile {
                path: path.display().to_string(),
                reason,
            };
            let metadata = std::fs::metadata(path).map_err(|error| failed(error.to_string()))?;
            if !metadata.is_file() || metadata.len() > MAX_KEY_FILE_BYTES {
                return Err(failed(format!(
                    "must be a regular file of at most {MAX_KEY_FILE_BYTES} bytes"
                )));
            }
            let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
            KeyBytes::parse(&text).map_err(|message| failed(message.to_owned()))
        }
    }
}

use crate::audit::time::now_ms;

impl Vault {
    /// Opens the store in `db` with the configured keys; a store sealed under neither key
    /// is refused. A new store gets its check (committed) under `key`.
    pub fn open(db: Arc<Db>, settings: &SecretsSettings) -> Result<Vault, VaultError> {
        let key = Key::new(&read_key(&settings.key)?.0);
        let previous = match &settings.previous_key {
            Some(previous) => Some(Key::new(&read_key(previous)?.0)),
            None => None,
        };
        let vault = Vault { db, key, previous };
        vault.check()?;
        Ok(vault)
    }

    /// The key that sealed the check, verified; writes a check when there is none.
    fn check(&self) -> Result<(), VaultError> {
        let tx = self
            .db
            .database()
            .begin_write()
            .map_err(VaultError::storage)?;
        {
            let mut meta = tx.open_table(META).map_err(VaultError::storage)?;
            tx.open_table(VALUES).map_err(VaultError::storage)?;
            let stored = meta
                .get(CHECK)
                .map_err(VaultError::storage)?
                .map(|bytes| bytes.value().to_vec());
            match stored {
                Some(bytes) => {
                    let record = Record::parse(&bytes)
                        .ok_or_else(|| VaultError::Damaged("(the key check)".to_owned()))?;
                    let key = self
                        .key_for(&record.key_id)
                        .ok_or_else(|| VaultError::WrongKey {
                            configured: hex(&self.key.id()),
                            stored: hex(&record.key_id),
                        })?;
                    if key.open(CHECK_NAME, &record).as_deref() != Some(CHECK_TEXT) {
                        return Err(VaultError::Damaged("(the key check)".to_owned()));
                    }
                    return Ok(());
                }
                None => {
                    let now = now_ms();
                    let sealed = self.key.seal(
                        CHECK_NAME,
                        CHECK_TEXT,
                        Times {
                            created_ms: now,
                            updated_ms: now,
                        },
                    );
                    meta.insert(CHECK, sealed.as_slice())
                        .map_err(VaultError::storage)?;
                }
            }
        }
        tx.commit().map_err(VaultError::storage)
    }

    fn key_for(&self, id: &cipher::KeyId) -> Option<&Key> {
        if *id == self.key.id() {
            return Some(&self.key);
        }
        self.previous.as_ref().filter(|key| key.id() == *id)
    }

    fn open_record(&self, name: &str, bytes: &[u8]) -> Result<Secret<String>, VaultError> {
        let record = Record::parse(bytes).ok_or_else(|| VaultError::Damaged(name.to_owned()))?;
        let key = self
            .key_for(&record.key_id)
            .ok_or_else(|| VaultError::Damaged(name.to_owned()))?;
        let plaintext = key
            .open(name, &record)
            .ok_or_else(|| VaultError::Damaged(name.to_owned()))?;
        String::from_utf8(plaintext)
            .map(Secret::new)
            .map_err(|_| VaultError::Damaged(name.to_owned()))
    }

    /// Stores `value` under `name` (created, or replaced); returns the entry, and whether
    /// it is new, once the transaction committed.
    pub fn put(&self, name: &str, value: &Secret<String>) -> Result<(Entry, bool), VaultError> {
        if !switchboard_config::is_secret_name(name) {
            return Err(VaultError::InvalidName);
        }
        let bytes = value.expose_str().len();
        if bytes > MAX_VALUE_BYTES {
            return Err(VaultError::TooLarge(bytes));
        }
        let tx = self
            .db
            .database()
            .begin_write()
            .map_err(VaultError::storage)?;
        let entry = {
            let mut values = tx.open_table(VALUES).map_err(VaultError::storage)?;
            let existing = values
                .get(name)
                .map_err(VaultError::storage)?
                .and_then(|bytes| Record::parse(bytes.value()).map(|record| record.times));
            if existing.is_none()
                && values.len().map_err(VaultError::storage)? as usize >= MAX_SECRETS
            {
                return Err(VaultError::Full);
            }
            let now = now_ms();
            let times = Times {
                created_ms: existing.map_or(now, |times| times.created_ms),
                updated_ms: now,
            };
            let sealed = self.key.seal(name, value.expose_str().as_bytes(), times);
            values
                .insert(name, sealed.as_slice())
                .map_err(VaultError::storage)?;
            let entry = Entry {
                name: name.to_owned(),
                created_ms: times.created_ms,
                updated_ms: times.updated_ms,
            };
            (entry, existing.is_none())
        };
        tx.commit().map_err(VaultError::storage)?;
        Ok(entry)
    }

    /// Removes `name`; `false` when there was no such secret. Acknowledged after commit.
    pub fn delete(&self, name: &str) -> Result<bool, VaultError> {
        let tx = self
            .db
            .database()
            .begin_write()
            .map_err(VaultError::storage)?;
        let removed = {
            let mut values = tx.open_table(VALUES).map_err(VaultError::storage)?;
            values.remove(name).map_err(VaultError::storage)?.is_some()
        };
        tx.commit().map_err(VaultError::storage)?;
        Ok(removed)
    }

    /// Every stored secret's name and times, in name order.
    pub fn list(&self) -> Result<Vec<Entry>, VaultError> {
        let tx = self
            .db
            .database()
            .begin_read()
            .map_err(VaultError::storage)?;
        let values = tx.open_table(VALUES).map_err(VaultError::storage)?;
        let mut entries = Vec::new();
        for item in values.iter().map_err(VaultError::storage)? {
            let (name, bytes) = item.map_err(VaultError::storage)?;
            let name = name.value().to_owned();
            let times = Record::parse(bytes.value())
                .map(|record| record.times)
                .ok_or_else(|| VaultError::Damaged(name.clone()))?;
            entries.push(Entry {
                name,
                created_ms: times.created_ms,
                updated_ms: times.updated_ms,
            });
        }
        Ok(entries)
    }

    /// A secret's value; `None` when it is not stored.
    pub fn get(&self, name: &str) -> Result<Option<Secret<String>>, VaultError> {
        let tx = self
            .db
            .database()
            .begin_read()
            .map_err(VaultError::storage)?;
        let values = tx.open_table(VALUES).map_err(VaultError::storage)?;
        let Some(bytes) = values.get(name).map_err(VaultError::storage)? else {
            return Ok(None);
        };
        self.open_record(name, bytes.value()).map(Some)
    }

    /// Re-encrypts every record sealed under another key than `key`, and the check, in
    /// one transaction: afterwards the store opens with `key` alone. Returns how many
    /// secrets were re-encrypted. A record that does not open stops the rotation with
    /// nothing changed.
    pub fn rotate(&self) -> Result<usize, VaultError> {
        let tx = self
            .db
            .database()
            .begin_write()
            .map_err(VaultError::storage)?;
        let mut rotated = 0;
        {
            let mut values = tx.open_table(VALUES).map_err(VaultError::storage)?;
            let mut stale = Vec::new();
            for item in values.iter().map_err(VaultError::storage)? {
                let (name, bytes) = item.map_err(VaultError::storage)?;
                let name = name.value().to_owned();
                let record = Record::parse(bytes.value())
                    .ok_or_else(|| VaultError::Damaged(name.clone()))?;
                if record.key_id != self.key.id() {
                    let times = record.times;
                    let value = self.open_record(&name, bytes.value())?;
                    stale.push((name, value, times));
                }
            }
            for (name, value, times) in stale {
                let sealed = self.key.seal(&name, value.expose_str().as_bytes(), times);
                values
                    .insert(name.as_str(), sealed.as_slice())
                    .map_err(VaultError::storage)?;
                rotated += 1;
            }
            let mut meta = tx.open_table(META).map_err(VaultError::storage)?;
            let now = now_ms();
            let sealed = self.key.seal(
                CHECK_NAME,
                CHECK_TEXT,
                Times {
                    created_ms: now,
                    updated_ms: now,
                },
            );
            meta.insert(CHECK, sealed.as_slice())
                .map_err(VaultError::storage)?;
        }
        tx.commit().map_err(VaultError::storage)?;
        Ok(rotated)
    }

    /// The key ids in use, for the start-up log (never the keys).
    pub fn describe(&self) -> String {
        match &self.previous {
            Some(previous) => format!(
                "key id {}, previous key id {}",
                hex(&self.key.id()),
                hex(&previous.id())
            ),
            None => format!("key id {}", hex(&self.key.id())),
        }
    }
}

/// `transport` with every `${secret:NAME}` in its `env` and `headers` values replaced by
/// the stored secret (read now: an instance starting after an update gets the new value).
/// A transport without references is returned as it is, with or without a vault.
pub fn resolve_transport(
    vault: Option<&Vault>,
    transport: &TransportSpec,
) -> Result<TransportSpec, VaultError> {
    let mut lookup = |name: &str| -> Result<String, VaultError> {
        let Some(vault) = vault else {
            return Err(VaultError::NoStore(name.to_owned()));
        };
        vault
            .get(name)?
            .map(Secret::into_exposed)
            .ok_or_else(|| VaultError::Unknown(name.to_owned()))
    };
    let mut resolved = transport.clone();
    match &mut resolved {
        TransportSpec::Stdio { env, .. } => {
            for value in env.values_mut() {
                if has_secret_refs(value.expose_str()) {
                    let names = switchboard_config::secret_refs(value.expose_str()).join(", ");
                    let text = resolve_secret_refs(value.expose_str(), &mut lookup)?;
                    if text.contains('\0') {
                        return Err(VaultError::Nul(names));
                    }
                    *value = Secret::new(text);
                }
            }
        }
        TransportSpec::Http {
            oauth: Some(oauth), ..
        } => {
            for value in oauth.secrets_mut() {
                if has_secret_refs(value.expose_str()) {
                    *value = Secret::new(resolve_secret_refs(value.expose_str(), &mut lookup)?);
                }
            }
        }
        _ => {}
    }
    match &mut resolved {
        TransportSpec::Stdio { .. } => {}
        TransportSpec::Http { headers, .. } | TransportSpec::Sse { headers, .. } => {
            for (header, value) in headers.iter_mut() {
                if has_secret_refs(value.expose_str()) {
                    let names = switchboard_config::secret_refs(value.expose_str()).join(", ");
                    let text = resolve_secret_refs(value.expose_str(), &mut lookup)?;
                    if http::HeaderValue::from_str(&text).is_err() {
                        return Err(VaultError::BadHeader {
                            secret: names,
                            header: header.clone(),
                        });
                    }
                    *value = Secret::new(text);
                }
            }
        }
    }
    Ok(resolved)
}

/// Whether `transport` references stored secrets at all.
pub fn references_secrets(transport: &TransportSpec) -> bool {
    if let TransportSpec::Http {
        oauth: Some(oauth), ..
    } = transport
        && oauth
            .clone()
            .secrets_mut()
            .iter()
            .any(|value| has_secret_refs(value.expose_str()))
    {
        return true;
    }
    let values = match transport {
        TransportSpec::Stdio { env, .. } => env,
        TransportSpec::Http { headers, .. } | TransportSpec::Sse { headers, .. } => headers,
    };
    values
        .values()
        .any(|value| has_secret_refs(value.expose_str()))
}

/// Opens the store in `state_dir` and re-encrypts it under `settings.key` (the CLI's
/// `switchboard secrets rotate`, with no gateway running on that state dir).
pub fn rotate_offline(state_dir: &Path, settings: &SecretsSettings) -> Result<usize, String> {
    let db = Db::open(Some(state_dir)).map_err(|error| error.to_string())?;
    let vault = Vault::open(db, settings).map_err(|error| error.to_string())?;
    vault.rotate().map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests;
