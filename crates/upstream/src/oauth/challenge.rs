//! The Bearer challenge of a `WWW-Authenticate` header (RFC 6750 section 3) and the
//! scope sets it names.

use std::collections::BTreeSet;

/// A `WWW-Authenticate: Bearer ...` challenge.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Challenge {
    pub(super) resource_metadata: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) error: Option<String>,
}

pub(super) fn scope_set(scope: Option<&str>) -> BTreeSet<String> {
    scope
        .unwrap_or_default()
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect()
}

pub(super) fn join(scopes: &BTreeSet<String>) -> String {
    scopes
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the Bearer challenge of a `WWW-Authenticate` header (RFC 6750 section 3).
pub(super) fn parse_challenge(header: &str) -> Option<Challenge> {
    let rest = header.trim_start();
    let scheme_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    // DPoP challenges (RFC 9449 section 7.1) carry the same parameters.
    if !(rest[..scheme_end].eq_ignore_ascii_case("bearer")
        || rest[..scheme_end].eq_ignore_ascii_case("dpop"))
    {
        return None;
    }
    let mut challenge = Challenge::default();
    let mut chars = rest[scheme_end..].chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let name: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if name.is_empty() {
            break;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            value
        } else {
            chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_owned()
        };
        match name.as_str() {
            "resource_metadata" => challenge.resource_metadata = Some(value),
            "scope" => challenge.scope = Some(value),
            "error" => challenge.error = Some(value),
            _ => {}
        }
    }
    Some(challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let parsed = parse_challenge(
            r#"Bearer error="insufficient_scope", scope="a b", resource_metadata="https://x/.well-known/oauth-protected-resource/mcp", error_description="say \"no\"""#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            Challenge {
                resource_metadata: Some(
                    "https://x/.well-known/oauth-protected-resource/mcp".into()
                ),
                scope: Some("a b".into()),
                error: Some("insufficient_scope".into()),
            }
        );
        assert_eq!(parse_challenge("Bearer").unwrap(), Challenge::default());
        assert_eq!(parse_challenge("Basic realm=\"x\""), None);
        let dpop =
            parse_challenge(r#"DPoP error="use_dpop_nonce", resource_metadata="https://x/prm""#)
                .unwrap();
        assert_eq!(dpop.error.as_deref(), Some("use_dpop_nonce"));
        assert_eq!(dpop.resource_metadata.as_deref(), Some("https://x/prm"));
        assert_eq!(
            parse_challenge("bearer error=invalid_token")
                .unwrap()
                .error
                .as_deref(),
            Some("invalid_token")
        );
    }
}
