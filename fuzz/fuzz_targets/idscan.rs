//! The id scanner for stdio lines too long to buffer (and unreadable ones): fed in chunks
//! of any sizes it finds what it finds in the whole line, and in a JSON object whose one
//! `"id"` is written plainly, what it finds is that object's top-level id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard_fuzz::chunks;
use switchboard_upstream::idscan::IdScanner;

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fuzz_target!(|data: &[u8]| {
    let [seed, line @ ..] = data else {
        return;
    };
    let whole = IdScanner::scan(line);
    let mut scanner = IdScanner::default();
    for chunk in chunks(line, *seed) {
        scanner.feed(chunk);
    }
    assert_eq!(scanner.finish(), whole, "the id depends on chunking");
    if let Some(found) = &whole
        && occurrences(line, b"\"id\"") == 1
        && occurrences(line, b"\\u") == 0
        && let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(line)
    {
        assert_eq!(object.get("id"), Some(found), "not the top-level id");
    }
});
