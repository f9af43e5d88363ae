//! Whether a tool as a run snapshot showed it can still be called as the upstream lists
//! it now (pure). "Compatible" means: every call a client could build from the pinned
//! definition is still a valid call, and every structured result it was promised still
//! fits what it expects.
//!
//! - Fields other than `inputSchema` and `outputSchema` (description, title, annotations,
//!   icons, `_meta`, …) never make a change incompatible.
//! - Annotation keywords inside a schema (`title`, `description`, `examples`, `default`,
//!   `$comment`, `deprecated`, `readOnly`, `writeOnly`) never count.
//! - `inputSchema`: compatible when, past annotations, the schemas are equal, or both
//!   describe objects and the new one only *widens* the old: properties added that are
//!   not required, properties no longer required, and each old property's schema
//!   compatible by the same rule. Anything else (a property removed or retyped, a newly
//!   required one, `additionalProperties`, `type` or any other keyword changed) is not.
//! - `outputSchema`: compatible when equal past annotations, when added (none before), or
//!   when the new one only *narrows* the old: properties added, properties newly required,
//!   each old property still there with a compatible schema. Removing it is not.
//!
//! The comparison is structural: a change that keeps the accepted set the same but
//! spells it differently (e.g. `anyOf` reordered) is judged incompatible, the safe side.

use serde_json::{Map, Value};

/// Keywords that describe a schema without constraining it.
const ANNOTATIONS: [&str; 8] = [
    "title",
    "description",
    "examples",
    "default",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Schemas nested deeper than this are compared for equality only.
const MAX_DEPTH: usize = 32;

/// How a tool changed between a snapshot and the live catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing that matters to a caller changed (possibly nothing at all).
    Compatible,
    /// Calls made from the pinned definition may fail or mean something else: what
    /// changed, as `field/json-pointer: what` lines.
    Incompatible(Vec<String>),
}

/// Which way a schema may change compatibly.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Arguments: the new schema must accept everything the old one did.
    Widen,
    /// Results: the new schema must promise everything the old one did.
    Narrow,
}

/// Judges the live definition of a tool against the one a snapshot holds.
pub fn judge(pinned: &Value, live: &Value) -> Verdict {
    if pinned == live {
        return Verdict::Compatible;
    }
    let mut changes = Vec::new();
    match (pinned.get("inputSchema"), live.get("inputSchema")) {
        (None, None) => {}
        (Some(old), Some(new)) => {
            compare(old, new, Direction::Widen, "inputSchema", 0, &mut changes);
        }
        (Some(_), None) => changes.push("inputSchema: removed".to_owned()),
        (None, Some(_)) => changes.push("inputSchema: added".to_owned()),
    }
    match (pinned.get("outputSchema"), live.get("outputSchema")) {
        (None, _) => {}
        (Some(old), Some(new)) => {
            compare(old, new, Direction::Narrow, "outputSchema", 0, &mut changes);
        }
        (Some(_), None) => changes.push("outputSchema: removed".to_owned()),
    }
    if changes.is_empty() {
        Verdict::Compatible
    } else {
        Verdict::Incompatible(changes)
    }
}

/// Whether `key` constrains (is not an annotation keyword).
fn constrains(key: &str) -> bool {
    !ANNOTATIONS.contains(&key)
}

/// Whether two schemas are equal past annotations, at every depth.
fn same(old: &Value, new: &Value, depth: usize) -> bool {
    if old == new {
        return true;
    }
    if depth >= MAX_DEPTH {
        return false;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            // `properties` maps names to schemas: a property called `title` is not an
            // annotation, so it is compared as a schema under its own key.
            a.keys().filter(|key| constrains(key)).count()
                == b.keys().filter(|key| constrains(key)).count()
                && a.iter()
                    .filter(|(key, _)| constrains(key))
                    .all(|(key, old)| {
                        b.get(key)
                            .is_some_and(|new| same_member(key, old, new, depth))
                    })
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y, depth + 1))
        }
        _ => false,
    }
}

