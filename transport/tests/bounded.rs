//! What a hostile or stalled peer can make a receiver do: a header
//! declaring a huge payload is refused from the header alone (nothing read,
//! nothing allocated), on TCP and on the shared-memory ring; a frame that
//! stops mid-way ends the connection after the stall timeout, while idling
//! between frames does not.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{bytes_frame, pattern};
use talaria_transport::{Connection, DType, FrameHeader, FrameKind, ShmRing, TcpConnection, TcpWorkerListener, TransportError};

const LONG: Option<Duration> = Some(Duration::from_secs(10));

/// A listener, a raw client socket, and the accepted connection.
fn raw_pair() -> (TcpStream, TcpConnection) {
    let l = TcpWorkerListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    (client, l.accept().unwrap())
}

/// An f64 call header whose (consistent) shape declares `payload_len`
/// bytes: 2^15 rows of `payload_len / 2^18` columns.
fn huge_call_header(payload_len: u64) -> [u8; 48] {
    let cols = (payload_len / 8 / (1 << 15)) as u32;
    FrameHeader::matrix(FrameKind::Call, DType::F64, 1 << 15, cols).encode()
}

fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_tcp_header_over_the_limit_is_refused_without_reading_or_allocating() {
    for huge in [2u64 << 30, 1 << 40] {
        let (mut client, mut conn) = raw_pair();
        conn.set_max_payload_len(64 << 10);
        let before = vm_rss_kib();
        // Only the header: a receiver that tried to read the payload would
        // wait for it instead of failing.
        client.write_all(&huge_call_header(huge)).unwrap();
        let err = conn.recv(LONG).unwrap_err();
        assert!(matches!(err, TransportError::PayloadTooLarge { len, max: 65536 } if len == huge), "{err}");
        assert!(vm_rss_kib() < before + 32 * 1024, "RSS grew from {before} KiB to {} KiB", vm_rss_kib());
        // The stream is out of sync for good.
        assert!(matches!(conn.recv(LONG), Err(TransportError::Broken(_))));
    }
}

#[test]
fn a_frame_within_the_limit_still_passes() {
    let (mut client, mut conn) = raw_pair();
    conn.set_max_payload_len(100);
    client.write_all(&bytes_frame(7, 100).encode()).unwrap();
    client.write_all(&pattern(7, 100)).unwrap();
    let frame = conn.recv(LONG).unwrap();
    assert_eq!(frame.payload(), pattern(7, 100).as_slice());
}

#[test]
fn a_frame_that_stalls_mid_way_ends_the_connection() {
    let (mut client, mut conn) = raw_pair();
    conn.set_stall_timeout(Some(Duration::from_millis(300)));
    client.write_all(&bytes_frame(1, 1000).encode()).unwrap();
    client.write_all(&[0; 400]).unwrap();
    let t0 = Instant::now();
    let err = conn.recv(None).unwrap_err();
    assert!(matches!(err, TransportError::Stalled { what: "payload", got: 400, expected: 1000, .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(matches!(conn.recv(None), Err(TransportError::Broken(_))));

    // A header cut short stalls the same way.
    let (mut client, mut conn) = raw_pair();
    conn.set_stall_timeout(Some(Duration::from_millis(300)));
    client.write_all(&bytes_frame(1, 10).encode()[..20]).unwrap();
    let err = conn.recv(None).unwrap_err();
    assert!(matches!(err, TransportError::Stalled { what: "frame header", got: 20, .. }), "{err}");
}

#[test]
fn idling_between_frames_is_not_a_stall() {
    let (mut client, mut conn) = raw_pair();
    conn.set_stall_timeout(Some(Duration::from_millis(200)));
    let peer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        client.write_all(&bytes_frame(3, 64).encode()).unwrap();
        client.write_all(&pattern(3, 64)).unwrap();
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
    });
    let frame = conn.recv(None).unwrap();
    assert_eq!(frame.payload(), pattern(3, 64).as_slice());
    drop(frame);
    drop(conn);
    peer.join().unwrap();
}

/// The ring's receiver checks the header the same way: a record whose
/// header declares 2^40 bytes (the hostile peer wrote it in place) is an
/// error, and so is one over the connection's own limit.
#[test]
fn a_ring_header_over_the_limit_is_refused() {
    const PAGE: usize = 4096;
    const CAP: usize = 64 * 1024;
    let (mut cvm, path) = ShmRing::create("talaria-test", CAP).unwrap();
    let mut worker = ShmRing::open(&path).unwrap();
    worker.send(&bytes_frame(1, 10), &pattern(1, 10)).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let map = memmap2::MmapRaw::map_raw(&file).unwrap();
    // Ring 1 (worker -> cvm) data starts after 3 pages and ring 0's data;
    // the frame header sits 16 bytes into the record, its payload_len 32
    // bytes into the header.
    let at = 3 * PAGE + CAP + 16 + 32;
    // SAFETY: in bounds of the mapping; this test plays the hostile peer.
    unsafe { (map.as_mut_ptr().add(at) as *mut u64).write_unaligned((1u64 << 40).to_le()) };
    let err = cvm.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PayloadTooLarge { len, .. } if len == 1 << 40), "{err}");

    let (mut cvm, path) = ShmRing::create("talaria-test", CAP).unwrap();
    let mut worker = ShmRing::open(&path).unwrap();
    cvm.set_max_payload_len(100);
    worker.send(&bytes_frame(2, 1000), &pattern(2, 1000)).unwrap();
    let err = cvm.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PayloadTooLarge { len: 1000, max: 100 }), "{err}");
}

