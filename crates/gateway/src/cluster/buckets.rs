//! Rate-limit buckets shared by every replica: one GCRA state (the "theoretical arrival
//! time") per limit and key in Redis, updated by one Lua script, so `requests` per
//! `period` with `burst` holds for the cluster as a whole, exactly — not per replica.
//!
//! The script reads the clock of Redis (`TIME`), so replicas with skewed clocks agree.
//! A call that cannot reach Redis within the command deadline is refused with a
//! retryable error (`data.reason = "cluster store unavailable"`): a limit that cannot be
//! checked is not silently skipped, and calls that no limit covers are not affected.

use std::time::Duration;

use std::sync::Arc;

use super::pool::Pool;
pub use super::pool::Unavailable;

/// How a shared check went.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; the call may pass after this wait.
    Refused(Duration),
}

// KEYS[1]: the bucket. ARGV: emission interval (µs), burst.
// Returns 0 when allowed, else the wait in µs.
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local emission = tonumber(ARGV[1])
local tolerance = emission * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + emission
local allow_at = next_tat - tolerance
if now < allow_at then
  return allow_at - now
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// The cluster's rate-limit buckets.
#[derive(Debug)]
pub struct Buckets {
    pool: Arc<Pool>,
    script: redis::Script,
}

impl Buckets {
    pub fn new(pool: Arc<Pool>) -> Buckets {
        Buckets {
            pool,
            script: redis::Script::new(GCRA),
        }
    }

    /// Takes one cell from the bucket `limit`/`key` (`emission` = period / requests).
    pub async fn take(
        &self,
        limit: &str,
        key: &str,
        emission: Duration,
        burst: u32,
    ) -> Result<Verdict, Unavailable> {
        let key = format!("{}:rate:{limit}:{key}", self.pool.prefix);
        let emission = u64::try_from(emission.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let wait: i64 = self
            .pool
            .run(|mut manager| async move {
                self.script
                    .key(key)
                    .arg(emission)
                    .arg(burst)
                    .invoke_async(&mut manager)
                    .await
            })
            .await?;
        Ok(if wait <= 0 {
            Verdict::Allowed
        } else {
            Verdict::Refused(Duration::from_micros(wait.unsigned_abs()))
        })
    }
}
