//! TLS handshakes over an accepted or connected socket, bounded in time, so
//! a peer that stalls mid-handshake cannot hold the worker.

use std::io::{ErrorKind, IoSlice, Read, Write};
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
/// certificate names why). The whole handshake is bounded by `timeout`:
/// every socket read and write goes through [`DeadlineIo`], which waits at
/// most for what is left of it, so a peer trickling bytes cannot stretch
/// the handshake. The socket's own timeouts are cleared afterwards.
fn handshake<D>(conn: &mut ConnectionCommon<D>, sock: &mut TcpStream, timeout: Duration) -> Result<()> {
    let mut io = DeadlineIo { sock, deadline: Instant::now() + timeout };
    // A timeout, not a refusal: a busy or wedged peer may answer a retry.
    let late = || TransportError::Timeout { waited: timeout, waiting_for: "the TLS handshake" };
    let failed = |e: std::io::Error| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => late(),
        _ => TransportError::Tls(format!("TLS handshake failed: {e}")),
    };
    while conn.is_handshaking() {
        if io.left().is_zero() {
            return Err(late());
        }
        conn.complete_io(&mut io).map_err(failed)?;
    }
    // Send what the handshake left buffered (the client's Finished).
    while conn.wants_write() {
        conn.write_tls(&mut io).map_err(failed)?;
    }
    set_timeouts(io.sock, None)
}

/// The socket seen through a deadline: before each read or write the
/// socket's timeouts are set to what is left until `deadline`, and once it
/// has passed every call fails with [`ErrorKind::TimedOut`] (rustls's
/// `complete_io` loops for as long as reads return bytes, so a bound per
/// call would not bound the handshake).
struct DeadlineIo<'a> {
    sock: &'a mut TcpStream,
    deadline: Instant,
}

impl DeadlineIo<'_> {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Arms the socket's timeouts with what is left, or fails if nothing is.
    fn arm(&mut self) -> std::io::Result<()> {
        let left = self.left();
        if left.is_zero() {
            return Err(std::io::Error::new(ErrorKind::TimedOut, "TLS handshake deadline passed"));
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.set_write_timeout(Some(left))
    }

    /// A socket timeout (EAGAIN on a blocking socket) is the deadline.
    fn timed(r: std::io::Result<usize>) -> std::io::Result<usize> {
        r.map_err(|e| if e.kind() == ErrorKind::WouldBlock { std::io::Error::new(ErrorKind::TimedOut, e) } else { e })
    }
}

impl Read for DeadlineIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        Self::timed(self.sock.read(buf))
    }
}

impl Write for DeadlineIo<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm()?;
        Self::timed(self.sock.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.arm()?;
        Self::timed(self.sock.write_vectored(bufs))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

fn set_timeouts(sock: &TcpStream, t: Option<Duration>) -> Result<()> {
    sock.set_read_timeout(t).map_err(|e| TransportError::io("setting the read timeout", e))?;
    sock.set_write_timeout(t).map_err(|e| TransportError::io("setting the write timeout", e))
}
