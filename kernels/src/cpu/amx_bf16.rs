//! bf16-weight matmul on AMX tiles with f32-accurate activations.
//!
//! Each f32 activation is split exactly into three bf16 limbs
//! (`x = hi + mid + lo`, by truncation), so `TDPBF16PS` multiplies the
//! stored weights by the full-precision activation; the three limb sums are
//! accumulated in f32 tiles and added at the end (`(lo + mid) + hi`).
//!
//! Tiles compute `Cᵀ = W · Xᵀ`: the A operand is 16 weight rows read in
//! place (row-major W is already the A layout), the B operand holds 5
//! activation rows × 3 limbs (15 of 16 columns) in the VNNI pair layout.
//! Every output element sees the same instruction sequence whatever the
//! number of rows or the tile schedule, so results are batch-invariant.

#![cfg(target_arch = "x86_64")]

use super::parallel::{aligned_ranges, run_tasks, threads, SharedMut};
use super::scratch::with_u16;
use half::bf16;
use std::arch::asm;

/// Activation rows per B tile (3 limb columns each, 15 of 16 used).
const ROWS_PER_GROUP: usize = 5;
/// u16 elements in one 16 × 64-byte tile.
const TILE_U16: usize = 512;
/// Packed activations per task chunk kept in L2 (bytes).
const X_CHUNK_BYTES: usize = 768 * 1024;

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// Palette 1, all eight tiles 16 rows × 64 bytes.
fn tile_config() -> TileConfig {
    let mut c = [0u8; 64];
    c[0] = 1;
    for t in 0..8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
    }
    TileConfig(c)
}

/// Tile registers are named in the instruction text, so each operation
/// dispatches on a tile index known at compile time after inlining.
macro_rules! tile_op {
    ($idx:expr, $($t:literal => $body:expr),+ $(,)?) => {
        match $idx { $($t => $body,)+ _ => unreachable!("tile index") }
    };
}

#[inline(always)]
unsafe fn tile_load(t: usize, ptr: *const u16, stride_bytes: usize) {
    tile_op!(t,
        0 => asm!("tileloadd tmm0, [{p} + {s}*1]", p = in(reg) ptr, s = in(reg) stride_bytes, options(nostack, readonly)),
        1 => asm!("tileloadd tmm1, [{p} + {s}*1]", p = in(reg) ptr, s = in(reg) stride_bytes, options(nostack, readonly)),
        2 => asm!("tileloadd tmm2, [{p} + {s}*1]", p = in(reg) ptr, s = in(reg) stride_bytes, options(nostack, readonly)),
        3 => asm!("tileloadd tmm3, [{p} + {s}*1]", p = in(reg) ptr, s = in(reg) stride_bytes, options(nostack, readonly)),
    )
}

#[inline(always)]
unsafe fn tile_zero(t: usize) {
    tile_op!(t,
        4 => asm!("tilezero tmm4", options(nostack, nomem)),
        5 => asm!("tilezero tmm5", options(nostack, nomem)),
        6 => asm!("tilezero tmm6", options(nostack, nomem)),
        7 => asm!("tilezero tmm7", options(nostack, nomem)),
    )
}

#[inline(always)]
unsafe fn tile_store(t: usize, ptr: *mut f32) {
    tile_op!(t,
        4 => asm!("tilestored [{p} + {s}*1], tmm4", p = in(reg) ptr, s = in(reg) 64usize, options(nostack)),
        5 => asm!("tilestored [{p} + {s}*1], tmm5", p = in(reg) ptr, s = in(reg) 64usize, options(nostack)),
        6 => asm!("tilestored [{p} + {s}*1], tmm6", p = in(reg) ptr, s = in(reg) 64usize, options(nostack)),
        7 => asm!("tilestored [{p} + {s}*1], tmm7", p = in(reg) ptr, s = in(reg) 64usize, options(nostack)),
    )
}

/// `C[c] += A[a] · B[b]` (bf16 pairs, f32 accumulate).
#[inline(always)]
unsafe fn tile_dp(c: usize, a: usize, b: usize) {
    macro_rules! dp {
        ($c:literal, $a:literal, $b:literal) => {
            asm!(concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b), options(nostack, nomem))
        };
    }
    match (c, a, b) {
        // Decode kernel: A 0..3, B 3, C 4..7.
        (4, 0, 3) => dp!(4, 0, 3),
        (5, 1, 3) => dp!(5, 1, 3),
        (6, 2, 3) => dp!(6, 2, 3),
        // Prefill kernel: A 0..2, B 2..4, C 4 + 2a + g.
        (4, 0, 2) => dp!(4, 0, 2),
        (5, 0, 3) => dp!(5, 0, 3),
        (6, 1, 2) => dp!(6, 1, 2),
        (7, 1, 3) => dp!(7, 1, 3),
        _ => unreachable!("tile triple"),
    }
}

