//! Structured diffs between two versions of a server's lists: per kind, the items added,
//! removed and changed, and for a changed item the top-level fields that differ
//! (`description`, `title`, `inputSchema`, `outputSchema`, `annotations`, or any other
//! field by its name).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::hash;
use crate::catalog::ServerLists;

/// One item that is in both versions and differs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub name: String,
    /// The differing top-level fields, tracked ones first (`hash::TRACKED_FIELDS` order),
    /// then the others by name.
    pub fields: Vec<String>,
}

/// The differences in one kind of list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindDiff {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<Changed>,
}

impl KindDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// The differences between two versions of a server's lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    #[serde(default, skip_serializing_if = "KindDiff::is_empty")]
    pub tools: KindDiff,
    #[serde(default, skip_serializing_if = "KindDiff::is_empty")]
    pub prompts: KindDiff,
    #[serde(default, skip_serializing_if = "KindDiff::is_empty")]
    pub resources: KindDiff,
    #[serde(
        default,
        rename = "resourceTemplates",
        skip_serializing_if = "KindDiff::is_empty"
    )]
    pub templates: KindDiff,
}

impl Diff {
    /// What changed from `old` to `new`.
    pub fn between(old: &ServerLists, new: &ServerLists) -> Diff {
        let [tools, prompts, resources, templates] = std::array::from_fn(|index| {
            let (_, old_items, key) = hash::kinds(old)[index];
            let (_, new_items, _) = hash::kinds(new)[index];
            kind(old_items, new_items, key)
        });
        Diff {
            tools,
            prompts,
            resources,
            templates,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
            && self.prompts.is_empty()
            && self.resources.is_empty()
            && self.templates.is_empty()
    }
}

fn by_identity<'a>(items: &'a [Value], key: &str) -> BTreeMap<String, &'a Value> {
    items
        .iter()
        .enumerate()
        .map(|(position, item)| (hash::identity(item, key, position), item))
        .collect()
}

fn kind(old: &[Value], new: &[Value], key: &str) -> KindDiff {
    let old = by_identity(old, key);
    let new = by_identity(new, key);
    let mut diff = KindDiff::default();
    for (name, new_item) in &new {
        match old.get(name) {
            None => diff.added.push(name.clone()),
            Some(old_item) if hash::item(old_item) != hash::item(new_item) => {
                diff.changed.push(Changed {
                    name: name.clone(),
                    fields: changed_fields(old_item, new_item),
                });
            }
            Some(_) => {}
        }
    }
    diff.removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .cloned()
        .collect();
    diff
}

/// The top-level fields that differ between two versions of an item, tracked fields
/// first. Items that are not objects differ as a whole (`"*"`).
pub fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    if !old.is_object() || !new.is_object() {
        return vec!["*".to_owned()];
    }
    let old = hash::fields(old);
    let new = hash::fields(new);
    let differing: BTreeSet<&String> = old
        .keys()
        .chain(new.keys())
        .filter(|field| old.get(*field) != new.get(*field))
        .collect();
    let mut fields: Vec<String> = hash::TRACKED_FIELDS
        .iter()
        .filter(|tracked| differing.iter().any(|field| field.as_str() == **tracked))
        .map(|tracked| (*tracked).to_owned())
        .collect();
    fields.extend(
        differing
            .into_iter()
            .filter(|field| !hash::TRACKED_FIELDS.contains(&field.as_str()))
            .cloned(),
    );
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools(items: Vec<Value>) -> ServerLists {
        ServerLists {
            tools: items,
            ..ServerLists::default()
        }
    }

    #[test]
    fn names_added_removed_and_changed_fields() {
        let old = tools(vec![
            json!({"name": "keep", "description": "d"}),
            json!({"name": "gone"}),
            json!({"name": "edit", "description": "old", "inputSchema": {"type": "object"}, "x-other": 1}),
        ]);
        let new = tools(vec![
            json!({"name": "edit", "description": "new", "inputSchema": {"type": "object", "required": ["a"]}, "x-other": 2, "annotations": {"readOnlyHint": true}}),
            json!({"name": "keep", "description": "d"}),
            json!({"name": "fresh"}),
        ]);
        let diff = Diff::between(&old, &new);
        assert_eq!(diff.tools.added, ["fresh"]);
        assert_eq!(diff.tools.removed, ["gone"]);
        assert_eq!(
            diff.tools.changed,
            [Changed {
                name: "edit".into(),
                fields: vec![
                    "description".into(),
                    "inputSchema".into(),
                    "annotations".into(),
                    "x-other".into()
                ],
            }]
        );
        assert!(diff.prompts.is_empty());
        assert!(Diff::between(&new, &new).is_empty());
    }

    #[test]
    fn a_schema_change_in_key_order_only_is_no_change() {
        let old = tools(vec![json!({"name": "t", "inputSchema": {"a": 1, "b": 2}})]);
        let new: Value =
            serde_json::from_str(r#"{"inputSchema": {"b": 2, "a": 1.0}, "name": "t"}"#).unwrap();
        assert!(Diff::between(&old, &tools(vec![new])).is_empty());
    }

    #[test]
    fn serializes_only_what_changed() {
        let diff = Diff::between(
            &tools(vec![json!({"name": "t", "title": "a"})]),
            &tools(vec![json!({"name": "t", "title": "b"})]),
        );
        assert_eq!(
            serde_json::to_value(&diff).unwrap(),
            json!({"tools": {"changed": [{"name": "t", "fields": ["title"]}]}})
        );
    }
}
