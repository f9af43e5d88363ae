//! The call pipeline: the one path every client request takes through the gateway.
//!
//! ```text
//!  face ── ClientCtx + method + params ──▶ Gateway::run
//!     1. one catalog snapshot, the caller's view of it (steps' list filters)
//!     2. resolve: exposed name/URI → Target (hidden by the view = unknown)
//!     3. before-steps, in chain order: continue, rewrite params, deny, or answer
//!     4. the terminal (dispatch.rs): a list page of the view, a meta-tool, the
//!        gateway's own answer, or bridge::forward to the upstream
//!     5. after-steps, in reverse order (onion): see and may rewrite the outcome
//!     6. era decoration of the result
//! ```
//!
//! Steps are small modules implementing [`Step`]; their order is declared once, in
//! [`chain::declared`]. A step never touches the faces or the bridge, and nothing but the
//! terminal calls `forward`.
//!
//! Shape: an ordered list of trait objects with before/after hooks (an onion), not a
//! tower layer stack. A tower stack types each layer into the next, so adding a step
//! changes the service's type and every place that names it, and a step cannot look at
//! the whole call (resolved target, snapshot, view) without re-deriving it. Here a step
//! sees the typed [`Call`], the chain is data (built from config at start), and an empty
//! chain costs one branch per hook.

pub mod allow;
pub mod approval;
pub mod audit;
pub mod budgets;
pub mod cache;
pub mod chain;
pub mod compact;
pub mod concurrency;
pub(crate) mod ledger;
pub mod limits;
mod resolve;
pub mod rules;
pub mod validate;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use opentelemetry::context::FutureExt as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::catalog::{Admit, Catalog, Listing, View};
use crate::error::Error;
use crate::gateway::ClientCtx;
use crate::principal::Principal;
use crate::reply::Reply;

pub use resolve::{Route, Target};

/// A boxed step future.
pub type StepFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// One client request, known as a whole.
pub struct Call<'a> {
    /// Who asks, in which session and era, with the face's channels.
    pub ctx: &'a ClientCtx,
    pub method: &'a str,
    /// The request's params as the client sent them (exposed names); before-steps may
    /// rewrite them, and the terminal forwards what they leave.
    pub params: Value,
    /// The snapshot the request resolved against, from start to end.
    pub catalog: Arc<Catalog>,
    /// The caller's view of that snapshot (`None`: everything).
    pub view: Option<Arc<View>>,
    /// What the request addresses.
    pub target: Target,
    /// What steps note about this call for the steps after them (the audit reads them).
    pub notes: Notes,
    /// What steps hold for as long as the call lasts (a concurrency slot).
    pub held: Held,
}

/// What steps tell later steps about one call: why a step decided it (when the outcome
/// alone does not say, e.g. a hidden name answered as nonexistent, or which rule), the
/// redactions made in its result, and the audit step's pending record. Steps see the call
/// by shared reference after the terminal, so this sits behind a lock (uncontended: one
/// call, one task).
#[derive(Default)]
pub struct Notes(parking_lot::Mutex<NoteSet>);

#[derive(Default)]
struct NoteSet {
    decision: Option<crate::audit::Decision>,
    redactions: BTreeMap<String, u64>,
    audit: Option<audit::Ticket>,
    /// The result cache's key for this call, worked out before the terminal (which may
    /// take the params apart), for its `after` to store under.
    cache: Option<cache::Pending>,
}

impl Notes {
    /// A step that refused the call, or answered it in the upstream's place, says why.
    /// The first word stands.
    pub fn decide(&self, decision: crate::audit::Decision) {
        self.0.lock().decision.get_or_insert(decision);
    }

    /// What was decided, if a step said so.
    pub fn decision(&self) -> Option<crate::audit::Decision> {
        self.0.lock().decision.clone()
    }

    /// Adds redactions made in the result, per detector.
    pub fn add_redactions<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut notes = self.0.lock();
        for (detector, count) in counts {
            *notes.redactions.entry(detector.to_owned()).or_default() += count;
        }
    }

    /// The redactions noted so far.
    pub fn redactions(&self) -> BTreeMap<String, u64> {
        self.0.lock().redactions.clone()
    }

    fn hold_ticket(&self, ticket: audit::Ticket) {
        self.0.lock().audit = Some(ticket);
    }

    fn take_ticket(&self) -> Option<audit::Ticket> {
        self.0.lock().audit.take()
    }

    fn hold_cache(&self, pending: cache::Pending) {
        self.0.lock().cache = Some(pending);
    }

    fn take_cache(&self) -> Option<cache::Pending> {
        self.0.lock().cache.take()
    }
}

