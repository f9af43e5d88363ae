//! The SSE parser of upstream response streams: any bytes, split into chunks anywhere,
//! give the same events, last event id and retry as the bytes fed at once, and no event
//! holds more than the bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::chunks;
use switchboard_upstream::fuzzing::sse;

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
