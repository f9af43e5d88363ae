//! The two protocol eras and the protocol versions switchboard speaks.

use std::fmt;

/// How a peer speaks MCP: with an `initialize` handshake and sessions (legacy, up to
/// 2025-11-25), or statelessly with per-request `_meta` (modern, 2026-07-28 and later).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    Legacy,
    Modern,
}

impl Era {
    pub fn as_str(self) -> &'static str {
        match self {
            Era::Legacy => "legacy",
            Era::Modern => "modern",
        }
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Protocol version strings, newest first.
pub struct ProtocolVersion;

impl ProtocolVersion {
    pub const MODERN: &'static str = "2026-07-28";
    pub const LEGACY_LATEST: &'static str = "2025-11-25";
    /// Every legacy version switchboard accepts from clients and offers to servers.
    pub const LEGACY: [&'static str; 4] = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];
    /// Every modern version switchboard accepts.
    pub const MODERN_ALL: [&'static str; 1] = ["2026-07-28"];

    pub fn is_legacy(version: &str) -> bool {
        Self::LEGACY.contains(&version)
    }

    pub fn is_modern(version: &str) -> bool {
        Self::MODERN_ALL.contains(&version)
    }

    /// The legacy version to answer a client's `initialize` with: its own when we know it,
    /// otherwise our latest (the client then decides whether it can continue).
    pub fn negotiate_legacy(requested: Option<&str>) -> &'static str {
        requested
            .and_then(|r| Self::LEGACY.iter().copied().find(|v| *v == r))
            .unwrap_or(Self::LEGACY_LATEST)
    }

    /// All supported versions, as listed in `server/discover` and in -32022 errors.
    pub fn supported() -> Vec<&'static str> {
        let mut all: Vec<&'static str> = Self::MODERN_ALL.to_vec();
        all.extend(Self::LEGACY);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_known_or_latest() {
        assert_eq!(
            ProtocolVersion::negotiate_legacy(Some("2025-03-26")),
            "2025-03-26"
        );
        assert_eq!(
            ProtocolVersion::negotiate_legacy(Some("1999-01-01")),
            "2025-11-25"
        );
        assert_eq!(ProtocolVersion::negotiate_legacy(None), "2025-11-25");
        assert!(ProtocolVersion::supported().starts_with(&["2026-07-28", "2025-11-25"]));
    }
}
