//! Run snapshots: a client session pinned to the catalog it started with. A snapshot is
//! an immutable catalog (`Arc<Catalog>`, sharing the server lists of its time), kept
//! here under an id; a pinned session's `tools/list` is served from it, and its
//! `tools/call` runs on the live catalog only when the tool did not change incompatibly
//! since (`compat`), else it is refused naming the change.
//!
//! How a request is pinned (`_meta["io.switchboard/snapshot"]`, or the HTTP header
//! `Switchboard-Snapshot`, which the face copies there):
//! - `"pin"`: pin to the live catalog (a session already pinned keeps its snapshot);
//! - `"refresh"`: pin to the live catalog, replacing the session's snapshot;
//! - `"live"`: unpinned (a legacy session drops its pin);
//! - any other string: a snapshot id, as returned in `_meta` of a pinned `tools/list`.
//!
//! Legacy sessions keep their pin here, by session id, until they refresh, go live or
//! end. Stateless (2026-07-28) requests are pinned only by the id they send. A key with
//! `snapshot = "pin"` pins its legacy sessions at their first list or call, and has its
//! modern `tools/list` results carry a snapshot id.
//!
//! Bounds: at most `[registry] max_snapshots` snapshots (the least recently used is
//! dropped), each for at most `snapshot_max_age_ms` after it was taken; sessions pinned to
//! the same catalog share one snapshot. A dropped or unknown id (also one from before a
//! restart) is answered with `Refusal::Expired`, which says how to refresh.

pub mod compat;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::catalog::{Catalog, Listing, View};
use crate::error::{Error, Kind};
use crate::pipeline::Target;

/// The request `_meta` key that asks for a snapshot (and the result `_meta` key that
/// names it).
pub const META_KEY: &str = "io.switchboard/snapshot";
/// The HTTP header the face copies into `_meta[META_KEY]`.
pub const HEADER: &str = "switchboard-snapshot";

/// Legacy sessions whose pins are kept; past this the least recently used session's pin
/// is dropped (it then sees the live catalog). Above the face's own session bounds.
const MAX_SESSIONS: usize = 20_000;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ask<'a> {
    Pin,
    Refresh,
    Live,
    Id(&'a str),
}

impl<'a> Ask<'a> {
    /// The ask in a request's params, if any.
    pub(crate) fn of(params: &'a Value) -> Option<Ask<'a>> {
        let value = params.get("_meta")?.get(META_KEY)?.as_str()?;
        Some(match value {
            "pin" => Ask::Pin,
            "refresh" => Ask::Refresh,
            "live" => Ask::Live,
            id => Ask::Id(id),
        })
    }
}

/// Why a pinned request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The snapshot is gone: older than the age bound, dropped for room, or unknown.
    Expired {
        snapshot: String,
        max_snapshots: usize,
        max_age: Duration,
    },
    /// The tool changed upstream in a way calls made from the snapshot may not survive.
    Incompatible {
        snapshot: String,
        tool: String,
        changes: Vec<String>,
    },
    /// The tool is no longer offered.
    Removed { snapshot: String, tool: String },
}

/// How to move to the live catalog, as the error says it.
const REFRESH_HOW: &str = "send `_meta[\"io.switchboard/snapshot\"] = \"refresh\"` (or the \
                           HTTP header `Switchboard-Snapshot: refresh`) with tools/list to \
                           see and pin the current catalog, or \"live\" to unpin";

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Expired {
                snapshot,
                max_snapshots,
                max_age,
            } => write!(
                f,
                "catalog snapshot `{snapshot}` expired (snapshots are kept for at most {} s, \
                 {max_snapshots} at a time); {REFRESH_HOW}",
                max_age.as_secs()
            ),
            Refusal::Incompatible {
                snapshot,
                tool,
                changes,
            } => write!(
                f,
                "tool `{tool}` changed incompatibly since catalog snapshot `{snapshot}` \
                 ({}); the call was not run. To use the new version, {REFRESH_HOW}",
                changes.join("; ")
            ),
            Refusal::Removed { snapshot, tool } => write!(
                f,
                "tool `{tool}` of catalog snapshot `{snapshot}` is no longer offered by its \
                 server; the call was not run. {REFRESH_HOW}"
            ),
        }
    }
}

