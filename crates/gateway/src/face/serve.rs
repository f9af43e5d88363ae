//! The HTTP listener: accepts connections and serves each with hyper's HTTP/1 server,
//! within the connection limits of `[listen]`:
//!
//! - a header read deadline (`header_read_timeout_ms`): hyper arms it whenever a
//!   connection waits for a request's headers, so it bounds slow headers and idle
//!   keep-alive connections alike (a response being streamed is not waiting);
//! - at most `max_connections_per_client` open connections per client address; one more
//!   is closed as soon as it is accepted.
//!
//! Request bodies get their own deadline where they are read ([`read_body`]). Each
//! request carries its connection's remote address as axum's `ConnectInfo<SocketAddr>`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use switchboard_config::ListenSettings;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service as _;

/// Open connections per client address.
#[derive(Default)]
struct ConnectionCounts {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; its slot is released when dropped.
struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    address: IpAddr,
}

impl ConnectionCounts {
    fn admit(self: &Arc<Self>, address: IpAddr, limit: usize) -> Option<ConnectionSlot> {
        let mut open = self.open.lock();
        let count = open.entry(address).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counts: self.clone(),
            address,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, asks
/// every connection to finish its current request, and returns when all have closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    listen: &ListenSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(listen.header_read_timeout)
        .keep_alive(true);
    let limit = listen.max_connections_per_client;
    let counts = Arc::new(ConnectionCounts::default());
    // Shutdown asks every connection to finish its request and close, then waits for them.
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of fds, or a connection reset before accept: not fatal.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = counts.admit(peer.ip(), limit) else {
            tracing::debug!(client = %peer.ip(), limit, "connection refused: too many from this address");
            drop(stream);
            continue;
        };
        // Without it, small responses wait for delayed ACKs (~40 ms per call).
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().call(request)
        });
        // With upgrades, so `GET /ws` can become a WebSocket (`face::ws`).
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let closing = closing.clone();
        // Owned by `connections`, which shutdown waits for.
        connections.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = closing.cancelled() => {
                    // Finish the request in progress, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("request body not received within {0:?}")]
    TooSlow(Duration),
    #[error("request body unreadable: {0}")]
    Broken(axum::Error),
}

/// Reads a whole request body, at most `max` bytes and within `deadline`.
pub(crate) async fn read_body(
    body: Body,
    max: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, max)).await {
        Err(_) => Err(BodyError::TooSlow(deadline)),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(error)) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                BodyError::TooLarge(max)
            } else {
                BodyError::Broken(error)
            })
        }
    }
}
