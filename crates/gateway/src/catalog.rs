//! The merged capability catalog: every server's tools, prompts, resources and resource
//! templates under exposed (namespaced) names, rebuilt as one immutable snapshot whenever a
//! server's lists change, and read lock-free by every request.
//!
//! Invariants: list order is deterministic (servers by name, then each server's own order);
//! every exposed name resolves to exactly one (server, upstream name); entries are the
//! upstream's JSON with only `name` / `uri` / `uriTemplate` rewritten. An entry does not
//! copy the upstream's JSON: it shares the server's lists and splices its exposed name in
//! when it is rendered ([`Entry`]).

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

impl ServerLists {
    /// The items of a listing.
    pub fn items(&self, listing: Listing) -> &[Value] {
        match listing {
            Listing::Tools => &self.tools,
            Listing::Prompts => &self.prompts,
            Listing::Resources => &self.resources,
            Listing::Templates => &self.templates,
        }
    }
}

/// One entry of a snapshot: an item of a server's lists, shared (not copied), under its
/// exposed name or URI. It renders as the upstream's JSON with the naming member
/// (`name`, `uri`, `uriTemplate`) replaced in place, the other members as they were.
#[derive(Clone)]
pub struct Entry {
    source: Arc<ServerLists>,
    listing: Listing,
    index: u32,
    exposed: Box<str>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Entry").field(&self.exposed).finish()
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.exposed == other.exposed && self.upstream() == other.upstream()
    }
}

impl Entry {
    fn new(source: &Arc<ServerLists>, listing: Listing, index: usize, exposed: String) -> Entry {
        Entry {
            source: source.clone(),
            listing,
            index: u32::try_from(index).expect("fewer than 2^32 entries per list"),
            exposed: exposed.into_boxed_str(),
        }
    }

    /// The exposed name (tools, prompts) or URI (resources, templates).
    pub fn name(&self) -> &str {
        &self.exposed
    }

    /// The item as the upstream listed it (its upstream name included).
    pub fn upstream(&self) -> &Value {
        &self.source.items(self.listing)[self.index as usize]
    }

    /// Whether both entries are the same item of the same server lists (not a copy): an
    /// unchanged server's entries in two snapshots.
    pub fn same_item(&self, other: &Entry) -> bool {
        Arc::ptr_eq(&self.source, &other.source)
            && self.listing == other.listing
            && self.index == other.index
    }

    /// A member of the item other than its name (the upstream's). Asking this for the
    /// name key is a bug (it would give the upstream's name, not the exposed one): use
    /// [`Entry::name`].
    pub fn get(&self, field: &str) -> Option<&Value> {
        debug_assert_ne!(
            field,
            self.listing.key(),
            "Entry::get of the name: use Entry::name"
        );
        self.upstream().get(field)
    }

    /// The item as clients see it, as an owned value.
    pub fn to_value(&self) -> Value {
        let mut entry = self.upstream().clone();
        if let Some(object) = entry.as_object_mut() {
            object.insert(
                self.listing.key().to_owned(),
                Value::String(self.exposed.to_string()),
            );
        }
        entry
    }
}

impl serde::Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let Some(object) = self.upstream().as_object() else {
            return self.upstream().serialize(serializer);
        };
        let key = self.listing.key();
        let mut map = serializer.serialize_map(Some(object.len()))?;
        for (field, value) in object {
            if field == key {
                map.serialize_entry(field, &*self.exposed)?;
            } else {
                map.serialize_entry(field, value)?;
            }
        }
        map.end()
    }
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

/// The snapshot indices of the entries of one chunk that a view's filter admits, once
/// decided.
type Admitted = OnceLock<Box<[usize]>>;

/// How many of a snapshot's entries a view's filter decides about at once: the first
/// page of a view runs the filter over about one page's worth of entries, not the whole
/// listing.
const SCAN_CHUNK: usize = 256;

