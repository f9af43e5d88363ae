//! Signed JWTs the gateway makes as an OAuth client: client assertions for
//! `private_key_jwt` (RFC 7523 section 2.2) and DPoP proofs (RFC 9449 section 4.2) with a
//! key generated per authorizer (P-256, never leaving the process).

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
#[cfg(test)]
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Url;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use switchboard_config::SigningKey;

use super::{AuthError, random_token};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub(super) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Lifetime of a client assertion.
const ASSERTION_LIFETIME_SECS: u64 = 60;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

fn algorithm(name: &str) -> Result<Algorithm, AuthError> {
    Ok(match name {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "EdDSA" => Algorithm::EdDSA,
        other => {
            return Err(AuthError(format!(
                "unsupported signing algorithm `{other}`"
            )));
        }
    })
}

/// A client assertion: `iss` and `sub` the client id, `aud` the authorization server's
/// issuer, short-lived, with a unique `jti`. Errors never show the key.
pub(super) fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    audience: &str,
) -> Result<String, AuthError> {
    let alg = algorithm(&key.algorithm)?;
    let pem = key
        .pem
        .read()
        .map_err(|e| AuthError(format!("reading the private key: {e}")))?;
    let pem = pem.expose_str().as_bytes();
    let encoding = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        _ => EncodingKey::from_rsa_pem(pem),
    }
    .map_err(|_| {
        AuthError(format!(
            "the private key is not a PKCS#8 PEM {} key",
            key.algorithm
        ))
    })?;
    let issued = now();
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_SECS,
        "jti": random_token(),
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, &encoding).map_err(|_| {
        AuthError(format!(
            "signing the client assertion ({}) failed",
            key.algorithm
        ))
    })
}

/// The DPoP key of one authorizer.
pub(crate) struct DpopKey {
    encoding: EncodingKey,
    jwk: Jwk,
}

impl DpopKey {
    pub(super) fn generate() -> Result<DpopKey, AuthError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| AuthError("generating the DPoP key failed".into()))?;
        let der = pair
            .to_pkcs8v1()
            .map_err(|_| AuthError("encoding the DPoP key failed".into()))?;
        let encoding = EncodingKey::from_ec_der(der.as_ref());
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)
            .map_err(|_| AuthError("the DPoP public key failed".into()))?;
        Ok(DpopKey { encoding, jwk })
    }

    /// The JWK SHA-256 thumbprint (RFC 7638) a bound token's `cnf.jkt` carries.
    #[cfg(test)]
    pub(super) fn thumbprint(&self) -> String {
        self.jwk
            .thumbprint(ThumbprintHash::SHA256)
            .unwrap_or_default()
    }

    /// A fresh proof for one request: `htu` without query or fragment, `ath` the hash of
    /// the access token presented with it, `nonce` the server's latest.
    pub(super) fn proof(
        &self,
        method: &str,
        url: &Url,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> String {
        let mut htu = url.clone();
        htu.set_query(None);
        htu.set_fragment(None);
        let mut claims = json!({
            "jti": random_token(),
            "htm": method,
            "htu": htu.as_str(),
            "iat": now(),
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        if let Some(token) = access_token {
            claims["ath"] = URL_SAFE_NO_PAD
                .encode(Sha256::digest(token.as_bytes()))
                .into();
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.jwk.clone());
        // A generated P-256 key always signs.
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    use switchboard_config::{CredentialSource, Secret};

    use super::*;

    fn verify(token: &str, jwk: &Jwk, audience: Option<&str>) -> serde_json::Value {
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        match audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        decode::<serde_json::Value>(token, &key, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn dpop_proofs_are_fresh_bound_and_public() {
        let key = DpopKey::generate().unwrap();
        let url = Url::parse("https://as.example.com/token?x=1#frag").unwrap();
        let first = key.proof("POST", &url, Some("n-1"), Some("the-token"));
        let second = key.proof("POST", &url, None, None);
        let header = decode_header(&first).unwrap();
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(header.alg, Algorithm::ES256);
        let jwk = header.jwk.expect("jwk in the header");
        let text = serde_json::to_string(&jwk).unwrap();
        assert!(!text.contains("\"d\""), "no private part: {text}");
        assert_eq!(
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            key.thumbprint()
        );
        let claims = verify(&first, &jwk, None);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://as.example.com/token");
        assert_eq!(claims["nonce"], "n-1");
        assert_eq!(
            claims["ath"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(b"the-token"))
        );
        let again = verify(&second, &jwk, None);
        assert_ne!(claims["jti"], again["jti"]);
        assert!(again.get("nonce").is_none() && again.get("ath").is_none());
    }

    #[test]
    fn client_assertions_name_the_client_and_the_issuer() {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = pair.to_pkcs8v1().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der.as_ref())
        );
        let key = SigningKey {
            pem: CredentialSource::Inline(Secret::new(pem)),
            algorithm: "ES256".into(),
        };
        let assertion = client_assertion(&key, "my-client", "https://as.example.com").unwrap();
        let public =
            Jwk::from_encoding_key(&EncodingKey::from_ec_der(der.as_ref()), Algorithm::ES256)
                .unwrap();
        let claims = verify(&assertion, &public, Some("https://as.example.com"));
        assert_eq!(claims["iss"], "my-client");
        assert_eq!(claims["sub"], "my-client");
        assert!(claims["exp"].as_u64() > claims["iat"].as_u64());
        let bad = SigningKey {
            pem: CredentialSource::Inline(Secret::new(
                "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----".into(),
            )),
            algorithm: "ES256".into(),
        };
        let error = client_assertion(&bad, "c", "https://as")
            .unwrap_err()
            .to_string();
        assert!(!error.contains("not-a-key"), "{error}");
    }
}
