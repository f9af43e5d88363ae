//! What this machine lets a sandbox use, found once per process: the Landlock ABI,
//! whether we may create network namespaces (CAP_SYS_ADMIN), whether we are root (which
//! makes `RLIMIT_NPROC` a no-op), and where our cgroups are.

use std::sync::OnceLock;

use super::cgroup::Cgroups;

/// The machine as a sandbox sees it.
#[derive(Debug)]
pub(crate) struct Host {
    /// The kernel release (`uname -r`), for reports.
    pub(crate) kernel: String,
    /// The Landlock ABI version, or why there is none.
    pub(crate) landlock: Result<i32, String>,
    /// CAP_SYS_ADMIN in our effective set: `unshare(CLONE_NEWNET)` works, and Landlock
    /// works without `no_new_privs`.
    pub(crate) cap_sys_admin: bool,
    /// The kernel ignores `RLIMIT_NPROC` for root (and for CAP_SYS_RESOURCE).
    pub(crate) nproc_binds: bool,
    /// Our cgroups, per controller.
    pub(crate) cgroups: Cgroups,
}

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;

impl Host {
    /// The machine, detected on first use.
    pub(crate) fn get() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(Host::detect)
    }

    fn detect() -> Host {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let capabilities = status_field(&status, "CapEff:", 0)
            .and_then(|value| u64::from_str_radix(value, 16).ok())
            .unwrap_or(0);
        let has = |capability: u32| capabilities & (1 << capability) != 0;
        // `Uid:` lists real, effective, saved and file-system ids.
        let root = status_field(&status, "Uid:", 1) == Some("0");
        Host {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|release| release.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            landlock: super::child::landlock_abi().map_err(|error| match error.raw_os_error() {
                Some(libc::ENOSYS) => "the kernel is built without Landlock".to_owned(),
                Some(libc::EOPNOTSUPP) => {
                    "Landlock is disabled (not in the kernel's `lsm=` list)".to_owned()
                }
                _ => format!("Landlock is unavailable: {error}"),
            }),
            cap_sys_admin: has(CAP_SYS_ADMIN),
            nproc_binds: !root && !has(CAP_SYS_RESOURCE) && !has(CAP_SYS_ADMIN),
            cgroups: Cgroups::discover(),
        }
    }
}

/// The `index`th value of a `/proc/self/status` line.
fn status_field<'a>(status: &'a str, key: &str, index: usize) -> Option<&'a str> {
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().nth(index)
}
