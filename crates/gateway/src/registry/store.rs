//! Where the registry keeps what must survive a restart: servers registered at runtime,
//! every server's versions, and each server's approved version. Behind
//! [`RegistryStore`], so a shared store (Redis, for several gateways) can take redb's
//! place; [`RedbStore`] keeps them in the shared embedded database (`crate::db::Db`):
//!
//! - `registry_registered`: server → its definition (`.mcp.json` entry shape, JSON);
//! - `registry_versions`: (server, version) → a [`StoredVersion`] (JSON);
//! - `registry_approved`: server → the approved version.
//!
//! Every write is one transaction and returns only after it committed (redb fsyncs before
//! `commit` returns), so what a caller was told is recorded is recorded — also across a
//! `kill -9`.

use std::collections::BTreeMap;
use std::sync::Arc;

use redb::{ReadableDatabase, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::diff::Diff;
use crate::catalog::ServerLists;

pub(crate) const REGISTERED: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("registry_registered");
pub(crate) const VERSIONS: TableDefinition<'static, (&'static str, u64), &'static [u8]> =
    TableDefinition::new("registry_versions");
pub(crate) const APPROVED: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("registry_approved");

/// The store failed (the database, or a record that does not read back).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("registry storage: {0}")]
    Db(#[from] redb::Error),
    /// A write did not commit: nothing of it was applied.
    #[error("registry state not persisted: {0}")]
    NotPersisted(redb::Error),
    /// The blocking task that ran the write ended without an answer (nothing is known
    /// to be committed).
    #[error("registry write interrupted: {0}")]
    Interrupted(String),
    /// The shared store (`[cluster] redis`) did not answer or refused: a write is not
    /// applied, a read has no answer.
    #[error("shared registry storage (Redis) unavailable: {0}")]
    Shared(#[from] redis::RedisError),
    #[error("registry storage: unreadable record of {server}: {source}")]
    Corrupt {
        server: String,
        source: serde_json::Error,
    },
}

fn fail(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Db(error.into())
}

/// A failure inside a write transaction: the write is not persisted.
fn unwritten(error: impl Into<redb::Error>) -> StoreError {
    StoreError::NotPersisted(error.into())
}

/// One recorded version of a server's lists.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredVersion {
    pub version: u64,
    /// When it was recorded, in milliseconds since the Unix epoch.
    #[serde(rename = "recordedAt")]
    pub recorded_at: u64,
    /// Hex SHA-256 of the set (`hash::lists`).
    pub digest: String,
    /// What changed from the version before it (empty for the first).
    #[serde(default)]
    pub diff: Diff,
    #[serde(with = "shared")]
    pub lists: Arc<ServerLists>,
}

/// Serde for the shared lists (serde's `rc` feature is not enabled in the workspace).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize as _, Deserializer, Serialize as _, Serializer};

    use crate::catalog::ServerLists;

    pub(super) fn serialize<S: Serializer>(
        lists: &Arc<ServerLists>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        lists.as_ref().serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<ServerLists>, D::Error> {
        ServerLists::deserialize(deserializer).map(Arc::new)
    }
}

/// Which versions to prune after an append.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Versions kept per server, at most.
    pub max_versions: u64,
    /// Versions recorded before this time (ms since the epoch) are pruned.
    pub min_recorded_at: u64,
}

/// The registry's durable state. Implementations commit each call's writes atomically
/// before returning.
pub trait RegistryStore: Send + Sync {
    /// Servers registered at runtime, with their definitions.
    fn registered(&self) -> Result<BTreeMap<String, Value>, StoreError>;
    fn put_registered(&self, server: &str, definition: &Value) -> Result<(), StoreError>;
    /// `Ok(false)` when there was none.
    fn remove_registered(&self, server: &str) -> Result<bool, StoreError>;
    /// The newest version of every server that has one, with its approved version.
    fn heads(&self) -> Result<BTreeMap<String, (StoredVersion, Option<u64>)>, StoreError>;
    /// Every kept version of `server`, oldest first.
    fn versions(&self, server: &str) -> Result<Vec<StoredVersion>, StoreError>;
    fn version(&self, server: &str, version: u64) -> Result<Option<StoredVersion>, StoreError>;
    /// Appends a version (approving it too when `approve`), then prunes per `retention`
    /// — never the newest nor the approved version — in one transaction.
    fn append(
        &self,
        server: &str,
        version: &StoredVersion,
        approve: bool,
        retention: Retention,
    ) -> Result<(), StoreError>;
    /// Marks `version` approved.
    fn approve(&self, server: &str, version: u64) -> Result<(), StoreError>;
}

/// [`RegistryStore`] in the shared redb database.
pub struct RedbStore {
    db: Arc<crate::db::Db>,
}

impl RedbStore {
    /// Creates the tables (so read-only readers find them).
    pub fn open(db: Arc<crate::db::Db>) -> Result<RedbStore, StoreError> {
        let tx = db.database().begin_write().map_err(fail)?;
        tx.open_table(REGISTERED).map_err(fail)?;
        tx.open_table(VERSIONS).map_err(fail)?;
        tx.open_table(APPROVED).map_err(fail)?;
        tx.commit().map_err(fail)?;
        Ok(RedbStore { db })
    }
}

