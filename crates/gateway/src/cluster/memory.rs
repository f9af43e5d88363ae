//! The router agent's chat memory on the shared Redis (`[cluster]`), so a conversation
//! continues on any replica. One list per (principal, conversation) holds the newest
//! `memory_messages` messages as JSON, and expires `memory_ttl` after its last message;
//! a sorted set per principal indexes its conversations by last update, so a principal
//! keeps at most [`MAX_PER_PRINCIPAL`](crate::agent::memory::MAX_PER_PRINCIPAL) (the
//! stalest is dropped for a new one), as in the embedded store.
//!
//! Isolation: the principal is part of every key, length-prefixed
//! (`{prefix}:conv:{len}:{principal}:{id}`), so no principal id and conversation id can
//! spell another principal's key; another principal's conversation reads as absent.
//! Every write is one Lua script (atomic on the Redis side).

use std::sync::Arc;
use std::time::Duration;

use super::pool::{Pool, Unavailable};
use crate::agent::memory::{MAX_PER_PRINCIPAL, Message};

/// KEYS[1] the conversation's list, KEYS[2] the principal's index; ARGV[1] messages kept,
/// ARGV[2] TTL in ms, ARGV[3] now in ms, ARGV[4] conversations kept per principal,
/// ARGV[5] the conversation id, ARGV[6] the principal's key prefix, ARGV[7..] messages.
const APPEND: &str = r"
for i = 7, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], now, ARGV[5])
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local stale = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #stale, 2 do redis.call('DEL', ARGV[6] .. stale[i]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
";

/// The conversations of every principal, in Redis.
#[derive(Debug)]
pub struct SharedMemory {
    pool: Arc<Pool>,
    ttl: Duration,
    append: redis::Script,
}

impl SharedMemory {
    pub fn new(pool: Arc<Pool>, ttl: Duration) -> SharedMemory {
        SharedMemory {
            pool,
            ttl,
            append: redis::Script::new(APPEND),
        }
    }

    /// The prefix of `principal`'s conversation keys.
    fn principal_prefix(&self, principal: &str) -> String {
        format!("{}:conv:{}:{principal}:", self.pool.prefix, principal.len())
    }

    fn index(&self, principal: &str) -> String {
        format!("{}:convs:{}:{principal}", self.pool.prefix, principal.len())
    }

    /// The conversation's messages, oldest first; `None`: none for this principal.
    pub async fn load(
        &self,
        principal: &str,
        id: &str,
    ) -> Result<Option<Vec<Message>>, Unavailable> {
        let key = format!("{}{id}", self.principal_prefix(principal));
        let stored: Vec<String> = self
            .pool
            .run(|mut manager| async move {
                redis::cmd("LRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut manager)
                    .await
            })
            .await?;
        if stored.is_empty() {
            return Ok(None);
        }
        Ok(Some(stored.iter().map(|m| Message::decode(m)).collect()))
    }

    /// Appends `messages`, keeping the newest `keep`.
    pub async fn append(
        &self,
        principal: &str,
        id: &str,
        messages: &[Message],
        keep: usize,
    ) -> Result<(), Unavailable> {
        let prefix = self.principal_prefix(principal);
        let list = format!("{prefix}{id}");
        let index = self.index(principal);
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let encoded: Vec<String> = messages.iter().map(|m| m.to_json().to_string()).collect();
        let _: i64 = self
            .pool
            .run(|mut manager| async move {
                let mut invocation = self.append.key(list);
                invocation
                    .key(index)
                    .arg(keep)
                    .arg(ttl_ms)
                    .arg(now_ms)
                    .arg(MAX_PER_PRINCIPAL)
                    .arg(id)
                    .arg(prefix);
                for message in &encoded {
                    invocation.arg(message);
                }
                invocation.invoke_async(&mut manager).await
            })
            .await?;
        Ok(())
    }

    /// Deletes the conversation; `false`: there was none for this principal.
    pub async fn delete(&self, principal: &str, id: &str) -> Result<bool, Unavailable> {
        let list = format!("{}{id}", self.principal_prefix(principal));
        let index = self.index(principal);
        let (removed, _): (i64, i64) = self
            .pool
            .run(|mut manager| async move {
                redis::pipe()
                    .atomic()
                    .cmd("DEL")
                    .arg(list)
                    .cmd("ZREM")
                    .arg(index)
                    .arg(id)
                    .query_async(&mut manager)
                    .await
            })
            .await?;
        Ok(removed > 0)
    }
}
