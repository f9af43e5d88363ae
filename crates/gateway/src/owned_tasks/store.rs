//! The gateway-made tasks' records in the embedded database.
//!
//! Two tables, written in the same transactions: `tasks.owned` (record id → JSON
//! [`Record`]) and its expiry index `tasks.owned.expiry` ((expiry in ms, record id) → ()).
//! A create removes records whose expiry has passed by walking the index from its start,
//! at most [`SWEEP_PER_CREATE`] of them, so its work is O(log n) plus the expired records
//! it removes, whatever the table holds: at the bound ([`MAX_KEPT`]) with nothing expired
//! it answers [`StoreError::Full`] after one index lookup. A database written before the
//! index existed (the two tables' lengths differ) gets its index rebuilt once, in the
//! first create's transaction.

use std::sync::Arc;

use redb::{
    ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _, Table, TableDefinition,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::db::Db;

const TABLE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("tasks.owned");
const EXPIRY: TableDefinition<'_, (u64, &str), ()> = TableDefinition::new("tasks.owned.expiry");
/// Records kept at most (expired ones are swept to make room).
pub const MAX_KEPT: usize = 10_000;
/// Expired records a create removes at most: with more, the next creates take the rest.
pub const SWEEP_PER_CREATE: usize = 64;

/// One gateway-made task as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The principal binding it belongs to.
    pub owner: String,
    pub server: String,
    pub tool: String,
    /// `working`, `completed`, `failed` or `cancelled`.
    pub status: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub ttl_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

impl Record {
    /// When the record goes (ms since the epoch).
    pub fn expiry_ms(&self) -> u64 {
        self.created_ms.saturating_add(self.ttl_ms)
    }

    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expiry_ms()
    }

    pub(crate) fn terminal(&self) -> bool {
        !matches!(self.status.as_str(), "working" | "input_required")
    }
}

/// The store failed, or is full.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task store: {0}")]
    Db(String),
    #[error("too many kept tasks ({0})")]
    Full(usize),
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(error: E) -> Self {
        StoreError::Db(error.into().to_string())
    }
}

fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Db(e.to_string()))
}

/// The `tasks.owned` tables of the shared database.
pub struct Store {
    db: Arc<Db>,
}

impl Store {
    pub fn new(db: Arc<Db>) -> Store {
        Store { db }
    }

    /// Writes a new record (committed on return), after removing expired ones; at the
    /// bound with none expired, [`StoreError::Full`].
    pub fn create(&self, id: &str, record: &Record, now_ms: u64) -> Result<(), StoreError> {
        let bytes = encode(record)?;
        let write = self.db.database().begin_write()?;
        {
            let mut table = write.open_table(TABLE)?;
            let mut index = write.open_table(EXPIRY)?;
            if index.len()? != table.len()? {
                rebuild_index(&mut table, &mut index)?;
            }
            sweep(&mut table, &mut index, now_ms, SWEEP_PER_CREATE)?;
            if table.len()? as usize >= MAX_KEPT {
                return Err(StoreError::Full(MAX_KEPT));
            }
            if let Some(old) = table.insert(id, bytes.as_slice())?
                && let Ok(old) = serde_json::from_slice::<Record>(old.value())
            {
                index.remove((old.expiry_ms(), id))?;
            }
            index.insert((record.expiry_ms(), id), ())?;
        }
        write.commit()?;
        Ok(())
    }

    /// A live record (an expired one is as good as absent).
    pub fn get(&self, id: &str, now_ms: u64) -> Result<Option<Record>, StoreError> {
        let read = self.db.database().begin_read()?;
        let table = match read.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let Some(value) = table.get(id)? else {
            return Ok(None);
        };
        let record: Record =
            serde_json::from_slice(value.value()).map_err(|e| StoreError::Db(e.to_string()))?;
        Ok((!record.expired(now_ms)).then_some(record))
    }

