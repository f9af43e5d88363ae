//! Text → `Raw*`: runs serde over TOML or JSON and turns its errors into
//! `ConfigError`s that carry the key path (via `serde_path_to_error`) and the
//! line/column the parser reported. Messages never carry the offending value (serde
//! puts it in type errors), because values may be secrets: `env`, `headers`, `oauth`.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{ConfigError, KeyPath};
use crate::model::ConfigFormat;

pub(crate) fn toml<T: DeserializeOwned>(text: &str, file: Option<&Path>) -> Result<T, ConfigError> {
    let deserializer = toml::de::Deserializer::parse(text).map_err(|error| {
        let (line, column) = error
            .span()
            .map_or((1, 1), |span| line_column(text, span.start));
        ConfigError::Syntax {
            file: file.map(Path::to_path_buf),
            format: ConfigFormat::Native,
            line,
            column,
            message: error.message().trim_end().to_owned(),
        }
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let key = KeyPath::from_serde(error.path()).to_string();
        let inner = error.into_inner();
        ConfigError::Invalid {
            file: file.map(Path::to_path_buf),
            key,
            position: inner.span().map(|span| line_column(text, span.start)),
            message: without_value(inner.message().trim_end()),
        }
    })
}

pub(crate) fn json<T: DeserializeOwned>(text: &str, file: Option<&Path>) -> Result<T, ConfigError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let key = KeyPath::from_serde(error.path()).to_string();
        json_error(error.into_inner(), key, file)
    })?;
    deserializer
        .end()
        .map_err(|error| json_error(error, String::new(), file))?;
    Ok(value)
}

fn json_error(error: serde_json::Error, key: String, file: Option<&Path>) -> ConfigError {
    let (line, column) = (error.line(), error.column());
    // serde_json appends " at line L column C"; the position is reported separately.
    let full = error.to_string();
    let message = full
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&full)
        .to_owned();
    let position = (line > 0).then_some((line, column.max(1)));
    match error.classify() {
        serde_json::error::Category::Data => ConfigError::Invalid {
            file: file.map(Path::to_path_buf),
            key,
            position,
            message: without_value(&message),
        },
        serde_json::error::Category::Syntax
        | serde_json::error::Category::Eof
        | serde_json::error::Category::Io => ConfigError::Syntax {
            file: file.map(Path::to_path_buf),
            format: ConfigFormat::McpJson,
            line: line.max(1),
            column: column.max(1),
            message,
        },
    }
}

/// serde's `invalid type: string "SECRET=x", expected a table` (and `invalid value: ...`)
/// with the value left out: `invalid type: string, expected a table`. Other messages
/// (unknown field, missing field, duplicate key) name keys, not values, and pass as they are.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        // The value comes first, so the last ", expected" is serde's own.
        let Some(expected_at) = rest.rfind(", expected ") else {
            return format!("{prefix}value not shown");
        };
        let unexpected = &rest[..expected_at];
        // `string "…"`, `integer `5``, `floating point `1.5``: keep the kind only.
        let kind = unexpected
            .find(['`', '"'])
            .map_or(unexpected, |value_at| unexpected[..value_at].trim_end());
        return format!("{prefix}{kind}{}", &rest[expected_at..]);
    }
    message.to_owned()
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_value_keeps_the_kind_and_the_expectation() {
        let cases = [
            (
                r#"invalid type: string "SECRET=x, expected y", expected a table"#,
                "invalid type: string, expected a table",
            ),
            (
                "invalid type: integer `31337`, expected a string",
                "invalid type: integer, expected a string",
            ),
            (
                "invalid type: floating point `1.5`, expected u64",
                "invalid type: floating point, expected u64",
            ),
            (
                "invalid type: sequence, expected a string",
                "invalid type: sequence, expected a string",
            ),
            (
                r#"invalid value: string "x", expected a socket address"#,
                "invalid value: string, expected a socket address",
            ),
            ("invalid type: weird", "invalid type: value not shown"),
            ("unknown field `comand`", "unknown field `comand`"),
        ];
        for (message, expected) in cases {
            assert_eq!(without_value(message), expected, "{message}");
        }
    }

    #[test]
    fn line_column_counts_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        // `é` is two bytes: an offset inside it counts as its start.
        assert_eq!(line_column(text, 6), (2, 3));
        assert_eq!(line_column(text, 7), (2, 4));
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 100), (3, 2));
    }
}
