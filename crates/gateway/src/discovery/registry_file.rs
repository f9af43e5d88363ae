//! A watched `server.json` file, or a directory whose `*.json` files are each one
//! (`kind = "registry"`). Watched like the config file (`watch.rs`): the directory is
//! watched (editors rename over files, Kubernetes swaps `..data`), a slow poll backs the
//! watcher up, and content fingerprints skip events that changed nothing.
//!
//! Each file stands alone: a file that cannot be read (not a regular file, larger than
//! `max_file_bytes`, not UTF-8), parsed or mapped keeps the servers it gave last (none if
//! it never read well) and its error is reported; the other files apply. A removed file
//! takes its servers with it; an empty file is one being written and changes nothing.
//! Hidden files (`.name`, including Kubernetes' `..data`) are skipped, at most
//! `max_servers` files are read, and two files that yield one name keep the first (by
//! file name) and report the second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use switchboard_config::{ConfigError, DiscoverySource, RegistrySource, ServerSpec};
use tokio::sync::mpsc;

use super::{Layer, POLL, record, server_json};
use crate::gateway::Gateway;

/// Quiet period after an event before the files are read.
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(20);

type Fingerprint = [u8; 32];

/// What one file gave the last time it was read well.
#[derive(Clone)]
struct Good {
    name: String,
    spec: ServerSpec,
}

/// One file's state between looks.
#[derive(Default)]
struct FileState {
    /// The content last handled (applied or rejected).
    fingerprint: Option<Fingerprint>,
    /// What it gave the last time it read well.
    good: Option<Good>,
    /// Why its current content is not used.
    error: Option<String>,
}

