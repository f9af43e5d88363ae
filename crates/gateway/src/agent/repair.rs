//! Argument repair: a model's tool-call arguments checked against the tool's
//! `inputSchema` and mended where the intent is unambiguous — property names matched
//! case-insensitively, then by the closest spelling (`suggest`), then by position when
//! the count of unknown names equals the count of unused properties; scalars coerced
//! where the reading is certain ("42" → 42, "true" → true, 7 → "7"); defaults filled.
//! Every change is reported; what cannot be mended is a validation message for the model.
//! Pure: no IO, no gateway state.

use serde_json::{Map, Number, Value};

/// What one repair did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepairKind {
    /// A property name matched one of the schema's case-insensitively (`Text` → `text`).
    Renamed,
    /// A property name matched the closest of the schema's names (`txet` → `text`).
    Misspelled,
    /// A property name matched by position (unknown names, in order, onto unused ones).
    Positional,
    /// A scalar's type was changed to the schema's (`"42"` → `42`).
    Coerced,
    /// A missing property took the schema's default.
    Defaulted,
}

impl RepairKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RepairKind::Renamed => "renamed",
            RepairKind::Misspelled => "misspelled",
            RepairKind::Positional => "positional",
            RepairKind::Coerced => "coerced",
            RepairKind::Defaulted => "defaulted",
        }
    }
}

/// One change made to the arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Repair {
    pub kind: RepairKind,
    /// The property (its name after the repair).
    pub property: String,
    /// What the model wrote: the old name, or the old value; `None` for a default.
    pub from: Option<Value>,
}

impl Repair {
    pub fn to_json(&self) -> Value {
        let mut entry =
            serde_json::json!({ "kind": self.kind.as_str(), "property": self.property });
        if let Some(from) = &self.from {
            entry["from"] = from.clone();
        }
        entry
    }
}

/// Arguments that fit the schema (as far as it was checked), and how they were mended.
#[derive(Debug, PartialEq)]
pub struct Repaired {
    pub arguments: Value,
    pub repairs: Vec<Repair>,
}

/// Checks `arguments` against `schema` and repairs what it safely can; `Err` is the
/// validation message to hand back to the model.
pub fn repair(schema: &Value, arguments: Value) -> Result<Repaired, String> {
    let mut repairs = Vec::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut given = match arguments {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        // A bare list of values, one per property in the schema's order.
        Value::Array(values) if values.len() == properties.len() && !values.is_empty() => {
            let mut map = Map::new();
            for ((name, _), value) in properties.iter().zip(values) {
                repairs.push(Repair {
                    kind: RepairKind::Positional,
                    property: name.clone(),
                    from: None,
                });
                map.insert(name.clone(), value);
            }
            map
        }
        other => {
            return Err(format!(
                "arguments must be a JSON object, not {}",
                type_name(&other)
            ));
        }
    };
    if !properties.is_empty() {
        given = match_names(&properties, given, &mut repairs);
    }
    for (name, property) in &properties {
        match given.get_mut(name) {
            Some(value) => {
                if let Some(coerced) = coerce(property, value) {
                    repairs.push(Repair {
                        kind: RepairKind::Coerced,
                        property: name.clone(),
                        from: Some(std::mem::replace(value, coerced)),
                    });
                }
            }
            None => {
                if let Some(default) = property.get("default") {
                    given.insert(name.clone(), default.clone());
                    repairs.push(Repair {
                        kind: RepairKind::Defaulted,
                        property: name.clone(),
                        from: None,
                    });
                }
            }
        }
    }
    check(schema, &properties, &given)?;
    Ok(Repaired {
        arguments: Value::Object(given),
        repairs,
    })
}

