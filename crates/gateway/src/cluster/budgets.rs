//! Daily budgets shared by every replica: the day's counts in one Redis hash per UTC day
//! (`<prefix>:budget:<day>`, field = budget identity and scope, the same keys as the
//! embedded ledger's), checked and incremented by one Lua script, so "500 calls a day"
//! holds for the cluster as a whole, exactly.
//!
//! The script reads the clock of Redis (`TIME`) to pick the day, so replicas with skewed
//! clocks count against the same day and agree on when it ends. Per admission it checks
//! every charge, then increments all of them or none (a refused call counts nothing). It
//! keeps the embedded ledger's bound: at most `max_keys` fields a day; a new scope past
//! that counts under its budget's shared overflow field. Each day's hash expires at the
//! end of the next UTC day, so old days need no pruning.
//!
//! Durability is Redis's (its append-only file): there is no write-behind and no
//! per-call commit here, and `[access] budget_flush_ms` does not apply. A call that
//! cannot reach Redis within the command deadline is refused with a retryable error
//! (`cluster store unavailable`): a budget that cannot be checked is never skipped.

use std::sync::Arc;
use std::time::Duration;

use super::pool::Pool;
use super::pool::Unavailable;
use crate::pipeline::ledger::{self, Charge, Spent};

// KEYS[1]: the key the day's hash is named after (the day number is appended).
// ARGV[1]: most fields a day; then per charge: field, its budget's overflow field, limit.
// Returns {0, 0} when every charge was counted, else {index (1-based) of the first
// charge without room, milliseconds until the end of the day}.
const ADMIT: &str = r"
local now_parts = redis.call('TIME')
local now_ms = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local day = math.floor(now_ms / 86400000)
local key = KEYS[1] .. ':' .. day
local max_keys = tonumber(ARGV[1])
local known = redis.call('HLEN', key)
local fields = {}
for i = 1, (#ARGV - 1) / 3 do
  local field = ARGV[3 * i - 1]
  if redis.call('HEXISTS', key, field) == 0 then
    if known >= max_keys then
      field = ARGV[3 * i]
      if redis.call('HEXISTS', key, field) == 0 then known = known + 1 end
    else
      known = known + 1
    end
  end
  local calls = tonumber(redis.call('HGET', key, field) or '0')
  if calls >= tonumber(ARGV[3 * i + 1]) then
    return {i, (day + 1) * 86400000 - now_ms}
  end
  fields[i] = field
end
for i = 1, #fields do
  redis.call('HINCRBY', key, fields[i], 1)
end
redis.call('EXPIREAT', key, (day + 2) * 86400)
return {0, 0}
";

/// The cluster's daily budget counts.
#[derive(Debug)]
pub(crate) struct SharedBudgets {
    pool: Arc<Pool>,
    script: redis::Script,
    max_keys: usize,
}

/// The script's arguments for `charges`: the bound, then each charge's field, overflow
/// field and limit.
fn arguments(charges: &[Charge<'_>], max_keys: usize) -> Vec<String> {
    let mut args = Vec::with_capacity(1 + 3 * charges.len());
    args.push(max_keys.to_string());
    for charge in charges {
        args.push(ledger::key_of(charge.budget, &charge.scope));
        args.push(ledger::key_of(charge.budget, ledger::OVERFLOW));
        args.push(charge.limit.to_string());
    }
    args
}

/// The script's answer: admitted, or which charge had no room and until when.
fn verdict(reply: (i64, i64)) -> Result<(), Spent> {
    match reply {
        (index, _) if index <= 0 => Ok(()),
        (index, left_ms) => Err(Spent {
            index: usize::try_from(index - 1).unwrap_or(usize::MAX),
            retry_after: Duration::from_millis(left_ms.max(0).unsigned_abs()),
        }),
    }
}

impl SharedBudgets {
    pub(crate) fn new(pool: Arc<Pool>) -> SharedBudgets {
        SharedBudgets::with_max_keys(pool, ledger::MAX_KEYS)
    }

    pub(crate) fn with_max_keys(pool: Arc<Pool>, max_keys: usize) -> SharedBudgets {
        SharedBudgets {
            pool,
            script: redis::Script::new(ADMIT),
            max_keys,
        }
    }

    /// Counts one call against every charge, or none if one of them has no room left
    /// today (`Ok(Err(spent))`).
    pub(crate) async fn admit(
        &self,
        charges: &[Charge<'_>],
    ) -> Result<Result<(), Spent>, Unavailable> {
        let key = format!("{}:budget", self.pool.prefix);
        let args = arguments(charges, self.max_keys);
        let reply: (i64, i64) = self
            .pool
            .run(|mut manager| async move {
                let mut invocation = self.script.key(key);
                for arg in &args {
                    invocation.arg(arg);
                }
                invocation.invoke_async(&mut manager).await
            })
            .await?;
        Ok(verdict(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(scope: &str, limit: u64) -> Charge<'static> {
        Charge {
            budget: "principal|*|fx__*",
            scope: scope.to_owned(),
            limit,
        }
    }

    #[test]
    fn arguments_name_each_field_its_overflow_and_limit() {
        let args = arguments(&[charge("alice", 5), charge("bob", 7)], 10);
        assert_eq!(
            args,
            [
                "10",
                "principal|*|fx__*\u{1f}alice",
                "principal|*|fx__*\u{1f}_overflow",
                "5",
                "principal|*|fx__*\u{1f}bob",
                "principal|*|fx__*\u{1f}_overflow",
                "7",
            ]
        );
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict((0, 0)), Ok(()));
        assert_eq!(
            verdict((2, 61_500)),
            Err(Spent {
                index: 1,
                retry_after: Duration::from_millis(61_500)
            })
        );
    }

    /// A `redis-server` on a free port, killed when dropped (`None`: not installed).
    struct Server(
        std::process::Child,
        u16,
        /// Redis's working directory, removed with the server.
        #[allow(dead_code)]
        tempfile::TempDir,
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
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let server = Server(child, port, dir);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", server.1)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        None
    }

    fn pool(port: u16) -> Arc<Pool> {
        let settings = switchboard_config::ClusterSettings {
            redis: switchboard_config::Secret::new(format!("redis://127.0.0.1:{port}")),
            key_prefix: "t".to_owned(),
            command_timeout: Duration::from_secs(2),
            secret: None,
            advertise: None,
            lease: switchboard_config::ClusterSettings::DEFAULT_LEASE,
        };
        Arc::new(Pool::new(&settings).unwrap())
    }

    #[tokio::test]
    async fn the_script_counts_all_or_nothing_caps_its_keys_and_expires_the_day() {
        let Some(server) = redis() else {
            eprintln!("SKIPPED: redis-server not installed");
            return;
        };
        let budgets = SharedBudgets::with_max_keys(pool(server.1), 3);
        for _ in 0..3 {
            budgets.admit(&[charge("a", 3)]).await.unwrap().unwrap();
        }
        let spent = budgets.admit(&[charge("a", 3)]).await.unwrap().unwrap_err();
        assert_eq!(spent.index, 0);
        assert!(spent.retry_after > Duration::ZERO);
        assert!(spent.retry_after <= Duration::from_secs(86_400));
        // A refusal counts nothing, also on the charges that had room.
        let spent = budgets
            .admit(&[charge("b", 1), charge("a", 3)])
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(spent.index, 1);
        budgets.admit(&[charge("b", 1)]).await.unwrap().unwrap();
        budgets.admit(&[charge("c", 2)]).await.unwrap().unwrap();
        // Three keys known: "d" and "e" share the budget's overflow count.
        budgets.admit(&[charge("d", 2)]).await.unwrap().unwrap();
        budgets.admit(&[charge("e", 2)]).await.unwrap().unwrap();
        assert!(budgets.admit(&[charge("f", 2)]).await.unwrap().is_err());
        // Known keys keep their own counts.
        budgets.admit(&[charge("c", 2)]).await.unwrap().unwrap();
        assert!(budgets.admit(&[charge("c", 2)]).await.unwrap().is_err());

        let mut connection = budgets
            .pool
            .run(|manager| async { Ok::<_, redis::RedisError>(manager) })
            .await
            .unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("t:budget:*")
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let fields: usize = redis::cmd("HLEN")
            .arg(&keys[0])
            .query_async(&mut connection)
            .await
            .unwrap();
        assert_eq!(fields, 4, "a, b, c and the overflow field");
        let ttl: i64 = redis::cmd("TTL")
            .arg(&keys[0])
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!((86_400..=2 * 86_400).contains(&ttl), "{ttl}");

        // The cost of one admission (printed, not asserted).
        let rounds = 2_000u32;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            budgets
                .admit(&[charge("timed", u64::MAX)])
                .await
                .unwrap()
                .unwrap();
        }
        println!(
            "one budgeted admission on Redis: {:?} (mean of {rounds}, loopback)",
            started.elapsed() / rounds
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_the_admission() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let budgets = SharedBudgets::new(pool(port));
        let error = budgets.admit(&[charge("a", 3)]).await.unwrap_err();
        assert!(
            error.to_string().contains("cluster store unavailable"),
            "{error}"
        );
    }
}
