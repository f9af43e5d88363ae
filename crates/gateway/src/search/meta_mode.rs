//! Meta mode: a client that chooses it (`/mcp?tools=search`, `switchboard stdio --tools
//! search`, `[gateway] tools = "search"`) sees three tools instead of the catalog —
//! `search_tools`, `call_tool`, `select_tools` — plus the tools it selected.
//!
//! - `search_tools` searches the caller's view (`search`), so it finds only tools the
//!   caller may use;
//! - `call_tool` re-enters the pipeline as the real tool's `tools/call`: resolution
//!   through the view, every step, the terminal's forward — exactly a direct call;
//! - `select_tools` adds tools to this session's own `tools/list` and announces
//!   `list_changed` to this session only (`Change::SessionListChanged`). Selections are
//!   kept per session (`Principal::session`), bounded, and dropped when it ends.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::{Value, json};
use switchboard_search::compact::{META_TOOL_NAMES, meta_tools};

use crate::catalog::{ListKind, Listing};
use crate::error::Error;
use crate::gateway::{Change, ClientCtx, Gateway};
use crate::pipeline::Call;
use crate::reply::Reply;

/// Sessions with a selection kept; past it the least recently changed one is dropped.
const MAX_SESSIONS: usize = 10_000;
/// Tools one session may select.
pub(crate) const MAX_SELECTED: usize = 256;
/// Names one `select_tools` call may give.
const MAX_NAMES_PER_CALL: usize = 64;

/// The tools each session selected, in the order selected.
#[derive(Debug, Default)]
pub(crate) struct Selections {
    sessions: Mutex<HashMap<String, Selection>>,
}

#[derive(Debug, Default)]
struct Selection {
    names: Vec<String>,
    changed: u64,
}

impl Selections {
    /// The names `session` selected.
    pub(crate) fn of(&self, session: &str) -> Vec<String> {
        self.sessions
            .lock()
            .get(session)
            .map(|s| s.names.clone())
            .unwrap_or_default()
    }

    /// Adds `names` to `session`'s selection; returns those newly added. Refuses past
    /// `MAX_SELECTED`.
    pub(crate) fn add(&self, session: &str, names: &[String]) -> Result<Vec<String>, String> {
        let mut sessions = self.sessions.lock();
        let tick = sessions.values().map(|s| s.changed).max().unwrap_or(0) + 1;
        if !sessions.contains_key(session) && sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.changed)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        let selection = sessions.entry(session.to_owned()).or_default();
        let new: Vec<String> = names
            .iter()
            .filter(|name| !selection.names.contains(name))
            .fold(Vec::new(), |mut new, name| {
                if !new.contains(name) {
                    new.push(name.clone());
                }
                new
            });
        if selection.names.len() + new.len() > MAX_SELECTED {
            return Err(format!(
                "a session may select at most {MAX_SELECTED} tools ({} selected)",
                selection.names.len()
            ));
        }
        selection.names.extend(new.iter().cloned());
        selection.changed = tick;
        Ok(new)
    }

    pub(crate) fn forget(&self, session: &str) {
        self.sessions.lock().remove(session);
    }
}

fn text_result(value: Value) -> Value {
    json!({ "content": [{ "type": "text", "text": value.to_string() }], "structuredContent": value })
}

fn tool_error(message: String) -> Value {
    json!({ "content": [{ "type": "text", "text": message }], "isError": true })
}

/// Whether `name` is one of meta mode's tools.
pub(crate) fn is_meta_mode_tool(name: &str) -> bool {
    META_TOOL_NAMES.contains(&name)
}

impl Gateway {
    /// `tools/list` in meta mode: the three tools, then the selected tools this caller
    /// still sees (a selection never outlives the caller's right to the tool).
    pub(crate) fn meta_mode_list(&self, call: &Call<'_>) -> Result<Reply, Error> {
        if call.params.get("cursor").is_some_and(|c| !c.is_null()) {
            return Err(Error::invalid_params("invalid cursor"));
        }
        let mut tools = meta_tools();
        for name in self.inner.selections.of(call.ctx.principal.session()) {
            if let Some((_, tool)) = call.catalog.tool(&name)
                && let Some(target) = call.catalog.resolve_tool(&name)
                && call
                    .view
                    .as_ref()
                    .is_none_or(|v| v.admits(Listing::Tools, &target.server, &name))
            {
                tools.push(tool.to_value());
            }
        }
        Ok(Reply::Value(json!({ "tools": tools })))
    }

