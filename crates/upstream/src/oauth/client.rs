//! The client switchboard presents to an authorization server: static client information
//! (configuration, else the environment), then registration — pre-registered
//! credentials, a Client ID Metadata Document, or Dynamic Client Registration, in that
//! order.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use switchboard_config::{OAuthClient, Secret, SigningKey};

use super::discovery::Discovery;
use super::{AuthError, Authorizer, Flow, REDIRECT_URI, fail, read_json, strings};

const CLIENT_NAME: &str = "switchboard";

/// Client information for one authorization server.
#[derive(Clone, Debug)]
pub(super) struct ClientCredentials {
    pub(super) client_id: String,
    pub(super) client_secret: Option<Secret<String>>,
    /// `none`, `client_secret_basic`, `client_secret_post` or `private_key_jwt`.
    pub(super) auth_method: String,
    /// The key of `private_key_jwt`.
    pub(super) signing_key: Option<SigningKey>,
}

/// The client information known before any registration: configured, else from the
/// environment, field by field.
#[derive(Default)]
pub(super) struct StaticClient {
    pub(super) preregistered: Option<ClientCredentials>,
    pub(super) metadata_document: Option<String>,
    /// Identifies the rest of the configuration (grant, keys, DPoP), secrets hashed.
    rest: String,
}

impl StaticClient {
    pub(super) fn resolve(server: &str, configured: Option<&OAuthClient>) -> StaticClient {
        let configured = configured.cloned().unwrap_or_default();
        let mut hashed = configured.clone();
        let secrets: Vec<String> = hashed
            .secrets_mut()
            .into_iter()
            .map(|secret| URL_SAFE_NO_PAD.encode(Sha256::digest(secret.expose().as_bytes())))
            .collect();
        let client_id = configured.client_id.or_else(|| env(server, "CLIENT_ID"));
        let preregistered = client_id.map(|client_id| {
            let client_secret = configured
                .client_secret
                .or_else(|| env(server, "CLIENT_SECRET").map(Secret::new));
            ClientCredentials {
                client_id,
                auth_method: if configured.private_key.is_some() {
                    "private_key_jwt".into()
                } else if client_secret.is_some() {
                    "client_secret_basic".into()
                } else {
                    "none".into()
                },
                client_secret,
                signing_key: configured.private_key.clone(),
            }
        });
        StaticClient {
            rest: format!(
                "{:?}|{:?}|{}|{:?}|{secrets:?}",
                configured.grant, configured.private_key, configured.dpop, configured.scope
            ),
            preregistered,
            metadata_document: configured
                .client_metadata_url
                .or_else(|| env(server, "CLIENT_METADATA_URL")),
        }
    }

    /// Identifies the information (the secret by a hash, never in clear).
    pub(super) fn fingerprint(&self) -> String {
        let credentials = self.preregistered.as_ref();
        let secret = credentials
            .and_then(|c| c.client_secret.as_ref())
            .map(|secret| URL_SAFE_NO_PAD.encode(Sha256::digest(secret.expose().as_bytes())));
        format!(
            "{:?}|{:?}|{:?}|{}",
            credentials.map(|c| &c.client_id),
            secret,
            self.metadata_document,
            self.rest
        )
    }
}

fn env_key(server: &str, field: &str) -> String {
    let name: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("SWITCHBOARD_OAUTH_{name}_{field}")
}

fn env(server: &str, field: &str) -> Option<String> {
    std::env::var(env_key(server, field))
        .ok()
        .filter(|v| !v.is_empty())
}

impl Authorizer {
    /// The client to present to this authorization server.
    pub(super) async fn client(
        &self,
        flow: &mut Flow,
        discovery: &Discovery,
    ) -> Result<ClientCredentials, AuthError> {
        if let Some(client) = &self.preregistered {
            return Ok(client.clone());
        }
        let metadata = &discovery.metadata;
        if let Some(document) = &self.metadata_document
            && metadata["client_id_metadata_document_supported"].as_bool() == Some(true)
        {
            return Ok(ClientCredentials {
                client_id: document.clone(),
                client_secret: None,
                auth_method: "none".into(),
                signing_key: None,
            });
        }
        if let Some(client) = flow.registrations.get(&discovery.issuer) {
            return Ok(client.clone());
        }
        let Some(endpoint) = metadata["registration_endpoint"].as_str() else {
            return fail(format!(
                "authorization server `{}` offers no client registration; pre-register switchboard and set {}",
                discovery.issuer,
                env_key(&self.server, "CLIENT_ID")
            ));
        };
        let supported = strings(&metadata["token_endpoint_auth_methods_supported"]);
        let method = ["none", "client_secret_basic", "client_secret_post"]
            .into_iter()
            .find(|m| supported.iter().any(|s| s == m))
            .unwrap_or("client_secret_basic");
        let mut request = json!({
            "client_name": CLIENT_NAME,
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
            "application_type": "native",
        });
        if self.dpop.is_some() {
            // RFC 9449 section 5.2: this client always uses DPoP-bound tokens.
            request["dpop_bound_access_tokens"] = true.into();
        }
        let response = self
            .http
            .post(endpoint)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(request.to_string())
            .send()
            .await
            .map_err(|e| AuthError(format!("client registration at {endpoint}: {e}")))?;
        let status = response.status();
        let registered = read_json(response).await;
        let Some(client_id) = registered["client_id"]
            .as_str()
            .filter(|_| status.is_success())
        else {
            return fail(format!(
                "client registration at {endpoint} failed ({status}): {registered}"
            ));
        };
        let client_secret = registered["client_secret"]
            .as_str()
            .map(|secret| Secret::new(secret.to_owned()));
        let auth_method = registered["token_endpoint_auth_method"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                if client_secret.is_some() && method == "none" {
                    "client_secret_basic".into()
                } else {
                    method.into()
                }
            });
        let client = ClientCredentials {
            client_id: client_id.to_owned(),
            client_secret,
            auth_method,
            signing_key: None,
        };
        flow.registrations
            .insert(discovery.issuer.clone(), client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_client_information_comes_before_the_environment() {
        let configured = OAuthClient {
            client_id: Some("from-config".into()),
            client_secret: Some(Secret::new("s3cret".into())),
            client_metadata_url: None,
            ..OAuthClient::default()
        };
        let client = StaticClient::resolve("no-such-env-server", Some(&configured));
        let credentials = client.preregistered.as_ref().expect("pre-registered");
        assert_eq!(credentials.client_id, "from-config");
        assert_eq!(credentials.auth_method, "client_secret_basic");
        assert!(!client.fingerprint().contains("s3cret"));
        let public = StaticClient::resolve(
            "no-such-env-server",
            Some(&OAuthClient {
                client_id: Some("public".into()),
                ..OAuthClient::default()
            }),
        );
        assert_eq!(public.preregistered.as_ref().unwrap().auth_method, "none");
        assert_ne!(client.fingerprint(), public.fingerprint());
        assert!(
            StaticClient::resolve("no-such-env-server", None)
                .preregistered
                .is_none()
        );
    }

    #[test]
    fn env_names() {
        assert_eq!(
            env_key("my-server.1", "CLIENT_ID"),
            "SWITCHBOARD_OAUTH_MY_SERVER_1_CLIENT_ID"
        );
    }
}