/// Guards a step keeps for the length of one call, released when the call ends however
/// it ends: answered, refused by a later step, failed, or abandoned — the pipeline's
/// future dropped because the client went away. (An `after` hook would miss the last.)
#[derive(Default)]
pub struct Held(Vec<Box<dyn std::any::Any + Send + Sync>>);

impl Held {
    /// Keeps `guard` until the call ends.
    pub fn hold(&mut self, guard: impl std::any::Any + Send + Sync) {
        self.0.push(Box::new(guard));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Call<'_> {
    /// The upstream server the call goes to, if it goes to one.
    pub fn server(&self) -> Option<&str> {
        match &self.target {
            Target::Upstream(route) => Some(&route.server),
            _ => None,
        }
    }

    /// The arguments of a tool call.
    pub fn arguments(&self) -> Option<&Value> {
        self.params.get("arguments")
    }
}

/// What a before-step decides.
pub enum Flow {
    /// Go on to the next step (the call may have been rewritten).
    Continue,
    /// Answer the client with this instead of forwarding (the step holds the answer,
    /// e.g. an approval still pending).
    Respond(Reply),
}

/// Which entries of a listing a caller sees. A step that restricts what a caller may see
/// returns one per caller; callers with the same key share one rendered view.
#[derive(Clone)]
pub struct Filter {
    /// Same key, same decision for every entry (e.g. a role name).
    pub key: String,
    pub admit: Arc<Admit>,
}

impl Filter {
    /// `admit(listing, server, exposed name or URI)`.
    pub fn new(
        key: impl Into<String>,
        admit: impl Fn(Listing, &str, &str) -> bool + Send + Sync + 'static,
    ) -> Filter {
        Filter {
            key: key.into(),
            admit: Arc::new(admit),
        }
    }
}

/// One step of the pipeline.
pub trait Step: Send + Sync + 'static {
    /// Short stable name, for errors (`data.step` of a denial), logs and metrics.
    fn name(&self) -> &'static str;

    /// Before the terminal: may rewrite `call.params`, deny with a typed reason
    /// ([`Error::denied`]), or answer in the upstream's place.
    fn before<'a>(&'a self, _call: &'a mut Call<'_>) -> StepFuture<'a, Flow> {
        Box::pin(std::future::ready(Ok(Flow::Continue)))
    }

    /// After the terminal, for every step whose `before` let the call pass: sees the
    /// outcome (a denial by a later step included) and may rewrite it.
    fn after<'a>(
        &'a self,
        _call: &'a Call<'_>,
        _outcome: &'a mut Result<Reply, Error>,
    ) -> StepFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// What this caller may see of the lists; `None`: no restriction. It depends on who
    /// calls only (list changes are filtered with it too, outside any request).
    fn filter(&self, _principal: &Principal) -> Option<Filter> {
        None
    }

    /// Whether the step has a `before` / `after` hook worth calling (an empty hook is
    /// skipped without building its future).
    fn hooks(&self) -> Hooks {
        Hooks::BOTH
    }

    /// A request that failed resolution, before any step ran: an unknown name, a name
    /// the caller's view hides (`hidden`: what it would have addressed), malformed params.
    /// Steps that see every request (the audit) see it here. The client gets `error`
    /// either way (hidden answers exactly like unknown), unless this fails.
    fn unresolved<'a>(
        &'a self,
        _ctx: &'a ClientCtx,
        _method: &'a str,
        _params: &'a Value,
        _error: &'a Error,
        _hidden: Option<&'a Target>,
    ) -> StepFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Work the step owns beside the calls (the audit log's writer), started once when
    /// the gateway runs and tracked by it: it must end soon after `shutdown` is cancelled,
    /// finishing what it holds.
    fn background(&self, _shutdown: CancellationToken) -> Option<BackgroundTask> {
        None
    }
}

/// A step's background work.
pub type BackgroundTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Which hooks a step implements.
#[derive(Clone, Copy, Debug)]
pub struct Hooks {
    pub before: bool,
    pub after: bool,
}

impl Hooks {
    pub const BOTH: Hooks = Hooks {
        before: true,
        after: true,
    };
    pub const BEFORE: Hooks = Hooks {
        before: true,
        after: false,
    };
    pub const AFTER: Hooks = Hooks {
        before: false,
        after: true,
    };
    pub const NONE: Hooks = Hooks {
        before: false,
        after: false,
    };
}

/// The ordered steps every call runs through.
#[derive(Clone, Default)]
pub struct Chain {
    steps: Arc<[Arc<dyn Step>]>,
}

