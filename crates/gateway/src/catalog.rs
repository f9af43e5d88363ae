//! The merged capability catalog: every server's tools, prompts, resources and resource
//! templates under exposed (namespaced) names, rebuilt as one immutable snapshot whenever a
//! server's lists change, and read lock-free by every request.
//!
//! Invariants: list order is deterministic (servers by name, then each server's own order);
//! every exposed name resolves to exactly one (server, upstream name); entries are the
//! upstream's JSON with only `name` / `uri` / `uriTemplate` rewritten.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use serde_json::Value;
use serde_json::value::RawValue;
use switchboard_protocol::headers::{self, ParamHeader};
use switchboard_protocol::naming::{NameTable, Qualified};
use switchboard_protocol::uri;

/// What one server offers, as it listed it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ServerLists {
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
}

/// The kinds of lists, for refreshes and change notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
}

impl ListKind {
    pub fn changed_notification(self) -> &'static str {
        match self {
            ListKind::Tools => "notifications/tools/list_changed",
            ListKind::Prompts => "notifications/prompts/list_changed",
            ListKind::Resources => "notifications/resources/list_changed",
        }
    }

    pub fn from_notification(method: &str) -> Option<ListKind> {
        match method {
            "notifications/tools/list_changed" => Some(ListKind::Tools),
            "notifications/prompts/list_changed" => Some(ListKind::Prompts),
            "notifications/resources/list_changed" => Some(ListKind::Resources),
            _ => None,
        }
    }
}

/// Entries per page of a merged list.
pub const PAGE_SIZE: usize = 1000;

/// The listings a list change of `kind` concerns.
pub(crate) fn listings_of(kind: ListKind) -> &'static [Listing] {
    match kind {
        ListKind::Tools => &[Listing::Tools],
        ListKind::Prompts => &[Listing::Prompts],
        ListKind::Resources => &[Listing::Resources, Listing::Templates],
    }
}

/// The merged lists a client pages through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    Tools,
    Prompts,
    Resources,
    Templates,
}

impl Listing {
    /// The member of the list result that holds the entries.
    pub fn field(self) -> &'static str {
        match self {
            Listing::Tools => "tools",
            Listing::Prompts => "prompts",
            Listing::Resources => "resources",
            Listing::Templates => "resourceTemplates",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }

    /// The entry member that names it: `name`, `uri` or `uriTemplate`.
    fn key(self) -> &'static str {
        match self {
            Listing::Tools | Listing::Prompts => "name",
            Listing::Resources => "uri",
            Listing::Templates => "uriTemplate",
        }
    }

    const ALL: [Listing; 4] = [
        Listing::Tools,
        Listing::Prompts,
        Listing::Resources,
        Listing::Templates,
    ];
}

/// Views kept per snapshot; past this many distinct callers' views the cache starts over
/// (a new snapshot starts over anyway).
const MAX_VIEWS: usize = 256;

/// Decides whether a caller sees an entry: `(listing, server, exposed name or URI)`.
pub type Admit = dyn Fn(Listing, &str, &str) -> bool + Send + Sync;

/// One caller's view of a snapshot: the entries its filter admits, each listing's pages
/// rendered once per snapshot and view.
pub struct View {
    admit: Arc<Admit>,
    /// Indices into the snapshot's entries, per listing.
    admitted: [Vec<usize>; 4],
    rendered: [OnceLock<Vec<Arc<RawValue>>>; 4],
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field("admitted", &self.admitted.each_ref().map(Vec::len))
            .finish()
    }
}

impl View {
    /// Whether this view shows the named entry of `server`.
    pub fn admits(&self, listing: Listing, server: &str, exposed: &str) -> bool {
        (self.admit)(listing, server, exposed)
    }

    pub fn len(&self, listing: Listing) -> usize {
        self.admitted[listing.slot()].len()
    }

    pub fn is_empty(&self, listing: Listing) -> bool {
        self.len(listing) == 0
    }

    /// The admitted entries `start..end` of a listing.
    pub fn entries<'a>(
        &'a self,
        catalog: &'a Catalog,
        listing: Listing,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let all = catalog.entries(listing);
        self.admitted[listing.slot()][range]
            .iter()
            .map(move |&index| &all[index])
    }
}

/// One tool's argument check in a snapshot: unset until first needed, then the compiled
/// validator, or `None` when the tool's arguments are not checked.
pub(crate) type ToolCheck = OnceLock<Option<Arc<crate::pipeline::validate::Checker>>>;