    /// Runs `search_tools` (also the catalog meta-tool `switchboard__search_tools`),
    /// `call_tool` or `select_tools`.
    pub(crate) async fn run_meta_mode_tool(
        &self,
        call: &Call<'_>,
        short: &str,
        arguments: &Value,
    ) -> Result<Value, Error> {
        match short {
            "search_tools" => {
                let query = arguments
                    .get("query")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::invalid_params("missing `query`"))?;
                let limit = super::clamp_limit(arguments.get("limit").and_then(Value::as_u64));
                let found = self
                    .search_in(&call.catalog, call.view.as_ref(), query, limit)
                    .await;
                let ranking = found.first().map(|f| f.ranking.as_str());
                let tools: Vec<Value> = found.into_iter().map(|f| f.compact).collect();
                let mut result = json!({ "tools": tools });
                if let Some(ranking) = ranking {
                    result["ranking"] = Value::String(ranking.to_owned());
                }
                if tools_empty(&result) {
                    result["note"] =
                        Value::String("no tool matches this request; try other words".into());
                }
                Ok(text_result(result))
            }
            "call_tool" => {
                let name = arguments
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::invalid_params("missing `name`"))?;
                if is_meta_mode_tool(name) {
                    return Ok(tool_error(format!(
                        "`{name}` is a meta-mode tool: call it directly"
                    )));
                }
                let arguments = match arguments.get("arguments") {
                    None | Some(Value::Null) => json!({}),
                    Some(object @ Value::Object(_)) => object.clone(),
                    Some(_) => return Err(Error::invalid_params("`arguments` must be an object")),
                };
                // A tools/call of its own, through the whole pipeline as the caller: the
                // view resolves it (hidden = unknown) and every step sees the real tool.
                let inner = catalog_ctx(call.ctx);
                let params = json!({ "name": name, "arguments": arguments });
                Box::pin(self.run(&inner, "tools/call", Some(params)))
                    .await
                    .map(Reply::into_value)
            }
            "select_tools" => {
                let names: Vec<String> = arguments
                    .get("names")
                    .and_then(Value::as_array)
                    .ok_or_else(|| Error::invalid_params("missing `names`"))?
                    .iter()
                    .map(|n| {
                        n.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| Error::invalid_params("`names` must be strings"))
                    })
                    .collect::<Result<_, _>>()?;
                if names.len() > MAX_NAMES_PER_CALL {
                    return Err(Error::invalid_params(format!(
                        "at most {MAX_NAMES_PER_CALL} names per call"
                    )));
                }
                // Only what this caller sees can be selected; a hidden tool is as unknown
                // as one that does not exist.
                let (known, unknown): (Vec<String>, Vec<String>) =
                    names.into_iter().partition(|name| {
                        call.catalog.resolve_tool(name).is_some_and(|target| {
                            call.view
                                .as_ref()
                                .is_none_or(|v| v.admits(Listing::Tools, &target.server, name))
                        })
                    });
                if !unknown.is_empty() {
                    return Ok(tool_error(format!(
                        "unknown tools: {}; find names with search_tools",
                        unknown.join(", ")
                    )));
                }
                let session = call.ctx.principal.session();
                let added = match self.inner.selections.add(session, &known) {
                    Ok(added) => added,
                    Err(refusal) => return Ok(tool_error(refusal)),
                };
                if !added.is_empty() {
                    let _ = self.inner.changes.send(Change::SessionListChanged {
                        kind: ListKind::Tools,
                        session: session.to_owned(),
                    });
                }
                Ok(text_result(json!({
                    "selected": self.inner.selections.of(session),
                    "added": added,
                })))
            }
            other => Err(Error::MethodNotFound(other.to_owned())),
        }
    }
}

fn tools_empty(result: &Value) -> bool {
    result["tools"].as_array().is_some_and(Vec::is_empty)
}

/// The caller as a catalog-mode client, for the call `call_tool` makes: the real tool
/// resolves by its name, never as a meta-mode tool.
fn catalog_ctx(ctx: &ClientCtx) -> ClientCtx {
    let mut inner = ctx.clone();
    inner.tools_mode = switchboard_config::ToolsMode::Catalog;
    inner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selections_are_per_session_deduplicated_and_bounded() {
        let selections = Selections::default();
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            selections.add("a", &names(&["x", "y", "x"])).unwrap(),
            ["x", "y"]
        );
        assert!(selections.add("a", &names(&["x"])).unwrap().is_empty());
        assert_eq!(selections.of("a"), ["x", "y"]);
        assert!(selections.of("b").is_empty());
        let many: Vec<String> = (0..MAX_SELECTED).map(|i| format!("t{i}")).collect();
        assert!(selections.add("a", &many).is_err());
        assert_eq!(selections.of("a").len(), 2, "refused whole");
        selections.forget("a");
        assert!(selections.of("a").is_empty());
    }
}
