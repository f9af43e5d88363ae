//! Sealing records into a hash chain and signing them.
//!
//! A stored (and exported) record is one line: its body (a JSON object that carries its
//! `seq`, the previous record's hash `prev` and the signing key's id `key`), with two last
//! members appended, always in the same fixed-length form:
//!
//! ```text
//! {"v":1,"seq":7,…,"prev":"<hash of record 6>",…,"latency_us":42,"hash":"<64 hex>","sig":"<128 hex>"}
//! ```
//!
//! `hash` is the SHA-256 of the body's exact bytes (the line without those two members,
//! closed by `}`), so it covers the previous hash; `sig` is an Ed25519 signature over a
//! domain tag and `hash`. Nothing is re-serialized to verify: the signed bytes are the
//! line's own prefix, so an export checks as it was written.
//!
//! The head (the last record's seq and hash) and, after pruning, the base (the first kept
//! seq and the hash before it) are signed the same way, each with its own tag: the head
//! is what tells a truncated log from a short one.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::digest::{hex, unhex};
use super::key::AuditKey;

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

const RECORD_TAG: &[u8] = b"switchboard-audit/v1 record\0";
const HEAD_TAG: &[u8] = b"switchboard-audit/v1 head\0";
const BASE_TAG: &[u8] = b"switchboard-audit/v1 base\0";

const HASH_OPEN: &[u8] = b",\"hash\":\"";
const SIG_OPEN: &[u8] = b"\",\"sig\":\"";
const CLOSE: &[u8] = b"\"}";
/// Length of the appended members.
const SUFFIX_LEN: usize = HASH_OPEN.len() + 64 + SIG_OPEN.len() + 128 + CLOSE.len();

fn record_message(hash: &[u8; 32]) -> Vec<u8> {
    [RECORD_TAG, hash.as_slice()].concat()
}

fn head_message(seq: u64, hash: &[u8; 32]) -> Vec<u8> {
    [HEAD_TAG, &seq.to_be_bytes(), hash.as_slice()].concat()
}

fn base_message(first: u64, prev: &[u8; 32]) -> Vec<u8> {
    [BASE_TAG, &first.to_be_bytes(), prev.as_slice()].concat()
}

/// Seals a record body: returns the line and its hash.
pub fn seal(key: &AuditKey, body: &[u8]) -> (Vec<u8>, [u8; 32]) {
    debug_assert_eq!(body.last(), Some(&b'}'));
    let hash: [u8; 32] = Sha256::digest(body).into();
    let signature = key.sign(&record_message(&hash));
    let mut line = Vec::with_capacity(body.len() + SUFFIX_LEN);
    line.extend_from_slice(&body[..body.len() - 1]);
    line.extend_from_slice(HASH_OPEN);
    line.extend_from_slice(hex(&hash).as_bytes());
    line.extend_from_slice(SIG_OPEN);
    line.extend_from_slice(hex(&signature).as_bytes());
    line.extend_from_slice(CLOSE);
    (line, hash)
}

/// Why a line is not a sealed record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not a sealed record (no hash and signature at its end)")]
    NoSeal,
    #[error("its body is not a record: {0}")]
    Body(String),
}

/// The members of a body that the chain needs.
#[derive(Deserialize)]
struct Header {
    seq: u64,
    prev: String,
    key: String,
}

/// A line taken apart (nothing checked yet but its shape).
#[derive(Debug)]
pub struct Opened {
    pub seq: u64,
    pub prev: [u8; 32],
    pub key: String,
    /// The hash the line claims.
    pub hash: [u8; 32],
    pub sig: [u8; 64],
    /// The hash of the body as it is.
    pub actual: [u8; 32],
}

impl Opened {
    /// Whether the body hashes to the claimed hash (false: it was edited).
    pub fn intact(&self) -> bool {
        self.hash == self.actual
    }

    /// Whether `public` signed this record's claimed hash.
    pub fn signed_by(&self, public: &VerifyingKey) -> bool {
        public
            .verify(
                &record_message(&self.hash),
                &Signature::from_bytes(&self.sig),
            )
            .is_ok()
    }
}

