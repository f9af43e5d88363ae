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
/// fires or the output fails. When `close` fires, what is queued at that moment is still
/// written (a stopping connection's last cancellations), then the output is dropped, which
/// closes it.
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
        let (item, closing) = tokio::select! {
            item = queue.recv() => (item, false),
            () = close.cancelled() => (None, true),
        };
        if item.is_none() && !closing {
            break;
        }
        batch.clear();
        if let Some(item) = &item {
            encode(item, &mut batch);
            batch.push(b'\n');
        }
        // Closing: everything queued now (at most the queue's capacity), whatever its size.
        let mut left = queue.max_capacity();
        while (closing || batch.len() < MAX_BATCH_BYTES)
            && left > 0
            && let Ok(more) = queue.try_recv()
        {
            left -= 1;
            encode(&more, &mut batch);
            batch.push(b'\n');
        }
        let written = batch.is_empty()
            || (output.write_all(&batch).await.is_ok() && output.flush().await.is_ok());
        if closing || !written {
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

    #[tokio::test]
    async fn closing_still_writes_what_is_queued() {
        let (tx, rx) = mpsc::channel(8);
        for text in ["cancel-1", "cancel-2"] {
            tx.send(text.to_owned()).await.unwrap();
        }
        let close = CancellationToken::new();
        close.cancel();
        let mut out = Vec::new();
        write_lines(&mut out, rx, close, |s: &String, buf| {
            buf.extend_from_slice(s.as_bytes())
        })
        .await;
        assert_eq!(out, b"cancel-1\ncancel-2\n");
    }
}
