//! Byte layout of the shared region. Everything the two processes share is
//! an atomic, so racy reads by a misbehaving peer are not undefined
//! behaviour.
//!
//! ```text
//! [0, PAGE)                 RegionHeader
//! [PAGE, 2*PAGE)            RingControl of ring 0 (creator -> opener)
//! [2*PAGE, 3*PAGE)          RingControl of ring 1 (opener -> creator)
//! [3*PAGE, 3*PAGE+cap)      data of ring 0
//! [3*PAGE+cap, 3*PAGE+2cap) data of ring 1
//! ```
//!
//! A ring's data holds records, each starting on a 64-byte boundary:
//! a 64-byte prefix (`u64` record length, 8 reserved bytes, the 48-byte
//! frame header) then the payload, padded to 64 bytes. A record whose
//! length has [`SKIP_FLAG`] set only tells the reader to continue at the
//! start of the data area.

use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::frame::HEADER_LEN;

pub(crate) const REGION_MAGIC: u64 = u64::from_le_bytes(*b"TLRSHM\0\x01");
pub(crate) const LAYOUT_VERSION: u32 = 1;
pub(crate) const PAGE: u64 = 4096;
pub(crate) const RECORD_ALIGN: u64 = 64;
pub(crate) const RECORD_PREFIX: u64 = 64;
/// Offset of the frame header inside a record prefix.
pub(crate) const HEADER_OFFSET: u64 = 16;
pub(crate) const SKIP_FLAG: u64 = 1 << 63;
/// Smallest data area per ring.
pub(crate) const MIN_CAPACITY: u64 = PAGE;

const _: () = assert!(HEADER_OFFSET as usize + HEADER_LEN <= RECORD_PREFIX as usize);

/// Keeps a value on its own pair of cache lines (adjacent-line prefetch
/// makes 64 bytes too little on Intel).
#[repr(C, align(128))]
pub(crate) struct CachePadded<T>(pub T);

#[repr(C)]
pub(crate) struct RegionHeader {
    /// Written last by the creator: a reader that sees it sees the rest.
    pub magic: AtomicU64,
    pub layout_version: AtomicU32,
    pub _pad: AtomicU32,
    pub capacity: AtomicU64,
    pub region_len: AtomicU64,
    pub creator_pid: AtomicU32,
    pub opener_pid: AtomicU32,
    /// Set to 1 by a side when it drops its endpoint.
    pub creator_closed: AtomicU32,
    pub opener_closed: AtomicU32,
}

/// Control block of one single-producer / single-consumer ring.
#[repr(C)]
pub(crate) struct RingControl {
    /// Bytes ever published (monotonic, multiple of 64). Producer writes.
    pub head: CachePadded<AtomicU64>,
    /// Bytes ever consumed (monotonic, multiple of 64). Consumer writes.
    pub tail: CachePadded<AtomicU64>,
    /// Futex word bumped by the producer when the consumer sleeps.
    pub data_signal: CachePadded<AtomicU32>,
    /// 1 while the consumer may sleep on `data_signal`.
    pub consumer_waiting: CachePadded<AtomicU32>,
    /// Futex word bumped by the consumer when the producer sleeps.
    pub space_signal: CachePadded<AtomicU32>,
    /// 1 while the producer may sleep on `space_signal`.
    pub producer_waiting: CachePadded<AtomicU32>,
}

const _: () = assert!(std::mem::size_of::<RegionHeader>() as u64 <= PAGE);
const _: () = assert!(std::mem::size_of::<RingControl>() as u64 <= PAGE);

/// Offsets of the parts of a region with per-ring data area `capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    pub capacity: u64,
}

impl Layout {
    pub fn region_len(self) -> u64 {
        3 * PAGE + 2 * self.capacity
    }

    pub fn control_offset(self, ring: usize) -> u64 {
        PAGE * (1 + ring as u64)
    }

    pub fn data_offset(self, ring: usize) -> u64 {
        3 * PAGE + self.capacity * ring as u64
    }
}

/// Rounds a requested capacity to whole pages, at least [`MIN_CAPACITY`].
pub(crate) fn round_capacity(requested: usize) -> Option<u64> {
    let req = (requested as u64).max(MIN_CAPACITY);
    req.checked_next_multiple_of(PAGE)
}

pub(crate) fn record_len(payload_len: u64) -> Option<u64> {
    RECORD_PREFIX.checked_add(payload_len)?.checked_next_multiple_of(RECORD_ALIGN)
}
