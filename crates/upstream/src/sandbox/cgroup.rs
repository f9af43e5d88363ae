//! cgroups for sandboxed servers: one group per server instance, under the gateway's own
//! cgroup, holding the instance's process and everything it starts.
//!
//! Each controller (memory, pids, cpu) is used where this machine offers it: on the
//! unified (v2) hierarchy when our cgroup lists it in `cgroup.controllers`, else on a v1
//! hierarchy mounted with it (hybrid layouts, where memory or pids are still bound to
//! v1). On v2 the controllers must be enabled in our cgroup's `cgroup.subtree_control`,
//! which the kernel refuses while our cgroup holds processes ("no internal processes");
//! when every process in it runs our own executable (the gateway and its guardian) they
//! are moved to a leaf `switchboard-gateway` first, otherwise the cgroup is not used and
//! the report says why. Whether a controller is usable is decided once per process, by
//! actually creating (and removing) a probe group.
//!
//! An instance's group is removed when the instance ends: what is left in it is killed
//! first (`cgroup.kill` on v2, SIGKILL to each member on v1), so nothing escapes the
//! process group and the guardian by leaving it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// The controllers a sandbox uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// Which cgroup hierarchy a controller lives on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        }
    }
}

/// Our own cgroup on the hierarchy that has a controller.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Hierarchy {
    version: Version,
    own: PathBuf,
}

/// Where each controller can be used, and the ones made ready so far.
#[derive(Debug)]
pub(crate) struct Cgroups {
    found: BTreeMap<Controller, Result<Hierarchy, String>>,
    ready: Mutex<BTreeMap<Controller, Result<Hierarchy, String>>>,
}

/// A value to write into one controller's files.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Setting {
    Memory(u64),
    Pids(u64),
    /// Thousandths of a CPU.
    Cpu(u32),
}

impl Setting {
    fn controller(self) -> Controller {
        match self {
            Setting::Memory(_) => Controller::Memory,
            Setting::Pids(_) => Controller::Pids,
            Setting::Cpu(_) => Controller::Cpu,
        }
    }
}

/// Enforcement events the kernel counted in an instance's groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Processes the OOM killer stopped at the memory limit.
    pub oom_kills: u64,
    /// `fork`/`clone` calls refused at the process limit.
    pub fork_refusals: u64,
}

impl Counters {
    /// What happened since `earlier`.
    pub fn since(self, earlier: Counters) -> Counters {
        Counters {
            oom_kills: self.oom_kills.saturating_sub(earlier.oom_kills),
            fork_refusals: self.fork_refusals.saturating_sub(earlier.fork_refusals),
        }
    }

    pub fn is_zero(self) -> bool {
        self == Counters::default()
    }
}

const CPU_PERIOD_US: u64 = 100_000;
/// `SWITCHBOARD_SANDBOX_CGROUPS=off` keeps the gateway from creating cgroups.
pub(crate) const DISABLE_VARIABLE: &str = "SWITCHBOARD_SANDBOX_CGROUPS";
/// Name of the leaf the gateway's own processes move to on cgroup v2.
const GATEWAY_LEAF: &str = "switchboard-gateway";
/// Prefix of every group we create (`switchboard-<gateway pid>-<server>-<n>`).
const PREFIX: &str = "switchboard-";

