//! The TCP transport: round trips, truncation, garbage, timeouts.

mod common;

use std::borrow::Cow;
use std::io::Write;
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{bytes_frame, f64_frame, fill_pattern, matches_pattern, pattern};
use talaria_transport::{Connection, FrameHeader, FrameKind, TcpConnection, TcpWorkerListener, TransportError, PAYLOAD_ALIGN};

const LONG: Option<Duration> = Some(Duration::from_secs(10));
const CONNECT: Duration = Duration::from_secs(5);

/// A listener on an ephemeral loopback port and its "host:port".
fn listener() -> (TcpWorkerListener, String) {
    let l = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// A worker thread echoing Calls as Results until Shutdown or disconnect.
fn echo_worker(l: TcpWorkerListener) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = l.accept().unwrap();
        loop {
            let mut frame = match conn.recv(LONG) {
                Ok(f) => f,
                Err(e) if e.is_peer_gone() => return,
                Err(e) => panic!("worker recv: {e}"),
            };
            if frame.kind == FrameKind::Shutdown {
                return;
            }
            let answer = FrameHeader { kind: FrameKind::Result, ..*frame.header() };
            frame.reply_with(answer, &mut |input, out| out.copy_from_slice(input)).unwrap();
        }
    })
}

#[test]
fn frames_of_many_sizes_round_trip() {
    let (l, addr) = listener();
    let worker = echo_worker(l);
    let mut conn = TcpConnection::connect(&addr, CONNECT).unwrap();
    for (id, len) in [0usize, 1, 47, 48, 49, 4096, 65_537, 3 << 20].into_iter().enumerate() {
        let id = id as u64;
        conn.send(&bytes_frame(id, len), &pattern(id, len)).unwrap();
        let got = conn.recv(LONG).unwrap();
        assert_eq!(got.kind, FrameKind::Result);
        assert_eq!(got.call_id, id);
        assert_eq!(got.payload().len(), len);
        assert_eq!(got.payload().as_ptr() as usize % PAYLOAD_ALIGN, 0);
        assert!(matches_pattern(id, got.payload()));
    }
    conn.send(&FrameHeader::new(FrameKind::Shutdown), &[]).unwrap();
    worker.join().unwrap();
}

#[test]
fn send_with_and_typed_views() {
    let (l, addr) = listener();
    let worker = echo_worker(l);
    let mut conn = TcpConnection::connect(&addr, CONNECT).unwrap();
    let values: Vec<f64> = (0..3 * 577).map(|i| (i as f64).sqrt()).collect();
    conn.send_with(f64_frame(1, 3, 577), &mut |dst| dst.copy_from_slice(talaria_transport::as_payload_bytes(&values))).unwrap();
    let got = conn.recv(LONG).unwrap();
    let view = got.f64s().unwrap();
    assert!(matches!(view, Cow::Borrowed(_)));
    assert_eq!(&*view, values.as_slice());
    drop(got);

    conn.send_with(bytes_frame(2, 1000), &mut |dst| fill_pattern(2, dst)).unwrap();
    assert!(matches_pattern(2, conn.recv(LONG).unwrap().payload()));
    drop(conn);
    worker.join().unwrap();
}

#[test]
fn peer_closing_gives_peer_gone() {
    let (l, addr) = listener();
    let worker = std::thread::spawn(move || {
        let mut conn = l.accept().unwrap();
        conn.send(&bytes_frame(1, 10), &pattern(1, 10)).unwrap();
    });
    let mut conn = TcpConnection::connect(&addr, CONNECT).unwrap();
    worker.join().unwrap();
    assert_eq!(conn.recv(LONG).unwrap().call_id, 1);
    let err = conn.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PeerGone(_)), "{err}");
}

/// Sends raw bytes from a fake peer, then closes.
fn raw_peer(bytes: Vec<u8>) -> TcpConnection {
    let (l, addr) = listener();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&bytes).unwrap();
    });
    let conn = l.accept().unwrap();
    peer.join().unwrap();
    conn
}

