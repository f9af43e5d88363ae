//! `[secrets]`: the key that encrypts the secrets stored in the gateway's embedded
//! database (registered through `/admin/secrets` or the `set_secret` meta-tool), and the
//! `${secret:NAME}` references to them that a server's `env` and `headers` values (and a
//! tenant's) may carry. Raw shape, validation and the validated model live together here,
//! like `audit.rs`; the encryption itself is the gateway's (`gateway::vault`).
//!
//! A reference is kept in the validated value as written and resolved when an instance of
//! the server starts, so a secret updated in the store reaches the next instance. A value
//! that keeps a reference is a *template*: every literal `$` in it is written `$$`, so
//! resolution is exact whatever the rest of the value holds.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};
use crate::expand::{EnvLookup, expand};

/// How a reference to a stored secret opens: `${secret:NAME}`.
pub const REF_OPEN: &str = "${secret:";

/// What a stored secret's name may be, for messages.
pub const SECRET_NAME_RULE: &str =
    "of 1 to 64 letters, digits, `_`, `-` and `.` (starting with a letter, digit or `_`)";

/// Whether `name` may name a stored secret (see [`SECRET_NAME_RULE`]).
pub fn is_secret_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 64
        && matches!(bytes.next(), Some(first) if first.is_ascii_alphanumeric() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
}

/// Whether a validated `env` or `headers` value is a template that references stored
/// secrets (to be given to [`resolve_secret_refs`] before use).
pub fn has_secret_refs(value: &str) -> bool {
    value.contains(REF_OPEN)
}

/// The names of the stored secrets a value references, in order.
pub fn secret_refs(value: &str) -> Vec<&str> {
    let mut names = Vec::new();
    if !has_secret_refs(value) {
        return names;
    }
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(body) = after.strip_prefix("{secret:")
            && let Some(close) = body.find('}')
        {
            names.push(&body[..close]);
            rest = &body[close + 1..];
        } else {
            rest = after;
        }
    }
    names
}

/// A template with its references replaced by `lookup(name)` and `$$` by `$`; a value
/// that is not a template is returned as it is.
pub fn resolve_secret_refs<E>(
    value: &str,
    lookup: &mut dyn FnMut(&str) -> Result<String, E>,
) -> Result<String, E> {
    if !has_secret_refs(value) {
        return Ok(value.to_owned());
    }
    let mut output = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        output.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            output.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix("{secret:")
            && let Some(close) = body.find('}')
        {
            output.push_str(&lookup(&body[..close])?);
            rest = &body[close + 1..];
        } else {
            // Not written by the expansion (it doubles every literal `$`): kept.
            output.push('$');
            rest = after;
        }
    }
    output.push_str(rest);
    Ok(output)
}

/// The validated `[secrets]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretsSettings {
    /// The key stored secrets are encrypted with.
    pub key: VaultKey,
    /// The key they were encrypted with before a rotation, still accepted for reading
    /// until every secret is re-encrypted (`POST /admin/secrets/rotate`,
    /// `switchboard secrets rotate`).
    pub previous_key: Option<VaultKey>,
}

/// Where a secrets key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultKey {
    /// Written in the config (usually through `${ENV}`).
    Inline(KeyBytes),
    /// A file holding the key (base64 or 64 hex digits); read at start.
    File(PathBuf),
}

/// A 32-byte symmetric key. Prints as a redaction.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBytes(pub [u8; 32]);

impl fmt::Debug for KeyBytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("KeyBytes(<redacted>)")
    }
}

impl KeyBytes {
    /// Reads a key written as 64 hex digits or as base64 of 32 bytes; the error never
    /// echoes the text.
    pub fn parse(text: &str) -> Result<KeyBytes, &'static str> {
        crate::audit::SigningSeed::parse(text)
            .map(|seed| KeyBytes(seed.0))
            .map_err(|_| {
                "expected a 32-byte key as base64 or 64 hex digits \
                 (`switchboard secrets keygen` makes one)"
            })
    }
}

/// `[secrets]` as written.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecrets {
    key: Option<String>,
    key_file: Option<String>,
    previous_key: Option<String>,
    previous_key_file: Option<String>,
}

