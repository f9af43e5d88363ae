//! [`RedisStore`]: the registry's durable state in the shared Redis, so every replica
//! sees the same runtime registrations, versions and approvals. Keys (under the prefix
//! `p`):
//!
//! - `p:registered` (hash): server → its definition (JSON);
//! - `p:versions:{server}` (hash): version → a `StoredVersion` (JSON);
//! - `p:order:{server}` (sorted set, score = version) and `p:recorded:{server}` (hash:
//!   version → recorded-at ms), so pruning reads no lists;
//! - `p:heads` (hash): server → newest version; `p:approved` (hash): server → approved.
//!
//! Every write is one Lua script — applied whole or not at all — that also publishes an
//! event on `p:events`, so a change and its announcement cannot come apart. A write
//! returns only after Redis answered it; how durable that is across a Redis restart is
//! Redis's persistence setting (AOF `appendfsync always` for the strictest).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::link::Link;
use crate::registry::RegistryStore;
use crate::registry::store::{Retention, StoreError, StoredVersion};

/// What an event on the channel says changed.
pub(crate) const ROSTER: &str = "roster";
pub(crate) const VERSION: &str = "version";
pub(crate) const APPROVAL: &str = "approval";

/// The registry's state in Redis.
#[derive(Debug)]
pub struct RedisStore {
    link: Arc<Link>,
    prefix: String,
    replica: String,
}

const PUT_REGISTERED: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

const REMOVE_REGISTERED: &str = r"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed > 0 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return removed
";

const APPROVE: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
";

// KEYS: versions, order, recorded, heads, approved.
// ARGV: server, version, json, recorded_at, approve (0/1), max_versions, min_recorded_at,
// channel, event. Prunes oldest first while over the count or older than the age,
// sparing the approved version and the one just written (as the redb store does).
const APPEND: &str = r"
local server, number = ARGV[1], ARGV[2]
local version = tonumber(number)
redis.call('HSET', KEYS[1], number, ARGV[3])
redis.call('ZADD', KEYS[2], version, number)
redis.call('HSET', KEYS[3], number, ARGV[4])
local head = tonumber(redis.call('HGET', KEYS[4], server) or '0')
if version >= head then redis.call('HSET', KEYS[4], server, number) end
if ARGV[5] == '1' then redis.call('HSET', KEYS[5], server, number) end
local keep = redis.call('HGET', KEYS[5], server)
local older = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. number)
local count = #older + 1
local max, min_at = tonumber(ARGV[6]), tonumber(ARGV[7])
for _, old in ipairs(older) do
  if old ~= keep then
    local at = tonumber(redis.call('HGET', KEYS[3], old) or '0')
    if count > max or at < min_at then
      redis.call('HDEL', KEYS[1], old)
      redis.call('ZREM', KEYS[2], old)
      redis.call('HDEL', KEYS[3], old)
      count = count - 1
    end
  end
end
redis.call('PUBLISH', ARGV[8], ARGV[9])
return 1
";

fn corrupt(server: &str, source: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        server: server.to_owned(),
        source,
    }
}

fn decode(server: &str, bytes: &[u8]) -> Result<StoredVersion, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| corrupt(server, source))
}

