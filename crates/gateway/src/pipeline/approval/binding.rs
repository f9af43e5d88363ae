//! What an approval is bound to, and the check a call must pass to use one: the same
//! caller, server, tool and canonical arguments, under the same policy, before it expires,
//! and only once. Pure: no IO, no clock (times are given).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::digest::{canonical_sha256, hex};

/// The call an approval covers. Arguments are held as the SHA-256 of their canonical JSON
/// (keys sorted, numbers normalised: `crate::audit::digest`), so key order or number
/// spelling does not change what was approved, and any other change does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `Principal::binding`: the caller's identity, or for an anonymous stateless client
    /// its address.
    pub principal: String,
    pub server: String,
    /// The exposed tool name.
    pub tool: String,
    pub arguments_sha256: String,
    /// The digest of the approval rules in force when it was asked for.
    pub policy_version: String,
}

impl Binding {
    pub fn new(
        principal: &str,
        server: &str,
        tool: &str,
        arguments: Option<&Value>,
        policy_version: &str,
    ) -> Binding {
        Binding {
            principal: principal.to_owned(),
            server: server.to_owned(),
            tool: tool.to_owned(),
            arguments_sha256: arguments_digest(arguments),
            policy_version: policy_version.to_owned(),
        }
    }

    /// Why `call` may not use an approval bound to `self`, if it may not.
    pub fn mismatch(&self, call: &Binding) -> Option<Mismatch> {
        if self.principal != call.principal {
            Some(Mismatch::Principal)
        } else if self.server != call.server || self.tool != call.tool {
            Some(Mismatch::Tool)
        } else if self.arguments_sha256 != call.arguments_sha256 {
            Some(Mismatch::Arguments)
        } else if self.policy_version != call.policy_version {
            Some(Mismatch::Policy)
        } else {
            None
        }
    }
}

/// The digest of a call's arguments; absent arguments digest as an empty object (MCP
/// treats the two alike).
pub fn arguments_digest(arguments: Option<&Value>) -> String {
    match arguments {
        None | Some(Value::Null) => hex(&canonical_sha256(&Value::Object(Default::default()))),
        Some(arguments) => hex(&canonical_sha256(arguments)),
    }
}

/// What differs between an approval and the call presenting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Principal,
    Tool,
    Arguments,
    Policy,
}

impl Mismatch {
    /// For the client's error and the audit record's rule.
    pub fn describe(self) -> &'static str {
        match self {
            Mismatch::Principal => "it was not issued to this caller",
            Mismatch::Tool => "it was issued for another tool",
            Mismatch::Arguments => "the arguments differ from the approved ones",
            Mismatch::Policy => "the approval policy changed since it was issued",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mismatch::Principal => "principal",
            Mismatch::Tool => "tool",
            Mismatch::Arguments => "arguments",
            Mismatch::Policy => "policy",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn binding(arguments: Value) -> Binding {
        Binding::new("key:alice", "fx", "fx__add", Some(&arguments), "v1")
    }

    #[test]
    fn the_digest_is_canonical_key_order_and_number_spelling_do_not_matter() {
        let a: Value = serde_json::from_str(r#"{"b": 2, "a": {"y": [1, 2.0], "x": "s"}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": "s", "y": [1e0, 2]}, "b": 2.0}"#).unwrap();
        assert_eq!(arguments_digest(Some(&a)), arguments_digest(Some(&b)));
        let c = json!({"a": {"x": "s", "y": [1, 3]}, "b": 2});
        assert_ne!(arguments_digest(Some(&a)), arguments_digest(Some(&c)));
        // Absent, null and empty arguments are the same call.
        assert_eq!(arguments_digest(None), arguments_digest(Some(&json!({}))));
        assert_eq!(arguments_digest(Some(&Value::Null)), arguments_digest(None));
        assert_eq!(arguments_digest(None).len(), 64);
        // A string is not the number it spells, nor an array the object.
        assert_ne!(
            arguments_digest(Some(&json!({"a": "1"}))),
            arguments_digest(Some(&json!({"a": 1})))
        );
    }

    #[test]
    fn a_binding_covers_exactly_its_call() {
        let approved = binding(json!({"a": 1, "b": 2}));
        assert_eq!(approved.mismatch(&binding(json!({"b": 2, "a": 1}))), None);
        assert_eq!(
            approved.mismatch(&binding(json!({"a": 1, "b": 3}))),
            Some(Mismatch::Arguments)
        );
        let mut other = binding(json!({"a": 1, "b": 2}));
        other.principal = "key:bob".into();
        assert_eq!(approved.mismatch(&other), Some(Mismatch::Principal));
        let mut other = binding(json!({"a": 1, "b": 2}));
        other.tool = "fx__echo".into();
        assert_eq!(approved.mismatch(&other), Some(Mismatch::Tool));
        let mut other = binding(json!({"a": 1, "b": 2}));
        other.server = "fy".into();
        assert_eq!(approved.mismatch(&other), Some(Mismatch::Tool));
        let mut other = binding(json!({"a": 1, "b": 2}));
        other.policy_version = "v2".into();
        assert_eq!(approved.mismatch(&other), Some(Mismatch::Policy));
    }
}
