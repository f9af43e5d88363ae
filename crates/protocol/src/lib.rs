//! MCP protocol layer without IO: JSON-RPC envelopes, the two protocol eras, error codes,
//! namespacing of names and URIs, HTTP header mirroring rules and sealed MRTR state.
//!
//! Architecture invariant: this crate performs no IO and knows nothing about transports,
//! tokio or configuration. Everything here is a pure function or a plain data structure,
//! so it can be unit- and property-tested in isolation and benchmarked on its own.

pub mod era;
pub mod error;
pub mod headers;
pub mod jsonrpc;
pub mod meta;
pub mod naming;
pub mod state;
pub mod uri;

pub use era::{Era, ProtocolVersion};
pub use error::RpcError;
pub use jsonrpc::{Message, ParseError, RequestId};
