//! The JSON-RPC envelope: `Message::parse` on any bytes (never panics), and for every
//! message it accepts, the wire form round-trips: it is one line (stdio framing relies on
//! it), equals the `to_value` form, parses back to the same message and re-serializes to
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::parse(data) else {
        return;
    };
    let bytes = message.to_bytes();
    assert!(!bytes.contains(&b'\n'), "wire form spans lines");
    let via_value = serde_json::to_vec(&message.to_value()).unwrap();
    assert_eq!(bytes, via_value, "to_bytes differs from to_value");
    let again = Message::parse(&bytes).expect("our own wire form parses");
    assert_eq!(again, message, "round trip changed the message");
    assert_eq!(again.to_bytes(), bytes, "second serialization differs");
});
