//! JSON-RPC 2.0 envelopes. Payloads stay `serde_json::Value` built with `preserve_order`,
//! so every field we do not touch (unknown ones included) is forwarded unchanged.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value, json};
use std::fmt;

use crate::error::RpcError;

/// A request id as it appeared on the wire: a string or a number (kept exactly, including
/// integers beyond i64). Hashable so it can key id-rewriting maps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RequestId {
    Number(serde_json::Number),
    String(String),
}

impl RequestId {
    pub fn from_value(value: &Value) -> Option<RequestId> {
        match value {
            Value::Number(n) => Some(RequestId::Number(n.clone())),
            Value::String(s) => Some(RequestId::String(s.clone())),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            RequestId::Number(n) => Value::Number(n.clone()),
            RequestId::String(s) => Value::String(s.clone()),
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            RequestId::Number(n) => n.as_u64(),
            RequestId::String(_) => None,
        }
    }
}

impl From<u64> for RequestId {
    fn from(value: u64) -> Self {
        RequestId::Number(value.into())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Number(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// One JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    Request {
        id: RequestId,
        method: String,
        params: Option<Value>,
    },
    Notification {
        method: String,
        params: Option<Value>,
    },
    Response {
        id: RequestId,
        result: Value,
    },
    Error {
        id: Option<RequestId>,
        error: RpcError,
    },
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RequestId::Number(n) => n.serialize(serializer),
            RequestId::String(s) => serializer.serialize_str(s),
        }
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("jsonrpc", "2.0")?;
        match self {
            Message::Request { id, method, params } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("method", method)?;
                if let Some(params) = params {
                    map.serialize_entry("params", params)?;
                }
            }
            Message::Notification { method, params } => {
                map.serialize_entry("method", method)?;
                if let Some(params) = params {
                    map.serialize_entry("params", params)?;
                }
            }
            Message::Response { id, result } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("result", result)?;
            }
            Message::Error { id, error } => {
                map.serialize_entry("id", id)?;
                map.serialize_entry("error", error)?;
            }
        }
        map.end()
    }
}

/// Why bytes are not a JSON-RPC message. Each maps to the error a peer must see.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("JSON-RPC batches are not supported")]
    Batch,
    #[error("invalid JSON-RPC message: {0}")]
    Invalid(String),
}

impl ParseError {
    pub fn to_rpc_error(&self) -> RpcError {
        match self {
            ParseError::Json(_) => RpcError::parse(self.to_string()),
            ParseError::Batch | ParseError::Invalid(_) => {
                RpcError::invalid_request(self.to_string())
            }
        }
    }
}