#[test]
fn truncated_frames_are_reported() {
    let header = bytes_frame(1, 100).encode();

    let mut half_header = raw_peer(header[..20].to_vec());
    let err = half_header.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::Truncated { what: "frame header", expected: 48, got: 20 }), "{err}");
    // The stream is out of sync for good.
    assert!(matches!(half_header.recv(LONG), Err(TransportError::Broken(_))));

    let mut bytes = header.to_vec();
    bytes.extend_from_slice(&[0; 60]);
    let mut half_payload = raw_peer(bytes);
    let err = half_payload.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::Truncated { what: "payload", expected: 100, got: 60 }), "{err}");

    // Header only, no payload at all: still truncated, not "peer gone".
    let mut no_payload = raw_peer(header.to_vec());
    let err = no_payload.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::Truncated { got: 0, .. }), "{err}");
}

#[test]
fn garbage_header_is_rejected() {
    let mut junk = raw_peer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n and more bytes to fill".to_vec());
    let err = junk.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::BadMagic { .. }), "{err}");

    // A valid-looking header that asks for more than we accept.
    let mut greedy = bytes_frame(1, 1 << 20).encode().to_vec();
    greedy.extend_from_slice(&[0; 16]);
    let (l, addr) = listener();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&greedy).unwrap();
    });
    let mut conn = l.accept().unwrap();
    conn.set_max_payload_len(1000);
    let err = conn.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PayloadTooLarge { len, max: 1000 } if len == 1 << 20), "{err}");
    peer.join().unwrap();
}

/// A timeout mid-frame keeps the bytes read so far; the frame completes on
/// the next call.
#[test]
fn timeout_mid_frame_resumes() {
    let (l, addr) = listener();
    let frame = bytes_frame(4, 5000);
    let payload = pattern(4, 5000);
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(&frame.encode()[..30]).unwrap();
        go_rx.recv().unwrap();
        s.write_all(&frame.encode()[30..]).unwrap();
        s.write_all(&payload[..2000]).unwrap();
        go_rx.recv().unwrap();
        s.write_all(&payload[2000..]).unwrap();
        go_rx.recv().ok();
    });
    let mut conn = l.accept().unwrap();
    let short = Some(Duration::from_millis(50));

    let err = conn.recv(Some(Duration::ZERO)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let err = conn.recv(short).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    go_tx.send(()).unwrap();
    let err = conn.recv(short).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    go_tx.send(()).unwrap();
    let got = conn.recv(LONG).unwrap();
    assert_eq!(*got.header(), bytes_frame(4, 5000));
    assert!(matches_pattern(4, got.payload()));
    drop(got);
    go_tx.send(()).unwrap();
    peer.join().unwrap();
}

#[test]
fn invalid_headers_are_not_sent() {
    let (l, addr) = listener();
    let _worker = echo_worker(l);
    let mut conn = TcpConnection::connect(&addr, CONNECT).unwrap();
    let bad = FrameHeader { payload_len: 3, ..f64_frame(1, 2, 2) };
    assert!(matches!(conn.send(&bad, &[0; 3]), Err(TransportError::PayloadLenMismatch { .. })));
    assert!(matches!(conn.send(&bytes_frame(1, 5), &[0; 4]), Err(TransportError::PayloadSizeMismatch { declared: 5, actual: 4 })));
    // Nothing reached the wire: the connection still works.
    conn.send(&bytes_frame(2, 5), &pattern(2, 5)).unwrap();
    assert_eq!(conn.recv(LONG).unwrap().call_id, 2);
}

#[test]
fn connect_to_nothing_fails_with_context() {
    // Bind then drop to get a port that (very likely) nobody listens on.
    let addr = {
        let (_l, addr) = listener();
        addr
    };
    let err = TcpConnection::connect(&addr, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, TransportError::Io { .. }), "{err}");
    assert!(err.to_string().contains("connecting to"), "{err}");
}
