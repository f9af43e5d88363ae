//! Reserved `_meta` keys and helpers to read and write them on request params.

use serde_json::{Map, Value};

pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
pub const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
pub const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
pub const PROGRESS_TOKEN: &str = "progressToken";
/// switchboard's own key (vendor prefix `dev.switchboard/`): on a tool result the gateway
/// answered because the call's arguments did not fit the tool's `inputSchema`, the
/// structured errors (`{"tool", "errors": [{"path", "keyword", "message", "suggestion"?}],
/// "truncated"}`).
pub const VALIDATION: &str = "dev.switchboard/validation";

/// The `_meta` object of a params value, if any.
pub fn get(params: Option<&Value>) -> Option<&Map<String, Value>> {
    params?.get("_meta")?.as_object()
}

/// A string field of `_meta`.
pub fn get_str<'a>(params: Option<&'a Value>, key: &str) -> Option<&'a str> {
    get(params)?.get(key)?.as_str()
}

/// The `_meta` object of `params`, created when absent. `params` must be an object
/// (or null, which becomes one).
pub fn get_mut(params: &mut Value) -> &mut Map<String, Value> {
    if !params.is_object() {
        *params = Value::Object(Map::new());
    }
    let object = params.as_object_mut().expect("params is an object");
    let meta = object
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("_meta is an object")
}

/// Removes the modern per-request identity fields (version, client info, capabilities)
/// from `params._meta`, leaving other keys (`logLevel`, `progressToken`, vendor keys).
pub fn strip_protocol_fields(params: &mut Value) {
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.remove(PROTOCOL_VERSION);
        meta.remove(CLIENT_INFO);
        meta.remove(CLIENT_CAPABILITIES);
        if meta.is_empty() {
            params.as_object_mut().map(|o| o.remove("_meta"));
        }
    }
}

/// The progress token of a request, if it asked for progress.
pub fn progress_token(params: Option<&Value>) -> Option<&Value> {
    get(params)?.get(PROGRESS_TOKEN)
}
