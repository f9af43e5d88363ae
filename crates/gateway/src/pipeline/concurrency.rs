//! `concurrency`: caps on calls in flight (`[[access.concurrency]]`): at most `max` calls
//! at once for each tenant, principal, server, tool or for everyone, of the matching
//! servers and tools. A call over the cap waits up to `wait_ms` for a slot (default: not
//! at all), then is refused: JSON-RPC error -31007 with `data.step = "concurrency"`,
//! counted in `switchboard_access_refusals_total{step="concurrency"}`.
//!
//! A slot is a semaphore permit kept in the call's [`Held`](super::Held): it is released
//! when the call ends however it ends — answered, failed, refused by a later step, or
//! abandoned by a client that went away (the pipeline's future dropped, the slot with
//! it). A call waiting for a slot stops waiting when its client cancels.
//!
//! Memory: a key's semaphore exists only while a call holds or waits for one of its
//! slots; the last one out removes it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use switchboard_config::ConcurrencyCap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::limits::scope_key;
use super::{Call, Flow, Hooks, Step, StepFuture, Target};
use crate::audit::Decision;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::principal::Principal;

type Semaphores = Arc<Mutex<HashMap<String, Arc<Semaphore>>>>;

struct Cap {
    spec: ConcurrencyCap,
    semaphores: Semaphores,
}

pub struct Concurrency {
    caps: Vec<Cap>,
    refusals: Counter,
}

/// One key's semaphore, taken out of its cap's map; the last holder puts the idle
/// semaphore away (removes it from the map).
struct Entry {
    semaphore: Arc<Semaphore>,
    semaphores: Semaphores,
    key: String,
}

impl Drop for Entry {
    fn drop(&mut self) {
        let mut map = self.semaphores.lock();
        // Two references left — the map's and this one — means nobody holds a permit
        // (each permit holds a reference), waits for one, or is about to take one (they
        // clone under this lock).
        if Arc::strong_count(&self.semaphore) == 2
            && map
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.semaphore))
        {
            map.remove(&self.key);
        }
    }
}

/// A slot: one call in flight under one cap. Dropping it frees the slot.
struct Slot {
    // Field order matters: the permit goes first, then the entry looks whether the
    // semaphore became idle.
    _permit: OwnedSemaphorePermit,
    _entry: Entry,
}

impl Cap {
    fn entry(&self, key: String) -> Entry {
        let semaphore = self
            .semaphores
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.spec.max as usize)))
            .clone();
        Entry {
            semaphore,
            semaphores: self.semaphores.clone(),
            key,
        }
    }

    /// The number of keys with a semaphore (tests).
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.semaphores.lock().len()
    }
}

impl Concurrency {
    pub fn new(specs: &[ConcurrencyCap], metrics: &Metrics) -> Concurrency {
        Concurrency {
            caps: specs
                .iter()
                .map(|spec| Cap {
                    spec: spec.clone(),
                    semaphores: Semaphores::default(),
                })
                .collect(),
            refusals: metrics.access_refusal("concurrency"),
        }
    }

    /// A slot under every cap that matches the call, or a refusal (no slot kept) with
    /// the path of the cap that refused (`None`: the client cancelled while waiting).
    async fn acquire(
        &self,
        principal: &Principal,
        server: &str,
        exposed: &str,
        cancel: &CancellationToken,
    ) -> Result<Vec<Slot>, (Option<&str>, Error)> {
        let mut slots = Vec::new();
        for cap in &self.caps {
            if !(cap.spec.servers.matches(server) && cap.spec.tools.matches(exposed)) {
                continue;
            }
            let entry = cap.entry(scope_key(cap.spec.per, principal, server, exposed));
            let permit = match entry.semaphore.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) if cap.spec.wait.is_zero() => return Err(self.refuse(&cap.spec)),
                // Waits (bounded) for a call of the same key to end.
                Err(_) => {
                    let wait = tokio::time::timeout(
                        cap.spec.wait,
                        entry.semaphore.clone().acquire_owned(),
                    );
                    tokio::select! {
                        acquired = wait => match acquired {
                            Ok(Ok(permit)) => permit,
                            _ => return Err(self.refuse(&cap.spec)),
                        },
                        () = cancel.cancelled() => return Err((None, Error::Cancelled)),
                    }
                }
            };
            slots.push(Slot {
                _permit: permit,
                _entry: entry,
            });
        }
        Ok(slots)
    }

    fn refuse<'a>(&self, spec: &'a ConcurrencyCap) -> (Option<&'a str>, Error) {
        self.refusals.inc();
        let waited = if spec.wait.is_zero() {
            String::new()
        } else {
            format!(" for {} ms", spec.wait.as_millis())
        };
        let error = Error::limited(
            "concurrency",
            format!(
                "concurrency cap {} reached: at most {} calls in flight per {}; no slot freed{waited}",
                spec.path,
                spec.max,
                spec.per.as_str()
            ),
            None,
        );
        (Some(spec.path.as_str()), error)
    }
}

