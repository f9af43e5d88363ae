//! `[redaction]`: detectors, actions, patterns compiled at load, rules, secrets, validated
//! with key paths.

mod common;

use common::{assert_invalid, native};
use switchboard_config::{RedactAction, RedactionSettings};

#[test]
fn absent_section_means_no_redaction() {
    assert!(native("").unwrap().redaction.is_none());
}

#[test]
fn an_empty_section_masks_with_every_builtin_detector() {
    let redaction = native("[redaction]\n").unwrap().redaction.unwrap();
    assert_eq!(redaction, RedactionSettings::default());
    assert_eq!(redaction.detectors.len(), 12);
    assert_eq!(redaction.action, RedactAction::Mask);
    assert!(!redaction.hide_poisoned);
}

#[test]
fn a_full_section_validates() {
    let redaction = native(
        r#"
[redaction]
detectors = ["email", "card", "secret"]
action = "hash"
actions = { card = "block", ticket = "drop" }
hash_salt = "${SECRET}"
secrets = ["${TOKEN}-and-more"]
hide_poisoned = true

[[redaction.patterns]]
name = "ticket"
regex = 'TCK-[0-9]{6}'

[[redaction.rules]]
servers = "pay*"
tools = "pay__charge"
detectors = ["card", "ticket"]
action = "block"
actions = { ticket = "mask" }
"#,
    )
    .unwrap()
    .redaction
    .unwrap();
    assert_eq!(redaction.detectors, ["email", "card", "secret", "ticket"]);
    assert_eq!(redaction.action, RedactAction::Hash);
    assert_eq!(redaction.actions["card"], RedactAction::Block);
    assert_eq!(
        redaction.hash_salt.as_ref().map(|s| s.expose_str()),
        Some("0123456789abcdef0123")
    );
    assert_eq!(redaction.secrets[0].expose_str(), "s3cret-and-more");
    assert!(redaction.hide_poisoned);
    assert_eq!(redaction.patterns[0].path, "redaction.patterns[0]");
    let rule = &redaction.rules[0];
    assert!(rule.servers.matches("payments") && rule.tools.matches("pay__charge"));
    assert_eq!(rule.action, Some(RedactAction::Block));
    assert_eq!(rule.actions["ticket"], RedactAction::Mask);
    assert_eq!(rule.path, "redaction.rules[0]");
}

#[test]
fn a_bad_regex_is_rejected_with_its_key_path() {
    assert_invalid(
        native("[[redaction.patterns]]\nname = \"x\"\nregex = 'a(b'\n"),
        "redaction.patterns[0].regex",
        "does not compile",
    );
    assert_invalid(
        native("[[redaction.patterns]]\nname = \"x\"\nregex = 'a*'\n"),
        "redaction.patterns[0].regex",
        "matches the empty string",
    );
    assert_invalid(
        native("[[redaction.patterns]]\nname = \"x\"\nregex = '\\w{1000}{1000}'\n"),
        "redaction.patterns[0].regex",
        "larger than 1 MiB",
    );
}

#[test]
fn names_and_values_are_checked() {
    assert_invalid(
        native("[[redaction.patterns]]\nname = \"email\"\nregex = 'x'\n"),
        "redaction.patterns[0].name",
        "already a detector",
    );
    assert_invalid(
        native("[[redaction.patterns]]\nname = \"Bad Name\"\nregex = 'x'\n"),
        "redaction.patterns[0].name",
        "a-z, 0-9 and _",
    );
    assert_invalid(
        native("[redaction]\ndetectors = [\"email\", \"ssn\"]\n"),
        "redaction.detectors[1]",
        "unknown detector `ssn`",
    );
    assert_invalid(
        native("[redaction]\nactions = { ssn = \"mask\" }\n"),
        "redaction.actions.ssn",
        "unknown detector",
    );
    assert_invalid(
        native("[redaction]\naction = \"erase\"\n"),
        "redaction.action",
        "unknown variant",
    );
    assert_invalid(
        native("[[redaction.rules]]\ndetectors = [\"nope\"]\n"),
        "redaction.rules[0].detectors[0]",
        "unknown detector",
    );
    assert_invalid(
        native("[redaction]\nhash_salt = \"short\"\n"),
        "redaction.hash_salt",
        "at least 16",
    );
    let display = assert_invalid(
        native("[redaction]\nsecrets = [\"abc\"]\n"),
        "redaction.secrets[0]",
        "at least 6",
    );
    assert!(!display.contains("\"abc\""), "{display}");
    assert_invalid(
        native("[redaction]\nhide = true\n"),
        "redaction.hide",
        "unknown field",
    );
}

#[test]
fn secrets_never_print() {
    let config =
        native("[redaction]\nsecrets = [\"${SECRET}\"]\nhash_salt = \"${SECRET}\"\n").unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains("0123456789abcdef0123"), "{printed}");
}
