//! The parts of `switchboard-load`: an HTTP/1.1 client with MCP sessions (`client`,
//! `session`, `mcp`), the closed- and open-loop driver (`driver`), figures and tables
//! (`report`), the processes under test and what `/proc` says about them (`spawn`, `procs`),
//! and the two orchestrations built on them: the benchmark `scenarios` and the CI `smoke`
//! run. The binary in `main.rs` is only the command line.

pub mod client;
pub mod driver;
pub mod mcp;
pub mod procs;
pub mod report;
pub mod scenarios;
pub mod session;
pub mod smoke;
pub mod spawn;
