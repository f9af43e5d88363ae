//! OAuth 2.1 for Streamable HTTP upstreams: switchboard as the MCP client of a protected
//! server (MCP "Authorization", 2025-11-25 and 2026-07-28).
//!
//! Started by the upstream, not by configuration: a `401` (or a `403` with
//! `error="insufficient_scope"`) carrying a Bearer challenge runs discovery — Protected
//! Resource Metadata (RFC 9728, the `resource` checked against the server's URL), then
//! authorization server metadata (RFC 8414 / OpenID discovery, `issuer` checked against
//! the URL it was derived from) — client registration (pre-registered credentials, a
//! Client ID Metadata Document, or Dynamic Client Registration, in that order) and the
//! authorization code grant with PKCE S256, `state`, resource indicators (RFC 8707) and
//! `iss` validation (RFC 9207). Tokens live per server URL for the life of the process;
//! a rejected token is refreshed at the same authorization server, and a server that
//! moved to another authorization server gets a new registration there (credentials are
//! never carried across issuers). A scope challenge is answered once per scope set: a
//! server that keeps asking for scopes already requested is refused, not looped on.
//!
//! The user-agent step is headless: the gateway requests the authorization URL itself and
//! accepts only a redirect to its redirect URI (an authorization server that approves
//! this client without a person, as in automated deployments and tests). When the
//! authorization server wants a person instead (a login or consent page), the call fails
//! with an error naming the URL to open.
//!
//! Static client information comes from the server's `[servers.NAME.oauth]` section
//! (`client_id`, `client_secret`: pre-registration; `client_metadata_url`: a Client ID
//! Metadata Document), else from the environment: `SWITCHBOARD_OAUTH_<SERVER>_CLIENT_ID`,
//! `_CLIENT_SECRET` and `_CLIENT_METADATA_URL`, where `<SERVER>` is the server's name
//! upper-cased with every other character than letters and digits as `_`. A server
//! configured with its own `Authorization` header never takes part. Tokens and secrets
//! stay in the gateway: no client of the gateway ever sees them.
//!
//! This module answers challenges (authorize, refresh, the token request, the headless
//! user agent); `challenge` parses them, `discovery` finds the authorization server and
//! `client` chooses or registers the client presented to it.

mod challenge;
mod client;
mod discovery;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use switchboard_config::OAuthClient;

use challenge::{join, parse_challenge, scope_set};
use client::{ClientCredentials, StaticClient};
use discovery::Discovery;

/// Where the authorization server sends the user-agent back. Never served: the headless
/// user agent stops at the redirect and reads the code from it.
pub(crate) const REDIRECT_URI: &str = "http://127.0.0.1/switchboard/oauth/callback";
/// Redirects followed inside the authorization server before giving up.
const MAX_HOPS: usize = 5;
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why authorization could not be obtained.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AuthError(String);

fn fail<T>(message: impl Into<String>) -> Result<T, AuthError> {
    Err(AuthError(message.into()))
}

/// The state of the authorization flow, serialized by the flow lock.
#[derive(Default)]
struct Flow {
    /// The authorization server of the current token.
    issuer: Option<String>,
    refresh_token: Option<String>,
    /// Scopes of the last authorization request.
    requested: BTreeSet<String>,
    /// Dynamic registrations, by issuer: never presented to another server.
    registrations: HashMap<String, ClientCredentials>,
}

/// OAuth for one upstream URL, shared by every connection to it.
pub(crate) struct Authorizer {
    server: String,
    url: Url,
    preregistered: Option<ClientCredentials>,
    metadata_document: Option<String>,
    bearer: parking_lot::Mutex<Option<String>>,
    flow: tokio::sync::Mutex<Flow>,
    http: reqwest::Client,
}

