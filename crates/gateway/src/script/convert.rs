//! JSON ↔ script values. Tool arguments and results cross here, in both directions, with
//! no other representation: numbers that fit an integer stay integers, other numbers are
//! floats; a script value JSON cannot hold (a function pointer, a timestamp) is an error
//! naming its type, never a silent string.

use rhai::{Array, Dynamic, Map};
use serde_json::{Map as JsonMap, Number, Value};

/// Nesting deeper than this (JSON in or a script value out) is refused: the conversion
/// recurses, and a result from an upstream is not trusted to be shallow.
pub(crate) const MAX_DEPTH: usize = 128;

/// A value that could not be converted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ConvertError {
    #[error("a value of type `{0}` cannot be turned into JSON")]
    Unsupported(String),
    #[error("value nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A JSON value as a script value.
pub(crate) fn to_dynamic(value: &Value) -> Result<Dynamic, ConvertError> {
    to_dynamic_at(value, 0)
}

fn to_dynamic_at(value: &Value, depth: usize) -> Result<Dynamic, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    Ok(match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(s.clone()),
        Value::Array(items) => Dynamic::from_array(
            items
                .iter()
                .map(|item| to_dynamic_at(item, depth + 1))
                .collect::<Result<Array, _>>()?,
        ),
        Value::Object(object) => {
            let mut map = Map::new();
            for (key, item) in object {
                map.insert(key.as_str().into(), to_dynamic_at(item, depth + 1)?);
            }
            Dynamic::from_map(map)
        }
    })
}

/// A script value as JSON. `()` is `null`; a character is a one-character string; a
/// float that JSON cannot hold (NaN, infinity) is `null`.
pub(crate) fn to_json(value: &Dynamic) -> Result<Value, ConvertError> {
    to_json_at(value, 0)
}

fn to_json_at(value: &Dynamic, depth: usize) -> Result<Value, ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.as_float() {
        return Ok(Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if value.is_string() {
        return Ok(Value::String(
            value.clone().cast::<rhai::ImmutableString>().into(),
        ));
    }
    if value.is_array() {
        let array = value.read_lock::<Array>().expect("checked: an array");
        return array
            .iter()
            .map(|item| to_json_at(item, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if value.is_map() {
        let map = value.read_lock::<Map>().expect("checked: a map");
        let mut object = JsonMap::new();
        for (key, item) in map.iter() {
            object.insert(key.to_string(), to_json_at(item, depth + 1)?);
        }
        return Ok(Value::Object(object));
    }
    if value.is_blob() {
        let blob = value.read_lock::<rhai::Blob>().expect("checked: a blob");
        return Ok(Value::Array(blob.iter().map(|b| Value::from(*b)).collect()));
    }
    Err(ConvertError::Unsupported(value.type_name().to_owned()))
}

/// What a JSON value holds, nested values counted together (as the interpreter counts
/// its own limits): array elements, map properties, string bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sizes {
    pub(crate) array_len: usize,
    pub(crate) map_len: usize,
    pub(crate) string_bytes: usize,
}

/// The sizes of `value` (the interpreter checks its limits only where a value is used,
/// so a value built by index assignment is checked again here, where it leaves).
pub(crate) fn sizes(value: &Value) -> Sizes {
    let mut sizes = Sizes::default();
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(s) => sizes.string_bytes += s.len(),
            Value::Array(items) => {
                sizes.array_len += items.len();
                pending.extend(items);
            }
            Value::Object(object) => {
                sizes.map_len += object.len();
                pending.extend(object.values());
            }
            _ => {}
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips() {
        let value = json!({
            "n": null, "t": true, "i": -42, "big": 9_007_199_254_740_993_i64, "f": 1.5,
            "s": "é\"x", "a": [1, "two", [3.25], {}], "m": { "k": { "deep": [] } }
        });
        let back = to_json(&to_dynamic(&value).unwrap()).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn script_only_values() {
        let engine = rhai::Engine::new_raw();
        let value: Dynamic = engine.eval("'c'").unwrap();
        assert_eq!(to_json(&value).unwrap(), json!("c"));
        let value: Dynamic = engine.eval("()").unwrap();
        assert_eq!(to_json(&value).unwrap(), Value::Null);
        let value: Dynamic = engine.eval("0.0 / 0.0").unwrap();
        assert_eq!(to_json(&value).unwrap(), Value::Null);
        let pointer: Dynamic = engine.eval("Fn(\"f\")").unwrap();
        assert!(matches!(
            to_json(&pointer),
            Err(ConvertError::Unsupported(_))
        ));
    }

    #[test]
    fn sizes_count_nested_values_together() {
        let value = json!({ "a": [1, [2, 3]], "s": "abc", "m": { "t": "de" } });
        assert_eq!(
            sizes(&value),
            Sizes {
                array_len: 4,
                map_len: 4,
                string_bytes: 5
            }
        );
    }

    #[test]
    fn depth_is_bounded_both_ways() {
        let mut value = json!(1);
        for _ in 0..(MAX_DEPTH + 5) {
            value = json!([value]);
        }
        assert_eq!(to_dynamic(&value).unwrap_err(), ConvertError::TooDeep);
        let mut dynamic = Dynamic::from_int(1);
        for _ in 0..(MAX_DEPTH + 5) {
            dynamic = Dynamic::from_array(vec![dynamic]);
        }
        assert_eq!(to_json(&dynamic).unwrap_err(), ConvertError::TooDeep);
    }
}
