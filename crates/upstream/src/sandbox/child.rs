//! The part of a sandbox that runs in the forked child, between `fork` and `exec`, and the
//! two raw system calls the crates we use do not wrap. Everything the child does was
//! prepared by the parent (cgroup files opened, the Landlock ruleset built, rlimit values
//! computed), so [`ChildSetup::apply`] makes only async-signal-safe system calls: it
//! allocates nothing and takes no lock.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use tokio::process::Command;

/// What the child applies to itself, in this order: join the cgroups (so everything after
/// is accounted), set the rlimits, enter a new network namespace, set `no_new_privs`,
/// restrict itself with the Landlock ruleset.
#[derive(Debug, Default)]
pub(crate) struct ChildSetup {
    /// `cgroup.procs` of each of the instance's cgroups, open for writing.
    pub(crate) cgroup_procs: Vec<OwnedFd>,
    /// `(resource, soft, hard)`.
    pub(crate) rlimits: Vec<(Resource, u64, u64)>,
    pub(crate) new_network_namespace: bool,
    pub(crate) no_new_privs: bool,
    /// A Landlock ruleset (file system and/or TCP rules).
    pub(crate) landlock: Option<OwnedFd>,
}

/// The rlimits a sandbox sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Data,
    Cpu,
    OpenFiles,
    Processes,
}

impl Resource {
    fn raw(self) -> i32 {
        (match self {
            Resource::Data => libc::RLIMIT_DATA,
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::Processes => libc::RLIMIT_NPROC,
        }) as i32
    }
}

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`.
const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;

/// The Landlock ABI version the running kernel offers, or the errno that says why there is
/// none (`ENOSYS`: not built in; `EOPNOTSUPP`: disabled at boot).
#[allow(unsafe_code)]
pub(crate) fn landlock_abi() -> Result<i32, io::Error> {
    // SAFETY: with a null attribute pointer and size 0 this call only reports the ABI
    // version; it reads and writes no memory of ours.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if version < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(version as i32)
}

impl ChildSetup {
    /// Applies the setup to the calling process. Runs in the forked child of a
    /// multi-threaded parent: only system calls on values prepared before the fork.
    #[allow(unsafe_code)]
    fn apply(&self) -> io::Result<()> {
        fn check(result: libc::c_long) -> io::Result<()> {
            if result < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }
        for procs in &self.cgroup_procs {
            // "0" moves the writing process (cgroup v1 and v2 alike).
            // SAFETY: writes one byte from a static buffer to a descriptor we own.
            let written = unsafe { libc::write(procs.as_raw_fd(), c"0".as_ptr().cast(), 1) };
            check(written as libc::c_long)?;
        }
        for (resource, soft, hard) in &self.rlimits {
            let limit = libc::rlimit {
                rlim_cur: *soft as libc::rlim_t,
                rlim_max: *hard as libc::rlim_t,
            };
            // SAFETY: `limit` lives on this stack frame for the duration of the call.
            check(unsafe { libc::setrlimit(resource.raw() as _, &limit) }.into())?;
        }
        if self.new_network_namespace {
            // SAFETY: no memory is passed; the child is single-threaded, as unshare needs.
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) }.into())?;
        }
        if self.no_new_privs {
            // SAFETY: plain integer arguments.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
        }
        if let Some(ruleset) = &self.landlock {
            // SAFETY: the descriptor is a Landlock ruleset we own; flags 0.
            check(unsafe {
                libc::syscall(
                    libc::SYS_landlock_restrict_self,
                    ruleset.as_raw_fd(),
                    0 as libc::c_uint,
                )
            })?;
        }
        Ok(())
    }
}

/// Makes `command` apply `setup` in its child before `exec`.
#[allow(unsafe_code)]
pub(crate) fn install(command: &mut Command, setup: Arc<ChildSetup>) {
    // SAFETY: `apply` makes only async-signal-safe system calls on data prepared before
    // the fork (see `ChildSetup::apply`); it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || setup.apply());
    }
}
