//! What `/proc` says about the process under test: its descendants (the upstream children a
//! gateway spawned, and theirs), resident memory, CPU time and context switches. Linux only,
//! read-only.

use std::collections::HashMap;
use std::fs;

/// Clock ticks per second of `/proc/PID/stat` times. The kernel reports them in USER_HZ,
/// which is 100 on every Linux architecture we run on.
const TICKS_PER_SECOND: f64 = 100.0;

/// `(pid, parent pid)` for every process visible in `/proc`.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return map;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = Stat::read(pid) {
            map.insert(pid, stat.parent);
        }
    }
    map
}

/// Every process descended from `root` (children, grandchildren, ...), `root` excluded.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents = parents();
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &parent) in &parents {
        children.entry(parent).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            stack.push(child);
        }
    }
    found.sort_unstable();
    found
}

/// The fields of `/proc/PID/stat` we use.
struct Stat {
    parent: u32,
    cpu_ticks: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may contain spaces: split after the last ')'.
        let rest = &text[text.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        // After the name: state(0) ppid(1) ... utime(11) stime(12).
        Some(Stat {
            parent: fields.get(1)?.parse().ok()?,
            cpu_ticks: fields.get(11)?.parse::<u64>().ok()?
                + fields.get(12)?.parse::<u64>().ok()?,
        })
    }
}

/// User + system CPU seconds used by `pid` so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    Stat::read(pid).map(|stat| stat.cpu_ticks as f64 / TICKS_PER_SECOND)
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident set size now, in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// Peak resident set size, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// Context switches of a process so far, summed over its live threads (`/proc/PID/task/*/status`;
/// the kernel keeps them per thread, so a thread that has exited takes its count with it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Switches {
    /// The thread blocked (waited for I/O, a lock, a wake-up).
    pub voluntary: u64,
    /// The scheduler took the core away while the thread could still run.
    pub involuntary: u64,
}

/// The context switches of `pid`'s live threads so far.
pub fn switches(pid: u32) -> Option<Switches> {
    let mut total = Switches::default();
    for entry in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        // A thread may exit between the listing and the read: skip it.
        let Ok(text) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        for line in text.lines() {
            let count = |rest: &str| rest.trim().parse::<u64>().unwrap_or(0);
            if let Some(rest) = line.strip_prefix("voluntary_ctxt_switches:") {
                total.voluntary += count(rest);
            } else if let Some(rest) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
                total.involuntary += count(rest);
            }
        }
    }
    Some(total)
}

/// The summed RSS of several processes, in KiB.
pub fn total_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&pid| rss_kib(pid)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ourselves() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(peak_rss_kib(me).unwrap() >= rss_kib(me).unwrap() / 2);
        assert!(cpu_seconds(me).is_some());
        let before = switches(me).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(switches(me).unwrap().voluntary > before.voluntary);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(descendants(me).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