fn same_member(key: &str, old: &Value, new: &Value, depth: usize) -> bool {
    match (key, old, new) {
        ("properties" | "$defs" | "definitions", Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter().all(|(name, schema)| {
                    b.get(name)
                        .is_some_and(|other| same(schema, other, depth + 1))
                })
        }
        // Values, not schemas: every member counts.
        ("const" | "enum", _, _) => old == new,
        _ => same(old, new, depth + 1),
    }
}

fn required(schema: &Map<String, Value>) -> std::collections::BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn is_object_schema(schema: &Map<String, Value>) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
        || (schema.get("type").is_none() && schema.contains_key("properties"))
}

/// Compares one schema pair, appending what makes it incompatible to `changes`.
fn compare(
    old: &Value,
    new: &Value,
    direction: Direction,
    path: &str,
    depth: usize,
    changes: &mut Vec<String>,
) {
    if same(old, new, depth) {
        return;
    }
    let (Some(old_map), Some(new_map)) = (old.as_object(), new.as_object()) else {
        changes.push(format!("{path}: changed"));
        return;
    };
    if depth >= MAX_DEPTH || !is_object_schema(old_map) || !is_object_schema(new_map) {
        changes.push(format!("{path}: changed"));
        return;
    }
    // Keywords other than `properties` and `required` must stay as they were.
    let mut keys: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if key == "properties" || key == "required" || !constrains(key) {
            continue;
        }
        match (old_map.get(key), new_map.get(key)) {
            (Some(a), Some(b)) if same(a, b, depth + 1) => {}
            (Some(_), Some(_)) => changes.push(format!("{path}/{key}: changed")),
            (Some(_), None) => changes.push(format!("{path}/{key}: removed")),
            (None, Some(_)) => changes.push(format!("{path}/{key}: added")),
            (None, None) => {}
        }
    }
    let old_properties = old_map.get("properties").and_then(Value::as_object);
    let new_properties = new_map.get("properties").and_then(Value::as_object);
    let (old_required, new_required) = (required(old_map), required(new_map));
    for (name, old_schema) in old_properties.into_iter().flatten() {
        let here = format!("{path}/properties/{name}");
        match new_properties.and_then(|properties| properties.get(name)) {
            Some(new_schema) => {
                compare(old_schema, new_schema, direction, &here, depth + 1, changes);
            }
            None => changes.push(format!("{here}: removed")),
        }
    }
    match direction {
        Direction::Widen => {
            for name in new_required.difference(&old_required) {
                changes.push(format!("{path}/required: `{name}` is now required"));
            }
        }
        Direction::Narrow => {
            for name in old_required.difference(&new_required) {
                changes.push(format!("{path}/required: `{name}` is no longer promised"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(input: Value) -> Value {
        json!({ "name": "add", "description": "Adds.", "inputSchema": input })
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": { "a": { "type": "number" }, "b": { "type": "number", "description": "second" } },
            "required": ["a", "b"]
        })
    }

    #[test]
    fn descriptions_titles_and_annotations_are_compatible() {
        let mut live = tool(schema());
        live["description"] = json!("Adds two numbers, now with feeling.");
        live["annotations"] = json!({ "readOnlyHint": true });
        live["inputSchema"]["properties"]["b"]["description"] = json!("the addend");
        live["inputSchema"]["title"] = json!("Add");
        assert_eq!(judge(&tool(schema()), &live), Verdict::Compatible);
    }

    #[test]
    fn a_new_optional_property_and_a_relaxed_requirement_are_compatible() {
        let mut live = schema();
        live["properties"]["c"] = json!({ "type": "number" });
        live["required"] = json!(["a"]);
        assert_eq!(judge(&tool(schema()), &tool(live)), Verdict::Compatible);
    }

    #[test]
    fn a_new_required_property_is_incompatible_and_named() {
        let mut live = schema();
        live["properties"]["c"] = json!({ "type": "number" });
        live["required"] = json!(["a", "b", "c"]);
        assert_eq!(
            judge(&tool(schema()), &tool(live)),
            Verdict::Incompatible(vec!["inputSchema/required: `c` is now required".into()])
        );
    }

    #[test]
    fn a_retyped_or_removed_property_is_incompatible() {
        let mut live = schema();
        live["properties"]["a"] = json!({ "type": "string" });
        live["properties"].as_object_mut().unwrap().remove("b");
        live["required"] = json!(["a"]);
        let Verdict::Incompatible(changes) = judge(&tool(schema()), &tool(live)) else {
            panic!("compatible")
        };
        assert_eq!(
            changes,
            vec![
                "inputSchema/properties/a: changed".to_owned(),
                "inputSchema/properties/b: removed".to_owned(),
            ]
        );
    }

    #[test]
    fn closing_additional_properties_is_incompatible() {
        let mut live = schema();
        live["additionalProperties"] = json!(false);
        assert_eq!(
            judge(&tool(schema()), &tool(live)),
            Verdict::Incompatible(vec!["inputSchema/additionalProperties: added".into()])
        );
    }

    #[test]
    fn nested_objects_widen_by_the_same_rule() {
        let old = json!({ "type": "object", "properties": { "opts": { "type": "object", "properties": { "x": { "type": "string" } } } } });
        let mut wider = old.clone();
        wider["properties"]["opts"]["properties"]["y"] = json!({ "type": "string" });
        assert_eq!(judge(&tool(old.clone()), &tool(wider)), Verdict::Compatible);
        let mut stricter = old.clone();
        stricter["properties"]["opts"]["required"] = json!(["x"]);
        assert_eq!(
            judge(&tool(old), &tool(stricter)),
            Verdict::Incompatible(vec![
                "inputSchema/properties/opts/required: `x` is now required".into()
            ])
        );
    }

    #[test]
    fn values_in_const_and_enum_count_whatever_their_keys() {
        let old =
            json!({ "type": "object", "properties": { "m": { "enum": [{ "title": "a" }] } } });
        let new =
            json!({ "type": "object", "properties": { "m": { "enum": [{ "title": "b" }] } } });
        assert!(matches!(
            judge(&tool(old), &tool(new)),
            Verdict::Incompatible(_)
        ));
    }

    #[test]
    fn a_property_named_like_an_annotation_still_counts() {
        let old = json!({ "type": "object", "properties": { "title": { "type": "string" } } });
        let new = json!({ "type": "object", "properties": { "title": { "type": "number" } } });
        assert!(matches!(
            judge(&tool(old), &tool(new)),
            Verdict::Incompatible(_)
        ));
    }

    #[test]
    fn output_schemas_may_promise_more_but_not_less() {
        let output = json!({ "type": "object", "properties": { "sum": { "type": "number" } }, "required": ["sum"] });
        let mut old = tool(schema());
        old["outputSchema"] = output.clone();
        let mut more = old.clone();
        more["outputSchema"]["properties"]["carry"] = json!({ "type": "number" });
        more["outputSchema"]["required"] = json!(["sum", "carry"]);
        assert_eq!(judge(&old, &more), Verdict::Compatible);
        let mut less = old.clone();
        less["outputSchema"]["required"] = json!([]);
        assert_eq!(
            judge(&old, &less),
            Verdict::Incompatible(vec![
                "outputSchema/required: `sum` is no longer promised".into()
            ])
        );
        let mut gone = old.clone();
        gone.as_object_mut().unwrap().remove("outputSchema");
        assert_eq!(
            judge(&old, &gone),
            Verdict::Incompatible(vec!["outputSchema: removed".into()])
        );
        // An output schema where there was none promises more.
        assert_eq!(judge(&tool(schema()), &old), Verdict::Compatible);
    }
}
