//! The accept loop: HTTP/1.1 on each connection with the limits a public
//! address needs, and a graceful stop.
//!
//! Why not `axum::serve`: it sets no timer on hyper's connections, so a client
//! that opens a connection and sends nothing, or a header a byte a second,
//! keeps a task, its buffers and a descriptor for as long as it likes.
//! Here such a client is cut off after [`HEADER_READ_TIMEOUT`] (holding no
//! buffer while it has sent nothing), and a request
//! that takes longer than [`REQUEST_TIMEOUT`] (a body sent slowly, say) is
//! answered 408 (`timeout` in `mod.rs`).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Longest a connection may take to send a request's headers, the first or the next on a
/// kept-alive connection; then it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a request may take, its body included, before it is answered 408. A ceiling for a
/// client that sends its body a byte at a time, not a latency target: with 512 imports on SQLite a
/// POST waited up to 40 s for the database, and 30 s turned a third of them into 408s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest the stop waits for open connections to finish their requests.
const DRAIN: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish their
/// request (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin, and keep serving those open.
                    tracing::warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper gives each connection 16 KiB of buffers as it starts: a connection that has sent
            // nothing yet costs only this task and its descriptor, and is closed when it stays
            // silent for the header read timeout.
            // `peek`, not `readable`: readiness can be reported before any byte has arrived.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                return;
            }
            // Boxed: the waiting task stays small; the connection's state exists once it speaks.
            let served = Box::pin(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                watcher.watch(conn).await
            });
            if let Err(e) = served.await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            "connections still open {} s after the stop; closed",
            DRAIN.as_secs()
        );
    }
    Ok(())
}