impl Step for Concurrency {
    fn name(&self) -> &'static str {
        "concurrency"
    }

    fn hooks(&self) -> Hooks {
        Hooks::BEFORE
    }

    fn before<'a>(&'a self, call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        Box::pin(async move {
            if let Target::Upstream(route) = &call.target {
                let acquired = self
                    .acquire(
                        &call.ctx.principal,
                        &route.server,
                        &route.exposed,
                        &call.ctx.cancel,
                    )
                    .await;
                match acquired {
                    Ok(slots) => {
                        for slot in slots {
                            call.held.hold(slot);
                        }
                    }
                    Err((cap, error)) => {
                        if let Some(cap) = cap {
                            call.notes.decide(Decision::Denied {
                                step: "concurrency",
                                rule: Some(cap.to_owned()),
                            });
                        }
                        return Err(error);
                    }
                }
            }
            Ok(Flow::Continue)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
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

    fn cap(per: LimitScope, max: u32, wait_ms: u64) -> ConcurrencyCap {
        ConcurrencyCap {
            per,
            servers: Glob::new("fx"),
            tools: Glob::new("*"),
            max,
            wait: Duration::from_millis(wait_ms),
            path: "access.concurrency[0]".into(),
        }
    }

    fn refused(result: Result<Vec<Slot>, (Option<&str>, Error)>) -> bool {
        matches!(
            result,
            Err((
                Some("access.concurrency[0]"),
                Error::Limited {
                    step: "concurrency",
                    retry_after: None,
                    ..
                }
            ))
        )
    }

    #[tokio::test]
    async fn at_most_max_in_flight_per_tenant_and_a_dropped_slot_frees_one() {
        let metrics = Metrics::default();
        let caps = Concurrency::new(&[cap(LimitScope::Tenant, 2, 0)], &metrics);
        let never = CancellationToken::new();
        let (a1, a2, b) = (
            principal("a1", "a"),
            principal("a2", "a"),
            principal("b", "b"),
        );
        let first = caps.acquire(&a1, "fx", "fx__sleep", &never).await.unwrap();
        let second = caps.acquire(&a2, "fx", "fx__echo", &never).await.unwrap();
        assert_eq!((first.len(), second.len()), (1, 1));
        assert!(refused(caps.acquire(&a1, "fx", "fx__echo", &never).await));
        // Another tenant, another server: not capped by tenant a's calls.
        assert!(caps.acquire(&b, "fx", "fx__echo", &never).await.is_ok());
        assert!(
            caps.acquire(&a1, "other", "other__x", &never)
                .await
                .unwrap()
                .is_empty()
        );
        drop(first);
        let third = caps.acquire(&a1, "fx", "fx__echo", &never).await.unwrap();
        assert_eq!(caps.refusals.get(), 1);
        // Only keys with calls in flight keep a semaphore.
        assert_eq!(caps.caps[0].keys(), 1);
        drop((second, third));
        assert_eq!(caps.caps[0].keys(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_bounded_wait_gets_a_freed_slot_or_gives_up() {
        let metrics = Metrics::default();
        let caps = Arc::new(Concurrency::new(
            &[cap(LimitScope::Principal, 1, 500)],
            &metrics,
        ));
        let never = CancellationToken::new();
        let alice = principal("alice", "a");
        let held = caps
            .acquire(&alice, "fx", "fx__echo", &never)
            .await
            .unwrap();
        // Freed after 200 ms: the waiter gets it.
        let waiter = {
            let (caps, alice, never) = (caps.clone(), alice.clone(), never.clone());
            tokio::spawn(async move {
                caps.acquire(&alice, "fx", "fx__echo", &never)
                    .await
                    .map_err(|(_, error)| error)
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
        let got = waiter.await.unwrap().unwrap();
        // Not freed within 500 ms: refused.
        let started = tokio::time::Instant::now();
        assert!(refused(
            caps.acquire(&alice, "fx", "fx__echo", &never).await
        ));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        // A client that cancels stops waiting.
        let cancel = CancellationToken::new();
        let waiter = {
            let (caps, alice, cancel) = (caps.clone(), alice.clone(), cancel.clone());
            tokio::spawn(async move {
                caps.acquire(&alice, "fx", "fx__echo", &cancel)
                    .await
                    .map_err(|(cap, error)| (cap.is_some(), error))
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancel.cancel();
        assert!(matches!(
            waiter.await.unwrap(),
            Err((false, Error::Cancelled))
        ));
        drop(got);
        assert_eq!(caps.caps[0].keys(), 0, "no semaphore left behind");
    }

    #[tokio::test]
    async fn an_abandoned_call_releases_its_slot() {
        let metrics = Metrics::default();
        let caps = Arc::new(Concurrency::new(&[cap(LimitScope::Tenant, 1, 0)], &metrics));
        let never = CancellationToken::new();
        let alice = principal("alice", "a");
        // A call that holds its slot in a task, then the task is aborted mid-call (a client
        // that went away drops the pipeline's future the same way).
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let task = {
            let (caps, alice, never) = (caps.clone(), alice.clone(), never.clone());
            tokio::spawn(async move {
                let _slots = caps
                    .acquire(&alice, "fx", "fx__sleep", &never)
                    .await
                    .unwrap();
                let _ = held_tx.send(());
                std::future::pending::<()>().await;
            })
        };
        held_rx.await.unwrap();
        assert!(refused(
            caps.acquire(&alice, "fx", "fx__echo", &never).await
        ));
        task.abort();
        let _ = task.await;
        assert_eq!(
            caps.acquire(&alice, "fx", "fx__echo", &never)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
