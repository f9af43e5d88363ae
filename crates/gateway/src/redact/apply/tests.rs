//! The redaction corpus: for every detector, strings that must be redacted and near-misses
//! that must not, each with its exact expected output; then what each action does to the
//! shapes of results.

use serde_json::{Value, json};
use switchboard_config::{ConfigFormat, RedactionSettings};

use super::*;

const SECRET: &str = "s3cr3t-injected-value";

fn settings(extra: &str) -> RedactionSettings {
    let text = format!(
        r#"
[redaction]
hash_salt = "test-salt-0123456789"
secrets = ["{SECRET}"]
{extra}

[[redaction.patterns]]
name = "ticket"
regex = 'TCK-[0-9]{{6}}'

[[redaction.patterns]]
name = "employee"
regex = 'employee (?P<redact>E[0-9]{{5}})'
"#
    );
    switchboard_config::parse(&text, ConfigFormat::Native, None)
        .unwrap()
        .redaction
        .unwrap()
}

fn redactor(extra: &str) -> Redactor {
    let settings = settings(extra);
    let config = switchboard_config::Config {
        redaction: Some(settings.clone()),
        ..Default::default()
    };
    Redactor::new(&settings, Arc::new(Secrets::from_config(&config)))
}

fn masked(redactor: &Redactor, text: &str) -> String {
    redactor
        .redact_text("fx", "fx__echo", text)
        .0
        .expect("mask keeps the text")
}

