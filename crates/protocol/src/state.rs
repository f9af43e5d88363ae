//! Integrity-protected state that round-trips through clients: MRTR `requestState` minted
//! by the gateway. `base64url(payload) "." base64url(HMAC-SHA256(payload))`, with an expiry
//! inside the payload. Clients cannot read meaning into it and cannot forge or extend it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why presented state was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("request state is malformed")]
    Malformed,
    #[error("request state failed verification")]
    BadSignature,
    #[error("request state has expired")]
    Expired,
}

/// Seals and opens state with one secret key.
#[derive(Clone)]
pub struct Sealer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub fn new(key: impl Into<Vec<u8>>) -> Sealer {
        Sealer { key: key.into() }
    }

    /// A sealer with a fresh random key (state then only verifies in this process).
    pub fn random() -> Sealer {
        let key: [u8; 32] = rand::random();
        Sealer::new(key.to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// Seals `payload`, valid until `expires_at_ms` (Unix milliseconds).
    pub fn seal(&self, payload: &Value, expires_at_ms: u64) -> String {
        let body = serde_json::to_vec(&json!({ "p": payload, "exp": expires_at_ms }))
            .expect("state serializes");
        let mut mac = self.mac();
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Verifies and opens sealed state at time `now_ms`.
    pub fn open(&self, sealed: &str, now_ms: u64) -> Result<Value, StateError> {
        let (body, tag) = sealed.split_once('.').ok_or(StateError::Malformed)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| StateError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StateError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&body);
        mac.verify_slice(&tag)
            .map_err(|_| StateError::BadSignature)?;
        let mut value: Value = serde_json::from_slice(&body).map_err(|_| StateError::Malformed)?;
        let expires = value
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(StateError::Malformed)?;
        if now_ms > expires {
            return Err(StateError::Expired);
        }
        Ok(value.get_mut("p").map(Value::take).unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let sealer = Sealer::new(b"secret".to_vec());
        let sealed = sealer.seal(&json!({"server":"a","inner":"xyz"}), 1_000);
        assert_eq!(
            sealer.open(&sealed, 999).unwrap(),
            json!({"server":"a","inner":"xyz"})
        );
        assert_eq!(sealer.open(&sealed, 1_001), Err(StateError::Expired));
        let mut forged = sealed.clone();
        forged.replace_range(0..2, "AA");
        assert!(sealer.open(&forged, 0).is_err());
        assert_eq!(
            Sealer::new(b"other".to_vec()).open(&sealed, 0),
            Err(StateError::BadSignature)
        );
        assert_eq!(sealer.open("nope", 0), Err(StateError::Malformed));
    }
}
