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
//! | 4 | rate limits, concurrency caps, daily budgets (counted last: only calls every other access step admitted) | access |
//! | 5 | argument validation (`validate`, on unless every server says `validate = false`), pinning | registry |
//! | 6 | approval gates | governance |
//! | 7 | result cache (`cache`: a hit answers in before; after stores), then output compaction (`compact`, after) | economy |
//! | 8 | redaction (after) | governance |
//!
//! Steps given by the embedder (tests, the router agent) run first, in the order given.

use std::sync::Arc;

use switchboard_config::AccessSettings;
use switchboard_config::Config;

use tokio_util::sync::CancellationToken;

use super::ledger::{Counts, Ledger};
use super::{BackgroundTask, Chain, Step};
use crate::db::Db;
use crate::metrics::Metrics;

/// A step with durable state could not open it.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// `[cluster] redis` is not a usable Redis URL.
    #[error("cluster: {0}")]
    Cluster(#[from] redis::RedisError),
}

/// The steps built once at start, around the `[access]` steps (which a config reload
/// rebuilds): steps with durable state or owned tasks (the audit log's writer) must not
/// be built twice. The daily budgets' counts are such state: built once with `[access]`
/// (the embedded ledger, or with `[cluster]` Redis), they carry the day's counts across
/// reloads to each new budgets step.
pub struct Parts {
    /// The embedder's steps, then the audit log (order 2).
    head: Vec<Arc<dyn Step>>,
    /// Steps after the access steps (validation, redaction).
    tail: Vec<Arc<dyn Step>>,
    /// With `[access]` (which only a restart adds or removes): where the daily budgets
    /// count.
    counts: Option<Counts>,
    /// The audit log, with `[audit]`: for parts that record outside a call's hooks (the
    /// registry's quarantines and approvals).
    audit: Option<crate::audit::Log>,
    /// With `[approvals]`: the approvals' state, which the admin API reaches too.
    approvals: Option<Arc<super::approval::Desk>>,
    /// With `[cluster]` and `[access]`: the rate-limit buckets every replica shares.
    buckets: Option<Arc<crate::cluster::buckets::Buckets>>,
}

impl Parts {
    /// The audit log, when `[audit]` is configured.
    pub fn audit_log(&self) -> Option<&crate::audit::Log> {
        self.audit.as_ref()
    }

    /// The approvals desk, with `[approvals]`.
    pub fn approvals(&self) -> Option<&Arc<super::approval::Desk>> {
        self.approvals.as_ref()
    }

    /// The `[access]` steps (orders 3 and 4), built again when a reload changes `[access]`.
    pub fn access_steps(
        &self,
        access: Option<&AccessSettings>,
        metrics: &Metrics,
    ) -> Vec<Arc<dyn Step>> {
        access_steps(access, metrics, self.counts.as_ref(), self.buckets.as_ref())
    }

    /// Work the parts own beside the steps: the budget ledger's writer, spawned once
    /// (none when the budgets count in the cluster's Redis).
    pub fn background(
        &self,
        shutdown: &CancellationToken,
        metrics: &Metrics,
    ) -> Vec<BackgroundTask> {
        self.counts
            .iter()
            .filter_map(|counts| match counts {
                Counts::Local(ledger) => Some(ledger),
                Counts::Shared(_) => None,
            })
            .map(|ledger| -> BackgroundTask {
                Box::pin(super::ledger::write_behind(
                    ledger.clone(),
                    shutdown.clone(),
                    metrics.budget_write_failures(),
                ))
            })
            .collect()
    }

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
/// `[access]` changes. Without `[access]`, `[audit]`, `[approvals]` and `[redaction]`, and with every
/// server's `validate = false`, the chain stays empty: one branch per call. `secrets` are the injected secrets the redaction step
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
    let mut log = None;
    if let Some(audit) = &config.audit {
        let opened = crate::audit::Log::open(audit, db, metrics)?;
        log = Some(opened.clone());
        head.push(Arc::new(super::audit::Audit::new(opened)));
    }
    let mut tail: Vec<Arc<dyn Step>> = Vec::new();
    // 5. argument validation: on unless every server of the file turns it off (a file
    // without servers keeps it, for servers registered at runtime, which validate by
    // default). Which servers are checked is read from each snapshot, so a reload that
    // turns a server's `validate` on or off applies; a gateway started without the step
    // gains it only by a restart.
    if validates(config) {
        tail.push(Arc::new(super::validate::Validate::new(metrics)));
    }
    // 6. approval gates: after validation (a person approves arguments that were
    // checked), last before anything is forwarded.
    let approvals = config
        .approvals
        .as_ref()
        .map(|settings| super::approval::Desk::new(settings, db.clone(), log.clone()));
    if let Some(desk) = &approvals {
        tail.push(Arc::new(super::approval::Approval::new(desk.clone())));
    }
    // 7. the result cache, then output compaction: after-hooks run inside out, so the
    // cache stores what compaction and redaction made of the upstream's answer, and a hit
    // (answered in `before`) runs neither again. Built only when a server asks for them
    // (a reload that first asks takes a restart, like validation).
    if super::cache::ResultCache::is_needed(config) {
        tail.push(Arc::new(super::cache::ResultCache::new(metrics)));
    }
    if super::compact::Compact::is_needed(config) {
        tail.push(Arc::new(super::compact::Compact::new(metrics)));
    }
    // 8. redaction of results (after; innermost, so it sees the upstream's answer first).
    if let (Some(redaction), Some(secrets)) = (&config.redaction, secrets) {
        tail.push(Arc::new(crate::redact::Redact::new(
            redaction,
            secrets.clone(),
            metrics,
        )));
    }
    // With `[cluster]`, rate-limit buckets and daily budgets count in Redis, on one
    // connection; otherwise budgets count in this process's ledger.
    let (counts, buckets) = match (&config.cluster, &config.access) {
        (Some(cluster), Some(_)) => {
            let pool = Arc::new(crate::cluster::pool::Pool::new(cluster)?);
            (
                Some(Counts::Shared(Arc::new(
                    crate::cluster::budgets::SharedBudgets::new(pool.clone()),
                ))),
                Some(Arc::new(crate::cluster::buckets::Buckets::new(pool))),
            )
        }
        (None, Some(_)) => (
            Some(Counts::Local(Arc::new(Ledger::open(db.clone())))),
            None,
        ),
        (_, None) => (None, None),
    };
    let parts = Parts {
        head,
        tail,
        counts,
        audit: log,
        approvals,
        buckets,
    };
    let chain = parts.chain(parts.access_steps(config.access.as_ref(), metrics));
    Ok((parts, chain))
}

