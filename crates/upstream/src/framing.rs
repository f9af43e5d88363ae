//! Bounded newline framing for a child's stdout: a line longer than the bound is dropped
//! (keeping a short prefix so the caller it answered can be failed) without buffering it.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Bytes of an oversized line kept to identify it.
const PREFIX_KEPT: usize = 256;

pub(crate) enum Frame {
    Line(Vec<u8>),
    Oversized { prefix: Vec<u8> },
    Eof,
}

/// Reads the next frame; empty lines are skipped.
pub(crate) async fn next_frame<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> std::io::Result<Frame> {
    let mut line = Vec::new();
    let mut oversized = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if line.is_empty() || oversized {
                Frame::Eof
            } else {
                Frame::Line(line)
            });
        }
        let (chunk, found_newline) = match memchr(available) {
            Some(at) => (&available[..at], true),
            None => (available, false),
        };
        if !oversized {
            if line.len() + chunk.len() > limit {
                oversized = true;
                let keep = PREFIX_KEPT.saturating_sub(line.len()).min(chunk.len());
                line.extend_from_slice(&chunk[..keep]);
                line.truncate(PREFIX_KEPT);
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = chunk.len() + usize::from(found_newline);
        reader.consume(consumed);
        if found_newline {
            if oversized {
                return Ok(Frame::Oversized { prefix: line });
            }
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

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_lines_and_bounds_them() {
        let input = format!("{{\"a\":1}}\r\n\n{}\n{{\"b\":2}}\n", "x".repeat(10_000));
        let mut reader = tokio::io::BufReader::with_capacity(64, input.as_bytes());
        assert!(
            matches!(next_frame(&mut reader, 100).await.unwrap(), Frame::Line(l) if l == b"{\"a\":1}")
        );
        assert!(
            matches!(next_frame(&mut reader, 100).await.unwrap(), Frame::Oversized { prefix } if prefix.len() == 100 || prefix.len() <= 256)
        );
        assert!(
            matches!(next_frame(&mut reader, 100).await.unwrap(), Frame::Line(l) if l == b"{\"b\":2}")
        );
        assert!(matches!(
            next_frame(&mut reader, 100).await.unwrap(),
            Frame::Eof
        ));
    }
}
