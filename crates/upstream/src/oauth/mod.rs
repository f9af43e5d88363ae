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
//! The `grant` of the section replaces the authorization code flow for deployments
//! without a person: client credentials (`client_secret_basic` or `private_key_jwt`),
//! the JWT bearer grant with a workload identity token, or enterprise-managed
//! authorization (`grants`). `dpop = true` binds every token to a key generated here
//! (RFC 9449, `jwt`), answering `use_dpop_nonce` once at the authorization server and
//! at the MCP server. Tokens are kept until their announced expiry (less a margin) and
//! renewed before the next request.
//!
//! This module answers challenges (authorize, refresh, the token request, the headless
//! user agent); `challenge` parses them, `discovery` finds the authorization server and
//! `client` chooses or registers the client presented to it.

mod challenge;
mod client;
mod discovery;
#[cfg(test)]
mod flow_tests;
mod grants;
mod jwt;
#[cfg(test)]
mod testserver;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use reqwest::Url;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use switchboard_config::{OAuthClient, OAuthGrant};

use challenge::{join, parse_challenge, scope_set};
use client::{ClientCredentials, StaticClient};
use discovery::Discovery;

/// Where the authorization server sends the user-agent back. Never served: the headless
/// user agent stops at the redirect and reads the code from it.
pub(crate) const REDIRECT_URI: &str = "http://127.0.0.1/switchboard/oauth/callback";
/// Redirects followed inside the authorization server before giving up.
const MAX_HOPS: usize = 5;
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response read from an authorization server or identity provider.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// A token is renewed this long before the expiry its server announced.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

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
    /// What discovery found when the current token was obtained: where it is renewed.
    discovery: Option<Discovery>,
}

/// An access token and how to present it.
struct Token {
    value: String,
    /// DPoP-bound (`token_type` `DPoP`): presented with a proof.
    dpop: bool,
    expires_at: Option<Instant>,
}

/// OAuth for one upstream URL, shared by every connection to it.
pub(crate) struct Authorizer {
    server: String,
    url: Url,
    preregistered: Option<ClientCredentials>,
    metadata_document: Option<String>,
    /// How tokens are obtained, and the scopes the non-interactive grants request.
    grant: OAuthGrant,
    scope: Option<String>,
    /// The DPoP key, when tokens are DPoP-bound; the servers' latest nonces.
    dpop: Option<jwt::DpopKey>,
    as_nonce: parking_lot::Mutex<Option<String>>,
    rs_nonce: parking_lot::Mutex<Option<String>>,
    bearer: parking_lot::Mutex<Option<Token>>,
    flow: tokio::sync::Mutex<Flow>,
    http: reqwest::Client,
}

/// The token a request presents (the value never shows in `Debug`).
#[derive(Clone)]
pub(crate) struct Credential {
    token: String,
    dpop: bool,
    authorizer: Arc<Authorizer>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.dpop {
            "DPoP [redacted]"
        } else {
            "Bearer [redacted]"
        })
    }
}

impl Credential {
    /// The current token of `authorizer`, if it has a valid one.
    pub(crate) fn current(authorizer: &Arc<Authorizer>) -> Option<Credential> {
        let token = authorizer.bearer.lock();
        let token = token.as_ref().filter(|token| {
            token
                .expires_at
                .is_none_or(|at| Instant::now() + EXPIRY_MARGIN < at)
        })?;
        Some(Credential {
            token: token.value.clone(),
            dpop: token.dpop,
            authorizer: authorizer.clone(),
        })
    }

    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn is_dpop(&self) -> bool {
        self.dpop
    }

    /// `request` (a `method` request to `url`) with the token: `Authorization: Bearer`,
    /// or for a DPoP-bound token `Authorization: DPoP` and a fresh proof carrying the
    /// resource server's latest nonce.
    pub(crate) fn apply(
        &self,
        request: reqwest::RequestBuilder,
        method: &str,
        url: &Url,
    ) -> reqwest::RequestBuilder {
        let key = self.authorizer.dpop.as_ref().filter(|_| self.dpop);
        let Some(key) = key else {
            return request.bearer_auth(&self.token);
        };
        let nonce = self.authorizer.rs_nonce.lock().clone();
        let proof = key.proof(method, url, nonce.as_deref(), Some(&self.token));
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("DPoP {}", self.token))
                .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("DPoP invalid"));
        authorization.set_sensitive(true);
        request
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header("DPoP", proof)
    }
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
    let authorizer = registry.entry(key).or_insert_with(|| {
        Arc::new(Authorizer::new(
            server,
            url.clone(),
            client,
            configured.cloned().unwrap_or_default(),
        ))
    });
    Some(authorizer.clone())
}