/// One caller's view of a snapshot: the entries its filter admits, in the snapshot's
/// order, each page of each listing rendered once per snapshot and view. Both are lazy:
/// a request for a page runs the filter only as far as that page (and one entry past it,
/// to know whether there is a next page) and renders that page only; counting the whole
/// listing runs all of it. What a view shows, and so every cursor, is the same whatever
/// was asked first.
///
/// Its methods take the snapshot the view was made of (`Catalog::view`).
pub struct View {
    admit: Arc<Admit>,
    /// Per listing, per chunk of `SCAN_CHUNK` snapshot entries: the indices of those the
    /// filter admits, decided on first need.
    admitted: [Box<[Admitted]>; 4],
    /// Per listing: how many entries the view shows, once counted.
    counted: [OnceLock<usize>; 4],
    rendered: [Pages; 4],
}

/// A listing's pages as JSON arrays, each rendered on its first request (a snapshot never
/// changes, so neither does a page): the first request after a catalog change renders one
/// page, not the whole listing. One slot per page of `PAGE_SIZE` entries the listing can
/// have (a view's: as many as its snapshot's); an empty snapshot listing has none.
#[derive(Debug, Default)]
struct Pages(Box<[OnceLock<Arc<RawValue>>]>);

impl Pages {
    fn for_entries(len: usize) -> Pages {
        Pages(
            (0..len.div_ceil(PAGE_SIZE))
                .map(|_| OnceLock::new())
                .collect(),
        )
    }

    /// Page `index`, rendered from its entries by `entries` the first time; `None` past
    /// the last page.
    fn get<'a, I>(&self, index: usize, entries: impl FnOnce() -> I) -> Option<Arc<RawValue>>
    where
        I: Iterator<Item = &'a Entry>,
    {
        let slot = self.0.get(index)?;
        Some(slot.get_or_init(|| render(entries())).clone())
    }

    /// The entries of page `index` among `len`.
    fn range(index: usize, len: usize) -> std::ops::Range<usize> {
        let start = index * PAGE_SIZE;
        start..(start + PAGE_SIZE).min(len)
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View")
            .field(
                "counted",
                &self.counted.each_ref().map(|n| n.get().copied()),
            )
            .finish()
    }
}

impl View {
    /// Whether this view shows the named entry of `server`.
    pub fn admits(&self, listing: Listing, server: &str, exposed: &str) -> bool {
        (self.admit)(listing, server, exposed)
    }

    /// How many entries of `listing` the view shows (runs the filter over all of them).
    pub fn len(&self, catalog: &Catalog, listing: Listing) -> usize {
        *self.counted[listing.slot()].get_or_init(|| {
            (0..self.admitted[listing.slot()].len())
                .map(|chunk| self.chunk(catalog, listing, chunk).len())
                .sum()
        })
    }

    /// Whether the view shows more than `count` entries of `listing` (runs the filter
    /// only until it finds the next one).
    pub fn has_more_than(&self, catalog: &Catalog, listing: Listing, count: usize) -> bool {
        match self.counted[listing.slot()].get() {
            Some(len) => *len > count,
            None => self.indices(catalog, listing, count).next().is_some(),
        }
    }

    /// The admitted entries `start..end` of a listing (fewer past its end).
    pub fn entries<'a>(
        &'a self,
        catalog: &'a Catalog,
        listing: Listing,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        let all = catalog.entries(listing);
        self.indices(catalog, listing, range.start)
            .take(range.len())
            .map(move |index| &all[index])
    }

    /// The snapshot indices of the admitted entries from the `from`-th on, in order; the
    /// filter runs only as far as the iterator is read.
    fn indices<'a>(
        &'a self,
        catalog: &'a Catalog,
        listing: Listing,
        from: usize,
    ) -> impl Iterator<Item = usize> + 'a {
        let mut skip = from;
        (0..self.admitted[listing.slot()].len()).flat_map(move |chunk| {
            let admitted = self.chunk(catalog, listing, chunk);
            let start = skip.min(admitted.len());
            skip -= start;
            admitted[start..].iter().copied()
        })
    }

    /// The admitted indices among the snapshot entries of `chunk`, filtered on first use.
    fn chunk<'a>(&'a self, catalog: &Catalog, listing: Listing, chunk: usize) -> &'a [usize] {
        self.admitted[listing.slot()][chunk].get_or_init(|| {
            let entries = catalog.entries(listing);
            let owners = &catalog.owners[listing.slot()];
            let start = chunk * SCAN_CHUNK;
            (start..(start + SCAN_CHUNK).min(entries.len()))
                .filter(|&index| (self.admit)(listing, &owners[index], entries[index].name()))
                .collect()
        })
    }
}

