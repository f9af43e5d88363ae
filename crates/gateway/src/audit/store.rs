//! The audit log's tables in the shared embedded database (`crate::db::Db`, redb):
//!
//! - `audit_records`: seq → the sealed line (`chain.rs`), appended only;
//! - `audit_meta`: `head` (the signed last seq and hash), `base` (after pruning: the signed
//!   first kept seq and the hash before it), and `key:<id>` → each public key that signed.
//!
//! A batch of records and the head that covers them are written in one transaction, so a
//! crash (even `kill -9`) leaves the log at its last commit, whole and verifiable.
//! Readers take one snapshot ([`Snapshot`]), from the gateway's database or, in the CLI,
//! from a read-only handle beside a running gateway.

use std::collections::BTreeMap;

use redb::{ReadableDatabase, ReadableTable as _, ReadableTableMetadata as _, TableDefinition};

use super::chain::{self, Anchor, AnchorKind, GENESIS};
use super::key::AuditKey;

pub(crate) const RECORDS: TableDefinition<'static, u64, &'static [u8]> =
    TableDefinition::new("audit_records");
pub(crate) const META: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("audit_meta");

const HEAD: &str = "head";
const BASE: &str = "base";
const KEY_PREFIX: &str = "key:";

/// The database failed.
#[derive(Debug, thiserror::Error)]
#[error("audit log storage: {0}")]
pub struct StoreError(#[from] redb::Error);

fn fail(error: impl Into<redb::Error>) -> StoreError {
    StoreError(error.into())
}

/// Where the chain goes on: the next seq, the hash it chains to, the first kept seq.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tip {
    pub next: u64,
    pub prev: [u8; 32],
    pub first: u64,
}

/// Creates the tables, registers `key`'s public key and finds where the chain goes on.
pub(crate) fn prepare(db: &redb::Database, key: &AuditKey) -> Result<Tip, StoreError> {
    let tx = db.begin_write().map_err(fail)?;
    let tip = {
        let records = tx.open_table(RECORDS).map_err(fail)?;
        let mut meta = tx.open_table(META).map_err(fail)?;
        let name = format!("{KEY_PREFIX}{}", key.id());
        if meta.get(name.as_str()).map_err(fail)?.is_none() {
            meta.insert(name.as_str(), key.public().as_slice())
                .map_err(fail)?;
        }
        let anchor = |name: &str| -> Result<Option<Anchor>, StoreError> {
            Ok(meta
                .get(name)
                .map_err(fail)?
                .and_then(|value| Anchor::from_bytes(value.value())))
        };
        let head = anchor(HEAD)?;
        let base = anchor(BASE)?;
        let first = match (&base, records.first().map_err(fail)?) {
            (Some(base), _) => base.seq,
            (None, Some((seq, _))) => seq.value(),
            (None, None) => 1,
        };
        match head.as_ref().and_then(|h| Some((h.seq, h.hash()?))) {
            Some((seq, hash)) => Tip {
                next: seq + 1,
                prev: hash,
                first,
            },
            None => match records.last().map_err(fail)? {
                Some((seq, line)) => {
                    // No signed head over existing records: the log was tampered with (or
                    // written by something else). Go on from the last record; verify names it.
                    tracing::error!(
                        seq = seq.value(),
                        "audit log has records but no signed head; chaining on from the last record"
                    );
                    let hash = chain::open(line.value()).map_or(GENESIS, |opened| opened.hash);
                    Tip {
                        next: seq.value() + 1,
                        prev: hash,
                        first,
                    }
                }
                None => Tip {
                    next: first,
                    prev: base.as_ref().and_then(Anchor::hash).unwrap_or(GENESIS),
                    first,
                },
            },
        }
    };
    tx.commit().map_err(fail)?;
    Ok(tip)
}

