//! `limits`: call rates per principal, tenant, server, tool or for everyone
//! (`[[access.limits]]`), as GCRA (governor's keyed limiters): `requests` per `period`, up
//! to `burst` at once. A call counts against every limit whose server and name globs
//! match it; the first limit that refuses answers with a JSON-RPC error carrying
//! `retryAfter`/`retryAfterMs` in `data`, and the refusal is counted in
//! `switchboard_access_refusals_total`.
//!
//! With `[cluster]` the buckets live in Redis instead (`cluster::buckets`): the same GCRA,
//! checked atomically by every replica, so the totals hold for the cluster.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use switchboard_config::{LimitScope, RateLimit};

use super::{Call, Flow, Hooks, Step, StepFuture, Target};
use crate::audit::Decision;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::principal::Principal;

/// Forgotten idle keys are swept every this many checks (keyed limiters otherwise grow
/// with every principal ever seen).
const SWEEP_EVERY: u64 = 4096;

type Keyed = RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock>;

struct Limit {
    spec: RateLimit,
    limiter: Keyed,
}

pub struct Limits {
    limits: Vec<Limit>,
    /// With `[cluster]`: the buckets every replica shares (then `limiter` is unused).
    shared: Option<std::sync::Arc<crate::cluster::buckets::Buckets>>,
    checks: AtomicU64,
    refusals: prometheus_client::metrics::counter::Counter,
}

impl Limits {
    pub fn new(specs: &[RateLimit], metrics: &Metrics) -> Limits {
        let limits = specs
            .iter()
            .filter_map(|spec| {
                let quota = Quota::with_period(spec.period / spec.requests)?
                    .allow_burst(NonZeroU32::new(spec.burst)?);
                Some(Limit {
                    spec: spec.clone(),
                    limiter: RateLimiter::keyed(quota),
                })
            })
            .collect();
        Limits {
            limits,
            shared: None,
            checks: AtomicU64::new(0),
            refusals: metrics.access_refusal("limits"),
        }
    }

    /// Counts against the cluster's shared buckets instead of this process's.
    pub fn shared(mut self, buckets: std::sync::Arc<crate::cluster::buckets::Buckets>) -> Limits {
        self.shared = Some(buckets);
        self
    }

