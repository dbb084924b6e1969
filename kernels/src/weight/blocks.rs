//! GGUF quant blocks of 32 values as stored (ggml-common.h layouts,
//! little-endian), and their exact values as `dequantize_row_*` in
//! ggml-quants.c (and the `gguf` Python package) compute them in f32. Each
//! block has an f16 scale `d` (and, for Q4_1/Q5_1, an f16 offset `m`);
//! value `i` is:
//! - Q4_0: `d · (q_i − 8)`, Q5_0: `d · (q_i − 16)`, Q8_0: `d · q_i` (exact);
//! - Q4_1, Q5_1: `q_i · d + m`, the product exact and the sum rounded once.
//!
//! 4-bit values sit in nibbles: byte `j` holds value `j` in its low nibble
//! and value `j + 16` in its high one; Q5's fifth bits are the 32 bits of
//! `qh` (bit `i` for value `i`). The K-quants (super-blocks of 256) are in
//! `k_blocks`.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Values per quant block, and per chunk of a K-quant super-block: the
/// unit every kernel dequantizes at once.
pub const BLOCK: usize = 32;

/// A GGUF quant block: how many values it holds (32, or 256 for a
/// K-quant), and their exact f32 values 32 at a time.
pub trait QuantBlock: Pod + Send + Sync {
    const VALUES: usize;
    /// Values `32·c .. 32·c + 32` (`c < VALUES / 32`).
    fn chunk(&self, c: usize) -> [f32; BLOCK];
    /// All values into `out` (`VALUES` long).
    fn dequantize(&self, out: &mut [f32]) {
        for (c, o) in out.chunks_exact_mut(BLOCK).enumerate() {
            o.copy_from_slice(&self.chunk(c));
        }
    }
    /// The same values as a Q8_0 block (same scale, quants re-centred to
    /// signed bytes), where that holds them exactly (Q4_0, Q5_0, Q8_0): a
    /// stack of tensors stored in these types is held as one Q8_0 matrix.
    fn as_q8_0(&self) -> Option<BlockQ8_0> {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; 16],
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; 16],
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: f16,
    /// The fifth bit of each of the 32 values.
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; 16],
}

#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

impl QuantBlock for BlockQ4_0 {
    const VALUES: usize = BLOCK;
    fn chunk(&self, _: usize) -> [f32; BLOCK] {
        let d = self.d.to_f32();
        std::array::from_fn(|i| nibble(&self.qs, i) as f32 * d + -8.0 * d)
    }
    fn as_q8_0(&self) -> Option<BlockQ8_0> {
        Some(BlockQ8_0 { d: self.d, qs: std::array::from_fn(|i| nibble(&self.qs, i) as i8 - 8) })
    }
}

impl QuantBlock for BlockQ4_1 {
    const VALUES: usize = BLOCK;
    fn chunk(&self, _: usize) -> [f32; BLOCK] {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        std::array::from_fn(|i| nibble(&self.qs, i) as f32 * d + m)
    }
}

impl QuantBlock for BlockQ5_0 {
    const VALUES: usize = BLOCK;
    fn chunk(&self, _: usize) -> [f32; BLOCK] {
        let d = self.d.to_f32();
        std::array::from_fn(|i| (five_bits(&self.qs, self.qh, i) as i32 - 16) as f32 * d)
    }
    fn as_q8_0(&self) -> Option<BlockQ8_0> {
        Some(BlockQ8_0 { d: self.d, qs: std::array::from_fn(|i| five_bits(&self.qs, self.qh, i) as i8 - 16) })
    }
}

impl QuantBlock for BlockQ5_1 {
    const VALUES: usize = BLOCK;
    fn chunk(&self, _: usize) -> [f32; BLOCK] {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        std::array::from_fn(|i| five_bits(&self.qs, self.qh, i) as f32 * d + m)
    }
}

impl QuantBlock for BlockQ8_0 {
    const VALUES: usize = BLOCK;
    fn chunk(&self, _: usize) -> [f32; BLOCK] {
        let d = self.d.to_f32();
        std::array::from_fn(|i| self.qs[i] as f32 * d)
    }
    fn as_q8_0(&self) -> Option<BlockQ8_0> {
        Some(*self)
    }
}

/// The 4-bit quant of value `i`.
fn nibble(qs: &[u8; 16], i: usize) -> u8 {
    if i < 16 {
        qs[i] & 0x0F
    } else {
        qs[i - 16] >> 4
    }
}

/// The 5-bit quant of value `i`: its nibble and bit `i` of `qh` above it.
fn five_bits(qs: &[u8; 16], qh: [u8; 4], i: usize) -> u8 {
    nibble(qs, i) | ((((u32::from_le_bytes(qh) >> i) & 1) as u8) << 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_ggml_sizes() {
        assert_eq!(std::mem::size_of::<BlockQ4_0>(), 18);
        assert_eq!(std::mem::size_of::<BlockQ4_1>(), 20);
        assert_eq!(std::mem::size_of::<BlockQ5_0>(), 22);
        assert_eq!(std::mem::size_of::<BlockQ5_1>(), 24);
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), 34);
    }

    #[test]
    fn values_follow_ggml() {
        let qs: [u8; 16] = std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4));
        let b = BlockQ4_1 { d: f16::from_f32(0.5), m: f16::from_f32(-1.0), qs };
        let v = b.chunk(0);
        for j in 0..16 {
            assert_eq!(v[j], j as f32 * 0.5 - 1.0);
            assert_eq!(v[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }
        let b = BlockQ4_0 { d: f16::from_f32(2.0), qs: [0x8F; 16] };
        assert!(b.chunk(0)[..16].iter().all(|&v| v == 14.0) && b.chunk(0)[16..].iter().all(|&v| v == 0.0));
        let b = BlockQ8_0 { d: f16::from_f32(0.25), qs: std::array::from_fn(|j| j as i8 - 16) };
        assert!(b.chunk(0).iter().enumerate().all(|(j, &v)| v == (j as f32 - 16.0) * 0.25));
    }

    #[test]
    fn q5_0_puts_the_fifth_bit_above_the_nibble() {
        // Value 0: nibble 0xF, fifth bit set → 31 − 16 = 15; value 16: high nibble 0x1, no fifth bit → 1 − 16.
        let b = BlockQ5_0 { d: f16::from_f32(0.5), qh: 1u32.to_le_bytes(), qs: [0x1F; 16] };
        let v = b.chunk(0);
        assert_eq!(v[0], 7.5);
        assert_eq!(v[1], (15 - 16) as f32 * 0.5);
        assert_eq!(v[16], -7.5);
    }

    #[test]
    fn q4_0_and_q5_0_become_q8_0_with_the_same_values() {
        let q5 = BlockQ5_0 { d: f16::from_f32(-0.375), qh: 0xA5C3_0F81u32.to_le_bytes(), qs: std::array::from_fn(|j| (j * 37) as u8) };
        let q4 = BlockQ4_0 { d: f16::from_f32(1.5), qs: std::array::from_fn(|j| (j * 91) as u8) };
        assert_eq!(q5.as_q8_0().unwrap().chunk(0), q5.chunk(0));
        // Q4_0's `q·d − 8d` can give +0 where `(q − 8)·d` gives −0: equal as values.
        assert_eq!(q4.as_q8_0().unwrap().chunk(0), q4.chunk(0));
        assert!(BlockQ4_1 { d: f16::ONE, m: f16::ONE, qs: [0; 16] }.as_q8_0().is_none());
    }
}