/// Prefetches the 16 rows of a tile into L1.
#[inline(always)]
unsafe fn prefetch_tile(ptr: *const u16, stride_bytes: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    let p = ptr.cast::<i8>();
    for r in 0..16 {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(r * stride_bytes));
    }
}

/// Activations packed for the B operand: `[group][k step][pair][col][2]`
/// with `col = 3 * slot + limb`, limbs hi, mid, lo.
fn pack_x(x: &[f32], rows: usize, k: usize, k_steps: usize, out: &mut Vec<u16>) {
    let groups = rows.div_ceil(ROWS_PER_GROUP);
    let group_len = k_steps * TILE_U16;
    out.clear();
    out.resize(groups * group_len, 0);
    let dst = SharedMut(out.as_mut_ptr());
    const GROUPS_PER_TASK: usize = 8;
    run_tasks(groups.div_ceil(GROUPS_PER_TASK), rows * k * 4, |t| {
        let first = t * GROUPS_PER_TASK * ROWS_PER_GROUP;
        let last = ((t + 1) * GROUPS_PER_TASK * ROWS_PER_GROUP).min(rows);
        for r in first..last {
            let (g, slot) = (r / ROWS_PER_GROUP, r % ROWS_PER_GROUP);
            // SAFETY: task `t` alone writes its groups; AVX-512 is implied by AMX.
            unsafe { pack_row(&x[r * k..(r + 1) * k], slot, dst.get().add(g * group_len)) };
        }
    });
}

/// Writes one activation row's three limb columns into its group.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_row(xr: &[f32], slot: usize, group: *mut u16) {
    use std::arch::x86_64::*;
    // Word 2p of a packed pair takes the high (bf16) word of element 2p, word 2p + 1 that of 2p + 1.
    let idx: [i16; 32] = std::array::from_fn(|w| (4 * (w / 2) + 1 + 2 * (w % 2)) as i16);
    let idx = _mm512_loadu_si512(idx.as_ptr().cast());
    let keep_hi = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
    let limbs = |v: __m512| {
        let hi = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), keep_hi));
        let r1 = _mm512_sub_ps(v, hi);
        let mid = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(r1), keep_hi));
        let lo = _mm512_sub_ps(r1, mid);
        [_mm512_castps_si512(hi), _mm512_castps_si512(mid), _mm512_castps_si512(lo)]
    };
    let k = xr.len();
    for s in 0..k.div_ceil(32) {
        let n = (k - s * 32).min(32);
        let m = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
        let p = xr.as_ptr().add(s * 32);
        let a = limbs(_mm512_maskz_loadu_ps(m as u16, p));
        let b = limbs(_mm512_maskz_loadu_ps((m >> 16) as u16, p.add(16)));
        let tile = group.add(s * TILE_U16).cast::<u32>();
        for l in 0..3 {
            let mut pairs = [0u32; 16];
            _mm512_storeu_si512(pairs.as_mut_ptr().cast(), _mm512_permutex2var_epi16(a[l], idx, b[l]));
            for (pair, &v) in pairs.iter().enumerate() {
                tile.add(pair * 16 + 3 * slot + l).write_unaligned(v);
            }
        }
    }
}

/// `x = hi + mid + lo` exactly (bf16 bit patterns) for finite `x` with
/// `|x| ≥ 2^-102`; below that the lo limb is subnormal and may lose bits
/// (an error under 2^-126 absolute, and AMX flushes it anyway).
#[cfg(test)]
fn split_limbs(x: f32) -> [u16; 3] {
    let hi = x.to_bits() & 0xFFFF_0000;
    let r1 = x - f32::from_bits(hi);
    let mid = r1.to_bits() & 0xFFFF_0000;
    let r2 = r1 - f32::from_bits(mid);
    [(hi >> 16) as u16, (mid >> 16) as u16, (r2.to_bits() >> 16) as u16]
}

/// Where the A tiles of one 16-row weight block come from.
struct WeightBlock {
    ptr: *const u16,
    stride_bytes: usize,
    /// Zero-padded copy of the last k step when `k % 32 != 0`.
    tail: Option<*const u16>,
}

