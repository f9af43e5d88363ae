//! Applying a policy to a result: which strings are looked at, and what each action does
//! to them.
//!
//! Looked at: a tool result's text blocks, embedded resources' `text` and every string
//! leaf of `structuredContent`; a read's `contents[].text`; a prompt's `description` and
//! its messages' text and embedded resources; an upstream error's `message` and the
//! string leaves of its `data`. Nothing else is touched, and a string without findings is
//! left as it is, so the result stays byte-identical apart from what was redacted (key
//! order and number text are kept by serde_json's `preserve_order` and
//! `arbitrary_precision`). Object keys are not redacted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use switchboard_config::{RedactAction, RedactionSettings};
use switchboard_protocol::RpcError;

use super::RedactionCounts;
use super::detect::{self, DetectorId, Detectors, Hit};
use super::policy::{Policies, Policy};
use super::secrets::Secrets;

/// The redaction engine: detectors, policies and the key of `hash` tags. Pure: it sees a
/// value and gives it back redacted; metrics and the per-call record are the step's.
pub struct Redactor {
    detectors: Detectors,
    policies: Policies,
    secrets: Arc<Secrets>,
    secret_id: DetectorId,
    salt: Vec<u8>,
}

/// What one string leaf comes to.
enum Leaf {
    Kept,
    /// Its content block is to be removed.
    Drop,
    /// The whole result is to be withheld.
    Block,
}

/// One pass over one result.
struct Pass<'r> {
    redactor: &'r Redactor,
    policy: &'r Policy,
    /// Findings per detector id (allocated on the first finding).
    counts: Vec<u32>,
    dropped: u32,
    blocked: bool,
    hits: Vec<Hit>,
}

impl Redactor {
    pub fn new(settings: &RedactionSettings, secrets: Arc<Secrets>) -> Redactor {
        let detectors = Detectors::new(&settings.patterns);
        let policies = Policies::new(settings, &detectors);
        let salt = match &settings.hash_salt {
            Some(salt) => salt.expose_str().as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Redactor {
            secret_id: detectors.id("secret").expect("a built-in detector"),
            detectors,
            policies,
            secrets,
            salt,
        }
    }

    /// The name of detector `id`.
    pub fn detector_name(&self, id: DetectorId) -> &Arc<str> {
        self.detectors.name(id)
    }

    /// Redacts the result of `method` (`tools/call`, `resources/read`, `prompts/get`) on
    /// `server`'s `name` in place. `None`: nothing was found. When the counts say
    /// `blocked`, the value is partly redacted and must be replaced
    /// ([`Redactor::withheld_message`]).
    pub fn redact_result(
        &self,
        method: &str,
        server: &str,
        name: &str,
        result: &mut Value,
    ) -> Option<RedactionCounts> {
        let policy = self.policies.for_call(server, name);
        if policy.is_empty() {
            return None;
        }
        let mut pass = Pass::new(self, policy);
        match method {
            "tools/call" => pass.tool_result(result),
            "resources/read" => pass.read_result(result),
            "prompts/get" => pass.prompt_result(result),
            _ => {}
        }
        pass.finish()
    }

    /// Redacts an upstream's error (its message and the string leaves of its data). A
    /// `block` finding leaves only the code and a message saying it was withheld; `drop`
    /// masks (an error has no blocks).
    pub fn redact_error(
        &self,
        server: &str,
        name: &str,
        error: &mut RpcError,
    ) -> Option<RedactionCounts> {
        let policy = self.policies.for_call(server, name);
        if policy.is_empty() {
            return None;
        }
        let mut pass = Pass::new(self, policy);
        if !matches!(pass.leaf(&mut error.message, false), Leaf::Block)
            && let Some(data) = &mut error.data
        {
            pass.tree(data);
        }
        let counts = pass.finish()?;
        if counts.blocked {
            error.message = self.withheld_message(&counts);
            error.data = None;
        }
        Some(counts)
    }

    /// Redacts one string as a tool result's text would be (for tests and benchmarks);
    /// `None` when the text would take the whole result with it (`drop`, `block`).
    pub fn redact_text(
        &self,
        server: &str,
        name: &str,
        text: &str,
    ) -> (Option<String>, Option<RedactionCounts>) {
        let policy = self.policies.for_call(server, name);
        let mut pass = Pass::new(self, policy);
        let mut text = text.to_owned();
        let kept = matches!(pass.leaf(&mut text, true), Leaf::Kept);
        (kept.then_some(text), pass.finish())
    }

    /// What a client is told instead of a withheld result.
    pub fn withheld_message(&self, counts: &RedactionCounts) -> String {
        let found: Vec<&str> = counts.detectors.keys().map(String::as_str).collect();
        format!(
            "result withheld by the gateway's redaction policy (it contained: {})",
            found.join(", ")
        )
    }

    /// `[REDACTED:<detector>:<12 hex digits>]`: HMAC-SHA256 under the salt, of the
    /// detector and the value, so equal values get equal tags and a tag cannot be
    /// reversed by trying every phone number.
    fn tag(&self, detector: DetectorId, value: &str, out: &mut String) {
        let name = self.detectors.name(detector);
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.salt).expect("HMAC takes any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let _ = write!(out, "[REDACTED:{name}:");
        for byte in &digest[..6] {
            let _ = write!(out, "{byte:02x}");
        }
        out.push(']');
    }

    fn find(&self, text: &str, policy: &Policy, hits: &mut Vec<Hit>) {
        if policy.any_pattern() {
            self.detectors.find(text, policy.enabled(), hits);
        }
        if policy.secret().is_some() {
            self.secrets.find(text, self.secret_id, hits);
        }
        detect::merge(hits);
    }
}

impl<'r> Pass<'r> {
    fn new(redactor: &'r Redactor, policy: &'r Policy) -> Pass<'r> {
        Pass {
            redactor,
            policy,
            counts: Vec::new(),
            dropped: 0,
            blocked: false,
            hits: Vec::new(),
        }
    }

    fn finish(self) -> Option<RedactionCounts> {
        if self.counts.is_empty() {
            return None;
        }
        let detectors: BTreeMap<String, u32> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(id, n)| (self.redactor.detectors.name(id).to_string(), *n))
            .collect();
        Some(RedactionCounts {
            detectors,
            dropped: self.dropped,
            blocked: self.blocked,
        })
    }

