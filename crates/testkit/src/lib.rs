//! Test support: starts the real `switchboard` and fixture binaries on loopback ports and
//! speaks MCP to them as a client would, over stdio and Streamable HTTP, in both eras.
//!
//! Every spawned process is owned by a guard that kills it (and its process group) on
//! drop, so a failing test leaves nothing behind.

pub mod client;
pub mod interop;
pub mod llm;
pub mod process;

pub use client::{Client, Exchange, Face, LegacyHttp, ModernHttp, Stdio};
pub use interop::interop_path;
pub use process::{
    Proc, binary_beside, children_of, kill_group, replace_file, spawn_fixture_http,
    spawn_gateway_http, spawn_gateway_http_at, write_config, zombies_of,
};
