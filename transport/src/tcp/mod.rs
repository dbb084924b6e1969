//! The [`Connection`] over TCP, for a worker on another host.
//!
//! A frame is the 48-byte header followed by the payload. Reads go into a
//! reusable 64-byte aligned buffer. A receive that times out keeps what it
//! has read so far, so the next `recv` resumes the same frame: a timeout
//! never desynchronises the stream.
//!
//! The stream is the socket itself or a TLS session over it
//! ([`connect_tls`](TcpConnection::connect_tls),
//! [`accept_tls`](TcpConnection::accept_tls)); the rustls configurations
//! (certificates, verifiers) are made by the caller.

mod paced_socket;
mod receiver;
mod sender;
mod stream;
mod tls;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::connection::{Connection, FrameSink, Received};
use crate::error::{Result, TransportError};
use crate::frame::{FrameHeader, MAX_PAYLOAD_LEN};
use receiver::TcpReceiver;
use sender::TcpSender;
use stream::LinkStream;
pub use tls::HANDSHAKE_TIMEOUT;

/// The listening side (the worker's `--listen host:port`).
pub struct TcpWorkerListener {
    listener: TcpListener,
}

impl TcpWorkerListener {
    pub fn bind(addr: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr).map_err(|e| TransportError::io(format!("listening on {addr}"), e))?;
        Ok(TcpWorkerListener { listener })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| TransportError::io("reading the listening address", e))
    }

    /// Waits for the next peer (plain TCP).
    pub fn accept(&self) -> Result<TcpConnection> {
        TcpConnection::from_stream(self.accept_socket()?)
    }

    /// Waits for the next peer's socket, to wrap with
    /// [`TcpConnection::accept_tls`] (or `from_stream`).
    pub fn accept_socket(&self) -> Result<TcpStream> {
        let (stream, _) = self.listener.accept().map_err(|e| TransportError::io("accepting a connection", e))?;
        Ok(stream)
    }
}

/// A framed TCP stream, plain or TLS.
pub struct TcpConnection {
    tx: TcpSender,
    rx: TcpReceiver,
}

impl TcpConnection {
    /// Connects to `addr` ("host:port"), trying each resolved address with
    /// `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self> {
        Self::from_stream(connect_socket(addr, timeout)?)
    }

    /// Connects to `addr` and runs a TLS handshake (bounded by
    /// [`HANDSHAKE_TIMEOUT`]) with `config`; `server_name` is the host part
    /// of `addr` (a DNS name or an IP address).
    pub fn connect_tls(addr: &str, server_name: &str, config: Arc<rustls::ClientConfig>, timeout: Duration) -> Result<Self> {
        Self::connect_tls_within(addr, server_name, config, timeout, HANDSHAKE_TIMEOUT)
    }

    /// [`connect_tls`](Self::connect_tls) with the whole handshake bounded
    /// by `handshake_timeout` instead of [`HANDSHAKE_TIMEOUT`].
    pub fn connect_tls_within(
        addr: &str,
        server_name: &str,
        config: Arc<rustls::ClientConfig>,
        timeout: Duration,
        handshake_timeout: Duration,
    ) -> Result<Self> {
        let sock = connect_socket(addr, timeout)?;
        let peer = peer_of(&sock)?;
        Ok(Self::new(tls::connect(sock, server_name, config, handshake_timeout)?, peer))
    }

    /// The server side of a TLS session on an accepted socket; the
    /// handshake (and so the client's certificate check in `config`) must
    /// finish within `handshake_timeout`.
    pub fn accept_tls(sock: TcpStream, config: Arc<rustls::ServerConfig>, handshake_timeout: Duration) -> Result<Self> {
        tune(&sock)?;
        let peer = peer_of(&sock)?;
        Ok(Self::new(tls::accept(sock, config, handshake_timeout)?, peer))
    }

    /// Wraps a connected stream (sets TCP_NODELAY and keepalive).
    pub fn from_stream(stream: TcpStream) -> Result<Self> {
        tune(&stream)?;
        let peer = peer_of(&stream)?;
        Ok(Self::new(LinkStream::Plain(paced_socket::PacedSocket::new(stream)), peer))
    }

    fn new(stream: LinkStream, peer: SocketAddr) -> Self {
        TcpConnection { tx: TcpSender::new(stream, peer), rx: TcpReceiver::new(MAX_PAYLOAD_LEN) }
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.tx.peer
    }

    /// Whether the stream is a TLS session.
    pub fn is_tls(&self) -> bool {
        self.tx.stream.is_tls()
    }

    /// The peer's TLS certificate chain, leaf first (`None` on plain TCP).
    pub fn peer_certificates(&self) -> Option<Vec<Vec<u8>>> {
        self.tx.stream.peer_certificates()
    }

    /// Without a caller timeout, a frame that has begun and then makes no
    /// progress for `stall` ends the connection with
    /// [`TransportError::Stalled`]; waiting between frames stays unbounded.
    pub fn set_stall_timeout(&mut self, stall: Option<Duration>) {
        self.rx.stall_timeout = stall;
    }
}

