//! [`Secret`]: a value that must never be printed. Upstream credentials (header and
//! environment values, OAuth client secrets), the admin token and the state key live in
//! it, so a `Debug` of a config, a spec or a connection's options — in a log line, a
//! panic message, an error — shows a redaction instead of the value.
//!
//! There is deliberately no `Serialize`: a secret leaves the gateway only where the code
//! asks for it by name ([`Secret::expose`]), e.g. the header a request carries upstream.

use std::fmt;

use serde::Deserialize;

/// What `Debug` and `Display` print instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A value whose `Debug` and `Display` print [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself, for the one place that must use it (a header sent upstream, a
    /// child's environment, a token request). Never for a log line or a message.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Takes the value out.
    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl Secret<String> {
    /// The value as a `&str` (see [`Secret::expose`]).
    pub fn expose_str(&self) -> &str {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(REDACTED)
    }
}

/// Read as the value itself: so raw file shapes can hold secrets from the start.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn debug_and_display_print_a_redaction() {
        let secret = Secret::new("hunter2-api-key".to_owned());
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:#?}"), "<redacted>");
        // Inside containers too: a map of header values, an option.
        let headers = BTreeMap::from([("Authorization".to_owned(), secret.clone())]);
        let printed = format!("{headers:?} {:?}", Some(&secret));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("Authorization"), "{printed}");
        // The value is still there for whoever asks by name.
        assert_eq!(secret.expose_str(), "hunter2-api-key");
        assert_eq!(secret.into_exposed(), "hunter2-api-key");
    }

    #[test]
    fn compares_and_reads_like_the_value() {
        assert_eq!(Secret::new(1), Secret::from(1));
        assert_ne!(Secret::new("a"), Secret::new("b"));
        let read: BTreeMap<String, Secret<String>> =
            serde_json::from_str(r#"{"KEY":"value"}"#).unwrap();
        assert_eq!(read["KEY"].expose_str(), "value");
    }
}
