//! `budgets`: daily call budgets (`[[access.budgets]]`): at most `calls` calls per UTC
//! day for each principal, tenant, server, tool or for everyone, of the matching servers
//! and tools. Counted in the embedded database (`ledger.rs`), so a budget survives a
//! restart; with `[cluster]`, in Redis for every replica at once (`cluster::budgets`,
//! exact across replicas; `budget_flush_ms` then does not apply: each admission is one
//! atomic script, and a Redis that cannot be reached refuses the call, retryable).
//!
//! A call counts when this step admits it: after identity, allow-lists, argument rules,
//! rate limits and concurrency caps let it through (it is the last access step), before
//! it is forwarded — whatever the upstream then answers. A refused call counts nothing.
//! The refusal is a JSON-RPC error (-31007, `data.step = "budgets"`) with `retryAfter`
//! (seconds until the next UTC midnight) and `retryAfterMs`, counted in
//! `switchboard_access_refusals_total{step="budgets"}`.
//!
//! Durability (`[access] budget_flush_ms`): the day's counts are exact in memory while
//! the gateway runs, and reach the database at most `budget_flush_ms` (default 100 ms)
//! after the call, and at shutdown. A crash (kill -9, power loss) forgets at most the
//! calls admitted in that last interval, so the day's budget may then allow that many
//! more; it never refuses a call that had room. `budget_flush_ms = 0` commits each
//! admitted call (fsync) before forwarding it — exact across crashes, at the price of a
//! commit per call (0.2–1.5 ms on our test machine, against 5–8 µs for the whole access
//! chain; concurrent calls share one; BENCHMARKS.md); if that commit fails, the call is
//! refused and its count given back.
//!
//! The counts belong to the gateway (`chain::Parts`), not to this step: a reload of
//! `[access]` builds a new step on the same ledger, and the day's counts carry over (a
//! budget whose `calls` changed keeps its count: budgets are keyed by their selectors).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use switchboard_config::DailyBudget;

use super::ledger::{self, Charge, Counts, Spent, Ticket};
use super::limits::scope_key;
use super::{Call, Flow, Hooks, Step, StepFuture, Target};
use crate::audit::Decision;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::principal::Principal;

struct Budget {
    spec: DailyBudget,
    identity: String,
}

pub struct Budgets {
    budgets: Vec<Budget>,
    counts: Counts,
    /// Zero: commit per call (the embedded ledger only).
    flush: Duration,
    refusals: Counter,
    write_failures: Counter,
}

/// What the check decided.
enum Admission {
    /// No budget matches the call.
    Free,
    /// Counted in this process's ledger (in memory).
    Counted(Ticket),
    /// Counted in the cluster's Redis (already as durable as Redis makes it).
    Shared,
}

impl Budgets {
    /// The step for `specs`, counting in the gateway's `counts` (which outlive a reload
    /// of `[access]`, and with them the day's counts).
    pub(crate) fn new(
        specs: &[DailyBudget],
        flush: Duration,
        counts: Counts,
        metrics: &Metrics,
    ) -> Budgets {
        if let Counts::Local(ledger) = &counts {
            if !ledger.is_durable() {
                tracing::warn!(
                    "daily budgets are kept in memory (no `state_dir`): a restart forgets the day's counts"
                );
            }
            ledger.set_flush(flush);
        }
        Budgets {
            budgets: specs
                .iter()
                .map(|spec| Budget {
                    identity: spec.identity(),
                    spec: spec.clone(),
                })
                .collect(),
            counts,
            flush,
            refusals: metrics.access_refusal("budgets"),
            write_failures: metrics.budget_write_failures(),
        }
    }

    /// Counts the call against every budget that matches it, or refuses it (`Err((budget
    /// path, refusal))`). Waits only on the cluster's store (the embedded ledger admits
    /// in memory).
    async fn check(
        &self,
        principal: &Principal,
        server: &str,
        exposed: &str,
    ) -> Result<Admission, (&str, Error)> {
        let matching: Vec<&Budget> = self
            .budgets
            .iter()
            .filter(|b| b.spec.servers.matches(server) && b.spec.tools.matches(exposed))
            .collect();
        if matching.is_empty() {
            return Ok(Admission::Free);
        }
        let charges: Vec<Charge<'_>> = matching
            .iter()
            .map(|budget| Charge {
                budget: &budget.identity,
                scope: scope_key(budget.spec.per, principal, server, exposed),
                limit: budget.spec.calls,
            })
            .collect();
        let spent = match &self.counts {
            Counts::Local(ledger) => match ledger.admit(&charges) {
                Ok(ticket) => return Ok(Admission::Counted(ticket)),
                Err(spent) => spent,
            },
            Counts::Shared(shared) => match shared.admit(&charges).await {
                Ok(Ok(())) => return Ok(Admission::Shared),
                Ok(Err(spent)) => spent,
                Err(unavailable) => {
                    let path = matching[0].spec.path.as_str();
                    tracing::warn!(event = "cluster.budget_unchecked", budget = %path, error = %unavailable, "daily budget not checked; call refused");
                    return Err((
                        path,
                        Error::limited(
                            "budgets",
                            format!("daily budget {path} cannot be checked: {unavailable}"),
                            Some(crate::cluster::events::MAX_BACKOFF),
                        ),
                    ));
                }
            },
        };
        Err(self.refusal(&matching, &spent))
    }

