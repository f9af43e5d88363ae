//! The SSE parser of upstream response streams: any bytes, split into chunks anywhere,
//! give the same events, last event id and retry as the bytes fed at once, and no event
//! holds more than the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_upstream::fuzzing::sse;

/// Splits `bytes` into chunks of 1..=17 bytes drawn from `seed`.
fn chunks(bytes: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut state = u32::from(seed) | 0x100;
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = (state % 17 + 1) as usize;
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [bound, seed, stream @ ..] = data else {
        return;
    };
    let limit = if *bound < 128 {
        usize::from(*bound) + 1
    } else {
        1 << 16
    };
    let whole = sse([stream], limit);
    let split = sse(chunks(stream, *seed), limit);
    assert_eq!(
        whole.too_large, split.too_large,
        "the bound depends on chunking"
    );
    assert_eq!(whole.last_event_id, split.last_event_id);
    assert_eq!(whole.retry, split.retry);
    if !whole.too_large {
        assert_eq!(whole.events, split.events, "events depend on chunking");
    }
    for event in &split.events {
        assert!(event.data.len() <= limit, "event over the bound");
        assert!(!event.event.is_empty(), "event without a type");
        assert!(event.id.as_ref().is_none_or(|id| !id.contains('\0')));
    }
});
