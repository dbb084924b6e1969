//! The shared-memory ring within one process (both ends, two threads).

mod common;

use std::borrow::Cow;
use std::time::Duration;

use common::{bytes_frame, f64_frame, fill_pattern, matches_pattern, pattern};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use talaria_transport::{Connection, DType, FrameHeader, FrameKind, ShmEndpoint, ShmRing, TransportError, PAYLOAD_ALIGN};

const SMALL: usize = 8 * 1024;
const LONG: Option<Duration> = Some(Duration::from_secs(10));

fn pair(capacity: usize) -> (ShmEndpoint, ShmEndpoint) {
    let (creator, path) = ShmRing::create("talaria-test", capacity).unwrap();
    let opener = ShmRing::open(&path).unwrap();
    (creator, opener)
}

/// Thousands of frames of random sizes (0 to the largest that fits) through
/// an 8 KiB ring: many wrap-arounds with skip records and back-pressure.
#[test]
fn frames_of_many_sizes_survive_wraparound() {
    let (mut creator, mut opener) = pair(SMALL);
    let max = creator.max_payload_len() as usize;
    assert_eq!(max, SMALL - 64);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
    let sizes: Vec<usize> = (0..3000)
        .map(|i| match i % 5 {
            0 => rng.random_range(0..64),
            1 => max,
            _ => rng.random_range(0..=max),
        })
        .collect();

    let sender_sizes = sizes.clone();
    let sender = std::thread::spawn(move || {
        for (id, &len) in sender_sizes.iter().enumerate() {
            creator.send(&bytes_frame(id as u64, len), &pattern(id as u64, len)).unwrap();
        }
        creator
    });
    for (id, &len) in sizes.iter().enumerate() {
        let got = opener.recv(LONG).unwrap();
        assert_eq!(*got.header(), bytes_frame(id as u64, len));
        assert_eq!(got.payload().len(), len);
        assert!(matches_pattern(id as u64, got.payload()), "frame {id} corrupted");
    }
    let _creator = sender.join().unwrap();
}

/// Request/response traffic (each frame consumed before the next is sent)
/// restarts at the front of the ring, so it keeps reusing the same hot
/// pages; frames of random sizes stay intact across those rewinds.
#[test]
fn an_emptied_ring_rewinds_to_its_first_pages() {
    let (mut creator, mut opener) = pair(64 * 1024);
    let mut first_addr = None;
    for id in 0..50u64 {
        creator.send(&bytes_frame(id, 4000), &pattern(id, 4000)).unwrap();
        let got = opener.recv(LONG).unwrap();
        assert!(matches_pattern(id, got.payload()));
        let addr = got.payload().as_ptr() as usize;
        assert_eq!(*first_addr.get_or_insert(addr), addr, "frame {id} did not reuse the ring's front");
    }
    // Random sizes, each echoed back by a peer thread before the next is sent.
    let max = creator.max_payload_len() as usize;
    let echo = std::thread::spawn(move || {
        for _ in 0..2000 {
            let mut got = opener.recv(LONG).unwrap();
            let answer = FrameHeader { kind: FrameKind::Result, ..*got.header() };
            got.reply_with(answer, &mut |input, out| out.copy_from_slice(input)).unwrap();
        }
    });
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
    for id in 100..2100u64 {
        let len = rng.random_range(0..=max);
        creator.send(&bytes_frame(id, len), &pattern(id, len)).unwrap();
        let got = creator.recv(LONG).unwrap();
        assert_eq!((got.call_id, got.payload().len()), (id, len));
        assert!(matches_pattern(id, got.payload()), "frame {id} ({len} bytes) corrupted");
    }
    echo.join().unwrap();
}

#[test]
fn both_directions_work() {
    let (mut a, mut b) = pair(SMALL);
    a.send(&bytes_frame(1, 10), &pattern(1, 10)).unwrap();
    b.send(&bytes_frame(2, 20), &pattern(2, 20)).unwrap();
    let from_b = a.recv(LONG).unwrap();
    assert_eq!(from_b.call_id, 2);
    assert!(matches_pattern(2, from_b.payload()));
    drop(from_b);
    let from_a = b.recv(LONG).unwrap();
    assert_eq!(from_a.call_id, 1);
    assert!(matches_pattern(1, from_a.payload()));
}

#[test]
fn frame_larger_than_ring_is_rejected_and_ring_stays_usable() {
    let (mut creator, mut opener) = pair(SMALL);
    let too_big = creator.max_payload_len() as usize + 1;
    let err = creator.send(&bytes_frame(1, too_big), &vec![0; too_big]).unwrap_err();
    assert!(matches!(err, TransportError::FrameTooLarge { capacity, .. } if capacity == SMALL as u64), "{err}");
    creator.send(&bytes_frame(2, 5), &pattern(2, 5)).unwrap();
    assert_eq!(opener.recv(LONG).unwrap().call_id, 2);
}