/// (input, exact expected output) with every detector masking.
const CORPUS: &[(&str, &str)] = &[
    // email
    (
        "Contact alice.smith+tag@example.co.uk today",
        "Contact [REDACTED:email] today",
    ),
    ("<bob@example.org>", "<[REDACTED:email]>"),
    ("mailto:carol@example.com", "mailto:[REDACTED:email]"),
    (
        "https://example.com/users/dave@example.net/profile",
        "https://example.com/users/[REDACTED:email]/profile",
    ),
    // email near-misses: a URL's user, file names, no top-level domain
    (
        "https://admin@internal.example.com/x",
        "https://admin@internal.example.com/x",
    ),
    (
        "ftp://user:pw12@files.example.com/pub",
        "ftp://user:pw12@files.example.com/pub",
    ),
    ("see icon@2x.png", "see icon@2x.png"),
    ("user@localhost and a@b.c", "user@localhost and a@b.c"),
    // phone
    ("call +44 20 7946 0958 now", "call [REDACTED:phone] now"),
    ("+1 (415) 555-0132", "[REDACTED:phone]"),
    ("(212) 555-0147", "[REDACTED:phone]"),
    ("call 212-555-0147.", "call [REDACTED:phone]."),
    // phone near-misses: arithmetic, short numbers, dates, versions, invalid area codes
    (
        "3+4=7, +12345, 2024-01-15, v1.2.3, 123-456-7890",
        "3+4=7, +12345, 2024-01-15, v1.2.3, 123-456-7890",
    ),
    // card (Luhn-checked, issuer ranges)
    ("card 4111 1111 1111 1111 ok", "card [REDACTED:card] ok"),
    ("5555-5555-5555-4444", "[REDACTED:card]"),
    ("amex 378282246310005", "amex [REDACTED:card]"),
    ("6011111111111117", "[REDACTED:card]"),
    // card near-misses: Luhn-invalid, no issuer, a timestamp, mixed separators
    ("4111 1111 1111 1112", "4111 1111 1111 1112"),
    ("1234567890123452", "1234567890123452"),
    ("ts 1717171717171", "ts 1717171717171"),
    ("4111-1111 1111-1111", "4111-1111 1111-1111"),
    // IBAN (mod-97), with and without spaces, followed by a capitalised word
    ("DE89 3704 0044 0532 0130 00", "[REDACTED:iban]"),
    ("GB82WEST12345698765432", "[REDACTED:iban]"),
    (
        "IBAN GB82 WEST 1234 5698 7654 32 PAID",
        "IBAN [REDACTED:iban] PAID",
    ),
    // IBAN near-misses: bad checksum, unknown country, wrong length
    ("DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130 01"),
    ("XX82WEST12345698765432", "XX82WEST12345698765432"),
    ("GB82WEST123456987654", "GB82WEST123456987654"),
    // cloud keys
    ("key AKIAIOSFODNN7EXAMPLE", "key [REDACTED:aws_key]"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = [REDACTED:aws_key]",
    ),
    (
        "AIzaSyD-1234567890abcdefghijklmnopqrstu",
        "[REDACTED:google_key]",
    ),
    // cloud key near-misses: too short, too long, an unnamed 40-character string
    (
        "AKIA1234 AKIAIOSFODNN7EXAMPLEX AKIAIOSFODNN7EXAMPLEabc wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AKIA1234 AKIAIOSFODNN7EXAMPLEX AKIAIOSFODNN7EXAMPLEabc wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    // GitHub and Slack tokens
    (
        "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
        "token [REDACTED:github_token]",
    ),
    (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV",
        "[REDACTED:github_token]",
    ),
    ("ghp_short gho_", "ghp_short gho_"),
    (
        "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx",
        "[REDACTED:slack_token]",
    ),
    (
        "hook https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "hook [REDACTED:slack_token]",
    ),
    ("xoxb-short", "xoxb-short"),
    // JWTs: a header naming its algorithm
    (
        "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "Bearer [REDACTED:jwt]",
    ),
    (
        "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc",
        "eyJub3QiOiJhIGp3dCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc",
    ),
    // private keys: a whole block, a truncated one; a public key is not a secret
    (
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ\n-----END RSA PRIVATE KEY-----\ndone",
        "key:\n[REDACTED:private_key]\ndone",
    ),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "[REDACTED:private_key]",
    ),
    (
        "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcN\n-----END PUBLIC KEY-----",
        "-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKj34GkxFhD90vcN\n-----END PUBLIC KEY-----",
    ),
    // generic sk- keys: random bodies only
    (
        "OPENAI_API_KEY=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t",
        "OPENAI_API_KEY=[REDACTED:api_key]",
    ),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED:api_key]"),
    (
        "sk-learn-compatible-transformers task-1234567890abcdefABCDEFGH sk-short1A",
        "sk-learn-compatible-transformers task-1234567890abcdefABCDEFGH sk-short1A",
    ),
    // the gateway's own secrets, literally
    ("echo: s3cr3t-injected-value!", "echo: [REDACTED:secret]!"),
    ("s3cr3t-injected-valu", "s3cr3t-injected-valu"),
    // configured patterns, a named group narrowing the replacement
    (
        "ticket TCK-004211 closed",
        "ticket [REDACTED:ticket] closed",
    ),
    ("employee E12345 left", "employee [REDACTED:employee] left"),
    ("TCK-42 and employee X12345", "TCK-42 and employee X12345"),
    // several in one string, and nothing at all
    (
        "From bob@example.org (+44 20 7946 0958): pay DE89370400440532013000 with 4111111111111111.",
        "From [REDACTED:email] ([REDACTED:phone]): pay [REDACTED:iban] with [REDACTED:card].",
    ),
    (
        "Héllo wörld, nothing here: 42, 3.14, ok.",
        "Héllo wörld, nothing here: 42, 3.14, ok.",
    ),
];

