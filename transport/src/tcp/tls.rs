//! TLS handshakes over an accepted or connected socket, bounded in time, so
//! a peer that stalls mid-handshake cannot hold the worker.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection, StreamOwned};

use super::stream::LinkStream;
use crate::error::{Result, TransportError};

/// Default bound on a whole TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side: requires what `config` requires (the worker's config
/// demands an attested client certificate).
pub(super) fn accept(sock: TcpStream, config: Arc<ServerConfig>, timeout: Duration) -> Result<LinkStream> {
    let conn = ServerConnection::new(config).map_err(|e| TransportError::Tls(format!("starting a TLS session: {e}")))?;
    let mut stream = StreamOwned::new(conn, sock);
    handshake(&mut stream.conn, &mut stream.sock, timeout)?;
    Ok(LinkStream::TlsServer(Box::new(stream)))
}

/// The client side, presenting the name `server_name` (a DNS name or an IP
/// address) to the server.
pub(super) fn connect(sock: TcpStream, server_name: &str, config: Arc<ClientConfig>, timeout: Duration) -> Result<LinkStream> {
    let name = ServerName::try_from(server_name.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| TransportError::Tls(format!("bad TLS server name {server_name:?}: {e}")))?;
    let conn = ClientConnection::new(config, name).map_err(|e| TransportError::Tls(format!("starting a TLS session: {e}")))?;
    let mut stream = StreamOwned::new(conn, sock);
    handshake(&mut stream.conn, &mut stream.sock, timeout)?;
    Ok(LinkStream::TlsClient(Box::new(stream)))
}

/// Drives the handshake to completion or fails with its cause (a refused
/// certificate names why). Each socket wait is bounded by what is left of
/// `timeout`; the socket's own timeouts are cleared afterwards.
fn handshake<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(TransportError::Tls(format!("TLS handshake not finished within {timeout:?}")));
        }
        set_timeouts(sock, Some(left))?;
        if let Err(e) = conn.complete_io(sock) {
            return Err(match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    TransportError::Tls(format!("TLS handshake not finished within {timeout:?}"))
                }
                _ => TransportError::Tls(format!("TLS handshake failed: {e}")),
            });
        }
    }
    // Send what the handshake left buffered (the client's Finished).
    while conn.wants_write() {
        conn.write_tls(sock).map_err(|e| TransportError::Tls(format!("TLS handshake failed: {e}")))?;
    }
    set_timeouts(sock, None)
}

fn set_timeouts(sock: &TcpStream, t: Option<Duration>) -> Result<()> {
    sock.set_read_timeout(t).map_err(|e| TransportError::io("setting the read timeout", e))?;
    sock.set_write_timeout(t).map_err(|e| TransportError::io("setting the write timeout", e))
}
