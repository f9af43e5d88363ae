//! Which tool calls need approval, and from whom: the `[[approvals.rules]]` matched
//! against a call (server, exposed tool name, the tool's annotations, the caller's tenant
//! and roles). The first rule that matches decides. The policy's version — a digest of the
//! rules — is part of every approval's binding, so an approval granted under other rules
//! is not used under these.

use serde_json::Value;
use sha2::{Digest, Sha256};
use switchboard_config::{AnnotationMatch, ApprovalRule, Approver};

use crate::audit::digest::hex;
use crate::principal::Principal;

/// The rules, in order, and their version.
pub struct Policy {
    rules: Vec<ApprovalRule>,
    version: String,
}

/// What the policy asks of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub approver: Approver,
    /// The rule's key path (`approvals.rules[0]`).
    pub rule: String,
}

impl Policy {
    pub fn new(rules: &[ApprovalRule]) -> Policy {
        let mut digest = Sha256::new();
        for rule in rules {
            // Length-prefixed fields: no two rule sets write the same bytes.
            let mut field = |text: &str| {
                digest.update((text.len() as u64).to_be_bytes());
                digest.update(text.as_bytes());
            };
            field(rule.servers.as_str());
            field(rule.tools.as_str());
            field(rule.when.as_str());
            field(
                &rule
                    .tenants
                    .as_ref()
                    .map(|t| t.join("\u{1f}"))
                    .unwrap_or_default(),
            );
            field(
                &rule
                    .roles
                    .as_ref()
                    .map(|r| r.join("\u{1f}"))
                    .unwrap_or_default(),
            );
            field(if rule.tenants.is_some() { "t" } else { "-" });
            field(if rule.roles.is_some() { "r" } else { "-" });
            field(rule.approver.as_str());
            field(if rule.require { "require" } else { "exempt" });
        }
        let version = hex(&digest.finalize()[..8]);
        Policy {
            rules: rules.to_vec(),
            version,
        }
    }

    /// The digest of the rules (16 hex digits).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the call of `tool` (its definition from the snapshot, for annotations) on
    /// `server` by `principal` needs approval, and from whom. Cheap when no rule matches:
    /// two globs per rule, no allocation.
    pub fn need(
        &self,
        principal: &Principal,
        server: &str,
        exposed: &str,
        tool: Option<&Value>,
    ) -> Option<Need> {
        let rule = self
            .rules
            .iter()
            .find(|rule| matches(rule, principal, server, exposed, tool))?;
        rule.require.then(|| Need {
            approver: rule.approver,
            rule: rule.key.clone(),
        })
    }
}

fn matches(
    rule: &ApprovalRule,
    principal: &Principal,
    server: &str,
    exposed: &str,
    tool: Option<&Value>,
) -> bool {
    if !rule.servers.matches(server) || !rule.tools.matches(exposed) {
        return false;
    }
    if let Some(tenants) = &rule.tenants
        && !principal
            .tenant()
            .is_some_and(|tenant| tenants.iter().any(|t| t == tenant))
    {
        return false;
    }
    if let Some(roles) = &rule.roles
        && !principal.roles().iter().any(|role| roles.contains(role))
    {
        return false;
    }
    annotated(rule.when, tool)
}

/// Whether a tool's annotations match: MCP's defaults for absent hints are
/// `readOnlyHint: false` and `destructiveHint: true`, so a tool that says nothing counts as
/// one that may destroy (hints come from the server: an approval rule errs on the safe side).
fn annotated(when: AnnotationMatch, tool: Option<&Value>) -> bool {
    let hint = |name: &str| {
        tool.and_then(|tool| tool.get("annotations"))
            .and_then(|annotations| annotations.get(name))
            .and_then(Value::as_bool)
    };
    match when {
        AnnotationMatch::Always => true,
        AnnotationMatch::NotReadOnly => hint("readOnlyHint") != Some(true),
        AnnotationMatch::Destructive => {
            hint("readOnlyHint") != Some(true) && hint("destructiveHint") != Some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_config::{ConfigFormat, parse};

    use super::*;
    use crate::principal::{Face, Identity, Peer};

    fn policy(rules: &str) -> Policy {
        let text = format!("[approvals]\n{rules}");
        let config = parse(&text, ConfigFormat::Native, None).expect("valid");
        Policy::new(&config.approvals.expect("approvals").rules)
    }

    fn caller(tenant: Option<&str>, roles: &[&str]) -> Principal {
        Principal::authenticated(
            Face::Http,
            "s1",
            Peer::default(),
            &Identity {
                id: "key:a".into(),
                tenant: tenant.map(str::to_owned),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            },
        )
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = policy(
            "[[approvals.rules]]\ntools = \"fx__echo\"\nrequire = false\n\
             [[approvals.rules]]\nservers = \"fx\"\napprover = \"admin\"\n",
        );
        let anyone = caller(None, &[]);
        assert_eq!(policy.need(&anyone, "fx", "fx__echo", None), None);
        assert_eq!(
            policy.need(&anyone, "fx", "fx__add", None),
            Some(Need {
                approver: Approver::Admin,
                rule: "approvals.rules[1]".into()
            })
        );
        assert_eq!(policy.need(&anyone, "other", "other__add", None), None);
    }

    #[test]
    fn tenants_roles_and_annotations_narrow_a_rule() {
        let policy = policy(
            "[[approvals.rules]]\ntenants = [\"acme\"]\nroles = [\"agent\"]\nwhen = \"destructive\"\n\
             [[approvals.rules]]\ntenants = [\"globex\"]\nwhen = \"not_read_only\"\n",
        );
        let acme_agent = caller(Some("acme"), &["agent", "x"]);
        let acme_human = caller(Some("acme"), &["human"]);
        let globex = caller(Some("globex"), &[]);
        let nobody = caller(None, &["agent"]);
        let plain = json!({"name": "t"});
        let read_only = json!({"name": "t", "annotations": {"readOnlyHint": true}});
        let additive = json!({"name": "t", "annotations": {"destructiveHint": false}});
        assert!(
            policy
                .need(&acme_agent, "s", "s__t", Some(&plain))
                .is_some()
        );
        assert!(
            policy
                .need(&acme_agent, "s", "s__t", Some(&read_only))
                .is_none()
        );
        assert!(
            policy
                .need(&acme_agent, "s", "s__t", Some(&additive))
                .is_none()
        );
        assert!(
            policy
                .need(&acme_human, "s", "s__t", Some(&plain))
                .is_none()
        );
        assert!(policy.need(&nobody, "s", "s__t", Some(&plain)).is_none());
        assert!(policy.need(&globex, "s", "s__t", Some(&additive)).is_some());
        assert!(
            policy
                .need(&globex, "s", "s__t", Some(&read_only))
                .is_none()
        );
    }

    #[test]
    fn the_version_changes_with_the_rules() {
        let a = policy("[[approvals.rules]]\ntools = \"fx__*\"\n");
        let b = policy("[[approvals.rules]]\ntools = \"fx__*\"\napprover = \"admin\"\n");
        let a_again = policy("[[approvals.rules]]\ntools = \"fx__*\"\n");
        assert_ne!(a.version(), b.version());
        assert_eq!(a.version(), a_again.version());
        assert_eq!(a.version().len(), 16);
    }
}