impl Message {
    /// Parses one message from bytes, strictly: `jsonrpc` must be "2.0", arrays (batches)
    /// are rejected, ids must be strings or numbers.
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ParseError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Message, ParseError> {
        let mut object = match value {
            Value::Object(object) => object,
            Value::Array(_) => return Err(ParseError::Batch),
            _ => return Err(ParseError::Invalid("not an object".into())),
        };
        if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(ParseError::Invalid("`jsonrpc` must be \"2.0\"".into()));
        }
        let raw_id = object.remove("id");
        let null_id = matches!(raw_id, Some(Value::Null));
        let id =
            match raw_id {
                None | Some(Value::Null) => None,
                Some(value) => Some(RequestId::from_value(&value).ok_or_else(|| {
                    ParseError::Invalid("`id` must be a string or a number".into())
                })?),
            };
        let params = object.remove("params");
        if let Some(params) = &params
            && !params.is_object()
            && !params.is_array()
            && !params.is_null()
        {
            return Err(ParseError::Invalid("`params` must be an object".into()));
        }
        if let Some(method) = object.remove("method") {
            let Value::String(method) = method else {
                return Err(ParseError::Invalid("`method` must be a string".into()));
            };
            // JSON-RPC 2.0 makes `"id": null` a request (not a notification), and MCP
            // forbids null ids: refused, never silently treated as a notification.
            if null_id {
                return Err(ParseError::Invalid(
                    "`id` must not be null (omit it for a notification)".into(),
                ));
            }
            return Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            });
        }
        if let Some(result) = object.remove("result") {
            let id = id.ok_or_else(|| ParseError::Invalid("response without `id`".into()))?;
            return Ok(Message::Response { id, result });
        }
        if let Some(error) = object.remove("error") {
            let error: RpcError = serde_json::from_value(error)
                .map_err(|e| ParseError::Invalid(format!("bad error object: {e}")))?;
            return Ok(Message::Error { id, error });
        }
        Err(ParseError::Invalid(
            "neither a request, a notification nor a response".into(),
        ))
    }

    pub fn request(id: RequestId, method: impl Into<String>, params: Option<Value>) -> Message {
        Message::Request {
            id,
            method: method.into(),
            params,
        }
    }

    pub fn notification(method: impl Into<String>, params: Option<Value>) -> Message {
        Message::Notification {
            method: method.into(),
            params,
        }
    }

    pub fn response(id: RequestId, result: Value) -> Message {
        Message::Response { id, result }
    }

    pub fn error(id: Option<RequestId>, error: RpcError) -> Message {
        Message::Error { id, error }
    }

    /// The reply to a request: a result or an error.
    pub fn reply(id: RequestId, outcome: Result<Value, RpcError>) -> Message {
        match outcome {
            Ok(result) => Message::Response { id, result },
            Err(error) => Message::Error {
                id: Some(id),
                error,
            },
        }
    }

    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            _ => None,
        }
    }

    pub fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("jsonrpc".into(), json!("2.0"));
        match self {
            Message::Request { id, method, params } => {
                object.insert("id".into(), id.to_value());
                object.insert("method".into(), Value::String(method.clone()));
                if let Some(params) = params {
                    object.insert("params".into(), params.clone());
                }
            }
            Message::Notification { method, params } => {
                object.insert("method".into(), Value::String(method.clone()));
                if let Some(params) = params {
                    object.insert("params".into(), params.clone());
                }
            }
            Message::Response { id, result } => {
                object.insert("id".into(), id.to_value());
                object.insert("result".into(), result.clone());
            }
            Message::Error { id, error } => {
                object.insert(
                    "id".into(),
                    id.as_ref().map_or(Value::Null, RequestId::to_value),
                );
                object.insert("error".into(), error.to_value());
            }
        }
        Value::Object(object)
    }

    /// Serializes to compact JSON (never contains a raw newline, as stdio framing needs).
    /// The wire form, written straight from the borrowed payload (no intermediate
    /// `Value`), with the members in the order `to_value` gives them.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("message serializes")
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_match_the_value_form() {
        let messages = [
            Message::parse(br#"{"jsonrpc":"2.0","id":18446744073709551616,"method":"m","params":{"z":1,"a":[1.50,{"u":null}]}}"#).unwrap(),
            Message::parse(br#"{"jsonrpc":"2.0","method":"n"}"#).unwrap(),
            Message::parse(br#"{"jsonrpc":"2.0","id":"s\"1","result":{"b":2,"a":1}}"#).unwrap(),
            Message::Error { id: None, error: RpcError::invalid_request("no") },
            Message::Error { id: Some(RequestId::from(7)), error: RpcError::parse("bad").with_data(json!({"k": 1})) },
        ];
        for message in messages {
            let direct = String::from_utf8(message.to_bytes()).unwrap();
            let via_value = serde_json::to_string(&message.to_value()).unwrap();
            assert_eq!(direct, via_value);
        }
    }

    #[test]
    fn classifies_messages() {
        let req = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#).unwrap();
        assert!(matches!(req, Message::Request { ref method, .. } if method == "tools/list"));
        let note =
            Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(note, Message::Notification { .. }));
        let resp = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert!(matches!(resp, Message::Response { .. }));
        let err =
            Message::parse(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-1,"message":"x"}}"#)
                .unwrap();
        assert!(matches!(err, Message::Error { id: None, .. }));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(Message::parse(b"{nope"), Err(ParseError::Json(_))));
        assert_eq!(Message::parse(b"[]"), Err(ParseError::Batch));
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#),
            Err(ParseError::Invalid(_))
        ));
        assert!(matches!(
            Message::parse(br#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            Err(ParseError::Invalid(_))
        ));
        assert_eq!(
            Message::parse(b"[]").unwrap_err().to_rpc_error().code,
            -32600
        );
        let null_id = Message::parse(br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
        assert_eq!(null_id.unwrap_err().to_rpc_error().code, -32600);
        assert_eq!(
            Message::parse(b"{").unwrap_err().to_rpc_error().code,
            -32700
        );
    }

    #[test]
    fn keeps_big_ids_and_unknown_fields_in_order() {
        let text = r#"{"jsonrpc":"2.0","id":12345678901234567890,"result":{"z":1,"a":{"x-unknown":1.10}}}"#;
        let message = Message::parse(text.as_bytes()).unwrap();
        let Message::Response { id, .. } = &message else {
            panic!()
        };
        assert_eq!(id.as_u64(), Some(12345678901234567890));
        let out = String::from_utf8(message.to_bytes()).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":12345678901234567890,"result":{"z":1,"a":{"x-unknown":1.10}}}"#
        );
    }
}
