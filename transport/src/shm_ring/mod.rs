//! Shared-memory transport between two processes on one host.
//!
//! One file (in /dev/shm when available) holds two single-producer /
//! single-consumer rings: creator -> opener and opener -> creator. Frames
//! are written and read in place; payloads start on 64-byte boundaries.
//! Waiting spins for a few microseconds, then sleeps on a cross-process
//! futex with a bounded timeout, checking every [`LIVENESS_INTERVAL`] that
//! the peer process is alive.
//!
//! Trust: the peer may be hostile. Every index and header it writes is
//! validated before use, and reads and writes stay inside our mapping; a
//! hostile peer can garble payload bytes (it can lie about results anyway)
//! or stall us (bounded by timeouts), not make us touch memory out of bounds.

mod futex;
mod layout;
mod memfd;
mod peer;
mod region;
mod ring;
mod wait;

use std::cell::Cell;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::connection::{Connection, FrameSink, Received};
use crate::error::{Result, TransportError};
use crate::frame::{FrameHeader, MAX_PAYLOAD_LEN};
use layout::RegionHeader;
pub use peer::process_alive;
use peer::PeerWatch;
use region::Region;
use ring::{Consumer, Producer, WaitCfg};
pub use wait::LIVENESS_INTERVAL;

/// Entry points: the creator (CVM) makes a region, the other process
/// (worker) opens it by path.
pub struct ShmRing;

/// Which end of the region an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShmSide {
    /// Made the region; sends on ring 0, removes the file.
    Creator,
    /// Opened the region by path; sends on ring 1.
    Opener,
}

impl ShmRing {
    /// Default data capacity of each direction.
    pub const DEFAULT_CAPACITY: usize = 256 << 20;

    /// Creates a fresh region with `capacity` bytes per direction (rounded
    /// up to whole pages). `path_hint` is a file-name prefix (placed in
    /// /dev/shm, else the temp dir) or a path prefix with a directory; a
    /// unique suffix is always added. Returns the endpoint and the path to
    /// hand to the peer.
    pub fn create(path_hint: &str, capacity: usize) -> Result<(ShmEndpoint, PathBuf)> {
        let (region, path) = Region::create(path_hint, capacity)?;
        let endpoint = ShmEndpoint::new(region, ShmSide::Creator, path.clone());
        Ok((endpoint, path))
    }

    /// Creates a fresh region in an anonymous memory file (no name in any
    /// filesystem), sealed against resizing: a kernel without memfd seals
    /// is an error, since the peer could otherwise truncate the file and
    /// fault our accesses.
    /// Returns the endpoint and the file descriptor the peer must inherit
    /// (it is close-on-exec: the spawner passes it on explicitly) and open
    /// with [`open_fd`](Self::open_fd).
    pub fn create_memfd(name: &str, capacity: usize) -> Result<(ShmEndpoint, OwnedFd)> {
        let (region, file) = Region::create_memfd(name, capacity)?;
        let mut endpoint = ShmEndpoint::new(region, ShmSide::Creator, PathBuf::from(format!("memfd:{name}")));
        endpoint.unlink_pending = false;
        Ok((endpoint, OwnedFd::from(file)))
    }

    /// Opens a region made by [`create_memfd`](Self::create_memfd) from the
    /// inherited descriptor (consumed: the mapping keeps the memory).
    pub fn open_fd(fd: OwnedFd) -> Result<ShmEndpoint> {
        let label = PathBuf::from(format!("memfd (fd {})", fd.as_raw_fd()));
        let region = Region::open_file(&File::from(fd), &label)?;
        Self::attach(region, &label)
    }

    /// Opens a region made by [`create`](Self::create). At most one opener
    /// per region.
    pub fn open(path: impl AsRef<Path>) -> Result<ShmEndpoint> {
        let path = path.as_ref();
        Self::attach(Region::open(path)?, path)
    }

    /// Claims the opener's end of a mapped region.
    fn attach(region: Region, path: &Path) -> Result<ShmEndpoint> {
        let h = region.header();
        let me = std::process::id();
        if let Err(existing) = h.opener_pid.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            return Err(TransportError::BadRegion { path: path.to_path_buf(), reason: format!("already opened by process {existing}") });
        }
        if h.creator_closed.load(Ordering::Acquire) != 0 {
            return Err(TransportError::PeerGone(format!("the creator of {} has closed it", path.display())));
        }
        Ok(ShmEndpoint::new(region, ShmSide::Opener, path.to_path_buf()))
    }
}

/// One end of a shared-memory region; implements [`Connection`].
pub struct ShmEndpoint {
    tx: ShmSender,
    rx: Consumer,
    side: ShmSide,
    path: PathBuf,
    /// Creator only: the file still exists and must be removed.
    unlink_pending: bool,
    /// Set when the incoming ring held something invalid: we cannot find
    /// the next record any more.
    rx_broken: Option<String>,
    /// Largest payload accepted from the peer.
    rx_max_payload: u64,
    /// Declared last: the mapping must outlive the raw pointers above.
    region: Region,
}

/// Settings shared by sending and receiving.
#[derive(Clone, Copy)]
struct WaitSettings {
    side: ShmSide,
    spin: Duration,
    expected_peer_pid: Option<u32>,
}

/// The sending half: the outgoing ring plus what a blocked send needs.
struct ShmSender {
    producer: Producer,
    /// Points into the endpoint's mapping, which outlives this.
    region_header: *const RegionHeader,
    settings: WaitSettings,
    send_timeout: Option<Duration>,
}

// SAFETY: the raw pointers in `tx` / `rx` point into `region`'s mapping,
// which moves with the endpoint and is not tied to a thread.
unsafe impl Send for ShmEndpoint {}

