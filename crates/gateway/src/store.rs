//! The embedded store: what must survive a restart — servers registered at runtime (admin
//! API, meta-tools) and every server's last known catalog (so dormant servers list their
//! tools without starting). One JSON document in `state_dir`, replaced atomically
//! (write to a temporary file, fsync, rename); no state dir means memory only.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::ServerLists;

const FILE_NAME: &str = "switchboard-state.json";

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

    pub fn put_registered(&self, name: &str, definition: Value) {
        self.state
            .lock()
            .registered
            .insert(name.to_owned(), definition);
        self.persist();
    }

    pub fn remove_registered(&self, name: &str) -> bool {
        let removed = self.state.lock().registered.remove(name).is_some();
        if removed {
            self.persist();
        }
        removed
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

    /// Writes pending catalog updates, if any (the flusher, and shutdown).
    pub fn flush(&self) {
        if self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            self.persist();
        }
    }

    fn persist(&self) {
        let Some(path) = &self.path else { return };
        self.dirty
            .store(false, std::sync::atomic::Ordering::Release);
        let _writing = self.writing.lock();
        let bytes = {
            let state = self.state.lock();
            serde_json::to_vec_pretty(&*state).expect("state serializes")
        };
        if let Err(error) = write_atomically(path, &bytes) {
            tracing::error!(path = %path.display(), %error, "state not persisted");
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn survives_reopen_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(Some(dir.path()));
        store.put_registered(
            "time",
            json!({ "command": "uvx", "args": ["mcp-server-time"] }),
        );
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
}
