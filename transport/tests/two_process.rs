//! The shared-memory ring between two real processes. The test binary
//! re-runs itself as the child: `child_entry` does nothing unless the
//! `TALARIA_TRANSPORT_CHILD` variable names a role.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{bytes_frame, fill_pattern, matches_pattern};
use talaria_transport::{Connection, FrameHeader, FrameKind, ShmRing, TransportError};

const ROLE_VAR: &str = "TALARIA_TRANSPORT_CHILD";
const PATH_VAR: &str = "TALARIA_TRANSPORT_RING";
const LONG: Option<Duration> = Some(Duration::from_secs(20));

#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE_VAR) else {
        return;
    };
    let path = std::env::var(PATH_VAR).expect("ring path");
    let mut ring = ShmRing::open(&path).expect("open ring");
    match role.as_str() {
        // Echo every Call as a Result until Shutdown, payload copied from
        // the incoming ring straight into the outgoing one.
        "echo" => loop {
            let mut frame = ring.recv(LONG).expect("recv");
            if frame.kind == FrameKind::Shutdown {
                return;
            }
            let answer = FrameHeader { kind: FrameKind::Result, ..*frame.header() };
            frame.reply_with(answer, &mut |input, out| out.copy_from_slice(input)).expect("reply");
        },
        // Leave without closing the ring (no destructors run).
        "exit_silently" => {
            ring.send(&FrameHeader::new(FrameKind::Pong), &[]).unwrap();
            std::process::exit(0);
        }
        // Close the ring properly, then linger so only the flag tells.
        "close_and_linger" => {
            drop(ring);
            std::thread::sleep(Duration::from_secs(30));
        }
        // Attach and wait to be killed.
        "hang" => {
            ring.send(&FrameHeader::new(FrameKind::Pong), &[]).unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown child role {other}"),
    }
}

fn spawn_child(role: &str, path: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ROLE_VAR, role)
        .env(PATH_VAR, path)
        // The child's own test-harness chatter; panics still reach stderr.
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn child test process")
}

#[test]
fn echo_1000_frames_across_processes() {
    let (mut ring, path) = ShmRing::create("talaria-2proc", 1 << 20).unwrap();
    let mut child = spawn_child("echo", &path);
    ring.expect_peer_pid(child.id());

    let sizes = [0usize, 1, 63, 64, 65, 4096, 100_000, 500_000];
    let mut round_trips = Vec::with_capacity(1000);
    for id in 0..1000u64 {
        let len = sizes[id as usize % sizes.len()];
        let start = Instant::now();
        ring.send_with(bytes_frame(id, len), &mut |dst| fill_pattern(id, dst)).unwrap();
        let echoed = ring.recv(LONG).unwrap();
        round_trips.push((len, start.elapsed()));
        assert_eq!(echoed.kind, FrameKind::Result);
        assert_eq!(echoed.call_id, id);
        assert_eq!(echoed.payload().len(), len);
        assert!(matches_pattern(id, echoed.payload()), "frame {id} corrupted");
    }
    ring.send(&FrameHeader::new(FrameKind::Shutdown), &[]).unwrap();
    assert!(child.wait().unwrap().success());

    for len in [0usize, 4096, 500_000] {
        // The first frames include the child's start-up.
        let mut times: Vec<Duration> = round_trips[16..].iter().filter(|(l, _)| *l == len).map(|(_, t)| *t).collect();
        times.sort();
        println!(
            "shm round trip, {len} B payload: p50 {:?}, p99 {:?} ({} samples)",
            times[times.len() / 2],
            times[times.len() * 99 / 100],
            times.len()
        );
    }
}

/// The child leaves without closing: the pid check notices (first as a
/// zombie, since we do not reap it before `recv` returns).
#[test]
fn dead_peer_process_is_detected() {
    let (mut ring, path) = ShmRing::create("talaria-2proc", 64 * 1024).unwrap();
    let mut child = spawn_child("exit_silently", &path);
    ring.expect_peer_pid(child.id());
    assert_eq!(ring.recv(LONG).unwrap().kind, FrameKind::Pong);
    let err = ring.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PeerGone(_)), "{err}");
    child.wait().unwrap();
}

#[test]
fn killed_peer_is_detected_while_sending() {
    let (mut ring, path) = ShmRing::create("talaria-2proc", 16 * 1024).unwrap();
    let mut child = spawn_child("hang", &path);
    assert_eq!(ring.recv(LONG).unwrap().kind, FrameKind::Pong);
    child.kill().unwrap();
    // Bounded so a detection bug fails the test instead of hanging it.
    ring.set_send_timeout(LONG).unwrap();
    // The child never reads: the ring fills, then the blocked send must see
    // the death rather than wait forever.
    let err = (0..100u64)
        .find_map(|id| ring.send(&bytes_frame(id, 4000), &[7; 4000]).err())
        .expect("sends into a dead peer's full ring cannot all succeed");
    assert!(matches!(err, TransportError::PeerGone(_)), "{err}");
    child.wait().unwrap();
}

#[test]
fn closed_ring_is_detected_before_the_process_exits() {
    let (mut ring, path) = ShmRing::create("talaria-2proc", 64 * 1024).unwrap();
    let mut child = spawn_child("close_and_linger", &path);
    ring.expect_peer_pid(child.id());
    let err = ring.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PeerGone(_)), "{err}");
    // The close flag, not the exit, answered: the child still lingers.
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A worker that dies before it ever opens the ring is detected through the
/// pid the creator was told to expect.
#[test]
fn peer_dying_before_attach_is_detected() {
    let (mut ring, _path) = ShmRing::create("talaria-2proc", 64 * 1024).unwrap();
    let mut child = Command::new("true").spawn().unwrap();
    ring.expect_peer_pid(child.id());
    let err = ring.recv(LONG).unwrap_err();
    assert!(matches!(err, TransportError::PeerGone(_)), "{err}");
    child.wait().unwrap();
}