#[test]
fn the_corpus_redacts_exactly() {
    let redactor = redactor("");
    let mut failures = Vec::new();
    for (input, expected) in CORPUS {
        let output = masked(&redactor, input);
        if output != *expected {
            failures.push(format!("{input:?}\n   got {output:?}\n  want {expected:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn counts_name_each_detector() {
    let redactor = redactor("");
    let (_, counts) = redactor.redact_text(
        "fx",
        "fx__echo",
        "a@example.org b@example.org 4111111111111111",
    );
    let counts = counts.unwrap();
    assert_eq!(
        counts.detectors,
        [("card".to_owned(), 1), ("email".to_owned(), 2)].into()
    );
    assert_eq!(counts.total(), 3);
    assert!(!counts.blocked);
    assert_eq!(redactor.redact_text("fx", "fx__echo", "nothing").1, None);
}

#[test]
fn hash_tags_are_stable_keyed_and_distinct() {
    let redactor = redactor(r#"action = "hash""#);
    assert_eq!(
        masked(
            &redactor,
            "bob@example.org, carol@example.org, bob@example.org, 4111111111111111"
        ),
        "[REDACTED:email:2f1f93cd14e0], [REDACTED:email:003b6dc650ec], \
         [REDACTED:email:2f1f93cd14e0], [REDACTED:card:ab1223a6ee63]"
    );
}

#[test]
fn only_the_enabled_detectors_apply() {
    let redactor = redactor(r#"detectors = ["card"]"#);
    assert_eq!(
        masked(&redactor, "bob@example.org 4111111111111111 TCK-000001"),
        "bob@example.org [REDACTED:card] [REDACTED:ticket]"
    );
}

/// A tool result with text, an image, an embedded resource and structured content.
fn tool_result() -> Value {
    serde_json::from_str(
        r#"{"content":[{"type":"text","text":"mail bob@example.org"},{"type":"image","data":"aGk=","mimeType":"image/png"},{"type":"resource","resource":{"uri":"file:///a","text":"card 4111111111111111"}},{"type":"text","text":"plain"}],"structuredContent":{"n":1.50,"big":12345678901234567890,"nested":{"email":"bob@example.org","list":["x","+44 20 7946 0958"]}},"isError":false,"_meta":{"k":"bob@example.org"}}"#,
    )
    .unwrap()
}

#[test]
fn mask_keeps_the_result_byte_identical_elsewhere() {
    let redactor = redactor("");
    let mut result = tool_result();
    let counts = redactor
        .redact_result("tools/call", "fx", "fx__echo", &mut result)
        .unwrap();
    assert_eq!(
        serde_json::to_string(&result).unwrap(),
        r#"{"content":[{"type":"text","text":"mail [REDACTED:email]"},{"type":"image","data":"aGk=","mimeType":"image/png"},{"type":"resource","resource":{"uri":"file:///a","text":"card [REDACTED:card]"}},{"type":"text","text":"plain"}],"structuredContent":{"n":1.50,"big":12345678901234567890,"nested":{"email":"[REDACTED:email]","list":["x","[REDACTED:phone]"]}},"isError":false,"_meta":{"k":"bob@example.org"}}"#
    );
    assert_eq!(counts.total(), 4);
    assert_eq!(counts.dropped, 0);
}

#[test]
fn drop_removes_blocks_and_masks_structured_leaves() {
    let redactor = redactor(r#"actions = { email = "drop" }"#);
    let mut result = tool_result();
    let counts = redactor
        .redact_result("tools/call", "fx", "fx__echo", &mut result)
        .unwrap();
    assert_eq!(
        serde_json::to_string(&result).unwrap(),
        r#"{"content":[{"type":"image","data":"aGk=","mimeType":"image/png"},{"type":"resource","resource":{"uri":"file:///a","text":"card [REDACTED:card]"}},{"type":"text","text":"plain"}],"structuredContent":{"n":1.50,"big":12345678901234567890,"nested":{"email":"[REDACTED:email]","list":["x","[REDACTED:phone]"]}},"isError":false,"_meta":{"k":"bob@example.org"}}"#
    );
    assert_eq!(counts.dropped, 1);
}

#[test]
fn block_is_reported_for_the_step_to_withhold() {
    let redactor = redactor(r#"actions = { card = "block" }"#);
    let mut result = tool_result();
    let counts = redactor
        .redact_result("tools/call", "fx", "fx__echo", &mut result)
        .unwrap();
    assert!(counts.blocked);
    assert_eq!(
        redactor.withheld_message(&counts),
        "result withheld by the gateway's redaction policy (it contained: card, email)"
    );
}

#[test]
fn rules_pick_the_policy_per_server_and_tool() {
    let redactor = redactor(
        r#"
[[redaction.rules]]
servers = "trusted"
detectors = []

[[redaction.rules]]
tools = "fx__pay*"
action = "block"
"#,
    );
    let mut result = tool_result();
    assert_eq!(
        redactor.redact_result("tools/call", "trusted", "trusted__echo", &mut result),
        None
    );
    assert_eq!(result, tool_result());
    let counts = redactor
        .redact_result("tools/call", "fx", "fx__payments", &mut result)
        .unwrap();
    assert!(counts.blocked);
}

#[test]
fn reads_prompts_and_errors() {
    let redactor = redactor(r#"actions = { phone = "drop" }"#);
    let mut read = json!({"contents": [
        {"uri": "x://a", "mimeType": "text/plain", "text": "owner bob@example.org"},
        {"uri": "x://b", "text": "call +44 20 7946 0958"},
        {"uri": "x://c", "blob": "aGk="}
    ]});
    redactor.redact_result("resources/read", "fx", "switchboard://fx/x://a", &mut read);
    assert_eq!(
        read,
        json!({"contents": [
            {"uri": "x://a", "mimeType": "text/plain", "text": "owner [REDACTED:email]"},
            {"uri": "x://c", "blob": "aGk="}
        ]})
    );
    let mut prompt = json!({
        "description": "For bob@example.org, call +44 20 7946 0958",
        "messages": [
            {"role": "user", "content": {"type": "text", "text": "hi bob@example.org"}},
            {"role": "user", "content": {"type": "text", "text": "+44 20 7946 0958"}},
            {"role": "assistant", "content": {"type": "resource", "resource": {"uri": "x://a", "text": "4111111111111111"}}}
        ]
    });
    let counts = redactor
        .redact_result("prompts/get", "fx", "fx__greet", &mut prompt)
        .unwrap();
    assert_eq!(
        prompt,
        json!({
            "description": "For [REDACTED:email], call [REDACTED:phone]",
            "messages": [
                {"role": "user", "content": {"type": "text", "text": "hi [REDACTED:email]"}},
                {"role": "assistant", "content": {"type": "resource", "resource": {"uri": "x://a", "text": "[REDACTED:card]"}}}
            ]
        })
    );
    assert_eq!(counts.dropped, 1);
    let mut error = RpcError::new(-32000, format!("auth failed with {SECRET}"));
    error.data = Some(json!({"header": format!("Bearer {SECRET}"), "code": 7}));
    redactor.redact_error("fx", "fx__echo", &mut error).unwrap();
    assert_eq!(error.message, "auth failed with [REDACTED:secret]");
    assert_eq!(
        error.data,
        Some(json!({"header": "Bearer [REDACTED:secret]", "code": 7}))
    );
}

#[test]
fn a_blocked_error_keeps_only_its_code() {
    let redactor = redactor(r#"actions = { secret = "block" }"#);
    let mut error = RpcError::new(-32000, format!("auth failed with {SECRET}"));
    error.data = Some(json!({"more": 1}));
    let counts = redactor.redact_error("fx", "fx__echo", &mut error).unwrap();
    assert!(counts.blocked);
    assert_eq!(error.code, -32000);
    assert_eq!(error.data, None);
    assert!(!error.message.contains(SECRET), "{}", error.message);
}

#[test]
fn large_texts_are_scanned_in_linear_time_without_surprises() {
    let redactor = redactor("");
    // Pathological shapes for backtracking engines: long runs of the characters the
    // patterns repeat, with no match at the end.
    for text in [
        "a".repeat(200_000) + "@",
        "1 ".repeat(100_000),
        "eyJ".to_owned() + "a".repeat(200_000).as_str(),
        "-----BEGIN PRIVATE KEY-----".to_owned() + "!".repeat(100_000).as_str(),
    ] {
        let _ = redactor.redact_text("fx", "fx__echo", &text);
    }
}