impl Refusal {
    /// The structured `data` of the JSON-RPC error.
    pub fn data(&self) -> Value {
        let refresh =
            json!({ "_meta": { META_KEY: "refresh" }, "header": "Switchboard-Snapshot: refresh" });
        match self {
            Refusal::Expired {
                snapshot,
                max_snapshots,
                max_age,
            } => json!({
                "step": "snapshot",
                "reason": "expired",
                "snapshot": snapshot,
                "maxSnapshots": max_snapshots,
                "maxAgeMs": u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
                "refresh": refresh,
            }),
            Refusal::Incompatible {
                snapshot,
                tool,
                changes,
            } => json!({
                "step": "snapshot",
                "reason": "incompatible",
                "snapshot": snapshot,
                "tool": tool,
                "changed": changes,
                "refresh": refresh,
            }),
            Refusal::Removed { snapshot, tool } => json!({
                "step": "snapshot",
                "reason": "removed",
                "snapshot": snapshot,
                "tool": tool,
                "refresh": refresh,
            }),
        }
    }
}

/// A request's pin: the snapshot it sees, and its id.
#[derive(Clone, Debug)]
pub(crate) struct Pinned {
    pub(crate) id: Arc<str>,
    pub(crate) catalog: Arc<Catalog>,
    /// When the snapshot was taken (its expiry follows).
    taken: Instant,
    max_age: Duration,
}

impl Pinned {
    /// What a pinned result's `_meta[META_KEY]` says.
    pub(crate) fn meta(&self) -> Value {
        let left = self.max_age.saturating_sub(self.taken.elapsed());
        json!({
            "id": &*self.id,
            "expiresInMs": u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

struct Held {
    id: Arc<str>,
    catalog: Arc<Catalog>,
    taken: Instant,
    /// Recency, for eviction at the count bound.
    used: u64,
}

#[derive(Default)]
struct State {
    next: u64,
    tick: u64,
    held: HashMap<u64, Held>,
    /// The most recently taken snapshot (a pin of the same catalog shares it).
    newest: Option<u64>,
    /// Legacy sessions' pins: session id → (snapshot number, recency).
    sessions: HashMap<Arc<str>, (u64, u64)>,
}

/// The gateway's snapshots and legacy sessions' pins.
pub(crate) struct Snapshots {
    /// Random per process: ids from before a restart are unknown, never another snapshot.
    epoch: u32,
    max_snapshots: usize,
    max_age: Duration,
    state: Mutex<State>,
    /// Bumped when `[access]` is reloaded, so a snapshot's cached views are not reused
    /// under new rules.
    rules: AtomicU64,
}

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Snapshots")
            .field("held", &state.held.len())
            .field("sessions", &state.sessions.len())
            .finish()
    }
}

impl Snapshots {
    pub(crate) fn new(settings: &switchboard_config::RegistrySettings) -> Snapshots {
        Snapshots {
            epoch: rand::random(),
            max_snapshots: settings.max_snapshots.max(1),
            max_age: settings.snapshot_max_age,
            state: Mutex::new(State::default()),
            rules: AtomicU64::new(0),
        }
    }

    /// `[access]` changed: views of kept snapshots are rebuilt under the new rules.
    pub(crate) fn rules_changed(&self) {
        self.rules.fetch_add(1, Ordering::Relaxed);
    }

    /// The key a caller's view of a snapshot is cached under (its filter's key, made
    /// distinct per `[access]` generation).
    pub(crate) fn view_key(&self, filter_key: &str) -> String {
        format!(
            "snapshot:{}\u{1f}{filter_key}",
            self.rules.load(Ordering::Relaxed)
        )
    }

    /// How many snapshots are kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().held.len()
    }

    fn number(&self, id: &str) -> Option<u64> {
        let (epoch, number) = id.split_once('-')?;
        (u32::from_str_radix(epoch, 16).ok()? == self.epoch).then_some(())?;
        number.parse().ok()
    }

    fn expired(&self, id: &str) -> Error {
        Error::Snapshot(Arc::new(Refusal::Expired {
            snapshot: id.chars().take(64).collect(),
            max_snapshots: self.max_snapshots,
            max_age: self.max_age,
        }))
    }

    fn pinned(&self, held: &Held) -> Pinned {
        Pinned {
            id: held.id.clone(),
            catalog: held.catalog.clone(),
            taken: held.taken,
            max_age: self.max_age,
        }
    }

    /// Drops snapshots past the age bound.
    fn sweep(&self, state: &mut State, now: Instant) {
        let max_age = self.max_age;
        state
            .held
            .retain(|_, held| now.saturating_duration_since(held.taken) <= max_age);
        if state.newest.is_some_and(|n| !state.held.contains_key(&n)) {
            state.newest = None;
        }
    }

    /// Pins the live catalog: the newest snapshot when it is that catalog, else a new
    /// one (the least recently used dropped for room).
    fn take(&self, state: &mut State, live: &Arc<Catalog>, now: Instant) -> u64 {
        self.sweep(state, now);
        state.tick += 1;
        let tick = state.tick;
        if let Some(newest) = state.newest
            && let Some(held) = state.held.get_mut(&newest)
            && Arc::ptr_eq(&held.catalog, live)
        {
            held.used = tick;
            return newest;
        }
        while state.held.len() >= self.max_snapshots {
            let Some(oldest) = state
                .held
                .iter()
                .min_by_key(|(_, held)| held.used)
                .map(|(n, _)| *n)
            else {
                break;
            };
            state.held.remove(&oldest);
        }
        state.next += 1;
        let number = state.next;
        state.held.insert(
            number,
            Held {
                id: format!("{:08x}-{number}", self.epoch).into(),
                catalog: live.clone(),
                taken: now,
                used: tick,
            },
        );
        state.newest = Some(number);
        number
    }

    /// The snapshot `number`, if still kept (and within its age).
    fn open(&self, state: &mut State, number: u64, now: Instant) -> Option<Pinned> {
        state.tick += 1;
        let tick = state.tick;
        let held = state.held.get_mut(&number)?;
        if now.saturating_duration_since(held.taken) > self.max_age {
            state.held.remove(&number);
            return None;
        }
        held.used = tick;
        let held = &state.held[&number];
        Some(self.pinned(held))
    }

    fn pin_session(&self, state: &mut State, session: &str, number: u64) {
        let tick = state.tick;
        if !state.sessions.contains_key(session)
            && state.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = state
                .sessions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(session, _)| session.clone())
        {
            state.sessions.remove(&oldest);
        }
        state.sessions.insert(session.into(), (number, tick));
    }

