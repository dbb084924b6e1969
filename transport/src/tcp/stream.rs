//! The byte stream under a TCP connection: the socket itself, or a TLS
//! session over it. Framing, resumable reads and timeouts work the same on
//! both; the transport does no cryptography itself (rustls does, with a
//! configuration built by the caller).

use std::io::{IoSlice, Read, Write};

use rustls::{ClientConnection, ServerConnection, StreamOwned};

use super::paced_socket::PacedSocket;

pub(super) enum LinkStream {
    Plain(PacedSocket),
    TlsClient(Box<StreamOwned<ClientConnection, PacedSocket>>),
    TlsServer(Box<StreamOwned<ServerConnection, PacedSocket>>),
}

impl LinkStream {
    /// The socket, whose waits bound every read and write under the stream.
    pub fn socket(&mut self) -> &mut PacedSocket {
        match self {
            LinkStream::Plain(s) => s,
            LinkStream::TlsClient(s) => &mut s.sock,
            LinkStream::TlsServer(s) => &mut s.sock,
        }
    }

    pub fn is_tls(&self) -> bool {
        !matches!(self, LinkStream::Plain(_))
    }

    /// The peer's certificate chain (TLS only), leaf first.
    pub fn peer_certificates(&self) -> Option<Vec<Vec<u8>>> {
        let certs = match self {
            LinkStream::Plain(_) => return None,
            LinkStream::TlsClient(s) => s.conn.peer_certificates(),
            LinkStream::TlsServer(s) => s.conn.peer_certificates(),
        };
        certs.map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
    }
}

impl Read for LinkStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            LinkStream::Plain(s) => s.read(buf),
            LinkStream::TlsClient(s) => s.read(buf),
            LinkStream::TlsServer(s) => s.read(buf),
        }
    }
}

impl Write for LinkStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            LinkStream::Plain(s) => s.write(buf),
            LinkStream::TlsClient(s) => s.write(buf),
            LinkStream::TlsServer(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        match self {
            LinkStream::Plain(s) => s.write_vectored(bufs),
            LinkStream::TlsClient(s) => s.write_vectored(bufs),
            LinkStream::TlsServer(s) => s.write_vectored(bufs),
        }
    }

    /// TLS: pushes the records still buffered in rustls onto the socket.
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LinkStream::Plain(s) => s.flush(),
            LinkStream::TlsClient(s) => s.flush(),
            LinkStream::TlsServer(s) => s.flush(),
        }
    }
}
