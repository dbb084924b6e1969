//! The transport-neutral connection API: send a frame, receive a frame read
//! in place.

use std::borrow::Cow;
use std::ops::Deref;
use std::time::Duration;

use crate::aligned::AlignedBuf;
use crate::error::Result;
use crate::frame::FrameHeader;
use crate::payload::{typed_payload, Element};

/// A bidirectional, frame-oriented link to the peer process. Both the
/// shared-memory ring and TCP implement it.
pub trait Connection: Send {
    /// Sends `header` followed by `payload` (which must be exactly
    /// `header.payload_len` bytes). Blocks while the transport is full.
    fn send(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()>;

    /// Sends a frame whose `header.payload_len` bytes are written by `fill`
    /// directly into the transport's buffer (in place in the shm ring).
    /// `fill` must overwrite every byte: the slice holds stale data. If
    /// `fill` panics nothing is sent and no space is lost.
    fn send_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&mut [u8])) -> Result<()>;

    /// Waits for the next frame; `None` waits until a frame arrives or the
    /// peer is gone. The frame's payload stays in the transport's buffer
    /// until the returned [`Received`] is dropped.
    fn recv(&mut self, timeout: Option<Duration>) -> Result<Received<'_>>;

    /// Largest payload a single frame may carry on this connection; callers
    /// split bigger matrices.
    fn max_payload_len(&self) -> u64;

    /// Lowers (or raises, up to what the transport can carry) the largest
    /// payload accepted from the peer: a header declaring more is refused
    /// before its payload is read or anything is allocated for it.
    fn set_max_payload_len(&mut self, max: u64);

    /// Bounds how long one `send` may wait on a peer that stopped reading
    /// (a full socket buffer or ring); `None`: no bound (a dead peer is
    /// still noticed).
    fn set_send_timeout(&mut self, timeout: Option<Duration>) -> Result<()>;
}

impl<C: Connection + ?Sized> Connection for Box<C> {
    fn send(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()> {
        (**self).send(header, payload)
    }
    fn send_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&mut [u8])) -> Result<()> {
        (**self).send_with(header, fill)
    }
    fn recv(&mut self, timeout: Option<Duration>) -> Result<Received<'_>> {
        (**self).recv(timeout)
    }
    fn max_payload_len(&self) -> u64 {
        (**self).max_payload_len()
    }
    fn set_max_payload_len(&mut self, max: u64) {
        (**self).set_max_payload_len(max)
    }
    fn set_send_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        (**self).set_send_timeout(timeout)
    }
}

/// Gives a consumed slot back to its transport.
pub(crate) trait ReleaseSlot {
    fn release(&self, token: u64);
}

/// The sending half of a connection, reachable from a [`Received`] so a
/// peer can answer while it still reads the request in place.
pub(crate) trait FrameSink {
    fn send_frame(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()>;
    fn send_frame_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&mut [u8])) -> Result<()>;
}

/// A received frame. Derefs to its header; the payload is read in place and
/// its slot is released when this is dropped. While it is held, frames can
/// still be sent on the same connection with [`reply`](Self::reply) /
/// [`reply_with`](Self::reply_with) (e.g. a worker writing `X*W` straight
/// into the outgoing ring while reading `X` from the incoming one).
pub struct Received<'a> {
    header: FrameHeader,
    payload: &'a [u8],
    release: Option<(&'a dyn ReleaseSlot, u64)>,
    sink: &'a mut dyn FrameSink,
}

impl<'a> Received<'a> {
    /// A frame whose payload lives in a buffer the connection reuses.
    pub(crate) fn borrowed(header: FrameHeader, payload: &'a [u8], sink: &'a mut dyn FrameSink) -> Self {
        Received { header, payload, release: None, sink }
    }

    /// A frame in a slot that `slot.release(token)` hands back.
    pub(crate) fn in_slot(
        header: FrameHeader,
        payload: &'a [u8],
        slot: &'a dyn ReleaseSlot,
        token: u64,
        sink: &'a mut dyn FrameSink,
    ) -> Self {
        Received { header, payload, release: Some((slot, token)), sink }
    }

    pub fn header(&self) -> &FrameHeader {
        &self.header
    }

    /// The payload bytes, in place (64-byte aligned on both transports).
    pub fn payload(&self) -> &[u8] {
        self.payload
    }

    /// The payload as `[T]`, checking the dtype; zero copy when aligned.
    pub fn elements<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        typed_payload(self.header.dtype, self.payload)
    }

    pub fn f64s(&self) -> Result<Cow<'_, [f64]>> {
        self.elements()
    }

    pub fn f32s(&self) -> Result<Cow<'_, [f32]>> {
        self.elements()
    }

    /// Copies the frame out, so it can outlive the next `recv`.
    pub fn to_owned_frame(&self) -> OwnedFrame {
        OwnedFrame { header: self.header, payload: AlignedBuf::from_slice(self.payload) }
    }

    /// Sends a frame on the same connection while this one is held.
    pub fn reply(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<()> {
        self.sink.send_frame(header, payload)
    }

    /// Sends a frame whose payload `fill(received_payload, out)` writes in
    /// place, reading this frame's payload in place. `out` holds stale bytes
    /// and must be overwritten entirely.
    pub fn reply_with(&mut self, header: FrameHeader, fill: &mut dyn FnMut(&[u8], &mut [u8])) -> Result<()> {
        let input = self.payload;
        self.sink.send_frame_with(header, &mut |out| fill(input, out))
    }
}

impl Deref for Received<'_> {
    type Target = FrameHeader;
    fn deref(&self) -> &FrameHeader {
        &self.header
    }
}

impl Drop for Received<'_> {
    fn drop(&mut self) {
        if let Some((slot, token)) = self.release.take() {
            slot.release(token);
        }
    }
}

impl std::fmt::Debug for Received<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received").field("header", &self.header).finish_non_exhaustive()
    }
}

/// A frame copied out of the transport (for keeping past the next `recv`).
#[derive(Clone, Debug)]
pub struct OwnedFrame {
    pub header: FrameHeader,
    pub payload: AlignedBuf,
}

impl OwnedFrame {
    pub fn payload(&self) -> &[u8] {
        self.payload.as_slice()
    }

    pub fn elements<T: Element>(&self) -> Result<Cow<'_, [T]>> {
        typed_payload(self.header.dtype, self.payload.as_slice())
    }
}