impl ShmEndpoint {
    fn new(region: Region, side: ShmSide, path: PathBuf) -> Self {
        let (tx_ring, rx_ring) = match side {
            ShmSide::Creator => (region.ring(0), region.ring(1)),
            ShmSide::Opener => (region.ring(1), region.ring(0)),
        };
        // Our own indices start from what is published (0 in a new region).
        let head = tx_ring.ctrl().head.0.load(Ordering::Acquire);
        let tail = rx_ring.ctrl().tail.0.load(Ordering::Acquire);
        ShmEndpoint {
            tx: ShmSender {
                producer: Producer { ring: tx_ring, head },
                region_header: region.header() as *const RegionHeader,
                settings: WaitSettings { side, spin: wait::DEFAULT_SPIN, expected_peer_pid: None },
                send_timeout: None,
            },
            rx: Consumer { ring: rx_ring, tail: Cell::new(tail) },
            side,
            unlink_pending: side == ShmSide::Creator,
            path,
            rx_broken: None,
            rx_max_payload: MAX_PAYLOAD_LEN,
            region,
        }
    }

    /// Path of the region file (removed once the peer attached).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn side(&self) -> ShmSide {
        self.side
    }

    /// Data bytes per direction.
    pub fn capacity(&self) -> u64 {
        self.region.capacity()
    }

    /// The peer's pid once it attached (the opener's, or the creator's).
    pub fn peer_pid(&self) -> Option<u32> {
        let h = self.region.header();
        let pid = match self.side {
            ShmSide::Creator => h.opener_pid.load(Ordering::Acquire),
            ShmSide::Opener => h.creator_pid.load(Ordering::Acquire),
        };
        (pid != 0).then_some(pid)
    }

    /// Watch `pid` for death even before it opens the region (the creator
    /// passes the worker it spawned).
    pub fn expect_peer_pid(&mut self, pid: u32) {
        self.tx.settings.expected_peer_pid = Some(pid);
    }

    /// How long a waiter spins before sleeping on the futex.
    pub fn set_spin(&mut self, spin: Duration) {
        self.tx.settings.spin = spin;
    }

    /// Once the peer has attached nobody else needs the file: remove it so
    /// a crash of this process cannot leak it.
    fn unlink_if_attached(&mut self) {
        if self.unlink_pending && self.region.header().opener_pid.load(Ordering::Relaxed) != 0 {
            self.unlink_pending = false;
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The wait settings of one blocking operation.
fn wait_cfg(header: &RegionHeader, settings: WaitSettings, timeout: Option<Duration>) -> WaitCfg<'_> {
    let (closed, pid) = match settings.side {
        ShmSide::Creator => (&header.opener_closed, &header.opener_pid),
        ShmSide::Opener => (&header.creator_closed, &header.creator_pid),
    };
    WaitCfg { peer: PeerWatch { closed, pid, expected_pid: settings.expected_peer_pid }, spin: settings.spin, timeout }
}

impl FrameSink for ShmSender {
    fn send_frame(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()> {
        if payload.len() as u64 != header.payload_len {
            return Err(TransportError::PayloadSizeMismatch { declared: header.payload_len, actual: payload.len() });
        }
        self.send_frame_with(*header, &mut |dst| dst.copy_from_slice(payload))
    }

    fn send_frame_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        header.validate()?;
        // SAFETY: the region header lives in the endpoint's mapping, which
        // outlives this sender (see `ShmEndpoint::region`).
        let region_header = unsafe { &*self.region_header };
        let cfg = wait_cfg(region_header, self.settings, self.send_timeout);
        self.producer.send_with(&header, fill, &cfg)
    }
}

impl Connection for ShmEndpoint {
    fn send(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()> {
        self.unlink_if_attached();
        self.tx.send_frame(header, payload)
    }

    fn send_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        self.unlink_if_attached();
        self.tx.send_frame_with(header, fill)
    }

    fn recv(&mut self, timeout: Option<Duration>) -> Result<Received<'_>> {
        if let Some(why) = &self.rx_broken {
            return Err(TransportError::Broken(why.clone()));
        }
        self.unlink_if_attached();
        let cfg = wait_cfg(self.region.header(), self.tx.settings, timeout);
        let located = self.rx.next(&cfg, self.rx_max_payload).and_then(|at| {
            let payload = self.rx.payload(&at)?;
            Ok((at, payload))
        });
        match located {
            Ok((at, payload)) => Ok(Received::in_slot(at.header, payload, &self.rx, at.next_tail, &mut self.tx)),
            Err(e) => {
                if !(e.is_timeout() || e.is_peer_gone()) {
                    self.rx_broken = Some(e.to_string());
                }
                Err(e)
            }
        }
    }

    fn max_payload_len(&self) -> u64 {
        self.tx.producer.max_payload_len()
    }

    fn set_max_payload_len(&mut self, max: u64) {
        self.rx_max_payload = max.min(MAX_PAYLOAD_LEN);
    }

    /// Bound on how long `send` waits for ring space.
    fn set_send_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.tx.send_timeout = timeout;
        Ok(())
    }
}

impl Drop for ShmEndpoint {
    fn drop(&mut self) {
        let h = self.region.header();
        let mine = match self.side {
            ShmSide::Creator => &h.creator_closed,
            ShmSide::Opener => &h.opener_closed,
        };
        mine.store(1, Ordering::Release);
        self.tx.producer.ring.wake_everyone();
        self.rx.ring.wake_everyone();
        if self.unlink_pending {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl std::fmt::Debug for ShmEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmEndpoint")
            .field("path", &self.path)
            .field("side", &self.side)
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}