impl Authorizer {
    fn new(server: &str, url: Url, client: StaticClient, configured: OAuthClient) -> Authorizer {
        let dpop = if configured.dpop {
            match jwt::DpopKey::generate() {
                Ok(key) => Some(key),
                Err(error) => {
                    tracing::warn!(server, %error, "DPoP unavailable; tokens will be Bearer");
                    None
                }
            }
        } else {
            None
        };
        Authorizer {
            server: server.to_owned(),
            url,
            preregistered: client.preregistered,
            metadata_document: client.metadata_document,
            grant: configured.grant,
            scope: configured.scope,
            dpop,
            as_nonce: parking_lot::Mutex::new(None),
            rs_nonce: parking_lot::Mutex::new(None),
            bearer: parking_lot::Mutex::new(None),
            flow: tokio::sync::Mutex::new(Flow::default()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("HTTP client builds"),
        }
    }

    /// The access token to send, if any (an expired one is not).
    fn bearer_value(&self) -> Option<String> {
        self.bearer
            .lock()
            .as_ref()
            .filter(|token| {
                token
                    .expires_at
                    .is_none_or(|at| Instant::now() + EXPIRY_MARGIN < at)
            })
            .map(|token| token.value.clone())
    }

    /// Keeps the resource server's `DPoP-Nonce` for the next proofs.
    pub(crate) fn observe(&self, headers: &reqwest::header::HeaderMap) {
        if self.dpop.is_some()
            && let Some(nonce) = headers.get("dpop-nonce").and_then(|v| v.to_str().ok())
        {
            *self.rs_nonce.lock() = Some(nonce.to_owned());
        }
    }

    /// Whether a refusal only asks for a DPoP nonce (RFC 9449 section 9): the request is
    /// sent again with a proof carrying it, the token stays.
    pub(crate) fn is_nonce_challenge(
        &self,
        status: u16,
        www_authenticate: Option<&str>,
        headers: &reqwest::header::HeaderMap,
    ) -> bool {
        self.dpop.is_some()
            && status == 401
            && headers.contains_key("dpop-nonce")
            && www_authenticate
                .and_then(parse_challenge)
                .is_some_and(|c| c.error.as_deref() == Some("use_dpop_nonce"))
    }

    /// Renews a token that expired (or is about to) before a request needs it: the
    /// non-interactive grants are made again, an authorization code token is
    /// refreshed. Nothing happens without a token, and a failure leaves the request to
    /// meet the server's challenge as usual.
    pub(crate) async fn renew_if_expiring(&self) {
        let expiring = |this: &Self| {
            this.bearer.lock().as_ref().is_some_and(|token| {
                token
                    .expires_at
                    .is_some_and(|at| Instant::now() + EXPIRY_MARGIN >= at)
            })
        };
        if !expiring(self) {
            return;
        }
        let mut flow = self.flow.lock().await;
        // Renewed by another request meanwhile.
        if !expiring(self) {
            return;
        }
        let Some(discovery) = flow.discovery.clone() else {
            return;
        };
        let outcome = if self.grant != OAuthGrant::AuthorizationCode {
            let wanted = flow.requested.clone();
            self.acquire(&mut flow, &discovery, wanted).await
        } else if flow.refresh_token.is_some() {
            self.refresh(&mut flow, &discovery).await
        } else {
            return;
        };
        if let Err(error) = outcome {
            tracing::info!(server = %self.server, %error, "token renewal failed");
        }
    }

    fn store(&self, granted: Granted) {
        *self.bearer.lock() = Some(Token {
            value: granted.access_token,
            dpop: granted.dpop,
            expires_at: granted
                .expires_in
                .map(|secs| Instant::now() + Duration::from_secs(secs)),
        });
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
        if sent != self.bearer_value().as_deref() {
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
            if self.grant != OAuthGrant::AuthorizationCode {
                return self.acquire(&mut flow, &discovery, wanted).await;
            }
            return self.authorize(&mut flow, &discovery, wanted).await;
        }
        let discovery = self.discover(&challenge).await?;
        if flow.issuer.as_deref() == Some(discovery.issuer.as_str()) && flow.refresh_token.is_some()
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
        if self.grant != OAuthGrant::AuthorizationCode {
            return self.acquire(&mut flow, &discovery, wanted).await;
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
        let mut granted = self
            .token_request(metadata, Some(&client), &mut form)
            .await?;
        flow.issuer = Some(discovery.issuer.clone());
        flow.requested = scopes;
        flow.refresh_token = granted.refresh_token.take();
        flow.discovery = Some(discovery.clone());
        self.store(granted);
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
        let mut granted = self
            .token_request(&discovery.metadata, Some(&client), &mut form)
            .await?;
        if granted.refresh_token.is_some() {
            flow.refresh_token = granted.refresh_token.take();
        }
        self.store(granted);
        Ok(())
    }

    /// A token request at the authorization server's token endpoint: the client
    /// authenticated as it registered (`client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`, or only its id), with a DPoP proof when tokens are DPoP-bound
    /// (sent again once with the server's nonce on `use_dpop_nonce`).
    async fn token_request(
        &self,
        metadata: &Value,
        client: Option<&ClientCredentials>,
        form: &mut Vec<(&'static str, String)>,
    ) -> Result<Granted, AuthError> {
        let endpoint = metadata["token_endpoint"].as_str().ok_or_else(|| {
            AuthError("authorization server metadata without token_endpoint".into())
        })?;
        let endpoint = Url::parse(endpoint)
            .map_err(|e| AuthError(format!("token endpoint `{endpoint}`: {e}")))?;
        let mut basic = None;
        if let Some(client) = client {
            match (
                client.auth_method.as_str(),
                &client.client_secret,
                &client.signing_key,
            ) {
                ("private_key_jwt", _, Some(key)) => {
                    let audience = metadata["issuer"].as_str().unwrap_or(endpoint.as_str());
                    form.push(("client_assertion_type", jwt::ASSERTION_TYPE.to_owned()));
                    form.push((
                        "client_assertion",
                        jwt::client_assertion(key, &client.client_id, audience)?,
                    ));
                }
                ("client_secret_basic", Some(secret), _) => {
                    basic = Some(basic_credentials(&client.client_id, secret.expose_str()));
                }
                ("client_secret_post", Some(secret), _) => {
                    form.push(("client_id", client.client_id.clone()));
                    form.push(("client_secret", secret.expose().clone()));
                }
                _ => form.push(("client_id", client.client_id.clone())),
            }
        }
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body = form_encode(&pairs);
        let mut nonce_retried = false;
        loop {
            let mut request = self
                .http
                .post(endpoint.clone())
                .header("content-type", "application/x-www-form-urlencoded")
                .header("accept", "application/json");
            if let Some(basic) = &basic {
                request = request.header("authorization", basic);
            }
            if let Some(key) = &self.dpop {
                let nonce = self.as_nonce.lock().clone();
                request =
                    request.header("DPoP", key.proof("POST", &endpoint, nonce.as_deref(), None));
            }
            let response = request
                .body(body.clone())
                .send()
                .await
                .map_err(|e| AuthError(format!("token request: {e}")))?;
            let status = response.status();
            let nonce = response
                .headers()
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if self.dpop.is_some() && nonce.is_some() {
                *self.as_nonce.lock() = nonce.clone();
            }
            let body = read_json(response).await;
            if let Some(token) = body["access_token"]
                .as_str()
                .filter(|_| status.is_success())
            {
                return Ok(Granted {
                    access_token: token.to_owned(),
                    refresh_token: body["refresh_token"].as_str().map(str::to_owned),
                    dpop: body["token_type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case("dpop")),
                    expires_in: body["expires_in"].as_u64(),
                });
            }
            // RFC 9449 section 8: the authorization server wants its nonce in the proof.
            if self.dpop.is_some()
                && !nonce_retried
                && nonce.is_some()
                && body["error"].as_str() == Some("use_dpop_nonce")
            {
                nonce_retried = true;
                continue;
            }
            return fail(format!(
                "token request failed ({status}): {}",
                oauth_error(&body)
            ));
        }
    }
}

/// `Basic` credentials (RFC 6749 section 2.3.1: both parts form-encoded first).
fn basic_credentials(id: &str, secret: &str) -> String {
    let pair = format!(
        "{}:{}",
        &form_encode(&[("", id)])[1..],
        &form_encode(&[("", secret)])[1..]
    );
    format!("Basic {}", STANDARD.encode(pair))
}

/// The OAuth error of a refusal (RFC 6749 section 5.2), never anything else of the
/// body: it might echo what was sent.
fn oauth_error(body: &Value) -> String {
    let clip = |text: &str| text.chars().take(200).collect::<String>();
    match (body["error"].as_str(), body["error_description"].as_str()) {
        (Some(error), Some(description)) => format!("{} ({})", clip(error), clip(description)),
        (Some(error), None) => clip(error),
        _ => "no OAuth error in the response".into(),
    }
}

/// A response body as JSON (`null` when it is not JSON, or larger than
/// [`MAX_RESPONSE_BYTES`]).
async fn read_json(mut response: reqwest::Response) -> Value {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if body.len() + chunk.len() <= MAX_RESPONSE_BYTES => {
                body.extend_from_slice(&chunk)
            }
            Ok(Some(_)) | Err(_) => return Value::Null,
            Ok(None) => return serde_json::from_slice(&body).unwrap_or_default(),
        }
    }
}

struct Granted {
    access_token: String,
    refresh_token: Option<String>,
    /// `token_type` `DPoP`.
    dpop: bool,
    expires_in: Option<u64>,
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
