//! The embedded database: one redb file, `state_dir/switchboard.redb`, opened once per
//! process and shared by every part that keeps durable state (daily budgets, the audit
//! log, the capability registry). Each part owns its own tables; a write is acknowledged
//! only after its transaction committed (redb commits are durable: fsync before return).
//!
//! Without a `state_dir` the database lives in memory: state is lost at exit, and the
//! parts that promise durability say so at start ([`Db::is_durable`]).
//!
//! redb allows one `Database` per file per process, and locks the file against other
//! writers: a second gateway on the same state dir fails to open it, with an error
//! naming the file (two writers would corrupt budgets and the audit chain). The file is
//! opened in redb's single-writer mode, so other processes may read it while the gateway
//! runs ([`open_read_only`]: `switchboard audit verify` and `tail`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

const FILE_NAME: &str = "switchboard.redb";

/// The database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot create state directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open database {} (is another switchboard using this state_dir?): {source}", path.display())]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
}

/// The shared embedded database.
pub struct Db {
    database: redb::Database,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (or creates) the database in `dir`; without a dir, an in-memory one.
    pub fn open(dir: Option<&Path>) -> Result<Arc<Db>, DbError> {
        let Some(dir) = dir else {
            return Ok(Arc::new(Db::memory()));
        };
        std::fs::create_dir_all(dir).map_err(|source| DbError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let database = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
            .create(&path)
            .map_err(|source| DbError::Open {
                path: path.clone(),
                source,
            })?;
        Ok(Arc::new(Db {
            database,
            path: Some(path),
        }))
    }

    /// A database that lives in memory only.
    pub fn memory() -> Db {
        let database = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("an in-memory redb database always opens");
        Db {
            database,
            path: None,
        }
    }

    /// The redb database; each part opens its own tables in it.
    pub fn database(&self) -> &redb::Database {
        &self.database
    }

    /// Whether committed writes survive a restart (a file, not memory).
    pub fn is_durable(&self) -> bool {
        self.path.is_some()
    }

    /// The database file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Opens the database in `dir` for reading only, beside a gateway that may be running on
/// it; nothing is written. A file whose writer died without closing it (`kill -9`) is
/// refused with `RepairAborted` while no writer runs: redb leaves the repair to a writer
/// (the next gateway, or a private copy, as `switchboard audit` does).
pub fn open_read_only(dir: &Path) -> Result<redb::ReadOnlyDatabase, DbError> {
    let path = dir.join(FILE_NAME);
    redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::SingleWriter)
        .open_read_only(&path)
        .map_err(|source| DbError::Open { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableDatabase as _, TableDefinition};

    const TABLE: TableDefinition<'_, &str, u64> = TableDefinition::new("test");

    #[test]
    fn committed_writes_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(Some(dir.path())).unwrap();
            assert!(db.is_durable());
            let tx = db.database().begin_write().unwrap();
            tx.open_table(TABLE).unwrap().insert("a", 7).unwrap();
            tx.commit().unwrap();
        }
        let db = Db::open(Some(dir.path())).unwrap();
        let tx = db.database().begin_read().unwrap();
        let value = tx.open_table(TABLE).unwrap().get("a").unwrap().unwrap();
        assert_eq!(value.value(), 7);
    }

    #[test]
    fn a_second_open_of_the_same_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Db::open(Some(dir.path())).unwrap();
        let error = Db::open(Some(dir.path())).unwrap_err();
        assert!(error.to_string().contains("switchboard.redb"), "{error}");
    }

    #[test]
    fn a_reader_follows_the_writer_s_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(Some(dir.path())).unwrap();
        let write = |value: u64| {
            let tx = db.database().begin_write().unwrap();
            tx.open_table(TABLE).unwrap().insert("a", value).unwrap();
            tx.commit().unwrap();
        };
        write(1);
        let reader = open_read_only(dir.path()).unwrap();
        let read = || {
            let tx = reader.begin_read().unwrap();
            tx.open_table(TABLE)
                .unwrap()
                .get("a")
                .unwrap()
                .unwrap()
                .value()
        };
        assert_eq!(read(), 1);
        write(2);
        assert_eq!(read(), 2);
    }

    #[test]
    fn without_a_dir_it_is_memory() {
        let db = Db::open(None).unwrap();
        assert!(!db.is_durable());
        let tx = db.database().begin_write().unwrap();
        tx.open_table(TABLE).unwrap().insert("a", 1).unwrap();
        tx.commit().unwrap();
    }
}
