//! The embedded store: what must survive a restart — servers registered at runtime (admin
//! API, meta-tools) and every server's last known catalog (so dormant servers list their
//! tools without starting). One JSON document in `state_dir`, replaced atomically
//! (write to a temporary file, fsync, rename; the temporary file is removed when any
//! step fails); no state dir means memory only.
//!
//! A registration change is persisted before it is answered, and undone in memory when
//! the write fails, so callers can refuse it truthfully; catalog updates are written
//! later in batches and retried on the next flush.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::ServerLists;

const FILE_NAME: &str = "switchboard-state.json";

/// The state file could not be written (full or read-only file system, permissions).
#[derive(Debug, thiserror::Error)]
#[error("state not persisted to {}: {source}", path.display())]
pub struct StoreError {
    path: PathBuf,
    source: std::io::Error,
}

#[derive(Default, Serialize, Deserialize)]
struct StoreState {
    /// Server definitions (`.mcp.json` entry shape) registered at runtime.
    #[serde(default)]
    registered: BTreeMap<String, Value>,
    /// Last known lists per server.
    #[serde(default)]
    catalogs: BTreeMap<String, ServerLists>,
}

pub struct Store {
    path: Option<PathBuf>,
    state: Mutex<StoreState>,
    /// Serializes writers: one snapshot is renamed into place at a time.
    writing: Mutex<()>,
    /// Catalog updates are frequent (hundreds of servers starting at once): they mark the
    /// store dirty and a flusher writes at most a few times a second.
    dirty: std::sync::atomic::AtomicBool,
    pub(crate) wake: tokio::sync::Notify,
}

impl Store {
    /// Opens the store in `dir` (created if missing). An unreadable or corrupt file is
    /// moved aside and the store starts empty, loudly.
    pub fn open(dir: Option<&Path>) -> Store {
        let Some(dir) = dir else {
            return Store::with(None, StoreState::default());
        };
        if let Err(error) = std::fs::create_dir_all(dir) {
            tracing::error!(dir = %dir.display(), %error, "state directory unusable; keeping state in memory");
            return Store::with(None, StoreState::default());
        }
        let path = dir.join(FILE_NAME);
        let state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(state) => state,
                Err(error) => {
                    let aside = path.with_extension("json.corrupt");
                    tracing::error!(path = %path.display(), %error, aside = %aside.display(), "state file corrupt; moved aside");
                    let _ = std::fs::rename(&path, &aside);
                    StoreState::default()
                }
            },
            Err(_) => StoreState::default(),
        };
        Store::with(Some(path), state)
    }

    fn with(path: Option<PathBuf>, state: StoreState) -> Store {
        Store {
            path,
            state: Mutex::new(state),
            writing: Mutex::new(()),
            dirty: Default::default(),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn is_persistent(&self) -> bool {
        self.path.is_some()
    }

    pub fn registered(&self) -> BTreeMap<String, Value> {
        self.state.lock().registered.clone()
    }

    /// Records a runtime registration and writes it; on failure the store is as before.
    pub fn put_registered(&self, name: &str, definition: Value) -> Result<(), StoreError> {
        let previous = self
            .state
            .lock()
            .registered
            .insert(name.to_owned(), definition);
        self.persist().inspect_err(|_| {
            let mut state = self.state.lock();
            match previous {
                Some(previous) => state.registered.insert(name.to_owned(), previous),
                None => state.registered.remove(name),
            };
        })
    }

    /// Forgets a runtime registration and writes that; on failure the store is as before.
    /// `Ok(false)` when there was none.
    pub fn remove_registered(&self, name: &str) -> Result<bool, StoreError> {
        let Some(previous) = self.state.lock().registered.remove(name) else {
            return Ok(false);
        };
        self.persist().map(|()| true).inspect_err(|_| {
            self.state
                .lock()
                .registered
                .insert(name.to_owned(), previous);
        })
    }

    pub fn catalog(&self, name: &str) -> Option<ServerLists> {
        self.state.lock().catalogs.get(name).cloned()
    }

    pub fn put_catalog(&self, name: &str, lists: &ServerLists) {
        self.state
            .lock()
            .catalogs
            .insert(name.to_owned(), lists.clone());
        if self.path.is_some() {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// Writes pending catalog updates, if any (the flusher, and shutdown). A failed write
    /// is logged and retried on the next flush.
    pub fn flush(&self) {
        if self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel)
            && let Err(error) = self.persist()
        {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            tracing::error!(%error, "catalogs not persisted; retried on the next change");
        }
    }

    /// Writes the whole state (a no-op without a state dir).
    fn persist(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        self.dirty
            .store(false, std::sync::atomic::Ordering::Release);
        let _writing = self.writing.lock();
        let bytes = {
            let state = self.state.lock();
            serde_json::to_vec_pretty(&*state).expect("state serializes")
        };
        write_atomically(path, &bytes).map_err(|source| StoreError {
            path: path.clone(),
            source,
        })
    }
}

/// Replaces `path` with `bytes` through a temporary file beside it, which never outlives
/// a failure (it would keep using the space a full disk lacks).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn survives_reopen_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path()));
        store
            .put_registered(
                "time",
                json!({ "command": "uvx", "args": ["mcp-server-time"] }),
            )
            .unwrap();
        store.put_catalog(
            "time",
            &ServerLists {
                tools: vec![json!({ "name": "now" })],
                ..ServerLists::default()
            },
        );
        store.flush();
        let reopened = Store::open(Some(dir.path()));
        assert_eq!(reopened.registered()["time"]["command"], "uvx");
        assert_eq!(reopened.catalog("time").unwrap().tools[0]["name"], "now");
        std::fs::write(dir.path().join(FILE_NAME), b"{broken").unwrap();
        let fresh = Store::open(Some(dir.path()));
        assert!(fresh.registered().is_empty());
        assert!(dir.path().join("switchboard-state.json.corrupt").exists());
    }

    #[test]
    fn a_failed_write_changes_nothing_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path()));
        store
            .put_registered("a", json!({ "command": "a" }))
            .unwrap();
        // The rename fails: a non-empty directory stands where the file goes.
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        std::fs::create_dir_all(dir.path().join(FILE_NAME).join("blocker")).unwrap();
        let error = store
            .put_registered("b", json!({ "command": "b" }))
            .unwrap_err();
        assert!(error.to_string().contains("state not persisted"), "{error}");
        assert!(!store.registered().contains_key("b"), "undone in memory");
        assert_eq!(
            store.remove_registered("a").ok(),
            None,
            "removal refused too"
        );
        assert!(store.registered().contains_key("a"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file left");
    }
}