    fn refusal<'s>(&self, matching: &[&'s Budget], spent: &Spent) -> (&'s str, Error) {
        self.refusals.inc();
        let spec = &matching[spent.index].spec;
        (
            spec.path.as_str(),
            Error::limited(
                "budgets",
                format!(
                    "daily budget {} ({} calls per UTC day per {}) spent",
                    spec.path,
                    spec.calls,
                    spec.per.as_str()
                ),
                Some(spent.retry_after),
            ),
        )
    }

    /// Commit-per-call mode: waits until the count is durable; gives it back if not.
    async fn settle(&self, ticket: Ticket) -> Result<Flow, Error> {
        let Counts::Local(ledger) = &self.counts else {
            return Ok(Flow::Continue);
        };
        match ledger::settle(ledger, &ticket).await {
            Ok(()) => Ok(Flow::Continue),
            Err(error) => {
                ledger.refund(&ticket);
                self.write_failures.inc();
                tracing::error!(%error, "a call was refused: its daily budget count could not be committed");
                Err(Error::denied(
                    "budgets",
                    "the call could not be counted against its daily budget (database write failed)",
                ))
            }
        }
    }
}

impl Step for Budgets {
    fn name(&self) -> &'static str {
        "budgets"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        if !matches!(call.target, Target::Upstream(_)) {
            return Box::pin(std::future::ready(Ok(Flow::Continue)));
        }
        Box::pin(async move {
            let Target::Upstream(route) = &call.target else {
                return Ok(Flow::Continue);
            };
            match self
                .check(&call.ctx.principal, &route.server, &route.exposed)
                .await
            {
                Ok(Admission::Counted(ticket)) if self.flush.is_zero() => self.settle(ticket).await,
                Ok(_) => Ok(Flow::Continue),
                Err((budget, error)) => {
                    call.notes.decide(Decision::Denied {
                        step: "budgets",
                        rule: Some(budget.to_owned()),
                    });
                    Err(error)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::db::Db;
    use crate::pipeline::ledger::{Ledger, WallClock};
    use crate::principal::{Face, Identity, Peer};
    use switchboard_config::{Glob, LimitScope};

    fn principal(id: &str, tenant: &str) -> Principal {
        let identity = Identity {
            id: id.into(),
            tenant: Some(tenant.into()),
            roles: vec![],
        };
        Principal::authenticated(Face::Http, "s", Peer::default(), &identity)
    }

    fn budget(per: LimitScope, tools: &str, calls: u64, index: usize) -> DailyBudget {
        DailyBudget {
            per,
            servers: Glob::new("*"),
            tools: Glob::new(tools),
            calls,
            path: format!("access.budgets[{index}]"),
        }
    }

    fn refusal(result: Result<Admission, (&str, Error)>) -> (String, Duration) {
        match result {
            Err((
                path,
                Error::Limited {
                    step: "budgets",
                    reason,
                    retry_after: Some(retry_after),
                },
            )) => {
                assert!(reason.contains(path), "{reason}");
                (reason, retry_after)
            }
            Err((_, other)) => panic!("{other:?}"),
            Ok(_) => panic!("admitted"),
        }
    }

    #[tokio::test]
    async fn every_matching_budget_counts_and_the_first_spent_one_refuses() {
        // 2026-12-10 22:00 UTC.
        let now = Arc::new(AtomicU64::new(20_432 * 86_400 + 22 * 3600));
        let at = now.clone();
        let clock: WallClock =
            Arc::new(move || UNIX_EPOCH + Duration::from_secs(at.load(Ordering::Relaxed)));
        let metrics = Metrics::default();
        let ledger = Arc::new(Ledger::with_clock(
            Arc::new(Db::memory()),
            clock,
            ledger::MAX_KEYS,
        ));
        let budgets = Budgets::new(
            &[
                budget(LimitScope::Tenant, "fx__*", 3, 0),
                budget(LimitScope::Tool, "fx__add", 2, 1),
            ],
            Duration::from_millis(100),
            Counts::Local(ledger.clone()),
            &metrics,
        );
        let (a1, a2, b) = (
            principal("a1", "a"),
            principal("a2", "a"),
            principal("b", "b"),
        );
        assert!(budgets.check(&a1, "fx", "fx__echo").await.is_ok());
        assert!(budgets.check(&a2, "fx", "fx__add").await.is_ok());
        assert!(budgets.check(&b, "fx", "fx__add").await.is_ok());
        // fx__add has had its 2 calls today, whoever made them.
        let (reason, retry_after) = refusal(budgets.check(&a1, "fx", "fx__add").await);
        assert!(reason.contains("access.budgets[1]"), "{reason}");
        assert_eq!(retry_after, Duration::from_secs(2 * 3600));
        // That refusal did not count against tenant a: one call left for it.
        assert!(budgets.check(&a1, "fx", "fx__echo").await.is_ok());
        let (reason, _) = refusal(budgets.check(&a2, "fx", "fx__echo").await);
        assert!(reason.contains("access.budgets[0]"), "{reason}");
        // Outside every glob: not counted.
        assert!(matches!(
            budgets.check(&a1, "other", "other__x").await,
            Ok(Admission::Free)
        ));
        assert_eq!(budgets.refusals.get(), 2);
        // The next UTC day.
        now.store(20_433 * 86_400, Ordering::Relaxed);
        assert!(budgets.check(&a1, "fx", "fx__add").await.is_ok());
        // A reload builds a new step on the same ledger: the day's counts carry over.
        let reloaded = Budgets::new(
            &[budget(LimitScope::Tool, "fx__add", 2, 0)],
            Duration::from_millis(100),
            Counts::Local(ledger),
            &metrics,
        );
        assert!(reloaded.check(&a2, "fx", "fx__add").await.is_ok());
        refusal(reloaded.check(&b, "fx", "fx__add").await);
    }
}
