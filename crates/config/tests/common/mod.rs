//! Helpers shared by the config tests: parse with a fixed, fake environment.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use switchboard_config::{Config, ConfigError, ConfigFormat, parse_with_env};

/// The only environment the tests see, so they never depend on the machine.
pub fn fake_env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("s3cret".to_owned()),
        "TZ_NAME" => Some("UTC".to_owned()),
        "SECRET" => Some("0123456789abcdef0123".to_owned()),
        _ => None,
    }
}

pub fn native(text: &str) -> Result<Config, ConfigError> {
    parse_with_env(
        text,
        ConfigFormat::Native,
        Some(Path::new("switchboard.toml")),
        &fake_env,
    )
}

pub fn json(text: &str) -> Result<Config, ConfigError> {
    parse_with_env(
        text,
        ConfigFormat::McpJson,
        Some(Path::new(".mcp.json")),
        &fake_env,
    )
}

/// Asserts `result` failed on `key` with a message containing `expected`, and
/// that Display names the file and the key. Returns the Display text.
#[track_caller]
pub fn assert_invalid(result: Result<Config, ConfigError>, key: &str, expected: &str) -> String {
    let error = match result {
        Ok(config) => panic!("expected an error at {key:?}, got {config:?}"),
        Err(error) => error,
    };
    let display = error.to_string();
    assert!(
        matches!(error, ConfigError::Invalid { .. }),
        "not Invalid: {error:?}"
    );
    assert_eq!(error.key_path(), Some(key), "{display}");
    assert!(display.contains(expected), "{display:?} lacks {expected:?}");
    let file = error.file().expect("file named").display().to_string();
    assert!(display.starts_with(&file), "{display}");
    if !key.is_empty() {
        assert!(display.contains(&format!(": {key}: ")), "{display}");
    }
    display
}