#[test]
fn payload_length_must_match_header() {
    let (mut creator, _opener) = pair(SMALL);
    let err = creator.send(&bytes_frame(1, 10), &[0; 9]).unwrap_err();
    assert!(matches!(err, TransportError::PayloadSizeMismatch { declared: 10, actual: 9 }));
    let bad = FrameHeader { payload_len: 7, ..f64_frame(1, 1, 1) };
    let err = creator.send(&bad, &[0; 7]).unwrap_err();
    assert!(matches!(err, TransportError::PayloadLenMismatch { .. }));
}

/// The payload is written in place by `send_with`, arrives 64-byte aligned
/// and is viewed as `&[f64]` without a copy.
#[test]
fn send_with_writes_in_place_and_payloads_are_aligned() {
    let (mut creator, mut opener) = pair(64 * 1024);
    for (id, cols) in [1u32, 3, 7, 8, 9, 63, 64, 65, 100, 577].into_iter().enumerate() {
        let rows = 3;
        let header = f64_frame(id as u64, rows, cols);
        let expected: Vec<f64> = (0..rows * cols).map(|i| i as f64 * 0.5 - id as f64).collect();
        creator
            .send_with(header, &mut |dst| {
                assert_eq!(dst.len(), expected.len() * 8);
                assert_eq!(dst.as_ptr() as usize % PAYLOAD_ALIGN, 0);
                for (chunk, v) in dst.chunks_exact_mut(8).zip(&expected) {
                    chunk.copy_from_slice(&v.to_le_bytes());
                }
            })
            .unwrap();
        let got = opener.recv(LONG).unwrap();
        assert_eq!(got.dtype, DType::F64);
        assert_eq!(got.payload().as_ptr() as usize % PAYLOAD_ALIGN, 0);
        let values = got.f64s().unwrap();
        assert!(matches!(values, Cow::Borrowed(_)), "aligned payload was copied");
        assert_eq!(&*values, expected.as_slice());
        assert!(matches!(got.f32s(), Err(TransportError::WrongDType { .. })));
    }
}

/// A worker reads the request in place and writes the answer straight into
/// the other ring while still holding the request.
#[test]
fn reply_with_reads_and_writes_in_place() {
    let (mut cvm, mut worker) = pair(SMALL);
    let input: Vec<f64> = (0..12).map(|i| i as f64).collect();
    cvm.send(&f64_frame(5, 3, 4), bytemuck_bytes(&input)).unwrap();

    let mut request = worker.recv(LONG).unwrap();
    let answer = FrameHeader { kind: FrameKind::Result, ..*request.header() };
    request
        .reply_with(answer, &mut |inp, out| {
            for (o, i) in out.chunks_exact_mut(8).zip(inp.chunks_exact(8)) {
                let v = f64::from_le_bytes(i.try_into().unwrap());
                o.copy_from_slice(&(2.0 * v).to_le_bytes());
            }
        })
        .unwrap();
    drop(request);

    let result = cvm.recv(LONG).unwrap();
    assert_eq!(result.kind, FrameKind::Result);
    assert_eq!(result.call_id, 5);
    let doubled: Vec<f64> = input.iter().map(|v| 2.0 * v).collect();
    assert_eq!(&*result.f64s().unwrap(), doubled.as_slice());
}

fn bytemuck_bytes(v: &[f64]) -> &[u8] {
    talaria_transport::as_payload_bytes(v)
}

#[test]
fn recv_times_out_and_recovers() {
    let (mut creator, mut opener) = pair(SMALL);
    let err = opener.recv(Some(Duration::from_millis(30))).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    creator.send(&bytes_frame(9, 3), &pattern(9, 3)).unwrap();
    assert_eq!(opener.recv(LONG).unwrap().call_id, 9);
}

/// A held frame keeps its slot; dropping it frees the space.
#[test]
fn held_frame_blocks_space_until_dropped() {
    let (mut cvm, mut worker) = pair(SMALL);
    worker.set_send_timeout(Some(Duration::from_millis(50))).unwrap();
    let big = 5000;
    worker.send(&bytes_frame(1, big), &pattern(1, big)).unwrap();
    let held = cvm.recv(LONG).unwrap();
    let err = worker.send(&bytes_frame(2, big), &pattern(2, big)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    drop(held);
    worker.send(&bytes_frame(2, big), &pattern(2, big)).unwrap();
    let got = cvm.recv(LONG).unwrap();
    assert_eq!(got.call_id, 2);
    assert!(matches_pattern(2, got.payload()));
}

/// Repeated big frames from one thread only work if every dropped frame
/// returned its slot.
#[test]
fn dropped_frames_release_their_slots() {
    let (mut cvm, mut worker) = pair(SMALL);
    cvm.set_send_timeout(Some(Duration::from_secs(2))).unwrap();
    let big = SMALL - 64;
    for id in 0..200 {
        cvm.send_with(bytes_frame(id, big), &mut |dst| fill_pattern(id, dst)).unwrap();
        let got = worker.recv(LONG).unwrap();
        assert!(matches_pattern(id, got.payload()));
    }
}

/// A panic while filling in place publishes nothing and loses no space.
#[test]
fn panicking_fill_sends_nothing() {
    let (mut cvm, mut worker) = pair(SMALL);
    for id in 0..20 {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cvm.send_with(bytes_frame(1000 + id, 4000), &mut |_| panic!("fill failed"))
        }));
        assert!(outcome.is_err());
        cvm.send(&bytes_frame(id, 4000), &pattern(id, 4000)).unwrap();
        let got = worker.recv(LONG).unwrap();
        assert_eq!(got.call_id, id, "a half-written frame was published");
        assert!(matches_pattern(id, got.payload()));
    }
}