impl Chain {
    pub fn new(steps: Vec<Arc<dyn Step>>) -> Chain {
        Chain {
            steps: steps.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.steps.iter().map(|s| s.name()).collect()
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Arc<dyn Step>] {
        &self.steps
    }

    /// The steps' background work, to be spawned by the gateway.
    pub fn background(&self, shutdown: &CancellationToken) -> Vec<BackgroundTask> {
        self.steps
            .iter()
            .filter_map(|step| step.background(shutdown.clone()))
            .collect()
    }

    /// The caller's combined filter: `None` when no step restricts it.
    pub(crate) fn filter(&self, principal: &Principal) -> Option<Filter> {
        let mut filters = self.steps.iter().filter_map(|step| step.filter(principal));
        let first = filters.next()?;
        let rest: Vec<Filter> = filters.collect();
        if rest.is_empty() {
            return Some(first);
        }
        let key = std::iter::once(first.key.as_str())
            .chain(rest.iter().map(|f| f.key.as_str()))
            .collect::<Vec<_>>()
            .join("\u{1f}");
        let all: Vec<Filter> = std::iter::once(first).chain(rest).collect();
        Some(Filter::new(key, move |listing, server, name| {
            all.iter().all(|f| (f.admit)(listing, server, name))
        }))
    }
}

impl crate::gateway::Gateway {
    /// Runs one client request through the pipeline, traced when `[telemetry]` is on.
    pub(crate) async fn run(
        &self,
        ctx: &ClientCtx,
        method: &str,
        params: Option<Value>,
    ) -> Result<Reply, Error> {
        let Some(telemetry) = &self.inner.telemetry else {
            return self.run_chain(ctx, method, params, None).await;
        };
        let request = telemetry.request(ctx, method, params.as_ref());
        // Log lines written while the request runs carry its trace and span ids.
        let outcome = async {
            let outcome = self
                .run_chain(ctx, method, params, Some((telemetry, &request)))
                .await;
            if let Err(error) = &outcome {
                tracing::debug!(method, outcome = error.outcome(), %error, "request failed");
            }
            outcome
        }
        .instrument(crate::telemetry::log_span(&request))
        .await;
        crate::telemetry::end(&request, &outcome);
        outcome
    }