    /// [`Limits::check`] on the shared buckets. A bucket that cannot be reached refuses
    /// the call (retryable): a limit is never skipped silently.
    async fn check_shared(
        &self,
        buckets: &crate::cluster::buckets::Buckets,
        principal: &Principal,
        server: &str,
        name: &str,
    ) -> Result<(), (&str, Error)> {
        use crate::cluster::buckets::Verdict;
        for limit in &self.limits {
            if !(limit.spec.servers.matches(server) && limit.spec.tools.matches(name)) {
                continue;
            }
            let key = scope_key(limit.spec.per, principal, server, name);
            let emission = limit.spec.period / limit.spec.requests.max(1);
            match buckets
                .take(&limit.spec.path, &key, emission, limit.spec.burst)
                .await
            {
                Ok(Verdict::Allowed) => {}
                Ok(Verdict::Refused(retry_after)) => {
                    self.refusals.inc();
                    return Err((limit.spec.path.as_str(), refused(&limit.spec, retry_after)));
                }
                Err(unavailable) => {
                    tracing::warn!(event = "cluster.limit_unchecked", limit = %limit.spec.path, error = %unavailable, "rate limit not checked; call refused");
                    return Err((
                        limit.spec.path.as_str(),
                        Error::limited(
                            "limits",
                            format!(
                                "rate limit {} cannot be checked: {unavailable}",
                                limit.spec.path
                            ),
                            Some(crate::cluster::events::MAX_BACKOFF),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `Err((limit path, refusal))` when a limit refuses the call.
    fn check(&self, principal: &Principal, server: &str, name: &str) -> Result<(), (&str, Error)> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for limit in &self.limits {
                limit.limiter.retain_recent();
                limit.limiter.shrink_to_fit();
            }
        }
        for limit in &self.limits {
            if !(limit.spec.servers.matches(server) && limit.spec.tools.matches(name)) {
                continue;
            }
            let key = scope_key(limit.spec.per, principal, server, name);
            if let Err(not_until) = limit.limiter.check_key(&key) {
                let retry_after = not_until.wait_time_from(limit.limiter.clock().now());
                self.refusals.inc();
                return Err((limit.spec.path.as_str(), refused(&limit.spec, retry_after)));
            }
        }
        Ok(())
    }
}

fn refused(spec: &RateLimit, retry_after: std::time::Duration) -> Error {
    Error::limited(
        "limits",
        format!(
            "rate limit {} ({} per {} ms) reached",
            spec.path,
            spec.requests,
            spec.period.as_millis()
        ),
        Some(retry_after),
    )
}

/// The key a call counts under for `scope` (shared by rate limits, budgets and
/// concurrency caps): the principal, its tenant (`tenant:NAME`; a caller without a tenant
/// counts as its own principal), the server (`server:NAME`), the exposed tool name or URI
/// (`tool:NAME`), or one key for everyone.
pub(super) fn scope_key(
    scope: LimitScope,
    principal: &Principal,
    server: &str,
    exposed: &str,
) -> String {
    match scope {
        LimitScope::Principal => principal.id().to_owned(),
        LimitScope::Tenant => match principal.tenant() {
            Some(tenant) => format!("tenant:{tenant}"),
            None => principal.id().to_owned(),
        },
        LimitScope::Server => format!("server:{server}"),
        LimitScope::Tool => format!("tool:{exposed}"),
        LimitScope::Global => String::new(),
    }
}

impl Step for Limits {
    fn name(&self) -> &'static str {
        "limits"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        if let Some(buckets) = &self.shared {
            return Box::pin(async move {
                let Target::Upstream(route) = &call.target else {
                    return Ok(Flow::Continue);
                };
                match self
                    .check_shared(buckets, &call.ctx.principal, &route.server, &route.exposed)
                    .await
                {
                    Ok(()) => Ok(Flow::Continue),
                    Err((rule, error)) => {
                        call.notes.decide(Decision::RateLimited {
                            rule: Some(rule.to_owned()),
                        });
                        Err(error)
                    }
                }
            });
        }
        let decision = match &call.target {
            Target::Upstream(route) => {
                match self.check(&call.ctx.principal, &route.server, &route.exposed) {
                    Ok(()) => Ok(Flow::Continue),
                    Err((rule, error)) => {
                        call.notes.decide(Decision::RateLimited {
                            rule: Some(rule.to_owned()),
                        });
                        Err(error)
                    }
                }
            }
            _ => Ok(Flow::Continue),
        };
        Box::pin(std::future::ready(decision))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::principal::{Face, Identity, Peer};
    use switchboard_config::Glob;

    fn principal(id: &str, tenant: &str) -> Principal {
        let identity = Identity {
            id: id.into(),
            tenant: Some(tenant.into()),
            roles: vec![],
        };
        Principal::authenticated(Face::Http, "s", Peer::default(), &identity)
    }

    #[test]
    fn exact_at_the_boundary_per_key() {
        let spec = RateLimit {
            per: LimitScope::Tenant,
            servers: Glob::new("*"),
            tools: Glob::new("fx__*"),
            requests: 3,
            period: Duration::from_secs(3600),
            burst: 3,
            path: "access.limits[0]".into(),
        };
        let metrics = Metrics::default();
        let limits = Limits::new(&[spec], &metrics);
        let (a1, a2, b) = (
            principal("a1", "a"),
            principal("a2", "a"),
            principal("b", "b"),
        );
        assert!(limits.check(&a1, "fx", "fx__echo").is_ok());
        assert!(limits.check(&a2, "fx", "fx__echo").is_ok());
        assert!(limits.check(&a1, "fx", "fx__add").is_ok());
        let (rule, refused) = limits.check(&a2, "fx", "fx__echo").unwrap_err();
        assert_eq!(rule, "access.limits[0]");
        let Error::Limited {
            retry_after: Some(retry_after),
            ..
        } = refused
        else {
            panic!("{refused:?}")
        };
        assert!(retry_after > Duration::from_secs(1000), "{retry_after:?}");
        // Another tenant, and names outside the glob, are not counted.
        assert!(limits.check(&b, "fx", "fx__echo").is_ok());
        assert!(limits.check(&a1, "other", "other__x").is_ok());
        assert_eq!(limits.refusals.get(), 1);
    }
}
