//! The watched config file. The *directory* is watched, because editors save by writing a
//! temporary file and renaming it over the original, and Kubernetes swaps a `..data`
//! symlink; a content hash filters out events that changed nothing (our own writes to
//! other files in the directory included). A slow poll backs the watcher up in case an
//! event is lost, and [`ConfigWatch::reload`] (SIGHUP) re-reads on demand.
//!
//! What is applied, and what is not:
//! - The first check runs as soon as watching starts and compares against the text the
//!   gateway was started with, so an edit made while the gateway was starting is applied.
//! - A file that fails to read (not a regular file, too large, unreadable) or to validate
//!   changes nothing: the last good config keeps running and the error is recorded for
//!   `/admin` and `/metrics`. A missing file is a rename in progress and is skipped.
//! - An empty or whitespace-only file is a file being written (`>` and `open('w')`
//!   truncate first): it is neither applied nor an error.
//! - A valid config that would remove every configured server is applied only once it
//!   has stayed the same for [`SETTLE`], so a half-written file cannot empty the gateway.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use switchboard_config::{Config, ConfigError};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;

/// Quiet period after an event before the file is read (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Fallback poll interval.
const POLL: Duration = Duration::from_secs(2);
/// How long a config that removes every server must stay unchanged before it is applied.
pub const SETTLE: Duration = Duration::from_secs(1);

type Fingerprint = [u8; 32];

fn digest(bytes: &[u8]) -> Fingerprint {
    Sha256::digest(bytes).into()
}

/// A handle on the watcher: asks for a re-read, e.g. on SIGHUP.
#[derive(Clone)]
pub struct ConfigWatch {
    reload: Arc<Notify>,
    stopped: CancellationToken,
}

impl ConfigWatch {
    /// Re-reads the file now and applies it even when its content did not change
    /// (requests made before the previous one ran are coalesced into it).
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// Resolves when the watcher has stopped (the gateway shut down).
    pub async fn stopped(&self) {
        self.stopped.cancelled().await;
    }
}

/// Watches `path` and applies every valid change to `gateway` until the gateway shuts
/// down; `loaded` is the text the gateway was started with, and no read takes more than
/// `max_bytes`. The watcher and its task are owned by the gateway's shutdown token. When
/// the directory cannot be watched, the poll and [`ConfigWatch::reload`] still work.
pub fn watch_config(gateway: Gateway, path: PathBuf, loaded: &str, max_bytes: u64) -> ConfigWatch {
    let shutdown = gateway.inner.shutdown.clone();
    let (events_tx, mut events_rx) = mpsc::channel::<()>(16);
    let watcher = match watch_directory(&path, events_tx) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "config directory not watched; changes are read every {} s and on SIGHUP", POLL.as_secs());
            None
        }
    };
    let handle = ConfigWatch {
        reload: Arc::new(Notify::new()),
        stopped: shutdown.clone(),
    };
    let reload = handle.reload.clone();
    let owner = gateway.clone();
    let mut reloader = Reloader {
        gateway,
        path,
        max_bytes,
        last: Some(digest(loaded.as_bytes())),
    };
    owner.spawn(async move {
        let _watcher = watcher; // lives as long as this task
        // The first check runs at once: an edit made before watching began raised no
        // event this task will see.
        let mut forced = false;
        loop {
            reloader.check(forced).await;
            forced = tokio::select! {
                event = events_rx.recv() => {
                    if event.is_none() { return }
                    tokio::time::sleep(DEBOUNCE).await;
                    while events_rx.try_recv().is_ok() {}
                    false
                }
                () = reload.notified() => true,
                () = tokio::time::sleep(POLL) => false,
                () = shutdown.cancelled() => return,
            };
        }
    });
    handle
}

fn watch_directory(
    path: &Path,
    events: mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the file ourselves raises access events: only changes wake the reloader.
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        // A full queue already holds a wake-up; dropping this one loses nothing.
        let _ = events.try_send(());
    })?;
    watcher.watch(directory, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

/// Reads, validates and applies the file; remembers what it last handled.
struct Reloader {
    gateway: Gateway,
    path: PathBuf,
    max_bytes: u64,
    /// The file content (or read error) last applied or rejected.
    last: Option<Fingerprint>,
}

impl Reloader {
    /// One look at the file. `forced` applies it even when it did not change.
    async fn check(&mut self, forced: bool) {
        let text = match self.read().await {
            Ok(text) => text,
            Err(ConfigError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return; // mid-swap or deleted: keep the running config
            }
            Err(error) => {
                // Reported once per distinct error, not on every poll.
                let fingerprint = digest(error.to_string().as_bytes());
                if forced || self.last != Some(fingerprint) {
                    self.last = Some(fingerprint);
                    self.reject(&error);
                }
                return;
            }
        };
        if text.trim_start_matches('\u{feff}').trim().is_empty() {
            tracing::debug!(path = %self.path.display(), "config file is empty: waiting for its content");
            return;
        }
        let fingerprint = digest(text.as_bytes());
        if !forced && self.last == Some(fingerprint) {
            return;
        }
        let path = self.path.clone();
        let parsed =
            tokio::task::spawn_blocking(move || switchboard_config::parse_file(&path, &text)).await;
        let Ok(parsed) = parsed else { return };
        match parsed {
            Ok(config) => {
                if self.gateway.would_remove_every_server(&config)
                    && !self.settled(fingerprint).await
                {
                    return; // still changing: the next event or poll looks again
                }
                self.last = Some(fingerprint);
                self.apply(&config).await;
            }
            Err(error) => {
                self.last = Some(fingerprint);
                self.reject(&error);
            }
        }
    }

    async fn read(&self) -> Result<String, ConfigError> {
        let path = self.path.clone();
        let max_bytes = self.max_bytes;
        tokio::task::spawn_blocking(move || switchboard_config::read(&path, max_bytes))
            .await
            .unwrap_or_else(|join| {
                Err(ConfigError::Io {
                    path: self.path.clone(),
                    source: std::io::Error::other(join),
                })
            })
    }

    /// Whether the file still holds the content `fingerprint` after [`SETTLE`].
    async fn settled(&self, fingerprint: Fingerprint) -> bool {
        tracing::info!(path = %self.path.display(), settle_ms = SETTLE.as_millis() as u64, "config removes every server: applied if it stays unchanged");
        tokio::time::sleep(SETTLE).await;
        matches!(self.read().await, Ok(text) if digest(text.as_bytes()) == fingerprint)
    }

    async fn apply(&self, config: &Config) {
        for warning in &config.warnings {
            tracing::warn!(%warning, "config key ignored");
        }
        let report = self.gateway.apply_config(config).await;
        self.gateway.config_applied();
        tracing::info!(
            path = %self.path.display(),
            added = ?report.added, reloaded = ?report.reloaded, removed = ?report.removed, failed = ?report.failed, access = ?report.access, rollouts = report.rollouts,
            "config reloaded"
        );
    }

    fn reject(&self, error: &ConfigError) {
        tracing::error!(path = %self.path.display(), %error, "config rejected; the last good config keeps running");
        self.gateway.config_rejected(error.to_string());
    }
}
