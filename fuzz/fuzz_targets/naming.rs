//! Namespacing of names and URIs: for any set of (server, name) entries the prefixed
//! table gives every entry a distinct, client-safe exposed name that resolves back to it,
//! whatever the order of the entries; exposed resource URIs split back into their parts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::naming::{NameTable, Qualified, is_client_safe};
use switchboard_protocol::uri;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Lines are entries, `server<TAB>name`; server names never contain `/` or `__`.
    let entries: Vec<Qualified> = text
        .lines()
        .take(64)
        .map(|line| {
            let (server, name) = line.split_once('\t').unwrap_or(("srv", line));
            Qualified {
                server: server.replace(['/', '_'], "-"),
                name: name.to_owned(),
            }
        })
        .collect();
    let table = NameTable::prefixed(entries.clone());
    let reversed = NameTable::prefixed(entries.iter().rev().cloned());
    let mut exposed_names = std::collections::HashSet::new();
    for entry in &entries {
        let exposed = table
            .exposed(&entry.server, &entry.name)
            .expect("every entry named");
        assert!(is_client_safe(exposed), "unsafe exposed name {exposed:?}");
        assert_eq!(table.resolve(exposed), Some(entry));
        assert_eq!(reversed.exposed(&entry.server, &entry.name), Some(exposed));
        exposed_names.insert(exposed.to_owned());
        if !entry.server.is_empty() && !entry.name.is_empty() {
            let exposed_uri = uri::expose(&entry.server, &entry.name);
            assert_eq!(
                uri::resolve(&exposed_uri),
                Some((entry.server.as_str(), entry.name.as_str()))
            );
        }
    }
    assert_eq!(exposed_names.len(), table.len());
    let _ = uri::resolve(&text);
});
