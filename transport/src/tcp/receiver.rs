//! Reading frames from the stream, resumable across timeouts.
//!
//! The header is read and checked against the connection's current payload
//! limit before a single payload byte is read or allocated, so a peer cannot
//! make us allocate more than that limit.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::is_disconnect;
use super::paced_socket::Wait;
use super::stream::LinkStream;
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
    /// Without a caller timeout: how long a frame that has begun may go
    /// without progress before the session is given up (`None`: forever).
    pub stall_timeout: Option<Duration>,
    /// Set after an error that leaves the stream out of sync.
    broken: Option<String>,
}

/// How long each socket read of one `read_frame` may wait.
#[derive(Clone, Copy)]
struct Pace {
    /// The caller's deadline: past it, the read returns a (resumable) timeout.
    deadline: Option<Instant>,
    /// Without a deadline: the bound on a read once the frame has begun.
    stall: Option<Duration>,
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
            stall_timeout: None,
            broken: None,
        }
    }

    /// The payload of the frame last completed by `read_frame`.
    pub fn payload(&self) -> &[u8] {
        self.payload.as_slice()
    }

    /// Reads the rest of the current frame within `timeout`: each socket
    /// read waits at most for what is left of it, TLS's included. A timeout keeps the progress; any other
    /// error (a stalled frame included) makes the receiver unusable.
    pub fn read_frame(&mut self, stream: &mut LinkStream, peer: SocketAddr, timeout: Option<Duration>) -> Result<FrameHeader> {
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

    fn read_frame_inner(&mut self, stream: &mut LinkStream, peer: SocketAddr, timeout: Option<Duration>) -> Result<FrameHeader> {
        let start = Instant::now();
        let pace = Pace { deadline: timeout.map(|t| start + t), stall: if timeout.is_none() { self.stall_timeout } else { None } };

        let header = match self.header {
            Some(header) => header,
            None => {
                let mut io = Io { stream: &mut *stream, pace };
                let complete = io.fill(&mut self.header_buf, &mut self.header_filled, false).map_err(|e| {
                    let got = self.header_filled;
                    read_error(e, "frame header", HEADER_LEN as u64, got, got > 0, peer, start, pace)
                })?;
                if !complete {
                    return Err(if self.header_filled == 0 {
                        TransportError::PeerGone(format!("{peer} closed the connection"))
                    } else {
                        TransportError::Truncated { what: "frame header", expected: HEADER_LEN as u64, got: self.header_filled as u64 }
                    });
                }
                // Checked (limit included) before anything is allocated.
                let header = FrameHeader::decode_with_limit(&self.header_buf, self.max_payload)?;
                let len = usize::try_from(header.payload_len)
                    .map_err(|_| TransportError::PayloadTooLarge { len: header.payload_len, max: self.max_payload })?;
                self.payload.resize(len);
                self.payload_filled = 0;
                self.header = Some(header);
                header
            }
        };
        let mut io = Io { stream, pace };
        let complete = io.fill(self.payload.as_mut_slice(), &mut self.payload_filled, true).map_err(|e| {
            let got = self.payload_filled;
            read_error(e, "payload", header.payload_len, got, true, peer, start, pace)
        })?;
        if !complete {
            return Err(TransportError::Truncated { what: "payload", expected: header.payload_len, got: self.payload_filled as u64 });
        }
        self.header = None;
        self.header_filled = 0;
        self.payload_filled = 0;
        Ok(header)
    }
}

/// The stream and how long its reads may wait.
struct Io<'a> {
    stream: &'a mut LinkStream,
    pace: Pace,
}

impl Io<'_> {
    /// Reads into `buf[*filled..]` until full. `Ok(false)`: the peer closed
    /// first. `begun`: the frame started before this buffer.
    fn fill(&mut self, buf: &mut [u8], filled: &mut usize, begun: bool) -> std::io::Result<bool> {
        while *filled < buf.len() {
            if self.pace.deadline.is_some_and(|at| Instant::now() >= at) {
                return Err(ErrorKind::TimedOut.into());
            }
            // With a deadline, every socket read under this one (a TLS
            // record takes many) waits at most for what is left of it.
            self.stream.socket().read_wait = match (self.pace.stall, self.pace.deadline) {
                (Some(stall), _) if begun || *filled > 0 => Wait::Each(stall),
                (_, Some(at)) => Wait::Until(at),
                _ => Wait::Forever,
            };
            match self.stream.read(&mut buf[*filled..]) {
                Ok(0) => return Ok(false),
                Ok(n) => *filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[allow(clippy::too_many_arguments)]
fn read_error(
    e: std::io::Error,
    what: &'static str,
    expected: u64,
    got: usize,
    mid_frame: bool,
    peer: SocketAddr,
    start: Instant,
    pace: Pace,
) -> TransportError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut if pace.deadline.is_none() => match pace.stall {
            Some(stall) => TransportError::Stalled { stall, what, got: got as u64, expected },
            None => TransportError::io(format!("reading {what} from {peer}"), e),
        },
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            TransportError::Timeout { waited: start.elapsed(), waiting_for: "a frame from the TCP peer" }
        }
        k if is_disconnect(k) && mid_frame => TransportError::Truncated { what, expected, got: got as u64 },
        k if is_disconnect(k) => TransportError::PeerGone(format!("{peer} disconnected: {e}")),
        _ => TransportError::io(format!("reading {what} from {peer}"), e),
    }
}
