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

use switchboard_config::AccessSettings;
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

/// The steps built once at start, around the `[access]` steps (which a config reload
/// rebuilds): steps with durable state or owned tasks (the audit log's writer) must not
/// be built twice.
pub struct Parts {
    /// The embedder's steps, then the audit log (order 2).
    head: Vec<Arc<dyn Step>>,
    /// Steps after the access steps (validation, redaction).
    tail: Vec<Arc<dyn Step>>,
}

impl Parts {
    /// The chain with these `access` steps in their place.
    pub fn chain(&self, access: Vec<Arc<dyn Step>>) -> Chain {
        let steps: Vec<Arc<dyn Step>> = self
            .head
            .iter()
            .cloned()
            .chain(access)
            .chain(self.tail.iter().cloned())
            .collect();
        Chain::new(steps)
    }
}

/// The chain for a config, with `extra` steps first, and the parts that stay when
/// `[access]` changes. Without `[access]`, `[audit]` and `[redaction]` the chain stays
/// empty: one branch per call. `secrets` are the injected secrets the redaction step
/// matches (the gateway keeps teaching them new servers').
pub fn declared(
    config: &Config,
    extra: Vec<Arc<dyn Step>>,
    metrics: &Metrics,
    db: &Arc<Db>,
    secrets: Option<&Arc<crate::redact::Secrets>>,
) -> Result<(Parts, Chain), ChainError> {
    let mut head = extra;
    // 1. identity is established at the faces' edge (`crate::access`).
    // 2. the audit log: sees every outcome, the later steps' denials included.
    // Later steps that decide outside a call's hooks (approvals, expiries) record through
    // the same log (`Log::append`); inside the hooks they say why in `call.notes`.
    if let Some(audit) = &config.audit {
        let log = crate::audit::Log::open(audit, db, metrics)?;
        head.push(Arc::new(super::audit::Audit::new(log)));
    }
    let mut tail: Vec<Arc<dyn Step>> = Vec::new();
    // 8. redaction of results (after; innermost, so it sees the upstream's answer first).
    if let (Some(redaction), Some(secrets)) = (&config.redaction, secrets) {
        tail.push(Arc::new(crate::redact::Redact::new(
            redaction,
            secrets.clone(),
            metrics,
        )));
    }
    let parts = Parts { head, tail };
    let chain = parts.chain(access_steps(config.access.as_ref(), metrics, db));
    Ok((parts, chain))
}

/// The `[access]` steps (orders 3 and 4), built again when a reload changes `[access]`.
pub fn access_steps(
    access: Option<&AccessSettings>,
    metrics: &Metrics,
    db: &Arc<Db>,
) -> Vec<Arc<dyn Step>> {
    let _ = db; // budgets keep their counts here
    let mut steps: Vec<Arc<dyn Step>> = Vec::new();
    let Some(access) = access else {
        return steps;
    };
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
    steps
}
