//! Entry points for the fuzz targets in `fuzz/`: this crate's parsers of untrusted bytes
//! (the SSE parser, the stdio line framer), driven to completion over given input. Not
//! part of the crate's API.

use std::time::Duration;

use tokio::io::AsyncBufRead;

use crate::framing::{Frame, Framer};
use crate::sse::SseParser;

/// One SSE event as the parser dispatched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// What an SSE stream fed in `chunks` produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseOutcome {
    pub events: Vec<Event>,
    /// The parser refused an event over `limit` (it stops there).
    pub too_large: bool,
    pub last_event_id: Option<String>,
    pub retry: Option<Duration>,
}

/// Feeds `chunks` to an SSE parser bounded by `limit`, in order.
pub fn sse<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, limit: usize) -> SseOutcome {
    let mut parser = SseParser::new(limit);
    let mut events = Vec::new();
    let mut too_large = false;
    for chunk in chunks {
        match parser.push(chunk) {
            Ok(parsed) => events.extend(parsed.into_iter().map(|e| Event {
                event: e.event,
                data: e.data,
                id: e.id,
            })),
            Err(_) => {
                too_large = true;
                break;
            }
        }
    }
    SseOutcome {
        events,
        too_large,
        last_event_id: parser.last_event_id().map(str::to_owned),
        retry: parser.retry(),
    }
}

/// One frame of newline-delimited input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Framed {
    Line(Vec<u8>),
    Oversized,
}

/// Frames everything `reader` yields with a framer bounded by `limit`, up to its end.
pub async fn frames<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Vec<Framed>> {
    let mut framer = Framer::new(limit);
    let mut out = Vec::new();
    loop {
        match framer.next(reader).await? {
            Frame::Line(line) => out.push(Framed::Line(line)),
            Frame::Oversized { .. } => out.push(Framed::Oversized),
            Frame::Eof => return Ok(out),
        }
    }
}
