//! `[agent]`: defaults, `${VAR}` expansion with the key held redacted, the shipped
//! example, and every rejection naming its key.

mod common;

use std::time::Duration;

use common::{assert_invalid, native};
use switchboard_config::AgentSettings;

fn agent(body: &str) -> AgentSettings {
    native(&format!("[agent]\n{body}"))
        .unwrap_or_else(|error| panic!("{error}"))
        .agent
        .expect("section present")
}

#[test]
fn off_without_the_section() {
    assert!(native("").unwrap().agent.is_none());
}

#[test]
fn defaults() {
    let settings = agent("base_url = \"http://127.0.0.1:11434/v1/\"\nmodel = \"m\"\n");
    assert_eq!(
        settings,
        AgentSettings::new("http://127.0.0.1:11434/v1", "m"),
        "trailing slash dropped, every default"
    );
    assert_eq!(settings.memory_messages, 50);
    assert_eq!(settings.memory_ttl, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(settings.request_timeout, Duration::from_secs(60));
    assert_eq!(settings.api_key, None);
}

#[test]
fn the_key_expands_and_never_prints() {
    let settings = agent(
        "base_url = \"https://api.example.com/v1\"\nmodel = \"m\"\napi_key = \"${TOKEN}\"\n\
         max_steps = 3\nmemory_messages = 0\ntop_k = 4\nmax_tools = 10\nretries = 0\n\
         request_timeout_ms = 1500\nresult_budget_bytes = 1024\nmemory_ttl_ms = 60000\n",
    );
    let key = settings.api_key.as_ref().unwrap();
    assert_eq!(key.expose(), "s3cret");
    assert!(!format!("{settings:?}").contains("s3cret"));
    assert_eq!(settings.max_steps, 3);
    assert_eq!(settings.memory_messages, 0);
    assert_eq!((settings.top_k, settings.max_tools), (4, 10));
    assert_eq!(settings.retries, 0);
    assert_eq!(settings.request_timeout, Duration::from_millis(1500));
    assert_eq!(settings.result_budget_bytes, 1024);
    assert_eq!(settings.memory_ttl, Duration::from_secs(60));
}

#[test]
fn rejections_name_the_key() {
    assert_invalid(
        native("[agent]\nmodel = \"m\"\n"),
        "agent.base_url",
        "required",
    );
    assert_invalid(
        native("[agent]\nbase_url = \"http://h/api\"\nmodel = \"m\"\n"),
        "agent.base_url",
        "ending in /v1",
    );
    assert_invalid(
        native("[agent]\nbase_url = \"ftp://h/v1\"\nmodel = \"m\"\n"),
        "agent.base_url",
        "http",
    );
    assert_invalid(
        native("[agent]\nbase_url = \"http://h/v1\"\n"),
        "agent.model",
        "required",
    );
    assert_invalid(
        native("[agent]\nbase_url = \"http://h/v1\"\nmodel = \"m\"\nmax_steps = 0\n"),
        "agent.max_steps",
        "between 1 and 64",
    );
    assert_invalid(
        native("[agent]\nbase_url = \"http://h/v1\"\nmodel = \"m\"\ntop_k = 99\n"),
        "agent.top_k",
        "between",
    );
    assert_invalid(
        native("[agent]\nbase_url = \"http://h/v1\"\nmodel = \"m\"\nmemory_ttl_ms = 1000\n"),
        "agent.memory_ttl_ms",
        "between 60000",
    );
    let shown = assert_invalid(
        native(
            "[agent]\nbase_url = \"http://h/v1\"\nmodel = \"m\"\napi_key = \"${MISSING_KEY}\"\n",
        ),
        "agent.api_key",
        "MISSING_KEY",
    );
    assert!(!shown.contains("s3cret"));
    assert_invalid(
        native("[agent]\nbase_url = \"http://h/v1\"\nmodel = \"m\"\nstream = true\n"),
        "agent.stream",
        "unknown field",
    );
}

#[test]
fn the_example_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/agent.toml");
    let config = switchboard_config::load(&path).unwrap_or_else(|error| panic!("{error}"));
    let settings = config.agent.expect("the example configures the agent");
    assert!(settings.base_url.ends_with("/v1"));
    assert_eq!(settings.memory_messages, 50);
    assert!(config.servers.contains_key("sleepy"));
}
