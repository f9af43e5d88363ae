//! What the gateway answers a client request with. Most answers are a JSON value; a page
//! of a merged list is the catalog snapshot's pre-rendered JSON for that page plus the few
//! members around it (`nextCursor`, `resultType`, `_meta`, caching hints), so that a
//! 1,000-tool page is neither copied nor serialized again for every request.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use switchboard_protocol::RequestId;

use crate::catalog::{Catalog, Entry, Listing, PAGE_SIZE, View};

pub enum Reply {
    Value(Value),
    Page(Page),
}

/// One page of a listing, taken from a catalog snapshot.
pub struct Page {
    catalog: Arc<Catalog>,
    /// The caller's view of the snapshot; `None`: all of it.
    view: Option<Arc<View>>,
    listing: Listing,
    index: usize,
    rendered: Arc<RawValue>,
    /// The result's other members (an object), after the entries.
    pub(crate) rest: Value,
}

impl Page {
    /// Page `index` of `listing`, or `None` when there is no such page.
    pub fn of(catalog: Arc<Catalog>, listing: Listing, index: usize) -> Option<Page> {
        Page::of_view(catalog, None, listing, index)
    }

    /// Page `index` of `listing` as `view` shows it.
    pub fn of_view(
        catalog: Arc<Catalog>,
        view: Option<Arc<View>>,
        listing: Listing,
        index: usize,
    ) -> Option<Page> {
        let rendered = match &view {
            None => catalog.rendered_page(listing, index)?,
            Some(view) => catalog.rendered_view_page(view, listing, index)?,
        };
        Some(Page {
            catalog,
            view,
            listing,
            index,
            rendered,
            rest: Value::Object(Map::new()),
        })
    }

    /// The whole JSON-RPC response carrying this page.
    pub fn response_bytes(&self, id: &RequestId) -> Vec<u8> {
        struct Response<'a> {
            id: &'a RequestId,
            page: &'a Page,
        }
        impl Serialize for Response<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(3))?;
                map.serialize_entry("jsonrpc", "2.0")?;
                map.serialize_entry("id", self.id)?;
                map.serialize_entry("result", self.page)?;
                map.end()
            }
        }
        serde_json::to_vec(&Response { id, page: self }).expect("a page serializes")
    }

    fn into_value(self) -> Value {
        let entries: Vec<Value> = match &self.view {
            None => {
                let entries = self.catalog.entries(self.listing);
                let start = (self.index * PAGE_SIZE).min(entries.len());
                let end = (start + PAGE_SIZE).min(entries.len());
                entries[start..end].iter().map(Entry::to_value).collect()
            }
            Some(view) => {
                let start = self.index * PAGE_SIZE;
                view.entries(&self.catalog, self.listing, start..start + PAGE_SIZE)
                    .map(Entry::to_value)
                    .collect()
            }
        };
        let mut object = Map::new();
        object.insert(self.listing.field().to_owned(), Value::Array(entries));
        if let Value::Object(rest) = self.rest {
            object.extend(rest);
        }
        Value::Object(object)
    }
}

impl Serialize for Page {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(self.listing.field(), &*self.rendered)?;
        if let Value::Object(rest) = &self.rest {
            for (key, value) in rest {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

impl Reply {
    /// The answer as a value to edit in place (a page is copied out of its snapshot
    /// first): for after-steps that rewrite a result.
    pub fn value_mut(&mut self) -> &mut Value {
        if let Reply::Page(_) = self {
            let Reply::Page(page) = std::mem::replace(self, Reply::Value(Value::Null)) else {
                unreachable!("checked above")
            };
            *self = Reply::Value(page.into_value());
        }
        match self {
            Reply::Value(value) => value,
            Reply::Page(_) => unreachable!("converted above"),
        }
    }

    /// The answer as a plain value (a page's entries copied out of its snapshot).
    pub fn into_value(self) -> Value {
        match self {
            Reply::Value(value) => value,
            Reply::Page(page) => page.into_value(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use switchboard_protocol::Message;

    use super::*;
    use crate::catalog::ServerLists;

    fn catalog(tools: usize) -> Arc<Catalog> {
        let lists = ServerLists {
            tools: (0..tools)
                .map(|i| json!({ "name": format!("t{i}"), "inputSchema": { "type": "object", "n": 1.50 }, "x-unknown": [i] }))
                .collect(),
            ..ServerLists::default()
        };
        let mut servers = BTreeMap::new();
        servers.insert("s".to_owned(), Arc::new(lists));
        Arc::new(Catalog::build(&servers, false))
    }

    #[test]
    fn a_rendered_page_is_the_response_a_copied_one_gives() {
        let catalog = catalog(PAGE_SIZE + 7);
        for index in 0..2 {
            let mut page = Page::of(catalog.clone(), Listing::Tools, index).expect("a page");
            page.rest = json!({ "nextCursor": "c", "resultType": "complete", "_meta": { "k": 1 } });
            let id = RequestId::from(9);
            let rendered = String::from_utf8(page.response_bytes(&id)).unwrap();
            let copied = Message::reply(id, Ok(Reply::Page(page).into_value())).to_bytes();
            assert_eq!(rendered, String::from_utf8(copied).unwrap());
        }
        assert!(Page::of(catalog.clone(), Listing::Tools, 2).is_none());
        let last = Page::of(catalog, Listing::Tools, 1).unwrap().into_value();
        assert_eq!(last["tools"].as_array().unwrap().len(), 7);
        assert_eq!(last["tools"][0]["name"], format!("s__t{PAGE_SIZE}"));
    }
}
