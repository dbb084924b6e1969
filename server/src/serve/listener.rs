//! The accept loop: plain TCP or TLS, HTTP/1.1 through hyper, with the edge
//! bounds — at most `max_connections` at once (further clients wait in the
//! listen backlog), a deadline on the TLS handshake and on each request's
//! headers (which also closes idle keep-alive connections) — and a graceful
//! stop: no new connections, in-flight requests finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_io_timeout::TimeoutStream;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// The bounds of the accept loop.
pub struct EdgeLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
}

/// Serves `app` on `listener` until `stop` resolves, then waits for every
/// open connection to finish its request in flight and close.
pub async fn serve(listener: TcpListener, app: Router, tls: Option<TlsAcceptor>, limits: EdgeLimits, stop: impl Future<Output = ()>) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let limits = Arc::new(limits);
    tokio::pin!(stop);
    loop {
        // Take a slot before accepting, so a full server leaves new clients
        // in the kernel's backlog rather than spawning unbounded tasks.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s { Ok(s) => s, Err(_) => break },
            _ = &mut stop => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, tls, limits, watcher) = (app.clone(), tls.clone(), limits.clone(), graceful.watcher());
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = serve_connection(tcp, app, tls, &limits, watcher).await {
                tracing::debug!("connection from {peer}: {e}");
            }
        });
    }
    drop(listener);
    tracing::info!("no longer accepting; waiting for {} open connection(s)", graceful.count());
    graceful.shutdown().await;
}

async fn serve_connection(
    tcp: TcpStream,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: &EdgeLimits,
    watcher: Watcher,
) -> Result<(), String> {
    match tls {
        None => serve_http(tcp, app, limits, watcher).await,
        Some(acceptor) => {
            let stream = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                .await
                .map_err(|_| format!("TLS handshake not done within {:?}", limits.handshake_timeout))?
                .map_err(|e| format!("TLS handshake: {e}"))?;
            serve_http(stream, app, limits, watcher).await
        }
    }
}

async fn serve_http<S>(stream: S, app: Router, limits: &EdgeLimits, watcher: Watcher) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A client that stops reading would otherwise hold its slot forever.
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(limits.write_timeout));
    let stream = Box::pin(stream);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    watcher.watch(conn).await.map_err(|e| format!("HTTP: {e}"))
}