/// Maps the names the schema does not know onto the ones it does.
fn match_names(
    properties: &Map<String, Value>,
    given: Map<String, Value>,
    repairs: &mut Vec<Repair>,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut unknown = Vec::new();
    for (name, value) in given {
        if properties.contains_key(&name) {
            out.insert(name, value);
        } else {
            unknown.push((name, value));
        }
    }
    // Case-insensitively, then by spelling; each property taken once.
    let mut still_unknown = Vec::new();
    for (name, value) in unknown {
        let unused: Vec<&str> = properties
            .keys()
            .map(String::as_str)
            .filter(|p| !out.contains_key(*p))
            .collect();
        let folded = unused
            .iter()
            .find(|p| p.eq_ignore_ascii_case(&name) || squash(p) == squash(&name));
        let (target, kind) = match folded {
            Some(p) => (Some((*p).to_owned()), RepairKind::Renamed),
            // Names of one or two letters are all "close": no guess by spelling.
            None if name.chars().count() < 3 => (None, RepairKind::Misspelled),
            None => (
                crate::suggest::closest(&name, unused.iter().copied())
                    .into_iter()
                    .next(),
                RepairKind::Misspelled,
            ),
        };
        match target {
            Some(target) => {
                repairs.push(Repair {
                    kind,
                    property: target.clone(),
                    from: Some(Value::String(name)),
                });
                out.insert(target, value);
            }
            None => still_unknown.push((name, value)),
        }
    }
    // By position: as many unknown names as unused properties, in order.
    let unused: Vec<String> = properties
        .keys()
        .filter(|p| !out.contains_key(*p))
        .cloned()
        .collect();
    if !still_unknown.is_empty() && still_unknown.len() == unused.len() {
        for ((name, value), target) in still_unknown.drain(..).zip(unused) {
            repairs.push(Repair {
                kind: RepairKind::Positional,
                property: target.clone(),
                from: Some(Value::String(name)),
            });
            out.insert(target, value);
        }
    }
    // What is left stays as written (the schema may allow more); `check` decides.
    for (name, value) in still_unknown {
        out.insert(name, value);
    }
    out
}

/// A name without case, `_` and `-` (`file_path` ~ `filePath` ~ `FILE-PATH`).
fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The schema's single type for a property, if it names exactly one.
fn single_type(property: &Value) -> Option<&str> {
    match property.get("type")? {
        Value::String(kind) => Some(kind),
        Value::Array(kinds) => {
            let kinds: Vec<&str> = kinds
                .iter()
                .filter_map(Value::as_str)
                .filter(|k| *k != "null")
                .collect();
            (kinds.len() == 1).then(|| kinds[0])
        }
        _ => None,
    }
}

/// The value converted to the property's type, when the reading is unambiguous.
fn coerce(property: &Value, value: &Value) -> Option<Value> {
    let kind = single_type(property)?;
    match (kind, value) {
        ("integer", Value::String(text)) => {
            let number: Number = text.trim().parse().ok()?;
            integral(&number)
        }
        ("integer", Value::Number(number))
            if number.as_i64().is_none() && number.as_u64().is_none() =>
        {
            integral(number)
        }
        ("number", Value::String(text)) => {
            let number: Number = text.trim().parse().ok()?;
            Some(Value::Number(number))
        }
        ("boolean", Value::String(text)) => match text.trim() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ("string", Value::Number(number)) => Some(Value::String(number.to_string())),
        ("string", Value::Bool(flag)) => Some(Value::String(flag.to_string())),
        _ => None,
    }
}

/// A whole number as an integer (`42`, `"42"`, `42.0`), else `None`.
fn integral(number: &Number) -> Option<Value> {
    if let Some(int) = number.as_i64() {
        return Some(Value::from(int));
    }
    if let Some(int) = number.as_u64() {
        return Some(Value::from(int));
    }
    let float = number.as_f64()?;
    (float.fract() == 0.0 && float.abs() < 9.0e15).then(|| Value::from(float as i64))
}

