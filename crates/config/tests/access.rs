//! `[access]`: identities, allow-lists, CEL rules and rate limits, validated with key paths.

mod common;

use common::{assert_invalid, native};
use switchboard_config::{Effect, LimitScope, SecretHash, SnapshotMode};

#[test]
fn absent_section_means_no_access_control() {
    let config = native("").unwrap();
    assert!(config.access.is_none());
}

#[test]
fn anonymous_defaults_to_whether_identities_exist() {
    let open = native("[access]\n[access.tenants.a]\n").unwrap();
    assert!(open.access.unwrap().anonymous);
    let closed = native("[[access.keys]]\nid = \"ci\"\nkey = \"${SECRET}\"\n").unwrap();
    let access = closed.access.unwrap();
    assert!(!access.anonymous);
    assert_eq!(access.keys[0].hash, SecretHash::of(b"0123456789abcdef0123"));
}

#[test]
fn key_hashes_never_print() {
    let config = native("[[access.keys]]\nid = \"ci\"\nkey = \"${SECRET}\"\n").unwrap();
    let printed = format!("{config:?}");
    assert!(printed.contains("<redacted>"), "{printed}");
    assert!(!printed.contains("0123456789abcdef0123"), "{printed}");
}

#[test]
fn rules_and_limits_validate() {
    let config = native(
        r#"
[[access.rules]]
when = "tool == 'fx__echo' && args.text.startsWith('secret')"
message = "no secrets"

[[access.limits]]
per = "tenant"
tools = "fx__*"
requests = 3
period_ms = 1000
"#,
    )
    .unwrap();
    let access = config.access.unwrap();
    assert_eq!(access.rules[0].effect, Effect::Deny);
    assert_eq!(access.rules[0].path, "access.rules[0]");
    assert_eq!(access.limits[0].per, LimitScope::Tenant);
    assert_eq!(access.limits[0].burst, 3);
}

#[test]
fn a_rule_that_does_not_compile_is_rejected_with_its_key_path() {
    assert_invalid(
        native("[[access.rules]]\nwhen = \"tool == \"\n"),
        "access.rules[0].when",
        "does not compile as CEL",
    );
    assert_invalid(
        native("[[access.rules]]\nwhen = \"nope.x == 1\"\n"),
        "access.rules[0].when",
        "unknown variable(s) nope",
    );
}

#[test]
fn bad_identities_are_rejected() {
    assert_invalid(
        native("[[access.keys]]\nid = \"a\"\nsha256 = \"xyz\"\n"),
        "access.keys[0].sha256",
        "64 hex digits",
    );
    assert_invalid(
        native("[[access.keys]]\nid = \"a\"\nkey = \"short\"\n"),
        "access.keys[0].key",
        "at least 16",
    );
    assert_invalid(
        native(
            "[access.jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"https://x/j\"\nalgorithms = [\"none\"]\n",
        ),
        "access.jwt.algorithms[0]",
        "`none` is never accepted",
    );
    assert_invalid(
        native(
            "[access.jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"https://x/j\"\nalgorithms = [\"HS256\"]\n",
        ),
        "access.jwt.algorithms[0]",
        "HMAC",
    );
    assert_invalid(
        native("[access.jwt]\nissuer = \"i\"\njwks_url = \"https://x/j\"\n"),
        "access.jwt.audience",
        "is required",
    );
    assert_invalid(
        native(
            "[access.tenants.a]\n[[access.keys]]\nid = \"k\"\nkey = \"${SECRET}\"\ntenant = \"b\"\n",
        ),
        "access.keys[0].tenant",
        "unknown tenant `b`",
    );
    assert_invalid(
        native("[access]\nanonymus = true\n"),
        "access.anonymus",
        "unknown field",
    );
}

