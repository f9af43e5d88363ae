//! The async Redis connection of a replica's data path (rate-limit buckets, daily budgets,
//! sessions): one `ConnectionManager` (multiplexed, reconnecting), made on first use, with a
//! deadline on connecting and on every command. While Redis is away each command fails
//! after at most the deadline; nothing is queued for later.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

/// The shared state could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cluster store unavailable: {0}")]
pub struct Unavailable(#[from] redis::RedisError);

pub struct Pool {
    client: redis::Client,
    pub(crate) prefix: String,
    timeout: Duration,
    manager: OnceCell<ConnectionManager>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client holds the URL, which may hold a password.
        f.debug_struct("Pool")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Pool {
    pub fn new(settings: &switchboard_config::ClusterSettings) -> redis::RedisResult<Pool> {
        Ok(Pool {
            client: redis::Client::open(settings.redis.expose().as_str())?,
            prefix: settings.key_prefix.clone(),
            timeout: settings.command_timeout,
            manager: OnceCell::new(),
        })
    }

    async fn manager(&self) -> Result<ConnectionManager, Unavailable> {
        let manager = self
            .manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?;
        Ok(manager.clone())
    }

    /// Runs `work` on the connection, all of it (connecting included) within twice the
    /// command deadline.
    pub async fn run<T, F, Fut>(&self, work: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let manager = self.manager().await?;
            Ok::<_, Unavailable>(work(manager).await?)
        };
        tokio::time::timeout(self.timeout * 2, attempt)
            .await
            .map_err(|_| {
                Unavailable(redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no answer within the command deadline",
                )))
            })?
    }
}
