//! Helpers shared by the integration tests.
#![allow(dead_code)]

use talaria_transport::{DType, FrameHeader, FrameKind};

/// Deterministic bytes for frame `id`: every byte depends on the id and the
/// position, so a misplaced or stale byte is caught.
pub fn pattern(id: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    fill_pattern(id, &mut out);
    out
}

pub fn fill_pattern(id: u64, out: &mut [u8]) {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for chunk in out.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

pub fn matches_pattern(id: u64, bytes: &[u8]) -> bool {
    bytes == pattern(id, bytes.len()).as_slice()
}

/// A byte-payload Call frame of `len` bytes carrying `id`.
pub fn bytes_frame(id: u64, len: usize) -> FrameHeader {
    FrameHeader::bytes(FrameKind::Call, len).with_call(id, (id % 30) as i32, 2, 1)
}

/// An f64 matrix Call frame.
pub fn f64_frame(id: u64, rows: u32, cols: u32) -> FrameHeader {
    FrameHeader::matrix(FrameKind::Call, DType::F64, rows, cols).with_call(id, -1, 4, 2)
}
