//! TLS handshakes over an accepted or connected socket, bounded in time, so
//! a peer that stalls mid-handshake cannot hold the worker.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection, StreamOwned};

use super::paced_socket::{PacedSocket, Wait};
use super::stream::LinkStream;
use crate::error::{Result, TransportError};

/// Default bound on a whole TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side: requires what `config` requires (the worker's config
/// demands an attested client certificate).
pub(super) fn accept(sock: TcpStream, config: Arc<ServerConfig>, timeout: Duration) -> Result<LinkStream> {
    let conn = ServerConnection::new(config).map_err(|e| TransportError::Tls(format!("starting a TLS session: {e}")))?;
    let mut stream = StreamOwned::new(conn, PacedSocket::new(sock));
    handshake(&mut stream.conn, &mut stream.sock, timeout)?;
    Ok(LinkStream::TlsServer(Box::new(stream)))
}

/// The client side, presenting the name `server_name` (a DNS name or an IP
/// address) to the server.
pub(super) fn connect(sock: TcpStream, server_name: &str, config: Arc<ClientConfig>, timeout: Duration) -> Result<LinkStream> {
    let name = ServerName::try_from(server_name.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| TransportError::Tls(format!("bad TLS server name {server_name:?}: {e}")))?;
    let conn = ClientConnection::new(config, name).map_err(|e| TransportError::Tls(format!("starting a TLS session: {e}")))?;
    let mut stream = StreamOwned::new(conn, PacedSocket::new(sock));
    handshake(&mut stream.conn, &mut stream.sock, timeout)?;
    Ok(LinkStream::TlsClient(Box::new(stream)))
}

/// Drives the handshake to completion or fails with its cause (a refused
/// certificate names why). The whole handshake is bounded by `timeout`:
/// every socket read and write waits at most for what is left of it
/// ([`Wait::Until`]; rustls's `complete_io` loops for as long as reads
/// return bytes), so a peer trickling bytes cannot stretch the handshake.
/// The socket waits without a bound afterwards (frames set their own).
fn handshake<D>(conn: &mut ConnectionCommon<D>, sock: &mut PacedSocket, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    sock.set_wait(Wait::Until(deadline));
    // A timeout, not a refusal: a busy or wedged peer may answer a retry.
    let late = || TransportError::Timeout { waited: timeout, waiting_for: "the TLS handshake" };
    let failed = |e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => late(),
        _ => TransportError::Tls(format!("TLS handshake failed: {e}")),
    };
    while conn.is_handshaking() {
        if Instant::now() >= deadline {
            return Err(late());
        }
        conn.complete_io(sock).map_err(failed)?;
    }
    // Send what the handshake left buffered (the client's Finished).
    while conn.wants_write() {
        conn.write_tls(sock).map_err(failed)?;
    }
    sock.set_wait(Wait::Forever);
    Ok(())
}