    /// The pipeline itself; `trace`: the tracer and the request's span, when traced.
    async fn run_chain(
        &self,
        ctx: &ClientCtx,
        method: &str,
        params: Option<Value>,
        trace: Option<(&crate::telemetry::Telemetry, &opentelemetry::Context)>,
    ) -> Result<Reply, Error> {
        // Read only if someone watches or it fails (`events::observe`).
        let started = std::time::Instant::now();
        let events = &*self.inner.events;
        let mut params = match params {
            None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
            Some(object @ Value::Object(_)) => object,
            Some(_) => {
                let outcome = Err(Error::invalid_params("params must be an object"));
                crate::events::observe(events, started, &ctx.principal, method, None, &outcome);
                return outcome;
            }
        };
        let chain = self.inner.chain.load();
        // The session's own snapshot when a per-session instance lists differently
        // (views.rs), on the versions its tenant's rollouts give it (rollouts.rs).
        let live = self
            .catalog_for(ctx.principal.session())
            .for_tenant(ctx.principal.tenant());
        // A run snapshot the request is pinned to (snapshot/): its tool list is served
        // from it, its tool calls checked against it; everything else stays live.
        let pinned = self.pin(ctx, method, &mut params, &live);
        let listed = matches!(&pinned, Ok(Some(_))) && method == "tools/list";
        let catalog = match &pinned {
            Ok(Some(pin)) if listed => pin.catalog.clone(),
            _ => live,
        };
        let view = chain.filter(&ctx.principal).map(|filter| {
            if listed {
                let key = self.inner.snapshots.view_key(&filter.key);
                catalog.view(&key, &filter.admit)
            } else {
                catalog.view(&filter.key, &filter.admit)
            }
        });
        let resolved = match &pinned {
            Err(error) => Err(error.clone()),
            Ok(Some(pin)) if method == "tools/call" => crate::snapshot::check_call(
                pin,
                &catalog,
                view.as_deref(),
                self.resolve(ctx, method, &params, &catalog, view.as_deref()),
            ),
            Ok(_) => self.resolve(ctx, method, &params, &catalog, view.as_deref()),
        };
        let pinned = pinned.ok().flatten().filter(|_| listed);
        let finish = |reply: Reply| {
            let reply = self.finish(ctx, method, reply);
            match &pinned {
                Some(pin) => crate::snapshot::decorate(pin, reply),
                None => reply,
            }
        };
        let target = match resolved {
            Ok(target) => target,
            Err(error) if chain.is_empty() => {
                let outcome = Err(error);
                crate::events::observe(events, started, &ctx.principal, method, None, &outcome);
                return outcome;
            }
            Err(error) => {
                // What the view hid would have resolved without it: steps that see every
                // request learn it was hidden; the client cannot tell.
                let hidden = match (&error, &view) {
                    (Error::Unknown { .. }, Some(_)) => {
                        self.resolve(ctx, method, &params, &catalog, None).ok()
                    }
                    _ => None,
                };
                for step in chain.steps.iter() {
                    if let Err(error) = step
                        .unresolved(ctx, method, &params, &error, hidden.as_ref())
                        .await
                    {
                        let outcome = Err(error);
                        crate::events::observe(
                            events,
                            started,
                            &ctx.principal,
                            method,
                            None,
                            &outcome,
                        );
                        return outcome;
                    }
                }
                let outcome = Err(error);
                crate::events::observe(events, started, &ctx.principal, method, None, &outcome);
                return outcome;
            }
        };
        if let (Some((_, request)), Target::Upstream(route)) = (trace, &target) {
            crate::telemetry::resolved(request, &route.server, &route.name);
        }
        let mut call = Call {
            ctx,
            method,
            params,
            catalog,
            view,
            target,
            notes: Notes::default(),
            held: Held::default(),
        };
        if chain.is_empty() {
            let outcome = match trace {
                None => self.terminal(&mut call).await,
                Some((_, request)) => self.terminal(&mut call).with_context(request.clone()).await,
            };
            crate::events::observe(
                events,
                started,
                &ctx.principal,
                method,
                Some(&call.target),
                &outcome,
            );
            return outcome.map(finish);
        }
        let mut passed = 0;
        let mut outcome = None;
        // Traced: one span per step that runs, nested like the hooks (a step's span holds
        // the steps after it and the terminal). Untraced, this stays empty (no allocation).
        let mut spans: Vec<opentelemetry::Context> = Vec::new();
        for step in chain.steps.iter() {
            if let Some((telemetry, request)) = trace {
                let parent = spans.last().unwrap_or(request);
                spans.push(telemetry.step(parent, step.name()));
            }
            if step.hooks().before {
                match step.before(&mut call).await {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Respond(reply)) => outcome = Some(Ok(reply)),
                    Err(error) => outcome = Some(Err(error)),
                }
            }
            if let Some(outcome) = &outcome {
                if let Some(span) = spans.pop() {
                    crate::telemetry::end(&span, outcome);
                }
                break;
            }
            passed += 1;
        }
        let mut outcome = match (outcome, spans.last()) {
            (Some(outcome), _) => outcome,
            (None, None) => self.terminal(&mut call).await,
            (None, Some(innermost)) => {
                self.terminal(&mut call)
                    .with_context(innermost.clone())
                    .await
            }
        };
        for step in chain.steps[..passed].iter().rev() {
            if step.hooks().after
                && let Err(error) = step.after(&call, &mut outcome).await
            {
                outcome = Err(error);
            }
            if let Some(span) = spans.pop() {
                crate::telemetry::end(&span, &outcome);
            }
        }
        crate::events::observe(
            events,
            started,
            &ctx.principal,
            method,
            Some(&call.target),
            &outcome,
        );
        outcome.map(finish)
    }

    /// The run snapshot a request is pinned to, if any (`snapshot/`). Only `tools/list`
    /// and `tools/call` use a pin, so other requests are looked at only when they ask
    /// (a refresh may come with any request); the ask is removed from the params.
    fn pin(
        &self,
        ctx: &ClientCtx,
        method: &str,
        params: &mut Value,
        live: &Arc<Catalog>,
    ) -> Result<Option<crate::snapshot::Pinned>, Error> {
        let ask = crate::snapshot::Ask::of(params);
        let uses = matches!(method, "tools/list" | "tools/call");
        if ask.is_none() && !uses {
            return Ok(None);
        }
        let legacy = ctx.era == switchboard_protocol::Era::Legacy;
        let configured = (legacy || method == "tools/list")
            && self
                .inner
                .access
                .load()
                .as_ref()
                .is_some_and(|access| access.pins_snapshots(ctx.principal.id()));
        let session = legacy.then(|| ctx.principal.session());
        let asked = ask.is_some();
        let pinned = self
            .inner
            .snapshots
            .for_request(ask, session, configured, live);
        if asked {
            crate::snapshot::strip(params);
        }
        // Other requests only carry the ask (a refresh, a pin, an id sent with every
        // request); they are served live and never refused for it.
        if uses { pinned } else { Ok(None) }
    }
}
