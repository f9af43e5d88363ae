//! Compaction: exact round trips, shorter only, never lossy.

use serde_json::{Value, json};

use super::*;

fn rows(count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| json!({ "id": i, "name": format!("item {i}"), "price": 12.50, "tags": ["a", "b"], "big": 12345678901234567890u64 }))
            .collect(),
    )
}

fn round_trip(text: &str) -> (String, Form) {
    let (compacted, form) = compact(text).expect("compacted");
    assert!(compacted.len() < text.len());
    let original: Value = serde_json::from_str(text).unwrap();
    let decoded = expand(&serde_json::from_str(&compacted).unwrap());
    assert_eq!(decoded, original, "round trip");
    // Exactly: the same text when both are written the same way (order, numbers).
    assert_eq!(
        serde_json::to_string(&decoded).unwrap(),
        serde_json::to_string(&original).unwrap()
    );
    (compacted, form)
}

#[test]
fn uniform_arrays_become_tables_and_round_trip_exactly() {
    let text = serde_json::to_string_pretty(&json!({ "results": rows(20), "total": 20 })).unwrap();
    let (compacted, form) = round_trip(&text);
    assert_eq!(form, Form::Table);
    assert!(compacted.contains("\"@table\""), "{compacted}");
    assert!(
        compacted.contains("12345678901234567890"),
        "numbers keep their text"
    );
    // Nested uniform arrays inside rows are tables too.
    let nested = json!([
        { "k": 1, "children": [{ "x": 1, "y": 2 }, { "x": 3, "y": 4 }, { "x": 5, "y": 6 }] },
        { "k": 2, "children": [{ "x": 7, "y": 8 }, { "x": 9, "y": 10 }, { "x": 11, "y": 12 }] },
        { "k": 3, "children": [] }
    ]);
    round_trip(&serde_json::to_string_pretty(&nested).unwrap());
}

#[test]
fn other_json_is_minified_when_that_is_shorter() {
    // Objects with different keys: no table, but whitespace goes.
    let mixed =
        json!([{ "a": 1 }, { "b": "two" }, { "a": 3, "c": [1, 2, 3] }, "text", 4.0e10, null]);
    let text =
        serde_json::to_string_pretty(&json!({ "mixed": mixed, "pad": "x".repeat(200) })).unwrap();
    let (_, form) = round_trip(&text);
    assert_eq!(form, Form::Minified);
    // Floats, escapes and unicode survive.
    let text = format!(
        "{{\n  \"f\": 1.000,\n  \"e\": \"tab\\t quote\\\" é \\u00e9\",\n  \"pad\": \"{}\"\n}}",
        "y".repeat(300)
    );
    let (compacted, _) = round_trip(&text);
    assert!(compacted.contains("1.000"), "{compacted}");
}

#[test]
fn skipped_when_not_shorter_not_json_or_not_lossless() {
    // Already minified: nothing shorter.
    let minified = serde_json::to_string(&json!({ "pad": "z".repeat(400), "a": [1, 2] })).unwrap();
    assert!(compact(&minified).is_none());
    // Not JSON, or too short to bother.
    assert!(compact(&format!("plain text {}", "w".repeat(400))).is_none());
    assert!(compact(&format!("{{ \"broken\": {} ", "1".repeat(400))).is_none());
    assert!(compact("[ 1, 2, 3 ]").is_none());
    // Repeated keys would be merged by parsing: left alone.
    let repeated = format!(
        "{{ \"a\": 1,\n  \"a\": 2,\n  \"pad\": \"{}\" }}",
        "q".repeat(300)
    );
    assert!(compact(&repeated).is_none());
    // A value that already speaks the table key is only ever minified.
    let text = serde_json::to_string_pretty(&json!({ "@table": 1, "rows": rows(10) })).unwrap();
    assert_eq!(round_trip(&text).1, Form::Minified);
}

#[test]
fn tokens_are_estimated_and_saved() {
    assert_eq!(estimate_tokens(""), 0);
    assert_eq!(estimate_tokens("{}"), 2);
    assert_eq!(estimate_tokens("abcdefgh 123456"), 2 + 1 + 2);
    let text = serde_json::to_string_pretty(&rows(50)).unwrap();
    let (compacted, _) = compact(&text).unwrap();
    assert!(estimate_tokens(&compacted) < estimate_tokens(&text) / 2);
}
