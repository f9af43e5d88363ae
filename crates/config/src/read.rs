//! Reading a config file: regular files only, with a size bound.
//!
//! The path is opened non-blocking, so a FIFO (which would wait for a writer) opens at
//! once, and its type is checked on the opened handle, not on the path, so nothing can
//! be swapped in between the check and the read. Anything but a regular file — FIFO,
//! device (`/dev/zero`), directory, socket — is refused, and at most `max_bytes` are
//! ever read.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::Path;

use crate::error::ConfigError;

/// Default for the largest config file read: 16 MiB.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Reads the config file at `path` as UTF-8 text, refusing anything that is not a
/// regular file or is larger than `max_bytes`.
pub fn read(path: &Path, max_bytes: u64) -> Result<String, ConfigError> {
    let io_error = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        return Err(ConfigError::NotAFile {
            path: path.to_path_buf(),
            kind: file_kind(&kind),
        });
    }
    let too_large = || ConfigError::TooLarge {
        path: path.to_path_buf(),
        limit: max_bytes,
    };
    if metadata.len() > max_bytes {
        return Err(too_large());
    }
    // The file may grow after the check: read one byte past the bound to notice.
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    File::take(file, max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| {
        io_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not valid UTF-8",
        ))
    })
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "an unknown kind of file"
    }
}