impl WeightBlock {
    #[inline(always)]
    fn step(&self, s: usize, last: usize) -> (*const u16, usize) {
        match self.tail {
            Some(t) if s == last => (t, 64),
            _ => (self.ptr.wrapping_add(s * 32), self.stride_bytes),
        }
    }
}

/// A weight block's source before the pad buffer is final (offsets, not pointers).
enum BlockPlan {
    /// In place at this element offset of `w`, with an optional padded tail in `pads`.
    InPlace { w_off: usize, tail_off: Option<usize> },
    /// Fully copied into `pads` at this offset (short last block).
    Padded { off: usize },
}

/// `out (rows × n) = x (rows × k) · Wᵀ` for row-major bf16 `w` (n × k).
pub(crate) fn matmul(x: &[f32], rows: usize, k: usize, w: &[bf16], n: usize, out: &mut [f32]) {
    let k_steps = k.div_ceil(32);
    let w_u16: &[u16] = bytemuck::cast_slice(w);
    with_u16(|xp| {
        pack_x(x, rows, k, k_steps, xp);
        let xp: &[u16] = xp;
        let out_ptr = SharedMut(out.as_mut_ptr());
        let groups = rows.div_ceil(ROWS_PER_GROUP);
        let blocks = n.div_ceil(16);
        let macs = rows * n * k;
        let job = Job { xp, k, k_steps, w: w_u16, n, rows, out: out_ptr };
        if groups == 1 {
            // Decode: split weight blocks across threads, stream each once.
            let ranges = aligned_ranges(blocks, threads() * 4, 1);
            run_tasks(ranges.len(), macs, |t| job.run(ranges[t].clone(), 0..1));
        } else {
            let chunk_groups = (X_CHUNK_BYTES / (k_steps * TILE_U16 * 2)).max(2) & !1;
            let chunks = groups.div_ceil(chunk_groups);
            let panels = blocks.div_ceil(4);
            run_tasks(panels * chunks, macs, |t| {
                let (p, c) = (t / chunks, t % chunks);
                let b = p * 4..(p * 4 + 4).min(blocks);
                let g = c * chunk_groups..(c * chunk_groups + chunk_groups).min(groups);
                job.run(b, g);
            });
        }
    });
}

struct Job<'a> {
    xp: &'a [u16],
    k: usize,
    k_steps: usize,
    w: &'a [u16],
    n: usize,
    rows: usize,
    out: SharedMut<f32>,
}

