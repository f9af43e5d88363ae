//! The JSON-lines export: every committed record, as stored, one per line, to stdout or
//! appended to a file, for a SIEM. Written after the commit, so the export never holds a
//! record the log does not; a failed write is logged and counted, and the log (the
//! source of truth) goes on.

use std::io::Write as _;
use std::path::PathBuf;

use switchboard_config::AuditExport;

pub(crate) enum Export {
    Stdout,
    File {
        path: PathBuf,
        file: Option<std::fs::File>,
    },
}

impl Export {
    pub(crate) fn new(target: &AuditExport) -> Export {
        match target {
            AuditExport::Stdout => Export::Stdout,
            AuditExport::File(path) => Export::File {
                path: path.clone(),
                file: None,
            },
        }
    }

    /// Writes `lines` (each without its newline) and flushes.
    pub(crate) fn write(&mut self, lines: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
        let mut buffer = Vec::with_capacity(lines.iter().map(|(_, l)| l.len() + 1).sum());
        for (_, line) in lines {
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
        }
        match self {
            Export::Stdout => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&buffer)?;
                stdout.flush()
            }
            Export::File { path, file } => {
                if file.is_none() {
                    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                        std::fs::create_dir_all(parent)?;
                    }
                    *file = Some(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&*path)?,
                    );
                }
                let result = file.as_mut().map_or(Ok(()), |f| f.write_all(&buffer));
                if result.is_err() {
                    // Reopened on the next batch (a rotated or removed file).
                    *file = None;
                }
                result
            }
        }
    }
}