    /// The id text of snapshot `number` (it may have been dropped since).
    fn id_of(&self, number: u64) -> String {
        format!("{:08x}-{number}", self.epoch)
    }

    /// The pin of one request: `session` is the legacy session (`None` for a stateless
    /// request), `configured` whether its key pins by configuration, `live` the catalog
    /// it would see unpinned. `Ok(None)`: the request is not pinned.
    pub(crate) fn for_request(
        &self,
        ask: Option<Ask<'_>>,
        session: Option<&str>,
        configured: bool,
        live: &Arc<Catalog>,
    ) -> Result<Option<Pinned>, Error> {
        let now = Instant::now();
        let mut state = self.state.lock();
        let state = &mut *state;
        let opened = |state: &mut State, number: u64| {
            self.open(state, number, now)
                .ok_or_else(|| self.expired(&self.id_of(number)))
        };
        match (ask, session) {
            (Some(Ask::Live), Some(session)) => {
                state.sessions.remove(session);
                Ok(None)
            }
            (Some(Ask::Live), None) => Ok(None),
            (Some(Ask::Refresh), _) | (Some(Ask::Pin), None) => {
                let number = self.take(state, live, now);
                if let Some(session) = session {
                    self.pin_session(state, session, number);
                }
                opened(state, number).map(Some)
            }
            (Some(Ask::Id(id)), _) => {
                let number = self.number(id).ok_or_else(|| self.expired(id))?;
                let pinned = self
                    .open(state, number, now)
                    .ok_or_else(|| self.expired(id))?;
                if let Some(session) = session {
                    self.pin_session(state, session, number);
                }
                Ok(Some(pinned))
            }
            (ask @ (Some(Ask::Pin) | None), Some(session)) => {
                if let Some(&(number, _)) = state.sessions.get(session) {
                    state.tick += 1;
                    let tick = state.tick;
                    if let Some(entry) = state.sessions.get_mut(session) {
                        entry.1 = tick;
                    }
                    return opened(state, number).map(Some);
                }
                if ask.is_none() && !configured {
                    return Ok(None);
                }
                let number = self.take(state, live, now);
                self.pin_session(state, session, number);
                opened(state, number).map(Some)
            }
            (None, None) if configured => {
                let number = self.take(state, live, now);
                opened(state, number).map(Some)
            }
            (None, None) => Ok(None),
        }
    }

