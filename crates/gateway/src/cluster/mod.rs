//! Several replicas behaving as one gateway over a shared Redis (`[cluster] redis`).
//!
//! - `link`: the bounded, reconnecting synchronous connection the registry store uses
//!   (every command has a deadline; a dead Redis fails the command, it never queues);
//! - `store`: [`RedisStore`], the registry's state (runtime registrations, versions,
//!   approvals) in Redis, each write atomic (one Lua script) and announced on the event
//!   channel;
//! - `buckets`: rate-limit buckets shared by every replica (GCRA in one Lua script);
//! - `budgets`: daily budgets' counts shared by every replica (one hash per UTC day,
//!   check-and-increment in one Lua script);
//! - `pool`: the async connection of the data path (buckets, budgets, sessions);
//! - `sessions`: legacy sessions' records with a sliding TTL, so any replica continues
//!   a session;
//! - `memory`: the router agent's conversations (per principal, last N messages, TTL),
//!   so any replica continues a conversation;
//! - `events`: the subscriber each replica runs, turning another replica's roster change
//!   into the same change here (and a `list_changed` to every session);
//! - `lease`, `owned`: `cluster = "owned"` servers — one replica holds each one's lease
//!   (fencing epoch) and runs it, the others learn the owner and its lists;
//! - `relay`, `wire`: the internal channel — a call to an owned server forwarded to its
//!   owner (`POST /cluster/call`, bearer secret), its progress, server→client requests
//!   and result streamed back, cancellation by closing the stream.
//!
//! Invariants:
//! - Without `[cluster]` nothing here exists: no client, no task, no step.
//! - Redis being down never stops local work: calls to servers already running go on;
//!   only shared operations (registering, removing, recording versions) fail, with a
//!   structured error naming Redis; the subscriber reconnects with bounded backoff and
//!   reconciles everything it may have missed once Redis is back.

pub mod buckets;
pub(crate) mod budgets;
pub(crate) mod events;
mod lease;
mod link;
pub mod memory;
pub(crate) mod owned;
pub mod pool;
pub(crate) mod relay;
pub mod sessions;
mod store;
pub(crate) mod wire;

pub use link::Link;
pub use store::RedisStore;

/// The channel (under the key prefix) every replica publishes roster changes on.
pub(crate) fn events_channel(prefix: &str) -> String {
    format!("{prefix}:events")
}

/// A random identity of this replica (so it can ignore its own events).
pub(crate) fn replica_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What a replica keeps of the cluster once started: enough to run its subscriber.
#[derive(Debug)]
pub(crate) struct Membership {
    client: redis::Client,
    channel: String,
    replica: String,
}

impl Membership {
    pub(crate) fn replica(&self) -> &str {
        &self.replica
    }

    pub(crate) fn spawn_events(self, gateway: &crate::gateway::Gateway) {
        events::spawn(gateway, self.client, self.channel, self.replica);
    }
}

/// The registry on the shared Redis, and this replica's membership. Fails (and the
/// gateway does not start) when Redis cannot be read: a replica that starts without the
/// shared registrations would serve a different roster from the others.
pub(crate) fn open_registry(
    settings: &switchboard_config::ClusterSettings,
    registry: &switchboard_config::RegistrySettings,
) -> Result<(crate::registry::Registry, Option<Membership>), crate::registry::StoreError> {
    let link = std::sync::Arc::new(Link::new(&settings.redis, settings.command_timeout)?);
    let replica = replica_id();
    let store = RedisStore::new(link.clone(), &settings.key_prefix, &replica);
    let registry =
        crate::registry::Registry::with_store(std::sync::Arc::new(store), true, registry)?;
    tracing::info!(
        event = "cluster.joined",
        replica,
        prefix = settings.key_prefix,
        "cluster: registry on the shared Redis"
    );
    Ok((
        registry,
        Some(Membership {
            client: link.client().clone(),
            channel: events_channel(&settings.key_prefix),
            replica,
        }),
    ))
}

/// How long a legacy session's record lives without a request (the HTTP face forgets
/// its idle sessions after the same time).
pub(crate) const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// The shared session records (no connection until the first use).
pub(crate) fn open_sessions(
    settings: &switchboard_config::ClusterSettings,
) -> Result<std::sync::Arc<sessions::SharedSessions>, crate::registry::StoreError> {
    let pool = std::sync::Arc::new(pool::Pool::new(settings)?);
    Ok(std::sync::Arc::new(sessions::SharedSessions::new(
        pool,
        SESSION_TTL,
    )))
}

/// The router agent's shared conversations (no connection until the first use).
pub(crate) fn open_memory(
    settings: &switchboard_config::ClusterSettings,
    ttl: std::time::Duration,
) -> Result<std::sync::Arc<memory::SharedMemory>, crate::registry::StoreError> {
    let pool = std::sync::Arc::new(pool::Pool::new(settings)?);
    Ok(std::sync::Arc::new(memory::SharedMemory::new(pool, ttl)))
}
