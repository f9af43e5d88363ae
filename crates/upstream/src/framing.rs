//! Bounded newline framing for newline-delimited JSON-RPC (a child's stdout, the stdio
//! face's stdin): a line longer than the bound is never buffered past the bound. Its tail is
//! discarded as it arrives, scanned on the way for the message's top-level `id` (which may
//! come last), so the call it answers (or the request it carries) can be answered at once.

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::idscan::IdScanner;

pub enum Frame {
    Line(Vec<u8>),
    /// A line over the bound, reported as soon as its id is known (else at its end), with
    /// the id if one was found.
    Oversized {
        id: Option<Value>,
    },
    Eof,
}

/// The tail of an oversized line being skipped.
struct Discarding {
    scanner: Option<IdScanner>,
}

/// Reads frames from one stream; remembers when it is skipping the tail of a long line.
pub struct Framer {
    limit: usize,
    discarding: Option<Discarding>,
}

impl Framer {
    pub fn new(limit: usize) -> Framer {
        Framer {
            limit,
            discarding: None,
        }
    }

    /// Reads the next frame; empty lines are skipped. Cancel-safe only between frames.
    pub async fn next<R: AsyncBufRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> std::io::Result<Frame> {
        let mut line = Vec::new();
        loop {
            let available = reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(match self.discarding.take() {
                    Some(Discarding {
                        scanner: Some(scanner),
                    }) => Frame::Oversized {
                        id: scanner.finish(),
                    },
                    Some(_) => Frame::Eof,
                    None if line.is_empty() => Frame::Eof,
                    None => Frame::Line(line),
                });
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            let consumed = chunk.len() + usize::from(newline.is_some());
            if let Some(discarding) = &mut self.discarding {
                if let Some(scanner) = &mut discarding.scanner {
                    scanner.feed(chunk);
                }
                reader.consume(consumed);
                if newline.is_none() {
                    continue;
                }
                let discarding = self.discarding.take().expect("checked above");
                if let Some(scanner) = discarding.scanner {
                    return Ok(Frame::Oversized {
                        id: scanner.finish(),
                    });
                }
                continue;
            }
            if line.len() + chunk.len() > self.limit {
                let mut scanner = IdScanner::default();
                scanner.feed(&line);
                scanner.feed(chunk);
                line = Vec::new();
                reader.consume(consumed);
                if newline.is_some() {
                    return Ok(Frame::Oversized {
                        id: scanner.finish(),
                    });
                }
                if let Some(id) = scanner.found().cloned() {
                    // Known already: report now, skip the rest without scanning.
                    self.discarding = Some(Discarding { scanner: None });
                    return Ok(Frame::Oversized { id: Some(id) });
                }
                self.discarding = Some(Discarding {
                    scanner: Some(scanner),
                });
                continue;
            }
            line.extend_from_slice(chunk);
            reader.consume(consumed);
            if newline.is_some() {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    line.clear();
                    continue;
                }
                return Ok(Frame::Line(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_lines_and_bounds_them() {
        let input = format!(
            "{{\"a\":1}}\r\n\n{{\"id\":7,{}\n{{\"b\":2}}\n",
            "x".repeat(10_000)
        );
        let mut reader = tokio::io::BufReader::with_capacity(64, input.as_bytes());
        let mut framer = Framer::new(100);
        assert!(
            matches!(framer.next(&mut reader).await.unwrap(), Frame::Line(l) if l == b"{\"a\":1}")
        );
        match framer.next(&mut reader).await.unwrap() {
            Frame::Oversized { id } => assert_eq!(id, Some(serde_json::json!(7))),
            _ => panic!("expected an oversized frame"),
        }
        assert!(
            matches!(framer.next(&mut reader).await.unwrap(), Frame::Line(l) if l == b"{\"b\":2}")
        );
        assert!(matches!(
            framer.next(&mut reader).await.unwrap(),
            Frame::Eof
        ));
    }

    #[tokio::test]
    async fn finds_an_id_written_after_an_oversized_result() {
        let input = format!(
            "{{\"result\":{{\"text\":\"{}\"}},\"jsonrpc\":\"2.0\",\"id\":31}}\n{{\"b\":2}}\n",
            "y".repeat(100_000)
        );
        let mut reader = tokio::io::BufReader::with_capacity(64, input.as_bytes());
        let mut framer = Framer::new(1000);
        assert!(matches!(
            framer.next(&mut reader).await.unwrap(),
            Frame::Oversized { id: Some(id) } if id == 31
        ));
        assert!(
            matches!(framer.next(&mut reader).await.unwrap(), Frame::Line(l) if l == b"{\"b\":2}")
        );
    }
}
