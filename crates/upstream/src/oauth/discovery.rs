//! Discovery: protected resource metadata (RFC 9728, its `resource` checked against the
//! server's URL), then authorization server metadata (RFC 8414 / OpenID discovery, its
//! `issuer` checked against the URL it was derived from).

use reqwest::Url;
use serde_json::Value;

use super::challenge::Challenge;
use super::{AuthError, Authorizer, fail, read_json, strings};

/// What discovery found for the server.
#[derive(Clone)]
pub(super) struct Discovery {
    /// The resource identifier, exactly as the metadata published it.
    pub(super) resource: String,
    pub(super) scopes_supported: Vec<String>,
    /// The authorization server's issuer, validated against its metadata.
    pub(super) issuer: String,
    pub(super) metadata: Value,
}

impl Authorizer {
    async fn get_json(&self, url: &str) -> Result<Option<Value>, AuthError> {
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| AuthError(format!("GET {url}: {e}")))?;
        if !response.status().is_success() {
            return Ok(None);
        }
        Ok(Some(read_json(response).await).filter(Value::is_object))
    }

    /// Protected resource metadata, then authorization server metadata.
    pub(super) async fn discover(&self, challenge: &Challenge) -> Result<Discovery, AuthError> {
        let origin = self.url.origin().ascii_serialization();
        let path = self.url.path().trim_end_matches('/');
        let candidates = match &challenge.resource_metadata {
            Some(url) => vec![url.clone()],
            None if path.is_empty() => {
                vec![format!("{origin}/.well-known/oauth-protected-resource")]
            }
            None => vec![
                format!("{origin}/.well-known/oauth-protected-resource{path}"),
                format!("{origin}/.well-known/oauth-protected-resource"),
            ],
        };
        let mut prm = None;
        for candidate in &candidates {
            if let Some(document) = self.get_json(candidate).await? {
                prm = Some(document);
                break;
            }
        }
        let Some(prm) = prm else {
            return fail(format!(
                "server `{}` asked for authorization but publishes no protected resource metadata (tried {})",
                self.server,
                candidates.join(", ")
            ));
        };
        let resource = prm["resource"]
            .as_str()
            .ok_or_else(|| AuthError("protected resource metadata without `resource`".into()))?
            .to_owned();
        if !resource_covers(&resource, &self.url) {
            return fail(format!(
                "protected resource metadata names resource `{resource}`, not `{}`: refusing to authorize",
                self.url
            ));
        }
        let issuer = prm["authorization_servers"]
            .as_array()
            .and_then(|servers| servers.first())
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AuthError("protected resource metadata names no authorization server".into())
            })?
            .to_owned();
        let metadata = self.authorization_server_metadata(&issuer).await?;
        Ok(Discovery {
            resource,
            scopes_supported: strings(&prm["scopes_supported"]),
            issuer,
            metadata,
        })
    }

    /// RFC 8414 and OpenID discovery, in the order the MCP specification gives; a
    /// document whose `issuer` is not the issuer it was derived from is never used.
    async fn authorization_server_metadata(&self, issuer: &str) -> Result<Value, AuthError> {
        let parsed = Url::parse(issuer)
            .map_err(|e| AuthError(format!("authorization server `{issuer}`: {e}")))?;
        let origin = parsed.origin().ascii_serialization();
        let path = parsed.path().trim_end_matches('/');
        let candidates = if path.is_empty() {
            vec![
                format!("{origin}/.well-known/oauth-authorization-server"),
                format!("{origin}/.well-known/openid-configuration"),
            ]
        } else {
            vec![
                format!("{origin}/.well-known/oauth-authorization-server{path}"),
                format!("{origin}/.well-known/openid-configuration{path}"),
                format!("{origin}{path}/.well-known/openid-configuration"),
            ]
        };
        for candidate in &candidates {
            let Some(metadata) = self.get_json(candidate).await? else {
                continue;
            };
            if metadata["issuer"].as_str() == Some(issuer) {
                return Ok(metadata);
            }
            tracing::warn!(
                server = %self.server,
                url = %candidate,
                issuer = ?metadata["issuer"],
                expected = issuer,
                "authorization server metadata with another issuer ignored"
            );
        }
        fail(format!(
            "no valid authorization server metadata for `{issuer}` (tried {})",
            candidates.join(", ")
        ))
    }
}

/// Whether a published resource identifier covers the server's URL: same origin, and
/// the server's path at or below the resource's (a root resource covers every path).
fn resource_covers(resource: &str, server: &Url) -> bool {
    let Ok(resource) = Url::parse(resource) else {
        return false;
    };
    if resource.origin() != server.origin() {
        return false;
    }
    let base = resource.path().trim_end_matches('/');
    let path = server.path().trim_end_matches('/');
    path == base || path.starts_with(&format!("{base}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_cover_their_own_paths_only() {
        let server = Url::parse("http://localhost:3000/mcp").unwrap();
        assert!(resource_covers("http://localhost:3000/mcp", &server));
        assert!(resource_covers("http://localhost:3000", &server));
        assert!(resource_covers("http://localhost:3000/", &server));
        assert!(!resource_covers("https://evil.example.com/mcp", &server));
        assert!(!resource_covers("http://localhost:3001/mcp", &server));
        assert!(!resource_covers("http://localhost:3000/mc", &server));
        assert!(!resource_covers("http://localhost:3000/mcp/other", &server));
    }
}
