//! Reading frames from the stream, resumable across timeouts.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::is_disconnect;
use crate::aligned::AlignedBuf;
use crate::error::{Result, TransportError};
use crate::frame::{FrameHeader, HEADER_LEN};

/// The receiving half and the progress of the frame being received.
pub(super) struct TcpReceiver {
    header_buf: [u8; HEADER_LEN],
    header_filled: usize,
    /// Set once the current frame's header is complete and valid.
    header: Option<FrameHeader>,
    payload: AlignedBuf,
    payload_filled: usize,
    pub max_payload: u64,
    /// The read timeout currently set on the socket (saves a syscall per
    /// `recv` when it does not change).
    read_timeout: Option<Duration>,
    /// Set after an error that leaves the stream out of sync.
    broken: Option<String>,
}

impl TcpReceiver {
    pub fn new(max_payload: u64) -> Self {
        TcpReceiver {
            header_buf: [0; HEADER_LEN],
            header_filled: 0,
            header: None,
            payload: AlignedBuf::new(),
            payload_filled: 0,
            max_payload,
            read_timeout: None,
            broken: None,
        }
    }

    /// The payload of the frame last completed by `read_frame`.
    pub fn payload(&self) -> &[u8] {
        self.payload.as_slice()
    }

    /// Reads the rest of the current frame. Each socket read waits at most
    /// `timeout` and none starts after it elapsed, so the call returns
    /// within about twice `timeout`. A timeout keeps the progress; any other
    /// error makes the receiver unusable.
    pub fn read_frame(&mut self, stream: &TcpStream, peer: SocketAddr, timeout: Option<Duration>) -> Result<FrameHeader> {
        if let Some(why) = &self.broken {
            return Err(TransportError::Broken(why.clone()));
        }
        let result = self.read_frame_inner(stream, peer, timeout);
        if let Err(e) = &result {
            if !e.is_timeout() {
                self.broken = Some(e.to_string());
            }
        }
        result
    }

    fn read_frame_inner(&mut self, stream: &TcpStream, peer: SocketAddr, timeout: Option<Duration>) -> Result<FrameHeader> {
        self.set_read_timeout(stream, timeout)?;
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);

        let header = match self.header {
            Some(header) => header,
            None => {
                let complete = fill(stream, &mut self.header_buf, &mut self.header_filled, deadline).map_err(|e| {
                    let got = self.header_filled;
                    read_error(e, "frame header", HEADER_LEN as u64, got, got > 0, peer, start)
                })?;
                if !complete {
                    return Err(if self.header_filled == 0 {
                        TransportError::PeerGone(format!("{peer} closed the connection"))
                    } else {
                        TransportError::Truncated { what: "frame header", expected: HEADER_LEN as u64, got: self.header_filled as u64 }
                    });
                }
                let header = FrameHeader::decode_with_limit(&self.header_buf, self.max_payload)?;
                self.payload.resize(header.payload_len as usize);
                self.payload_filled = 0;
                self.header = Some(header);
                header
            }
        };
        let complete = fill(stream, self.payload.as_mut_slice(), &mut self.payload_filled, deadline).map_err(|e| {
            let got = self.payload_filled;
            read_error(e, "payload", header.payload_len, got, true, peer, start)
        })?;
        if !complete {
            return Err(TransportError::Truncated { what: "payload", expected: header.payload_len, got: self.payload_filled as u64 });
        }
        self.header = None;
        self.header_filled = 0;
        self.payload_filled = 0;
        Ok(header)
    }

    fn set_read_timeout(&mut self, stream: &TcpStream, timeout: Option<Duration>) -> Result<()> {
        // A zero timeout means "block" to the OS: use the smallest real one.
        let timeout = timeout.map(|t| t.max(Duration::from_micros(1)));
        if timeout != self.read_timeout {
            stream.set_read_timeout(timeout).map_err(|e| TransportError::io("setting the read timeout", e))?;
            self.read_timeout = timeout;
        }
        Ok(())
    }
}

/// Reads into `buf[*filled..]` until full. `Ok(false)`: the peer closed
/// first.
fn fill(mut stream: &TcpStream, buf: &mut [u8], filled: &mut usize, deadline: Option<Instant>) -> std::io::Result<bool> {
    while *filled < buf.len() {
        if deadline.is_some_and(|at| Instant::now() >= at) {
            return Err(ErrorKind::TimedOut.into());
        }
        match stream.read(&mut buf[*filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => *filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn read_error(
    e: std::io::Error,
    what: &'static str,
    expected: u64,
    got: usize,
    mid_frame: bool,
    peer: SocketAddr,
    start: Instant,
) -> TransportError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            TransportError::Timeout { waited: start.elapsed(), waiting_for: "a frame from the TCP peer" }
        }
        k if is_disconnect(k) && mid_frame => TransportError::Truncated { what, expected, got: got as u64 },
        k if is_disconnect(k) => TransportError::PeerGone(format!("{peer} disconnected: {e}")),
        _ => TransportError::io(format!("reading {what} from {peer}"), e),
    }
}
