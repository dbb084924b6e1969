//! One single-producer / single-consumer byte ring of variable-size records
//! inside the shared region.
//!
//! Each side keeps its own index (the producer `head`, the consumer `tail`)
//! locally and only publishes it, so the peer can never make us read or
//! write outside the data area: every index the peer publishes is checked
//! before use and every offset is reduced modulo the capacity.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::layout::{record_len, RingControl, HEADER_OFFSET, RECORD_ALIGN, RECORD_PREFIX, SKIP_FLAG};
use super::peer::PeerWatch;
use super::wait::{notify, wait_for, wake, WaitSpec, WaitWord};
use crate::connection::ReleaseSlot;
use crate::error::{Result, TransportError};
use crate::frame::{FrameHeader, HEADER_LEN, MAX_PAYLOAD_LEN};

/// Raw view of one ring inside the mapping (which outlives it).
pub(crate) struct RingPtrs {
    pub ctrl: *const RingControl,
    pub data: *mut u8,
    pub cap: u64,
}

impl RingPtrs {
    pub fn ctrl(&self) -> &RingControl {
        // SAFETY: points at a RingControl inside the live mapping; all of
        // its fields are atomics, valid for any bit pattern.
        unsafe { &*self.ctrl }
    }

    fn data_word(&self) -> WaitWord<'_> {
        let c = self.ctrl();
        WaitWord { signal: &c.data_signal.0, waiting: &c.consumer_waiting.0 }
    }

    fn space_word(&self) -> WaitWord<'_> {
        let c = self.ctrl();
        WaitWord { signal: &c.space_signal.0, waiting: &c.producer_waiting.0 }
    }

    /// Wakes whoever sleeps on this ring (used when a side closes).
    pub fn wake_everyone(&self) {
        wake(&self.data_word());
        wake(&self.space_word());
    }

    fn check_range(&self, off: u64, len: u64) -> Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= self.cap => Ok(()),
            _ => Err(TransportError::Corrupt(format!("range {off}+{len} outside the {}-byte ring", self.cap))),
        }
    }

    fn bytes(&self, off: u64, len: u64) -> Result<&[u8]> {
        self.check_range(off, len)?;
        // SAFETY: in bounds of the data area (checked). The producer does
        // not write this range until we publish a tail past it; a peer that
        // breaks the protocol can only garble the bytes we read.
        Ok(unsafe { std::slice::from_raw_parts(self.data.add(off as usize), len as usize) })
    }

    fn bytes_mut(&mut self, off: u64, len: u64) -> Result<&mut [u8]> {
        self.check_range(off, len)?;
        // SAFETY: in bounds (checked); the range is free space that only
        // this producer writes and the consumer does not read until we
        // publish a head past it.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.data.add(off as usize), len as usize) })
    }

    fn read_u64(&self, off: u64) -> Result<u64> {
        let mut w = [0u8; 8];
        w.copy_from_slice(self.bytes(off, 8)?);
        Ok(u64::from_le_bytes(w))
    }
}

/// Settings of one blocking operation.
pub(crate) struct WaitCfg<'a> {
    pub peer: PeerWatch<'a>,
    pub spin: Duration,
    pub timeout: Option<Duration>,
}

/// The writing end of a ring.
pub(crate) struct Producer {
    pub ring: RingPtrs,
    /// Bytes published so far (our copy is authoritative).
    pub head: u64,
}

impl Producer {
    /// Largest payload that fits in one record.
    pub fn max_payload_len(&self) -> u64 {
        (self.ring.cap - RECORD_PREFIX).min(MAX_PAYLOAD_LEN)
    }

    /// Writes one record, letting `fill` write its payload in place.
    pub fn send_with(&mut self, header: &FrameHeader, fill: &mut dyn FnMut(&mut [u8]), cfg: &WaitCfg<'_>) -> Result<()> {
        let cap = self.ring.cap;
        let rec = record_len(header.payload_len)
            .filter(|&r| r <= cap)
            .ok_or(TransportError::FrameTooLarge { needed: header.payload_len.saturating_add(RECORD_PREFIX), capacity: cap })?;
        cfg.peer.check_closed()?;
        self.rewind_if_empty(rec)?;

        let to_end = cap - self.head % cap;
        if rec > to_end {
            // Not contiguous: tell the reader to wrap, then start at 0.
            self.wait_space(to_end, cfg)?;
            let off = self.head % cap;
            self.ring.bytes_mut(off, 8)?.copy_from_slice(&(SKIP_FLAG | to_end).to_le_bytes());
            self.publish(self.head + to_end);
        }
        self.wait_space(rec, cfg)?;

        let off = self.head % cap;
        let prefix = self.ring.bytes_mut(off, RECORD_PREFIX)?;
        prefix[..8].copy_from_slice(&rec.to_le_bytes());
        prefix[8..HEADER_OFFSET as usize].fill(0);
        prefix[HEADER_OFFSET as usize..HEADER_OFFSET as usize + HEADER_LEN].copy_from_slice(&header.encode());
        fill(self.ring.bytes_mut(off + RECORD_PREFIX, header.payload_len)?);
        self.publish(self.head + rec);
        Ok(())
    }