/// A region made on an anonymous memfd works like a file-backed one and
/// leaves nothing in /dev/shm; the descriptor is close-on-exec (only an
/// explicit hand-over passes it to a child).
#[test]
fn a_memfd_region_round_trips_and_has_no_name() {
    let before: Vec<_> = std::fs::read_dir("/dev/shm").map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    let (mut cvm, fd) = ShmRing::create_memfd("talaria-memfd-test", 64 * 1024).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFD only reads the flags of our own descriptor.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags & libc::FD_CLOEXEC != 0, "the memfd must be close-on-exec");
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    assert!(link.to_string_lossy().starts_with("/memfd:talaria-memfd-test"), "{}", link.display());
    let dup = fd.try_clone().unwrap();
    let mut worker = ShmRing::open_fd(dup).unwrap();
    assert_eq!(worker.peer_pid(), Some(std::process::id()));
    cvm.send(&bytes_frame(5, 300), &pattern(5, 300)).unwrap();
    assert_eq!(worker.recv(LONG).unwrap().payload(), pattern(5, 300).as_slice());
    worker.send(&bytes_frame(6, 30), &pattern(6, 30)).unwrap();
    assert_eq!(cvm.recv(LONG).unwrap().payload(), pattern(6, 30).as_slice());
    let after: Vec<_> = std::fs::read_dir("/dev/shm").map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    let new: Vec<_> = after.iter().filter(|n| !before.contains(n) && n.to_string_lossy().contains("memfd-test")).collect();
    assert!(new.is_empty(), "{new:?}");
    // A second opener is refused, as for a region file.
    assert!(matches!(ShmRing::open_fd(fd), Err(TransportError::BadRegion { .. })));
}

/// The memfd handed to the peer is sealed against resizing: a peer that
/// tries to truncate it (which would SIGBUS the creator) is refused.
#[test]
fn a_memfd_region_cannot_be_shrunk_by_the_peer() {
    let (_cvm, fd) = ShmRing::create_memfd("talaria-memfd-seal", 64 * 1024).unwrap();
    let file = std::fs::File::from(fd);
    let len = file.metadata().unwrap().len();
    use std::os::fd::AsRawFd;
    // SAFETY: F_GET_SEALS only reads the seals of our own descriptor.
    let seals = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GET_SEALS) };
    assert!(seals >= 0 && seals & (libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL) == libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL, "seals {seals:#x}");
    let err = file.set_len(4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    assert_eq!(file.metadata().unwrap().len(), len);
}

/// A peer that stops reading: a frame larger than the socket buffers blocks
/// the sender, and the send timeout ends it (the CVM sets one after its
/// handshake; without it the engine thread blocked in `write` for good).
#[test]
fn a_send_to_a_peer_that_stopped_reading_times_out() {
    let (client, mut conn) = raw_pair();
    conn.set_send_timeout(Some(Duration::from_millis(500))).unwrap();
    let len = 64 << 20;
    let t0 = Instant::now();
    let err = conn.send(&bytes_frame(1, len), &vec![0u8; len]).expect_err("64 MiB went into a peer that never reads");
    assert!(t0.elapsed() < Duration::from_secs(10), "the send blocked {:?}", t0.elapsed());
    assert!(!err.to_string().is_empty());
    drop(client);
}

/// A peer that reads, but a little at a time: every write makes progress
/// well inside the send timeout, which bounds the whole frame all the same
/// (bounded per write, this 64 MiB frame took about five minutes).
#[test]
fn a_send_to_a_slow_reader_ends_at_the_send_timeout() {
    let (mut client, mut conn) = raw_pair();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut read = 0usize;
        while let Ok(n @ 1..) = client.read(&mut buf) {
            read += n;
            std::thread::sleep(Duration::from_millis(20));
        }
        read
    });
    let timeout = Duration::from_millis(500);
    conn.set_send_timeout(Some(timeout)).unwrap();
    let len = 64 << 20;
    let t0 = Instant::now();
    let err = conn.send(&bytes_frame(1, len), &vec![0u8; len]).expect_err("64 MiB went to a reader taking 4 KiB per 20 ms");
    let took = t0.elapsed();
    assert!(took < timeout * 4, "a send bounded by {timeout:?} took {took:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    // Part of the frame is on the wire: the connection refuses to go on.
    assert!(matches!(conn.send(&bytes_frame(2, 8), &[0u8; 8]), Err(TransportError::Broken(_))));
    drop(conn);
    assert!(reader.join().unwrap() > 0, "the reader took nothing: the test did not exercise progress");
}
