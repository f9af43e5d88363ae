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

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore as _;
use reqwest::Url;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use switchboard_config::OAuthClient;

/// Where the authorization server sends the user-agent back. Never served: the headless
/// user agent stops at the redirect and reads the code from it.
pub(crate) const REDIRECT_URI: &str = "http://127.0.0.1/switchboard/oauth/callback";
const CLIENT_NAME: &str = "switchboard";
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

/// Client information for one authorization server.
#[derive(Clone, Debug)]
struct ClientCredentials {
    client_id: String,
    client_secret: Option<String>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    auth_method: String,
}

/// A `WWW-Authenticate: Bearer ...` challenge.
#[derive(Debug, Default, PartialEq)]
struct Challenge {
    resource_metadata: Option<String>,
    scope: Option<String>,
    error: Option<String>,
}

/// What discovery found for the server.
struct Discovery {
    /// The resource identifier, exactly as the metadata published it.
    resource: String,
    scopes_supported: Vec<String>,
    /// The authorization server's issuer, validated against its metadata.
    issuer: String,
    metadata: Value,
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

/// The authorizer for a server URL (one per URL in the process, so reconnections keep
/// their token), or `None` when the server is configured with its own credentials.
pub(crate) fn for_server(
    server: &str,
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
    let key = format!("{server}\n{url}\n{}", client.fingerprint());
    let authorizer = registry
        .entry(key)
        .or_insert_with(|| Arc::new(Authorizer::new(server, url.clone(), client)));
    Some(authorizer.clone())
}

/// The client information known before any registration: configured, else from the
/// environment, field by field.
#[derive(Default)]
struct StaticClient {
    preregistered: Option<ClientCredentials>,
    metadata_document: Option<String>,
}

impl StaticClient {
    fn resolve(server: &str, configured: Option<&OAuthClient>) -> StaticClient {
        let configured = configured.cloned().unwrap_or_default();
        let client_id = configured.client_id.or_else(|| env(server, "CLIENT_ID"));
        let preregistered = client_id.map(|client_id| {
            let client_secret = configured
                .client_secret
                .or_else(|| env(server, "CLIENT_SECRET"));
            ClientCredentials {
                client_id,
                auth_method: if client_secret.is_some() {
                    "client_secret_basic".into()
                } else {
                    "none".into()
                },
                client_secret,
            }
        });
        StaticClient {
            preregistered,
            metadata_document: configured
                .client_metadata_url
                .or_else(|| env(server, "CLIENT_METADATA_URL")),
        }
    }

    /// Identifies the information (the secret by a hash, never in clear).
    fn fingerprint(&self) -> String {
        let credentials = self.preregistered.as_ref();
        let secret = credentials
            .and_then(|c| c.client_secret.as_deref())
            .map(|secret| URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes())));
        format!(
            "{:?}|{:?}|{:?}",
            credentials.map(|c| &c.client_id),
            secret,
            self.metadata_document
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
    async fn discover(&self, challenge: &Challenge) -> Result<Discovery, AuthError> {
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

    /// The client to present to this authorization server.
    async fn client(
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
        let request = json!({
            "client_name": CLIENT_NAME,
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": method,
            "application_type": "native",
        });
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
        let client_secret = registered["client_secret"].as_str().map(str::to_owned);
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
        };
        flow.registrations
            .insert(discovery.issuer.clone(), client.clone());
        Ok(client)
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
                    form_encode(&[("", secret.as_str())])[1..].to_owned()
                );
                request =
                    request.header("authorization", format!("Basic {}", STANDARD.encode(pair)));
            }
            ("client_secret_post", Some(secret)) => {
                form.push(("client_id", client.client_id.clone()));
                form.push(("client_secret", secret.clone()));
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

fn scope_set(scope: Option<&str>) -> BTreeSet<String> {
    scope
        .unwrap_or_default()
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect()
}

fn join(scopes: &BTreeSet<String>) -> String {
    scopes
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
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

/// Parses the Bearer challenge of a `WWW-Authenticate` header (RFC 6750 section 3).
fn parse_challenge(header: &str) -> Option<Challenge> {
    let rest = header.trim_start();
    let scheme_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if !rest[..scheme_end].eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut challenge = Challenge::default();
    let mut chars = rest[scheme_end..].chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if name.is_empty() {
            break;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            value
        } else {
            chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_owned()
        };
        match name.as_str() {
            "resource_metadata" => challenge.resource_metadata = Some(value),
            "scope" => challenge.scope = Some(value),
            "error" => challenge.error = Some(value),
            _ => {}
        }
    }
    Some(challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let parsed = parse_challenge(
            r#"Bearer error="insufficient_scope", scope="a b", resource_metadata="https://x/.well-known/oauth-protected-resource/mcp", error_description="say \"no\"""#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            Challenge {
                resource_metadata: Some(
                    "https://x/.well-known/oauth-protected-resource/mcp".into()
                ),
                scope: Some("a b".into()),
                error: Some("insufficient_scope".into()),
            }
        );
        assert_eq!(parse_challenge("Bearer").unwrap(), Challenge::default());
        assert_eq!(parse_challenge("Basic realm=\"x\""), None);
        assert_eq!(
            parse_challenge("bearer error=invalid_token")
                .unwrap()
                .error
                .as_deref(),
            Some("invalid_token")
        );
    }

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

    #[test]
    fn configured_client_information_comes_before_the_environment() {
        let configured = OAuthClient {
            client_id: Some("from-config".into()),
            client_secret: Some("s3cret".into()),
            client_metadata_url: None,
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
    fn form_encoding_and_env_names() {
        assert_eq!(form_encode(&[("a", "x y"), ("b", "1&2")]), "a=x+y&b=1%262");
        assert_eq!(&form_encode(&[("", "id:1")])[1..], "id%3A1");
        assert_eq!(
            env_key("my-server.1", "CLIENT_ID"),
            "SWITCHBOARD_OAUTH_MY_SERVER_1_CLIENT_ID"
        );
    }
}
