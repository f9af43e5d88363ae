//! JSON-RPC and MCP error codes, and the error object that travels on the wire.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// Modern: HTTP headers do not match the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// Modern: the request needs a client capability the client did not declare.
pub const MISSING_REQUIRED_CLIENT_CAPABILITY: i64 = -32021;
/// Modern: the requested protocol version is not supported.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// Legacy: the resource does not exist.
pub const RESOURCE_NOT_FOUND: i64 = -32002;

/// Gateway-defined codes, outside the JSON-RPC reserved range.
pub mod gateway {
    /// The upstream server could not be reached or died mid-call (retryable).
    pub const UPSTREAM_UNAVAILABLE: i64 = -31001;
    /// The upstream did not answer in time (retryable).
    pub const UPSTREAM_TIMEOUT: i64 = -31002;
    /// The upstream answered something that is not valid MCP.
    pub const UPSTREAM_PROTOCOL: i64 = -31003;
    /// A message exceeded the configured size bound.
    pub const MESSAGE_TOO_LARGE: i64 = -31004;
    /// The capability cannot be bridged between the client's and the server's eras.
    pub const NOT_BRIDGEABLE: i64 = -31005;
    /// The gateway is shedding load or shutting down (retryable).
    pub const OVERLOADED: i64 = -31006;
    /// A step of the gateway's call pipeline refused the call (policy, not failure).
    pub const DENIED: i64 = -31007;
    /// The upstream server was ended by a limit of its sandbox (memory, CPU time, …)
    /// while serving the request. Not retryable as is: the same call would likely hit it
    /// again.
    pub const SANDBOX_LIMIT: i64 = -31010;
    /// The client cancelled the request (not retryable: the client chose to stop it).
    /// Never sent for a request the client cancelled with `notifications/cancelled`
    /// (that request gets no answer); it marks a cancelled call where an outcome must
    /// still be recorded (audit, a meta-tool's inner call).
    pub const REQUEST_CANCELLED: i64 = -31011;
}

/// A JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn parse(message: impl Into<String>) -> Self {
        Self::new(PARSE_ERROR, message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_REQUEST, message)
    }

    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("Method not found: {method}"))
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(INTERNAL_ERROR, message)
    }

    pub fn header_mismatch(message: impl Into<String>) -> Self {
        Self::new(HEADER_MISMATCH, message)
    }

    pub fn unsupported_version(requested: &str, supported: &[&str]) -> Self {
        Self::new(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version")
            .with_data(json!({ "supported": supported, "requested": requested }))
    }

    pub fn missing_capability(capabilities: Value) -> Self {
        Self::new(
            MISSING_REQUIRED_CLIENT_CAPABILITY,
            "Missing required client capability",
        )
        .with_data(json!({ "requiredCapabilities": capabilities }))
    }

    /// Whether this error is one only a modern server would send: used by era detection.
    pub fn is_modern_error(&self) -> bool {
        matches!(
            self.code,
            HEADER_MISMATCH | MISSING_REQUIRED_CLIENT_CAPABILITY | UNSUPPORTED_PROTOCOL_VERSION
        )
    }

    /// Whether a caller may retry the same request later with a chance of success.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.code,
            gateway::UPSTREAM_UNAVAILABLE | gateway::UPSTREAM_TIMEOUT | gateway::OVERLOADED
        )
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("error serializes")
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}