    /// Finds, counts and applies; `droppable`: the string is a block's text (a `drop`
    /// removes the block), else `drop` masks.
    fn leaf(&mut self, text: &mut String, droppable: bool) -> Leaf {
        self.hits.clear();
        self.redactor.find(text, self.policy, &mut self.hits);
        if self.hits.is_empty() {
            return Leaf::Kept;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; self.redactor.detectors.len()];
        }
        let mut strongest = RedactAction::Mask;
        for hit in &self.hits {
            self.counts[hit.detector] += 1;
            strongest = strongest.max(self.action(hit.detector));
        }
        match strongest {
            RedactAction::Block => {
                self.blocked = true;
                return Leaf::Block;
            }
            RedactAction::Drop if droppable => {
                self.dropped += 1;
                return Leaf::Drop;
            }
            _ => {}
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for hit in &self.hits {
            out.push_str(&text[at..hit.start]);
            match self.action(hit.detector) {
                RedactAction::Hash => {
                    self.redactor
                        .tag(hit.detector, &text[hit.start..hit.end], &mut out)
                }
                _ => {
                    out.push_str("[REDACTED:");
                    out.push_str(self.redactor.detectors.name(hit.detector));
                    out.push(']');
                }
            }
            at = hit.end;
        }
        out.push_str(&text[at..]);
        *text = out;
        Leaf::Kept
    }

    fn action(&self, detector: DetectorId) -> RedactAction {
        self.policy.action(detector).unwrap_or(RedactAction::Mask)
    }

    /// Every string leaf of a tree (no blocks to drop: `drop` masks).
    fn tree(&mut self, value: &mut Value) -> Leaf {
        match value {
            Value::String(text) => match self.leaf(text, false) {
                Leaf::Block => Leaf::Block,
                _ => Leaf::Kept,
            },
            Value::Array(items) => {
                for item in items {
                    if let Leaf::Block = self.tree(item) {
                        return Leaf::Block;
                    }
                }
                Leaf::Kept
            }
            Value::Object(members) => {
                for (_, member) in members.iter_mut() {
                    if let Leaf::Block = self.tree(member) {
                        return Leaf::Block;
                    }
                }
                Leaf::Kept
            }
            _ => Leaf::Kept,
        }
    }

    /// A string member of an object, if there is one.
    fn member(&mut self, object: &mut Value, key: &str, droppable: bool) -> Leaf {
        match object.get_mut(key) {
            Some(Value::String(text)) => self.leaf(text, droppable),
            _ => Leaf::Kept,
        }
    }

    /// A content block: text, or an embedded resource's text.
    fn content_block(&mut self, block: &mut Value) -> Leaf {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => self.member(block, "text", true),
            Some("resource") => match block.get_mut("resource") {
                Some(resource) => self.member(resource, "text", true),
                None => Leaf::Kept,
            },
            _ => Leaf::Kept,
        }
    }

    /// Each item of `array`: kept, removed (`drop`), or the end of the pass (`block`).
    fn each(
        &mut self,
        array: Option<&mut Value>,
        mut visit: impl FnMut(&mut Self, &mut Value) -> Leaf,
    ) -> bool {
        let Some(Value::Array(items)) = array else {
            return true;
        };
        let mut index = 0;
        while index < items.len() {
            match visit(self, &mut items[index]) {
                Leaf::Kept => index += 1,
                Leaf::Drop => {
                    items.remove(index);
                }
                Leaf::Block => return false,
            }
        }
        true
    }

    fn tool_result(&mut self, result: &mut Value) {
        if !self.each(result.get_mut("content"), Self::content_block) {
            return;
        }
        if let Some(structured) = result.get_mut("structuredContent") {
            self.tree(structured);
        }
    }

    fn read_result(&mut self, result: &mut Value) {
        self.each(result.get_mut("contents"), |pass, item| {
            pass.member(item, "text", true)
        });
    }

    fn prompt_result(&mut self, result: &mut Value) {
        if let Leaf::Block = self.member(result, "description", false) {
            return;
        }
        self.each(result.get_mut("messages"), |pass, message| {
            let Some(content) = message.get_mut("content") else {
                return Leaf::Kept;
            };
            if content.is_array() {
                let kept = pass.each(Some(content), Self::content_block);
                return if kept { Leaf::Kept } else { Leaf::Block };
            }
            pass.content_block(content)
        });
    }
}

#[cfg(test)]
mod tests;
