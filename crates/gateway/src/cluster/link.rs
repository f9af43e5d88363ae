//! One synchronous Redis connection with a deadline on every command, reconnected on the
//! next use after any failure. Callers are the registry store's rare writes and reads
//! (registrations, versions, approvals), which the registry makes synchronously; a
//! command blocks its caller for at most the connect plus the command deadline, and a
//! stopped Redis costs one failed connect per call, never a queue.

use std::time::Duration;

use parking_lot::Mutex;
use switchboard_config::Secret;

/// The shared Redis, for synchronous commands.
pub struct Link {
    client: redis::Client,
    connection: Mutex<Option<redis::Connection>>,
    timeout: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never printed.
        f.debug_struct("Link")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Parses the URL (no connection yet: the first command connects).
    pub fn new(url: &Secret<String>, timeout: Duration) -> redis::RedisResult<Link> {
        Ok(Link {
            client: redis::Client::open(url.expose().as_str())?,
            connection: Mutex::new(None),
            timeout,
        })
    }

    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Runs `work` on the connection (connecting first if there is none). Any failure
    /// drops the connection, so the next call starts from a fresh one. A connection kept
    /// from before that turns out dead (Redis restarted since) is replaced and `work`
    /// tried once more on the new one: only then is it known that Redis is away.
    ///
    /// # Concurrency note
    /// The lock is held across the command: commands of this link run one at a time,
    /// which is what keeps a caller's reads ordered after its writes.
    pub fn run<T>(
        &self,
        mut work: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut slot = self.connection.lock();
        let reused = slot.is_some();
        let outcome = self.attempt(&mut slot, &mut work);
        match outcome {
            Err(error) if reused && (error.is_connection_dropped() || error.is_io_error()) => {
                self.attempt(&mut slot, &mut work)
            }
            outcome => outcome,
        }
    }

    fn attempt<T>(
        &self,
        slot: &mut Option<redis::Connection>,
        work: &mut impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        if slot.is_none() {
            let connection = self.client.get_connection_with_timeout(self.timeout)?;
            connection.set_read_timeout(Some(self.timeout))?;
            connection.set_write_timeout(Some(self.timeout))?;
            *slot = Some(connection);
        }
        let connection = slot.as_mut().expect("connected above");
        let outcome = work(connection);
        if outcome.is_err() {
            *slot = None;
        }
        outcome
    }
}
