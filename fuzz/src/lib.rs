//! What several fuzz targets share.

use std::path::Path;

use switchboard_config::{ConfigFormat, parse_with_env};

/// Half the variable names are set, so both expansion paths run.
fn env(name: &str) -> Option<String> {
    name.len()
        .is_multiple_of(2)
        .then(|| format!("value-of-{name}"))
}

/// Parses and validates `data` as a config file in `format` read from `path`: never
/// panics, and its errors and warnings render.
pub fn check_config(data: &[u8], format: ConfigFormat, path: &str) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_with_env(text, format, Some(Path::new(path)), &env) {
        Ok(config) => {
            for warning in &config.warnings {
                let _ = warning.to_string();
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

/// Splits `bytes` into chunks of 1..=17 bytes drawn from `seed`.
pub fn chunks(bytes: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = (state % 17 + 1) as usize;
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}