/// One tool's argument check in a snapshot: unset until first needed, then the compiled
/// validator, or `None` when the tool's arguments are not checked.
pub(crate) type ToolCheck = OnceLock<Option<Arc<crate::pipeline::validate::Checker>>>;

/// One immutable catalog snapshot.
#[derive(Debug, Default)]
pub struct Catalog {
    pub passthrough: bool,
    pub tools: Vec<Entry>,
    pub prompts: Vec<Entry>,
    pub resources: Vec<Entry>,
    pub templates: Vec<Entry>,
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
    /// Each listing's pages as JSON arrays, each rendered on its first request.
    rendered: [Pages; 4],
    /// Callers' views of this snapshot, by filter key.
    views: Mutex<HashMap<String, Arc<View>>>,
    /// The server lists this snapshot was built from (tool search reads its documents
    /// per server list, `search::Memo`).
    pub(crate) sources: BTreeMap<String, Arc<ServerLists>>,
    /// Tool-search indexes of this snapshot, by view key (`""`: no filter), built on the
    /// first search through that view.
    pub(crate) search: Mutex<HashMap<String, Arc<crate::search::ViewIndex>>>,
    /// Tools the registry holds back (pinning), by the exposed name they would have: not
    /// listed, and a call to one is refused naming the change.
    quarantined: HashMap<String, Arc<crate::registry::Quarantined>>,
    /// What the result steps need to know of each server as of this snapshot: its
    /// policy and its version (`with_servers`).
    servers: HashMap<String, ServerFacts>,
    /// Failover groups listed in this snapshot, by group name (`groups.rs`), and per
    /// member the number of its tools its group does not list.
    groups: HashMap<String, Arc<crate::groups::Group>>,
    pub(crate) group_unlisted: Vec<(String, usize)>,
    /// Rollouts: each rollout's name → the member this snapshot's arm routes it to
    /// (`rollouts.rs`); empty without rollouts.
    routed: HashMap<String, crate::rollouts::Routed>,
    /// A base snapshot's rollouts and its other arms' snapshots; `None` without
    /// rollouts (and in the arms' snapshots themselves).
    variants: Option<Arc<crate::rollouts::Variants>>,
}

/// One server as a snapshot knows it, for the steps that depend on its definition (the
/// result cache, compaction).
#[derive(Clone, Debug)]
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

    /// The same from the registry's digest of the server's lists (`registry::hash::lists`,
    /// taken once per observed change), without hashing the tools again.
    pub fn of_digest(
        policy: Arc<switchboard_config::ServerPolicy>,
        generation: u64,
        lists: &crate::registry::hash::Digest,
    ) -> ServerFacts {
        use sha2::{Digest as _, Sha256};
        let mut digest = Sha256::new();
        digest.update(generation.to_be_bytes());
        digest.update(b"registry");
        digest.update(lists);
        let digest = digest.finalize();
        ServerFacts {
            policy,
            version: u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")),
        }
    }
}

fn render<'a>(page: impl Iterator<Item = &'a Entry>) -> Arc<RawValue> {
    struct Entries<I>(std::cell::Cell<Option<I>>);
    impl<'a, I: Iterator<Item = &'a Entry>> serde::Serialize for Entries<I> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.0.take().into_iter().flatten())
        }
    }
    let json = serde_json::to_string(&Entries(std::cell::Cell::new(Some(page))))
        .expect("catalog entries serialize");
    Arc::from(RawValue::from_string(json).expect("serde_json wrote valid JSON"))
}