impl Cgroups {
    /// Reads `/proc/self/mountinfo` and `/proc/self/cgroup`, unless the operator turned
    /// cgroups off ([`DISABLE_VARIABLE`]`=off`: sandboxes then use rlimits only).
    pub(crate) fn discover() -> Cgroups {
        if std::env::var(DISABLE_VARIABLE).is_ok_and(|value| value == "off") {
            let off = format!("cgroups are turned off ({DISABLE_VARIABLE}=off)");
            return Cgroups {
                found: [Controller::Memory, Controller::Pids, Controller::Cpu]
                    .into_iter()
                    .map(|controller| (controller, Err(off.clone())))
                    .collect(),
                ready: Mutex::new(BTreeMap::new()),
            };
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Cgroups::from_tables(&mountinfo, &membership, &|path| {
            std::fs::read_to_string(path).ok()
        })
    }

    fn from_tables(
        mountinfo: &str,
        membership: &str,
        read: &dyn Fn(&Path) -> Option<String>,
    ) -> Cgroups {
        let mounts = parse_mounts(mountinfo);
        let groups = parse_membership(membership);
        let mut found = BTreeMap::new();
        for controller in [Controller::Memory, Controller::Pids, Controller::Cpu] {
            found.insert(controller, locate(controller, &mounts, &groups, read));
        }
        Cgroups {
            found,
            ready: Mutex::new(BTreeMap::new()),
        }
    }

    /// The hierarchy and our cgroup for `controller`, ready for groups to be created in it
    /// (decided once; the first call may enable controllers and move our processes).
    pub(crate) fn usable(&self, controller: Controller) -> Result<(Version, PathBuf), String> {
        let mut ready = self.ready.lock();
        let entry = ready.entry(controller).or_insert_with(|| {
            let hierarchy = self.found.get(&controller).cloned().unwrap_or_else(|| {
                Err(format!(
                    "no cgroup hierarchy has the {} controller",
                    controller.name()
                ))
            })?;
            prepare(controller, &hierarchy)?;
            Ok(hierarchy)
        });
        entry
            .as_ref()
            .map(|hierarchy| (hierarchy.version, hierarchy.own.clone()))
            .map_err(Clone::clone)
    }
}

/// One mount of a cgroup file system: its root within the hierarchy, where it is mounted,
/// its version and (v1) the controllers bound to it.
#[derive(Debug, PartialEq)]
struct Mount {
    root: String,
    point: PathBuf,
    version: Version,
    controllers: Vec<String>,
}

fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(kind)) = (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        let version = match *kind {
            "cgroup2" => Version::V2,
            "cgroup" => Version::V1,
            _ => continue,
        };
        let controllers = right
            .get(2)
            .map(|options| options.split(',').map(str::to_owned).collect())
            .unwrap_or_default();
        mounts.push(Mount {
            root: unescape(root),
            point: PathBuf::from(unescape(point)),
            version,
            controllers,
        });
    }
    mounts
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest
            .get(at + 1..at + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `/proc/self/cgroup`: controllers (empty for v2) → our path in that hierarchy.
fn parse_membership(membership: &str) -> Vec<(Vec<String>, String)> {
    membership
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let _id = fields.next()?;
            let controllers = fields.next()?;
            let path = fields.next()?;
            let controllers = controllers
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            Some((controllers, path.to_owned()))
        })
        .collect()
}

/// Our cgroup's directory under `mount`, given our path in its hierarchy.
fn own_dir(mount: &Mount, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(mount.root.as_str())
        .unwrap_or(path)
        .trim_start_matches('/');
    mount.point.join(relative)
}

fn locate(
    controller: Controller,
    mounts: &[Mount],
    groups: &[(Vec<String>, String)],
    read: &dyn Fn(&Path) -> Option<String>,
) -> Result<Hierarchy, String> {
    let name = controller.name();
    let unified = mounts.iter().find(|mount| mount.version == Version::V2);
    let unified_path = groups
        .iter()
        .find(|(controllers, _)| controllers.is_empty())
        .map(|(_, path)| path);
    let mut v2_reason = None;
    if let (Some(mount), Some(path)) = (unified, unified_path) {
        let own = own_dir(mount, path);
        let available = read(&own.join("cgroup.controllers")).unwrap_or_default();
        if available.split_whitespace().any(|c| c == name) {
            return Ok(Hierarchy {
                version: Version::V2,
                own,
            });
        }
        v2_reason = Some(format!(
            "cgroup v2 at {} does not offer the {name} controller",
            own.display()
        ));
    }
    let v1 = mounts
        .iter()
        .find(|mount| mount.version == Version::V1 && mount.controllers.iter().any(|c| c == name));
    let v1_path = groups
        .iter()
        .find(|(controllers, _)| controllers.iter().any(|c| c == name))
        .map(|(_, path)| path);
    if let (Some(mount), Some(path)) = (v1, v1_path) {
        return Ok(Hierarchy {
            version: Version::V1,
            own: own_dir(mount, path),
        });
    }
    Err(v2_reason
        .unwrap_or_else(|| format!("no cgroup hierarchy with the {name} controller is mounted")))
}

/// Makes `hierarchy` ready for groups of `controller` and proves it by creating one.
fn prepare(controller: Controller, hierarchy: &Hierarchy) -> Result<(), String> {
    if hierarchy.version == Version::V2 {
        enable_v2(controller, &hierarchy.own)?;
    }
    remove_stale(&hierarchy.own);
    let probe = hierarchy.own.join(format!(
        "{PREFIX}{}-probe-{}",
        std::process::id(),
        controller.name()
    ));
    std::fs::create_dir(&probe)
        .and_then(|()| std::fs::remove_dir(&probe))
        .map_err(|error| {
            format!(
                "cannot create cgroups under {} ({}): {error}",
                hierarchy.own.display(),
                hierarchy.version.as_str()
            )
        })
}