/// One immutable catalog snapshot.
#[derive(Debug, Default)]
pub struct Catalog {
    pub passthrough: bool,
    pub tools: Vec<Value>,
    pub prompts: Vec<Value>,
    pub resources: Vec<Value>,
    pub templates: Vec<Value>,
    tool_names: NameTable,
    prompt_names: NameTable,
    /// `Mcp-Param-*` mirroring rules per exposed tool name.
    param_headers: HashMap<String, Vec<ParamHeader>>,
    /// Exposed tool name → index into `tools`.
    tool_index: HashMap<String, usize>,
    /// Per tool (parallel to `tools`): its compiled `inputSchema` check, filled by the
    /// validation step on the tool's first call in this snapshot (`pipeline/validate.rs`),
    /// or set at build to "none" for servers with `validate = false`.
    tool_checks: Box<[ToolCheck]>,
    /// The only server, in passthrough mode.
    single: Option<String>,
    /// The server of each entry, per listing (parallel to the entries).
    owners: [Vec<Arc<str>>; 4],
    /// Each listing's pages as JSON arrays, rendered on the first request for any of them
    /// (the snapshot never changes, so neither do they).
    rendered: [OnceLock<Vec<Arc<RawValue>>>; 4],
    /// Callers' views of this snapshot, by filter key.
    views: Mutex<HashMap<String, Arc<View>>>,
    /// The server lists this snapshot was built from (tool search reads its documents
    /// per server list, `search::Memo`).
    pub(crate) sources: BTreeMap<String, Arc<ServerLists>>,
    /// Tool-search indexes of this snapshot, by view key (`""`: no filter), built on the
    /// first search through that view.
    pub(crate) search: Mutex<HashMap<String, Arc<crate::search::ViewIndex>>>,
    /// What the result steps need to know of each server as of this snapshot: its
    /// policy and its version (`with_servers`).
    servers: HashMap<String, ServerFacts>,
}

/// One server as a snapshot knows it, for the steps that depend on its definition (the
/// result cache, compaction).
#[derive(Debug)]
pub struct ServerFacts {
    pub policy: Arc<switchboard_config::ServerPolicy>,
    /// Changes whenever the server is reloaded (a new server object) or its tool list
    /// changes: results cached under one version are never served under another. A
    /// digest of the object's generation and its tools (a registry's version may replace
    /// it).
    pub version: u64,
}

impl ServerFacts {
    pub fn new(
        policy: Arc<switchboard_config::ServerPolicy>,
        generation: u64,
        lists: &ServerLists,
    ) -> ServerFacts {
        use sha2::{Digest as _, Sha256};
        let mut digest = Sha256::new();
        digest.update(generation.to_be_bytes());
        for tool in &lists.tools {
            digest.update(serde_json::to_vec(tool).unwrap_or_default());
            digest.update([0]);
        }
        let digest = digest.finalize();
        ServerFacts {
            policy,
            version: u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")),
        }
    }
}

fn render(page: &[&Value]) -> Arc<RawValue> {
    let json = serde_json::to_string(page).expect("catalog entries serialize");
    Arc::from(RawValue::from_string(json).expect("serde_json wrote valid JSON"))
}

