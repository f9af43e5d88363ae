//! Namespacing of tool and prompt names: `server__name`, valid for the common client rule
//! `^[a-zA-Z0-9_-]{1,64}$`, with a reverse map so routing never splits strings.
//!
//! Invariants:
//! - The exposed name of an entry depends only on the set of entries, not on the order in
//!   which servers were added (entries are sorted before names are assigned).
//! - Distinct entries always get distinct exposed names: a collision is resolved with a
//!   deterministic hash suffix, never by dropping an entry.
//! - A name that already fits the rule keeps its readable `server__name` form unless it
//!   collides with another entry that needed no rewriting.

use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};

/// The separator between the server key and the upstream's own name.
pub const SEPARATOR: &str = "__";
/// The longest name the common client rule allows.
pub const MAX_NAME_LEN: usize = 64;

/// Whether `name` matches `^[a-zA-Z0-9_-]{1,64}$`.
pub fn is_client_safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One upstream-owned name: which server, and the name as that server spells it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Qualified {
    pub server: String,
    pub name: String,
}

/// The mapping between exposed names and upstream names for one kind (tools or prompts).
#[derive(Clone, Debug, Default)]
pub struct NameTable {
    forward: HashMap<Qualified, String>,
    reverse: HashMap<String, Qualified>,
}

impl NameTable {
    /// Builds the table for `entries` in prefixing mode.
    pub fn prefixed<I>(entries: I) -> NameTable
    where
        I: IntoIterator<Item = Qualified>,
    {
        let sorted: std::collections::BTreeSet<Qualified> = entries.into_iter().collect();
        let mut table = NameTable::default();
        // First pass: names that need no rewriting claim their readable form.
        let mut pending = Vec::new();
        let mut claimed: HashSet<String> = HashSet::new();
        let mut readable: BTreeMap<String, Vec<&Qualified>> = BTreeMap::new();
        for entry in &sorted {
            let plain = format!("{}{SEPARATOR}{}", entry.server, entry.name);
            if is_client_safe(&plain) {
                readable.entry(plain).or_default().push(entry);
            } else {
                pending.push(entry);
            }
        }
        for (plain, owners) in readable {
            // Distinct entries cannot produce the same plain name unless server names
            // contain the separator, which configuration forbids; stay safe regardless.
            if owners.len() == 1 {
                claimed.insert(plain.clone());
                table.insert(owners[0].clone(), plain);
            } else {
                pending.extend(owners);
            }
        }
        for entry in pending {
            let name = hashed_name(entry, &claimed);
            claimed.insert(name.clone());
            table.insert(entry.clone(), name);
        }
        table
    }

    /// Builds the identity table for passthrough mode (one upstream, names unchanged).
    /// Names that are not client-safe are kept as they are: the upstream chose them.
    pub fn passthrough<I>(entries: I) -> NameTable
    where
        I: IntoIterator<Item = Qualified>,
    {
        let mut table = NameTable::default();
        for entry in entries {
            let name = entry.name.clone();
            table.insert(entry, name);
        }
        table
    }

    fn insert(&mut self, entry: Qualified, exposed: String) {
        self.reverse.insert(exposed.clone(), entry.clone());
        self.forward.insert(entry, exposed);
    }

    /// The exposed name of an upstream name.
    pub fn exposed(&self, server: &str, name: &str) -> Option<&str> {
        self.forward
            .get(&Qualified {
                server: server.to_owned(),
                name: name.to_owned(),
            })
            .map(String::as_str)
    }

    /// The upstream entry behind an exposed name.
    pub fn resolve(&self, exposed: &str) -> Option<&Qualified> {
        self.reverse.get(exposed)
    }

    pub fn len(&self) -> usize {
        self.forward.len()
    }

    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }
}

/// `server__<sanitized name, truncated>_<hash>`: deterministic in the entry, unique against
/// `claimed` by lengthening the hash on the (astronomically rare) clash.
fn hashed_name(entry: &Qualified, claimed: &HashSet<String>) -> String {
    let digest = Sha256::digest(format!("{}\u{0}{}", entry.server, entry.name).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let sanitized: String = format!("{}{SEPARATOR}{}", entry.server, entry.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    for hash_len in (8..=hex.len()).step_by(4) {
        let room = MAX_NAME_LEN - 1 - hash_len;
        let stem: String = sanitized.chars().take(room).collect();
        let candidate = format!("{stem}_{}", &hex[..hash_len]);
        if !claimed.contains(&candidate) {
            return candidate;
        }
    }
    unreachable!("a 64-hex-digit SHA-256 suffix cannot collide with a claimed name")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(server: &str, name: &str) -> Qualified {
        Qualified {
            server: server.into(),
            name: name.into(),
        }
    }

    #[test]
    fn readable_names_when_safe() {
        let table = NameTable::prefixed([q("time", "get_current_time"), q("fs", "read_file")]);
        assert_eq!(
            table.exposed("time", "get_current_time"),
            Some("time__get_current_time")
        );
        assert_eq!(table.resolve("fs__read_file"), Some(&q("fs", "read_file")));
    }

    #[test]
    fn unsafe_and_long_names_are_hashed_and_reversible() {
        let long = "x".repeat(80);
        let table =
            NameTable::prefixed([q("a", "dotted.name"), q("a", "dotted_name"), q("b", &long)]);
        let dotted = table.exposed("a", "dotted.name").unwrap().to_owned();
        assert!(is_client_safe(&dotted), "{dotted}");
        assert_ne!(dotted, "a__dotted_name");
        assert_eq!(table.exposed("a", "dotted_name"), Some("a__dotted_name"));
        let long_exposed = table.exposed("b", &long).unwrap();
        assert!(is_client_safe(long_exposed) && long_exposed.len() == 64);
        assert_eq!(table.resolve(long_exposed), Some(&q("b", &long)));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn order_independent() {
        let entries = vec![
            q("a", "t.1"),
            q("b", "t"),
            q("a", "t_1"),
            q("c", &"y".repeat(70)),
        ];
        let forward = NameTable::prefixed(entries.clone());
        let backward = NameTable::prefixed(entries.iter().rev().cloned());
        for entry in &entries {
            assert_eq!(
                forward.exposed(&entry.server, &entry.name),
                backward.exposed(&entry.server, &entry.name)
            );
        }
    }

    #[test]
    fn all_exposed_names_are_unique_and_safe() {
        let mut entries = Vec::new();
        for i in 0..200 {
            entries.push(q("srv", &format!("tool.{i}")));
            entries.push(q("srv", &format!("tool_{i}")));
            entries.push(q("srv", &format!("{}{i}", "z".repeat(70))));
        }
        let table = NameTable::prefixed(entries.clone());
        let names: HashSet<&str> = entries
            .iter()
            .map(|e| table.exposed(&e.server, &e.name).unwrap())
            .collect();
        assert_eq!(names.len(), entries.len());
        assert!(names.iter().all(|n| is_client_safe(n)));
    }
}
