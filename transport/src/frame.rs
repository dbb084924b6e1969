//! The versioned, fixed-size, little-endian frame header.
//!
//! Wire layout (`HEADER_LEN` = 48 bytes, all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"TLRF"` |
//! | 4 | 2 | protocol version |
//! | 6 | 1 | kind ([`FrameKind`]) |
//! | 7 | 1 | dtype ([`DType`]) |
//! | 8 | 1 | op (opaque to the transport) |
//! | 9 | 1 | call_kind (opaque to the transport) |
//! | 10 | 2 | reserved, zero |
//! | 12 | 4 | layer (i32) |
//! | 16 | 4 | rows |
//! | 20 | 4 | cols |
//! | 24 | 8 | call_id |
//! | 32 | 8 | payload_len |
//! | 40 | 8 | reserved, zero |
//!
//! The payload follows the header (TCP) or starts at the next 64-byte
//! boundary (shared-memory ring).

pub use crate::codes::{DType, FrameKind};
use crate::error::{Result, TransportError};

/// Bytes of an encoded header.
pub const HEADER_LEN: usize = 48;
/// First bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"TLRF";
/// Version of the frame layout this build reads and writes.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest payload [`FrameHeader::validate`] accepts. Bigger matrices are
/// chunked by the caller; transports may impose a smaller limit.
pub const MAX_PAYLOAD_LEN: u64 = 2 << 30;

/// A decoded, typed frame header. Magic and version are implied: they are
/// written by [`encode`](Self::encode) and checked by [`decode`](Self::decode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub call_id: u64,
    /// Layer index; -1 for the LM head.
    pub layer: i32,
    /// Operation code, mapped by the upper layers.
    pub op: u8,
    /// Call kind (pad batch / online / plain), mapped by the upper layers.
    pub call_kind: u8,
    pub rows: u32,
    pub cols: u32,
    pub dtype: DType,
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header with no payload (Ping, Pong, Shutdown, ...).
    pub fn new(kind: FrameKind) -> Self {
        FrameHeader { kind, call_id: 0, layer: 0, op: 0, call_kind: 0, rows: 0, cols: 0, dtype: DType::U8, payload_len: 0 }
    }

    /// A header for a `rows x cols` matrix of `dtype`; `payload_len` is
    /// computed (saturating, so an impossible size fails `validate`).
    pub fn matrix(kind: FrameKind, dtype: DType, rows: u32, cols: u32) -> Self {
        let len = (rows as u128) * (cols as u128) * (dtype.size() as u128);
        FrameHeader { rows, cols, dtype, payload_len: u64::try_from(len).unwrap_or(u64::MAX), ..FrameHeader::new(kind) }
    }

    /// A header for a raw byte payload (JSON, text) of `len` bytes.
    pub fn bytes(kind: FrameKind, len: usize) -> Self {
        FrameHeader { payload_len: len as u64, ..FrameHeader::new(kind) }
    }

    /// Sets the call routing fields.
    pub fn with_call(mut self, call_id: u64, layer: i32, op: u8, call_kind: u8) -> Self {
        self.call_id = call_id;
        self.layer = layer;
        self.op = op;
        self.call_kind = call_kind;
        self
    }

    /// Checks the payload length against the shape and [`MAX_PAYLOAD_LEN`].
    pub fn validate(&self) -> Result<()> {
        self.validate_with_limit(MAX_PAYLOAD_LEN)
    }

    /// Like [`validate`](Self::validate) with a caller-chosen size limit.
    pub fn validate_with_limit(&self, max_payload: u64) -> Result<()> {
        if self.dtype.is_matrix() {
            let expected = (self.rows as u128) * (self.cols as u128) * (self.dtype.size() as u128);
            if expected != self.payload_len as u128 {
                return Err(TransportError::PayloadLenMismatch {
                    rows: self.rows,
                    cols: self.cols,
                    dtype: self.dtype,
                    expected,
                    payload_len: self.payload_len,
                });
            }
        }
        if self.payload_len > max_payload {
            return Err(TransportError::PayloadTooLarge { len: self.payload_len, max: max_payload });
        }
        Ok(())
    }

    /// The 48-byte wire image.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&FRAME_MAGIC);
        b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b[6] = self.kind.code();
        b[7] = self.dtype.code();
        b[8] = self.op;
        b[9] = self.call_kind;
        // 10..12 reserved
        b[12..16].copy_from_slice(&self.layer.to_le_bytes());
        b[16..20].copy_from_slice(&self.rows.to_le_bytes());
        b[20..24].copy_from_slice(&self.cols.to_le_bytes());
        b[24..32].copy_from_slice(&self.call_id.to_le_bytes());
        b[32..40].copy_from_slice(&self.payload_len.to_le_bytes());
        // 40..48 reserved
        b
    }

    /// Parses and validates a header from the first `HEADER_LEN` bytes of
    /// `bytes`. Never panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        Self::decode_with_limit(bytes, MAX_PAYLOAD_LEN)
    }

    /// Like [`decode`](Self::decode) with a caller-chosen payload limit.
    pub fn decode_with_limit(bytes: &[u8], max_payload: u64) -> Result<Self> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(TransportError::ShortHeader { got: bytes.len(), need: HEADER_LEN })?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != FRAME_MAGIC {
            return Err(TransportError::BadMagic { found: magic, expected: FRAME_MAGIC });
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != PROTOCOL_VERSION {
            return Err(TransportError::UnsupportedVersion { found: version, supported: PROTOCOL_VERSION });
        }
        let kind = FrameKind::from_code(b[6]).ok_or(TransportError::UnknownKind(b[6]))?;
        let dtype = DType::from_code(b[7]).ok_or(TransportError::UnknownDType(b[7]))?;
        if let Some(i) = (10..12).chain(40..48).find(|&i| b[i] != 0) {
            return Err(TransportError::ReservedNotZero { offset: i });
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let header = FrameHeader {
            kind,
            dtype,
            op: b[8],
            call_kind: b[9],
            layer: u32_at(12) as i32,
            rows: u32_at(16),
            cols: u32_at(20),
            call_id: u64_at(24),
            payload_len: u64_at(32),
        };
        header.validate_with_limit(max_payload)?;
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for k in FrameKind::ALL {
            assert_eq!(FrameKind::from_code(k.code()).unwrap(), k);
        }
        for d in DType::ALL {
            assert_eq!(DType::from_code(d.code()).unwrap(), d);
        }
        assert_eq!(FrameKind::from_code(0), None);
        assert_eq!(DType::from_code(0), None);
        let mut zero_kind = FrameHeader::new(FrameKind::Ping).encode();
        zero_kind[6] = 0;
        assert!(matches!(FrameHeader::decode(&zero_kind), Err(TransportError::UnknownKind(0))));
    }

    #[test]
    fn layer_sign_survives() {
        let h = FrameHeader::matrix(FrameKind::Call, DType::F64, 3, 5).with_call(9, -1, 4, 2);
        let d = FrameHeader::decode(&h.encode()).unwrap();
        assert_eq!(d, h);
        assert_eq!(d.layer, -1);
        assert_eq!(d.payload_len, 3 * 5 * 8);
    }
}
