//! Writing newline-delimited JSON-RPC: one task owns the output, and everything queued when
//! it wakes goes out in one write (one syscall, one wake-up of the reader) for a burst.
//! The stdio upstream link writes its child's stdin with it, the gateway's stdio face its
//! own stdout.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Bytes gathered into one write before it is issued.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// A batch buffer that grew past this (one huge message) is not kept.
const KEPT_CAPACITY: usize = 4 * MAX_BATCH_BYTES;

/// Writes each queued item, `encode`d and followed by `\n`, until the queue closes, `close`
/// fires or the output fails. Dropping `output` on return closes it.
pub async fn write_lines<W, T>(
    mut output: W,
    mut queue: mpsc::Receiver<T>,
    close: CancellationToken,
    encode: impl Fn(&T, &mut Vec<u8>),
) where
    W: AsyncWrite + Unpin,
{
    let mut batch = Vec::with_capacity(4 * 1024);
    loop {
        let item = tokio::select! {
            item = queue.recv() => item,
            () = close.cancelled() => None,
        };
        let Some(item) = item else { break };
        batch.clear();
        encode(&item, &mut batch);
        batch.push(b'\n');
        while batch.len() < MAX_BATCH_BYTES
            && let Ok(more) = queue.try_recv()
        {
            encode(&more, &mut batch);
            batch.push(b'\n');
        }
        if output.write_all(&batch).await.is_err() || output.flush().await.is_err() {
            break;
        }
        if batch.capacity() > KEPT_CAPACITY {
            batch = Vec::with_capacity(4 * 1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_written_as_lines_in_order() {
        let (tx, rx) = mpsc::channel(8);
        for text in ["a", "bb", "ccc"] {
            tx.send(text.to_owned()).await.unwrap();
        }
        drop(tx);
        let mut out = Vec::new();
        write_lines(&mut out, rx, CancellationToken::new(), |s: &String, buf| {
            buf.extend_from_slice(s.as_bytes())
        })
        .await;
        assert_eq!(out, b"a\nbb\nccc\n");
    }
}
