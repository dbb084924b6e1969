//! GGUF K-quant super-blocks of 256 values as stored (ggml-common.h
//! layouts), and their exact values as `dequantize_row_*` in ggml-quants.c
//! (and the `gguf` Python package) compute them in f32, 32 at a time (the
//! unit the kernels dequantize in registers):
//! - Q4_K, Q5_K: 8 sub-blocks of 32, value `d·sc · q − dmin·m` with 6-bit
//!   `sc`, `m`: both products are exact, the difference rounds once;
//! - Q6_K: 16 sub-blocks of 16, value `(d·sc) · (q − 32)` with a signed
//!   8-bit `sc`: `d·sc` is exact, the second product may round, as in ggml;
//! - Q8_K (`d · q` with an f32 `d`) is only an activation type in ggml;
//!   files never store weights in it, so no kernel reads it in place.

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::blocks::{QuantBlock, BLOCK};

/// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins (packed in 12 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; 128],
}

/// Q5_K: Q4_K plus a fifth bit per value.
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; 32],
    pub qs: [u8; 128],
}

/// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; 6-bit quants split
/// into 4 low bits (`ql`) and 2 high bits (`qh`).
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; 128],
    pub qh: [u8; 64],
    pub scales: [i8; 16],
    pub d: f16,
}

/// Q8_K: one f32 scale, 256 signed bytes, and per-16 sums (unused here).
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
#[repr(C, packed)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
}

/// Values per K-quant super-block.
pub const K_VALUES: usize = 256;

/// Scale and min of sub-block `j` of a Q4_K/Q5_K block (`get_scale_min_k4`).
pub(crate) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Sub-block `s` of a Q4_K/Q5_K block: its scale `d·sc` and min `dmin·m`
/// (both exact in f32), and where its nibbles are (sub-blocks `2p` and
/// `2p + 1` share bytes `32p .. 32p + 32`, low then high nibbles).
pub(crate) struct KSubBlock {
    pub scale: f32,
    pub min: f32,
    pub byte0: usize,
    pub high_nibble: bool,
}

pub(crate) fn k_sub_block(d: f16, dmin: f16, scales: &[u8; 12], s: usize) -> KSubBlock {
    let (sc, m) = scale_min_k4(s, scales);
    KSubBlock { scale: d.to_f32() * sc as f32, min: dmin.to_f32() * m as f32, byte0: (s / 2) * 32, high_nibble: s % 2 == 1 }
}

/// Where chunk `c` of a Q6_K block lies: value `l` of the chunk is the
/// nibble (`ql[ql0 + l]` shifted by `ql_shift`) with bits `qh_shift..+2`
/// of `qh[qh0 + l]` above it, less 32, times `d·scales[2c]` for `l < 16`
/// and `d·scales[2c + 1]` after (each exact).
pub(crate) struct Q6Chunk {
    pub ql0: usize,
    pub ql_shift: u32,
    pub qh0: usize,
    pub qh_shift: u32,
}

impl Q6Chunk {
    pub(crate) fn at(c: usize) -> Self {
        let (half, g) = (c / 4, c % 4);
        Q6Chunk { ql0: half * 64 + (g & 1) * 32, ql_shift: (g as u32 >> 1) * 4, qh0: half * 32, qh_shift: 2 * g as u32 }
    }
}

/// Q4_K and Q5_K chunk `s`; `high(l)` gives value `l`'s fifth bit (0 for Q4_K).
fn k_chunk(d: f16, dmin: f16, scales: &[u8; 12], qs: &[u8; 128], s: usize, high: impl Fn(usize) -> u8) -> [f32; BLOCK] {
    let sub = k_sub_block(d, dmin, scales, s);
    std::array::from_fn(|l| {
        let byte = qs[sub.byte0 + l];
        let nibble = if sub.high_nibble { byte >> 4 } else { byte & 0x0F };
        sub.scale * (nibble + high(l)) as f32 - sub.min
    })
}

impl QuantBlock for BlockQ4K {
    const VALUES: usize = K_VALUES;
    fn chunk(&self, c: usize) -> [f32; BLOCK] {
        k_chunk(self.d, self.dmin, &self.scales, &self.qs, c, |_| 0)
    }
}

impl QuantBlock for BlockQ5K {
    const VALUES: usize = K_VALUES;
    fn chunk(&self, c: usize) -> [f32; BLOCK] {
        // Sub-block `c` takes its fifth bits from bit `c` of each qh byte.
        k_chunk(self.d, self.dmin, &self.scales, &self.qs, c, |l| ((self.qh[l] >> c) & 1) << 4)
    }
}

impl QuantBlock for BlockQ6K {
    const VALUES: usize = K_VALUES;
    fn chunk(&self, c: usize) -> [f32; BLOCK] {
        let q = Q6Chunk::at(c);
        let d = self.d.to_f32();
        std::array::from_fn(|l| {
            let low = (self.ql[q.ql0 + l] >> q.ql_shift) & 0x0F;
            let high = (self.qh[q.qh0 + l] >> q.qh_shift) & 3;
            // (d · scale) · q, in ggml's order: the second product may round.
            (d * self.scales[2 * c + l / 16] as f32) * ((low | (high << 4)) as i32 - 32) as f32
        })
    }
}

impl QuantBlock for BlockQ8K {
    const VALUES: usize = K_VALUES;
    fn chunk(&self, c: usize) -> [f32; BLOCK] {
        let (d, qs) = (self.d, self.qs);
        std::array::from_fn(|l| d * qs[c * BLOCK + l] as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_ggml_sizes() {
        assert_eq!(std::mem::size_of::<BlockQ4K>(), 144);
        assert_eq!(std::mem::size_of::<BlockQ5K>(), 176);
        assert_eq!(std::mem::size_of::<BlockQ6K>(), 210);
        assert_eq!(std::mem::size_of::<BlockQ8K>(), 292);
    }

    #[test]
    fn q8_k_is_its_scale_times_each_byte() {
        let b = BlockQ8K { d: 0.125, qs: std::array::from_fn(|i| (i as i32 - 128) as i8), bsums: [0; 16] };
        let mut v = [0f32; 256];
        b.dequantize(&mut v);
        assert!(v.iter().enumerate().all(|(i, &x)| x == (i as f32 - 128.0) * 0.125));
    }

    #[test]
    fn q4_k_scales_and_mins_unpack_as_ggml() {
        let mut scales = [0u8; 12];
        scales[0] = 5; // sub-block 0 scale
        scales[4] = 3; // sub-block 0 min
        scales[8] = 0x21; // sub-block 4: scale low 1, min low 2
        scales[0] |= 0x40; // sub-block 4 scale high bits 01 → 1 | 16
        let (sc, m) = scale_min_k4(4, &scales);
        assert_eq!((sc, m), (17, 2));
        let b = BlockQ4K { d: f16::from_f32(0.25), dmin: f16::from_f32(0.5), scales, qs: [0x93; 128] };
        let mut v = [0f32; 256];
        b.dequantize(&mut v);
        assert_eq!(v[0], 0.25 * 5.0 * 3.0 - 0.5 * 3.0);
        assert_eq!(v[128], 0.25 * 17.0 * 3.0 - 0.5 * 2.0);
    }
}
