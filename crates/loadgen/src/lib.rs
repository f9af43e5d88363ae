//! The parts of `switchboard-load`: an HTTP/1.1 client with MCP sessions (`client`,
//! `session`, `mcp`), the closed- and open-loop driver (`driver`), figures and tables
//! (`report`), the processes under test and what `/proc` and `perf` say about them
//! (`spawn`, `procs`, `perf`), the byte `relay` that gives the floor path, and the
//! orchestrations built on them: the benchmark `scenarios` (with the `hotload` one) and the
//! CI `smoke` run. The binary in `main.rs` is only the command line.

pub mod client;
pub mod driver;
pub mod hotload;
pub mod mcp;
pub mod perf;
pub mod procs;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod session;
pub mod smoke;
pub mod spawn;
