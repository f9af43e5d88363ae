//! The router: a roster of upstream servers, the merged catalog, era-neutral request
//! handling with bridging between protocol eras, and the downstream faces (stdio and
//! Streamable HTTP) that speak MCP to clients.
//!
//! Architecture invariants:
//! - Faces decode wire messages into a [`ClientCtx`] plus method and params; everything
//!   behind [`Gateway::handle`] is independent of the client's transport.
//! - Every client request runs through the call pipeline ([`pipeline`]): one snapshot,
//!   the caller's view, the declared steps, one terminal. Nothing else calls `forward`.
//! - Errors become JSON-RPC errors in exactly one place per edge: the gateway's own
//!   [`Error::to_rpc`], upstream call failures in `CallError::to_rpc_error`, face-level
//!   failures in `face::http::reject`.
//! - Every spawned task is owned: by a connection (`Live`), a session, a parked flight
//!   (with a deadline) or the gateway's shutdown token.

pub mod access;
pub mod agent;
pub mod audit;
mod bridge;
pub mod catalog;
pub mod cluster;
pub mod db;
mod discovery;
mod dispatch;
pub mod error;
pub mod events;
pub mod face;
mod gateway;
pub mod groups;
mod install;
mod inventory;
mod meta;
mod meta_policy;
pub mod metrics;
pub mod owned_tasks;
pub mod pipeline;
pub mod principal;
mod readiness;
pub mod redact;
pub mod registry;
mod relist;
pub mod reply;
pub mod rollouts;
mod roots;
pub mod roster;
pub mod screen;
mod script;
pub mod search;
pub mod server;
pub mod snapshot;
mod subscriptions;
pub mod suggest;
mod task_ext;
mod task_notify;
mod tasks;
pub mod telemetry;
pub mod vault;
mod views;
pub mod watch;

pub use error::Error;

/// Entry points for the fuzz targets in `fuzz/`; not part of the gateway's API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::dispatch::{decode_cursor, encode_cursor};
}
pub use gateway::{Change, ClientChoice, ClientCtx, Gateway, PeerRequest, StartError, ToolsMode};
pub use principal::Principal;
pub use readiness::Readiness;
