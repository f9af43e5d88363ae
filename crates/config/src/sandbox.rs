//! `[servers.NAME.sandbox]`: what a stdio server's processes may use — memory, CPU time,
//! CPU share, open files, processes, file system paths, the network — and whether a
//! sandbox the machine cannot fully enforce may still start. Raw shape, validation and
//! the validated [`SandboxSpec`] live together here; enforcing it is the upstream crate's
//! job (`switchboard_upstream::sandbox`).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{KeyPath, Problem};

/// A validated sandbox for one stdio server. Every limit applies to each instance of
/// the server (its process and everything it starts) separately.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SandboxSpec {
    /// Memory ceiling in bytes (cgroup `memory.max`, else `RLIMIT_DATA`).
    pub memory: Option<u64>,
    /// CPU time in seconds per process (`RLIMIT_CPU`: SIGXCPU, then SIGKILL).
    pub cpu_seconds: Option<u64>,
    /// CPU share in thousandths of one CPU (cgroup `cpu.max`), e.g. 500 = half a CPU.
    pub cpu_millis: Option<u32>,
    /// Open file descriptors per process (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes and threads (cgroup `pids.max`, else `RLIMIT_NPROC`, which counts per
    /// user and does not bind root).
    pub processes: Option<u64>,
    /// `PR_SET_NO_NEW_PRIVS`: setuid binaries and file capabilities grant nothing.
    pub no_new_privs: bool,
    /// The Landlock file system policy; `None`: the file system is not restricted.
    pub filesystem: Option<FsPolicy>,
    /// Whether the server may use the network; `false`: a network namespace of its own
    /// (no interfaces but a down loopback), else Landlock TCP rules.
    pub network: bool,
    /// Refuse to start the server when any part of this sandbox cannot be enforced
    /// (instead of starting it with the gaps reported).
    pub require: bool,
}

/// Paths a sandboxed server may read (and execute) or write; everything else is denied.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct FsPolicy {
    /// Readable and executable, beneath each path.
    pub read_only: Vec<PathBuf>,
    /// Readable, executable and writable (create, remove, truncate), beneath each path.
    pub writable: Vec<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSandbox {
    memory: Option<RawSize>,
    cpu_seconds: Option<u64>,
    cpus: Option<f64>,
    open_files: Option<u64>,
    processes: Option<u64>,
    no_new_privs: Option<bool>,
    read_only: Option<Vec<String>>,
    writable: Option<Vec<String>>,
    network: Option<bool>,
    require: Option<bool>,
}

/// A size: a number of bytes, or a string with a unit ("256MiB", "1G").
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

/// Smallest accepted `memory`: below this no runtime starts.
const MIN_MEMORY: u64 = 1024 * 1024;

/// Parses "256MiB", "1.5 GiB", "512M", "100000000", "2GB". Binary units: `K`, `M`, `G`,
/// `T` (with or without `iB`, as systemd reads them); decimal units: `KB`, `MB`, `GB`,
/// `TB`; `B` or no unit: bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    };
    if number.is_empty() || number.matches('.').count() > 1 {
        return None;
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(factor);
    }
    let value = number.parse::<f64>().ok()? * factor as f64;
    (value.is_finite() && value < u64::MAX as f64).then_some(value.round() as u64)
}

