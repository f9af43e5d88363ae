//! Redaction of results (`[redaction]`): a pipeline step whose `after` hook takes personal
//! data and credentials out of what upstreams answer, before any client sees it.
//!
//! - `detect` — the detectors (emails, phone numbers, Luhn-checked card numbers,
//!   mod-97-checked IBANs, cloud keys, GitHub/Slack tokens, JWTs, private-key blocks,
//!   generic `sk-…` keys, configured regexes), one `RegexSet` pass per string;
//! - `secrets` — the `secret` detector: the gateway's own injected values, literal;
//! - `policy` — which detectors apply to a call and with which action (per server/tool
//!   globs);
//! - `apply` — the [`Redactor`]: which strings of a result are looked at, and what `mask`,
//!   `hash`, `drop` and `block` do to them.
//!
//! The step applies to `tools/call`, `resources/read` and `prompts/get` results (and an
//! upstream's error for them), on every face and era and through `switchboard__call`. What
//! it found is counted in `switchboard_redactions_total{server, detector, action}` and
//! left for the audit step in the call's [`Call::redaction`] slot.

mod apply;
mod detect;
mod policy;
mod secrets;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;
use switchboard_config::RedactionSettings;

pub use apply::Redactor;
pub use secrets::Secrets;

use crate::error::Error;
use crate::metrics::Metrics;
use crate::pipeline::{Call, Hooks, Step, StepFuture, Target};
use crate::reply::Reply;

/// What redaction did to one call's result: for the audit record, and for tests. Kept in
/// [`Call::redaction`] when anything was found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RedactionCounts {
    /// Findings per detector name.
    pub detectors: BTreeMap<String, u32>,
    /// Content blocks removed (`drop`).
    pub dropped: u32,
    /// The whole result was withheld (`block`).
    pub blocked: bool,
}

impl RedactionCounts {
    pub fn total(&self) -> u32 {
        self.detectors.values().sum()
    }
}

/// The pipeline step (order 8, innermost: it sees the upstream's answer first).
pub struct Redact {
    redactor: Redactor,
    metrics: crate::metrics::RedactionMetrics,
}

impl Redact {
    pub fn new(settings: &RedactionSettings, secrets: Arc<Secrets>, metrics: &Metrics) -> Redact {
        Redact {
            redactor: Redactor::new(settings, secrets),
            metrics: metrics.redaction(),
        }
    }

    /// Redacts one outcome of `method` on `route`; `Some` when anything was found.
    fn redact(
        &self,
        method: &str,
        server: &str,
        name: &str,
        outcome: &mut Result<Reply, Error>,
    ) -> Option<RedactionCounts> {
        match outcome {
            Ok(reply) => {
                let counts =
                    self.redactor
                        .redact_result(method, server, name, reply.value_mut())?;
                if counts.blocked {
                    let message = self.redactor.withheld_message(&counts);
                    *outcome = match method {
                        // A tool's result is for the model: it learns why, as a tool error.
                        "tools/call" => Ok(Reply::Value(json!({
                            "content": [{ "type": "text", "text": message }],
                            "isError": true,
                        }))),
                        _ => Err(Error::denied("redact", message)),
                    };
                }
                Some(counts)
            }
            Err(Error::Rpc(error)) => self.redactor.redact_error(server, name, error),
            Err(_) => None,
        }
    }
}

impl Step for Redact {
    fn name(&self) -> &'static str {
        "redact"
    }

    fn hooks(&self) -> Hooks {
        Hooks::AFTER
    }

    fn after<'a>(
        &'a self,
        call: &'a Call<'_>,
        outcome: &'a mut Result<Reply, Error>,
    ) -> StepFuture<'a, ()> {
        if let Target::Upstream(route) = &call.target
            && matches!(call.method, "tools/call" | "resources/read" | "prompts/get")
            && let Some(counts) = self.redact(call.method, &route.server, &route.exposed, outcome)
        {
            self.metrics.record(&route.server, &counts);
            // For the audit record (the audit step's `after` runs later).
            call.notes.add_redactions(
                counts
                    .detectors
                    .iter()
                    .map(|(detector, n)| (detector.as_str(), u64::from(*n))),
            );
        }
        Box::pin(std::future::ready(Ok(())))
    }
}