/// Enables `controller` for our cgroup's children, moving our own processes to a leaf
/// when the kernel requires it.
fn enable_v2(controller: Controller, own: &Path) -> Result<(), String> {
    let name = controller.name();
    let subtree = own.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&subtree).unwrap_or_default();
    if enabled.split_whitespace().any(|c| c == name) {
        return Ok(());
    }
    match std::fs::write(&subtree, format!("+{name}")) {
        Ok(()) => return Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {}
        Err(error) => {
            return Err(format!(
                "cannot enable the {name} controller in {}: {error}",
                subtree.display()
            ));
        }
    }
    evacuate(own)?;
    std::fs::write(&subtree, format!("+{name}")).map_err(|error| {
        format!(
            "cannot enable the {name} controller in {}: {error}",
            subtree.display()
        )
    })
}

/// Moves every process of our cgroup into the leaf [`GATEWAY_LEAF`], if they are all ours
/// (they run our executable: the gateway and its guardian).
fn evacuate(own: &Path) -> Result<(), String> {
    let our_exe = std::fs::read_link("/proc/self/exe").map_err(|e| e.to_string())?;
    let procs = std::fs::read_to_string(own.join("cgroup.procs")).map_err(|e| e.to_string())?;
    let pids: Vec<&str> = procs.split_whitespace().collect();
    if let Some(other) = pids.iter().find(|pid| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .as_deref()
            != Some(our_exe.as_path())
    }) {
        return Err(format!(
            "the gateway's cgroup {} also holds other programs' processes (pid {other}); run \
             the gateway in a cgroup of its own, delegated to it (systemd: Delegate=yes)",
            own.display()
        ));
    }
    let leaf = own.join(GATEWAY_LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(format!("cannot create {}: {error}", leaf.display())),
    }
    for pid in pids {
        std::fs::write(leaf.join("cgroup.procs"), pid)
            .map_err(|error| format!("cannot move pid {pid} to {}: {error}", leaf.display()))?;
    }
    tracing::info!(cgroup = %leaf.display(), "moved the gateway's processes to a leaf cgroup so sandboxes can use cgroup v2 controllers");
    Ok(())
}

/// Removes empty groups left by gateways that died (their pid is gone).
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// One instance's cgroups (one directory per hierarchy used).
#[derive(Debug)]
pub(crate) struct Group {
    dirs: Vec<(Version, PathBuf)>,
    removed: bool,
}

static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

impl Group {
    /// Creates the instance's groups with `settings` and opens their `cgroup.procs` for
    /// the child to join.
    pub(crate) fn create(
        cgroups: &Cgroups,
        server: &str,
        settings: &[Setting],
    ) -> Result<(Group, Vec<OwnedFd>), String> {
        let server: String = server
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let name = format!(
            "{PREFIX}{}-{server}-{}",
            std::process::id(),
            NEXT_GROUP.fetch_add(1, Ordering::Relaxed)
        );
        let mut group = Group {
            dirs: Vec::new(),
            removed: false,
        };
        let mut procs = Vec::new();
        for setting in settings {
            let (version, parent) = cgroups.usable(setting.controller())?;
            let dir = parent.join(&name);
            if !group.dirs.iter().any(|(_, existing)| *existing == dir) {
                std::fs::create_dir(&dir)
                    .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
                group.dirs.push((version, dir.clone()));
                let file = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(dir.join("cgroup.procs"))
                    .map_err(|error| {
                        format!("cannot open {}/cgroup.procs: {error}", dir.display())
                    })?;
                procs.push(OwnedFd::from(file));
            }
            apply(version, &dir, *setting)?;
        }
        Ok((group, procs))
    }

    /// The enforcement events counted so far (0 for what this group does not limit).
    pub(crate) fn counters(&self) -> Counters {
        let mut counters = Counters::default();
        for (version, dir) in &self.dirs {
            let memory_file = match version {
                Version::V2 => "memory.events",
                Version::V1 => "memory.oom_control",
            };
            counters.oom_kills += read_field(&dir.join(memory_file), "oom_kill");
            counters.fork_refusals += read_field(&dir.join("pids.events"), "max");
        }
        counters
    }