#[test]
fn frames_sent_before_close_arrive_then_peer_gone() {
    let (mut cvm, mut worker) = pair(SMALL);
    for id in 0..3 {
        worker.send(&bytes_frame(id, 100), &pattern(id, 100)).unwrap();
    }
    drop(worker);
    for id in 0..3 {
        let got = cvm.recv(LONG).unwrap();
        assert_eq!(got.call_id, id);
        assert!(matches_pattern(id, got.payload()));
    }
    let err = cvm.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PeerGone(_)), "{err}");
    let err = cvm.send(&bytes_frame(9, 1), &[0]).unwrap_err();
    assert!(matches!(err, TransportError::PeerGone(_)), "{err}");
}

#[test]
fn region_file_lifecycle() {
    let (creator, path) = ShmRing::create("talaria-test", SMALL).unwrap();
    assert!(path.exists());
    if std::path::Path::new("/dev/shm").is_dir() {
        assert!(path.starts_with("/dev/shm"), "{}", path.display());
    }
    drop(creator);
    assert!(!path.exists(), "creator did not remove its file");

    // Re-creation (fresh worker after a crash) gets a new region.
    let (mut creator, path2) = ShmRing::create("talaria-test", SMALL).unwrap();
    assert_ne!(path, path2);
    let _opener = ShmRing::open(&path2).unwrap();
    // Once the peer attached, the creator removes the file on its next call.
    let _ = creator.recv(Some(Duration::ZERO));
    assert!(!path2.exists());
}

#[test]
fn a_region_has_one_opener() {
    let (_creator, path) = ShmRing::create("talaria-test", SMALL).unwrap();
    let _first = ShmRing::open(&path).unwrap();
    let err = ShmRing::open(&path).unwrap_err();
    assert!(matches!(err, TransportError::BadRegion { .. }), "{err}");
}

#[test]
fn opening_something_else_fails_cleanly() {
    let dir = std::env::temp_dir();
    let junk = dir.join(format!("talaria-junk-{}", std::process::id()));
    std::fs::write(&junk, vec![0xAB; 64 * 1024]).unwrap();
    let err = ShmRing::open(&junk).unwrap_err();
    assert!(matches!(err, TransportError::BadRegion { .. }), "{err}");
    std::fs::write(&junk, b"short").unwrap();
    let err = ShmRing::open(&junk).unwrap_err();
    assert!(matches!(err, TransportError::BadRegion { .. }), "{err}");
    std::fs::remove_file(&junk).unwrap();
    let err = ShmRing::open(&junk).unwrap_err();
    assert!(matches!(err, TransportError::Io { .. }), "{err}");
}

/// A peer that scribbles over the ring gets errors, not crashes.
#[test]
fn corrupted_ring_is_reported() {
    const PAGE: u64 = 4096;
    let (mut cvm, path) = ShmRing::create("talaria-test", SMALL).unwrap();
    let mut worker = ShmRing::open(&path).unwrap();
    worker.send(&bytes_frame(1, 10), &pattern(1, 10)).unwrap();

    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let map = memmap2::MmapRaw::map_raw(&file).unwrap();
    // Ring 1 (worker -> cvm) data starts after 3 pages and ring 0's data;
    // the frame header sits 16 bytes into the record.
    let record = 3 * PAGE + SMALL as u64;
    // SAFETY: in bounds of the mapping; this test plays the hostile peer.
    unsafe { *map.as_mut_ptr().add(record as usize + 16) = b'X' };
    let err = cvm.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::BadMagic { .. }), "{err}");
    let err = cvm.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::Broken(_)), "{err}");

    // A wild head index on the other ring.
    let (mut cvm, path) = ShmRing::create("talaria-test", SMALL).unwrap();
    let _worker = ShmRing::open(&path).unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let map = memmap2::MmapRaw::map_raw(&file).unwrap();
    let ring1_head = 2 * PAGE;
    // SAFETY: aligned u64 in bounds of the mapping.
    unsafe { (map.as_mut_ptr().add(ring1_head as usize) as *mut u64).write_volatile(1 << 40) };
    let err = cvm.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::Corrupt(_)), "{err}");
}