pub(crate) fn spawn(gateway: &Gateway, source: DiscoverySource, registry: RegistrySource) {
    let (events_tx, mut events_rx) = mpsc::channel::<()>(16);
    let watcher = match watch(&registry.path, events_tx) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::warn!(source = %source.name, %error, path = %registry.path.display(), "discovery path not watched; read every {} s", POLL.as_secs());
            None
        }
    };
    let shutdown = gateway.inner.shutdown.clone();
    let mut scanner = Scanner {
        gateway: gateway.clone(),
        layer: Layer::new(&source.name),
        source,
        registry,
        files: BTreeMap::new(),
        applied: None,
        unsettled: false,
    };
    gateway.spawn(async move {
        let _watcher = watcher; // lives as long as this task
        loop {
            scanner.look().await;
            tokio::select! {
                event = events_rx.recv() => {
                    if event.is_none() { return }
                    tokio::time::sleep(DEBOUNCE).await;
                    while events_rx.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}

fn watch(
    path: &Path,
    events: mpsc::Sender<()>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    // A directory source watches itself; a file source its directory.
    let directory = if path.is_dir() {
        path
    } else {
        path.parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let _ = events.try_send(());
    })?;
    watcher.watch(directory, RecursiveMode::NonRecursive)?;
    Ok(watcher)
}

struct Scanner {
    gateway: Gateway,
    source: DiscoverySource,
    registry: RegistrySource,
    layer: Layer,
    files: BTreeMap<PathBuf, FileState>,
    /// The set last applied.
    applied: Option<BTreeMap<String, ServerSpec>>,
    /// The last apply left conflicts or failures: apply again at the next look.
    unsettled: bool,
}

impl Scanner {
    async fn look(&mut self) {
        let registry = self.registry.clone();
        let max_files = self.source.max_servers;
        let listed = tokio::task::spawn_blocking(move || list(&registry, max_files)).await;
        let (paths, mut errors) = match listed {
            Ok(Ok(listed)) => listed,
            Ok(Err(error)) => {
                // The path itself is unreadable: keep everything as it is.
                let mut errors = self.file_errors();
                errors.insert(self.registry.path.display().to_string(), error);
                self.report(errors);
                return;
            }
            Err(_) => return,
        };
        self.files.retain(|path, _| paths.contains(path));
        for path in paths {
            let max = self.registry.max_file_bytes;
            let read_path = path.clone();
            let read =
                tokio::task::spawn_blocking(move || switchboard_config::read(&read_path, max))
                    .await;
            let Ok(read) = read else { continue };
            let state = self.files.entry(path.clone()).or_default();
            match read {
                Err(ConfigError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    // Renamed away between listing and reading.
                    self.files.remove(&path);
                }
                Err(error) => {
                    state.fingerprint = None;
                    rejected(&self.source.name, &path, state, error.to_string());
                }
                Ok(text) if text.trim_start_matches('\u{feff}').trim().is_empty() => {}
                Ok(text) => {
                    let fingerprint: Fingerprint = Sha256::digest(text.as_bytes()).into();
                    if state.fingerprint == Some(fingerprint) {
                        continue;
                    }
                    state.fingerprint = Some(fingerprint);
                    match understand(&text, &self.registry, &self.source.prefix) {
                        Ok(good) => {
                            state.good = Some(good);
                            state.error = None;
                        }
                        Err(error) => rejected(&self.source.name, &path, state, error),
                    }
                }
            }
        }
        // The wanted set: files in name order, first claim of a name wins.
        let mut wanted: BTreeMap<String, ServerSpec> = BTreeMap::new();
        let mut claimed: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (path, state) in &self.files {
            let Some(good) = &state.good else { continue };
            if wanted.len() >= self.source.max_servers {
                errors.insert(
                    path.display().to_string(),
                    format!(
                        "the source already gives max_servers = {} servers; `{}` is ignored",
                        self.source.max_servers, good.name
                    ),
                );
                continue;
            }
            if let Some(first) = claimed.get(&good.name) {
                errors.insert(
                    path.display().to_string(),
                    format!(
                        "server `{}` is also defined by {}; this file is ignored",
                        good.name,
                        first.display()
                    ),
                );
                continue;
            }
            claimed.insert(good.name.clone(), path.clone());
            wanted.insert(good.name.clone(), good.spec.clone());
        }
        errors.extend(self.file_errors());
        if self.applied.as_ref() == Some(&wanted) && !self.unsettled {
            self.report(errors);
            return;
        }
        let outcome = self.layer.apply(&self.gateway, &wanted).await;
        self.unsettled = outcome.unsettled();
        self.applied = Some(wanted);
        record(
            &self.gateway,
            &self.source.name,
            &self.layer,
            &outcome,
            errors,
        );
    }

    fn file_errors(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .filter_map(|(path, state)| {
                state
                    .error
                    .as_ref()
                    .map(|error| (path.display().to_string(), error.clone()))
            })
            .collect()
    }

    /// Updates only the errors (nothing was applied).
    fn report(&self, errors: BTreeMap<String, String>) {
        self.gateway
            .inner
            .discovery
            .update(&self.source.name, |status| status.errors = errors);
    }
}

/// The files of a source: the file itself, or the directory's visible `*.json` regular
/// entries in name order, at most `max_servers` of them (the rest reported).
fn list(
    registry: &RegistrySource,
    max_files: usize,
) -> Result<(Vec<PathBuf>, BTreeMap<String, String>), String> {
    let path = &registry.path;
    let metadata = std::fs::metadata(path).map_err(|error| error.to_string())?;
    if !metadata.is_dir() {
        return Ok((vec![path.clone()], BTreeMap::new()));
    }
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|error| error.to_string())? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        paths.push(entry.path());
    }
    paths.sort();
    let mut errors = BTreeMap::new();
    if paths.len() > max_files {
        errors.insert(
            path.display().to_string(),
            format!(
                "{} server.json files; only the first max_servers = {max_files} (by name) are read",
                paths.len()
            ),
        );
        paths.truncate(max_files);
    }
    Ok((paths, errors))
}

/// Records why a file's content is not used (logged once per distinct error).
fn rejected(source: &str, path: &Path, state: &mut FileState, error: String) {
    if state.error.as_ref() != Some(&error) {
        tracing::error!(source, file = %path.display(), %error, "discovery file rejected; the servers it gave last stay");
    }
    state.error = Some(error);
}

/// Text → the server it defines, validated like an admin API registration.
fn understand(text: &str, registry: &RegistrySource, prefix: &str) -> Result<Good, String> {
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not valid JSON: {error}"))?;
    let env = |name: &str| std::env::var_os(name).is_some();
    let mapped = server_json::map(&document, registry, prefix, &env).map_err(|e| e.to_string())?;
    let spec = crate::roster::parse_definition(&mapped.name, &mapped.definition)
        .map_err(|error| format!("server `{}`: {}", mapped.name, error.message))?;
    Ok(Good {
        name: mapped.name,
        spec,
    })
}
