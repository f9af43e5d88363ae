//! The Landlock ruleset of a sandboxed server, built in the parent (the child only
//! enforces it): file system rules for the `read_only` and `writable` paths, and, when the
//! network is off but no network namespace can be made, rules that deny TCP bind and
//! connect (and connecting to abstract Unix sockets outside the sandbox).
//!
//! The ruleset handles every access right of the kernel's ABI (up to the newest the
//! `landlock` crate knows), so rights added by newer kernels are denied too unless
//! granted. A file system policy always grants the harmless devices nearly every program
//! opens ([`DEVICES`]), as systemd's `PrivateDevices=` does.

use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};
use switchboard_config::FsPolicy;

/// The crate's ABI for the kernel's version number (capped at the newest it knows).
pub(crate) fn abi(version: i32) -> ABI {
    match version {
        ..=0 => ABI::Unsupported,
        1 => ABI::V1,
        2 => ABI::V2,
        3 => ABI::V3,
        4 => ABI::V4,
        5 => ABI::V5,
        6 => ABI::V6,
        7 => ABI::V7,
        8 => ABI::V8,
        9 => ABI::V9,
        _ => ABI::V10,
    }
}

/// Devices every file system policy grants: read and write for the sinks and sources of
/// zeroes, read for the random sources.
pub(crate) const DEVICES: [(&str, bool); 5] = [
    ("/dev/null", true),
    ("/dev/zero", true),
    ("/dev/full", true),
    ("/dev/random", false),
    ("/dev/urandom", false),
];

/// First ABI with TCP rules.
pub(crate) const NET_ABI: i32 = 4;
/// First ABI with scopes (abstract Unix sockets, signals).
const SCOPE_ABI: i32 = 6;

/// A ruleset ready to be enforced, and the paths it skipped.
pub(crate) struct Built {
    pub(crate) fd: OwnedFd,
    /// Configured paths that do not exist (granted nothing).
    pub(crate) missing: Vec<String>,
}

/// Builds the ruleset for kernel ABI `version`.
pub(crate) fn build(
    filesystem: Option<&FsPolicy>,
    deny_network: bool,
    version: i32,
) -> Result<Built, String> {
    let abi = abi(version);
    let failed = |error: landlock::RulesetError| format!("Landlock ruleset: {error}");
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if filesystem.is_some() {
        ruleset = ruleset
            .handle_access(AccessFs::from_all(abi))
            .map_err(failed)?;
    }
    if deny_network {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(failed)?;
        if version >= SCOPE_ABI {
            ruleset = ruleset.scope(Scope::AbstractUnixSocket).map_err(failed)?;
        }
    }
    let mut created = ruleset.create().map_err(failed)?;
    let mut missing = Vec::new();
    if let Some(filesystem) = filesystem {
        let grants = [
            (&filesystem.read_only, AccessFs::from_read(abi)),
            (&filesystem.writable, AccessFs::from_all(abi)),
        ];
        for (paths, access) in grants {
            for path in paths {
                let Some((fd, access)) = open_beneath(path, access, abi) else {
                    missing.push(path.display().to_string());
                    continue;
                };
                created = created
                    .add_rule(PathBeneath::new(fd, access))
                    .map_err(|error| format!("Landlock rule for {}: {error}", path.display()))?;
            }
        }
        for (device, writable) in DEVICES {
            let access = match writable {
                true => AccessFs::from_all(abi),
                false => AccessFs::from_read(abi),
            };
            if let Some((fd, access)) = open_beneath(Path::new(device), access, abi) {
                created = created
                    .add_rule(PathBeneath::new(fd, access))
                    .map_err(|error| format!("Landlock rule for {device}: {error}"))?;
            }
        }
    }
    let fd: Option<OwnedFd> = created.into();
    let fd = fd.ok_or_else(|| "the kernel did not create a Landlock ruleset".to_owned())?;
    Ok(Built { fd, missing })
}

/// An `O_PATH` descriptor of `path` and the rights that apply to it (a file takes only
/// file rights); `None` when it does not exist.
fn open_beneath(
    path: &Path,
    access: BitFlags<AccessFs>,
    abi: ABI,
) -> Option<(PathFd, BitFlags<AccessFs>)> {
    let metadata = std::fs::metadata(path).ok()?;
    let access = match metadata.is_dir() {
        true => access,
        false => access & AccessFs::from_file(abi),
    };
    Some((PathFd::new(path).ok()?, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_map_to_the_crate_abi() {
        assert_eq!(abi(0), ABI::Unsupported);
        assert_eq!(abi(4), ABI::V4);
        assert_eq!(abi(7), ABI::V7);
        assert_eq!(abi(42), ABI::V10);
    }

    #[test]
    fn a_ruleset_skips_paths_that_do_not_exist() {
        let Ok(version) = crate::sandbox::child::landlock_abi() else {
            eprintln!("skipped: this kernel has no Landlock");
            return;
        };
        let policy = FsPolicy {
            read_only: vec!["/usr".into(), "/definitely/not/here".into()],
            writable: vec![std::env::temp_dir()],
        };
        let built = build(Some(&policy), version >= NET_ABI, version).unwrap();
        assert_eq!(built.missing, vec!["/definitely/not/here".to_owned()]);
    }
}
