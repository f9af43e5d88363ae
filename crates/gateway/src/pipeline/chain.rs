//! The order of the pipeline's steps, declared once.
//!
//! Each later capability adds its step here, at its place in the order, built from the
//! config; nothing else changes (not the faces, not the bridge):
//!
//! | order | step | issue |
//! |---|---|---|
//! | 1 | identity (principal from credentials) | access |
//! | 2 | audit (sees every outcome, denials included) | governance |
//! | 3 | allow-lists and argument rules (+ list filter) | access |
//! | 4 | rate limits | access |
//! | 5 | argument validation, pinning | registry |
//! | 6 | approval gates | governance |
//! | 7 | result cache | economy |
//! | 8 | redaction (after) | governance |
//!
//! Steps given by the embedder (tests, the router agent) run first, in the order given.

use std::sync::Arc;

use switchboard_config::Config;

use super::{Chain, Step};

/// The chain for a config, with `extra` steps first.
pub fn declared(_config: &Config, extra: Vec<Arc<dyn Step>>) -> Chain {
    // No configured step exists yet: an empty chain costs one branch per call.
    Chain::new(extra)
}