    /// Changes a live, non-terminal record with `change` (committed on return); a
    /// terminal, expired or absent one stays as it is. Returns the record as written.
    /// The expiry is not `change`'s to move (the index keeps it).
    pub fn update(
        &self,
        id: &str,
        now_ms: u64,
        change: impl FnOnce(&mut Record),
    ) -> Result<Option<Record>, StoreError> {
        let write = self.db.database().begin_write()?;
        let written = {
            let mut table = write.open_table(TABLE)?;
            let current = table
                .get(id)?
                .and_then(|value| serde_json::from_slice::<Record>(value.value()).ok());
            match current {
                Some(mut record) if !record.terminal() && !record.expired(now_ms) => {
                    let (created, ttl) = (record.created_ms, record.ttl_ms);
                    change(&mut record);
                    (record.created_ms, record.ttl_ms) = (created, ttl);
                    record.updated_ms = now_ms;
                    table.insert(id, encode(&record)?.as_slice())?;
                    Some(record)
                }
                _ => None,
            }
        };
        write.commit()?;
        Ok(written)
    }

    /// Moves a working record to a terminal status (a terminal one stays as it is).
    pub fn settle(
        &self,
        id: &str,
        status: &str,
        result: Option<Value>,
        error: Option<Value>,
        now_ms: u64,
    ) -> Result<Option<Record>, StoreError> {
        self.update(id, now_ms, |record| {
            record.status = status.to_owned();
            record.result = result;
            record.error = error;
        })
    }
}

/// Removes up to `limit` records whose expiry is at or before `now_ms`, oldest first;
/// returns how many went. Touches only index entries that are expired.
pub(crate) fn sweep(
    table: &mut Table<'_, &str, &[u8]>,
    index: &mut Table<'_, (u64, &str), ()>,
    now_ms: u64,
    limit: usize,
) -> Result<usize, StoreError> {
    let mut gone: Vec<(u64, String)> = Vec::new();
    for entry in index.range(..(now_ms.saturating_add(1), ""))?.take(limit) {
        let (key, _) = entry?;
        let (expiry, id) = key.value();
        gone.push((expiry, id.to_owned()));
    }
    for (expiry, id) in &gone {
        index.remove((*expiry, id.as_str()))?;
        table.remove(id.as_str())?;
    }
    Ok(gone.len())
}

