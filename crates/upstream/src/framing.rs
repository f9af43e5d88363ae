//! Bounded newline framing for a child's stdout: a line longer than the bound is reported
//! the moment it crosses the bound (with a short prefix, so the call it answers can be
//! failed at once) and the rest of it is then discarded without being buffered.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Bytes of an oversized line kept to identify it.
const PREFIX_KEPT: usize = 256;

pub(crate) enum Frame {
    Line(Vec<u8>),
    Oversized { prefix: Vec<u8> },
    Eof,
}

/// Reads frames from one stream; remembers when it is skipping the tail of a long line.
pub(crate) struct Framer {
    limit: usize,
    discarding: bool,
}

impl Framer {
    pub(crate) fn new(limit: usize) -> Framer {
        Framer {
            limit,
            discarding: false,
        }
    }

    /// Reads the next frame; empty lines are skipped.
    pub(crate) async fn next<R: AsyncBufRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> std::io::Result<Frame> {
        let mut line = Vec::new();
        loop {
            let available = reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(if line.is_empty() || self.discarding {
                    Frame::Eof
                } else {
                    Frame::Line(line)
                });
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            let consumed = chunk.len() + usize::from(newline.is_some());
            if self.discarding {
                reader.consume(consumed);
                if newline.is_some() {
                    self.discarding = false;
                }
                continue;
            }
            if line.len() + chunk.len() > self.limit {
                let keep = PREFIX_KEPT.saturating_sub(line.len()).min(chunk.len());
                line.extend_from_slice(&chunk[..keep]);
                line.truncate(PREFIX_KEPT);
                reader.consume(consumed);
                // The rest of this line is skipped on the next reads.
                self.discarding = newline.is_none();
                return Ok(Frame::Oversized { prefix: line });
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
            Frame::Oversized { prefix } => {
                assert!(prefix.starts_with(b"{\"id\":7,") && prefix.len() <= 256)
            }
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
}