    /// Kills whatever is left in the groups and removes them.
    pub(crate) async fn remove(mut self) {
        for (version, dir) in &self.dirs {
            if *version == Version::V2 {
                let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            }
            for _ in 0..100 {
                let members = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                if members.trim().is_empty() {
                    break;
                }
                for pid in members
                    .split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if let Err(error) = remove_dir_retrying(dir).await {
                tracing::warn!(cgroup = %dir.display(), %error, "could not remove a sandbox cgroup");
            }
        }
        self.removed = true;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.removed {
            for (_, dir) in &self.dirs {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// A group with exiting members cannot be removed for a moment (EBUSY).
async fn remove_dir_retrying(dir: &Path) -> io::Result<()> {
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) && attempt < 100 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(dir.join(file), value).map_err(|error| {
        format!(
            "cannot write {value:?} to {}/{file}: {error}",
            dir.display()
        )
    })
}

fn apply(version: Version, dir: &Path, setting: Setting) -> Result<(), String> {
    match (version, setting) {
        (Version::V2, Setting::Memory(bytes)) => {
            write(dir, "memory.max", &bytes.to_string())?;
            // The limit is RAM and swap together, and the instance dies as one.
            if dir.join("memory.swap.max").exists() {
                write(dir, "memory.swap.max", "0")?;
            }
            if dir.join("memory.oom.group").exists() {
                write(dir, "memory.oom.group", "1")?;
            }
            Ok(())
        }
        (Version::V1, Setting::Memory(bytes)) => {
            write(dir, "memory.limit_in_bytes", &bytes.to_string())?;
            if dir.join("memory.memsw.limit_in_bytes").exists() {
                write(dir, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
            }
            Ok(())
        }
        (_, Setting::Pids(count)) => write(dir, "pids.max", &count.to_string()),
        (Version::V2, Setting::Cpu(millis)) => {
            let quota = u64::from(millis) * CPU_PERIOD_US / 1000;
            write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))
        }
        (Version::V1, Setting::Cpu(millis)) => {
            let quota = u64::from(millis) * CPU_PERIOD_US / 1000;
            write(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            write(dir, "cpu.cfs_quota_us", &quota.to_string())
        }
    }
}

/// The number after `key` on its line of a flat-keyed cgroup file; 0 if absent.
fn read_field(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| field(&text, key))
        .unwrap_or(0)
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_MEMBERSHIP: &str = "\
8:pids:/
4:memory:/process_api/abc
1:cpu:/
0::/
";

    #[test]
    fn a_hybrid_layout_uses_v1_for_controllers_v2_does_not_offer() {
        let cgroups = Cgroups::from_tables(HYBRID_MOUNTS, HYBRID_MEMBERSHIP, &|path| {
            (path == Path::new("/sys/fs/cgroup/unified/cgroup.controllers"))
                .then(|| "hugetlb\n".to_owned())
        });
        let memory = cgroups.found[&Controller::Memory].clone().unwrap();
        assert_eq!(memory.version, Version::V1);
        assert_eq!(
            memory.own,
            PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
        );
        let pids = cgroups.found[&Controller::Pids].clone().unwrap();
        assert_eq!(pids.own, PathBuf::from("/sys/fs/cgroup/pids"));
    }

    #[test]
    fn a_unified_layout_uses_v2_where_the_controller_is_offered() {
        let mounts = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let membership = "0::/system.slice/switchboard.service\n";
        let cgroups = Cgroups::from_tables(mounts, membership, &|_| {
            Some("cpuset cpu io memory pids\n".to_owned())
        });
        for controller in [Controller::Memory, Controller::Pids, Controller::Cpu] {
            let found = cgroups.found[&controller].clone().unwrap();
            assert_eq!(found.version, Version::V2);
            assert_eq!(
                found.own,
                PathBuf::from("/sys/fs/cgroup/system.slice/switchboard.service")
            );
        }
        let without = Cgroups::from_tables(mounts, membership, &|_| Some("cpu\n".to_owned()));
        let reason = without.found[&Controller::Memory].clone().unwrap_err();
        assert!(
            reason.contains("does not offer the memory controller"),
            "{reason}"
        );
    }

    #[test]
    fn a_bind_mounted_hierarchy_is_joined_below_its_root() {
        let mounts = "30 25 0:26 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let cgroups = Cgroups::from_tables(mounts, "0::/outer/inner\n", &|_| {
            Some("memory\n".to_owned())
        });
        let memory = cgroups.found[&Controller::Memory].clone().unwrap();
        assert_eq!(memory.own, PathBuf::from("/sys/fs/cgroup/inner"));
    }

    #[test]
    fn counters_are_read_from_flat_keyed_files() {
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(field(events, "oom_kill"), Some(1));
        assert_eq!(field(events, "max"), Some(12));
        assert_eq!(
            field("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"),
            Some(3)
        );
        assert_eq!(field(events, "missing"), None);
        let later = Counters {
            oom_kills: 3,
            fork_refusals: 5,
        };
        let earlier = Counters {
            oom_kills: 1,
            fork_refusals: 5,
        };
        assert_eq!(
            later.since(earlier),
            Counters {
                oom_kills: 2,
                fork_refusals: 0
            }
        );
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
