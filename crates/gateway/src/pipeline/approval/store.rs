//! Approvals in the shared embedded database (`approvals` table: id → JSON entry), so a
//! granted approval survives a restart and single use holds across concurrent retries:
//! each change is one redb write transaction (serialised), and a caller goes on only after
//! `commit()` returned. The table holds at most `max_approvals` entries (pending, granted,
//! used, denied, expired); a new one over the bound is refused once expired entries made no
//! room. Entries stay one more expiry period after they expire (marked expired by the
//! sweep), so a late retry or a replay is told "expired" or "already used", not "unknown".

use std::sync::Arc;

use redb::{
    ReadableDatabase as _, ReadableTable as _, ReadableTableMetadata as _, TableDefinition,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::binding::{Binding, Mismatch};
use crate::db::Db;

const TABLE: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("approvals");

/// Where an approval stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved {
        by: String,
    },
    Denied {
        by: String,
        reason: Option<String>,
    },
    /// Approved by `by`, then used by its call (once).
    Used {
        by: String,
    },
    /// Expired while pending or granted (kept a while so a late retry is told so).
    Expired,
}

impl State {
    pub fn label(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved { .. } => "approved",
            State::Denied { .. } => "denied",
            State::Used { .. } => "used",
            State::Expired => "expired",
        }
    }
}

/// How the approval is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// A modern client's user, through `input_required` (MRTR).
    Mrtr,
    /// A legacy client's user, through `elicitation/create`.
    Elicitation,
    /// Out of band: the admin API (and the webhook).
    Admin,
}

/// One approval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub binding: Binding,
    /// The caller's name as the audit log shows it (`Principal::id`).
    pub caller: String,
    pub tenant: Option<String>,
    /// The arguments, for the approver to see.
    pub arguments: Value,
    /// The rule that asked for it (`approvals.rules[0]`).
    pub rule: String,
    pub channel: Channel,
    #[serde(flatten)]
    pub state: State,
    pub created_ms: u64,
    pub expires_ms: u64,
}

impl Entry {
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_ms
    }
}

/// The database failed.
#[derive(Debug, thiserror::Error)]
#[error("approval store: {0}")]
pub struct StoreError(String);

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(error: E) -> Self {
        StoreError(error.into().to_string())
    }
}