pub(crate) fn validate(
    raw: RawSecrets,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<SecretsSettings, Problem> {
    let key = one_key(raw.key, raw.key_file, "key", path, env)?.ok_or_else(|| {
        Problem::new(
            path.key("key"),
            "missing: `[secrets]` needs `key` (usually \"${ENV}\") or `key_file`",
        )
    })?;
    let previous_key = one_key(
        raw.previous_key,
        raw.previous_key_file,
        "previous_key",
        path,
        env,
    )?;
    if previous_key.as_ref() == Some(&key) {
        return Err(Problem::new(
            path.key("previous_key"),
            "is the same as `key`: after a rotation, remove it",
        ));
    }
    Ok(SecretsSettings { key, previous_key })
}

/// `NAME` or `NAME_file` (at most one); `None` when neither is given or the inline value
/// expands to nothing (`${VAR:-}`).
fn one_key(
    inline: Option<String>,
    file: Option<String>,
    name: &str,
    path: &KeyPath,
    env: EnvLookup<'_>,
) -> Result<Option<VaultKey>, Problem> {
    let file_key = format!("{name}_file");
    let expanded = |value: &str, key: &str| {
        expand(value, env).map_err(|message| Problem::new(path.key(key), message))
    };
    match (inline, file) {
        (Some(_), Some(_)) => Err(Problem::new(
            path.key(&file_key),
            format!("conflicts with `{name}`: write one of the two"),
        )),
        (Some(inline), None) => {
            let inline = expanded(&inline, name)?;
            if inline.trim().is_empty() {
                return Ok(None);
            }
            KeyBytes::parse(&inline)
                .map(|key| Some(VaultKey::Inline(key)))
                .map_err(|message| Problem::new(path.key(name), message))
        }
        (None, Some(file)) => {
            let file = expanded(&file, &file_key)?;
            if file.trim().is_empty() {
                return Err(Problem::new(path.key(&file_key), "must name a file"));
            }
            Ok(Some(VaultKey::File(file.into())))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "11".repeat(32))
    }

    fn parse(text: &str) -> Result<SecretsSettings, Problem> {
        let raw: RawSecrets = toml::from_str(text).unwrap();
        validate(raw, &KeyPath::root().key("secrets"), &env)
    }

    #[test]
    fn keys_inline_or_in_files_and_errors_name_the_key() {
        let settings = parse("key = \"${KEY}\"").unwrap();
        assert_eq!(settings.key, VaultKey::Inline(KeyBytes([0x11; 32])));
        assert_eq!(settings.previous_key, None);
        assert_eq!(format!("{settings:?}").matches("<redacted>").count(), 1);
        assert!(!format!("{settings:?}").contains("17"));
        let settings = parse("key_file = \"/k\"\nprevious_key = \"${KEY}\"").unwrap();
        assert_eq!(settings.key, VaultKey::File("/k".into()));
        assert!(settings.previous_key.is_some());

        let error = parse("").unwrap_err();
        assert_eq!(error.key.to_string(), "secrets.key");
        let error = parse("key = \"not-a-key-0123\"").unwrap_err();
        assert_eq!(error.key.to_string(), "secrets.key");
        assert!(!error.message.contains("not-a-key"), "{}", error.message);
        let error = parse("key = \"${KEY}\"\nkey_file = \"/k\"").unwrap_err();
        assert_eq!(error.key.to_string(), "secrets.key_file");
        let error = parse("key = \"${KEY}\"\nprevious_key = \"${KEY}\"").unwrap_err();
        assert_eq!(error.key.to_string(), "secrets.previous_key");
    }

    #[test]
    fn references_are_kept_where_allowed_and_refused_elsewhere() {
        let text = r#"
[secrets]
key = "${KEY}"

[servers.s]
command = "x"
env = { TOKEN = "${secret:api}", PLAIN = "$$" }

[servers.h]
url = "http://127.0.0.1:1/mcp"
headers = { Authorization = "Bearer ${secret:bearer}" }
"#;
        let config = crate::parse_with_env(text, crate::ConfigFormat::Native, None, &env).unwrap();
        assert!(config.secrets.is_some());
        let servers: Vec<_> = config.servers.values().collect();
        let crate::TransportSpec::Http { headers, .. } = &servers[0].transport else {
            panic!("http first")
        };
        assert_eq!(
            headers["Authorization"].expose_str(),
            "Bearer ${secret:bearer}"
        );
        let crate::TransportSpec::Stdio { env: child, .. } = &servers[1].transport else {
            panic!("stdio second")
        };
        assert_eq!(child["TOKEN"].expose_str(), "${secret:api}");
        assert_eq!(child["PLAIN"].expose_str(), "$");
        let error = crate::parse_with_env(
            "[servers.s]\ncommand = \"x\"\nargs = [\"${secret:api}\"]",
            crate::ConfigFormat::Native,
            None,
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("servers.s.args[0]") || error.contains("servers.s.args.0"),
            "{error}"
        );
        assert!(error.contains("only allowed"), "{error}");
    }

    #[test]
    fn names_and_references() {
        for good in ["a", "API_TOKEN", "db.password", "_x-1", &"a".repeat(64)] {
            assert!(is_secret_name(good), "{good}");
        }
        for bad in ["", "-a", ".a", "a b", "a}", "ä", &"a".repeat(65)] {
            assert!(!is_secret_name(bad), "{bad}");
        }
        let template = "$$x ${secret:a} and ${secret:b.c}$$";
        assert_eq!(secret_refs(template), ["a", "b.c"]);
        assert!(secret_refs("plain $x").is_empty());
        let mut lookup = |name: &str| -> Result<String, String> {
            match name {
                "a" => Ok("A$".into()),
                "b.c" => Ok("${secret:a}".into()),
                other => Err(format!("unknown `{other}`")),
            }
        };
        // Values are inserted as they are: a secret's own `$` or reference-like text is
        // never read again.
        assert_eq!(
            resolve_secret_refs(template, &mut lookup).unwrap(),
            "$x A$ and ${secret:a}$"
        );
        assert_eq!(
            resolve_secret_refs("${secret:zz}", &mut lookup).unwrap_err(),
            "unknown `zz`"
        );
        assert_eq!(
            resolve_secret_refs("not $$ a template", &mut lookup).unwrap(),
            "not $$ a template"
        );
    }
}