/// Takes a line apart: the body's bytes are the line up to the seal, closed by `}`.
pub fn open(line: &[u8]) -> Result<Opened, LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() < SUFFIX_LEN + 2 {
        return Err(LineError::NoSeal);
    }
    let (head, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    let (hash_open, rest) = suffix.split_at(HASH_OPEN.len());
    let (hash_hex, rest) = rest.split_at(64);
    let (sig_open, rest) = rest.split_at(SIG_OPEN.len());
    let (sig_hex, close) = rest.split_at(128);
    if hash_open != HASH_OPEN || sig_open != SIG_OPEN || close != CLOSE {
        return Err(LineError::NoSeal);
    }
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_owned);
    let hash = text(hash_hex)
        .and_then(|h| unhex::<32>(&h))
        .ok_or(LineError::NoSeal)?;
    let sig = text(sig_hex)
        .and_then(|s| unhex::<64>(&s))
        .ok_or(LineError::NoSeal)?;
    let mut body = Vec::with_capacity(head.len() + 1);
    body.extend_from_slice(head);
    body.push(b'}');
    let header: Header =
        serde_json::from_slice(&body).map_err(|error| LineError::Body(error.to_string()))?;
    let prev = unhex::<32>(&header.prev)
        .ok_or_else(|| LineError::Body("`prev` is not a SHA-256 in hex".into()))?;
    Ok(Opened {
        seq: header.seq,
        prev,
        key: header.key,
        hash,
        sig,
        actual: Sha256::digest(&body).into(),
    })
}

/// A signed statement about the chain: the head (last seq and its hash) or the base
/// (first kept seq and the hash before it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
    pub key: String,
    pub sig: String,
}

/// Which anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnchorKind {
    Head,
    Base,
}

impl Anchor {
    pub fn sign(key: &AuditKey, kind: AnchorKind, seq: u64, hash: &[u8; 32]) -> Anchor {
        let message = match kind {
            AnchorKind::Head => head_message(seq, hash),
            AnchorKind::Base => base_message(seq, hash),
        };
        Anchor {
            seq,
            hash: hex(hash),
            key: key.id().to_owned(),
            sig: hex(&key.sign(&message)),
        }
    }

    pub fn hash(&self) -> Option<[u8; 32]> {
        unhex::<32>(&self.hash)
    }

    /// Whether `public` signed this anchor as `kind`.
    pub fn signed_by(&self, kind: AnchorKind, public: &VerifyingKey) -> bool {
        let (Some(hash), Some(sig)) = (self.hash(), unhex::<64>(&self.sig)) else {
            return false;
        };
        let message = match kind {
            AnchorKind::Head => head_message(self.seq, &hash),
            AnchorKind::Base => base_message(self.seq, &hash),
        };
        public
            .verify(&message, &Signature::from_bytes(&sig))
            .is_ok()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an anchor serializes")
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Anchor> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Record;

    fn key() -> AuditKey {
        AuditKey::from_seed(&switchboard_config::SigningSeed([7; 32]))
    }

    #[test]
    fn a_sealed_line_opens_and_verifies_and_an_edit_shows() {
        let key = key();
        let record = Record {
            principal: "p".into(),
            method: "tools/call".into(),
            face: "http",
            ..Record::default()
        };
        let body = record.body(1, &GENESIS, key.id());
        let (line, hash) = seal(&key, &body);
        let opened = open(&line).unwrap();
        assert_eq!((opened.seq, opened.prev, opened.hash), (1, GENESIS, hash));
        assert!(opened.intact());
        assert!(opened.signed_by(&key.verifying()));
        // The line is the body plus the seal: valid JSON, same members.
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["principal"], "p");
        assert_eq!(value["hash"], hex(&hash));

        let edited = String::from_utf8(line.clone())
            .unwrap()
            .replace("\"p\"", "\"q\"");
        let opened = open(edited.as_bytes()).unwrap();
        assert!(!opened.intact());
        let other = AuditKey::from_seed(&switchboard_config::SigningSeed([8; 32]));
        assert!(!open(&line).unwrap().signed_by(&other.verifying()));

        assert_eq!(open(b"{}").unwrap_err(), LineError::NoSeal);
        let anchor = Anchor::sign(&key, AnchorKind::Head, 9, &hash);
        assert!(anchor.signed_by(AnchorKind::Head, &key.verifying()));
        assert!(!anchor.signed_by(AnchorKind::Base, &key.verifying()));
        assert_eq!(Anchor::from_bytes(&anchor.to_bytes()), Some(anchor));
    }
}
