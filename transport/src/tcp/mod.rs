//! The [`Connection`] over TCP, for a worker on another host.
//!
//! A frame is the 48-byte header followed by the payload. Reads go into a
//! reusable 64-byte aligned buffer. A receive that times out keeps what it
//! has read so far, so the next `recv` resumes the same frame: a timeout
//! never desynchronises the stream.

mod receiver;
mod sender;

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::connection::{Connection, FrameSink, Received};
use crate::error::{Result, TransportError};
use crate::frame::{FrameHeader, MAX_PAYLOAD_LEN};
use receiver::TcpReceiver;
use sender::TcpSender;

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

    /// Waits for the next peer.
    pub fn accept(&self) -> Result<TcpConnection> {
        let (stream, _) = self.listener.accept().map_err(|e| TransportError::io("accepting a connection", e))?;
        TcpConnection::from_stream(stream)
    }
}

/// A framed TCP stream.
pub struct TcpConnection {
    tx: TcpSender,
    rx: TcpReceiver,
}

impl TcpConnection {
    /// Connects to `addr` ("host:port"), trying each resolved address with
    /// `timeout`.
    pub fn connect(addr: &str, timeout: Duration) -> Result<Self> {
        let addrs = addr.to_socket_addrs().map_err(|e| TransportError::io(format!("resolving {addr}"), e))?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => return Self::from_stream(stream),
                Err(e) => last = Some(TransportError::io(format!("connecting to {a}"), e)),
            }
        }
        Err(last
            .unwrap_or_else(|| TransportError::io(format!("resolving {addr}"), std::io::Error::new(ErrorKind::NotFound, "no addresses"))))
    }

    /// Wraps a connected stream (sets TCP_NODELAY).
    pub fn from_stream(stream: TcpStream) -> Result<Self> {
        stream.set_nodelay(true).map_err(|e| TransportError::io("setting TCP_NODELAY", e))?;
        let peer = stream.peer_addr().map_err(|e| TransportError::io("reading the peer address", e))?;
        Ok(TcpConnection { tx: TcpSender::new(stream, peer), rx: TcpReceiver::new(MAX_PAYLOAD_LEN) })
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.tx.peer
    }

    /// Lowers (or raises, up to [`MAX_PAYLOAD_LEN`]) the largest payload
    /// accepted, bounding what a peer can make us allocate.
    pub fn set_max_payload_len(&mut self, max: u64) {
        self.rx.max_payload = max.min(MAX_PAYLOAD_LEN);
    }

    /// Bound on a blocked `send` (a peer that stopped reading).
    pub fn set_send_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.tx.stream.set_write_timeout(timeout).map_err(|e| TransportError::io("setting the write timeout", e))
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
        let header = self.rx.read_frame(&self.tx.stream, self.tx.peer, timeout)?;
        Ok(Received::borrowed(header, self.rx.payload(), &mut self.tx))
    }

    fn max_payload_len(&self) -> u64 {
        self.rx.max_payload
    }
}

impl std::fmt::Debug for TcpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpConnection").field("peer", &self.tx.peer).finish_non_exhaustive()
    }
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
