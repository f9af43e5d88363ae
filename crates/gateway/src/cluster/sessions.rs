//! Legacy sessions that work on every replica: what `initialize` fixed (protocol
//! version, client capabilities and info, the caller's identity, its tools choice) is
//! kept in Redis under `p:session:{id}` with a sliding TTL (every request renews it), so
//! a replica that never saw the session rebuilds it from there.
//!
//! - A forged id names no record: refused as unknown (ids are 128 random bits).
//! - DELETE removes the record: a replay on any replica is refused, also on a replica
//!   that still holds the session in memory (every request renews the record, and a
//!   record gone means the session ended).
//! - A record of another identity is refused as unknown, like a local one.
//! - Redis away: sessions a replica holds keep working there (renewal is skipped and
//!   logged); opening a session, and continuing one this replica does not hold, fail with
//!   a structured 503.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pool::{Pool, Unavailable};
use crate::principal::Identity;

/// What a replica needs to continue a session opened elsewhere.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub version: String,
    pub capabilities: Value,
    #[serde(default, rename = "clientInfo")]
    pub client_info: Option<Value>,
    /// `None`: an anonymous session.
    pub identity: Option<StoredIdentity>,
    #[serde(rename = "metaTools")]
    pub meta_tools: bool,
    /// `true`: the tools are seen in search mode.
    pub search: bool,
}

/// The identity a session is bound to.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredIdentity {
    pub id: String,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
}

impl StoredIdentity {
    pub fn of(identity: &Identity) -> StoredIdentity {
        let mut roles = identity.roles.clone();
        roles.sort_unstable();
        roles.dedup();
        StoredIdentity {
            id: identity.id.clone(),
            tenant: identity.tenant.clone(),
            roles,
        }
    }
}

impl Record {
    /// Whether `presented` is the identity the session is bound to.
    pub fn belongs_to(&self, presented: Option<&Identity>) -> bool {
        self.identity.as_ref() == presented.map(StoredIdentity::of).as_ref()
    }
}

/// The cluster's session records.
#[derive(Debug)]
pub struct SharedSessions {
    pool: Arc<Pool>,
    ttl: Duration,
}

impl SharedSessions {
    pub fn new(pool: Arc<Pool>, ttl: Duration) -> SharedSessions {
        SharedSessions { pool, ttl }
    }

    fn key(&self, id: &str) -> String {
        format!("{}:session:{id}", self.pool.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Records a new session.
    pub async fn create(&self, id: &str, record: &Record) -> Result<(), Unavailable> {
        let json = serde_json::to_string(record).expect("a record serializes");
        let key = self.key(id);
        let ttl = self.ttl_ms();
        self.pool
            .run(|mut manager| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(json)
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<()>(&mut manager)
                    .await
            })
            .await
    }

    /// Renews the session's TTL; `false` when it has ended (deleted or expired).
    pub async fn renew(&self, id: &str) -> Result<bool, Unavailable> {
        let key = self.key(id);
        let ttl = self.ttl_ms();
        let renewed: i64 = self
            .pool
            .run(|mut manager| async move {
                redis::cmd("PEXPIRE")
                    .arg(key)
                    .arg(ttl)
                    .query_async(&mut manager)
                    .await
            })
            .await?;
        Ok(renewed == 1)
    }

    /// The session's record (renewed), if it is alive.
    pub async fn fetch(&self, id: &str) -> Result<Option<Record>, Unavailable> {
        let key = self.key(id);
        let ttl = self.ttl_ms();
        let json: Option<String> = self
            .pool
            .run(|mut manager| async move {
                redis::cmd("GETEX")
                    .arg(key)
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut manager)
                    .await
            })
            .await?;
        // An unreadable record is no session (never a partial one).
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Ends the session everywhere; `false` when there was none.
    pub async fn delete(&self, id: &str) -> Result<bool, Unavailable> {
        let key = self.key(id);
        let removed: i64 =
            self.pool
                .run(|mut manager| async move {
                    redis::cmd("DEL").arg(key).query_async(&mut manager).await
                })
                .await?;
        Ok(removed == 1)
    }
}
