//! `/admin/secrets`: the encrypted secret store (`vault/`). Values go in and never come
//! out: no answer, log line or error carries one.
//!
//! - `PUT /admin/secrets/{name}` — body `{"value": "..."}`: stored (encrypted) and
//!   committed before the answer (`201` created, `200` replaced; `507` when the store
//!   cannot be written)
//! - `GET /admin/secrets` — names with `created` and `updated`, never values
//! - `DELETE /admin/secrets/{name}` — removed (`404` when unknown)
//! - `POST /admin/secrets/rotate` — every secret re-encrypted under `[secrets] key`, in
//!   one transaction (`previous_key` may then be removed)
//!
//! `404` with a hint on every route when no `[secrets]` section is configured.

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchboard_config::Secret;

use crate::gateway::Gateway;
use crate::vault::{Vault, VaultError};

type Answer = (StatusCode, Value);

fn no_store() -> Answer {
    (
        StatusCode::NOT_FOUND,
        json!({ "error": "no secret store: add a [secrets] section with a key to the config" }),
    )
}

/// The one mapping of vault failures to statuses.
fn failed(error: &VaultError) -> Answer {
    let status = match error {
        VaultError::InvalidName | VaultError::TooLarge(_) => StatusCode::BAD_REQUEST,
        VaultError::Unknown(_) => StatusCode::NOT_FOUND,
        VaultError::Full | VaultError::Storage(_) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, json!({ "error": error.to_string() }))
}

/// Runs a vault operation off the async threads (a commit waits for the disk).
async fn with_vault<T: Send + 'static>(
    gateway: &Gateway,
    operation: impl FnOnce(&Vault) -> Result<T, VaultError> + Send + 'static,
) -> Option<Result<T, VaultError>> {
    let vault = gateway.vault()?.clone();
    Some(
        tokio::task::spawn_blocking(move || operation(&vault))
            .await
            .unwrap_or_else(|_| Err(VaultError::Storage("the store task panicked".to_owned()))),
    )
}

pub(super) async fn put(gateway: &Gateway, name: String, body: &[u8]) -> Answer {
    if gateway.vault().is_none() {
        return no_store();
    }
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut object)) => match object.remove("value") {
            Some(Value::String(value)) if object.is_empty() => Secret::new(value),
            _ => return bad_body(),
        },
        _ => return bad_body(),
    };
    match gateway.store_secret(&name, value).await {
        Some(Ok((entry, created))) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, json!({ "secret": entry.to_json() }))
        }
        Some(Err(error)) => failed(&error),
        None => no_store(),
    }
}

fn bad_body() -> Answer {
    (
        StatusCode::BAD_REQUEST,
        json!({ "error": "body must be JSON: {\"value\": \"...\"} (a string, and nothing else)" }),
    )
}

pub(super) async fn list(gateway: &Gateway) -> Answer {
    match with_vault(gateway, Vault::list).await {
        Some(Ok(entries)) => (
            StatusCode::OK,
            json!({ "secrets": entries.iter().map(crate::vault::Entry::to_json).collect::<Vec<_>>() }),
        ),
        Some(Err(error)) => failed(&error),
        None => no_store(),
    }
}

pub(super) async fn delete(gateway: &Gateway, name: String) -> Answer {
    let target = name.clone();
    match with_vault(gateway, move |vault| vault.delete(&target)).await {
        Some(Ok(true)) => {
            tracing::info!(secret = %name, "secret deleted");
            (StatusCode::OK, json!({ "deleted": name }))
        }
        Some(Ok(false)) => failed(&VaultError::Unknown(name)),
        Some(Err(error)) => failed(&error),
        None => no_store(),
    }
}

pub(super) async fn rotate(gateway: &Gateway) -> Answer {
    match with_vault(gateway, Vault::rotate).await {
        Some(Ok(rotated)) => {
            tracing::info!(rotated, "secrets re-encrypted under the current key");
            (StatusCode::OK, json!({ "rotated": rotated }))
        }
        Some(Err(error)) => failed(&error),
        None => no_store(),
    }
}

impl Gateway {
    /// The secret store, when `[secrets]` configures one.
    pub fn vault(&self) -> Option<&std::sync::Arc<Vault>> {
        self.inner.vault.as_ref()
    }

    /// Stores a secret (admin API, `set_secret` meta-tool): committed before it returns;
    /// the redaction step learns the value. `None` without a store; `true` when created.
    pub(crate) async fn store_secret(
        &self,
        name: &str,
        value: Secret<String>,
    ) -> Option<Result<(crate::vault::Entry, bool), VaultError>> {
        let target = name.to_owned();
        let kept = value.clone();
        let stored = with_vault(self, move |vault| vault.put(&target, &kept)).await?;
        if stored.is_ok() {
            if let Some(secrets) = &self.inner.secrets {
                secrets.learn_value(&value);
            }
            tracing::info!(secret = %name, "secret stored");
        }
        Some(stored)
    }
}
