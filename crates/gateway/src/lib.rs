//! The router: a roster of upstream servers, the merged catalog, era-neutral request
//! handling with bridging between protocol eras, and the downstream faces (stdio and
//! Streamable HTTP) that speak MCP to clients.
//!
//! Architecture invariants:
//! - Faces decode wire messages into a [`ClientCtx`] plus method and params; everything
//!   behind [`Gateway::handle`] is independent of the client's transport.
//! - Errors become JSON-RPC errors in exactly one place per edge: upstream call failures in
//!   `CallError::to_rpc_error`, face-level failures in `face::http::reject`.
//! - Every spawned task is owned: by a connection (`Live`), a session, a parked flight
//!   (with a deadline) or the gateway's shutdown token.

mod bridge;
pub mod catalog;
mod dispatch;
pub mod face;
mod gateway;
mod install;
mod meta;
mod meta_policy;
pub mod metrics;
pub mod reply;
mod roots;
pub mod roster;
pub mod server;
pub mod store;
pub mod watch;

pub use gateway::{Change, ClientCtx, Gateway, PeerRequest};