#[test]
fn budgets_and_concurrency_caps_validate() {
    let config = native(
        r#"
[access]
budget_flush_ms = 0

[[access.budgets]]
per = "tenant"
tools = "fx__*"
calls = 1000

[[access.budgets]]
per = "tool"
servers = "fx"
calls = 50

[[access.concurrency]]
per = "tenant"
max = 4
wait_ms = 250

[[access.concurrency]]
per = "server"
max = 16
"#,
    )
    .unwrap();
    let access = config.access.unwrap();
    assert_eq!(access.budget_flush, std::time::Duration::ZERO);
    assert_eq!(access.budgets[0].per, LimitScope::Tenant);
    assert_eq!(access.budgets[0].calls, 1000);
    assert_eq!(access.budgets[1].per, LimitScope::Tool);
    assert_eq!(access.budgets[1].tools.as_str(), "*");
    assert_eq!(access.budgets[1].identity(), "tool|fx|*");
    assert_eq!(access.concurrency[0].max, 4);
    assert_eq!(
        access.concurrency[0].wait,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(access.concurrency[1].per, LimitScope::Server);
    assert_eq!(access.concurrency[1].wait, std::time::Duration::ZERO);
    let defaults = native("[[access.budgets]]\ncalls = 1\n").unwrap();
    let access = defaults.access.unwrap();
    assert_eq!(access.budget_flush, std::time::Duration::from_millis(100));
    assert_eq!(access.budgets[0].per, LimitScope::Principal);
}

#[test]
fn bad_budgets_and_caps_are_rejected_with_their_key_paths() {
    assert_invalid(
        native("[[access.budgets]]\nper = \"tenant\"\n"),
        "access.budgets[0].calls",
        "is required",
    );
    assert_invalid(
        native("[[access.budgets]]\ncalls = 0\n"),
        "access.budgets[0].calls",
        "at least 1",
    );
    assert_invalid(
        native("[[access.budgets]]\ncalls = 5\nper = \"team\"\n"),
        "access.budgets[0].per",
        "unknown variant",
    );
    assert_invalid(
        native(
            "[[access.budgets]]\ncalls = 5\ntools = \"a*\"\n[[access.budgets]]\ncalls = 9\ntools = \"a*\"\n",
        ),
        "access.budgets[1]",
        "counts the same calls as access.budgets[0]",
    );
    assert_invalid(
        native("[access]\nbudget_flush_ms = 60000\n"),
        "access.budget_flush_ms",
        "at most 10000",
    );
    assert_invalid(
        native("[[access.concurrency]]\nper = \"tenant\"\n"),
        "access.concurrency[0].max",
        "is required",
    );
    assert_invalid(
        native("[[access.concurrency]]\nmax = 0\n"),
        "access.concurrency[0].max",
        "at least 1",
    );
    assert_invalid(
        native("[[access.concurrency]]\nmax = 2\nwait_ms = 120000\n"),
        "access.concurrency[0].wait_ms",
        "at most 60000",
    );
    assert_invalid(
        native("[[access.concurrency]]\nmax = 2\nqueue = 3\n"),
        "access.concurrency[0].queue",
        "unknown field",
    );
}

#[test]
fn a_key_may_pin_its_sessions_to_a_run_snapshot() {
    let config = native(
        "[[access.keys]]\nid = \"ci\"\nkey = \"${SECRET}\"\nsnapshot = \"pin\"\n\
         [[access.keys]]\nid = \"dev\"\nkey = \"${SECRET}-dev\"\n",
    )
    .unwrap();
    let access = config.access.unwrap();
    assert_eq!(access.keys[0].snapshot, SnapshotMode::Pin);
    assert_eq!(access.keys[1].snapshot, SnapshotMode::Live);
    assert_invalid(
        native("[[access.keys]]\nid = \"ci\"\nkey = \"${SECRET}\"\nsnapshot = \"frozen\"\n"),
        "access.keys[0].snapshot",
        "expected pin or live",
    );
}

#[test]
fn run_snapshot_bounds_are_validated_with_their_key_paths() {
    let config = native("[registry]\nmax_snapshots = 5\nsnapshot_max_age_ms = 60000\n").unwrap();
    assert_eq!(config.registry.max_snapshots, 5);
    assert_invalid(
        native("[registry]\nmax_snapshots = 0\n"),
        "registry.max_snapshots",
        "between 1 and 10000",
    );
    assert_invalid(
        native("[registry]\nsnapshot_max_age_ms = 10\n"),
        "registry.snapshot_max_age_ms",
        "between 1000",
    );
}