    /// Whether a legacy session is pinned (it is then not told of tool list changes).
    pub(crate) fn session_pinned(&self, session: &str) -> bool {
        let state = self.state.lock();
        !state.sessions.is_empty() && state.sessions.contains_key(session)
    }

    /// A legacy session ended: its pin goes (the snapshot stays until its bounds).
    pub(crate) fn forget(&self, session: &str) {
        let mut state = self.state.lock();
        if !state.sessions.is_empty() {
            state.sessions.remove(session);
        }
    }
}

/// Checks a pinned `tools/call` once it resolved (or failed to) in the live catalog
/// `live` through the caller's `view`: a tool of the snapshot that is gone is
/// `Refusal::Removed`, one that changed incompatibly `Refusal::Incompatible`. A tool the
/// snapshot did not have (added since) and any other request pass as resolved.
pub(crate) fn check_call(
    pinned: &Pinned,
    live: &Catalog,
    view: Option<&View>,
    resolved: Result<Target, Error>,
) -> Result<Target, Error> {
    match resolved {
        Ok(Target::Upstream(route)) if route.kind == Kind::Tool => {
            let (Some((_, old)), Some((_, new))) = (
                pinned.catalog.tool(&route.exposed),
                live.tool(&route.exposed),
            ) else {
                return Ok(Target::Upstream(route));
            };
            if old.same_item(new) {
                return Ok(Target::Upstream(route));
            }
            match compat::judge(old.upstream(), new.upstream()) {
                compat::Verdict::Compatible => Ok(Target::Upstream(route)),
                compat::Verdict::Incompatible(changes) => {
                    Err(Error::Snapshot(Arc::new(Refusal::Incompatible {
                        snapshot: pinned.id.to_string(),
                        tool: route.exposed,
                        changes,
                    })))
                }
            }
        }
        Err(Error::Unknown {
            kind: Kind::Tool,
            name,
            suggestions,
        }) => {
            // Gone from the live catalog, but the snapshot showed it to this caller.
            let shown = pinned.catalog.tool(&name).is_some_and(|(index, _)| {
                view.is_none_or(|view| {
                    view.admits(Listing::Tools, pinned.catalog.tool_owner(index), &name)
                })
            });
            if shown {
                Err(Error::Snapshot(Arc::new(Refusal::Removed {
                    snapshot: pinned.id.to_string(),
                    tool: name,
                })))
            } else {
                Err(Error::Unknown {
                    kind: Kind::Tool,
                    name,
                    suggestions,
                })
            }
        }
        other => other,
    }
}

/// Adds the pin's `_meta[META_KEY]` to a list result.
pub(crate) fn decorate(pinned: &Pinned, reply: crate::reply::Reply) -> crate::reply::Reply {
    use crate::reply::Reply;
    let add = |rest: &mut Value| {
        if let Some(object) = rest.as_object_mut() {
            let meta = object
                .entry("_meta")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(meta) = meta.as_object_mut() {
                meta.insert(META_KEY.to_owned(), pinned.meta());
            }
        }
    };
    match reply {
        Reply::Value(mut value) => {
            add(&mut value);
            Reply::Value(value)
        }
        Reply::Page(mut page) => {
            add(&mut page.rest);
            Reply::Page(page)
        }
    }
}

/// Copies the `Switchboard-Snapshot` header's value into a request's `_meta` (a value
/// the body already has wins).
pub(crate) fn carry_header(value: &str, params: &mut Option<Value>) {
    let params = params.get_or_insert_with(|| Value::Object(Default::default()));
    let Some(object) = params.as_object_mut() else {
        return;
    };
    let meta = object
        .entry("_meta")
        .or_insert_with(|| Value::Object(Default::default()));
    if let Some(meta) = meta.as_object_mut() {
        meta.entry(META_KEY)
            .or_insert_with(|| Value::String(value.trim().to_owned()));
    }
}

/// Removes the snapshot ask from a request's `_meta` (it is the gateway's, not the
/// upstream's).
pub(crate) fn strip(params: &mut Value) {
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.remove(META_KEY);
    }
}

#[cfg(test)]
mod tests;
