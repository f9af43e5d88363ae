//! The sealing of one stored secret: XChaCha20-Poly1305 (RustCrypto `chacha20poly1305`)
//! under a 32-byte key, with a random 192-bit nonce per write (random nonces of that size
//! never collide in practice, so no counter has to survive a crash). The secret's name is
//! the associated data: a record moved under another name does not open.
//!
//! A record is `version (1) ‖ key id (8) ‖ created ms (8) ‖ updated ms (8) ‖ nonce (24) ‖
//! ciphertext and tag`. The key id (a digest of the key, which reveals nothing of it)
//! says which key sealed it, so a rotation can tell what it still has to re-encrypt and a
//! wrong key is refused by name instead of failing as a damaged record.

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + 8 + 8 + 8 + NONCE_LEN;
/// Domain of the associated data, so a record cannot be taken for anything else sealed
/// with the same key.
const AAD_DOMAIN: &[u8] = b"switchboard.secret.v1\0";

/// Names the key a record was sealed with.
pub(crate) type KeyId = [u8; 8];

/// A secrets key with its cipher. Never printed.
pub(crate) struct Key {
    id: KeyId,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "Key({})", hex(&self.id))
    }
}

impl Key {
    pub(crate) fn new(bytes: &[u8; 32]) -> Key {
        let digest = Sha256::new()
            .chain_update(b"switchboard secrets key id\0")
            .chain_update(bytes)
            .finalize();
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Key {
            id,
            cipher: XChaCha20Poly1305::new(&(*bytes).into()),
        }
    }

    pub(crate) fn id(&self) -> KeyId {
        self.id
    }

    /// Seals `plaintext` stored under `name`, with its times.
    pub(crate) fn seal(&self, name: &str, plaintext: &[u8], times: Times) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(name),
                },
            )
            .expect("XChaCha20-Poly1305 seals any message of a bounded size");
        let mut record = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        record.push(VERSION);
        record.extend_from_slice(&self.id);
        record.extend_from_slice(&times.created_ms.to_be_bytes());
        record.extend_from_slice(&times.updated_ms.to_be_bytes());
        record.extend_from_slice(&nonce);
        record.extend_from_slice(&ciphertext);
        record
    }

    /// Opens a record stored under `name`; `None` when it does not authenticate (another
    /// key, another name, or damaged bytes).
    pub(crate) fn open(&self, name: &str, record: &Record<'_>) -> Option<Vec<u8>> {
        self.cipher
            .decrypt(
                &XNonce::from(record.nonce),
                Payload {
                    msg: record.ciphertext,
                    aad: &aad(name),
                },
            )
            .ok()
    }
}

fn aad(name: &str) -> Vec<u8> {
    [AAD_DOMAIN, name.as_bytes()].concat()
}

/// When a secret was first stored and last changed (Unix milliseconds). Stored in clear:
/// they are what `GET /admin/secrets` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Times {
    pub(crate) created_ms: u64,
    pub(crate) updated_ms: u64,
}

/// A stored record, parsed (still sealed).
#[derive(Debug)]
pub(crate) struct Record<'a> {
    pub(crate) key_id: KeyId,
    pub(crate) times: Times,
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

impl<'a> Record<'a> {
    /// `None` for bytes that are not a record of this version.
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Record<'a>> {
        if bytes.len() < HEADER_LEN || bytes[0] != VERSION {
            return None;
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        Some(Record {
            key_id: bytes[1..9].try_into().unwrap(),
            times: Times {
                created_ms: u64_at(9),
                updated_ms: u64_at(17),
            },
            nonce: bytes[25..HEADER_LEN].try_into().unwrap(),
            ciphertext: &bytes[HEADER_LEN..],
        })
    }
}

/// A key id as operators see it (in errors and logs).
pub(crate) fn hex(id: &KeyId) -> String {
    id.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMES: Times = Times {
        created_ms: 1,
        updated_ms: 2,
    };

    #[test]
    fn seals_and_opens_bound_to_key_and_name() {
        let key = Key::new(&[7; 32]);
        let sealed = key.seal("api", b"plain value", TIMES);
        assert!(
            !sealed.windows(11).any(|w| w == b"plain value"),
            "the value is not in the record"
        );
        let record = Record::parse(&sealed).unwrap();
        assert_eq!(record.key_id, key.id());
        assert_eq!(record.times, TIMES);
        assert_eq!(key.open("api", &record).unwrap(), b"plain value");
        // Another name, another key, a flipped bit: nothing opens.
        assert!(key.open("other", &record).is_none());
        let other = Key::new(&[8; 32]);
        assert_ne!(other.id(), key.id());
        assert!(other.open("api", &record).is_none());
        let mut damaged = sealed.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(key.open("api", &Record::parse(&damaged).unwrap()).is_none());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(key.seal("api", b"plain value", TIMES), sealed);
        assert!(Record::parse(&sealed[..10]).is_none());
        assert_eq!(format!("{key:?}"), format!("Key({})", hex(&key.id())));
    }
}
