//! The modern Streamable HTTP rules for mirroring body fields into headers: `Mcp-Method`,
//! `Mcp-Name`, `Mcp-Param-{Name}` from `x-mcp-header`, and the `=?base64?…?=` encoding.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

pub const PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const METHOD: &str = "mcp-method";
pub const NAME: &str = "mcp-name";
pub const SESSION_ID: &str = "mcp-session-id";
pub const PARAM_PREFIX: &str = "mcp-param-";

const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

/// Encodes a value for a header, base64-wrapping it when it is not plain visible ASCII,
/// has surrounding whitespace, or looks like the sentinel itself.
pub fn encode_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) || b == b'\t')
        && value.trim() == value
        && !(value.starts_with(SENTINEL_START) && value.ends_with(SENTINEL_END));
    if plain {
        value.to_owned()
    } else {
        format!(
            "{SENTINEL_START}{}{SENTINEL_END}",
            STANDARD.encode(value.as_bytes())
        )
    }
}

/// Decodes a header value, unwrapping the base64 sentinel. `None` if the value has invalid
/// characters or broken base64.
pub fn decode_value(raw: &[u8]) -> Option<String> {
    if !raw.iter().all(|b| (0x20..=0x7e).contains(b) || *b == b'\t') {
        return None;
    }
    let text = std::str::from_utf8(raw).ok()?;
    match text
        .strip_prefix(SENTINEL_START)
        .and_then(|t| t.strip_suffix(SENTINEL_END))
    {
        Some(encoded) => String::from_utf8(STANDARD.decode(encoded).ok()?).ok(),
        None => Some(text.to_owned()),
    }
}

/// The body field a method mirrors into `Mcp-Name`, if any.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        // The tasks extension (SEP-2663, "Streamable HTTP: Routing Headers").
        "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
        _ => None,
    }
}

/// One `x-mcp-header` annotation: the header name part and the property path it mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamHeader {
    pub header: String,
    pub path: Vec<String>,
}

/// Why a tool's `x-mcp-header` annotations are invalid (the tool must then be excluded
/// from `tools/list` by HTTP clients).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParamHeaderError {
    #[error("x-mcp-header at {0} is not a valid header token")]
    BadName(String),
    #[error("x-mcp-header {0:?} is declared twice")]
    Duplicate(String),
    #[error("x-mcp-header at {0} is on a non-primitive property")]
    NotPrimitive(String),
    #[error("x-mcp-header at {0} is not reachable through `properties` alone")]
    Unreachable(String),
}

/// Collects and validates the `x-mcp-header` annotations of an input schema.
pub fn param_headers(schema: &Value) -> Result<Vec<ParamHeader>, ParamHeaderError> {
    let mut found = Vec::new();
    collect(schema, &mut Vec::new(), true, &mut found)?;
    let mut seen = std::collections::HashSet::new();
    for header in &found {
        if !seen.insert(header.header.to_ascii_lowercase()) {
            return Err(ParamHeaderError::Duplicate(header.header.clone()));
        }
    }
    Ok(found)
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn collect(
    schema: &Value,
    path: &mut Vec<String>,
    reachable: bool,
    found: &mut Vec<ParamHeader>,
) -> Result<(), ParamHeaderError> {
    let Some(object) = schema.as_object() else {
        return Ok(());
    };
    let here = || format!("/{}", path.join("/"));
    if let Some(annotation) = object.get("x-mcp-header") {
        let name = annotation.as_str().unwrap_or_default();
        if !is_token(name) {
            return Err(ParamHeaderError::BadName(here()));
        }
        if !reachable || path.is_empty() {
            return Err(ParamHeaderError::Unreachable(here()));
        }
        let primitive = matches!(
            object.get("type").and_then(Value::as_str),
            Some("string" | "integer" | "boolean")
        );
        if !primitive {
            return Err(ParamHeaderError::NotPrimitive(here()));
        }
        found.push(ParamHeader {
            header: name.to_owned(),
            path: path.clone(),
        });
    }
    for (key, child) in object {
        match key.as_str() {
            "properties" => {
                if let Some(properties) = child.as_object() {
                    for (property, sub) in properties {
                        path.push(property.clone());
                        collect(sub, path, reachable, found)?;
                        path.pop();
                    }
                }
            }
            "x-mcp-header" | "const" | "default" | "enum" | "examples" => {}
            _ => match child {
                Value::Object(_) => collect(child, path, false, found)?,
                Value::Array(items) => {
                    for item in items {
                        collect(item, path, false, found)?;
                    }
                }
                _ => {}
            },
        }
    }
    Ok(())
}

/// The `Mcp-Param-*` headers for a call: (header name, encoded value), omitting absent and
/// null values.
pub fn param_header_values(
    headers: &[ParamHeader],
    arguments: Option<&Value>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for header in headers {
        let mut value = arguments;
        for step in &header.path {
            value = value.and_then(|v| v.get(step));
        }
        let text = match value {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        out.push((format!("Mcp-Param-{}", header.header), encode_value(&text)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_like_the_spec_table() {
        assert_eq!(encode_value("us-west1"), "us-west1");
        assert_eq!(
            encode_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(encode_value(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(encode_value("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(
            encode_value("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
        for v in ["us-west1", "Hello, 世界", " padded ", "=?base64?literal?="] {
            assert_eq!(decode_value(encode_value(v).as_bytes()).as_deref(), Some(v));
        }
        assert_eq!(decode_value(b"bad\x01"), None);
    }

    #[test]
    fn extracts_annotated_params() {
        let schema = json!({"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "nested":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}},
            "query":{"type":"string"}}});
        let headers = param_headers(&schema).unwrap();
        assert_eq!(headers.len(), 2);
        let values = param_header_values(
            &headers,
            Some(&json!({"region":"us-west1","nested":{"n":42}})),
        );
        assert_eq!(
            values,
            vec![
                ("Mcp-Param-Region".into(), "us-west1".into()),
                ("Mcp-Param-N".into(), "42".into())
            ]
        );
        assert!(param_header_values(&headers, Some(&json!({"region": null}))).is_empty());
    }

    #[test]
    fn rejects_invalid_annotations() {
        let array = json!({"properties":{"a":{"type":"array","items":{"type":"string","x-mcp-header":"A"}}}});
        assert!(matches!(
            param_headers(&array),
            Err(ParamHeaderError::Unreachable(_))
        ));
        let number = json!({"properties":{"a":{"type":"number","x-mcp-header":"A"}}});
        assert!(matches!(
            param_headers(&number),
            Err(ParamHeaderError::NotPrimitive(_))
        ));
        let dup = json!({"properties":{"a":{"type":"string","x-mcp-header":"A"},"b":{"type":"string","x-mcp-header":"a"}}});
        assert!(matches!(
            param_headers(&dup),
            Err(ParamHeaderError::Duplicate(_))
        ));
        let bad = json!({"properties":{"a":{"type":"string","x-mcp-header":"A B"}}});
        assert!(matches!(
            param_headers(&bad),
            Err(ParamHeaderError::BadName(_))
        ));
    }
}
