//! JWT bearer tokens: signature with a configured or JWKS-published public key, `alg`
//! from the configured allow-list *and* the key's own family (so `none`, and HMAC signed
//! with an RSA public key, never verify), `iss`, `aud`, `exp` and `nbf` with leeway.
//!
//! The JWKS is fetched on first use and cached; an unknown `kid` refreshes it (at most
//! once per [`MIN_REFRESH`]), an old cache is refreshed after [`MAX_AGE`], and when the
//! endpoint is down the keys already fetched keep working.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use parking_lot::RwLock;
use serde_json::{Map, Value};
use switchboard_config::JwtSettings;

use super::AuthError;
use crate::principal::Identity;

/// A JWKS is refetched for an unknown `kid` at most this often.
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// A JWKS older than this is refetched on the next token.
const MAX_AGE: Duration = Duration::from_secs(300);
/// Deadline and size bound of one JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A verification key and the algorithms it may verify.
#[derive(Clone)]
struct Key {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl Key {
    /// `allowed` narrowed to the key's family (and to the key's own `alg`, if it names one).
    fn new(key: DecodingKey, allowed: &[Algorithm], own: Option<Algorithm>) -> Option<Key> {
        let algorithms: Vec<Algorithm> = allowed
            .iter()
            .copied()
            .filter(|alg| alg.family() == key.family() && own.is_none_or(|own| own == *alg))
            .collect();
        (!algorithms.is_empty()).then_some(Key { key, algorithms })
    }
}

fn parse_pem(pem: &str) -> Option<DecodingKey> {
    let bytes = pem.as_bytes();
    DecodingKey::from_rsa_pem(bytes)
        .or_else(|_| DecodingKey::from_ec_pem(bytes))
        .or_else(|_| DecodingKey::from_ed_pem(bytes))
        .ok()
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Key>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

struct Jwks {
    url: String,
    client: reqwest::Client,
    cache: RwLock<Cache>,
    /// One fetch at a time; others wait and then read the cache.
    fetching: tokio::sync::Mutex<()>,
}

pub(super) struct Verifier {
    settings: JwtSettings,
    allowed: Vec<Algorithm>,
    /// Configured keys: by `kid`, or `None` for tokens without one.
    static_keys: Vec<(Option<String>, Key)>,
    jwks: Option<Jwks>,
}

impl Verifier {
    pub(super) fn new(settings: &JwtSettings) -> Verifier {
        let allowed: Vec<Algorithm> = settings
            .algorithms
            .iter()
            .filter_map(|name| Algorithm::from_str(name).ok())
            .filter(|alg| alg.family() != jsonwebtoken::AlgorithmFamily::Hmac)
            .collect();
        let mut static_keys = Vec::new();
        for configured in &settings.keys {
            match parse_pem(&configured.pem).and_then(|key| Key::new(key, &allowed, None)) {
                Some(key) => static_keys.push((configured.kid.clone(), key)),
                None => tracing::error!(
                    kid = configured.kid.as_deref().unwrap_or_default(),
                    "access.jwt.keys: a key is not a usable public key for the allowed algorithms; tokens it signed are refused"
                ),
            }
        }
        let jwks = settings.jwks_url.as_ref().map(|url| Jwks {
            url: url.clone(),
            client: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .expect("an HTTP client builds"),
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        });
        Verifier {
            settings: settings.clone(),
            allowed,
            static_keys,
            jwks,
        }
    }

    pub(super) async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = decode_header(token).map_err(|error| describe(error.kind()))?;
        if !self.allowed.contains(&header.alg) {
            return Err(AuthError::invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        let claims = decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|error| describe(error.kind()))?
            .claims;
        self.identity(&claims)
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, AuthError> {
        let subject = claims
            .get(&self.settings.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                AuthError::invalid(format!("missing `{}` claim", self.settings.subject_claim))
            })?;
        let tenant = match claims.get(&self.settings.tenant_claim) {
            None | Some(Value::Null) => None,
            Some(Value::String(tenant)) => Some(tenant.clone()),
            Some(_) => {
                return Err(AuthError::invalid(format!(
                    "`{}` claim must be a string",
                    self.settings.tenant_claim
                )));
            }
        };
        let roles = match claims.get(&self.settings.roles_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(roles)) => roles.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(roles)) => roles
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(_) => {
                return Err(AuthError::invalid(format!(
                    "`{}` claim must be a string or a list of strings",
                    self.settings.roles_claim
                )));
            }
        };
        Ok(Identity {
            id: format!("jwt:{subject}"),
            tenant,
            roles,
        })
    }

    async fn key(&self, kid: Option<&str>) -> Result<Key, AuthError> {
        if let Some((_, key)) = self.static_keys.iter().find(|(k, _)| k.as_deref() == kid) {
            return Ok(key.clone());
        }
        let unknown = || match kid {
            Some(kid) => AuthError::invalid(format!("unknown signing key `{kid}`")),
            None => AuthError::invalid("token names no signing key (`kid`)"),
        };
        let (Some(jwks), Some(kid)) = (&self.jwks, kid) else {
            return Err(unknown());
        };
        let (cached, fresh) = {
            let cache = jwks.cache.read();
            let fresh = cache.fetched.is_some_and(|at| at.elapsed() < MAX_AGE);
            (cache.keys.get(kid).cloned(), fresh)
        };
        if let Some(key) = &cached
            && fresh
        {
            return Ok(key.clone());
        }
        jwks.refresh(&self.allowed).await;
        jwks.cache
            .read()
            .keys
            .get(kid)
            .cloned()
            .or(cached)
            .ok_or_else(unknown)
    }
}

impl Jwks {
    /// Refetches the key set unless a fetch happened within [`MIN_REFRESH`]; a failed
    /// fetch keeps the keys already cached.
    async fn refresh(&self, allowed: &[Algorithm]) {
        let _one = self.fetching.lock().await;
        if self
            .cache
            .read()
            .attempted
            .is_some_and(|at| at.elapsed() < MIN_REFRESH)
        {
            return;
        }
        self.cache.write().attempted = Some(Instant::now());
        match self.fetch(allowed).await {
            Ok(keys) => {
                let mut cache = self.cache.write();
                cache.keys = keys;
                cache.fetched = Some(Instant::now());
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "JWKS fetch failed; keeping the cached keys");
            }
        }
    }

    async fn fetch(&self, allowed: &[Algorithm]) -> Result<HashMap<String, Key>, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|error| error.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(format!("larger than {MAX_JWKS_BYTES} bytes"));
            }
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|error| error.to_string())?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let own = jwk
                .common
                .key_algorithm
                .and_then(|alg| Algorithm::try_from(alg).ok());
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            if let Some(key) = Key::new(key, allowed, own) {
                keys.insert(kid, key);
            }
        }
        Ok(keys)
    }
}

fn describe(kind: &ErrorKind) -> AuthError {
    AuthError::invalid(match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidAudience => "token audience is not this resource",
        ErrorKind::InvalidIssuer => "token issuer is not accepted",
        ErrorKind::InvalidSignature => "token signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "token algorithm is not accepted"
        }
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim (exp, iss, aud)",
        _ => "malformed token",
    })
}