/// Appends sealed `lines` (consecutive seqs) and their head in one transaction; beyond
/// `keep` records, prunes the oldest (to 1/64 below `keep`, so pruning runs once every
/// `keep / 64` records) and signs the new base. Returns the first kept seq.
pub(crate) fn append(
    db: &redb::Database,
    key: &AuditKey,
    lines: &[(u64, Vec<u8>)],
    head: &Anchor,
    first: u64,
    keep: u64,
) -> Result<u64, StoreError> {
    let tx = db.begin_write().map_err(fail)?;
    let mut first = first;
    {
        let mut records = tx.open_table(RECORDS).map_err(fail)?;
        for (seq, line) in lines {
            records.insert(*seq, line.as_slice()).map_err(fail)?;
        }
        let mut meta = tx.open_table(META).map_err(fail)?;
        meta.insert(HEAD, head.to_bytes().as_slice())
            .map_err(fail)?;
        let last = head.seq;
        if last >= first && last - first + 1 > keep {
            let new_first = last + 1 - keep.saturating_sub(keep / 64).max(1);
            let before = records
                .get(new_first - 1)
                .map_err(fail)?
                .and_then(|line| chain::open(line.value()).ok())
                .map(|opened| opened.hash);
            if let Some(before) = before {
                records
                    .retain_in(first..new_first, |_, _| false)
                    .map_err(fail)?;
                let base = Anchor::sign(key, AnchorKind::Base, new_first, &before);
                meta.insert(BASE, base.to_bytes().as_slice())
                    .map_err(fail)?;
                tracing::info!(
                    pruned = new_first - first,
                    first = new_first,
                    "audit log: oldest records pruned (max_records)"
                );
                first = new_first;
            }
        }
    }
    tx.commit().map_err(fail)?;
    Ok(first)
}

/// One consistent view of the log.
pub struct Snapshot {
    tx: redb::ReadTransaction,
}

impl Snapshot {
    /// A snapshot of `db` (the gateway's database, or a read-only handle).
    pub fn of(db: &impl ReadableDatabase) -> Result<Snapshot, StoreError> {
        Ok(Snapshot {
            tx: db.begin_read().map_err(fail)?,
        })
    }

    fn records(&self) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>, StoreError> {
        match self.tx.open_table(RECORDS) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(fail(error)),
        }
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.tx.open_table(META) {
            Ok(table) => Ok(table.get(name).map_err(fail)?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(fail(error)),
        }
    }

    /// The signed head; `None` for a log never written (or one whose head was removed).
    pub fn head(&self) -> Result<Option<Anchor>, StoreError> {
        Ok(self.meta(HEAD)?.and_then(|b| Anchor::from_bytes(&b)))
    }

    /// The signed base, once records were pruned.
    pub fn base(&self) -> Result<Option<Anchor>, StoreError> {
        Ok(self.meta(BASE)?.and_then(|b| Anchor::from_bytes(&b)))
    }

    /// Every public key that signed, by id.
    pub fn keys(&self) -> Result<BTreeMap<String, [u8; 32]>, StoreError> {
        let table = match self.tx.open_table(META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(error) => return Err(fail(error)),
        };
        let mut keys = BTreeMap::new();
        for entry in table.range(KEY_PREFIX..).map_err(fail)? {
            let (name, value) = entry.map_err(fail)?;
            let Some(id) = name.value().strip_prefix(KEY_PREFIX) else {
                break;
            };
            if let Ok(public) = <[u8; 32]>::try_from(value.value()) {
                keys.insert(id.to_owned(), public);
            }
        }
        Ok(keys)
    }

    /// How many records are stored.
    pub fn len(&self) -> Result<u64, StoreError> {
        match self.records()? {
            Some(table) => table.len().map_err(fail),
            None => Ok(0),
        }
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Records from `from` on, in order, as (seq as stored, line).
    pub fn from(
        &self,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + use<>, StoreError> {
        let range = match self.records()? {
            Some(table) => Some(table.range(from..).map_err(fail)?),
            None => None,
        };
        Ok(range.into_iter().flatten().map(|entry| {
            entry
                .map(|(seq, line)| (seq.value(), line.value().to_vec()))
                .map_err(fail)
        }))
    }

    /// Records before `before` (all when `None`), newest first.
    pub fn newest_first(
        &self,
        before: Option<u64>,
    ) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + use<>, StoreError> {
        let range = match self.records()? {
            Some(table) => Some(
                table
                    .range(..before.unwrap_or(u64::MAX))
                    .map_err(fail)?
                    .rev(),
            ),
            None => None,
        };
        Ok(range.into_iter().flatten().map(|entry| {
            entry
                .map(|(seq, line)| (seq.value(), line.value().to_vec()))
                .map_err(fail)
        }))
    }

    /// The last `count` records, oldest first.
    pub fn last(&self, count: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut lines = self
            .newest_first(None)?
            .take(count)
            .collect::<Result<Vec<_>, _>>()?;
        lines.reverse();
        Ok(lines)
    }
}
