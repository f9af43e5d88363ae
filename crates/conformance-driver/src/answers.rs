//! How the driver answers server→client requests (legacy requests and modern input
//! requests alike), as an unattended user would: accept every elicitation, filling the
//! form with the schema's defaults (SEP-1034) or plausible values, and answer sampling
//! and roots with fixed content.

use serde_json::{Map, Value, json};

/// The answer to one server→client request, or a JSON-RPC error object.
pub(crate) fn answer(method: &str, params: &Value) -> Result<Value, Value> {
    match method {
        "elicitation/create" => Ok(elicit(params)),
        "sampling/createMessage" => Ok(json!({
            "role": "assistant",
            "content": { "type": "text", "text": "A sampled answer from the conformance driver" },
            "model": "switchboard-conformance-driver",
            "stopReason": "endTurn",
        })),
        "roots/list" => Ok(json!({
            "roots": [{ "uri": "file:///tmp/switchboard-conformance", "name": "conformance" }]
        })),
        "ping" => Ok(json!({})),
        other => Err(json!({ "code": -32601, "message": format!("Method not found: {other}") })),
    }
}

fn elicit(params: &Value) -> Value {
    if params["mode"].as_str() == Some("url") {
        return json!({ "action": "accept" });
    }
    let schema = &params["requestedSchema"];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut content = Map::new();
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        // Defaults are applied to every field that has one; other fields are filled
        // only when required, as a user skipping optional fields would.
        let value = match property.get("default") {
            Some(default) => Some(default.clone()),
            None if required.contains(&name.as_str()) => example(property),
            None => None,
        };
        if let Some(value) = value {
            content.insert(name.clone(), value);
        }
    }
    json!({ "action": "accept", "content": content })
}

/// A value that satisfies a primitive schema of an elicitation form.
fn example(property: &Value) -> Option<Value> {
    if let Some(first) = property["enum"].as_array().and_then(|e| e.first()) {
        return Some(first.clone());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(first) = property[key].as_array().and_then(|o| o.first()) {
            return first.get("const").cloned();
        }
    }
    let minimum = property.get("minimum").and_then(Value::as_f64);
    match property["type"].as_str()? {
        "string" => Some(json!(match property["format"].as_str() {
            Some("email") => "conformance@example.com",
            Some("uri") => "https://example.com/conformance",
            Some("date") => "2026-07-28",
            Some("date-time") => "2026-07-28T12:00:00Z",
            _ => "conformance",
        })),
        "integer" => Some(json!(minimum.map_or(1, |m| m.ceil() as i64))),
        "number" => Some(json!(minimum.unwrap_or(1.0))),
        "boolean" => Some(json!(true)),
        "array" => {
            let items = &property["items"];
            let first = items["enum"]
                .as_array()
                .and_then(|e| e.first())
                .cloned()
                .or_else(|| {
                    ["anyOf", "oneOf"]
                        .iter()
                        .find_map(|key| items[*key].as_array()?.first()?.get("const").cloned())
                })?;
            Some(json!([first]))
        }
        _ => None,
    }
}

/// Arguments for a tool call, generated from its input schema: every required property
/// gets a plausible value.
pub(crate) fn arguments_for(schema: &Value) -> Value {
    let mut arguments = Map::new();
    let required = schema["required"].as_array().cloned().unwrap_or_default();
    for name in required.iter().filter_map(Value::as_str) {
        let property = &schema["properties"][name];
        let value = property
            .get("default")
            .cloned()
            .or_else(|| example(property))
            .unwrap_or_else(|| match property["type"].as_str() {
                Some("object") => json!({}),
                Some("array") => json!([]),
                Some("null") => Value::Null,
                _ => json!("conformance"),
            });
        arguments.insert(name.to_owned(), value);
    }
    Value::Object(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elicitation_applies_defaults_and_fills_required_fields() {
        let params = json!({ "message": "m", "requestedSchema": { "type": "object",
            "properties": {
                "name": { "type": "string", "default": "John Doe" },
                "age": { "type": "integer", "default": 30 },
                "status": { "type": "string", "enum": ["a", "b"], "default": "b" },
                "email": { "type": "string", "format": "email" },
                "note": { "type": "string" },
            },
            "required": ["email"] } });
        let answer = answer("elicitation/create", &params).unwrap();
        assert_eq!(answer["action"], "accept");
        assert_eq!(
            answer["content"],
            json!({ "name": "John Doe", "age": 30, "status": "b", "email": "conformance@example.com" })
        );
    }

    #[test]
    fn arguments_cover_required_properties() {
        let schema = json!({ "type": "object",
            "properties": { "a": { "type": "number" }, "b": { "type": "string", "enum": ["x"] }, "c": { "type": "string" } },
            "required": ["a", "b"] });
        assert_eq!(arguments_for(&schema), json!({ "a": 1.0, "b": "x" }));
    }
}