fn decode(server: &str, bytes: &[u8]) -> Result<StoredVersion, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        server: server.to_owned(),
        source,
    })
}

/// Every kept version of `server` in a database opened for reading (the gateway's, or
/// the CLI's read-only handle), oldest first.
pub fn read_versions(
    db: &impl ReadableDatabase,
    server: &str,
) -> Result<Vec<StoredVersion>, StoreError> {
    let tx = db.begin_read().map_err(fail)?;
    let table = match tx.open_table(VERSIONS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(fail(error)),
    };
    let mut versions = Vec::new();
    for row in table
        .range((server, 0)..=(server, u64::MAX))
        .map_err(fail)?
    {
        let (_, value) = row.map_err(fail)?;
        versions.push(decode(server, value.value())?);
    }
    Ok(versions)
}

/// The runtime registrations in a database opened for reading, by name.
pub fn read_registered(db: &impl ReadableDatabase) -> Result<BTreeMap<String, Value>, StoreError> {
    let tx = db.begin_read().map_err(fail)?;
    let table = match tx.open_table(REGISTERED) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
        Err(error) => return Err(fail(error)),
    };
    let mut registered = BTreeMap::new();
    for row in table.iter().map_err(fail)? {
        let (name, value) = row.map_err(fail)?;
        let name = name.value().to_owned();
        let definition =
            serde_json::from_slice(value.value()).map_err(|source| StoreError::Corrupt {
                server: name.clone(),
                source,
            })?;
        registered.insert(name, definition);
    }
    Ok(registered)
}

/// The approved version of `server` in a database opened for reading.
pub fn read_approved(db: &impl ReadableDatabase, server: &str) -> Result<Option<u64>, StoreError> {
    let tx = db.begin_read().map_err(fail)?;
    let table = match tx.open_table(APPROVED) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(fail(error)),
    };
    Ok(table.get(server).map_err(fail)?.map(|v| v.value()))
}

impl RegistryStore for RedbStore {
    fn registered(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        read_registered(self.db.database())
    }

    fn put_registered(&self, server: &str, definition: &Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(definition).expect("a JSON value serializes");
        let tx = self.db.database().begin_write().map_err(unwritten)?;
        tx.open_table(REGISTERED)
            .map_err(unwritten)?
            .insert(server, bytes.as_slice())
            .map_err(unwritten)?;
        tx.commit().map_err(unwritten)
    }

    fn remove_registered(&self, server: &str) -> Result<bool, StoreError> {
        let tx = self.db.database().begin_write().map_err(unwritten)?;
        let removed = tx
            .open_table(REGISTERED)
            .map_err(unwritten)?
            .remove(server)
            .map_err(unwritten)?
            .is_some();
        tx.commit().map_err(unwritten)?;
        Ok(removed)
    }

    fn heads(&self) -> Result<BTreeMap<String, (StoredVersion, Option<u64>)>, StoreError> {
        let tx = self.db.database().begin_read().map_err(fail)?;
        let versions = tx.open_table(VERSIONS).map_err(fail)?;
        let approved = tx.open_table(APPROVED).map_err(fail)?;
        let mut heads: BTreeMap<String, (StoredVersion, Option<u64>)> = BTreeMap::new();
        // Keys sort by (server, version): the last row of each server is its head. Only
        // that row is decoded.
        let mut last: Option<(String, u64)> = None;
        let mut flush = |last: &mut Option<(String, u64)>| -> Result<(), StoreError> {
            if let Some((server, version)) = last.take() {
                let row = versions
                    .get((server.as_str(), version))
                    .map_err(fail)?
                    .expect("the row just read");
                let head = decode(&server, row.value())?;
                let approval = approved
                    .get(server.as_str())
                    .map_err(fail)?
                    .map(|v| v.value());
                heads.insert(server, (head, approval));
            }
            Ok(())
        };
        for row in versions.iter().map_err(fail)? {
            let (key, _) = row.map_err(fail)?;
            let (server, version) = key.value();
            if last.as_ref().is_some_and(|(name, _)| name != server) {
                flush(&mut last)?;
            }
            last = Some((server.to_owned(), version));
        }
        flush(&mut last)?;
        Ok(heads)
    }

    fn versions(&self, server: &str) -> Result<Vec<StoredVersion>, StoreError> {
        read_versions(self.db.database(), server)
    }

    fn version(&self, server: &str, version: u64) -> Result<Option<StoredVersion>, StoreError> {
        let tx = self.db.database().begin_read().map_err(fail)?;
        let table = tx.open_table(VERSIONS).map_err(fail)?;
        table
            .get((server, version))
            .map_err(fail)?
            .map(|value| decode(server, value.value()))
            .transpose()
    }