/// Whether the config needs the validation step.
fn validates(config: &Config) -> bool {
    config.servers.is_empty() || config.servers.values().any(|server| server.policy.validate)
}

fn access_steps(
    access: Option<&AccessSettings>,
    metrics: &Metrics,
    counts: Option<&Counts>,
    buckets: Option<&Arc<crate::cluster::buckets::Buckets>>,
) -> Vec<Arc<dyn Step>> {
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
        steps.push(Arc::new(super::rules::Rules::new(&access.rules, metrics)));
    }
    // 4. rate limits, then caps on calls in flight, then daily budgets: a call counts
    //    against its budget only once everything else admitted it.
    if !access.limits.is_empty() {
        let limits = super::limits::Limits::new(&access.limits, metrics);
        steps.push(Arc::new(match buckets {
            Some(buckets) => limits.shared(buckets.clone()),
            None => limits,
        }));
    }
    if !access.concurrency.is_empty() {
        steps.push(Arc::new(super::concurrency::Concurrency::new(
            &access.concurrency,
            metrics,
        )));
    }
    if let Some(counts) = counts.filter(|_| !access.budgets.is_empty()) {
        steps.push(Arc::new(super::budgets::Budgets::new(
            &access.budgets,
            access.budget_flush,
            counts.clone(),
            metrics,
        )));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(servers: &str) -> Vec<&'static str> {
        let config =
            switchboard_config::parse(servers, switchboard_config::ConfigFormat::Native, None)
                .expect("valid config");
        let db = Db::open(None).expect("in memory");
        let (_, chain) =
            declared(&config, Vec::new(), &Metrics::default(), &db, None).expect("built");
        chain.names()
    }

    #[test]
    fn validation_is_in_the_default_chain_and_out_when_every_server_turns_it_off() {
        let server =
            |name: &str, validate: &str| format!("[servers.{name}]\ncommand = \"x\"\n{validate}\n");
        assert_eq!(chain(&server("a", "")), ["validate"]);
        assert_eq!(
            chain(&(server("a", "validate = false") + server("b", "").as_str())),
            ["validate"]
        );
        // Every server off, no [access]: the empty chain (one branch per call).
        let all_off = server("a", "validate = false") + server("b", "validate = false").as_str();
        assert!(chain(&all_off).is_empty());
        // No server in the file: runtime registrations validate by default.
        assert_eq!(chain(""), ["validate"]);
    }

    #[test]
    fn limits_then_concurrency_caps_then_budgets_the_last_access_step() {
        let config = "[servers.a]\ncommand = \"x\"\nvalidate = false\n\
                      [[access.budgets]]\ncalls = 5\n\
                      [[access.concurrency]]\nmax = 2\n\
                      [[access.limits]]\nrequests = 5\n\
                      [[access.rules]]\nwhen = \"tool == 'x'\"\n";
        assert_eq!(chain(config), ["rules", "limits", "concurrency", "budgets"]);
    }

    #[test]
    fn approvals_come_after_the_access_steps_and_validation() {
        let config = "[servers.a]\ncommand = \"x\"\n[approvals]\n\
                      [[access.rules]]\nwhen = \"tool == 'x'\"\n";
        assert_eq!(chain(config), ["rules", "validate", "approval"]);
        // Without [approvals]: no step.
        assert_eq!(chain("[servers.a]\ncommand = \"x\"\n"), ["validate"]);
    }

    #[test]
    fn cache_and_compaction_only_when_a_tool_asks_for_them() {
        let plain = "[servers.a]\ncommand = \"x\"\nvalidate = false\n";
        assert!(chain(plain).is_empty());
        let cached = format!("{plain}[servers.a.tools.t]\ncache_ttl_ms = 1000\n");
        assert_eq!(chain(&cached), ["cache"]);
        let both = format!("{cached}compact = true\n[redaction]\n");
        let config =
            switchboard_config::parse(&both, switchboard_config::ConfigFormat::Native, None)
                .unwrap();
        let db = Db::open(None).unwrap();
        let secrets = Arc::new(crate::redact::Secrets::from_config(&config));
        let (_, chain) = declared(
            &config,
            Vec::new(),
            &Metrics::default(),
            &db,
            Some(&secrets),
        )
        .unwrap();
        assert_eq!(chain.names(), ["cache", "compact", "redact"]);
        let read_only = "[servers.a]\ncommand = \"x\"\nvalidate = false\n\
                         trust_annotations = true\ncache_read_only_ms = 500\n";
        assert_eq!(self::chain(read_only), ["cache"]);
    }
}