    /// When the consumer has taken everything, the next record goes to
    /// offset 0 again (a skip record over the rest, published together with
    /// it) instead of walking on through the ring. Request/response traffic
    /// then reuses the same few pages, which stay in cache and TLB; walking
    /// 256 MiB of cold pages cost ~70 µs per 4 KiB frame on a 2-vCPU VM.
    fn rewind_if_empty(&mut self, rec: u64) -> Result<()> {
        let off = self.head % self.ring.cap;
        // The record must end before the skip word the consumer reads at `off`.
        if off < rec || self.ring.ctrl().tail.0.load(Ordering::Acquire) != self.head {
            return Ok(());
        }
        let to_end = self.ring.cap - off;
        self.ring.bytes_mut(off, 8)?.copy_from_slice(&(SKIP_FLAG | to_end).to_le_bytes());
        self.head += to_end;
        Ok(())
    }

    fn publish(&mut self, head: u64) {
        self.head = head;
        self.ring.ctrl().head.0.store(head, Ordering::Release);
        notify(&self.ring.data_word());
    }

    fn wait_space(&self, needed: u64, cfg: &WaitCfg<'_>) -> Result<()> {
        let (head, cap) = (self.head, self.ring.cap);
        let ctrl = self.ring.ctrl();
        let spec = WaitSpec {
            word: self.ring.space_word(),
            peer: cfg.peer,
            spin: cfg.spin,
            timeout: cfg.timeout,
            waiting_for: "free space in the shared-memory ring",
        };
        wait_for(&spec, || {
            let tail = ctrl.tail.0.load(Ordering::Acquire);
            if tail > head || head - tail > cap || !tail.is_multiple_of(RECORD_ALIGN) {
                return Err(TransportError::Corrupt(format!("consumer tail {tail} inconsistent with head {head} (capacity {cap})")));
            }
            Ok((cap - (head - tail) >= needed).then_some(()))
        })
    }
}

/// The reading end of a ring.
pub(crate) struct Consumer {
    pub ring: RingPtrs,
    /// Bytes consumed so far (our copy is authoritative). A `Cell` because
    /// the slot is released through `&self` when a `Received` drops.
    pub tail: Cell<u64>,
}

/// A record located in the ring: header, payload range and the tail that
/// releases it.
pub(crate) struct Located {
    pub header: FrameHeader,
    pub payload_off: u64,
    pub next_tail: u64,
}

impl Consumer {
    /// Waits for the next record and validates it. Skip records are
    /// consumed on the way.
    pub fn next(&self, cfg: &WaitCfg<'_>, max_payload: u64) -> Result<Located> {
        let cap = self.ring.cap;
        let ctrl = self.ring.ctrl();
        loop {
            let tail = self.tail.get();
            let spec = WaitSpec {
                word: self.ring.data_word(),
                peer: cfg.peer,
                spin: cfg.spin,
                timeout: cfg.timeout,
                waiting_for: "a frame from the shared-memory ring",
            };
            let head = wait_for(&spec, || {
                let head = ctrl.head.0.load(Ordering::Acquire);
                Ok((head != tail).then_some(head))
            })?;
            if head < tail || head - tail > cap || !head.is_multiple_of(RECORD_ALIGN) {
                return Err(TransportError::Corrupt(format!("producer head {head} inconsistent with tail {tail} (capacity {cap})")));
            }
            let avail = head - tail;
            let off = tail % cap;
            let to_end = cap - off;
            let word = self.ring.read_u64(off)?;
            if word & SKIP_FLAG != 0 {
                let skip = word & !SKIP_FLAG;
                if skip != to_end || skip > avail {
                    return Err(TransportError::Corrupt(format!("skip record of {skip} bytes at offset {off}, expected {to_end}")));
                }
                self.release(tail + skip);
                continue;
            }
            let rec = word;
            if rec < RECORD_PREFIX || !rec.is_multiple_of(RECORD_ALIGN) || rec > avail || rec > to_end {
                return Err(TransportError::Corrupt(format!(
                    "record length {rec} at offset {off} invalid ({avail} bytes published, {to_end} to the end)"
                )));
            }
            let mut raw = [0u8; HEADER_LEN];
            raw.copy_from_slice(self.ring.bytes(off + HEADER_OFFSET, HEADER_LEN as u64)?);
            let header = FrameHeader::decode_with_limit(&raw, max_payload)?;
            if record_len(header.payload_len) != Some(rec) {
                return Err(TransportError::Corrupt(format!("record length {rec} does not match payload_len {}", header.payload_len)));
            }
            return Ok(Located { header, payload_off: off + RECORD_PREFIX, next_tail: tail + rec });
        }
    }

    /// The payload bytes of a located record, in place.
    pub fn payload(&self, at: &Located) -> Result<&[u8]> {
        self.ring.bytes(at.payload_off, at.header.payload_len)
    }
}

impl ReleaseSlot for Consumer {
    fn release(&self, next_tail: u64) {
        self.tail.set(next_tail);
        self.ring.ctrl().tail.0.store(next_tail, Ordering::Release);
        notify(&self.ring.space_word());
    }
}
