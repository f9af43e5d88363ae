//! The CLI's own settings file: where the gateway is and which credentials to present,
//! so a shell needs no flags or environment. TOML with `url`, `token` (the admin token)
//! and `key` (the `[access]` credential `call` presents), each optional; flags and
//! environment variables win over it. Read from `--cli-config`/`SWITCHBOARD_CLI_CONFIG`
//! (which must exist), else `$XDG_CONFIG_HOME/switchboard/cli.toml`, else
//! `~/.config/switchboard/cli.toml` (either may be absent).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

/// Largest settings file read: it holds three short values.
const MAX_BYTES: u64 = 64 * 1024;

/// The file's settings. No `Debug`: it holds credentials.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSettings {
    pub(crate) url: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) key: Option<String>,
}

/// The default place of the file, when a home is known.
fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("switchboard").join("cli.toml"))
}

/// The settings of `explicit`, else of the default file when it exists, else none.
pub(crate) fn load(explicit: Option<&Path>) -> anyhow::Result<FileSettings> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => match default_path() {
            Some(path) if path.exists() => path,
            _ => return Ok(FileSettings::default()),
        },
    };
    let size = std::fs::metadata(&path)
        .with_context(|| format!("cannot read the CLI config {}", path.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_BYTES,
        "the CLI config {} is larger than {MAX_BYTES} bytes",
        path.display()
    );
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the CLI config {}", path.display()))?;
    parse(&text).with_context(|| format!("the CLI config {}", path.display()))
}

fn parse(text: &str) -> anyhow::Result<FileSettings> {
    // toml's message quotes the offending line, which may hold a credential: keep only
    // what names the key.
    toml::from_str(text).map_err(|error| anyhow::anyhow!("{}", error.message()))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        let settings = parse("url = \"http://127.0.0.1:1\"\ntoken = \"t\"").unwrap();
        assert_eq!(settings.url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(settings.token.as_deref(), Some("t"));
        assert!(settings.key.is_none());
        assert!(parse("").unwrap().url.is_none());
        let error = parse("tokn = \"secret-value\"").err().unwrap().to_string();
        assert!(error.contains("tokn"), "{error}");
        assert!(!error.contains("secret-value"), "{error}");
    }
}
