//! Writing frames to the stream.

use std::io::{ErrorKind, IoSlice, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::is_disconnect;
use super::paced_socket::Wait;
use super::stream::LinkStream;
use crate::aligned::AlignedBuf;
use crate::connection::FrameSink;
use crate::error::{Result, TransportError};
use crate::frame::FrameHeader;

/// The sending half; owns the stream (the receiver borrows it to read).
pub(super) struct TcpSender {
    pub stream: LinkStream,
    pub peer: SocketAddr,
    /// Bound on sending one whole frame (`Connection::set_send_timeout`).
    pub send_timeout: Option<Duration>,
    /// Reused buffer for `send_with`.
    buf: AlignedBuf,
    /// Set after a failed write: part of a frame may be on the wire.
    broken: Option<String>,
}

impl TcpSender {
    pub fn new(stream: LinkStream, peer: SocketAddr) -> Self {
        TcpSender { stream, peer, send_timeout: None, buf: AlignedBuf::new(), broken: None }
    }

    fn check_usable(&self, header: &FrameHeader) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(TransportError::Broken(why.clone()));
        }
        header.validate()
    }

    /// Writes header and payload (`None`: the payload is in `buf`), all of
    /// it within the send timeout: a peer that reads a little at a time
    /// cannot stretch one frame past it.
    fn write_frame(&mut self, header: &FrameHeader, payload: Option<&[u8]>) -> Result<()> {
        let head = header.encode();
        let payload = payload.unwrap_or(self.buf.as_slice());
        let mut slices = [IoSlice::new(&head), IoSlice::new(payload)];
        let timeout = self.send_timeout;
        self.stream.socket().write_wait = timeout.map_or(Wait::Forever, |t| Wait::Until(Instant::now() + t));
        let written = write_all_vectored(&mut self.stream, &mut slices).and_then(|()| self.stream.flush());
        // Writes between frames (TLS's own, while reading) wait per write.
        self.stream.socket().write_wait = timeout.map_or(Wait::Forever, Wait::Each);
        written.map_err(|e| {
            let err = write_error(e, self.peer);
            self.broken = Some(err.to_string());
            err
        })
    }
}

impl FrameSink for TcpSender {
    fn send_frame(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()> {
        self.check_usable(header)?;
        if payload.len() as u64 != header.payload_len {
            return Err(TransportError::PayloadSizeMismatch { declared: header.payload_len, actual: payload.len() });
        }
        self.write_frame(header, Some(payload))
    }

    fn send_frame_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        self.check_usable(&header)?;
        let len = usize::try_from(header.payload_len)
            .map_err(|_| TransportError::PayloadTooLarge { len: header.payload_len, max: usize::MAX as u64 })?;
        self.buf.resize(len);
        fill(self.buf.as_mut_slice());
        self.write_frame(&header, None)
    }
}

/// `write_all` for several buffers: one syscall for header and payload in
/// the common case (plain TCP; TLS takes the buffers one by one).
fn write_all_vectored(stream: &mut LinkStream, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !bufs.is_empty() {
        match stream.write_vectored(bufs) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_error(e: std::io::Error, peer: SocketAddr) -> TransportError {
    match e.kind() {
        k if is_disconnect(k) => TransportError::PeerGone(format!("{peer} disconnected: {e}")),
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            TransportError::io(format!("sending to {peer} timed out (peer not reading); connection unusable"), e)
        }
        _ => TransportError::io(format!("sending to {peer}"), e),
    }
}
