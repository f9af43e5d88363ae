//! The guardian: a tiny process that outlives the gateway only to kill what it started.
//!
//! `PR_SET_PDEATHSIG` reaches a stdio server's direct child only; a server started through
//! `sh -c "…"` or a launcher that forks (`npx`, `uvx`) leaves its real process behind when
//! the gateway is killed with `kill -9`, and if that process ignores stdin EOF it lives on.
//! So [`start`], called once before the runtime starts (while the process has one thread,
//! which makes `fork` safe), forks a guardian that is detached from the gateway (a grandchild
//! reparented to init, in a process group of its own, so it is neither the gateway's child
//! nor hit by signals sent to the gateway's group). The gateway tells it over a pipe which
//! process groups its stdio servers lead ([`watch`], [`forget`]). When the gateway dies, by
//! any means, the kernel closes the pipe's write end: the guardian reads EOF, sends SIGKILL
//! to every group still registered and exits. Without [`start`] (library use, tests of this
//! crate) both calls do nothing and only the direct child is covered.
//!
//! Messages are fixed 5-byte records (`+`/`-`, then the group id, little-endian), below
//! `PIPE_BUF`, so concurrent writes never interleave.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{ForkResult, Pid};
use parking_lot::Mutex;

static LIFELINE: OnceLock<Mutex<File>> = OnceLock::new();

/// Forks the guardian. Must be called before any other thread exists (before the tokio
/// runtime is built); a second call does nothing.
#[allow(unsafe_code)]
pub fn start() -> std::io::Result<()> {
    if LIFELINE.get().is_some() {
        return Ok(());
    }
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // SAFETY: the caller guarantees a single-threaded process, so the child is a complete
    // copy and may run ordinary code (allocate, lock) until it exits.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            drop(write_end);
            // The intermediate child forks the guardian and exits at once, so the guardian
            // is reparented away from the gateway and is never its child.
            // SAFETY: still single-threaded (a fork of a single-threaded process).
            match unsafe { nix::unistd::fork() } {
                Ok(ForkResult::Child) => guard(read_end),
                _ => exit_now(),
            }
        }
        ForkResult::Parent { child } => {
            drop(read_end);
            // Reap the intermediate child (it exits at once).
            let _ = nix::sys::wait::waitpid(child, None);
            let _ = LIFELINE.set(Mutex::new(File::from(write_end)));
            Ok(())
        }
    }
}

/// Registers the process group a stdio server leads.
pub fn watch(group: u32) {
    send(b'+', group);
}

/// Unregisters a group once its leader is reaped and the group was killed.
pub fn forget(group: u32) {
    send(b'-', group);
}

fn send(op: u8, group: u32) {
    let Some(lifeline) = LIFELINE.get() else {
        return;
    };
    let mut record = [0u8; 5];
    record[0] = op;
    record[1..].copy_from_slice(&group.to_le_bytes());
    if let Err(error) = lifeline.lock().write_all(&record) {
        tracing::warn!(%error, group, "guardian unreachable: this server may outlive a killed gateway");
    }
}

/// The guardian's life: collect groups until the pipe closes, then kill them all.
fn guard(lifeline: OwnedFd) -> ! {
    // Out of the gateway's process group: `kill -9 -<gateway group>` must not take us too.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // Hold none of the gateway's standard streams: a client waiting for EOF on the
    // gateway's stdout must not wait for us.
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd as _;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            #[allow(unsafe_code)]
            unsafe {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
    for signal in [Signal::SIGINT, Signal::SIGHUP, Signal::SIGTERM] {
        // SAFETY: installs SIG_IGN, no handler code runs.
        #[allow(unsafe_code)]
        unsafe {
            let _ = nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigIgn);
        }
    }
    let mut lifeline = File::from(lifeline);
    let mut groups: HashSet<u32> = HashSet::new();
    let mut record = [0u8; 5];
    while lifeline.read_exact(&mut record).is_ok() {
        let group = u32::from_le_bytes([record[1], record[2], record[3], record[4]]);
        match record[0] {
            b'+' => groups.insert(group),
            _ => groups.remove(&group),
        };
    }
    for group in groups {
        if let Ok(group) = i32::try_from(group)
            && group > 1
        {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
    exit_now()
}

/// Exits without running exit handlers or flushing buffers inherited from the gateway.
#[allow(unsafe_code)]
fn exit_now() -> ! {
    // SAFETY: _exit(2) ends the process at once; nothing of ours runs after it.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_a_guardian_registration_is_a_no_op() {
        // Tests run multi-threaded, so `start` is never called here.
        super::watch(123_456);
        super::forget(123_456);
    }
}
