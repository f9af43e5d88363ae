//! Which detectors apply to a call, and what each does: the section's defaults, or the
//! first `[[redaction.rules]]` entry whose globs match the call's server and exposed name.
//! Every policy is built once, at start; a call only picks one.
//!
//! For a detector `d` in a rule: `rule.actions[d]`, else `rule.action`, else
//! `[redaction] actions[d]`, else `[redaction] action`. A rule's `detectors` replace the
//! section's list (`detectors = []` exempts what the rule matches).

use switchboard_config::{Glob, RedactAction, RedactRule, RedactionSettings};

use super::detect::{DetectorId, Detectors};

/// What each detector does for one call (`None`: it does not apply).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Policy {
    actions: Box<[Option<RedactAction>]>,
    /// Per detector id, whether it applies (the regex detectors' filter).
    enabled: Box<[bool]>,
    /// Whether a regex detector applies (else the regex scan is skipped).
    any_pattern: bool,
    /// The `secret` detector's action.
    secret: Option<RedactAction>,
}

impl Policy {
    pub(super) fn action(&self, detector: DetectorId) -> Option<RedactAction> {
        self.actions[detector]
    }

    pub(super) fn enabled(&self) -> &[bool] {
        &self.enabled
    }

    pub(super) fn any_pattern(&self) -> bool {
        self.any_pattern
    }

    pub(super) fn secret(&self) -> Option<RedactAction> {
        self.secret
    }

    pub(super) fn is_empty(&self) -> bool {
        !self.any_pattern && self.secret.is_none()
    }
}

/// Every policy a config can give a call.
pub(super) struct Policies {
    default: Policy,
    rules: Vec<(Glob, Glob, Policy)>,
}

fn build(
    settings: &RedactionSettings,
    rule: Option<&RedactRule>,
    detectors: &Detectors,
    secret_id: DetectorId,
) -> Policy {
    let names = rule
        .and_then(|rule| rule.detectors.as_ref())
        .unwrap_or(&settings.detectors);
    let mut actions = vec![None; detectors.len()];
    for name in names {
        let Some(id) = detectors.id(name) else {
            continue; // a pattern that did not compile (logged when it was compiled)
        };
        let action = rule
            .and_then(|rule| rule.actions.get(name).copied().or(rule.action))
            .or_else(|| settings.actions.get(name).copied())
            .unwrap_or(settings.action);
        actions[id] = Some(action);
    }
    let enabled: Box<[bool]> = actions.iter().map(Option::is_some).collect();
    let any_pattern = enabled
        .iter()
        .enumerate()
        .any(|(id, on)| *on && id != secret_id);
    Policy {
        secret: actions[secret_id],
        actions: actions.into(),
        enabled,
        any_pattern,
    }
}

impl Policies {
    pub(super) fn new(settings: &RedactionSettings, detectors: &Detectors) -> Policies {
        let secret_id = detectors.id("secret").expect("a built-in detector");
        Policies {
            default: build(settings, None, detectors, secret_id),
            rules: settings
                .rules
                .iter()
                .map(|rule| {
                    (
                        rule.servers.clone(),
                        rule.tools.clone(),
                        build(settings, Some(rule), detectors, secret_id),
                    )
                })
                .collect(),
        }
    }

    /// The policy of a call to `server`'s `name` (exposed tool or prompt name, or URI).
    pub(super) fn for_call(&self, server: &str, name: &str) -> &Policy {
        self.rules
            .iter()
            .find(|(servers, tools, _)| servers.matches(server) && tools.matches(name))
            .map_or(&self.default, |(_, _, policy)| policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> RedactionSettings {
        switchboard_config::parse(text, switchboard_config::ConfigFormat::Native, None)
            .unwrap()
            .redaction
            .unwrap()
    }

    #[test]
    fn rule_and_section_actions_combine_in_order() {
        let settings = settings(
            r#"
[redaction]
detectors = ["email", "card", "secret"]
action = "mask"
actions = { card = "hash" }

[[redaction.patterns]]
name = "ticket"
regex = 'TCK-[0-9]{4}'

[[redaction.rules]]
servers = "pay*"
action = "block"
actions = { email = "drop" }

[[redaction.rules]]
servers = "trusted"
detectors = []
"#,
        );
        let detectors = Detectors::new(&settings.patterns);
        let policies = Policies::new(&settings, &detectors);
        let id = |name| detectors.id(name).unwrap();
        let default = policies.for_call("fx", "fx__echo");
        assert_eq!(default.action(id("email")), Some(RedactAction::Mask));
        assert_eq!(default.action(id("card")), Some(RedactAction::Hash));
        assert_eq!(default.action(id("ticket")), Some(RedactAction::Mask));
        assert_eq!(default.action(id("phone")), None);
        assert_eq!(default.secret(), Some(RedactAction::Mask));
        let pay = policies.for_call("payments", "payments__charge");
        assert_eq!(pay.action(id("email")), Some(RedactAction::Drop));
        assert_eq!(pay.action(id("card")), Some(RedactAction::Block));
        let trusted = policies.for_call("trusted", "trusted__x");
        assert!(trusted.is_empty());
    }
}
