//! `[agent]`: the router agent's model endpoint and bounds. Raw shape, validation and the
//! validated model live together here, like `telemetry.rs`.
//!
//! Without the section there is no agent: `POST /query`, `switchboard ask` and the MCP
//! tool `switchboard__ask` answer an error naming the section.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};
use crate::secret::Secret;

/// The validated `[agent]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSettings {
    /// The OpenAI-compatible API root, ending in `/v1` (no trailing slash);
    /// `…/chat/completions` is appended.
    pub base_url: String,
    /// The model name sent with every request.
    pub model: String,
    /// The bearer token, if the endpoint wants one (`${VAR}` expanded; never printed).
    pub api_key: Option<Secret<String>>,
    /// Time to connect to the model endpoint.
    pub connect_timeout: Duration,
    /// Time for one chat-completions request, answer included.
    pub request_timeout: Duration,
    /// Further attempts after a transient failure (connect error, timeout, 429, 5xx).
    pub retries: u32,
    /// Wait before the first retry; doubles for each further one.
    pub retry_backoff: Duration,
    /// Model turns per query (each may ask for tool calls); the last must answer.
    pub max_steps: u32,
    /// Bytes of one tool result handed to the model; the rest is cut and said so.
    pub result_budget_bytes: usize,
    /// Messages of a conversation kept (its newest ones).
    pub memory_messages: usize,
    /// With `[cluster]`, where conversations live in Redis: how long one is kept after
    /// its last message.
    pub memory_ttl: Duration,
    /// When the caller's view holds more tools than this, only the `top_k` best for the
    /// query (tool search) are offered.
    pub max_tools: usize,
    pub top_k: usize,
}

impl AgentSettings {
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(200);
    pub const DEFAULT_MAX_STEPS: u32 = 8;
    pub const DEFAULT_RESULT_BUDGET_BYTES: usize = 16 * 1024;
    pub const DEFAULT_MEMORY_MESSAGES: usize = 50;
    pub const DEFAULT_MEMORY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const DEFAULT_MAX_TOOLS: usize = 32;
    pub const DEFAULT_TOP_K: usize = 8;

    /// Settings with every default, for `base_url` and `model` (tests, embedders).
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> AgentSettings {
        AgentSettings {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            retries: Self::DEFAULT_RETRIES,
            retry_backoff: Self::DEFAULT_RETRY_BACKOFF,
            max_steps: Self::DEFAULT_MAX_STEPS,
            result_budget_bytes: Self::DEFAULT_RESULT_BUDGET_BYTES,
            memory_messages: Self::DEFAULT_MEMORY_MESSAGES,
            memory_ttl: Self::DEFAULT_MEMORY_TTL,
            max_tools: Self::DEFAULT_MAX_TOOLS,
            top_k: Self::DEFAULT_TOP_K,
        }
    }
}

/// `[agent]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    base_url: Option<String>,
    model: Option<String>,
    api_key: Option<String>,
    connect_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    retries: Option<u32>,
    retry_backoff_ms: Option<u64>,
    max_steps: Option<u32>,
    result_budget_bytes: Option<u64>,
    memory_messages: Option<u64>,
    memory_ttl_ms: Option<u64>,
    max_tools: Option<u64>,
    top_k: Option<u64>,
}

fn ranged(
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    path: &KeyPath,
    key: &str,
) -> Result<u64, Problem> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(Problem::new(
            path.key(key),
            format!("must be between {} and {}", range.start(), range.end()),
        ))
    }
}

pub(crate) fn validate(
    raw: RawAgent,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<AgentSettings, Problem> {
    let base_url = raw.base_url.ok_or_else(|| {
        Problem::new(
            path.key("base_url"),
            "is required (the OpenAI-compatible API root, e.g. http://127.0.0.1:11434/v1)",
        )
    })?;
    let base_url =
        expand(&base_url, env).map_err(|message| Problem::new(path.key("base_url"), message))?;
    let base_url = base_url.trim().trim_end_matches('/').to_owned();
    let scheme_ok = base_url.starts_with("http://") || base_url.starts_with("https://");
    if !scheme_ok || !base_url.ends_with("/v1") {
        return Err(Problem::new(
            path.key("base_url"),
            "must be an http:// or https:// URL ending in /v1",
        ));
    }
    let model = raw
        .model
        .ok_or_else(|| Problem::new(path.key("model"), "is required (the model name)"))?;
    let model = expand(&model, env).map_err(|message| Problem::new(path.key("model"), message))?;
    if model.trim().is_empty() {
        return Err(Problem::new(path.key("model"), "must not be empty"));
    }
    let api_key = match raw.api_key {
        None => None,
        Some(written) => {
            // The message names the variable at most, never a value.
            let value = expand(&written, env)
                .map_err(|message| Problem::new(path.key("api_key"), message))?;
            (!value.is_empty()).then(|| Secret::new(value))
        }
    };
    let ms = |value, default: Duration, range, key| {
        ranged(value, default.as_millis() as u64, range, path, key).map(Duration::from_millis)
    };
    Ok(AgentSettings {
        base_url,
        model,
        api_key,
        connect_timeout: ms(
            raw.connect_timeout_ms,
            AgentSettings::DEFAULT_CONNECT_TIMEOUT,
            1..=60_000,
            "connect_timeout_ms",
        )?,
        request_timeout: ms(
            raw.request_timeout_ms,
            AgentSettings::DEFAULT_REQUEST_TIMEOUT,
            1..=600_000,
            "request_timeout_ms",
        )?,
        retries: ranged(
            raw.retries.map(u64::from),
            AgentSettings::DEFAULT_RETRIES.into(),
            0..=10,
            path,
            "retries",
        )? as u32,
        retry_backoff: ms(
            raw.retry_backoff_ms,
            AgentSettings::DEFAULT_RETRY_BACKOFF,
            0..=60_000,
            "retry_backoff_ms",
        )?,
        max_steps: ranged(
            raw.max_steps.map(u64::from),
            AgentSettings::DEFAULT_MAX_STEPS.into(),
            1..=64,
            path,
            "max_steps",
        )? as u32,
        result_budget_bytes: ranged(
            raw.result_budget_bytes,
            AgentSettings::DEFAULT_RESULT_BUDGET_BYTES as u64,
            256..=1024 * 1024,
            path,
            "result_budget_bytes",
        )? as usize,
        memory_messages: ranged(
            raw.memory_messages,
            AgentSettings::DEFAULT_MEMORY_MESSAGES as u64,
            0..=1000,
            path,
            "memory_messages",
        )? as usize,
        memory_ttl: Duration::from_millis(ranged(
            raw.memory_ttl_ms,
            AgentSettings::DEFAULT_MEMORY_TTL.as_millis() as u64,
            60_000..=365 * 24 * 3600 * 1000,
            path,
            "memory_ttl_ms",
        )?),
        max_tools: ranged(
            raw.max_tools,
            AgentSettings::DEFAULT_MAX_TOOLS as u64,
            1..=512,
            path,
            "max_tools",
        )? as usize,
        top_k: ranged(
            raw.top_k,
            AgentSettings::DEFAULT_TOP_K as u64,
            1..=50,
            path,
            "top_k",
        )? as usize,
    })
}