/// Builds the index from the records (a database from before it existed); a record that
/// does not parse is dropped.
fn rebuild_index(
    table: &mut Table<'_, &str, &[u8]>,
    index: &mut Table<'_, (u64, &str), ()>,
) -> Result<(), StoreError> {
    index.retain(|_, ()| false)?;
    let mut entries = Vec::new();
    let mut broken = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        match serde_json::from_slice::<Record>(value.value()) {
            Ok(record) => entries.push((record.expiry_ms(), key.value().to_owned())),
            Err(_) => broken.push(key.value().to_owned()),
        }
    }
    for id in broken {
        table.remove(id.as_str())?;
    }
    for (expiry, id) in entries {
        index.insert((expiry, id.as_str()), ())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(now: u64, ttl_ms: u64) -> Record {
        Record {
            owner: "key:a".into(),
            server: "s".into(),
            tool: "t".into(),
            status: "working".into(),
            created_ms: now,
            updated_ms: now,
            ttl_ms,
            result: None,
            error: None,
        }
    }

    /// Fills the store to `count` records in one transaction (both tables).
    fn fill(store: &Store, count: usize, created_ms: u64, ttl_ms: u64) {
        let write = store.db.database().begin_write().unwrap();
        {
            let mut table = write.open_table(TABLE).unwrap();
            let mut index = write.open_table(EXPIRY).unwrap();
            let bytes = encode(&record(created_ms, ttl_ms)).unwrap();
            for n in 0..count {
                let id = format!("live-{n}");
                table.insert(id.as_str(), bytes.as_slice()).unwrap();
                index
                    .insert((created_ms + ttl_ms, id.as_str()), ())
                    .unwrap();
            }
        }
        write.commit().unwrap();
    }

    fn lengths(store: &Store) -> (u64, u64) {
        let read = store.db.database().begin_read().unwrap();
        let table = read.open_table(TABLE).unwrap();
        let index = read.open_table(EXPIRY).unwrap();
        (table.len().unwrap(), index.len().unwrap())
    }

    #[test]
    fn records_live_settle_and_expire() {
        let store = Store::new(Arc::new(Db::memory()));
        assert_eq!(store.get("x", 0).unwrap(), None);
        store.create("x", &record(1000, 500), 1000).unwrap();
        assert_eq!(store.get("x", 1200).unwrap().unwrap().status, "working");
        store
            .settle("x", "completed", Some(json!({ "content": [] })), None, 1300)
            .unwrap();
        let settled = store.get("x", 1400).unwrap().unwrap();
        assert_eq!(settled.status, "completed");
        // Terminal stays terminal.
        assert_eq!(
            store.settle("x", "cancelled", None, None, 1410).unwrap(),
            None
        );
        assert_eq!(store.get("x", 1420).unwrap().unwrap().status, "completed");
        assert_eq!(store.get("x", 1500).unwrap(), None, "expired with its TTL");
        // The next create removes it from both tables.
        store.create("y", &record(1500, 500), 1500).unwrap();
        assert_eq!(lengths(&store), (1, 1));
    }

    #[test]
    fn a_full_store_creates_by_sweeping_only_what_expired() {
        let store = Store::new(Arc::new(Db::memory()));
        // MAX_KEPT - 3 live records and 3 that expire at 2000.
        fill(&store, MAX_KEPT - 3, 0, 1_000_000);
        for n in 0..3 {
            store
                .create(&format!("old-{n}"), &record(1000, 1000), 1000)
                .unwrap();
        }
        assert_eq!(lengths(&store), (MAX_KEPT as u64, MAX_KEPT as u64));
        // Full, nothing expired: refused, nothing removed.
        assert!(matches!(
            store.create("new-0", &record(1500, 1000), 1500),
            Err(StoreError::Full(MAX_KEPT))
        ));
        assert_eq!(lengths(&store).0, MAX_KEPT as u64);

        // The sweep visits only the expired entries, not the 9,997 live ones.
        let write = store.db.database().begin_write().unwrap();
        {
            let mut table = write.open_table(TABLE).unwrap();
            let mut index = write.open_table(EXPIRY).unwrap();
            assert_eq!(sweep(&mut table, &mut index, 1999, usize::MAX).unwrap(), 0);
            assert_eq!(
                sweep(&mut table, &mut index, 2000, 2).unwrap(),
                2,
                "bounded"
            );
            assert_eq!(sweep(&mut table, &mut index, 2000, usize::MAX).unwrap(), 1);
        }
        write.abort().unwrap(); // the records are back

        // Once they expired, a create at the bound succeeds and the expired ones go.
        store.create("new-1", &record(2000, 1000), 2000).unwrap();
        assert_eq!(lengths(&store), (MAX_KEPT as u64 - 2, MAX_KEPT as u64 - 2));
        for n in 0..3 {
            assert_eq!(store.get(&format!("old-{n}"), 0).unwrap(), None);
        }
        assert!(store.get("new-1", 2000).unwrap().is_some());
        assert!(store.get("live-0", 2000).unwrap().is_some());
    }

    #[test]
    fn an_index_missing_from_an_older_database_is_rebuilt() {
        let store = Store::new(Arc::new(Db::memory()));
        let write = store.db.database().begin_write().unwrap();
        {
            let mut table = write.open_table(TABLE).unwrap();
            let expired = encode(&record(0, 10)).unwrap();
            let live = encode(&record(0, 1_000_000)).unwrap();
            table.insert("expired", expired.as_slice()).unwrap();
            table.insert("live", live.as_slice()).unwrap();
            table.insert("broken", b"not json".as_slice()).unwrap();
        }
        write.commit().unwrap();
        store.create("new", &record(100, 1000), 100).unwrap();
        assert_eq!(lengths(&store), (2, 2));
        assert!(store.get("live", 100).unwrap().is_some());
        assert!(store.get("new", 100).unwrap().is_some());
    }
}
