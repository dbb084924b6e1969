//! The TCP accept loop: one CVM session at a time, over mutually
//! authenticated TLS (or plain TCP with `--insecure`). A CVM refused at the
//! handshake, or a session that fails, is logged and the worker goes on
//! listening; so is a failed accept (out of descriptors, a connection
//! aborted before it was taken), after a short pause.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use talaria_transport::{TcpConnection, TcpWorkerListener, TLS_HANDSHAKE_TIMEOUT};
use tracing::{info, warn};

use crate::service::{SessionEnd, WorkerService};

/// A frame that has begun must keep arriving: a CVM that stalls mid-frame
/// for this long loses its session (idling between frames is fine).
pub const FRAME_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The pause after a failed accept, so a persistent failure (EMFILE until
/// a descriptor frees up) does not spin the CPU or flood the log.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Bounds on one session's handshake and frames.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub tls_handshake: Duration,
    pub frame_stall: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { tls_handshake: TLS_HANDSHAKE_TIMEOUT, frame_stall: FRAME_STALL_TIMEOUT }
    }
}

/// How sessions are secured.
pub enum Security {
    /// Mutual TLS: the CVM must present attested evidence that passes the
    /// policy inside `config`.
    Tls(Arc<rustls::ServerConfig>),
    /// `--insecure`: plain TCP, anyone may connect.
    Plain,
}

/// Serves CVMs forever, one session at a time.
pub fn serve_forever(listener: &TcpWorkerListener, security: &Security, timeouts: Timeouts, svc: &mut WorkerService) -> anyhow::Result<()> {
    loop {
        let sock = accept_next(listener, ACCEPT_BACKOFF);
        let peer = sock.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "an unknown peer".into());
        let conn = match security {
            Security::Tls(config) => TcpConnection::accept_tls(sock, config.clone(), timeouts.tls_handshake),
            Security::Plain => TcpConnection::from_stream(sock),
        };
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!("refused the CVM at {peer}: {e}");
                continue;
            }
        };
        conn.set_stall_timeout(Some(timeouts.frame_stall));
        info!("session with {peer} ({})", if conn.is_tls() { "mutual TLS, attested CVM" } else { "plain TCP, --insecure" });
        match svc.serve(&mut conn) {
            Ok(SessionEnd::Shutdown) => info!("session shut down; waiting for the next CVM"),
            Ok(SessionEnd::PeerGone) => info!("CVM went away; waiting for the next"),
            Err(e) => warn!("session with {peer} failed: {e:#}"),
        }
    }
}

/// Waits for the next peer's socket. An accept that fails does not end the
/// worker: it is logged, and retried after `backoff`.
pub fn accept_next(listener: &TcpWorkerListener, backoff: Duration) -> TcpStream {
    loop {
        match listener.accept_socket() {
            Ok(sock) => return sock,
            Err(e) => {
                warn!("{e}; still listening, retrying in {backoff:?}");
                std::thread::sleep(backoff);
            }
        }
    }
}
