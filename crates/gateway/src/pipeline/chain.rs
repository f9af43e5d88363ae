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
use crate::db::Db;
use crate::metrics::Metrics;

/// A step with durable state could not open it.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// The chain for a config, with `extra` steps first. Without `[access]`, `[audit]` and
/// `[redaction]` the chain stays empty: one branch per call. `secrets` are the injected
/// secrets the redaction step matches (the gateway keeps teaching them new servers').
pub fn declared(
    config: &Config,
    extra: Vec<Arc<dyn Step>>,
    metrics: &Metrics,
    db: &Arc<Db>,
    secrets: Option<&Arc<crate::redact::Secrets>>,
) -> Result<Chain, ChainError> {
    let mut steps = extra;
    // 1. identity is established at the faces' edge (`crate::access`).
    // 2. the audit log: sees every outcome, the later steps' denials included.
    // Later steps that decide outside a call's hooks (approvals, expiries) record through
    // the same log (`Log::append`); inside the hooks they say why in `call.notes`.
    if let Some(audit) = &config.audit {
        let log = crate::audit::Log::open(audit, db, metrics)?;
        steps.push(Arc::new(super::audit::Audit::new(log)));
    }
    if let Some(access) = &config.access {
        // 3. allow-lists and argument rules.
        let allow = super::allow::Allow::new(access.tenants.clone(), access.roles.clone());
        if allow.is_needed() {
            steps.push(Arc::new(allow));
        }
        if !access.rules.is_empty() {
            steps.push(Arc::new(super::rules::Rules::new(&access.rules)));
        }
        // 4. rate limits.
        if !access.limits.is_empty() {
            steps.push(Arc::new(super::limits::Limits::new(
                &access.limits,
                metrics,
            )));
        }
    }
    // 8. redaction of results (after; innermost, so it sees the upstream's answer first).
    if let (Some(redaction), Some(secrets)) = (&config.redaction, secrets) {
        steps.push(Arc::new(crate::redact::Redact::new(
            redaction,
            secrets.clone(),
            metrics,
        )));
    }
    Ok(Chain::new(steps))
}
