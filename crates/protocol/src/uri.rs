//! Reversible rewriting of resource URIs so several servers' resources can share one
//! namespace: `test://static-text` of server `fixture` is exposed as
//! `switchboard://fixture/test://static-text`. URI templates rewrite the same way, since
//! the prefix contains no template expressions.

/// The scheme of exposed resource URIs.
pub const SCHEME: &str = "switchboard://";

/// The exposed form of an upstream URI (or URI template).
pub fn expose(server: &str, uri: &str) -> String {
    format!("{SCHEME}{server}/{uri}")
}

/// Splits an exposed URI into (server, upstream URI). `None` for URIs not made by
/// [`expose`].
pub fn resolve(exposed: &str) -> Option<(&str, &str)> {
    let rest = exposed.strip_prefix(SCHEME)?;
    let (server, uri) = rest.split_once('/')?;
    if server.is_empty() || uri.is_empty() {
        return None;
    }
    Some((server, uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for uri in [
            "test://static-text",
            "file:///etc/hosts",
            "test://template/{id}/data",
            "a/b",
        ] {
            let exposed = expose("srv", uri);
            assert_eq!(resolve(&exposed), Some(("srv", uri)));
        }
        assert_eq!(resolve("test://static-text"), None);
        assert_eq!(resolve("switchboard://srv"), None);
    }
}