impl Connection for TcpConnection {
    fn send(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()> {
        self.tx.send_frame(header, payload)
    }

    fn send_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        self.tx.send_frame_with(header, fill)
    }

    fn recv(&mut self, timeout: Option<Duration>) -> Result<Received<'_>> {
        let header = self.rx.read_frame(&mut self.tx.stream, self.tx.peer, timeout)?;
        Ok(Received::borrowed(header, self.rx.payload(), &mut self.tx))
    }

    fn max_payload_len(&self) -> u64 {
        self.rx.max_payload
    }

    fn set_max_payload_len(&mut self, max: u64) {
        self.rx.max_payload = max.min(MAX_PAYLOAD_LEN);
    }

    fn set_send_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.tx.send_timeout = timeout;
        self.tx.stream.socket().write_wait = timeout.map_or(paced_socket::Wait::Forever, paced_socket::Wait::Each);
        Ok(())
    }
}

impl std::fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnection").field("peer", &self.tx.peer).field("tls", &self.is_tls()).finish_non_exhaustive()
    }
}

/// Connects to `addr` ("host:port"), trying each resolved address with
/// `timeout`.
fn connect_socket(addr: &str, timeout: Duration) -> Result<TcpStream> {
    let addrs = addr.to_socket_addrs().map_err(|e| TransportError::io(format!("resolving {addr}"), e))?;
    let mut last = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(stream) => {
                tune(&stream)?;
                return Ok(stream);
            }
            Err(e) => last = Some(TransportError::io(format!("connecting to {a}"), e)),
        }
    }
    Err(last.unwrap_or_else(|| TransportError::io(format!("resolving {addr}"), std::io::Error::new(ErrorKind::NotFound, "no addresses"))))
}

fn peer_of(stream: &TcpStream) -> Result<SocketAddr> {
    stream.peer_addr().map_err(|e| TransportError::io("reading the peer address", e))
}

fn is_disconnect(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof
            | ErrorKind::NotConnected
    )
}

/// Seconds of silence before the first keepalive probe, between probes, and
/// probes unanswered before the kernel declares the peer gone: a peer that
/// vanished without a FIN (a reset VM, a dropped NAT flow) is found in
/// about two minutes instead of never. The worker waits between frames
/// without a bound, and serves one session at a time: without this, a
/// half-open session held it for good.
const KEEPALIVE: (libc::c_int, libc::c_int, libc::c_int) = (60, 10, 6);

/// TCP_NODELAY (frames are written whole) and keepalive.
fn tune(sock: &TcpStream) -> Result<()> {
    use std::os::fd::AsRawFd;
    sock.set_nodelay(true).map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
    let fd = sock.as_raw_fd();
    let (idle, interval, count) = KEEPALIVE;
    for (level, name, value, what) in [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1, "SO_KEEPALIVE"),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle, "TCP_KEEPIDLE"),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, interval, "TCP_KEEPINTVL"),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, count, "TCP_KEEPCNT"),
    ] {
        // SAFETY: `fd` is this open socket's; the option value is a c_int
        // of the size given.
        let rc = unsafe {
            libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
        };
        if rc != 0 {
            return Err(TransportError::io(format!("setting {what}"), std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
