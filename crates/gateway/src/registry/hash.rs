//! Canonical hashes of capability items: the same item hashes the same whatever key
//! order or number spelling the server used (canonical JSON, `audit::digest`). A set of
//! items hashes by identity (name, URI or URI template), so a server that only reorders
//! its list has not changed it.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::audit::digest::canonical_sha256;
use crate::catalog::ServerLists;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// The fields whose changes pinning and diffs name first; any other top-level field is
/// compared too and named as it is spelled.
pub const TRACKED_FIELDS: [&str; 5] = [
    "description",
    "title",
    "inputSchema",
    "outputSchema",
    "annotations",
];

/// The canonical digest of one item.
pub fn item(value: &Value) -> Digest {
    canonical_sha256(value)
}

/// The digest of each top-level field of an item (an item that is not an object has
/// none).
pub fn fields(value: &Value) -> BTreeMap<String, Digest> {
    value
        .as_object()
        .map(|object| {
            object
                .iter()
                .map(|(key, field)| (key.clone(), canonical_sha256(field)))
                .collect()
        })
        .unwrap_or_default()
}

/// The identity of an item in a list of `field`-named items (`name`, `uri`,
/// `uriTemplate`); items without one are kept under their position.
pub fn identity(value: &Value, field: &str, position: usize) -> String {
    value
        .get(field)
        .and_then(Value::as_str)
        .map_or_else(|| format!("#{position}"), str::to_owned)
}

/// The digest of a server's whole set: per kind, its items' identities and digests in
/// identity order.
pub fn lists(lists: &ServerLists) -> Digest {
    let mut hasher = Sha256::new();
    for (kind, items, key) in kinds(lists) {
        hasher.update(kind.as_bytes());
        hasher.update([0]);
        let mut entries: Vec<(String, Digest)> = items
            .iter()
            .enumerate()
            .map(|(position, item_value)| (identity(item_value, key, position), item(item_value)))
            .collect();
        entries.sort_unstable();
        for (identity, digest) in entries {
            hasher.update(identity.as_bytes());
            hasher.update([0]);
            hasher.update(digest);
        }
    }
    hasher.finalize().into()
}

/// Each kind of a server's lists: (name, items, identity field).
pub fn kinds(lists: &ServerLists) -> [(&'static str, &[Value], &'static str); 4] {
    [
        ("tools", &lists.tools, "name"),
        ("prompts", &lists.prompts, "name"),
        ("resources", &lists.resources, "uri"),
        ("resourceTemplates", &lists.templates, "uriTemplate"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_number_spelling_do_not_change_an_item() {
        let a: Value =
            serde_json::from_str(r#"{"name":"t","inputSchema":{"a":1.0,"b":2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"inputSchema":{"b":2,"a":1},"name":"t"}"#).unwrap();
        assert_eq!(item(&a), item(&b));
        let c = json!({"name": "t", "inputSchema": {"a": 1, "b": 3}});
        assert_ne!(item(&a), item(&c));
    }

    #[test]
    fn a_reordered_set_is_the_same_set() {
        let one = ServerLists {
            tools: vec![json!({"name": "a"}), json!({"name": "b"})],
            ..ServerLists::default()
        };
        let two = ServerLists {
            tools: vec![json!({"name": "b"}), json!({"name": "a"})],
            ..ServerLists::default()
        };
        assert_eq!(lists(&one), lists(&two));
        let moved = ServerLists {
            prompts: vec![json!({"name": "a"}), json!({"name": "b"})],
            ..ServerLists::default()
        };
        assert_ne!(lists(&one), lists(&moved), "a tool is not a prompt");
    }
}
