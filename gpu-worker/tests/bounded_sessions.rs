//! A real worker process over TCP against hostile or stalled peers: a
//! header declaring a huge payload is refused from the header alone (the
//! worker's memory stays flat), a frame that stalls mid-way ends its
//! session, an idle session is kept, and after each the worker serves the
//! next CVM.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use talaria_kernels::Precision;
use talaria_models::fetch::ensure_default_model;
use talaria_models::{Checkpoint, Op, OpId};
use talaria_protocol::{CallKind, Hello, HelloAck, PublicParams, WorkerCall, WorkerError, WORKER_PROTOCOL};
use talaria_transport::{Connection, DType, FrameHeader, FrameKind, TcpConnection};

const LONG: Option<Duration> = Some(Duration::from_secs(60));

struct Worker {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Worker {
    /// `--insecure` plain TCP (this test plays raw bytes), a 2 s stall bound.
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::env::temp_dir().join(format!("talaria-worker-bounded-{}.log", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_talaria-gpu-worker"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--insecure", "--offline", "--backend", "cpu", "--frame-stall-s", "2"])
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let w = Worker { child, addr: format!("127.0.0.1:{port}"), log };
        w.wait_for_log("listening on", Duration::from_secs(300));
        w
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&self, needle: &str, within: Duration) {
        let t0 = Instant::now();
        while !self.log_text().contains(needle) {
            assert!(t0.elapsed() < within, "no {needle:?} in the worker log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn hello(conn: &mut TcpConnection, manifest_hash: &str) -> HelloAck {
    let remo =
        PublicParams { mode: "remo".into(), scheme: "remo".into(), kappa: 1e4, precision: "exact-f64".into(), calibration: "test".into() };
    let body = serde_json::to_vec(&Hello { protocol: WORKER_PROTOCOL, manifest_hash: manifest_hash.into(), remo }).unwrap();
    conn.send(&FrameHeader::bytes(FrameKind::Hello, body.len()), &body).unwrap();
    let frame = conn.recv(LONG).unwrap();
    assert_eq!(frame.kind, FrameKind::HelloAck, "{}", WorkerError::message_of(frame.payload()));
    serde_json::from_slice(frame.payload()).unwrap()
}

/// The layer-0 o-projection call on `rows` rows.
fn o_call(ack: &HelloAck, rows: usize) -> WorkerCall {
    let id = OpId { layer: 0, op: Op::O };
    let s = ack.ops.iter().find(|s| s.layer == 0 && s.op == Op::O.code()).unwrap();
    WorkerCall { id, kind: CallKind::Online, precision: Precision::F64, rows, d_in: s.d_in, d_out: s.d_out }
}

/// The session's answer to a frame the worker refused: an `Error` naming
/// the cause, then the connection closes.
fn expect_refused_and_closed(conn: &mut TcpConnection, cause: &str) {
    let frame = conn.recv(LONG).unwrap();
    assert_eq!(frame.kind, FrameKind::Error);
    let msg = WorkerError::message_of(frame.payload());
    assert!(msg.contains(cause), "{msg}");
    drop(frame);
    let err = conn.recv(LONG).unwrap_err();
    assert!(err.is_peer_gone(), "{err}");
}

#[test]
fn huge_headers_and_stalled_frames_end_only_their_session() {
    let manifest = Checkpoint::open(ensure_default_model(false).unwrap()).unwrap().manifest_hash();
    let worker = Worker::start();
    let rss0 = worker.rss_kib();

    // Before the handshake: 2^40 bytes declared, nothing sent after it.
    let huge = FrameHeader::matrix(FrameKind::Call, DType::F64, 1 << 20, 1 << 17);
    assert_eq!(huge.payload_len, 1 << 40);
    let (mut raw, mut conn, _) = session(&worker, None);
    raw.write_all(&huge.encode()).unwrap();
    expect_refused_and_closed(&mut conn, "exceeds the limit");

    // After it: a well-formed call header declaring 2 GiB (2^16 rows of the
    // widest op of this model are a fraction of that).
    let big = FrameHeader::matrix(FrameKind::Call, DType::F64, 1 << 15, 1 << 13).with_call(7, 0, Op::O.code(), CallKind::Online.code());
    assert_eq!(big.payload_len, 2 << 30);
    let (mut raw, mut conn, _) = session(&worker, Some(&manifest));
    raw.write_all(&big.encode()).unwrap();
    expect_refused_and_closed(&mut conn, "exceeds the limit");
    let rss1 = worker.rss_kib();
    assert!(rss1 < rss0 + 64 * 1024, "worker RSS grew from {rss0} KiB to {rss1} KiB");

    // A frame that stops half-way: the session ends after the stall bound.
    let (mut raw, mut conn, ack) = session(&worker, Some(&manifest));
    let ack = ack.unwrap();
    let call = o_call(&ack, 2);
    raw.write_all(&call.header(1).encode()).unwrap();
    raw.write_all(&vec![0u8; call.d_in * 8]).unwrap(); // one of the two rows
    let t0 = Instant::now();
    let err = conn.recv(LONG).unwrap_err();
    assert!(err.is_peer_gone(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    worker.wait_for_log("stopped sending mid-frame", Duration::from_secs(10));

    // An idle session (longer than the stall bound) is kept, then served;
    // the worker is still there for the next CVM after all of the above.
    let (_raw, mut conn, _) = session(&worker, Some(&manifest));
    std::thread::sleep(Duration::from_secs(3));
    let call = o_call(&ack, 1);
    let x = vec![0.5f64; call.d_in];
    conn.send(&call.header(9), bytemuck::cast_slice(&x)).unwrap();
    let frame = conn.recv(LONG).unwrap();
    assert_eq!((frame.kind, frame.call_id, frame.rows as usize, frame.cols as usize), (FrameKind::Result, 9, 1, call.d_out));
}

/// A fresh session: a raw socket to write hostile bytes with, and a
/// connection reading the same socket; greeted when `manifest` is given.
fn session(worker: &Worker, manifest: Option<&str>) -> (TcpStream, TcpConnection, Option<HelloAck>) {
    let raw = TcpStream::connect(&worker.addr).unwrap();
    let mut conn = TcpConnection::from_stream(raw.try_clone().unwrap()).unwrap();
    let ack = manifest.map(|m| hello(&mut conn, m));
    (raw, conn, ack)
}
