//! The list cursor decoder: any client string is refused or names exactly one offset, the
//! one whose cursor is that very string (one cursor per offset); every offset's cursor
//! (up to 19 digits) decodes back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_gateway::fuzzing::{decode_cursor, encode_cursor};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(offset) = decode_cursor(text)
    {
        assert_eq!(encode_cursor(offset), text, "two cursors for one offset");
    }
    let mut word = [0u8; 8];
    let n = data.len().min(8);
    word[..n].copy_from_slice(&data[..n]);
    // Cursors name offsets of at most 19 digits.
    let offset = (u64::from_le_bytes(word) % 10_000_000_000_000_000_000) as usize;
    assert_eq!(decode_cursor(&encode_cursor(offset)), Some(offset));
});