fn entry_name(entry: &Value, field: &str) -> Option<String> {
    entry.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl Catalog {
    pub fn entries(&self, listing: Listing) -> &[Value] {
        match listing {
            Listing::Tools => &self.tools,
            Listing::Prompts => &self.prompts,
            Listing::Resources => &self.resources,
            Listing::Templates => &self.templates,
        }
    }

    /// Page `index` of a listing as rendered JSON; `None` past the last page.
    pub fn rendered_page(&self, listing: Listing, index: usize) -> Option<Arc<RawValue>> {
        let pages = self.rendered[listing.slot()].get_or_init(|| {
            self.entries(listing)
                .chunks(PAGE_SIZE)
                .map(|page| render(&page.iter().collect::<Vec<_>>()))
                .collect()
        });
        pages.get(index).cloned()
    }

    /// Whether `listing` reads differently through view `old` of snapshot `before` than
    /// through view `new` of `after` (compared as rendered pages, which each view renders
    /// once per snapshot anyway).
    pub fn view_differs(
        before: &Catalog,
        old: &View,
        after: &Catalog,
        new: &View,
        listing: Listing,
    ) -> bool {
        if old.len(listing) != new.len(listing) {
            return true;
        }
        (0..)
            .map(|index| {
                (
                    before.rendered_view_page(old, listing, index),
                    after.rendered_view_page(new, listing, index),
                )
            })
            .take_while(|pages| pages.0.is_some() || pages.1.is_some())
            .any(|(a, b)| match (a, b) {
                (Some(a), Some(b)) => a.get() != b.get(),
                _ => true,
            })
    }

    /// Page `index` of a view's listing as rendered JSON; `None` past the last page.
    pub fn rendered_view_page(
        &self,
        view: &View,
        listing: Listing,
        index: usize,
    ) -> Option<Arc<RawValue>> {
        let pages = view.rendered[listing.slot()].get_or_init(|| {
            let entries: Vec<&Value> = view.entries(self, listing, 0..view.len(listing)).collect();
            entries.chunks(PAGE_SIZE).map(render).collect()
        });
        pages.get(index).cloned()
    }

    /// The view of this snapshot for a filter `key`, built on first use.
    pub fn view(&self, key: &str, admit: &Arc<Admit>) -> Arc<View> {
        if let Some(view) = self.views.lock().get(key) {
            return view.clone();
        }
        let admitted = Listing::ALL.map(|listing| {
            let owners = &self.owners[listing.slot()];
            self.entries(listing)
                .iter()
                .enumerate()
                .filter(|(index, entry)| {
                    let name = entry
                        .get(listing.key())
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    admit(listing, &owners[*index], name)
                })
                .map(|(index, _)| index)
                .collect()
        });
        let view = Arc::new(View {
            admit: admit.clone(),
            admitted,
            rendered: Default::default(),
        });
        let mut views = self.views.lock();
        if views.len() >= MAX_VIEWS {
            views.clear();
        }
        views.insert(key.to_owned(), view.clone());
        view
    }

    /// Builds the snapshot. In passthrough mode names and URIs are not rewritten.
    pub fn build(lists: &BTreeMap<String, Arc<ServerLists>>, passthrough: bool) -> Catalog {
        let qualified = |pick: fn(&ServerLists) -> &Vec<Value>| {
            lists
                .iter()
                .flat_map(|(server, l)| {
                    pick(l).iter().filter_map(move |entry| {
                        Some(Qualified {
                            server: server.clone(),
                            name: entry_name(entry, "name")?,
                        })
                    })
                })
                .collect::<Vec<_>>()
        };
        let table = |entries: Vec<Qualified>| {
            if passthrough {
                NameTable::passthrough(entries)
            } else {
                NameTable::prefixed(entries)
            }
        };
        let tool_names = table(qualified(|l| &l.tools));
        let prompt_names = table(qualified(|l| &l.prompts));
        let mut catalog = Catalog {
            passthrough,
            tool_names,
            prompt_names,
            single: if passthrough {
                lists.keys().next().cloned()
            } else {
                None
            },
            sources: lists.clone(),
            ..Catalog::default()
        };
        for (server, server_lists) in lists {
            let owner: Arc<str> = Arc::from(server.as_str());
            for tool in &server_lists.tools {
                let Some(name) = entry_name(tool, "name") else {
                    continue;
                };
                let exposed = catalog
                    .tool_names
                    .exposed(server, &name)
                    .expect("named in the table")
                    .to_owned();
                match tool.get("inputSchema").map(headers::param_headers) {
                    Some(Err(error)) => {
                        // The spec makes HTTP clients drop such tools; so do we, loudly.
                        tracing::warn!(server, tool = name, %error, "tool excluded: invalid x-mcp-header");
                        continue;
                    }
                    Some(Ok(found)) if !found.is_empty() => {
                        catalog.param_headers.insert(exposed.clone(), found);
                    }
                    _ => {}
                }
                catalog
                    .tool_index
                    .insert(exposed.clone(), catalog.tools.len());
                catalog.tools.push(renamed(tool, "name", exposed));
                catalog.owners[Listing::Tools.slot()].push(owner.clone());
            }
            for prompt in &server_lists.prompts {
                let Some(name) = entry_name(prompt, "name") else {
                    continue;
                };
                let exposed = catalog
                    .prompt_names
                    .exposed(server, &name)
                    .expect("named in the table")
                    .to_owned();
                catalog.prompts.push(renamed(prompt, "name", exposed));
                catalog.owners[Listing::Prompts.slot()].push(owner.clone());
            }
            for resource in &server_lists.resources {
                let Some(original) = entry_name(resource, "uri") else {
                    continue;
                };
                let exposed = catalog.expose_uri(server, &original);
                catalog.resources.push(renamed(resource, "uri", exposed));
                catalog.owners[Listing::Resources.slot()].push(owner.clone());
            }
            for template in &server_lists.templates {
                let Some(original) = entry_name(template, "uriTemplate") else {
                    continue;
                };
                let exposed = catalog.expose_uri(server, &original);
                catalog
                    .templates
                    .push(renamed(template, "uriTemplate", exposed));
                catalog.owners[Listing::Templates.slot()].push(owner.clone());
            }
        }
        catalog.tool_checks = catalog.tools.iter().map(|_| OnceLock::new()).collect();
        catalog
    }

    /// Marks the tools of `servers` as not checked (their `validate = false`).
    pub(crate) fn without_validation(self, servers: &std::collections::HashSet<String>) -> Self {
        if !servers.is_empty() {
            let owners = &self.owners[Listing::Tools.slot()];
            for (check, owner) in self.tool_checks.iter().zip(owners) {
                if servers.contains(&**owner) {
                    let _ = check.set(None);
                }
            }
        }
        self
    }

    /// Attaches what the result steps need of each server (see [`ServerFacts`]).
    pub(crate) fn with_servers(mut self, servers: HashMap<String, ServerFacts>) -> Self {
        self.servers = servers;
        self
    }

    /// A server as this snapshot knows it; `None` for one it does not.
    pub fn server_facts(&self, server: &str) -> Option<&ServerFacts> {
        self.servers.get(server)
    }

    /// An exposed tool's index and entry.
    pub fn tool(&self, exposed: &str) -> Option<(usize, &Value)> {
        let index = *self.tool_index.get(exposed)?;
        Some((index, &self.tools[index]))
    }

    /// The server of the tool at `index` of `tools`.
    pub(crate) fn tool_owner(&self, index: usize) -> &str {
        &self.owners[Listing::Tools.slot()][index]
    }

    /// The argument check slot of the tool at `index` (see [`Catalog::tool`]).
    pub(crate) fn tool_check(&self, index: usize) -> &ToolCheck {
        &self.tool_checks[index]
    }

    pub fn resolve_tool(&self, exposed: &str) -> Option<&Qualified> {
        self.tool_names.resolve(exposed)
    }

    /// The exposed name of a server's tool.
    pub fn exposed_tool(&self, server: &str, name: &str) -> Option<String> {
        self.tool_names.exposed(server, name).map(str::to_owned)
    }

    pub fn resolve_prompt(&self, exposed: &str) -> Option<&Qualified> {
        self.prompt_names.resolve(exposed)
    }

    pub fn tool_param_headers(&self, exposed: &str) -> &[ParamHeader] {
        self.param_headers.get(exposed).map_or(&[], Vec::as_slice)
    }

    /// The exposed form of a server's URI.
    pub fn expose_uri(&self, server: &str, original: &str) -> String {
        if self.passthrough {
            original.to_owned()
        } else {
            uri::expose(server, original)
        }
    }

    /// The (server, upstream URI) behind an exposed URI.
    pub fn resolve_uri<'a>(&'a self, exposed: &'a str) -> Option<(String, &'a str)> {
        if self.passthrough {
            return self.single.clone().map(|server| (server, exposed));
        }
        uri::resolve(exposed).map(|(server, original)| (server.to_owned(), original))
    }
}