impl RedisStore {
    pub fn new(link: Arc<Link>, prefix: &str, replica: &str) -> RedisStore {
        RedisStore {
            link,
            prefix: prefix.to_owned(),
            replica: replica.to_owned(),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn server_key(&self, kind: &str, server: &str) -> String {
        format!("{}:{kind}:{server}", self.prefix)
    }

    fn event(&self, kind: &str, server: &str) -> String {
        json!({"replica": self.replica, "kind": kind, "server": server}).to_string()
    }

    fn channel(&self) -> String {
        super::events_channel(&self.prefix)
    }

    fn approved_of(
        &self,
        connection: &mut redis::Connection,
        server: &str,
    ) -> redis::RedisResult<Option<u64>> {
        redis::cmd("HGET")
            .arg(self.key("approved"))
            .arg(server)
            .query(connection)
    }
}

impl RegistryStore for RedisStore {
    fn registered(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        let rows: BTreeMap<String, Vec<u8>> = self
            .link
            .run(|c| redis::cmd("HGETALL").arg(self.key("registered")).query(c))?;
        rows.into_iter()
            .map(|(name, bytes)| {
                let definition =
                    serde_json::from_slice(&bytes).map_err(|source| corrupt(&name, source))?;
                Ok((name, definition))
            })
            .collect()
    }

    fn put_registered(&self, server: &str, definition: &Value) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(definition).expect("a JSON value serializes");
        self.link.run(|c| {
            redis::Script::new(PUT_REGISTERED)
                .key(self.key("registered"))
                .arg(server)
                .arg(bytes.as_slice())
                .arg(self.channel())
                .arg(self.event(ROSTER, server))
                .invoke::<i64>(c)
        })?;
        Ok(())
    }

    fn remove_registered(&self, server: &str) -> Result<bool, StoreError> {
        let removed: i64 = self.link.run(|c| {
            redis::Script::new(REMOVE_REGISTERED)
                .key(self.key("registered"))
                .arg(server)
                .arg(self.channel())
                .arg(self.event(ROSTER, server))
                .invoke(c)
        })?;
        Ok(removed > 0)
    }

    fn heads(&self) -> Result<BTreeMap<String, (StoredVersion, Option<u64>)>, StoreError> {
        self.link
            .run(|c| {
                let heads: BTreeMap<String, u64> =
                    redis::cmd("HGETALL").arg(self.key("heads")).query(c)?;
                let approved: BTreeMap<String, u64> =
                    redis::cmd("HGETALL").arg(self.key("approved")).query(c)?;
                let mut rows = Vec::with_capacity(heads.len());
                for (server, version) in heads {
                    let bytes: Option<Vec<u8>> = redis::cmd("HGET")
                        .arg(self.server_key("versions", &server))
                        .arg(version)
                        .query(c)?;
                    let approval = approved.get(&server).copied();
                    rows.push((server, bytes, approval));
                }
                Ok(rows)
            })?
            .into_iter()
            .filter_map(|(server, bytes, approval)| {
                let bytes = bytes?;
                Some(decode(&server, &bytes).map(|head| (server, (head, approval))))
            })
            .collect()
    }

    fn versions(&self, server: &str) -> Result<Vec<StoredVersion>, StoreError> {
        let rows: BTreeMap<u64, Vec<u8>> = self.link.run(|c| {
            redis::cmd("HGETALL")
                .arg(self.server_key("versions", server))
                .query(c)
        })?;
        rows.values().map(|bytes| decode(server, bytes)).collect()
    }

    fn version(&self, server: &str, version: u64) -> Result<Option<StoredVersion>, StoreError> {
        let bytes: Option<Vec<u8>> = self.link.run(|c| {
            redis::cmd("HGET")
                .arg(self.server_key("versions", server))
                .arg(version)
                .query(c)
        })?;
        bytes.map(|bytes| decode(server, &bytes)).transpose()
    }

    fn append(
        &self,
        server: &str,
        version: &StoredVersion,
        approve: bool,
        retention: Retention,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(version).expect("a version serializes");
        self.link.run(|c| {
            redis::Script::new(APPEND)
                .key(self.server_key("versions", server))
                .key(self.server_key("order", server))
                .key(self.server_key("recorded", server))
                .key(self.key("heads"))
                .key(self.key("approved"))
                .arg(server)
                .arg(version.version)
                .arg(bytes.as_slice())
                .arg(version.recorded_at)
                .arg(u8::from(approve))
                .arg(retention.max_versions)
                .arg(retention.min_recorded_at)
                .arg(self.channel())
                .arg(self.event(VERSION, server))
                .invoke::<i64>(c)
        })?;
        Ok(())
    }

    fn approve(&self, server: &str, version: u64) -> Result<(), StoreError> {
        self.link.run(|c| {
            redis::Script::new(APPROVE)
                .key(self.key("approved"))
                .arg(server)
                .arg(version)
                .arg(self.channel())
                .arg(self.event(APPROVAL, server))
                .invoke::<i64>(c)
        })?;
        Ok(())
    }
}

impl RedisStore {
    /// The approved version of `server` (tests and the event handler).
    pub fn approved(&self, server: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.link.run(|c| self.approved_of(c, server))?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    /// A `redis-server` on a free port, killed when dropped (`None`: not installed).
    struct Server(
        std::process::Child,
        u16,
        #[allow(dead_code)] tempfile::TempDir,
    );

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn redis() -> Option<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = tempfile::tempdir().ok()?;
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = Server(child, port, dir);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        None
    }

    fn store(port: u16) -> RedisStore {
        let url = switchboard_config::Secret::new(format!("redis://127.0.0.1:{port}"));
        let link = Arc::new(Link::new(&url, std::time::Duration::from_secs(2)).unwrap());
        RedisStore::new(link, "t", "r1")
    }

    /// The same contract as the redb store's test (`registry::store`).
    #[test]
    fn appends_prunes_spares_the_approved_and_round_trips_registrations() {
        let Some(server) = redis() else {
            eprintln!("SKIPPED: redis-server not installed");
            return;
        };
        let store = store(server.1);
        crate::registry::store::contract::appends_prune_and_spare_the_approved(&store);
        assert_eq!(store.approved("t").unwrap(), Some(1));
        crate::registry::store::contract::registrations_round_trip(&store);
    }

    #[test]
    fn a_stopped_redis_fails_each_call_quickly_and_recovers() {
        let Some(server) = redis() else {
            eprintln!("SKIPPED: redis-server not installed");
            return;
        };
        let port = server.1;
        let store = store(port);
        store.put_registered("a", &json!({})).unwrap();
        drop(server);
        let started = std::time::Instant::now();
        let error = store.registered().unwrap_err();
        assert!(error.to_string().contains("Redis"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // A new Redis on the same port: the next call reconnects.
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let _again = Server(child, port, dir);
        let mut answered = false;
        for _ in 0..200 {
            if store.registered().is_ok() {
                answered = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        assert!(answered, "reconnected");
    }
}