/// The authorizer for a server URL (one per URL and tenant in the process, so
/// reconnections keep their token and tenants never share one), or `None` when the server
/// is configured with its own credentials.
pub(crate) fn for_server(
    server: &str,
    tenant: Option<&str>,
    url: &Url,
    headers: &reqwest::header::HeaderMap,
    configured: Option<&OAuthClient>,
) -> Option<Arc<Authorizer>> {
    if headers.contains_key(reqwest::header::AUTHORIZATION) {
        return None;
    }
    let client = StaticClient::resolve(server, configured);
    static REGISTRY: OnceLock<parking_lot::Mutex<HashMap<String, Arc<Authorizer>>>> =
        OnceLock::new();
    let registry = REGISTRY.get_or_init(Default::default);
    let mut registry = registry.lock();
    // New client information (a reloaded config) means a new authorizer.
    let key = format!("{server}\n{tenant:?}\n{url}\n{}", client.fingerprint());
    let authorizer = registry
        .entry(key)
        .or_insert_with(|| Arc::new(Authorizer::new(server, url.clone(), client)));
    Some(authorizer.clone())
}

impl Authorizer {
    fn new(server: &str, url: Url, client: StaticClient) -> Authorizer {
        Authorizer {
            server: server.to_owned(),
            url,
            preregistered: client.preregistered,
            metadata_document: client.metadata_document,
            bearer: parking_lot::Mutex::new(None),
            flow: tokio::sync::Mutex::new(Flow::default()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("HTTP client builds"),
        }
    }

    /// The access token to send, if any.
    pub(crate) fn bearer(&self) -> Option<String> {
        self.bearer.lock().clone()
    }

    /// Answers an authorization challenge. `sent` is the token the refused request
    /// carried. `Ok` means: send the request again (with [`Authorizer::bearer`]).
    pub(crate) async fn on_challenge(
        &self,
        status: u16,
        www_authenticate: Option<&str>,
        sent: Option<&str>,
    ) -> Result<(), AuthError> {
        let challenge = www_authenticate
            .and_then(parse_challenge)
            .unwrap_or_default();
        let mut flow = self.flow.lock().await;
        // Another request replaced the token while this one was refused: just resend.
        if sent != self.bearer.lock().as_deref() {
            return Ok(());
        }
        let challenged = scope_set(challenge.scope.as_deref());
        if status == 403 {
            if challenge.error.as_deref() != Some("insufficient_scope") {
                return fail(format!(
                    "server `{}` refused the request (403)",
                    self.server
                ));
            }
            // Step-up: the scopes held plus the challenged ones, once per scope set.
            if challenged.is_subset(&flow.requested) {
                return fail(format!(
                    "server `{}` still requires scope `{}` after it was granted; not asking again",
                    self.server,
                    challenge.scope.as_deref().unwrap_or_default()
                ));
            }
            let wanted = flow.requested.union(&challenged).cloned().collect();
            let discovery = self.discover(&challenge).await?;
            return self.authorize(&mut flow, &discovery, wanted).await;
        }
        let discovery = self.discover(&challenge).await?;
        if sent.is_some()
            && flow.issuer.as_deref() == Some(discovery.issuer.as_str())
            && flow.refresh_token.is_some()
        {
            match self.refresh(&mut flow, &discovery).await {
                Ok(()) => return Ok(()),
                Err(error) => {
                    tracing::info!(server = %self.server, %error, "token refresh failed; authorizing again")
                }
            }
        }
        // Scope selection: the challenge's scope, else everything the resource lists,
        // else none; on re-authorization also what was requested before.
        let mut wanted: BTreeSet<String> = if challenged.is_empty() {
            discovery.scopes_supported.iter().cloned().collect()
        } else {
            challenged
        };
        if sent.is_some() {
            wanted.extend(flow.requested.iter().cloned());
        }
        self.authorize(&mut flow, &discovery, wanted).await
    }

    /// The authorization code grant for `scopes`, ending with a new token.
    async fn authorize(
        &self,
        flow: &mut Flow,
        discovery: &Discovery,
        mut scopes: BTreeSet<String>,
    ) -> Result<(), AuthError> {
        let metadata = &discovery.metadata;
        let endpoint = metadata["authorization_endpoint"].as_str().ok_or_else(|| {
            AuthError("authorization server metadata without authorization_endpoint".into())
        })?;
        let client = self.client(flow, discovery).await?;
        // A refresh token is worth asking for where the server says it grants one.
        if strings(&metadata["scopes_supported"])
            .iter()
            .any(|s| s == "offline_access")
        {
            scopes.insert("offline_access".into());
        }
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let state = random_token();
        let mut url = Url::parse(endpoint)
            .map_err(|e| AuthError(format!("authorization endpoint `{endpoint}`: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &client.client_id)
                .append_pair("redirect_uri", REDIRECT_URI)
                .append_pair("code_challenge", &challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", &state)
                .append_pair("resource", &discovery.resource);
            if !scopes.is_empty() {
                query.append_pair("scope", &join(&scopes));
            }
        }
        let redirect = self.user_agent(url).await?;
        let code = self.validate_response(&redirect, &state, discovery)?;
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", REDIRECT_URI.to_owned()),
            ("code_verifier", verifier),
            ("resource", discovery.resource.clone()),
        ];
        let granted = self.token_request(metadata, &client, &mut form).await?;
        flow.issuer = Some(discovery.issuer.clone());
        flow.requested = scopes;
        flow.refresh_token = granted.refresh_token;
        *self.bearer.lock() = Some(granted.access_token);
        tracing::info!(server = %self.server, issuer = %discovery.issuer, "authorized");
        Ok(())
    }

    /// Requests the authorization URL as the user agent and returns where the
    /// authorization server sent it back.
    async fn user_agent(&self, url: Url) -> Result<Url, AuthError> {
        let start = url.clone();
        let mut current = url;
        for _ in 0..MAX_HOPS {
            let response = self
                .http
                .get(current.clone())
                .send()
                .await
                .map_err(|e| AuthError(format!("authorization request: {e}")))?;
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .filter(|_| response.status().is_redirection())
                .and_then(|l| current.join(l).ok());
            let Some(next) = location else { break };
            if next.as_str().starts_with(REDIRECT_URI) {
                return Ok(next);
            }
            current = next;
        }
        fail(format!(
            "server `{}` needs a person to authorize switchboard: open {start}",
            self.server
        ))
    }

    /// RFC 9207 first (nothing in a response from the wrong issuer is acted on), then the
    /// error, `state` and the code.
    fn validate_response(
        &self,
        redirect: &Url,
        state: &str,
        discovery: &Discovery,
    ) -> Result<String, AuthError> {
        let values = |name: &str| -> Vec<String> {
            redirect
                .query_pairs()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .collect()
        };
        let advertised = discovery.metadata["authorization_response_iss_parameter_supported"]
            .as_bool()
            == Some(true);
        let expected = discovery.metadata["issuer"].as_str().unwrap_or_default();
        match (advertised, values("iss").as_slice()) {
            (true, []) => {
                return fail(
                    "the authorization response has no `iss` although the authorization server advertises it",
                );
            }
            (_, []) => {}
            // Simple string comparison: no normalization of any kind.
            (_, [iss]) if iss == expected => {}
            (_, found) => {
                return fail(format!(
                    "the authorization response comes from issuer {found:?}, not `{expected}`"
                ));
            }
        }
        if let Some(error) = values("error").first() {
            return fail(format!("authorization refused: {error}"));
        }
        if values("state").as_slice() != [state] {
            return fail("the authorization response does not carry our `state`");
        }
        match values("code").as_slice() {
            [code] if !code.is_empty() => Ok(code.clone()),
            _ => fail("the authorization response carries no code"),
        }
    }

    async fn refresh(&self, flow: &mut Flow, discovery: &Discovery) -> Result<(), AuthError> {
        let refresh_token = flow
            .refresh_token
            .clone()
            .ok_or_else(|| AuthError("no refresh token".into()))?;
        let client = self.client(flow, discovery).await?;
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token),
            ("resource", discovery.resource.clone()),
        ];
        let granted = self
            .token_request(&discovery.metadata, &client, &mut form)
            .await?;
        if granted.refresh_token.is_some() {
            flow.refresh_token = granted.refresh_token;
        }
        *self.bearer.lock() = Some(granted.access_token);
        Ok(())
    }

    async fn token_request(
        &self,
        metadata: &Value,
        client: &ClientCredentials,
        form: &mut Vec<(&'static str, String)>,
    ) -> Result<Granted, AuthError> {
        let endpoint = metadata["token_endpoint"].as_str().ok_or_else(|| {
            AuthError("authorization server metadata without token_endpoint".into())
        })?;
        let mut request = self
            .http
            .post(endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json");
        match (client.auth_method.as_str(), &client.client_secret) {
            ("client_secret_basic", Some(secret)) => {
                // RFC 6749 section 2.3.1: both parts form-encoded, then Basic.
                let pair = format!(
                    "{}:{}",
                    form_encode(&[("", client.client_id.as_str())])[1..].to_owned(),
                    form_encode(&[("", secret.expose_str())])[1..].to_owned()
                );
                request =
                    request.header("authorization", format!("Basic {}", STANDARD.encode(pair)));
            }
            ("client_secret_post", Some(secret)) => {
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_secret", secret.expose().clone()));
            }
            _ => form.push(("client_id", client.client_id.clone())),
        }
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = request
            .body(form_encode(&pairs))
            .send()
            .await
            .map_err(|e| AuthError(format!("token request: {e}")))?;
        let status = response.status();
        let body = read_json(response).await;
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => Ok(Granted {
                access_token: token.to_owned(),
                refresh_token: body["refresh_token"].as_str().map(str::to_owned),
            }),
            _ => fail(format!("token request failed ({status}): {body}")),
        }
    }
}

/// A response body as JSON (`null` when it is not JSON).
async fn read_json(response: reqwest::Response) -> Value {
    match response.bytes().await {
        Ok(body) => serde_json::from_slice(&body).unwrap_or_default(),
        Err(_) => Value::Null,
    }
}

struct Granted {
    access_token: String,
    refresh_token: Option<String>,
}

/// `application/x-www-form-urlencoded` (as `key=value&...`; `[1..]` of a one-pair body
/// with an empty key is the encoded value).
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://form.invalid/").expect("static URL parses");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode(&[("a", "x y"), ("b", "1&2")]), "a=x+y&b=1%262");
        assert_eq!(&form_encode(&[("", "id:1")])[1..], "id%3A1");
    }

    #[test]
    fn tenants_never_share_an_authorizer() {
        let url = Url::parse("https://tools.example.com/mcp").unwrap();
        let headers = reqwest::header::HeaderMap::new();
        let of = |tenant: Option<&str>| {
            for_server("oauth-tenants-test", tenant, &url, &headers, None).expect("takes part")
        };
        // The same tenant keeps its authorizer (and its token) across reconnections.
        assert!(Arc::ptr_eq(&of(Some("acme")), &of(Some("acme"))));
        assert!(Arc::ptr_eq(&of(None), &of(None)));
        // Another tenant, or the server's own connection, has another one.
        assert!(!Arc::ptr_eq(&of(Some("acme")), &of(Some("globex"))));
        assert!(!Arc::ptr_eq(&of(Some("acme")), &of(None)));
        // A server with its own Authorization header does not take part at all.
        let mut own = reqwest::header::HeaderMap::new();
        own.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_static("Bearer x"),
        );
        assert!(for_server("oauth-tenants-test", Some("acme"), &url, &own, None).is_none());
    }
}
