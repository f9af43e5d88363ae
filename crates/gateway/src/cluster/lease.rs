//! The lease that makes one replica the owner of a `cluster = "owned"` server.
//!
//! `p:owner:NAME` holds the owner's record — `EPOCH REPLICA ADDRESS` — with a TTL of the
//! lease time: taken with `SET NX PX` (in one script that first increments
//! `p:epoch:NAME`, so every ownership has a larger epoch than any before it), kept alive
//! by its owner's renewals, and given back (deleted only if still the same record) when
//! the owner stops. A renewal succeeds only while the key still holds the owner's exact
//! record: once the lease expired and another replica took it, the old owner's renewal
//! fails and it stops its instance (the epoch is the fencing token: a forwarded call
//! names the epoch it was routed by, and the owner refuses a call for any other).

use std::time::Duration;

use super::pool::{Pool, Unavailable};

/// Who owns a server, as written in its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The fencing token: increases with every new owner.
    pub(crate) epoch: u64,
    pub(crate) replica: String,
    /// `host:port` of the owner's HTTP listener (`/cluster/call`).
    pub(crate) address: String,
}

impl Record {
    pub(crate) fn encode(&self) -> String {
        format!("{} {} {}", self.epoch, self.replica, self.address)
    }

    pub(crate) fn decode(text: &str) -> Option<Record> {
        let mut parts = text.splitn(3, ' ');
        let epoch = parts.next()?.parse().ok()?;
        let replica = parts.next().filter(|r| !r.is_empty())?.to_owned();
        let address = parts.next().filter(|a| !a.is_empty())?.to_owned();
        Some(Record {
            epoch,
            replica,
            address,
        })
    }
}

/// Takes the lease if nobody holds it: the new epoch, or nothing.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ' ' .. ARGV[1], 'PX', ARGV[2])
return epoch
";

/// Extends the lease only while it still holds exactly this record.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Gives the lease back only while it still holds exactly this record.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The lease operations of one cluster (key prefix).
#[derive(Debug)]
pub(crate) struct Leases {
    pool: std::sync::Arc<Pool>,
    lease: Duration,
}

impl Leases {
    pub(crate) fn new(pool: std::sync::Arc<Pool>, lease: Duration) -> Leases {
        Leases { pool, lease }
    }

    fn owner_key(&self, server: &str) -> String {
        format!("{}:owner:{server}", self.pool.prefix)
    }

    fn epoch_key(&self, server: &str) -> String {
        format!("{}:epoch:{server}", self.pool.prefix)
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Takes the lease of `server` for this replica, if it is free.
    pub(crate) async fn acquire(
        &self,
        server: &str,
        replica: &str,
        address: &str,
    ) -> Result<Option<Record>, Unavailable> {
        let (owner, epoch_key) = (self.owner_key(server), self.epoch_key(server));
        let value = format!("{replica} {address}");
        let lease = self.lease_ms();
        let epoch: Option<u64> = self
            .pool
            .run(|mut c| async move {
                redis::Script::new(ACQUIRE)
                    .key(owner)
                    .key(epoch_key)
                    .arg(value)
                    .arg(lease)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(epoch.map(|epoch| Record {
            epoch,
            replica: replica.to_owned(),
            address: address.to_owned(),
        }))
    }

    /// Extends the lease `held`; `false` when it is no longer this record's.
    pub(crate) async fn renew(&self, server: &str, held: &Record) -> Result<bool, Unavailable> {
        let (owner, record, lease) = (self.owner_key(server), held.encode(), self.lease_ms());
        let renewed: i64 = self
            .pool
            .run(|mut c| async move {
                redis::Script::new(RENEW)
                    .key(owner)
                    .arg(record)
                    .arg(lease)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(renewed == 1)
    }

    /// Gives the lease `held` back (at shutdown), so another replica takes over at once.
    pub(crate) async fn release(&self, server: &str, held: &Record) -> Result<(), Unavailable> {
        let (owner, record) = (self.owner_key(server), held.encode());
        let _: i64 = self
            .pool
            .run(|mut c| async move {
                redis::Script::new(RELEASE)
                    .key(owner)
                    .arg(record)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }

    /// The current owner of `server`, if any.
    pub(crate) async fn read(&self, server: &str) -> Result<Option<Record>, Unavailable> {
        let owner = self.owner_key(server);
        let text: Option<String> = self
            .pool
            .run(|mut c| async move { redis::cmd("GET").arg(owner).query_async(&mut c).await })
            .await?;
        Ok(text.as_deref().and_then(Record::decode))
    }
}

#[cfg(test)]
mod tests {
    use super::Record;

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let record = Record {
            epoch: 42,
            replica: "abc".into(),
            address: "127.0.0.1:8080".into(),
        };
        assert_eq!(record.encode(), "42 abc 127.0.0.1:8080");
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode("x abc 1:2"), None);
        assert_eq!(Record::decode("1 abc"), None);
        assert_eq!(Record::decode("1  1:2"), None);
    }
}