/// What cannot be mended: a missing required property, a scalar of the wrong type, a
/// property the schema forbids.
fn check(
    schema: &Value,
    properties: &Map<String, Value>,
    given: &Map<String, Value>,
) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !given.contains_key(name) {
                problems.push(format!("missing required property `{name}`"));
            }
        }
    }
    for (name, value) in given {
        match properties.get(name) {
            Some(property) => {
                if let Some(kind) = single_type(property)
                    && !fits(kind, value)
                {
                    problems.push(format!(
                        "property `{name}` must be {kind}, not {}",
                        type_name(value)
                    ));
                }
            }
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                let known: Vec<&str> = properties.keys().map(String::as_str).collect();
                problems.push(format!(
                    "unknown property `{name}` (expected one of: {})",
                    known.join(", ")
                ));
            }
            None => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn fits(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add_schema() -> Value {
        json!({ "type": "object", "properties": {
            "a": { "type": "number" }, "b": { "type": "number" } }, "required": ["a", "b"] })
    }

    fn echo_schema() -> Value {
        json!({ "type": "object", "properties": {
            "text": { "type": "string" },
            "count": { "type": "integer", "default": 1 },
            "loud": { "type": "boolean" } }, "required": ["text"] })
    }

    fn kinds(repaired: &Repaired) -> Vec<RepairKind> {
        repaired.repairs.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn fitting_arguments_pass_untouched_but_for_defaults() {
        let repaired = repair(&add_schema(), json!({ "a": 1, "b": 2 })).unwrap();
        assert_eq!(repaired.arguments, json!({ "a": 1, "b": 2 }));
        assert!(repaired.repairs.is_empty());
        let repaired = repair(&echo_schema(), json!({ "text": "hi" })).unwrap();
        assert_eq!(repaired.arguments["count"], 1);
        assert_eq!(kinds(&repaired), [RepairKind::Defaulted]);
    }

    #[test]
    fn names_are_matched_by_case_then_spelling() {
        let repaired = repair(&echo_schema(), json!({ "Text": "hi", "COUNT": 2 })).unwrap();
        assert_eq!(repaired.arguments, json!({ "text": "hi", "count": 2 }));
        assert_eq!(kinds(&repaired), [RepairKind::Renamed, RepairKind::Renamed]);
        assert_eq!(repaired.repairs[0].from, Some(json!("Text")));
        let repaired = repair(&echo_schema(), json!({ "txet": "hi", "count": 3 })).unwrap();
        assert_eq!(repaired.arguments["text"], "hi");
        assert_eq!(kinds(&repaired), [RepairKind::Misspelled]);
    }

    #[test]
    fn unknown_names_map_by_position_when_the_count_matches() {
        let repaired = repair(&add_schema(), json!({ "x": 1, "y": 2 })).unwrap();
        assert_eq!(repaired.arguments, json!({ "a": 1, "b": 2 }));
        assert_eq!(
            kinds(&repaired),
            [RepairKind::Positional, RepairKind::Positional]
        );
        let repaired = repair(&add_schema(), json!([3, 4])).unwrap();
        assert_eq!(repaired.arguments, json!({ "a": 3, "b": 4 }));
        // Three names for two places: no guess.
        assert!(repair(&add_schema(), json!({ "x": 1, "y": 2, "z": 3 })).is_err());
    }

    #[test]
    fn scalars_are_coerced_only_when_unambiguous() {
        let repaired = repair(&add_schema(), json!({ "a": "42", "b": "1.5" })).unwrap();
        assert_eq!(repaired.arguments, json!({ "a": 42, "b": 1.5 }));
        assert_eq!(kinds(&repaired), [RepairKind::Coerced, RepairKind::Coerced]);
        assert_eq!(repaired.repairs[0].from, Some(json!("42")));
        let repaired = repair(
            &echo_schema(),
            json!({ "text": 7, "count": 2.0, "loud": "true" }),
        )
        .unwrap();
        assert_eq!(
            repaired.arguments,
            json!({ "text": "7", "count": 2, "loud": true })
        );
        let error = repair(&add_schema(), json!({ "a": "forty-two", "b": 1 })).unwrap_err();
        assert!(error.contains("`a` must be number"), "{error}");
        let error = repair(&echo_schema(), json!({ "text": "x", "count": 2.5 })).unwrap_err();
        assert!(error.contains("`count` must be integer"), "{error}");
    }

    #[test]
    fn what_cannot_be_repaired_is_explained() {
        let error = repair(&add_schema(), json!({ "a": 1 })).unwrap_err();
        assert!(error.contains("missing required property `b`"), "{error}");
        let error = repair(&add_schema(), json!("1 and 2")).unwrap_err();
        assert!(error.contains("JSON object"), "{error}");
        let strict = json!({ "type": "object", "properties": { "a": { "type": "string" } },
            "additionalProperties": false });
        let error = repair(&strict, json!({ "a": "x", "zzzzzzzz": 1 })).unwrap_err();
        assert!(error.contains("unknown property `zzzzzzzz`"), "{error}");
    }
}
