//! GGUF quant blocks as stored (ggml-common.h layouts, little-endian), and
//! their exact values. A block is 32 values with an f16 scale `d` (and, for
//! Q4_1, an f16 offset `m`); value `i` is, in f32:
//! - Q4_0: `d · (q_i − 8)` with 4-bit `q` (exact: 11 + 4 significant bits);
//! - Q4_1: `q_i · d + m`, the product exact and the sum rounded once, as
//!   ggml and the `gguf` Python package compute it;
//! - Q8_0: `d · q_i` with signed 8-bit `q` (exact).
//!
//! 4-bit values sit in nibbles: byte `j` holds value `j` in its low nibble
//! and value `j + 16` in its high one.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Values per quant block.
pub const BLOCK: usize = 32;

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
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; 32],
}

/// A quant block: its 32 exact values.
pub trait QuantBlock: Pod + Send + Sync {
    fn values(&self) -> [f32; BLOCK];
}

impl QuantBlock for BlockQ4_0 {
    fn values(&self) -> [f32; BLOCK] {
        let d = self.d.to_f32();
        nibble_values(&self.qs, d, -8.0 * d)
    }
}

impl QuantBlock for BlockQ4_1 {
    fn values(&self) -> [f32; BLOCK] {
        nibble_values(&self.qs, self.d.to_f32(), self.m.to_f32())
    }
}

impl QuantBlock for BlockQ8_0 {
    fn values(&self) -> [f32; BLOCK] {
        let d = self.d.to_f32();
        std::array::from_fn(|i| self.qs[i] as f32 * d)
    }
}

/// `q·d + m` per nibble (the product is exact, so a fused multiply-add
/// rounds the same way).
fn nibble_values(qs: &[u8; 16], d: f32, m: f32) -> [f32; BLOCK] {
    std::array::from_fn(|i| {
        let q = if i < 16 { qs[i] & 0x0F } else { qs[i - 16] >> 4 };
        q as f32 * d + m
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_ggml_sizes() {
        assert_eq!(std::mem::size_of::<BlockQ4_0>(), 18);
        assert_eq!(std::mem::size_of::<BlockQ4_1>(), 20);
        assert_eq!(std::mem::size_of::<BlockQ8_0>(), 34);
    }

    #[test]
    fn values_follow_ggml() {
        let qs: [u8; 16] = std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4));
        let b = BlockQ4_1 { d: f16::from_f32(0.5), m: f16::from_f32(-1.0), qs };
        let v = b.values();
        for j in 0..16 {
            assert_eq!(v[j], j as f32 * 0.5 - 1.0);
            assert_eq!(v[j + 16], (15 - j) as f32 * 0.5 - 1.0);
        }
        let b = BlockQ4_0 { d: f16::from_f32(2.0), qs: [0x8F; 16] };
        assert!(b.values()[..16].iter().all(|&v| v == 14.0) && b.values()[16..].iter().all(|&v| v == 0.0));
        let b = BlockQ8_0 { d: f16::from_f32(0.25), qs: std::array::from_fn(|j| j as i8 - 16) };
        assert!(b.values().iter().enumerate().all(|(j, &v)| v == (j as f32 - 16.0) * 0.25));
    }
}
