//! Third-party parts installed by `scripts/install-interop` into the tools directory
//! (`$SWITCHBOARD_TOOLS_DIR`, default `~/.cache/switchboard/tools`), found through its
//! `tools.env`. Gated like the interop tier: with `SWITCHBOARD_INTEROP=0` nothing is
//! looked up; a missing part is skipped with a message, or a failure with
//! `SWITCHBOARD_INTEROP=1` (as CI runs it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The path `tools.env` gives for `key` (e.g. `INTEROP_EMBED_MODEL`), when it exists;
/// `None` (after saying why on stderr) when the tier should be skipped. `tier` names the
/// tests in the messages.
pub fn interop_path(key: &str, tier: &str) -> Option<PathBuf> {
    let setting = std::env::var("SWITCHBOARD_INTEROP").unwrap_or_default();
    if setting == "0" {
        eprintln!("skipping {tier}: SWITCHBOARD_INTEROP=0");
        return None;
    }
    let dir = std::env::var_os("SWITCHBOARD_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/switchboard/tools")
        });
    let found = (|| -> Result<PathBuf, String> {
        let env_file = dir.join("tools.env");
        let text = std::fs::read_to_string(&env_file)
            .map_err(|error| format!("cannot read {}: {error}", env_file.display()))?;
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let path = vars
            .get(key)
            .map(PathBuf::from)
            .ok_or_else(|| format!("{} has no {key}", env_file.display()))?;
        if path.exists() {
            Ok(path)
        } else {
            Err(format!("{key}: {} does not exist", path.display()))
        }
    })();
    match found {
        Ok(path) => Some(path),
        Err(reason) if setting == "1" => {
            panic!("SWITCHBOARD_INTEROP=1 but {reason}; run scripts/install-interop")
        }
        Err(reason) => {
            eprintln!("skipping {tier}: {reason}; run scripts/install-interop");
            None
        }
    }
}
