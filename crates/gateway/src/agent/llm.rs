//! The model client: OpenAI-compatible `POST {base_url}/chat/completions` with tools
//! (what Ollama, vLLM, llama.cpp's server, LM Studio and hosted providers speak).
//! Transient failures — no connection, 429, 5xx — are retried with doubling backoff;
//! each attempt has the configured timeout; the answer body is read up to `MAX_BODY`.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_config::AgentSettings;

/// Largest answer body read.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Why the model gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the model endpoint cannot be reached: {0}")]
    Unreachable(String),
    #[error("the model did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the model endpoint answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the model's answer is not a chat completion: {0}")]
    Malformed(String),
}

impl LlmError {
    /// A short label for metrics and the answer's outcome.
    pub fn label(&self) -> &'static str {
        match self {
            LlmError::Unreachable(_) => "llm_unreachable",
            LlmError::Timeout(_) => "llm_timeout",
            LlmError::Status { .. } => "llm_error",
            LlmError::Malformed(_) => "llm_malformed",
        }
    }

    fn transient(&self) -> bool {
        match self {
            LlmError::Unreachable(_) => true,
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Timeout(_) | LlmError::Malformed(_) => false,
        }
    }
}

/// Tokens one completion used, as the endpoint reported them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

/// One answer: the assistant message as sent, and its usage.
#[derive(Debug)]
pub struct Completion {
    pub message: Value,
    pub usage: Usage,
    pub latency: Duration,
}

/// The client for one `[agent]` section.
pub struct Llm {
    http: reqwest::Client,
    url: String,
    settings: AgentSettings,
}

impl Llm {
    pub fn new(settings: &AgentSettings) -> Result<Llm, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .build()
            .map_err(|error| LlmError::Unreachable(error.to_string()))?;
        Ok(Llm {
            http,
            url: format!("{}/chat/completions", settings.base_url),
            settings: settings.clone(),
        })
    }

    /// Asks the model once (retrying transient failures) for the next assistant message.
    pub async fn complete(
        &self,
        messages: &[Value],
        tools: &[Value],
    ) -> Result<Completion, LlmError> {
        let mut body = json!({ "model": self.settings.model, "messages": messages });
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools.to_vec());
            body["tool_choice"] = Value::String("auto".into());
        }
        let body = serde_json::to_vec(&body).map_err(|e| LlmError::Malformed(e.to_string()))?;
        let mut backoff = self.settings.retry_backoff;
        let mut attempt = 0;
        loop {
            let started = tokio::time::Instant::now();
            match self.attempt(&body).await {
                Ok((message, usage)) => {
                    return Ok(Completion {
                        message,
                        usage,
                        latency: started.elapsed(),
                    });
                }
                Err(error) if error.transient() && attempt < self.settings.retries => {
                    tracing::debug!(%error, attempt, "model request failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn attempt(&self, body: &[u8]) -> Result<(Value, Usage), LlmError> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key.expose());
        }
        let timeout = self.settings.request_timeout;
        let classify = |error: reqwest::Error| {
            if error.is_timeout() {
                LlmError::Timeout(timeout)
            } else {
                LlmError::Unreachable(error.to_string())
            }
        };
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(LlmError::Malformed(format!(
                    "answer larger than {MAX_BODY} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&bytes);
            return Err(LlmError::Status {
                status,
                body: crate::agent::cut(&text, 512).to_owned(),
            });
        }
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|e| LlmError::Malformed(e.to_string()))?;
        let message = answer
            .pointer("/choices/0/message")
            .filter(|m| m.is_object())
            .cloned()
            .ok_or_else(|| LlmError::Malformed("no choices[0].message".into()))?;
        let usage = Usage {
            prompt_tokens: answer
                .pointer("/usage/prompt_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            completion_tokens: answer
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        };
        Ok((message, usage))
    }
}
