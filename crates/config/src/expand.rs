//! `${VAR}` expansion in config strings, from the gateway's environment at load time.
//!
//! Syntax: `${NAME}` is replaced by the variable's value and is an error when it is
//! unset; `${NAME:-fallback}` uses `fallback` when it is unset or empty; `$$` is a
//! literal `$`. Any other `$` is kept as written, so `$HOME` is not expanded (the
//! braces are required, which keeps shell-looking arguments intact).

/// Looks up one environment variable; `None` when it is unset.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment. A value that is not valid UTF-8 counts as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).and_then(|value| value.into_string().ok())
}

/// Expands `${...}` references in `input`; the error says what is wrong, without the key.
/// A stored-secret reference (`${secret:NAME}`) is refused here: only the values that
/// reach an upstream take one ([`expand_with_secrets`]).
pub(crate) fn expand(input: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut output = String::with_capacity(input.len());
    for segment in segments(input, env)? {
        match segment {
            Segment::Text(text) => output.push_str(&text),
            Segment::Secret(_) => {
                return Err(
                    "a stored-secret reference (`${secret:NAME}`) is only allowed in \
                     a server's `env` and `headers` values (and a tenant's)"
                        .to_owned(),
                );
            }
        }
    }
    Ok(output)
}

/// Like [`expand`], but `${secret:NAME}` references to stored secrets are kept, to be
/// resolved when an instance starts (`crate::vault::resolve_secret_refs`). A value that
/// keeps one is returned as a template, where every literal `$` is written `$$`; a value
/// without one is returned expanded, as [`expand`] does (so a template is exactly a value
/// containing `${secret:`, see `crate::vault::has_secret_refs`).
pub(crate) fn expand_with_secrets(input: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let segments = segments(input, env)?;
    let literal: Option<String> = segments
        .iter()
        .map(|segment| match segment {
            Segment::Text(text) => Some(text.as_str()),
            Segment::Secret(_) => None,
        })
        .collect();
    match literal {
        Some(text) if !text.contains(crate::vault::REF_OPEN) => Ok(text),
        _ => {
            let mut template = String::with_capacity(input.len());
            for segment in segments {
                match segment {
                    Segment::Text(text) => template.push_str(&text.replace('$', "$$")),
                    Segment::Secret(name) => {
                        template.push_str(crate::vault::REF_OPEN);
                        template.push_str(&name);
                        template.push('}');
                    }
                }
            }
            Ok(template)
        }
    }
}

/// A piece of an expanded value.
enum Segment {
    Text(String),
    /// `${secret:NAME}`: a stored secret's name.
    Secret(String),
}

fn segments(input: &str, env: EnvLookup<'_>) -> Result<Vec<Segment>, String> {
    if !input.contains('$') {
        return Ok(vec![Segment::Text(input.to_owned())]);
    }
    let mut segments = Vec::new();
    let mut output = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        output.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            output.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let Some(close) = body_and_tail.find('}') else {
                // The value is not echoed: it may be a secret.
                return Err("unterminated `${` (write `$$` for a literal `$`)".to_owned());
            };
            let body = &body_and_tail[..close];
            if let Some(name) = body.strip_prefix("secret:") {
                if !crate::vault::is_secret_name(name) {
                    return Err(format!(
                        "invalid stored-secret reference: expected `${{secret:NAME}}` with NAME \
                         {}",
                        crate::vault::SECRET_NAME_RULE
                    ));
                }
                segments.push(Segment::Text(std::mem::take(&mut output)));
                segments.push(Segment::Secret(name.to_owned()));
            } else {
                output.push_str(&resolve(body, env)?);
            }
            rest = &body_and_tail[close + 1..];
        } else {
            output.push('$');
            rest = after;
        }
    }
    output.push_str(rest);
    segments.push(Segment::Text(output));
    Ok(segments)
}

fn resolve(body: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let (name, fallback) = match body.split_once(":-") {
        Some((name, fallback)) => (name, Some(fallback)),
        None => (body, None),
    };
    if !is_variable_name(name) {
        // The reference is not echoed: a malformed one may be part of a secret.
        return Err(
            "invalid variable reference: expected `${NAME}` or `${NAME:-default}` \
             with NAME made of letters, digits and `_` (write `$$` for a literal `$`)"
                .to_owned(),
        );
    }
    match (env(name), fallback) {
        (Some(value), Some(fallback)) if value.is_empty() => Ok(fallback.to_owned()),
        (Some(value), _) => Ok(value),
        (None, Some(fallback)) => Ok(fallback.to_owned()),
        (None, None) => Err(format!(
            "environment variable `{name}` is not set (referenced as `${{{name}}}`)"
        )),
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(first) if first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".to_owned()),
            "EMPTY" => Some(String::new()),
            "_X1" => Some("x".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn expands_references() {
        let cases = [
            ("plain", "plain"),
            ("Bearer ${TOKEN}", "Bearer s3cret"),
            ("${TOKEN}${_X1}", "s3cretx"),
            ("${TOKEN}-${TOKEN}", "s3cret-s3cret"),
            ("${EMPTY}", ""),
            ("${MISSING:-fallback}", "fallback"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${TOKEN:-fallback}", "s3cret"),
            ("${MISSING:-}", ""),
            ("$$", "$"),
            ("$${TOKEN}", "${TOKEN}"),
            ("cost: $5", "cost: $5"),
            ("$HOME/x", "$HOME/x"),
            ("trailing $", "trailing $"),
            ("ünï ${TOKEN} ü", "ünï s3cret ü"),
        ];
        for (input, expected) in cases {
            assert_eq!(expand(input, &env).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn unset_variable_is_an_error() {
        let error = expand("Bearer ${NOPE}", &env).unwrap_err();
        assert!(error.contains("`NOPE` is not set"), "{error}");
    }

    #[test]
    fn secret_references_are_kept_as_templates_where_allowed() {
        let cases = [
            ("${secret:api}", "${secret:api}"),
            ("Bearer ${secret:api}", "Bearer ${secret:api}"),
            (
                "$$ ${TOKEN} ${secret:a.b-c_1}",
                "$$ s3cret ${secret:a.b-c_1}",
            ),
            // No reference: expanded as usual, `$` not doubled.
            ("cost: $$5 ${TOKEN}", "cost: $5 s3cret"),
            // A literal that reads like a reference stays literal: written as a template.
            ("$${secret:x}", "$${secret:x}"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                expand_with_secrets(input, &env).unwrap(),
                expected,
                "{input:?}"
            );
        }
        assert!(
            expand("${secret:api}", &env)
                .unwrap_err()
                .contains("only allowed")
        );
        for input in ["${secret:}", "${secret:a b}", "${secret:${TOKEN}}"] {
            assert!(expand_with_secrets(input, &env).is_err(), "{input:?}");
        }
    }

    #[test]
    fn malformed_references_are_errors() {
        for input in ["${", "${TOKEN", "${}", "${1A}", "${A B}", "${A-B}"] {
            assert!(expand(input, &env).is_err(), "{input:?}");
        }
    }
}
