//! `ServerName`: the validated identity of one upstream server.
//!
//! Names become tool/prompt prefixes (`time__get_time`), so the set of allowed
//! characters is deliberately small and `__`, the prefix separator, is banned
//! inside a name: splitting a prefixed name at the first `__` must always give
//! back the server.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

/// A server name: 1 to 32 characters from `[A-Za-z0-9_-]`, never containing `__`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ServerName(String);

/// Why a string is not a valid [`ServerName`].
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("invalid server name {name:?}: {reason}")]
pub struct InvalidServerName {
    /// The rejected input.
    pub name: String,
    /// What rule it broke.
    pub reason: &'static str,
}

impl ServerName {
    /// Longest allowed name, in characters (all allowed characters are ASCII).
    pub const MAX_LEN: usize = 32;

    /// The separator between a server name and an upstream item name; never part of a name.
    pub const SEPARATOR: &'static str = "__";

    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidServerName> {
        let name = name.into();
        match Self::check(&name) {
            Ok(()) => Ok(Self(name)),
            Err(reason) => Err(InvalidServerName { name, reason }),
        }
    }

    fn check(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("must not be empty");
        }
        if !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
        {
            return Err("only ASCII letters, digits, `_` and `-` are allowed");
        }
        if name.len() > Self::MAX_LEN {
            return Err("must be at most 32 characters");
        }
        if name.contains(Self::SEPARATOR) {
            return Err("must not contain `__` (it separates server and tool names)");
        }
        Ok(())
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AsRef<str> for ServerName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound because the derived Eq/Ord/Hash of the newtype agree with those of `str`.
impl Borrow<str> for ServerName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServerName {
    type Error = InvalidServerName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl TryFrom<&str> for ServerName {
    type Error = InvalidServerName;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl FromStr for ServerName {
    type Err = InvalidServerName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl From<ServerName> for String {
    fn from(name: ServerName) -> Self {
        name.0
    }
}

impl serde::Serialize for ServerName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ServerName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn accepts_valid_names() {
        for name in [
            "time",
            "fs",
            "a",
            "my-server_2",
            "A-Z",
            "x_y",
            &"a".repeat(32),
        ] {
            let parsed = ServerName::new(name).unwrap();
            assert_eq!(parsed.as_str(), name);
            assert_eq!(parsed.to_string(), name);
        }
    }

    #[test]
    fn rejects_invalid_names() {
        let cases = [
            ("", "must not be empty"),
            ("has space", "only ASCII"),
            ("dot.ted", "only ASCII"),
            ("ünï", "only ASCII"),
            ("a__b", "__"),
            ("__", "__"),
            (&"a".repeat(33), "at most 32"),
        ];
        for (name, expected) in cases {
            let error = ServerName::new(name).unwrap_err();
            assert!(error.reason.contains(expected), "{name:?}: {error}");
            assert_eq!(error.name, name);
        }
    }

    #[test]
    fn single_underscores_at_edges_are_fine() {
        // `_a` and `a_` are legal; only the doubled separator is not.
        assert!(ServerName::new("_a").is_ok());
        assert!(ServerName::new("a_").is_ok());
        assert!(ServerName::new("a_-_b").is_ok());
    }

    #[test]
    fn conversions_and_borrow() {
        let name = ServerName::try_from("time".to_owned()).unwrap();
        assert_eq!(name, ServerName::try_from("time").unwrap());
        assert_eq!(name, "time".parse().unwrap());
        let mut map = BTreeMap::new();
        map.insert(name.clone(), 1);
        assert_eq!(map.get("time"), Some(&1));
        assert_eq!(String::from(name), "time");
    }

    #[test]
    fn serde_round_trip_validates() {
        let name: ServerName = serde_json::from_str("\"time\"").unwrap();
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"time\"");
        assert!(serde_json::from_str::<ServerName>("\"a__b\"").is_err());
    }
}
