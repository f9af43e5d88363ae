//! Server-Sent Events: an incremental, size-bounded parser used on Streamable HTTP
//! response streams, and the deprecated 2024-11-05 HTTP+SSE transport (GET opens the
//! stream, its `endpoint` event names the URL to POST messages to).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use switchboard_protocol::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::mux::Mux;
use crate::{ConnectError, ConnectOptions, UpstreamEvent};

/// One dispatched SSE event.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SseEvent {
    pub(crate) event: String,
    pub(crate) data: String,
    pub(crate) id: Option<String>,
}

/// Incremental SSE parser; `limit` bounds one event's data.
pub(crate) struct SseParser {
    line: Vec<u8>,
    current: SseEvent,
    has_data: bool,
    limit: usize,
    /// The stream's last event id (the SSE "last event ID buffer"): what a reconnection
    /// names in `Last-Event-ID`. Set by any `id` field, also on events without data.
    last_event_id: Option<String>,
    /// The reconnection delay the server asked for with a `retry` field.
    retry: Option<std::time::Duration>,
    /// The last byte ended a line with CR: an LF right after it belongs to that line end.
    after_cr: bool,
    /// How many bytes of a leading UTF-8 byte order mark were seen; `None` once the
    /// stream's start is behind (a BOM is skipped only there).
    bom: Option<usize>,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

#[derive(Debug, PartialEq)]
pub(crate) struct EventTooLarge;

impl SseParser {
    pub(crate) fn new(limit: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            current: SseEvent::default(),
            has_data: false,
            limit,
            last_event_id: None,
            retry: None,
            after_cr: false,
            bom: Some(0),
        }
    }

    /// A parser for a resumed stream, remembering what the previous one saw.
    pub(crate) fn resumed(previous: &SseParser) -> SseParser {
        let mut parser = SseParser::new(previous.limit);
        parser.last_event_id = previous.last_event_id.clone();
        parser.retry = previous.retry;
        parser
    }

    pub(crate) fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    pub(crate) fn retry(&self) -> Option<std::time::Duration> {
        self.retry
    }

    /// Feeds bytes; returns the events completed by them. Lines end with CRLF, LF or a
    /// lone CR (as the SSE specification says), also when a chunk splits a CRLF; one
    /// leading byte order mark is skipped.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, EventTooLarge> {
        let mut events = Vec::new();
        for &byte in chunk {
            if let Some(seen) = self.bom {
                if byte == BOM[seen] {
                    self.bom = (seen + 1 < BOM.len()).then_some(seen + 1);
                    continue;
                }
                // Not a BOM after all: what looked like its start is content.
                self.bom = None;
                for &earlier in &BOM[..seen] {
                    self.byte(earlier, &mut events)?;
                }
            }
            self.byte(byte, &mut events)?;
        }
        Ok(events)
    }

    fn byte(&mut self, byte: u8, events: &mut Vec<SseEvent>) -> Result<(), EventTooLarge> {
        let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
        match byte {
            b'\n' if after_cr => {}
            b'\n' | b'\r' => {
                let line = std::mem::take(&mut self.line);
                if let Some(event) = self.take_line(&line)? {
                    events.push(event);
                }
            }
            _ => {
                self.line.push(byte);
                if self.line.len() + self.current.data.len() > self.limit {
                    return Err(EventTooLarge);
                }
            }
        }
        Ok(())
    }

    fn take_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, EventTooLarge> {
        if line.is_empty() {
            if !self.has_data {
                self.current = SseEvent::default();
                return Ok(None);
            }
            self.has_data = false;
            let mut event = std::mem::take(&mut self.current);
            if event.event.is_empty() {
                event.event = "message".into();
            }
            return Ok(Some(event));
        }
        if line[0] == b':' {
            return Ok(None); // comment / keep-alive
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (
                field.to_owned(),
                value.strip_prefix(' ').unwrap_or(value).to_owned(),
            ),
            None => (text.into_owned(), String::new()),
        };
        match field.as_str() {
            "data" => {
                // Invalid UTF-8 decodes to U+FFFD, longer than the byte it replaces: the
                // bound holds for the decoded data too.
                if self.current.data.len() + usize::from(self.has_data) + value.len() > self.limit {
                    return Err(EventTooLarge);
                }
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            "event" => self.current.event = value,
            "id" if !value.contains('\0') => {
                self.last_event_id = Some(value.clone());
                self.current.id = Some(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse::<u64>() {
                    self.retry = Some(std::time::Duration::from_millis(ms));
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

/// A connection over the 2024-11-05 HTTP+SSE transport.
pub(crate) struct SseLink {
    pub(crate) mux: Arc<Mux>,
    stop: CancellationToken,
}

impl SseLink {
    pub(crate) async fn connect(
        options: &ConnectOptions,
        url: &str,
        headers: &BTreeMap<String, switchboard_config::Secret<String>>,
        events: mpsc::Sender<UpstreamEvent>,
    ) -> Result<SseLink, ConnectError> {
        let client = crate::http::client();
        let header_map = crate::http::header_map(headers).map_err(ConnectError::Http)?;
        let response = client
            .get(url)
            .headers(header_map.clone())
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| ConnectError::Http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(ConnectError::Http(format!(
                "GET {url} answered {}",
                response.status()
            )));
        }
        let base = response.url().clone();
        let mut stream = response.bytes_stream();
        let mut parser = SseParser::new(options.max_message_bytes);
        // The first event must name the endpoint to POST to.
        let endpoint = 'found: loop {
            let Some(chunk) = stream.next().await else {
                return Err(ConnectError::Closed(
                    "SSE stream ended before the endpoint event".into(),
                ));
            };
            let chunk = chunk.map_err(|e| ConnectError::Http(e.to_string()))?;
            let parsed = parser
                .push(&chunk)
                .map_err(|_| ConnectError::Handshake("oversized SSE event".into()))?;
            for event in parsed {
                if event.event == "endpoint" {
                    break 'found base
                        .join(event.data.trim())
                        .map_err(|e| ConnectError::Handshake(format!("bad endpoint URL: {e}")))?;
                }
            }
        };
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(1024);
        let mux = Arc::new(Mux::new(options.server.clone(), out_tx, events));
        let stop = CancellationToken::new();
        // Writer: POSTs messages one at a time, in order.
        {
            let mux = mux.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    let body = tokio::select! {
                        body = out_rx.recv() => body,
                        () = stop.cancelled() => None,
                    };
                    let Some(body) = body else { break };
                    let sent = client
                        .post(endpoint.clone())
                        .headers(header_map.clone())
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().is_success() => {}
                        Ok(response) => {
                            tracing::warn!(server = %mux.server, status = %response.status(), "SSE upstream refused a message")
                        }
                        Err(error) => {
                            mux.close(&format!("POST failed: {error}"));
                            break;
                        }
                    }
                }
            });
        }
        // Reader: every `message` event is one JSON-RPC message.
        {
            let mux = mux.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let reason = loop {
                    let chunk = tokio::select! {
                        chunk = stream.next() => chunk,
                        () = stop.cancelled() => break "stopped".to_owned(),
                    };
                    let chunk = match chunk {
                        Some(Ok(chunk)) => chunk,
                        Some(Err(error)) => break format!("SSE stream failed: {error}"),
                        None => break "SSE stream ended".to_owned(),
                    };
                    let Ok(events) = parser.push(&chunk) else {
                        break "oversized SSE event".to_owned();
                    };
                    for event in events.into_iter().filter(|e| e.event == "message") {
                        match Message::parse(event.data.as_bytes()) {
                            Ok(message) => mux.handle(message).await,
                            Err(error) => {
                                tracing::warn!(server = %mux.server, %error, "bad message on SSE stream")
                            }
                        }
                    }
                };
                mux.close(&reason);
            });
        }
        Ok(SseLink { mux, stop })
    }

    pub(crate) fn shutdown(&self) {
        self.mux.close("server stopped");
        self.stop.cancel();
    }
}

