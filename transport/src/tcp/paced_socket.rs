//! The socket under every TCP stream, plain or TLS, with a bound on how long
//! each read and each write may wait, set by the frame being moved.
//!
//! A TLS session reads and writes the socket as often as it needs to move
//! one record, so a timeout armed once before a TLS read bounds each socket
//! read, not the call: a peer trickling one byte per timeout inside a 16 KiB
//! record stretched one call to days. Arming the socket here, before every
//! socket operation, with what is left of the frame's deadline bounds the
//! whole frame, TLS or not (and the handshake the same way).

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How long one socket operation may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Until the peer acts (a dead peer is still found by keepalive).
    Forever,
    /// At most this long per operation: progress restarts the clock.
    Each(Duration),
    /// Until this instant, over however many operations: past it every
    /// operation fails with [`ErrorKind::TimedOut`].
    Until(Instant),
}

impl Wait {
    /// The socket timeout for the next operation (`None`: block).
    fn timeout(self) -> std::io::Result<Option<Duration>> {
        match self {
            Wait::Forever => Ok(None),
            Wait::Each(d) => Ok(Some(d)),
            Wait::Until(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(ErrorKind::TimedOut, "deadline passed"));
                }
                Ok(Some(left))
            }
        }
    }
}

pub(super) struct PacedSocket {
    sock: TcpStream,
    pub read_wait: Wait,
    pub write_wait: Wait,
    /// The timeouts last set on the socket (a syscall only when they change).
    read_armed: Option<Duration>,
    write_armed: Option<Duration>,
}

impl PacedSocket {
    pub fn new(sock: TcpStream) -> Self {
        PacedSocket { sock, read_wait: Wait::Forever, write_wait: Wait::Forever, read_armed: None, write_armed: None }
    }

    /// Both directions bounded by `wait` (the TLS handshake).
    pub fn set_wait(&mut self, wait: Wait) {
        self.read_wait = wait;
        self.write_wait = wait;
    }

    fn arm_read(&mut self) -> std::io::Result<()> {
        let sock = &self.sock;
        arm(self.read_wait, &mut self.read_armed, |t| sock.set_read_timeout(t))
    }

    fn arm_write(&mut self) -> std::io::Result<()> {
        let sock = &self.sock;
        arm(self.write_wait, &mut self.write_armed, |t| sock.set_write_timeout(t))
    }

    /// A socket timeout (EAGAIN on a blocking socket) is the wait's end.
    fn timed<T>(r: std::io::Result<T>) -> std::io::Result<T> {
        r.map_err(|e| if e.kind() == ErrorKind::WouldBlock { std::io::Error::new(ErrorKind::TimedOut, e) } else { e })
    }
}

/// Sets the socket timeout for `wait` through `set` when it differs from
/// the one `armed` (a syscall only on a change).
fn arm(wait: Wait, armed: &mut Option<Duration>, set: impl FnOnce(Option<Duration>) -> std::io::Result<()>) -> std::io::Result<()> {
    // A zero timeout means "block" to the OS: the smallest real one instead.
    let t = wait.timeout()?.map(|t| t.max(Duration::from_micros(1)));
    if t != *armed {
        set(t)?;
        *armed = t;
    }
    Ok(())
}

impl Read for PacedSocket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm_read()?;
        Self::timed(self.sock.read(buf))
    }
}

impl Write for PacedSocket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.arm_write()?;
        Self::timed(self.sock.write(buf))
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        self.arm_write()?;
        Self::timed(self.sock.write_vectored(bufs))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, PacedSocket) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let near = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (far, _) = listener.accept().unwrap();
        (near, PacedSocket::new(far))
    }

    /// Past its deadline a socket refuses at once, without a syscall that
    /// could block; before it, a silent peer times out as `TimedOut`.
    #[test]
    fn a_deadline_spans_operations() {
        let (_near, mut sock) = pair();
        let mut buf = [0u8; 4];
        sock.read_wait = Wait::Until(Instant::now() + Duration::from_millis(50));
        let t0 = Instant::now();
        assert_eq!(sock.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
        assert!(t0.elapsed() >= Duration::from_millis(40));
        assert_eq!(sock.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
        // `Each` restarts per operation; `Forever` clears the socket's timeout.
        sock.read_wait = Wait::Each(Duration::from_millis(20));
        assert_eq!(sock.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
        assert_eq!(sock.sock.read_timeout().unwrap(), Some(Duration::from_millis(20)));
        sock.read_wait = Wait::Forever;
        sock.arm_read().unwrap();
        assert_eq!(sock.sock.read_timeout().unwrap(), None);
    }
}
