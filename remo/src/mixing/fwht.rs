//! In-place fast Walsh–Hadamard transform over the row index of a
//! row-major block: rows are combined whole, so the inner loops run over
//! contiguous columns and vectorize.

use std::ops::{Add, Sub};

/// Bytes of rows processed together through the low stages (fits in L1).
const L1_BYTES: usize = 32 << 10;

/// Rows per L1-sized group for rows of `w` values of `T` (a power of two ≤ `n`).
#[inline(always)]
pub(super) fn l1_group_rows<T>(n: usize, w: usize) -> usize {
    let g = (L1_BYTES / (std::mem::size_of::<T>() * w.max(1))).clamp(1, n.max(1));
    1usize << g.ilog2()
}

/// Unnormalized transform (`H·a` with entries ±1) of the `n × w` row-major
/// block `a`; `n` must be a power of two. `H·H = n·I`. Inlined so that it
/// is compiled for the caller's target features.
///
/// The stages act on separate bits of the row index and commute, so the
/// low stages run on L1-sized groups of rows first, then the high stages on
/// the whole block: fewer passes over memory. The mixing runs the same
/// two parts with its permutation fused into the group pass (`mixing.rs`).
#[cfg(test)]
fn fwht_rows(a: &mut [f64], n: usize, w: usize) {
    debug_assert!(n.is_power_of_two() && a.len() == n * w);
    let group = l1_group_rows::<f64>(n, w);
    for chunk in a.chunks_exact_mut(group * w) {
        stages(chunk, w, 1, group);
    }
    stages(a, w, group, n);
}

/// The butterfly stages with half-widths `h_first, 2·h_first, …, h_end/2`
/// over all of `a` (`w` values per row).
#[inline(always)]
pub(super) fn stages<T: Copy + Add<Output = T> + Sub<Output = T>>(a: &mut [T], w: usize, h_first: usize, h_end: usize) {
    let mut h = h_first;
    // Radix-4 sweeps: two stages per pass over memory.
    while 4 * h <= h_end {
        for group in a.chunks_exact_mut(4 * h * w) {
            let (ab, cd) = group.split_at_mut(2 * h * w);
            let (qa, qb) = ab.split_at_mut(h * w);
            let (qc, qd) = cd.split_at_mut(h * w);
            for (((a, b), c), d) in qa.iter_mut().zip(qb.iter_mut()).zip(qc.iter_mut()).zip(qd.iter_mut()) {
                let (s0, d0) = (*a + *b, *a - *b);
                let (s1, d1) = (*c + *d, *c - *d);
                *a = s0 + s1;
                *b = d0 + d1;
                *c = s0 - s1;
                *d = d0 - d1;
            }
        }
        h *= 4;
    }
    // One radix-2 stage remains when the stage count is odd.
    if 2 * h <= h_end {
        for group in a.chunks_exact_mut(2 * h * w) {
            let (lo, hi) = group.split_at_mut(h * w);
            for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
                let (p, q) = (*x, *y);
                *x = p + q;
                *y = p - q;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_explicit_hadamard_matrix() {
        // w = 3 runs every stage in L1 groups; w = 1024 leaves groups of 4
        // rows (one radix-4 sweep), then the high stages over the block.
        for (n, w) in [(1usize, 3usize), (2, 3), (4, 3), (8, 3), (16, 3), (32, 3), (64, 3), (64, 1024), (32, 2048)] {
            let a: Vec<f64> = (0..n * w).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
            let mut fast = a.clone();
            fwht_rows(&mut fast, n, w);
            for i in 0..n {
                for c in 0..w {
                    let want: f64 = (0..n).map(|j| if (i & j).count_ones() % 2 == 0 { a[j * w + c] } else { -a[j * w + c] }).sum();
                    assert_eq!(fast[i * w + c], want, "n {n} row {i} col {c}");
                }
            }
        }
    }
}
