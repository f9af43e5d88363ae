//! Client identity at the faces' edge: which credential a request carries and who it
//! proves the caller to be (an [`Identity`] with tenant and roles). Authorization (what
//! that caller may see and call) is the call pipeline's job: `pipeline::{allow, rules,
//! limits}`.
//!
//! - API keys: `Authorization: Bearer KEY` or `X-API-Key: KEY`, hashed (SHA-256) and
//!   compared in constant time with every configured hash.
//! - JWT bearer tokens: see [`jwt`].
//! - stdio: the principal named in `[access.stdio]` (default: the local user).
//!
//! A request with no credential is anonymous when `access.anonymous` allows it, else it
//! is refused; a credential that does not verify is always refused (never downgraded to
//! anonymous).

mod jwt;

use std::collections::BTreeSet;

use http::HeaderMap;
use subtle::ConstantTimeEq;
use switchboard_config::{AccessSettings, SecretHash};

use crate::principal::Identity;

/// Longest credential header accepted (a JWT with many claims stays well below).
const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;

/// Why a request is not authenticated. The messages never contain the credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential, and anonymous access is off.
    #[error("authentication required")]
    Missing,
    /// A credential was presented and did not verify.
    #[error("{0}")]
    Invalid(String),
}

impl AuthError {
    fn invalid(reason: impl Into<String>) -> AuthError {
        AuthError::Invalid(reason.into())
    }
}

struct KeyEntry {
    hash: SecretHash,
    identity: Identity,
}

/// Verifies the credentials of the HTTP face, built once from `[access]`.
pub struct Authenticator {
    keys: Vec<KeyEntry>,
    jwt: Option<jwt::Verifier>,
    anonymous: bool,
    /// The tenants a principal may name; empty: any.
    tenants: BTreeSet<String>,
    resource: Option<String>,
    issuer: Option<String>,
    stdio: Identity,
    admin_role: String,
    /// Keys that set how their client sees the tools (`[[access.keys]] tools`), by id.
    tools: std::collections::HashMap<String, switchboard_config::ToolsMode>,
    /// Principals (`key:ID`) whose sessions are pinned to run snapshots
    /// (`[[access.keys]] snapshot = "pin"`).
    pinned: BTreeSet<String>,
}

impl Authenticator {
    pub fn new(settings: &AccessSettings) -> Authenticator {
        let keys = settings
            .keys
            .iter()
            .map(|key| KeyEntry {
                hash: key.hash.clone(),
                identity: Identity {
                    id: format!("key:{}", key.id),
                    tenant: key.tenant.clone(),
                    roles: key.roles.clone(),
                },
            })
            .collect();
        let user = std::env::var("USER").unwrap_or_else(|_| "local".to_owned());
        Authenticator {
            keys,
            jwt: settings.jwt.as_ref().map(jwt::Verifier::new),
            anonymous: settings.anonymous,
            tenants: settings.tenants.keys().cloned().collect(),
            resource: settings.resource.clone(),
            issuer: settings.jwt.as_ref().map(|jwt| jwt.issuer.clone()),
            stdio: Identity {
                id: settings
                    .stdio
                    .id
                    .clone()
                    .unwrap_or_else(|| format!("user:{user}")),
                tenant: settings.stdio.tenant.clone(),
                roles: settings.stdio.roles.clone(),
            },
            admin_role: settings.admin_role.clone(),
            tools: settings
                .keys
                .iter()
                .filter_map(|key| Some((format!("key:{}", key.id), key.tools?)))
                .collect(),
            pinned: settings
                .keys
                .iter()
                .filter(|key| key.snapshot == switchboard_config::SnapshotMode::Pin)
                .map(|key| format!("key:{}", key.id))
                .collect(),
        }
    }

    /// The tools mode the configuration sets for `identity`'s key, if any.
    pub fn tools_mode(&self, identity: &Identity) -> Option<switchboard_config::ToolsMode> {
        self.tools.get(&identity.id).copied()
    }

    /// Whether the configuration pins the sessions of the principal named `id` to run
    /// snapshots (`[[access.keys]] snapshot = "pin"`).
    pub fn pins_snapshots(&self, id: &str) -> bool {
        self.pinned.contains(id)
    }

    /// The role that may use the admin API.
    pub fn admin_role(&self) -> &str {
        &self.admin_role
    }

    /// The identity of a stdio client.
    pub fn stdio_identity(&self) -> &Identity {
        &self.stdio
    }

