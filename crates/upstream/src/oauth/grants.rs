//! The grants that need no user agent: client credentials (OAuth 2.1 section 4.2), the
//! JWT bearer grant with a workload identity token (RFC 7523 section 2.1), and
//! enterprise-managed authorization — token exchange (RFC 8693) of an ID token for an
//! identity assertion authorization grant (ID-JAG) at the identity provider, then that
//! grant as the JWT bearer assertion at the server's authorization server.

use std::collections::BTreeSet;

use reqwest::Url;
use switchboard_config::{CredentialSource, OAuthGrant, Secret};

use super::challenge::join;
use super::discovery::Discovery;
use super::{
    AuthError, Authorizer, Flow, basic_credentials, fail, form_encode, oauth_error, read_json,
};

pub(super) const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub(super) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(super) const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
pub(super) const ID_JAG_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";

fn read(source: &CredentialSource, what: &str) -> Result<Secret<String>, AuthError> {
    let value = source
        .read()
        .map_err(|e| AuthError(format!("reading the {what}: {e}")))?;
    if value.expose_str().is_empty() {
        return fail(format!("the {what} is empty"));
    }
    Ok(value)
}

impl Authorizer {
    /// A new token by the configured non-interactive grant. The configured `scope`
    /// replaces the scopes the server asked for.
    pub(super) async fn acquire(
        &self,
        flow: &mut Flow,
        discovery: &Discovery,
        wanted: BTreeSet<String>,
    ) -> Result<(), AuthError> {
        let scope = self
            .scope
            .clone()
            .or_else(|| Some(join(&wanted)).filter(|s| !s.is_empty()));
        let client = match &self.grant {
            // The workload may be identified by its assertion alone.
            OAuthGrant::JwtBearer { .. } => self.preregistered.clone(),
            _ => Some(self.client(flow, discovery).await?),
        };
        let mut form: Vec<(&'static str, String)> = match &self.grant {
            OAuthGrant::AuthorizationCode => {
                return fail("the authorization code grant needs the user agent");
            }
            OAuthGrant::ClientCredentials => vec![
                ("grant_type", "client_credentials".to_owned()),
                ("resource", discovery.resource.clone()),
            ],
            OAuthGrant::JwtBearer { assertion } => vec![
                ("grant_type", JWT_BEARER.to_owned()),
                (
                    "assertion",
                    read(assertion, "workload identity token")?.into_exposed(),
                ),
                ("resource", discovery.resource.clone()),
            ],
            OAuthGrant::Enterprise {
                idp_token_endpoint,
                idp_client_id,
                idp_client_secret,
                id_token,
            } => {
                let grant = self
                    .exchange_at_idp(
                        idp_token_endpoint,
                        idp_client_id.as_deref(),
                        idp_client_secret.as_ref(),
                        &read(id_token, "ID token")?,
                        discovery,
                        scope.as_deref(),
                    )
                    .await?;
                vec![
                    ("grant_type", JWT_BEARER.to_owned()),
                    ("assertion", grant.into_exposed()),
                ]
            }
        };
        if let Some(scope) = &scope {
            form.push(("scope", scope.clone()));
        }
        let granted = self
            .token_request(&discovery.metadata, client.as_ref(), &mut form)
            .await?;
        flow.issuer = Some(discovery.issuer.clone());
        flow.requested = wanted;
        // These grants are simply made again: no refresh token is kept.
        flow.refresh_token = None;
        flow.discovery = Some(discovery.clone());
        self.store(granted);
        tracing::info!(server = %self.server, issuer = %discovery.issuer, "authorized");
        Ok(())
    }

    /// RFC 8693 at the identity provider: the ID token for an ID-JAG whose audience is
    /// the authorization server and whose resource is the MCP server.
    async fn exchange_at_idp(
        &self,
        endpoint: &str,
        client_id: Option<&str>,
        client_secret: Option<&Secret<String>>,
        id_token: &Secret<String>,
        discovery: &Discovery,
        scope: Option<&str>,
    ) -> Result<Secret<String>, AuthError> {
        let endpoint = Url::parse(endpoint)
            .map_err(|e| AuthError(format!("identity provider token endpoint: {e}")))?;
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG_TYPE),
            ("audience", discovery.issuer.as_str()),
            ("resource", discovery.resource.as_str()),
            ("subject_token", id_token.expose_str()),
            ("subject_token_type", ID_TOKEN_TYPE),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let mut request = self
            .http
            .post(endpoint.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        match (client_id, client_secret) {
            (Some(id), Some(secret)) => {
                request =
                    request.header("authorization", basic_credentials(id, secret.expose_str()));
            }
            (Some(id), None) => form.push(("client_id", id)),
            _ => {}
        }
        let response = request
            .body(form_encode(&form))
            .send()
            .await
            .map_err(|e| AuthError(format!("token exchange at the identity provider: {e}")))?;
        let status = response.status();
        let body = read_json(response).await;
        match body["access_token"].as_str() {
            Some(grant) if status.is_success() => {
                if let Some(kind) = body["issued_token_type"].as_str()
                    && kind != ID_JAG_TYPE
                {
                    return fail(format!(
                        "the identity provider issued a `{kind}`, not an identity assertion grant"
                    ));
                }
                Ok(Secret::new(grant.to_owned()))
            }
            _ => fail(format!(
                "token exchange at the identity provider failed ({status}): {}",
                oauth_error(&body)
            )),
        }
    }
}