fn renamed(entry: &Value, field: &str, exposed: String) -> Value {
    let mut entry = entry.clone();
    if let Some(object) = entry.as_object_mut() {
        object.insert(field.to_owned(), Value::String(exposed));
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lists(tools: &[&str]) -> Arc<ServerLists> {
        Arc::new(ServerLists {
            tools: tools
                .iter()
                .map(|t| json!({"name": t, "inputSchema": {"type": "object"}, "x-extra": 1}))
                .collect(),
            resources: vec![json!({"uri": "test://a", "name": "a"})],
            ..ServerLists::default()
        })
    }

    #[test]
    fn merges_in_server_order_and_keeps_fields() {
        let mut all = BTreeMap::new();
        all.insert("b".to_owned(), lists(&["x"]));
        all.insert("a".to_owned(), lists(&["y", "x"]));
        let catalog = Catalog::build(&all, false);
        let names: Vec<&str> = catalog
            .tools
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a__y", "a__x", "b__x"]);
        assert_eq!(catalog.tools[0]["x-extra"], 1);
        assert_eq!(catalog.resolve_tool("b__x").unwrap().server, "b");
        assert_eq!(catalog.resources[0]["uri"], "switchboard://a/test://a");
        assert_eq!(
            catalog.resolve_uri("switchboard://b/test://a"),
            Some(("b".to_owned(), "test://a"))
        );
    }

    #[test]
    fn passthrough_keeps_names() {
        let mut all = BTreeMap::new();
        all.insert("only".to_owned(), lists(&["x"]));
        let catalog = Catalog::build(&all, true);
        assert_eq!(catalog.tools[0]["name"], "x");
        assert_eq!(catalog.resolve_tool("x").unwrap().server, "only");
        assert_eq!(
            catalog.resolve_uri("test://a"),
            Some(("only".to_owned(), "test://a"))
        );
    }

    #[test]
    fn drops_tools_with_invalid_header_annotations() {
        let mut all = BTreeMap::new();
        all.insert("s".to_owned(), Arc::new(ServerLists {
            tools: vec![
                json!({"name": "bad", "inputSchema": {"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}}),
                json!({"name": "good", "inputSchema": {"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}}),
            ],
            ..ServerLists::default()
        }));
        let catalog = Catalog::build(&all, false);
        assert_eq!(catalog.tools.len(), 1);
        assert_eq!(catalog.tool_param_headers("s__good").len(), 1);
    }
}
