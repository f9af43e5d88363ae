//! Chat memory: the newest messages of each conversation, in the embedded database's
//! `agent.conversations` table, keyed by (principal, conversation id) — or, with
//! `[cluster]`, in the shared Redis (`cluster::memory`, same bounds and isolation, plus
//! a TTL), so a conversation continues on any replica. The principal is
//! part of the key, so another principal's conversation is simply absent: it reads as
//! "not found", exactly like an id nobody used. Writes are acknowledged after `commit()`.
//!
//! Bounds: `memory_messages` per conversation (the oldest drop out), `MAX_PER_PRINCIPAL`
//! conversations per principal (the least recently updated is dropped for a new one),
//! `MAX_MESSAGE_BYTES` of text per stored message.

use std::sync::Arc;

use redb::{ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde_json::{Value, json};

use crate::db::Db;

const TABLE: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("agent.conversations");

/// Conversations kept per principal.
pub const MAX_PER_PRINCIPAL: usize = 100;
/// Text kept per message, in bytes (cut on a character boundary).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Longest conversation id.
pub const MAX_ID_LEN: usize = 128;

/// The store failed.
#[derive(Debug, thiserror::Error)]
#[error("conversation store: {0}")]
pub struct MemoryError(String);

fn failed(error: impl std::fmt::Display) -> MemoryError {
    MemoryError(error.to_string())
}

/// Whether `id` may name a conversation: 1–128 of `[A-Za-z0-9_.:-]`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// One stored message: `role` is `user` or `assistant`.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_owned(),
            content: crate::agent::cut(content, MAX_MESSAGE_BYTES).to_owned(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "role": self.role, "content": self.content })
    }

    /// A message from its stored JSON (`to_json`); what does not parse reads as empty.
    pub(crate) fn decode(text: &str) -> Message {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        Message::from_value(&value)
    }

    fn from_value(value: &Value) -> Message {
        Message {
            role: value["role"].as_str().unwrap_or_default().to_owned(),
            content: value["content"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

/// The conversations of every principal.
#[derive(Clone)]
pub struct Memory {
    store: Store,
    keep: usize,
}

/// Where conversations live.
#[derive(Clone)]
enum Store {
    Embedded(Arc<Db>),
    Shared(Arc<crate::cluster::memory::SharedMemory>),
}

impl From<crate::cluster::pool::Unavailable> for MemoryError {
    fn from(error: crate::cluster::pool::Unavailable) -> MemoryError {
        failed(error)
    }
}

impl Memory {
    pub fn new(db: Arc<Db>, keep: usize) -> Memory {
        Memory {
            store: Store::Embedded(db),
            keep,
        }
    }

    /// Conversations in the cluster's Redis.
    pub fn shared(shared: Arc<crate::cluster::memory::SharedMemory>, keep: usize) -> Memory {
        Memory {
            store: Store::Shared(shared),
            keep,
        }
    }

    /// The conversation's messages, oldest first; `None`: no such conversation for
    /// this principal.
    pub async fn load(
        &self,
        principal: &str,
        id: &str,
    ) -> Result<Option<Vec<Message>>, MemoryError> {
        let db = match &self.store {
            Store::Embedded(db) => db.clone(),
            Store::Shared(shared) => return Ok(shared.load(principal, id).await?),
        };
        let (principal, id) = (principal.to_owned(), id.to_owned());
        tokio::task::spawn_blocking(move || read(&db, &principal, &id))
            .await
            .map_err(failed)?
    }

    /// Appends `messages` to the conversation (created if new), keeping the newest.
    pub async fn append(
        &self,
        principal: &str,
        id: &str,
        messages: Vec<Message>,
    ) -> Result<(), MemoryError> {
        if self.keep == 0 {
            return Ok(());
        }
        let (db, keep) = match &self.store {
            Store::Embedded(db) => (db.clone(), self.keep),
            Store::Shared(shared) => {
                return Ok(shared.append(principal, id, &messages, self.keep).await?);
            }
        };
        let (principal, id) = (principal.to_owned(), id.to_owned());
        tokio::task::spawn_blocking(move || write(&db, &principal, &id, messages, keep))
            .await
            .map_err(failed)?
    }

    /// Deletes the conversation; `false`: there was none for this principal.
    pub async fn delete(&self, principal: &str, id: &str) -> Result<bool, MemoryError> {
        let db = match &self.store {
            Store::Embedded(db) => db.clone(),
            Store::Shared(shared) => return Ok(shared.delete(principal, id).await?),
        };
        let (principal, id) = (principal.to_owned(), id.to_owned());
        tokio::task::spawn_blocking(move || {
            let tx = db.database().begin_write().map_err(failed)?;
            let removed = {
                let mut table = tx.open_table(TABLE).map_err(failed)?;
                table
                    .remove((principal.as_str(), id.as_str()))
                    .map_err(failed)?
                    .is_some()
            };
            tx.commit().map_err(failed)?;
            Ok(removed)
        })
        .await
        .map_err(failed)?
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn decode(bytes: &[u8]) -> (u64, Vec<Message>) {
    let value: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let updated = value["updated_ms"].as_u64().unwrap_or(0);
    let messages = value["messages"]
        .as_array()
        .map(|list| list.iter().map(Message::from_value).collect())
        .unwrap_or_default();
    (updated, messages)
}

fn read(db: &Db, principal: &str, id: &str) -> Result<Option<Vec<Message>>, MemoryError> {
    let tx = db.database().begin_read().map_err(failed)?;
    let table = match tx.open_table(TABLE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(failed(error)),
    };
    Ok(table
        .get((principal, id))
        .map_err(failed)?
        .map(|bytes| decode(bytes.value()).1))
}

fn write(
    db: &Db,
    principal: &str,
    id: &str,
    messages: Vec<Message>,
    keep: usize,
) -> Result<(), MemoryError> {
    let tx = db.database().begin_write().map_err(failed)?;
    {
        let mut table = tx.open_table(TABLE).map_err(failed)?;
        let existing = table
            .get((principal, id))
            .map_err(failed)?
            .map(|bytes| decode(bytes.value()).1);
        let is_new = existing.is_none();
        let mut all = existing.unwrap_or_default();
        all.extend(messages);
        if all.len() > keep {
            all.drain(..all.len() - keep);
        }
        if is_new {
            // Room for a new conversation: drop this principal's stalest beyond the bound.
            let mut mine = Vec::new();
            for row in table.range((principal, "")..).map_err(failed)? {
                let (key, value) = row.map_err(failed)?;
                let (owner, conversation) = key.value();
                if owner != principal {
                    break;
                }
                mine.push((decode(value.value()).0, conversation.to_owned()));
            }
            if mine.len() >= MAX_PER_PRINCIPAL {
                mine.sort();
                let excess = mine.len() + 1 - MAX_PER_PRINCIPAL;
                for (_, conversation) in mine.into_iter().take(excess) {
                    table
                        .remove((principal, conversation.as_str()))
                        .map_err(failed)?;
                }
            }
        }
        let body = json!({
            "updated_ms": now_ms(),
            "messages": all.iter().map(Message::to_json).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&body).map_err(failed)?;
        table
            .insert((principal, id), bytes.as_slice())
            .map_err(failed)?;
    }
    tx.commit().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata as _;

    #[tokio::test]
    async fn keeps_the_newest_and_isolates_principals() {
        let memory = Memory::new(Arc::new(Db::memory()), 3);
        for n in 0..5 {
            memory
                .append("alice", "c1", vec![Message::new("user", &format!("m{n}"))])
                .await
                .unwrap();
        }
        let kept = memory.load("alice", "c1").await.unwrap().unwrap();
        let texts: Vec<&str> = kept.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["m2", "m3", "m4"]);
        assert_eq!(memory.load("bob", "c1").await.unwrap(), None);
        assert!(!memory.delete("bob", "c1").await.unwrap());
        assert!(memory.delete("alice", "c1").await.unwrap());
        assert_eq!(memory.load("alice", "c1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn conversations_per_principal_are_bounded() {
        let memory = Memory::new(Arc::new(Db::memory()), 2);
        for n in 0..=MAX_PER_PRINCIPAL {
            memory
                .append("p", &format!("c{n:04}"), vec![Message::new("user", "x")])
                .await
                .unwrap();
        }
        let Store::Embedded(db) = memory.store.clone() else {
            unreachable!("an embedded memory")
        };
        let count = tokio::task::spawn_blocking(move || {
            let tx = db.database().begin_read().unwrap();
            let table = tx.open_table(TABLE).unwrap();
            table.len().unwrap()
        })
        .await
        .unwrap();
        assert_eq!(count as usize, MAX_PER_PRINCIPAL);
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("chat-1.a:b_c"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"x".repeat(MAX_ID_LEN + 1)));
    }
}