    /// Who the request's credential proves the caller to be; `Ok(None)`: anonymous.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Identity>, AuthError> {
        let bearer = single_header(headers, http::header::AUTHORIZATION.as_str())?;
        let api_key = single_header(headers, "x-api-key")?;
        let identity = match (bearer, api_key) {
            (None, None) if self.anonymous => return Ok(None),
            (None, None) => return Err(AuthError::Missing),
            (Some(_), Some(_)) => {
                return Err(AuthError::invalid(
                    "send one credential: Authorization or X-API-Key, not both",
                ));
            }
            (None, Some(key)) => self.api_key(key)?,
            (Some(authorization), None) => {
                let token = authorization
                    .strip_prefix("Bearer ")
                    .or_else(|| authorization.strip_prefix("bearer "))
                    .map(str::trim)
                    .filter(|token| !token.is_empty())
                    .ok_or_else(|| AuthError::invalid("expected `Authorization: Bearer …`"))?;
                match &self.jwt {
                    Some(verifier) if looks_like_jwt(token) => verifier.verify(token).await?,
                    _ => self.api_key(token)?,
                }
            }
        };
        if let Some(tenant) = &identity.tenant
            && !self.tenants.is_empty()
            && !self.tenants.contains(tenant)
        {
            return Err(AuthError::invalid(format!("unknown tenant `{tenant}`")));
        }
        Ok(Some(identity))
    }

    /// Constant time over the key and over every configured hash (no early exit).
    fn api_key(&self, key: &str) -> Result<Identity, AuthError> {
        let presented = SecretHash::of(key.as_bytes());
        let mut found = None;
        for entry in &self.keys {
            if bool::from(entry.hash.0.ct_eq(&presented.0)) {
                found = Some(&entry.identity);
            }
        }
        found
            .cloned()
            .ok_or_else(|| AuthError::invalid("invalid credential"))
    }

    /// The URL of this gateway's protected resource metadata, for a request with `host`.
    pub fn metadata_url(&self, host: &str) -> String {
        format!("{}/.well-known/oauth-protected-resource", self.origin(host))
    }

    /// The RFC 9728 document.
    pub fn metadata(&self, host: &str) -> serde_json::Value {
        let resource = self
            .resource
            .clone()
            .unwrap_or_else(|| format!("{}/mcp", self.origin(host)));
        let mut document = serde_json::json!({
            "resource": resource,
            "bearer_methods_supported": ["header"],
        });
        if let Some(issuer) = &self.issuer {
            document["authorization_servers"] = serde_json::json!([issuer]);
        }
        document
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self, host: &str, error: &AuthError) -> String {
        let mut value = format!("Bearer resource_metadata=\"{}\"", self.metadata_url(host));
        if let AuthError::Invalid(reason) = error {
            let reason: String = reason
                .chars()
                .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
                .collect();
            value.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{reason}\""
            ));
        }
        value
    }

    fn origin(&self, host: &str) -> String {
        if let Some(resource) = &self.resource
            && let Some((scheme, rest)) = resource.split_once("://")
        {
            let authority = rest.split('/').next().unwrap_or(rest);
            return format!("{scheme}://{authority}");
        }
        format!("http://{host}")
    }
}

/// A header's value when it is present once and printable; a repeated credential header
/// is ambiguous and refused.
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::invalid(format!("repeated {name} header")));
    }
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(AuthError::invalid(format!(
            "{name} header exceeds {MAX_CREDENTIAL_BYTES} bytes"
        )));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| AuthError::invalid(format!("{name} header is not printable ASCII")))
}

fn looks_like_jwt(token: &str) -> bool {
    token.matches('.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_config::{ApiKey, Visibility};

    fn settings(anonymous: bool) -> AccessSettings {
        let mut settings = AccessSettings {
            anonymous,
            ..AccessSettings::default()
        };
        settings.keys.push(ApiKey {
            id: "ci".into(),
            hash: SecretHash::of(b"k-0123456789abcdef"),
            tenant: Some("acme".into()),
            roles: vec!["dev".into()],
            tools: None,
            snapshot: Default::default(),
        });
        settings
            .tenants
            .insert("acme".into(), Visibility::default());
        settings
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[tokio::test]
    async fn api_keys_by_either_header() {
        let auth = Authenticator::new(&settings(false));
        let by_bearer = auth
            .authenticate(&headers(&[("authorization", "Bearer k-0123456789abcdef")]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_bearer.id, "key:ci");
        assert_eq!(by_bearer.tenant.as_deref(), Some("acme"));
        let by_header = auth
            .authenticate(&headers(&[("x-api-key", "k-0123456789abcdef")]))
            .await
            .unwrap();
        assert_eq!(by_header, Some(by_bearer));
    }

    #[tokio::test]
    async fn missing_and_wrong_credentials() {
        let closed = Authenticator::new(&settings(false));
        assert_eq!(
            closed.authenticate(&HeaderMap::new()).await,
            Err(AuthError::Missing)
        );
        let wrong = closed
            .authenticate(&headers(&[("x-api-key", "nope")]))
            .await;
        assert_eq!(wrong, Err(AuthError::invalid("invalid credential")));
        let open = Authenticator::new(&settings(true));
        assert_eq!(open.authenticate(&HeaderMap::new()).await, Ok(None));
        // A wrong credential is refused even when anonymous access is on.
        assert!(
            open.authenticate(&headers(&[("x-api-key", "nope")]))
                .await
                .is_err()
        );
        let twice = headers(&[("x-api-key", "a"), ("x-api-key", "b")]);
        assert!(closed.authenticate(&twice).await.is_err());
        let huge = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
        assert!(
            closed
                .authenticate(&headers(&[("x-api-key", &huge)]))
                .await
                .is_err()
        );
    }

    #[test]
    fn challenge_names_the_metadata_and_never_quotes_through() {
        let auth = Authenticator::new(&settings(false));
        assert_eq!(
            auth.challenge("127.0.0.1:9", &AuthError::Missing),
            "Bearer resource_metadata=\"http://127.0.0.1:9/.well-known/oauth-protected-resource\""
        );
        let invalid = auth.challenge("h", &AuthError::invalid("bad \"x\""));
        assert!(invalid.ends_with("error=\"invalid_token\", error_description=\"bad x\""));
        assert_eq!(auth.metadata("h:1")["resource"], "http://h:1/mcp");
    }
}
