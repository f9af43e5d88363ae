//! SHA-256 of a JSON value in canonical form, so that the same arguments digest the same
//! whatever key order or number spelling a client used: object keys sorted (by their UTF-8
//! bytes), no whitespace, strings escaped as serde_json writes them, numbers normalised
//! (an integral value is written as an integer, `1.0` and `1e0` as `1`; other numbers in
//! their shortest round-trip form; integers beyond 64 bits as written). Hashed as it is
//! written, without building the text.

use serde_json::{Number, Value};
use sha2::{Digest, Sha256};

/// The digest of `value` in canonical form.
pub fn canonical_sha256(value: &Value) -> [u8; 32] {
    let mut hasher = Hashing(Sha256::new());
    write(&mut hasher, value);
    hasher.0.finalize().into()
}

/// The canonical text of `value` (what [`canonical_sha256`] hashes).
pub fn canonical_text(value: &Value) -> String {
    let mut out = Vec::new();
    write(&mut out, value);
    String::from_utf8(out).expect("canonical JSON is UTF-8")
}

struct Hashing(Sha256);

impl std::io::Write for Hashing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn write(out: &mut impl std::io::Write, value: &Value) {
    // Writing into a hasher or a Vec cannot fail.
    match value {
        Value::Null => out.write_all(b"null").ok(),
        Value::Bool(true) => out.write_all(b"true").ok(),
        Value::Bool(false) => out.write_all(b"false").ok(),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => serde_json::to_writer(&mut *out, text).ok(),
        Value::Array(items) => {
            out.write_all(b"[").ok();
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.write_all(b",").ok();
                }
                write(out, item);
            }
            out.write_all(b"]").ok()
        }
        Value::Object(object) => {
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.write_all(b"{").ok();
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.write_all(b",").ok();
                }
                serde_json::to_writer(&mut *out, key).ok();
                out.write_all(b":").ok();
                write(out, item);
            }
            out.write_all(b"}").ok()
        }
    };
}

fn write_number(out: &mut impl std::io::Write, number: &Number) -> Option<()> {
    if let Some(integer) = number.as_i64() {
        return write!(out, "{integer}").ok();
    }
    if let Some(integer) = number.as_u64() {
        return write!(out, "{integer}").ok();
    }
    let text = number.to_string();
    let is_integer_text = text
        .bytes()
        .enumerate()
        .all(|(index, b)| b.is_ascii_digit() || (index == 0 && b == b'-'));
    if is_integer_text {
        // Beyond 64 bits: kept as written (without a leading `-0…` quirk, JSON has none).
        return out.write_all(text.as_bytes()).ok();
    }
    match number.as_f64() {
        Some(float) if float.is_finite() => {
            if float == float.trunc() && float.abs() < 9_007_199_254_740_992.0 {
                write!(out, "{}", float as i64).ok()
            } else {
                write!(out, "{float:?}").ok()
            }
        }
        _ => out.write_all(text.as_bytes()).ok(),
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 15)] as char);
    }
    text
}

/// Reads lower- or upper-case hex into exactly `N` bytes.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut bytes = [0u8; N];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn key_order_spacing_and_number_spelling_do_not_matter() {
        let a = parse(r#"{"b": [1, 2.0, {"y": 1e2, "x": "é\n"}], "a": null, "c": true}"#);
        let b = parse(r#"{"a":null,"c":true,"b":[1,2,{"x":"é\n","y":100}]}"#);
        assert_eq!(canonical_sha256(&a), canonical_sha256(&b));
        assert_eq!(
            canonical_text(&a),
            r#"{"a":null,"b":[1,2,{"x":"é\n","y":100}],"c":true}"#
        );
        assert_eq!(
            canonical_text(&parse(
                "[0.5, -0.0, 1.5e300, 123456789012345678901234567890]"
            )),
            "[0.5,0,1.5e300,123456789012345678901234567890]"
        );
        // A different value digests differently.
        let c = parse(r#"{"a":null,"c":true,"b":[1,2,{"x":"é\n","y":101}]}"#);
        assert_ne!(canonical_sha256(&a), canonical_sha256(&c));
        assert_ne!(
            canonical_sha256(&parse("\"1\"")),
            canonical_sha256(&parse("1"))
        );
    }

    #[test]
    fn hex_round_trips() {
        let digest = canonical_sha256(&parse("{}"));
        assert_eq!(unhex::<32>(&hex(&digest)), Some(digest));
        assert_eq!(unhex::<32>("zz"), None);
    }
}
