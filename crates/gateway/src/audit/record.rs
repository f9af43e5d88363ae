//! One audit record: who called what, what was decided, how it ended. A [`Record`] is
//! what the pipeline (or another part, e.g. approvals) hands the log; the writer gives it
//! its sequence number, the previous record's hash and the signing key's id, and writes
//! the body as one JSON object in a fixed field order ([`Record::body`]).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::digest::hex;

/// Version of the record format, first field of every body.
pub const FORMAT: u32 = 1;

/// What was decided about a request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Decision {
    /// Every step let it through.
    #[default]
    Allowed,
    /// A step refused it (`step`), by a rule when the step names one (`rule`).
    Denied {
        step: &'static str,
        rule: Option<String>,
    },
    /// A rate limit refused it.
    RateLimited { rule: Option<String> },
    /// The name it addresses does not exist.
    Unknown,
    /// The request was malformed (params missing or of the wrong type).
    Invalid,
    /// Waiting for an approval.
    Pending { approval: String },
    /// Approved by `by`.
    Approved { approval: String, by: String },
    /// Refused by a person (`by`), e.g. an approver.
    DeniedBy {
        approval: Option<String>,
        by: String,
        reason: Option<String>,
    },
    /// An approval expired without an answer.
    Expired { approval: String },
}

impl Decision {
    /// The `decision` field: `allowed`, `denied`, `rate_limited`, `unknown`, `invalid`,
    /// `pending`, `approved`, `denied_by`, `expired`.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied { .. } => "denied",
            Decision::RateLimited { .. } => "rate_limited",
            Decision::Unknown => "unknown",
            Decision::Invalid => "invalid",
            Decision::Pending { .. } => "pending",
            Decision::Approved { .. } => "approved",
            Decision::DeniedBy { .. } => "denied_by",
            Decision::Expired { .. } => "expired",
        }
    }

    /// Whether the request went on to be carried out.
    pub fn executes(&self) -> bool {
        matches!(self, Decision::Allowed | Decision::Approved { .. })
    }
}

/// How a carried-out request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A result.
    Ok,
    /// A tool result with `isError: true`.
    ToolError,
    /// A multi round-trip result asking the client for input (the call goes on later).
    InputRequired,
    /// The upstream failed: its JSON-RPC error, unavailable, or a protocol error.
    UpstreamError,
    /// The upstream did not answer in time.
    Timeout,
    /// The client cancelled or went away.
    Cancelled,
    /// The gateway refused it while carrying it out (bad params, a rejected requestState).
    Rejected,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::InputRequired => "input_required",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
            Outcome::Cancelled => "cancelled",
            Outcome::Rejected => "rejected",
        }
    }
}

/// The JSON-RPC error the client got, when it got one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    pub code: i64,
    pub message: String,
}

/// Longest error message kept in a record, in bytes.
const MAX_ERROR_MESSAGE: usize = 512;

impl ErrorInfo {
    pub fn new(code: i64, message: &str) -> ErrorInfo {
        let mut end = message.len().min(MAX_ERROR_MESSAGE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        ErrorInfo {
            code,
            message: message[..end].to_owned(),
        }
    }
}

/// One record, before the writer seals it.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// When the request arrived (Unix milliseconds).
    pub time_ms: u64,
    pub principal: String,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    /// The client session (legacy session, stdio client, modern connection).
    pub session: String,
    /// `http` or `stdio`.
    pub face: &'static str,
    /// The client's address, when the face knows it.
    pub peer: Option<String>,
    pub method: String,
    /// The upstream server, when the request goes to one.
    pub server: Option<String>,
    /// The tool or prompt name, or the resource URI, as the client named it.
    pub tool: Option<String>,
    pub decision: Decision,
    /// How it ended; `None` when it was not carried out.
    pub outcome: Option<Outcome>,
    pub error: Option<ErrorInfo>,
    pub arguments_sha256: Option<[u8; 32]>,
    pub result_sha256: Option<[u8; 32]>,
    /// The raw arguments (only with `record_arguments`).
    pub arguments: Option<Value>,
    /// The raw result (only with `record_results`).
    pub result: Option<Value>,
    /// Matches redacted from the result, per detector.
    pub redactions: BTreeMap<String, u64>,
    /// From the audit step's `before` to its `after`, in microseconds.
    pub latency_us: u64,
}

