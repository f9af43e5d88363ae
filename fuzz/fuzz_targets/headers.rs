//! The modern HTTP header mirrors: `decode_value` (the `Mcp-Name` / `Mcp-Param-*` decoding
//! of any header bytes), `encode_value` (always a valid header value that decodes back to
//! the same text), and the `x-mcp-header` annotations of any input schema with the header
//! values they produce for any arguments.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard_protocol::headers::{
    decode_value, encode_value, param_header_values, param_headers,
};

fn check_encoding(text: &str) {
    let encoded = encode_value(text);
    assert!(
        http::HeaderValue::from_str(&encoded).is_ok(),
        "not a header value: {encoded:?}"
    );
    assert_eq!(decode_value(encoded.as_bytes()).as_deref(), Some(text));
}

fuzz_target!(|data: &[u8]| {
    if let Some(decoded) = decode_value(data) {
        check_encoding(&decoded);
    }
    check_encoding(&String::from_utf8_lossy(data));
    let Ok(schema) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(headers) = param_headers(&schema) else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for header in &headers {
        assert!(!header.path.is_empty(), "annotation on the schema root");
        assert!(seen.insert(header.header.to_ascii_lowercase()), "duplicate");
    }
    // The schema itself doubles as arguments: its annotated paths often exist in it.
    for arguments in [Some(&schema), schema.get("arguments"), None] {
        for (name, value) in param_header_values(&headers, arguments) {
            assert!(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "not a header name: {name:?}"
            );
            assert!(http::HeaderValue::from_str(&value).is_ok());
            assert!(decode_value(value.as_bytes()).is_some());
        }
    }
});
