//! The one-time move of the JSON state file of earlier releases
//! (`state_dir/switchboard-state.json`: runtime registrations and last known catalogs)
//! into the registry's store. Each registration is copied unless the store has one by
//! that name; each catalog becomes version 1 of a server that has no version yet (not
//! approved: `trust_first` approves it when the server is first seen, `approve` waits
//! for an admin). Once everything is committed the file is renamed
//! `switchboard-state.json.migrated`; a failed write leaves it in place for the next
//! start. A file that does not parse is moved aside (`.corrupt`), as before.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use super::diff::Diff;
use super::store::{RegistryStore, Retention, StoreError, StoredVersion};
use crate::catalog::ServerLists;

pub const FILE_NAME: &str = "switchboard-state.json";

/// The JSON state file's shape.
#[derive(Default, Deserialize)]
struct StateFile {
    #[serde(default)]
    registered: BTreeMap<String, Value>,
    #[serde(default)]
    catalogs: BTreeMap<String, ServerLists>,
}

/// What a migration moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    pub registered: usize,
    pub catalogs: usize,
}

/// Migrates `dir/switchboard-state.json` into `store`, if there is one.
pub fn migrate(
    dir: &Path,
    store: &dyn RegistryStore,
    now_ms: u64,
) -> Result<Option<Migrated>, StoreError> {
    let path = dir.join(FILE_NAME);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let state: StateFile = match serde_json::from_slice(&bytes) {
        Ok(state) => state,
        Err(error) => {
            let aside = path.with_extension("json.corrupt");
            tracing::error!(path = %path.display(), %error, aside = %aside.display(), "state file corrupt; moved aside, not migrated");
            let _ = std::fs::rename(&path, &aside);
            return Ok(None);
        }
    };
    let mut migrated = Migrated::default();
    let known = store.registered()?;
    for (name, definition) in &state.registered {
        if !known.contains_key(name) {
            store.put_registered(name, definition)?;
            migrated.registered += 1;
        }
    }
    let heads = store.heads()?;
    for (name, lists) in state.catalogs {
        if heads.contains_key(&name) {
            continue;
        }
        let version = StoredVersion {
            version: 1,
            recorded_at: now_ms,
            digest: crate::audit::digest::hex(&super::hash::lists(&lists)),
            diff: Diff::between(&ServerLists::default(), &lists),
            lists: Arc::new(lists),
        };
        let keep = Retention {
            max_versions: u64::MAX,
            min_recorded_at: 0,
        };
        store.append(&name, &version, false, keep)?;
        migrated.catalogs += 1;
    }
    let done = path.with_extension("json.migrated");
    if let Err(error) = std::fs::rename(&path, &done) {
        tracing::error!(path = %path.display(), %error, "state file migrated but not renamed; it will be read again (nothing is duplicated)");
    }
    tracing::info!(
        registered = migrated.registered,
        catalogs = migrated.catalogs,
        "JSON state file migrated into the registry"
    );
    Ok(Some(migrated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::store::RedbStore;

    /// A state file as the previous release wrote it (`store.rs`, pretty-printed).
    const STATE: &str = r#"{
  "registered": {
    "time": {
      "command": "uvx",
      "args": [
        "mcp-server-time"
      ]
    }
  },
  "catalogs": {
    "time": {
      "tools": [
        {
          "name": "get_current_time",
          "description": "Get current time in a specific timezones",
          "inputSchema": {
            "type": "object",
            "properties": {
              "timezone": {
                "type": "string"
              }
            },
            "required": [
              "timezone"
            ]
          }
        }
      ],
      "prompts": [],
      "resources": [],
      "templates": []
    }
  }
}"#;

    #[test]
    fn moves_registrations_and_catalogs_then_renames_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), STATE).unwrap();
        let store = RedbStore::open(Arc::new(crate::db::Db::memory())).unwrap();
        let migrated = migrate(dir.path(), &store, 5).unwrap().unwrap();
        assert_eq!(
            migrated,
            Migrated {
                registered: 1,
                catalogs: 1
            }
        );
        assert_eq!(store.registered().unwrap()["time"]["command"], "uvx");
        let versions = store.versions("time").unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].lists.tools[0]["name"], "get_current_time");
        assert_eq!(versions[0].diff.tools.added, ["get_current_time"]);
        assert!(!dir.path().join(FILE_NAME).exists());
        assert!(dir.path().join("switchboard-state.json.migrated").exists());
        assert_eq!(migrate(dir.path(), &store, 6).unwrap(), None, "once");
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{broken").unwrap();
        let store = RedbStore::open(Arc::new(crate::db::Db::memory())).unwrap();
        assert_eq!(migrate(dir.path(), &store, 1).unwrap(), None);
        assert!(dir.path().join("switchboard-state.json.corrupt").exists());
    }
}
