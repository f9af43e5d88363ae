//! The stdio line framing (a child's stdout): any bytes, delivered in reads of any sizes
//! (with pending reads between them) through a buffer of any capacity, frame exactly as a
//! plain split on `\n` says — a line over the bound is one `Oversized` and never a `Line`,
//! a `\r` before the `\n` is dropped, blank lines are skipped.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use libfuzzer_sys::fuzz_target;
use switchboard_upstream::fuzzing::{Framed, frames};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

/// Yields its bytes in reads of 1..=31 bytes drawn from `state`, sometimes pending first.
struct Trickle<'a> {
    rest: &'a [u8],
    state: u32,
}

impl Trickle<'_> {
    fn step(&mut self) -> u32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        self.state
    }
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let draw = self.step();
        if draw.is_multiple_of(5) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let size = ((draw >> 3) % 31 + 1) as usize;
        let size = size.min(self.rest.len()).min(buf.remaining());
        let (head, tail) = self.rest.split_at(size);
        buf.put_slice(head);
        self.rest = tail;
        Poll::Ready(Ok(()))
    }
}

fn expected(input: &[u8], limit: usize) -> Vec<Framed> {
    let mut segments: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    let tail = segments.pop().unwrap_or_default();
    let mut out = Vec::new();
    for segment in segments {
        if segment.len() > limit {
            out.push(Framed::Oversized);
            continue;
        }
        let line = segment.strip_suffix(b"\r").unwrap_or(segment);
        if !line.iter().all(u8::is_ascii_whitespace) {
            out.push(Framed::Line(line.to_vec()));
        }
    }
    // An unterminated last line is delivered as it is.
    if tail.len() > limit {
        out.push(Framed::Oversized);
    } else if !tail.is_empty() {
        out.push(Framed::Line(tail.to_vec()));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let [bound, capacity, seed, input @ ..] = data else {
        return;
    };
    let limit = usize::from(*bound % 64);
    let capacity = usize::from(*capacity % 64) + 1;
    let trickle = Trickle {
        rest: input,
        state: u32::from(*seed) | 0x100,
    };
    let mut reader = BufReader::with_capacity(capacity, trickle);
    let framed = futures::executor::block_on(frames(&mut reader, limit)).unwrap();
    assert_eq!(framed, expected(input, limit));
});
