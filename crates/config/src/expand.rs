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
pub(crate) fn expand(input: &str, env: EnvLookup<'_>) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
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
            output.push_str(&resolve(body, env)?);
            rest = &body_and_tail[close + 1..];
        } else {
            output.push('$');
            rest = after;
        }
    }
    output.push_str(rest);
    Ok(output)
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
    fn malformed_references_are_errors() {
        for input in ["${", "${TOKEN", "${}", "${1A}", "${A B}", "${A-B}"] {
            assert!(expand(input, &env).is_err(), "{input:?}");
        }
    }
}
