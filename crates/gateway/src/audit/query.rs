//! Finding records: newest first, by principal, server, tool, decision, outcome and time,
//! for the admin API (`GET /admin/audit`) and the CLI. A query reads at most
//! [`MAX_SCAN`] records; when it stops early it says where to go on (`next_before`).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::store::{Snapshot, StoreError};

/// Records read by one query, at most.
pub const MAX_SCAN: usize = 100_000;
/// Records returned by one query, at most.
pub const MAX_LIMIT: usize = 1000;
/// Records are written in the order their calls ended, a few microseconds apart from
/// their `time`; a `since` scan reads this far past the first older record.
const SINCE_SLACK_MS: u64 = 5_000;

/// What to look for; `None` matches anything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub principal: Option<String>,
    pub server: Option<String>,
    pub tool: Option<String>,
    pub decision: Option<String>,
    pub outcome: Option<String>,
    /// Records at or after this time (Unix ms).
    pub since_ms: Option<u64>,
    /// Records before this seq (paging).
    pub before: Option<u64>,
    /// At most this many (capped at [`MAX_LIMIT`]).
    pub limit: usize,
}

/// The members a filter looks at.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    principal: Cow<'a, str>,
    #[serde(borrow, default)]
    server: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool: Option<Cow<'a, str>>,
    #[serde(borrow)]
    decision: Cow<'a, str>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
}

/// One page of matches, newest first.
#[derive(Debug, Default)]
pub struct Page {
    /// Each matching record as stored (its `hash` and `sig` included).
    pub records: Vec<Value>,
    /// Where to go on (`before=`) when the page is full or the scan stopped early.
    pub next_before: Option<u64>,
}

fn matches(wanted: &Option<String>, actual: Option<&str>) -> bool {
    wanted.as_deref().is_none_or(|w| Some(w) == actual)
}

pub fn query(snapshot: &Snapshot, filter: &Filter) -> Result<Page, StoreError> {
    let limit = filter.limit.clamp(1, MAX_LIMIT);
    let since = filter.since_ms.map(super::time::format_ms);
    let stop_before = filter
        .since_ms
        .map(|ms| super::time::format_ms(ms.saturating_sub(SINCE_SLACK_MS)));
    let mut page = Page::default();
    for (scanned, entry) in snapshot.newest_first(filter.before)?.enumerate() {
        let (seq, line) = entry?;
        if scanned == MAX_SCAN {
            page.next_before = Some(seq + 1);
            break;
        }
        let Ok(fields) = serde_json::from_slice::<Fields<'_>>(&line) else {
            continue;
        };
        if let Some(stop) = &stop_before
            && *fields.time < **stop
        {
            break;
        }
        let wanted = since.as_ref().is_none_or(|since| *fields.time >= **since)
            && matches(&filter.principal, Some(&fields.principal))
            && matches(&filter.server, fields.server.as_deref())
            && matches(&filter.tool, fields.tool.as_deref())
            && matches(&filter.decision, Some(&fields.decision))
            && matches(&filter.outcome, fields.outcome.as_deref());
        if !wanted {
            continue;
        }
        if let Ok(value) = serde_json::from_slice(&line) {
            page.records.push(value);
        }
        if page.records.len() == limit {
            page.next_before = Some(seq);
            break;
        }
    }
    Ok(page)
}
