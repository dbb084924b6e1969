//! GGUF quant blocks that no kernel reads in place yet: Q5_0 and Q5_1
//! (32 values) and the K-quants Q4_K, Q5_K, Q6_K and Q8_K (super-blocks of
//! 256), in ggml-common.h's layouts, with their exact values as
//! `dequantize_row_*` in ggml-quants.c (and the `gguf` Python package)
//! compute them in f32: every product of a scale and a quant is exact, so
//! each value is rounded at most once, where ggml rounds it. A model stored
//! in them is held as these exact f32 values.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// A block of a load-only type: how many values it holds and their exact
/// f32 values in order.
pub(crate) trait LoadOnlyBlock: Pod + Send + Sync {
    const VALUES: usize;
    fn dequantize(&self, out: &mut [f32]);
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

/// The fifth bits of a Q5 block: value `j` and value `j + 16`.
fn fifth_bits(qh: [u8; 4], j: usize) -> (u8, u8) {
    let qh = u32::from_le_bytes(qh);
    ((((qh >> j) << 4) & 0x10) as u8, ((qh >> (j + 12)) & 0x10) as u8)
}

impl LoadOnlyBlock for BlockQ5_0 {
    const VALUES: usize = 32;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for j in 0..16 {
            let (h0, h1) = fifth_bits(self.qh, j);
            out[j] = (((self.qs[j] & 0x0F) | h0) as i32 - 16) as f32 * d;
            out[j + 16] = (((self.qs[j] >> 4) | h1) as i32 - 16) as f32 * d;
        }
    }
}

impl LoadOnlyBlock for BlockQ5_1 {
    const VALUES: usize = 32;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        for j in 0..16 {
            let (h0, h1) = fifth_bits(self.qh, j);
            out[j] = ((self.qs[j] & 0x0F) | h0) as f32 * d + m;
            out[j + 16] = ((self.qs[j] >> 4) | h1) as f32 * d + m;
        }
    }
}

/// Scale and min of sub-block `j` of a Q4_K/Q5_K block (`get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K and Q5_K: pairs of sub-blocks share 32 bytes of nibbles; `high`
/// gives a value's fifth bit (0 for Q4_K).
fn k_quant_values(d: f16, dmin: f16, scales: &[u8; 12], qs: &[u8; 128], high: impl Fn(usize, usize) -> u8, out: &mut [f32]) {
    let (d, min) = (d.to_f32(), dmin.to_f32());
    for pair in 0..4 {
        let q = &qs[pair * 32..pair * 32 + 32];
        for half in 0..2 {
            let (sc, m) = scale_min_k4(2 * pair + half, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let o = &mut out[pair * 64 + half * 32..pair * 64 + half * 32 + 32];
            for (l, o) in o.iter_mut().enumerate() {
                let nibble = if half == 0 { q[l] & 0x0F } else { q[l] >> 4 };
                *o = d1 * (nibble + high(l, 2 * pair + half)) as f32 - m1;
            }
        }
    }
}

impl LoadOnlyBlock for BlockQ4K {
    const VALUES: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        k_quant_values(self.d, self.dmin, &self.scales, &self.qs, |_, _| 0, out);
    }
}

impl LoadOnlyBlock for BlockQ5K {
    const VALUES: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        // Sub-block `s` takes its fifth bits from bit `s` of each qh byte.
        k_quant_values(self.d, self.dmin, &self.scales, &self.qs, |l, s| if self.qh[l] & (1 << s) != 0 { 16 } else { 0 }, out);
    }
}

impl LoadOnlyBlock for BlockQ6K {
    const VALUES: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        let d = self.d.to_f32();
        for n in 0..2 {
            let (ql, qh, sc) = (&self.ql[n * 64..n * 64 + 64], &self.qh[n * 32..n * 32 + 32], &self.scales[n * 8..n * 8 + 8]);
            let y = &mut out[n * 128..n * 128 + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                // (d · scale) · q, in ggml's order: the second product may round.
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}

impl LoadOnlyBlock for BlockQ8K {
    const VALUES: usize = 256;
    fn dequantize(&self, out: &mut [f32]) {
        let (d, qs) = (self.d, self.qs);
        out.iter_mut().zip(qs).for_each(|(o, q)| *o = d * q as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_ggml_sizes() {
        assert_eq!(std::mem::size_of::<BlockQ5_0>(), 22);
        assert_eq!(std::mem::size_of::<BlockQ5_1>(), 24);
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
    fn q5_0_puts_the_fifth_bit_above_the_nibble() {
        // Value 0: nibble 0xF, fifth bit set → 31 − 16 = 15; value 16: high nibble 0x1, no fifth bit → 1 − 16.
        let b = BlockQ5_0 { d: f16::from_f32(0.5), qh: 1u32.to_le_bytes(), qs: [0x1F; 16] };
        let mut v = [0f32; 32];
        b.dequantize(&mut v);
        assert_eq!(v[0], 7.5);
        assert_eq!(v[1], (15 - 16) as f32 * 0.5);
        assert_eq!(v[16], -7.5);
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