/// `expand` resolves `${VAR}` in a path (the document's own expansion rules).
pub(crate) fn validate(
    raw: RawSandbox,
    path: &KeyPath,
    expand: &mut dyn FnMut(&str, &KeyPath) -> Result<String, Problem>,
) -> Result<SandboxSpec, Problem> {
    let memory = match raw.memory {
        None => None,
        Some(size) => {
            let key = path.key("memory");
            let bytes = match size {
                RawSize::Bytes(bytes) => bytes,
                RawSize::Text(text) => parse_size(&text).ok_or_else(|| {
                    Problem::new(
                        key.clone(),
                        "expected a number of bytes or a size like \"256MiB\" or \"1G\"",
                    )
                })?,
            };
            if bytes < MIN_MEMORY {
                return Err(Problem::new(key, "must be at least 1 MiB"));
            }
            Some(bytes)
        }
    };
    let positive = |value: Option<u64>, key: &str| match value {
        Some(0) => Err(Problem::new(path.key(key), "must be at least 1")),
        other => Ok(other),
    };
    let cpu_millis = match raw.cpus {
        None => None,
        Some(cpus) => {
            let millis = cpus * 1000.0;
            if !(millis.is_finite() && (1.0..=1_000_000.0).contains(&millis)) {
                return Err(Problem::new(
                    path.key("cpus"),
                    "must be a share of CPUs between 0.001 and 1000 (0.5 = half a CPU)",
                ));
            }
            Some(millis.round() as u32)
        }
    };
    let mut paths = |list: Option<Vec<String>>, key: &str| -> Result<Vec<PathBuf>, Problem> {
        let key_path = path.key(key);
        list.unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                let entry = key_path.index(index);
                let value = expand(raw, &entry)?;
                let value = PathBuf::from(value);
                if !value.is_absolute() {
                    return Err(Problem::new(entry, "must be an absolute path"));
                }
                Ok(value)
            })
            .collect()
    };
    let filesystem = match (&raw.read_only, &raw.writable) {
        (None, None) => None,
        _ => Some(FsPolicy {
            read_only: paths(raw.read_only, "read_only")?,
            writable: paths(raw.writable, "writable")?,
        }),
    };
    Ok(SandboxSpec {
        memory,
        cpu_seconds: positive(raw.cpu_seconds, "cpu_seconds")?,
        cpu_millis,
        open_files: positive(raw.open_files, "open_files")?,
        processes: positive(raw.processes, "processes")?,
        no_new_privs: raw.no_new_privs.unwrap_or(true),
        filesystem,
        network: raw.network.unwrap_or(true),
        require: raw.require.unwrap_or(false),
    })
}

/// Bytes in the largest binary unit that divides them ("256 MiB", "1536 KiB").
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (unit, size) in units {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(formatter, "{} {unit}", self.0 / size);
            }
        }
        write!(formatter, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> Result<SandboxSpec, Problem> {
        let raw: RawSandbox = toml::from_str(toml_text).unwrap();
        let path = KeyPath::root().key("servers").key("s").key("sandbox");
        validate(raw, &path, &mut |value, _| {
            Ok(value.replace("${HOME}", "/home/u"))
        })
    }

    #[test]
    fn sizes_read_like_systemd_and_si() {
        assert_eq!(parse_size("256MiB"), Some(256 << 20));
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("1 G"), Some(1 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("12kb"), Some(12_000));
        for bad in ["", "MiB", "12 parsecs", "1.2.3M", "-5M", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_sandbox_defaults_to_no_new_privs_and_network() {
        let sandbox = spec("memory = \"64MiB\"").unwrap();
        assert_eq!(sandbox.memory, Some(64 << 20));
        assert!(sandbox.no_new_privs && sandbox.network && !sandbox.require);
        assert_eq!(sandbox.filesystem, None);
    }

    #[test]
    fn every_key_is_validated_with_its_path() {
        let full = spec(
            "memory = 134217728\ncpu_seconds = 10\ncpus = 0.25\nopen_files = 64\n\
             processes = 16\nno_new_privs = false\nread_only = [\"/usr\", \"${HOME}/x\"]\n\
             writable = []\nnetwork = false\nrequire = true",
        )
        .unwrap();
        assert_eq!(full.cpu_millis, Some(250));
        assert_eq!(
            full.filesystem.unwrap().read_only,
            vec![PathBuf::from("/usr"), PathBuf::from("/home/u/x")]
        );
        assert!(!full.no_new_privs && !full.network && full.require);
        for (text, key) in [
            ("memory = \"lots\"", "servers.s.sandbox.memory"),
            ("memory = 1000", "servers.s.sandbox.memory"),
            ("cpu_seconds = 0", "servers.s.sandbox.cpu_seconds"),
            ("cpus = 0.0", "servers.s.sandbox.cpus"),
            ("processes = 0", "servers.s.sandbox.processes"),
            (
                "writable = [\"relative/dir\"]",
                "servers.s.sandbox.writable[0]",
            ),
        ] {
            let problem = spec(text).unwrap_err();
            assert_eq!(problem.key.to_string(), key, "{text}: {}", problem.message);
        }
    }

    #[test]
    fn bytes_display_in_the_largest_exact_unit() {
        assert_eq!(Bytes(256 << 20).to_string(), "256 MiB");
        assert_eq!(Bytes(1536 << 10).to_string(), "1536 KiB");
        assert_eq!(Bytes(1000).to_string(), "1000 bytes");
    }
}