/// Why an approval cannot be used (or decided).
#[derive(Debug, thiserror::Error)]
pub enum UseError {
    #[error("no such approval")]
    Unknown,
    #[error("the approval expired")]
    Expired,
    #[error("the approval does not cover this call: {}", .0.describe())]
    Mismatch(Mismatch),
    #[error("the approval is still pending")]
    Pending,
    #[error("the approval was denied by {by}{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Denied { by: String, reason: Option<String> },
    #[error("the approval was already used")]
    Used,
    #[error("the approval was already decided ({0})")]
    Decided(&'static str),
    #[error("too many approvals ({0}): try again once some are decided or expired")]
    Full(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UseError {
    /// The `status` a client's error and the audit record carry.
    pub fn status(&self) -> &'static str {
        match self {
            UseError::Unknown => "unknown",
            UseError::Expired => "expired",
            UseError::Mismatch(_) => "mismatch",
            UseError::Pending => "pending",
            UseError::Denied { .. } => "denied",
            UseError::Used => "used",
            UseError::Decided(_) => "decided",
            UseError::Full(_) => "full",
            UseError::Store(_) => "unavailable",
        }
    }
}

/// The `approvals` table (a handle on the shared database: clones are the same table).
#[derive(Clone)]
pub struct Store {
    db: Arc<Db>,
}

impl Store {
    /// Runs `operation` on the blocking pool: a write commits to the disk and must not
    /// hold a runtime thread.
    pub async fn blocking<T, E>(
        &self,
        operation: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || operation(&store))
            .await
            .unwrap_or_else(|error| Err(StoreError(format!("interrupted: {error}")).into()))
    }

    pub fn new(db: Arc<Db>) -> Store {
        Store { db }
    }

    fn decode(bytes: &[u8]) -> Option<Entry> {
        serde_json::from_slice(bytes).ok()
    }

    /// Adds a new entry, unless `max` entries are live; expired ones are removed first and
    /// handed back (to be audited as expired).
    pub fn create(&self, entry: &Entry, max: usize, now_ms: u64) -> Result<Vec<Entry>, UseError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StoreError(e.to_string()))?;
        let tx = self.db.database().begin_write().map_err(StoreError::from)?;
        let mut expired = Vec::new();
        {
            let mut table = tx.open_table(TABLE).map_err(StoreError::from)?;
            if table.len().map_err(StoreError::from)? as usize >= max {
                expired = take_expired(&mut table, now_ms)?;
                if table.len().map_err(StoreError::from)? as usize >= max {
                    return Err(UseError::Full(max));
                }
            }
            table
                .insert(entry.id.as_str(), bytes.as_slice())
                .map_err(StoreError::from)?;
        }
        tx.commit().map_err(StoreError::from)?;
        Ok(expired)
    }

    pub fn get(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        let tx = self.db.database().begin_read()?;
        let table = match tx.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        Ok(table
            .get(id)?
            .and_then(|bytes| Store::decode(bytes.value())))
    }

    /// Every live entry, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, StoreError> {
        let tx = self.db.database().begin_read()?;
        let table = match tx.open_table(TABLE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        let mut entries = Vec::new();
        for row in table.iter()? {
            let (_, bytes) = row?;
            if let Some(entry) = Store::decode(bytes.value()) {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        Ok(entries)
    }

    /// Changes one entry in one transaction: `change` sees it (an unknown id is
    /// [`UseError::Unknown`]) and returns its new state, or why not; committed before
    /// this returns the entry as written.
    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&Entry) -> Result<State, UseError>,
    ) -> Result<Entry, UseError> {
        let tx = self.db.database().begin_write().map_err(StoreError::from)?;
        let entry = {
            let mut table = tx.open_table(TABLE).map_err(StoreError::from)?;
            let mut entry = table
                .get(id)
                .map_err(StoreError::from)?
                .and_then(|bytes| Store::decode(bytes.value()))
                .ok_or(UseError::Unknown)?;
            entry.state = change(&entry)?;
            let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError(e.to_string()))?;
            table
                .insert(id, bytes.as_slice())
                .map_err(StoreError::from)?;
            entry
        };
        tx.commit().map_err(StoreError::from)?;
        Ok(entry)
    }

    /// An approver's decision on a pending approval.
    pub fn decide(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        reason: Option<String>,
        now_ms: u64,
    ) -> Result<Entry, UseError> {
        self.update(id, |entry| {
            if entry.is_expired(now_ms) {
                return Err(UseError::Expired);
            }
            match &entry.state {
                State::Pending if approve => Ok(State::Approved { by: by.to_owned() }),
                State::Pending => Ok(State::Denied {
                    by: by.to_owned(),
                    reason,
                }),
                State::Expired => Err(UseError::Expired),
                other => Err(UseError::Decided(other.label())),
            }
        })
    }

    /// Uses a granted approval for the call `binding` describes: once.
    pub fn consume(&self, id: &str, binding: &Binding, now_ms: u64) -> Result<Entry, UseError> {
        self.update(id, |entry| {
            usable(entry, binding, now_ms)?;
            match &entry.state {
                State::Approved { by } => Ok(State::Used { by: by.clone() }),
                State::Pending => Err(UseError::Pending),
                State::Denied { by, reason } => Err(UseError::Denied {
                    by: by.clone(),
                    reason: reason.clone(),
                }),
                State::Used { .. } => Err(UseError::Used),
                State::Expired => Err(UseError::Expired),
            }
        })
    }

    /// The calling user's own answer to a pending in-band approval of this call: approved
    /// and used at once, or denied. (An approval an administrator already granted is used
    /// as it is.)
    pub fn answer(
        &self,
        id: &str,
        binding: &Binding,
        approve: bool,
        by: &str,
        now_ms: u64,
    ) -> Result<Entry, UseError> {
        self.update(id, |entry| {
            usable(entry, binding, now_ms)?;
            match &entry.state {
                State::Pending if approve => Ok(State::Used { by: by.to_owned() }),
                State::Pending => Ok(State::Denied {
                    by: by.to_owned(),
                    reason: None,
                }),
                State::Approved { by } => Ok(State::Used { by: by.clone() }),
                State::Denied { by, reason } => Err(UseError::Denied {
                    by: by.clone(),
                    reason: reason.clone(),
                }),
                State::Used { .. } => Err(UseError::Used),
                State::Expired => Err(UseError::Expired),
            }
        })
    }

    /// Marks entries that expired while pending or granted as expired (returned, to be
    /// audited), and removes entries expired for longer than `keep_ms`.
    pub fn sweep(&self, now_ms: u64, keep_ms: u64) -> Result<Vec<Entry>, StoreError> {
        let tx = self.db.database().begin_write()?;
        let mut expired = Vec::new();
        {
            let mut table = tx.open_table(TABLE)?;
            let mut remove = Vec::new();
            let mut mark = Vec::new();
            for row in table.iter()? {
                let (id, bytes) = row?;
                let Some(entry) = Store::decode(bytes.value()) else {
                    remove.push(id.value().to_owned());
                    continue;
                };
                if now_ms >= entry.expires_ms.saturating_add(keep_ms) {
                    remove.push(entry.id);
                } else if entry.is_expired(now_ms)
                    && matches!(entry.state, State::Pending | State::Approved { .. })
                {
                    mark.push(entry);
                }
            }
            for id in remove {
                table.remove(id.as_str())?;
            }
            for mut entry in mark {
                expired.push(entry.clone());
                entry.state = State::Expired;
                let bytes = serde_json::to_vec(&entry).map_err(|e| StoreError(e.to_string()))?;
                table.insert(entry.id.as_str(), bytes.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(expired)
    }
}

/// Whether `binding`'s call may use `entry` at all (its state aside).
fn usable(entry: &Entry, binding: &Binding, now_ms: u64) -> Result<(), UseError> {
    // Another caller learns nothing about the approval, not even that it expired.
    if entry.binding.principal != binding.principal {
        return Err(UseError::Mismatch(Mismatch::Principal));
    }
    if entry.is_expired(now_ms) {
        return Err(UseError::Expired);
    }
    match entry.binding.mismatch(binding) {
        Some(mismatch) => Err(UseError::Mismatch(mismatch)),
        None => Ok(()),
    }
}

/// Removes every expired entry (to make room); returns those that expired unused.
fn take_expired(
    table: &mut redb::Table<'_, &str, &[u8]>,
    now_ms: u64,
) -> Result<Vec<Entry>, UseError> {
    let mut expired = Vec::new();
    let mut ids = Vec::new();
    for row in table.iter().map_err(StoreError::from)? {
        let (id, bytes) = row.map_err(StoreError::from)?;
        match Store::decode(bytes.value()) {
            Some(entry) if entry.is_expired(now_ms) => {
                ids.push(id.value().to_owned());
                if matches!(entry.state, State::Pending | State::Approved { .. }) {
                    expired.push(entry);
                }
            }
            Some(_) => {}
            // Unreadable (a format from another version): dropped.
            None => ids.push(id.value().to_owned()),
        }
    }
    for id in ids {
        table.remove(id.as_str()).map_err(StoreError::from)?;
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(id: &str, expires_ms: u64) -> Entry {
        Entry {
            id: id.into(),
            binding: Binding::new("key:alice", "fx", "fx__add", Some(&json!({"a": 1})), "v1"),
            caller: "key:alice".into(),
            tenant: None,
            arguments: json!({"a": 1}),
            rule: "approvals.rules[0]".into(),
            channel: Channel::Admin,
            state: State::Pending,
            created_ms: 0,
            expires_ms,
        }
    }

    #[test]
    fn an_approval_is_used_once_by_its_own_call() {
        let store = Store::new(Arc::new(Db::memory()));
        store.create(&entry("a", 1000), 10, 0).unwrap();
        let call = entry("a", 1000).binding;
        assert!(matches!(
            store.consume("a", &call, 1),
            Err(UseError::Pending)
        ));
        store.decide("a", true, "admin", None, 1).unwrap();
        assert!(matches!(
            store.decide("a", false, "admin", None, 1),
            Err(UseError::Decided("approved"))
        ));
        let mut other = call.clone();
        other.principal = "key:bob".into();
        assert!(matches!(
            store.consume("a", &other, 2),
            Err(UseError::Mismatch(Mismatch::Principal))
        ));
        let mut changed = call.clone();
        changed.arguments_sha256 = "00".into();
        assert!(matches!(
            store.consume("a", &changed, 2),
            Err(UseError::Mismatch(Mismatch::Arguments))
        ));
        let used = store.consume("a", &call, 2).unwrap();
        assert_eq!(used.state, State::Used { by: "admin".into() });
        assert!(matches!(store.consume("a", &call, 3), Err(UseError::Used)));
        assert!(matches!(
            store.consume("b", &call, 3),
            Err(UseError::Unknown)
        ));
    }

    #[test]
    fn expiry_denial_and_the_bound() {
        let store = Store::new(Arc::new(Db::memory()));
        store.create(&entry("a", 100), 2, 0).unwrap();
        store.create(&entry("b", 1000), 2, 0).unwrap();
        assert!(matches!(
            store.create(&entry("c", 1000), 2, 50),
            Err(UseError::Full(2))
        ));
        let call = entry("a", 0).binding;
        store
            .decide("b", false, "admin", Some("no".into()), 50)
            .unwrap();
        assert!(matches!(
            store.consume("b", &call, 60),
            Err(UseError::Denied { reason: Some(ref r), .. }) if r == "no"
        ));
        store.decide("a", true, "admin", None, 50).unwrap();
        assert!(matches!(
            store.consume("a", &call, 100),
            Err(UseError::Expired)
        ));
        // Over the bound, the expired entry makes room (and is handed back).
        let expired = store.create(&entry("c", 1000), 2, 150).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, "a");
        assert_eq!(store.list().unwrap().len(), 2);
        // b was denied: only c expires unused; both stay, marked, for `keep`.
        let expired = store.sweep(1000, 500).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, "c");
        assert_eq!(store.get("c").unwrap().unwrap().state, State::Expired);
        assert!(matches!(
            store.consume("c", &call, 1200),
            Err(UseError::Expired)
        ));
        assert!(store.sweep(1200, 500).unwrap().is_empty());
        assert_eq!(store.list().unwrap().len(), 2);
        assert!(store.sweep(1500, 500).unwrap().is_empty());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn the_callers_answer_approves_and_uses_at_once() {
        let store = Store::new(Arc::new(Db::memory()));
        store.create(&entry("a", 1000), 10, 0).unwrap();
        store.create(&entry("b", 1000), 10, 0).unwrap();
        let call = entry("a", 0).binding;
        let used = store.answer("a", &call, true, "key:alice", 1).unwrap();
        assert_eq!(
            used.state,
            State::Used {
                by: "key:alice".into()
            }
        );
        assert!(matches!(
            store.answer("a", &call, true, "key:alice", 1),
            Err(UseError::Used)
        ));
        store.answer("b", &call, false, "key:alice", 1).unwrap();
        assert!(matches!(
            store.consume("b", &call, 1),
            Err(UseError::Denied { .. })
        ));
    }
}