impl Job<'_> {
    /// All outputs of weight blocks `blocks` × activation groups `groups`.
    fn run(&self, blocks: std::ops::Range<usize>, groups: std::ops::Range<usize>) {
        let mut pads: Vec<u16> = Vec::new();
        let cfg = tile_config();
        // SAFETY: AMX availability and permission were checked by the caller;
        // every tile load reads inside `w`, `xp` or `pads`.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
            let plans: Vec<BlockPlan> = blocks.clone().map(|b| self.plan_block(b, &mut pads)).collect();
            let wb: Vec<WeightBlock> = plans.iter().map(|p| self.resolve(p, &pads)).collect();
            if groups.len() == 1 {
                let g = groups.start;
                let mut i = 0;
                while i < wb.len() {
                    let nb = (wb.len() - i).min(3);
                    self.kernel_gemv(&wb[i..i + nb], blocks.start + i, g);
                    i += nb;
                }
            } else {
                let mut i = 0;
                while i < wb.len() {
                    let nb = (wb.len() - i).min(2);
                    let mut g = groups.start;
                    while g < groups.end {
                        let ng = (groups.end - g).min(2);
                        self.kernel_2x2(&wb[i..i + nb], blocks.start + i, g, ng);
                        g += ng;
                    }
                    i += nb;
                }
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }

    /// A-operand source for block `b`; tail steps and short blocks are
    /// copied, zero-padded, into `pads`.
    fn plan_block(&self, b: usize, pads: &mut Vec<u16>) -> BlockPlan {
        let (k, j0) = (self.k, b * 16);
        let valid = (self.n - j0).min(16);
        let padded_k = self.k_steps * 32;
        if valid < 16 {
            let off = pads.len();
            pads.resize(off + 16 * padded_k, 0);
            for r in 0..valid {
                let src = &self.w[(j0 + r) * k..(j0 + r + 1) * k];
                pads[off + r * padded_k..off + r * padded_k + k].copy_from_slice(src);
            }
            return BlockPlan::Padded { off };
        }
        let tail_off = (k % 32 != 0).then(|| {
            let off = pads.len();
            pads.resize(off + TILE_U16, 0);
            let start = (self.k_steps - 1) * 32;
            for r in 0..16 {
                let src = &self.w[(j0 + r) * k + start..(j0 + r + 1) * k];
                pads[off + r * 32..off + r * 32 + src.len()].copy_from_slice(src);
            }
            off
        });
        BlockPlan::InPlace { w_off: j0 * k, tail_off }
    }

    fn resolve(&self, plan: &BlockPlan, pads: &[u16]) -> WeightBlock {
        match *plan {
            BlockPlan::InPlace { w_off, tail_off } => {
                WeightBlock { ptr: self.w[w_off..].as_ptr(), stride_bytes: self.k * 2, tail: tail_off.map(|o| pads[o..].as_ptr()) }
            }
            BlockPlan::Padded { off } => WeightBlock { ptr: pads[off..].as_ptr(), stride_bytes: self.k_steps * 64, tail: None },
        }
    }

    #[inline(always)]
    fn x_tile(&self, g: usize, s: usize) -> *const u16 {
        self.xp[(g * self.k_steps + s) * TILE_U16..].as_ptr()
    }

    /// Up to 3 weight blocks × 1 activation group (decode).
    unsafe fn kernel_gemv(&self, wb: &[WeightBlock], first_block: usize, g: usize) {
        let last = self.k_steps - 1;
        let nb = wb.len();
        // Tiles: A 0..nb, B 3, C 4..4+nb.
        for c in 0..nb {
            tile_zero(4 + c);
        }
        for s in 0..self.k_steps {
            tile_load(3, self.x_tile(g, s), 64);
            for (a, blk) in wb.iter().enumerate() {
                let (p, stride) = blk.step(s, last);
                tile_load(a, p, stride);
                tile_dp(4 + a, a, 3);
            }
        }
        for a in 0..nb {
            self.store_tile(4 + a, first_block + a, g);
        }
    }

    /// 1–2 weight blocks × 1–2 activation groups (prefill).
    unsafe fn kernel_2x2(&self, wb: &[WeightBlock], first_block: usize, g0: usize, ng: usize) {
        let last = self.k_steps - 1;
        let nb = wb.len();
        // Tiles: A 0..2, B 2..4, C 4 + 2a + g.
        for a in 0..nb {
            for g in 0..ng {
                tile_zero(4 + 2 * a + g);
            }
        }
        for s in 0..self.k_steps {
            if s + 1 < self.k_steps {
                // Tile loads are slow from L2: pull the next step's tiles into L1.
                for g in 0..ng {
                    prefetch_tile(self.x_tile(g0 + g, s + 1), 64);
                }
                for blk in wb {
                    let (p, stride) = blk.step(s + 1, last);
                    prefetch_tile(p, stride);
                }
            }
            for g in 0..ng {
                tile_load(2 + g, self.x_tile(g0 + g, s), 64);
            }
            for (a, blk) in wb.iter().enumerate() {
                let (p, stride) = blk.step(s, last);
                tile_load(a, p, stride);
                for g in 0..ng {
                    tile_dp(4 + 2 * a + g, a, 2 + g);
                }
            }
        }
        for a in 0..nb {
            for g in 0..ng {
                self.store_tile(4 + 2 * a + g, first_block + a, g0 + g);
            }
        }
    }

    /// Stores C tile `t` (16 weight rows × 16 limb columns) into the output.
    unsafe fn store_tile(&self, t: usize, block: usize, g: usize) {
        let mut c = [0f32; 256];
        tile_store(t, c.as_mut_ptr());
        let j0 = block * 16;
        let valid_j = (self.n - j0).min(16);
        let r0 = g * ROWS_PER_GROUP;
        let valid_r = (self.rows - r0).min(ROWS_PER_GROUP);
        for slot in 0..valid_r {
            let row = self.out.get().add((r0 + slot) * self.n + j0);
            for j in 0..valid_j {
                let l = &c[j * 16 + 3 * slot..j * 16 + 3 * slot + 3];
                *row.add(j) = (l[2] + l[1]) + l[0];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limbs_sum_exactly() {
        for &v in &[1.0f32, -3.25159, 1e-20, 12345.678, f32::MAX / 3.0, 0.0, -0.0, 7.006_492e-30] {
            let [h, m, l] = split_limbs(v).map(|b| f32::from_bits((b as u32) << 16));
            assert_eq!(h + m + l, v, "{v}");
            assert_eq!((l + m) + h, v, "{v}");
        }
    }
}