/// The body as written: field order is part of the format.
#[derive(Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    time: String,
    key: &'a str,
    prev: String,
    principal: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    session: &'a str,
    face: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer: Option<&'a str>,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool: Option<&'a str>,
    decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    redactions: &'a BTreeMap<String, u64>,
    latency_us: u64,
}

impl Record {
    /// The body of record `seq`, chained to `prev` and signed by key `key` (its id): one
    /// JSON object, fields in a fixed order.
    pub fn body(&self, seq: u64, prev: &[u8; 32], key: &str) -> Vec<u8> {
        let (step, rule, approval, by, reason) = match &self.decision {
            Decision::Allowed | Decision::Unknown | Decision::Invalid => {
                (None, None, None, None, None)
            }
            Decision::Denied { step, rule } => (Some(*step), rule.as_deref(), None, None, None),
            Decision::RateLimited { rule } => (Some("limits"), rule.as_deref(), None, None, None),
            Decision::Pending { approval } | Decision::Expired { approval } => {
                (None, None, Some(approval.as_str()), None, None)
            }
            Decision::Approved { approval, by } => {
                (None, None, Some(approval.as_str()), Some(by.as_str()), None)
            }
            Decision::DeniedBy {
                approval,
                by,
                reason,
            } => (
                None,
                None,
                approval.as_deref(),
                Some(by.as_str()),
                reason.as_deref(),
            ),
        };
        let body = Body {
            v: FORMAT,
            seq,
            time: super::time::format_ms(self.time_ms),
            key,
            prev: hex(prev),
            principal: &self.principal,
            tenant: self.tenant.as_deref(),
            roles: &self.roles,
            session: &self.session,
            face: self.face,
            peer: self.peer.as_deref(),
            method: &self.method,
            server: self.server.as_deref(),
            tool: self.tool.as_deref(),
            decision: self.decision.label(),
            step,
            rule,
            approval,
            by,
            reason,
            outcome: self.outcome,
            error: self.error.as_ref(),
            args_sha256: self.arguments_sha256.as_ref().map(|d| hex(d)),
            result_sha256: self.result_sha256.as_ref().map(|d| hex(d)),
            args: self.arguments.as_ref(),
            result: self.result.as_ref(),
            redactions: &self.redactions,
            latency_us: self.latency_us,
        };
        serde_json::to_vec(&body).expect("a record serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_a_fixed_shape() {
        let record = Record {
            time_ms: 0,
            principal: "key:ci".into(),
            tenant: Some("acme".into()),
            session: "s1".into(),
            face: "http",
            method: "tools/call".into(),
            server: Some("fx".into()),
            tool: Some("fx__echo".into()),
            decision: Decision::Denied {
                step: "rules",
                rule: Some("access.rules[0]".into()),
            },
            error: Some(ErrorInfo::new(-31007, "no")),
            arguments_sha256: Some([0xab; 32]),
            ..Record::default()
        };
        let body = String::from_utf8(record.body(7, &[0; 32], "k1")).unwrap();
        assert!(
            body.starts_with(&format!(
                r#"{{"v":1,"seq":7,"time":"1970-01-01T00:00:00.000Z","key":"k1","prev":"{}","principal":"key:ci","tenant":"acme","session":"s1","face":"http","method":"tools/call","server":"fx","tool":"fx__echo","decision":"denied","step":"rules","rule":"access.rules[0]","error":{{"code":-31007,"message":"no"}},"args_sha256":"abab"#,
                "0".repeat(64)
            )),
            "{body}"
        );
        assert!(body.ends_with(r#","latency_us":0}"#), "{body}");
    }

    #[test]
    fn long_error_messages_are_cut_on_a_char_boundary() {
        let message = "é".repeat(400);
        let info = ErrorInfo::new(1, &message);
        assert!(info.message.len() <= MAX_ERROR_MESSAGE);
        assert!(message.starts_with(&info.message));
    }
}