impl Drop for SseLink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_across_chunks() {
        let mut parser = SseParser::new(1024);
        assert!(
            parser
                .push(b": keep-alive\n\nevent: endpoint\ndata: /message?s")
                .unwrap()
                .is_empty()
        );
        let events = parser
            .push(b"=1\n\ndata: {\"a\":\ndata: 1}\r\n\r\n")
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "endpoint");
        assert_eq!(events[0].data, "/message?s=1");
        assert_eq!(events[1].event, "message");
        assert_eq!(events[1].data, "{\"a\":\n1}");
        let mut small = SseParser::new(8);
        assert_eq!(small.push(b"data: 0123456789\n"), Err(EventTooLarge));
    }

    #[test]
    fn invalid_utf8_cannot_grow_an_event_past_the_bound() {
        // Found by the `sse` fuzz target: each invalid byte becomes U+FFFD (3 bytes), so
        // data bounded only in raw bytes reached 3 times the bound.
        let mut stream = b"data:".to_vec();
        stream.extend([0xff; 40]);
        stream.extend(b"\n\n");
        assert_eq!(SseParser::new(51).push(&stream), Err(EventTooLarge));
        let mut parser = SseParser::new(51);
        assert_eq!(parser.push(b"data:\xff\n\n").unwrap()[0].data, "\u{fffd}");
    }

    #[test]
    fn a_lone_cr_ends_a_line_and_a_split_crlf_is_one_line_end() {
        let mut parser = SseParser::new(1024);
        let events = parser.push(b"data: a\rdata: b\r\rdata: c\r").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a\nb");
        // The CR of a CRLF ends one chunk, its LF starts the next: one line end, not two.
        assert!(parser.push(b"\ndata: d\r").unwrap().is_empty());
        let events = parser.push(b"\n\r\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "c\nd");
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped_once() {
        for split in 0..=3 {
            let stream = b"\xEF\xBB\xBFdata: x\n\n";
            let mut parser = SseParser::new(1024);
            let mut events = parser.push(&stream[..split]).unwrap();
            events.extend(parser.push(&stream[split..]).unwrap());
            assert_eq!(events.len(), 1, "split at {split}");
            assert_eq!(events[0].data, "x");
        }
        // Only at the start: a later BOM is data; a partial one at the start is content.
        let mut parser = SseParser::new(1024);
        let events = parser.push(b"data: \xEF\xBB\xBFy\n\n").unwrap();
        assert_eq!(events[0].data, "\u{feff}y");
        let mut parser = SseParser::new(1024);
        let events = parser.push(b"\xEFdata: z\n\n").unwrap();
        assert!(events.is_empty(), "the field name is not `data`");
    }

    #[test]
    fn remembers_last_event_id_and_retry() {
        let mut parser = SseParser::new(1024);
        let events = parser.push(b"id: e-1\nretry: 500\ndata: \n\n").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "");
        assert_eq!(parser.last_event_id(), Some("e-1"));
        assert_eq!(parser.retry(), Some(std::time::Duration::from_millis(500)));
        parser.push(b"retry: soon\nid: e-2\n\n").unwrap();
        assert_eq!(parser.last_event_id(), Some("e-2"));
        assert_eq!(parser.retry(), Some(std::time::Duration::from_millis(500)));
        let resumed = SseParser::resumed(&parser);
        assert_eq!(resumed.last_event_id(), Some("e-2"));
    }
}