    fn append(
        &self,
        server: &str,
        version: &StoredVersion,
        approve: bool,
        retention: Retention,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(version).expect("a version serializes");
        let tx = self.db.database().begin_write().map_err(unwritten)?;
        {
            let mut versions = tx.open_table(VERSIONS).map_err(unwritten)?;
            let mut approved = tx.open_table(APPROVED).map_err(unwritten)?;
            versions
                .insert((server, version.version), bytes.as_slice())
                .map_err(unwritten)?;
            if approve {
                approved
                    .insert(server, version.version)
                    .map_err(unwritten)?;
            }
            let keep = approved.get(server).map_err(unwritten)?.map(|v| v.value());
            // Oldest first: drop while over the count or older than the age, sparing the
            // approved version and the one just written.
            let mut kept: Vec<(u64, u64)> = Vec::new();
            for row in versions
                .range((server, 0)..(server, version.version))
                .map_err(unwritten)?
            {
                let (key, value) = row.map_err(unwritten)?;
                let recorded_at = serde_json::from_slice::<RecordedAt>(value.value())
                    .map_or(0, |r| r.recorded_at);
                kept.push((key.value().1, recorded_at));
            }
            let mut count = kept.len() as u64 + 1;
            let mut doomed = Vec::new();
            for (number, recorded_at) in kept {
                if Some(number) == keep {
                    continue;
                }
                if count > retention.max_versions || recorded_at < retention.min_recorded_at {
                    doomed.push(number);
                    count -= 1;
                }
            }
            for number in doomed {
                versions.remove((server, number)).map_err(unwritten)?;
            }
        }
        tx.commit().map_err(unwritten)
    }

    fn approve(&self, server: &str, version: u64) -> Result<(), StoreError> {
        let tx = self.db.database().begin_write().map_err(unwritten)?;
        tx.open_table(APPROVED)
            .map_err(unwritten)?
            .insert(server, version)
            .map_err(unwritten)?;
        tx.commit().map_err(unwritten)
    }
}

/// Only the time of a stored version (pruning reads no lists).
#[derive(Deserialize)]
struct RecordedAt {
    #[serde(rename = "recordedAt")]
    recorded_at: u64,
}

/// The contract every [`RegistryStore`] keeps, run against each implementation (the redb
/// store below, the Redis store in `cluster::store`).
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use serde_json::json;

    fn version(number: u64, at: u64) -> StoredVersion {
        StoredVersion {
            version: number,
            recorded_at: at,
            digest: String::new(),
            diff: Diff::default(),
            lists: Arc::new(ServerLists {
                tools: vec![json!({"name": format!("t{number}")})],
                ..ServerLists::default()
            }),
        }
    }

    fn keep(max_versions: u64) -> Retention {
        Retention {
            max_versions,
            min_recorded_at: 0,
        }
    }

    /// Appends prune by count and by age, spare the approved version, and heads, approvals
    /// and single versions read back.
    pub(crate) fn appends_prune_and_spare_the_approved(store: &dyn RegistryStore) {
        store.append("s", &version(1, 10), true, keep(3)).unwrap();
        for number in 2..=6 {
            store
                .append("s", &version(number, number * 10), false, keep(3))
                .unwrap();
        }
        let numbers = || -> Vec<u64> {
            store
                .versions("s")
                .unwrap()
                .iter()
                .map(|v| v.version)
                .collect()
        };
        assert_eq!(numbers(), [1, 5, 6], "the approved first version is kept");
        let age = Retention {
            max_versions: 10,
            min_recorded_at: 65,
        };
        store.append("s", &version(7, 70), false, age).unwrap();
        assert_eq!(numbers(), [1, 7], "older than the age bound");
        store.append("t", &version(1, 1), false, keep(3)).unwrap();
        let heads = store.heads().unwrap();
        assert_eq!(heads["s"].0.version, 7);
        assert_eq!(heads["s"].1, Some(1));
        assert_eq!(heads["t"].1, None);
        store.approve("t", 1).unwrap();
        assert_eq!(store.heads().unwrap()["t"].1, Some(1));
        assert_eq!(
            store.version("s", 7).unwrap().unwrap().lists.tools[0]["name"],
            "t7"
        );
        assert!(store.version("s", 2).unwrap().is_none());
    }

    /// Runtime registrations round-trip; removing twice says it was already gone.
    pub(crate) fn registrations_round_trip(store: &dyn RegistryStore) {
        store.put_registered("a", &json!({"command": "a"})).unwrap();
        assert_eq!(store.registered().unwrap()["a"]["command"], "a");
        assert!(store.remove_registered("a").unwrap());
        assert!(!store.remove_registered("a").unwrap());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_prunes_and_spares_the_approved_version() {
        let store = RedbStore::open(Arc::new(crate::db::Db::memory())).unwrap();
        contract::appends_prune_and_spare_the_approved(&store);
    }

    #[test]
    fn registrations_round_trip() {
        let store = RedbStore::open(Arc::new(crate::db::Db::memory())).unwrap();
        contract::registrations_round_trip(&store);
    }
}
