//! The watched config file. The *directory* is watched, because editors save by writing a
//! temporary file and renaming it over the original, and Kubernetes swaps a `..data`
//! symlink; a content hash filters out events that changed nothing (our own writes to
//! other files in the directory included). A slow poll backs the watcher up in case an
//! event is lost. A file that fails validation changes nothing: the last good config keeps
//! running and the error is recorded for `/admin` and `/metrics`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::gateway::Gateway;

/// Quiet period after an event before the file is read (editors write in bursts).
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Fallback poll interval.
const POLL: Duration = Duration::from_secs(2);

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Watches `path` and applies every valid change to `gateway` until the gateway shuts
/// down. The watcher and its task are owned by the gateway's shutdown token.
pub fn watch_config(gateway: Gateway, path: PathBuf) -> Result<(), notify::Error> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let (events_tx, mut events_rx) = mpsc::channel::<()>(16);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Reading the file ourselves raises access events: only changes wake the reloader.
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        // A full queue already holds a wake-up; dropping this one loses nothing.
        let _ = events_tx.try_send(());
    })?;
    watcher.watch(&directory, RecursiveMode::NonRecursive)?;
    let shutdown = gateway.inner.shutdown.clone();
    let mut last = std::fs::read(&path).map(|bytes| digest(&bytes)).ok();
    tokio::spawn(async move {
        let _watcher = watcher; // lives as long as this task
        loop {
            tokio::select! {
                event = events_rx.recv() => {
                    if event.is_none() { return }
                    tokio::time::sleep(DEBOUNCE).await;
                    while events_rx.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
            let Ok(bytes) = tokio::fs::read(&path).await else {
                continue; // mid-swap or deleted: keep the running config
            };
            let hash = digest(&bytes);
            if last == Some(hash) {
                continue;
            }
            last = Some(hash);
            reload(&gateway, &path).await;
        }
    });
    Ok(())
}

async fn reload(gateway: &Gateway, path: &Path) {
    match switchboard_config::load(path) {
        Ok(config) => {
            let report = gateway.apply_config(&config).await;
            gateway.config_applied();
            tracing::info!(
                path = %path.display(),
                added = ?report.added, reloaded = ?report.reloaded, removed = ?report.removed, failed = ?report.failed,
                "config reloaded"
            );
        }
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "config rejected; the last good config keeps running");
            gateway.config_rejected(error.to_string());
        }
    }
}