fn entry_name(entry: &Value, field: &str) -> Option<String> {
    entry.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl Catalog {
    pub fn entries(&self, listing: Listing) -> &[Entry] {
        match listing {
            Listing::Tools => &self.tools,
            Listing::Prompts => &self.prompts,
            Listing::Resources => &self.resources,
            Listing::Templates => &self.templates,
        }
    }

    /// Page `index` of a listing as rendered JSON; `None` past the last page.
    pub fn rendered_page(&self, listing: Listing, index: usize) -> Option<Arc<RawValue>> {
        let entries = self.entries(listing);
        self.rendered[listing.slot()]
            .get(index, || entries[Pages::range(index, entries.len())].iter())
    }

    /// Whether `listing` reads differently through view `old` of snapshot `before` than
    /// through view `new` of `after` (compared as rendered pages, which each view renders
    /// once per snapshot anyway; page by page, up to the first that differs).
    pub fn view_differs(
        before: &Catalog,
        old: &View,
        after: &Catalog,
        new: &View,
        listing: Listing,
    ) -> bool {
        if old.len(before, listing) != new.len(after, listing) {
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
        let start = index.checked_mul(PAGE_SIZE)?;
        if !view.has_more_than(self, listing, start) {
            return None;
        }
        view.rendered[listing.slot()].get(index, || {
            view.entries(self, listing, start..start + PAGE_SIZE)
        })
    }

    /// The view of this snapshot for a filter `key`, built on first use.
    pub fn view(&self, key: &str, admit: &Arc<Admit>) -> Arc<View> {
        if let Some(view) = self.views.lock().get(key) {
            return view.clone();
        }
        // Nothing is filtered or rendered yet: the first request for a page does what
        // that page needs.
        let view = Arc::new(View {
            admit: admit.clone(),
            admitted: Listing::ALL.map(|listing| {
                (0..self.entries(listing).len().div_ceil(SCAN_CHUNK))
                    .map(|_| OnceLock::new())
                    .collect()
            }),
            counted: Default::default(),
            // At most as many pages as the snapshot has.
            rendered: Listing::ALL.map(|listing| Pages::for_entries(self.entries(listing).len())),
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
            for (position, tool) in server_lists.tools.iter().enumerate() {
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
                catalog
                    .tools
                    .push(Entry::new(server_lists, Listing::Tools, position, exposed));
                catalog.owners[Listing::Tools.slot()].push(owner.clone());
            }
            for (position, prompt) in server_lists.prompts.iter().enumerate() {
                let Some(name) = entry_name(prompt, "name") else {
                    continue;
                };
                let exposed = catalog
                    .prompt_names
                    .exposed(server, &name)
                    .expect("named in the table")
                    .to_owned();
                catalog.prompts.push(Entry::new(
                    server_lists,
                    Listing::Prompts,
                    position,
                    exposed,
                ));
                catalog.owners[Listing::Prompts.slot()].push(owner.clone());
            }
            for (position, resource) in server_lists.resources.iter().enumerate() {
                let Some(original) = entry_name(resource, "uri") else {
                    continue;
                };
                let exposed = catalog.expose_uri(server, &original);
                catalog.resources.push(Entry::new(
                    server_lists,
                    Listing::Resources,
                    position,
                    exposed,
                ));
                catalog.owners[Listing::Resources.slot()].push(owner.clone());
            }
            for (position, template) in server_lists.templates.iter().enumerate() {
                let Some(original) = entry_name(template, "uriTemplate") else {
                    continue;
                };
                let exposed = catalog.expose_uri(server, &original);
                catalog.templates.push(Entry::new(
                    server_lists,
                    Listing::Templates,
                    position,
                    exposed,
                ));
                catalog.owners[Listing::Templates.slot()].push(owner.clone());
            }
        }
        catalog.tool_checks = catalog.tools.iter().map(|_| OnceLock::new()).collect();
        catalog.rendered =
            Listing::ALL.map(|listing| Pages::for_entries(catalog.entries(listing).len()));
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

    /// Adds the tools the registry holds back, under the exposed names they would have.
    pub(crate) fn with_quarantine(self, held: Vec<crate::registry::Quarantined>) -> Self {
        self.with_quarantine_as(held.into_iter().map(|q| (q.server.clone(), q)).collect())
    }

    /// [`Catalog::with_quarantine`], each tool under the server name it is listed under
    /// (a rollout's version is listed under the rollout's name).
    pub(crate) fn with_quarantine_as(
        mut self,
        held: Vec<(String, crate::registry::Quarantined)>,
    ) -> Self {
        if held.is_empty() {
            return self;
        }
        let entries = held.iter().map(|(listed, q)| Qualified {
            server: listed.clone(),
            name: q.tool.clone(),
        });
        let names = if self.passthrough {
            NameTable::passthrough(entries)
        } else {
            NameTable::prefixed(entries)
        };
        for (listed, q) in held {
            if let Some(exposed) = names.exposed(&listed, &q.tool) {
                self.quarantined.insert(exposed.to_owned(), Arc::new(q));
            }
        }
        self
    }

    /// The quarantined tool an exposed name would be, if any.
    pub fn quarantined(&self, exposed: &str) -> Option<&Arc<crate::registry::Quarantined>> {
        self.quarantined.get(exposed)
    }

    /// Attaches what the result steps need of each server (see [`ServerFacts`]).
    pub(crate) fn with_servers(mut self, servers: HashMap<String, ServerFacts>) -> Self {
        self.servers = servers;
        self
    }

    /// Attaches the failover groups this snapshot lists (see `groups::fold`).
    pub(crate) fn with_groups(
        mut self,
        groups: std::collections::BTreeMap<String, Vec<String>>,
        unlisted: Vec<(String, usize)>,
    ) -> Self {
        self.groups = groups
            .into_iter()
            .map(|(name, members)| (name, Arc::new(crate::groups::Group::new(members))))
            .collect();
        self.group_unlisted = unlisted;
        self
    }

    /// Attaches where this snapshot routes each rollout's name (`rollouts.rs`).
    pub(crate) fn with_routes(mut self, routed: HashMap<String, crate::rollouts::Routed>) -> Self {
        self.routed = routed;
        self
    }

    /// Attaches a base snapshot's rollouts and its other arms' builder.
    pub(crate) fn with_variants(mut self, variants: crate::rollouts::Variants) -> Self {
        self.variants = Some(Arc::new(variants));
        self
    }

    /// The member a rollout's name routes to in this snapshot; `None` for any other
    /// name (one branch without rollouts: the map is empty).
    pub fn routed(&self, name: &str) -> Option<&crate::rollouts::Routed> {
        if self.routed.is_empty() {
            return None;
        }
        self.routed.get(name)
    }

    /// The rollouts this snapshot was built with, if any.
    pub fn rollouts(&self) -> Option<&Arc<crate::rollouts::Rollouts>> {
        self.variants.as_ref().map(|variants| &variants.rollouts)
    }

    /// The snapshot a caller of `tenant` sees: this one, unless a rollout puts the
    /// tenant on a candidate (then that combination's snapshot, built once).
    pub fn for_tenant(self: &Arc<Self>, tenant: Option<&str>) -> Arc<Catalog> {
        let Some(variants) = &self.variants else {
            return self.clone();
        };
        let arms = variants.rollouts.arms(tenant);
        if arms.is_stable() {
            return self.clone();
        }
        variants.get(arms)
    }

    /// The failover group listed under `name`, if `name` is one.
    pub fn group(&self, name: &str) -> Option<&Arc<crate::groups::Group>> {
        self.groups.get(name)
    }

    /// A server as this snapshot knows it; `None` for one it does not.
    pub fn server_facts(&self, server: &str) -> Option<&ServerFacts> {
        self.servers.get(server)
    }

    /// An exposed tool's index and entry.
    pub fn tool(&self, exposed: &str) -> Option<(usize, &Entry)> {
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
        let names: Vec<&str> = catalog.tools.iter().map(Entry::name).collect();
        assert_eq!(names, ["a__y", "a__x", "b__x"]);
        assert_eq!(catalog.tools[0].to_value()["x-extra"], 1);
        assert_eq!(catalog.resolve_tool("b__x").unwrap().server, "b");
        assert_eq!(catalog.resources[0].name(), "switchboard://a/test://a");
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
        assert_eq!(catalog.tools[0].to_value()["name"], "x");
        assert_eq!(catalog.resolve_tool("x").unwrap().server, "only");
        assert_eq!(
            catalog.resolve_uri("test://a"),
            Some(("only".to_owned(), "test://a"))
        );
    }

    fn many(count: usize) -> Arc<ServerLists> {
        Arc::new(ServerLists {
            tools: (0..count)
                .map(|i| json!({"name": format!("t{i}"), "description": format!("tool {i}")}))
                .collect(),
            ..ServerLists::default()
        })
    }

    /// The pages a listing reads as, rendered all at once the way a client would see them.
    fn expected_pages(entries: &[&Entry]) -> Vec<String> {
        entries
            .chunks(PAGE_SIZE)
            .map(|page| {
                let page: Vec<Value> = page.iter().map(|e| e.to_value()).collect();
                serde_json::to_string(&page).unwrap()
            })
            .collect()
    }

    #[test]
    fn pages_render_one_at_a_time_and_read_as_the_whole_list() {
        let mut all = BTreeMap::new();
        all.insert("a".to_owned(), many(2 * PAGE_SIZE + 17));
        let catalog = Catalog::build(&all, false);
        let slots = &catalog.rendered[Listing::Tools.slot()].0;
        assert_eq!(slots.len(), 3);
        // The last page first: only it is rendered.
        let last = catalog.rendered_page(Listing::Tools, 2).unwrap();
        assert!(slots[0].get().is_none() && slots[1].get().is_none());
        assert!(catalog.rendered_page(Listing::Tools, 3).is_none());
        let entries: Vec<&Entry> = catalog.tools.iter().collect();
        let expected = expected_pages(&entries);
        assert_eq!(last.get(), expected[2]);
        for (index, page) in expected.iter().enumerate() {
            assert_eq!(
                catalog.rendered_page(Listing::Tools, index).unwrap().get(),
                page
            );
        }
        // The same page twice is the same rendering, not a second one.
        assert!(Arc::ptr_eq(
            &catalog.rendered_page(Listing::Tools, 1).unwrap(),
            &catalog.rendered_page(Listing::Tools, 1).unwrap()
        ));
        // An empty listing has no page.
        assert!(catalog.rendered_page(Listing::Prompts, 0).is_none());
    }

    #[test]
    fn a_view_filters_and_renders_only_what_the_page_asked_for_needs() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut all = BTreeMap::new();
        all.insert("a".to_owned(), many(PAGE_SIZE + 500));
        all.insert("b".to_owned(), many(PAGE_SIZE + 500));
        let catalog = Catalog::build(&all, false);
        let total = catalog.tools.len();
        // Every third tool of `a` hidden, all of `b` shown; each decision counted.
        let decided = Arc::new(AtomicUsize::new(0));
        let counter = decided.clone();
        let admit: Arc<Admit> = Arc::new(move |_, server: &str, name: &str| {
            counter.fetch_add(1, Ordering::Relaxed);
            server == "b" || name.trim_start_matches("a__t").parse::<usize>().unwrap() % 3 != 0
        });
        let view = catalog.view("k", &admit);
        assert_eq!(
            decided.load(Ordering::Relaxed),
            0,
            "nothing filtered before a request"
        );

        // The first page (and whether a second exists) filters about a page's worth.
        let first = catalog
            .rendered_view_page(&view, Listing::Tools, 0)
            .unwrap();
        assert!(view.has_more_than(&catalog, Listing::Tools, PAGE_SIZE));
        let after_first = decided.load(Ordering::Relaxed);
        assert!(
            (PAGE_SIZE..total / 2 + SCAN_CHUNK).contains(&after_first),
            "{after_first} of {total} entries filtered for the first page"
        );
        let slots = &view.rendered[Listing::Tools.slot()].0;
        assert!(slots[1].get().is_none() && view.counted[Listing::Tools.slot()].get().is_none());

        // The pages read exactly as the whole list filtered at once would.
        let shown: Vec<&Entry> = catalog
            .tools
            .iter()
            .filter(|t| {
                let name = t.name();
                name.starts_with("b__")
                    || name.trim_start_matches("a__t").parse::<usize>().unwrap() % 3 != 0
            })
            .collect();
        let expected = expected_pages(&shown);
        assert_eq!(expected.len(), 3);
        assert_eq!(first.get(), expected[0]);
        for (index, page) in expected.iter().enumerate() {
            assert_eq!(
                catalog
                    .rendered_view_page(&view, Listing::Tools, index)
                    .unwrap()
                    .get(),
                page
            );
        }
        assert!(
            catalog
                .rendered_view_page(&view, Listing::Tools, expected.len())
                .is_none()
        );
        assert_eq!(view.len(&catalog, Listing::Tools), shown.len());
        // Each entry was decided once, however often it was asked about.
        assert_eq!(decided.load(Ordering::Relaxed), total);
        assert!(!view.has_more_than(&catalog, Listing::Tools, shown.len()));
        assert!(view.has_more_than(&catalog, Listing::Tools, shown.len() - 1));
        let tail: Vec<&Entry> = view
            .entries(&catalog, Listing::Tools, 2 * PAGE_SIZE..usize::MAX)
            .collect();
        assert_eq!(tail, shown[2 * PAGE_SIZE..]);
        // The hidden entries are in no page.
        assert!(expected.iter().all(|page| !page.contains("\"a__t0\"")));
        // An empty listing has no page, in a view too.
        assert!(
            catalog
                .rendered_view_page(&view, Listing::Prompts, 0)
                .is_none()
        );
        assert_eq!(view.len(&catalog, Listing::Prompts), 0);
    }

    #[test]
    fn a_later_page_asked_first_reads_as_it_does_in_order() {
        let mut all = BTreeMap::new();
        all.insert("a".to_owned(), many(3 * PAGE_SIZE + 1));
        let catalog = Catalog::build(&all, false);
        let admit: Arc<Admit> = Arc::new(|_, _: &str, name: &str| !name.ends_with('7'));
        let (late, ordered) = (
            catalog.view("late", &admit),
            catalog.view("ordered", &admit),
        );
        let third = catalog
            .rendered_view_page(&late, Listing::Tools, 2)
            .unwrap();
        for index in 0..2 {
            catalog
                .rendered_view_page(&ordered, Listing::Tools, index)
                .unwrap();
        }
        assert_eq!(
            third.get(),
            catalog
                .rendered_view_page(&ordered, Listing::Tools, 2)
                .unwrap()
                .get()
        );
        assert_eq!(
            late.len(&catalog, Listing::Tools),
            ordered.len(&catalog, Listing::Tools)
        );
    }

    /// An entry shares its server's lists (no copy of the JSON) and renders exactly as the
    /// renamed copy it replaces: the naming member replaced in place, every other member
    /// as the upstream wrote it, in the upstream's order.
    #[test]
    fn entries_share_the_lists_and_render_with_the_exposed_name_spliced_in() {
        let source = Arc::new(ServerLists {
            tools: vec![
                // Parsed, not `json!`: the number keeps the upstream's spelling.
                serde_json::from_str(
                    r#"{"description": "d", "name": "t", "inputSchema": {"type": "object"}, "n": 1.50}"#,
                )
                .unwrap(),
            ],
            resources: vec![json!({"uri": "test://a", "name": "a"})],
            templates: vec![json!({"name": "tpl", "uriTemplate": "test://{x}"})],
            ..ServerLists::default()
        });
        let mut all = BTreeMap::new();
        all.insert("s".to_owned(), source.clone());
        let catalog = Catalog::build(&all, false);
        let tool = &catalog.tools[0];
        assert!(
            std::ptr::eq(tool.upstream(), &source.tools[0]),
            "shared, not copied"
        );
        assert_eq!(tool.name(), "s__t");
        assert_eq!(tool.get("description"), Some(&json!("d")));
        assert_eq!(
            serde_json::to_string(tool).unwrap(),
            r#"{"description":"d","name":"s__t","inputSchema":{"type":"object"},"n":1.50}"#
        );
        assert_eq!(
            serde_json::to_string(&tool.to_value()).unwrap(),
            serde_json::to_string(tool).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&catalog.resources[0]).unwrap(),
            r#"{"uri":"switchboard://s/test://a","name":"a"}"#
        );
        assert_eq!(
            serde_json::to_string(&catalog.templates[0]).unwrap(),
            r#"{"name":"tpl","uriTemplate":"switchboard://s/test://{x}"}"#
        );
        let page = catalog.rendered_page(Listing::Tools, 0).unwrap();
        assert_eq!(
            page.get(),
            format!("[{}]", serde_json::to_string(tool).unwrap())
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
