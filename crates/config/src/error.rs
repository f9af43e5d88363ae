//! `ConfigError` and `KeyPath`: every error names the file, the key and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::ConfigFormat;

/// Why a configuration could not be loaded.
///
/// Display is one line, `file[:line:column]: key.path: message`, e.g.
/// `switchboard.toml:7:1: servers.time.comand: unknown field `comand`, expected one of ...`.
/// Parts that are unknown (no file, no position, a whole-document problem) are left out.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read config: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The path names something other than a regular file (a FIFO, a device, a
    /// directory, a socket): it is never read.
    #[error("{}: cannot read config: it is {kind}, not a regular file", .path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead, e.g. "a FIFO".
        kind: &'static str,
    },
    /// The file is larger than the configured bound: it is not read.
    #[error("{}: cannot read config: larger than the limit of {limit} bytes", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound, in bytes.
        limit: u64,
    },
    /// The text is not well-formed TOML / JSON.
    #[error("{}invalid {}: {message}", Location(.file.as_deref(), Some((*.line, *.column))), syntax_name(*.format))]
    Syntax {
        /// The file, if there is one.
        file: Option<PathBuf>,
        /// Which syntax was expected.
        format: ConfigFormat,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// Well-formed text with a bad value: unknown key, wrong type, failed validation.
    #[error("{}{}{message}", Location(.file.as_deref(), *.position), KeyPrefix(.key))]
    Invalid {
        /// The file, if there is one.
        file: Option<PathBuf>,
        /// Dotted path of the offending key, e.g. `servers.time.args[1]`; empty for the whole document.
        key: String,
        /// 1-based line and column, when the parser reported one.
        position: Option<(usize, usize)>,
        /// What is wrong and what was expected.
        message: String,
    },
}

impl ConfigError {
    /// The file the error is about, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Io { path, .. } | Self::NotAFile { path, .. } | Self::TooLarge { path, .. } => {
                Some(path)
            }
            Self::Syntax { file, .. } | Self::Invalid { file, .. } => file.as_deref(),
        }
    }

    /// The dotted key path of the bad value, for [`ConfigError::Invalid`].
    pub fn key_path(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            Self::Io { .. }
            | Self::NotAFile { .. }
            | Self::TooLarge { .. }
            | Self::Syntax { .. } => None,
        }
    }

    /// 1-based line and column, when known.
    pub fn line_column(&self) -> Option<(usize, usize)> {
        match self {
            Self::Syntax { line, column, .. } => Some((*line, *column)),
            Self::Invalid { position, .. } => *position,
            Self::Io { .. } | Self::NotAFile { .. } | Self::TooLarge { .. } => None,
        }
    }
}

fn syntax_name(format: ConfigFormat) -> &'static str {
    match format {
        ConfigFormat::Native => "TOML",
        ConfigFormat::McpJson => "JSON",
    }
}

/// Renders `file:line:column: `, dropping the parts that are unknown.
struct Location<'a>(Option<&'a Path>, Option<(usize, usize)>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(file), Some((line, column))) => {
                write!(formatter, "{}:{line}:{column}: ", file.display())
            }
            (Some(file), None) => write!(formatter, "{}: ", file.display()),
            (None, Some((line, column))) => write!(formatter, "line {line}, column {column}: "),
            (None, None) => Ok(()),
        }
    }
}

struct KeyPrefix<'a>(&'a str);

impl fmt::Display for KeyPrefix<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(formatter, "{}: ", self.0)
        }
    }
}

/// A path into the document, rendered like `servers.time.args[1]`.
///
/// Keys outside `[A-Za-z0-9_-]` are quoted (`servers."a.b"`) so the rendering is unambiguous.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct KeyPath {
    segments: Vec<Segment>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// This path extended by a map key or field name.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut path = self.clone();
        path.segments.push(Segment::Key(key.to_owned()));
        path
    }

    /// This path extended by a sequence index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut path = self.clone();
        path.segments.push(Segment::Index(index));
        path
    }

    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as Serde;
        let mut key_path = Self::root();
        for segment in path.iter() {
            match segment {
                Serde::Map { key } => key_path.segments.push(Segment::Key(key.clone())),
                Serde::Seq { index } => key_path.segments.push(Segment::Index(*index)),
                Serde::Enum { variant } => {
                    key_path.segments.push(Segment::Key(variant.clone()));
                }
                Serde::Unknown => key_path.segments.push(Segment::Key("?".to_owned())),
            }
        }
        key_path
    }
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(formatter, "[{index}]")?,
                Segment::Key(key) => {
                    if position > 0 {
                        formatter.write_str(".")?;
                    }
                    if is_bare_key(key) {
                        formatter.write_str(key)?;
                    } else {
                        write!(formatter, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Something in a valid file that was ignored, e.g. a key another host writes into
/// `.mcp.json` that switchboard does not know. Display: `file: key.path: message`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ConfigWarning {
    file: Option<PathBuf>,
    key: String,
    message: String,
}

impl ConfigWarning {
    /// Dotted path of the ignored key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// What was ignored and why.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}{}{}",
            Location(self.file.as_deref(), None),
            KeyPrefix(&self.key),
            self.message
        )
    }
}

/// A validation failure before the file name is attached.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Problem {
    pub(crate) key: KeyPath,
    pub(crate) message: String,
}

impl Problem {
    pub(crate) fn new(key: KeyPath, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }

    pub(crate) fn into_warning(self, file: Option<&Path>) -> ConfigWarning {
        ConfigWarning {
            file: file.map(Path::to_path_buf),
            key: self.key.to_string(),
            message: self.message,
        }
    }

    pub(crate) fn into_error(self, file: Option<&Path>) -> ConfigError {
        ConfigError::Invalid {
            file: file.map(Path::to_path_buf),
            key: self.key.to_string(),
            position: None,
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_path_renders_dotted_with_indices_and_quotes() {
        let path = KeyPath::root()
            .key("servers")
            .key("time")
            .key("args")
            .index(1);
        assert_eq!(path.to_string(), "servers.time.args[1]");
        let quoted = KeyPath::root().key("servers").key("a.b").key("env").key("");
        assert_eq!(quoted.to_string(), r#"servers."a.b".env."""#);
        assert_eq!(KeyPath::root().to_string(), "");
    }

    #[test]
    fn display_leaves_out_unknown_parts() {
        let with_everything = ConfigError::Invalid {
            file: Some(PathBuf::from("a.toml")),
            key: "servers.x".to_owned(),
            position: Some((3, 5)),
            message: "bad".to_owned(),
        };
        assert_eq!(with_everything.to_string(), "a.toml:3:5: servers.x: bad");
        let bare = ConfigError::Invalid {
            file: None,
            key: String::new(),
            position: None,
            message: "bad".to_owned(),
        };
        assert_eq!(bare.to_string(), "bad");
        let syntax = ConfigError::Syntax {
            file: None,
            format: ConfigFormat::McpJson,
            line: 2,
            column: 9,
            message: "EOF".to_owned(),
        };
        assert_eq!(syntax.to_string(), "line 2, column 9: invalid JSON: EOF");
        assert_eq!(syntax.line_column(), Some((2, 9)));
    }
}
