//! In-place fast Walsh–Hadamard transform over the row index of a
//! row-major block: rows are combined whole, so the inner loops run over
//! contiguous columns and vectorize.

/// Unnormalized transform (`H·a` with entries ±1) of the `n × w` row-major
/// block `a`; `n` must be a power of two. `H·H = n·I`.
pub(super) fn fwht_rows(a: &mut [f64], n: usize, w: usize) {
    debug_assert!(n.is_power_of_two() && a.len() == n * w);
    let mut h = 1;
    // Radix-4 sweeps: two butterfly stages per pass over memory.
    while 4 * h <= n {
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
    // One radix-2 stage remains when log2(n) is odd.
    if h < n {
        let (lo, hi) = a.split_at_mut(h * w);
        for (x, y) in lo.iter_mut().zip(hi.iter_mut()) {
            let (p, q) = (*x, *y);
            *x = p + q;
            *y = p - q;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_explicit_hadamard_matrix() {
        for n in [1usize, 2, 4, 8, 16, 32, 64] {
            let w = 3;
            let a: Vec<f64> = (0..n * w).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
            let mut fast = a.clone();
            fwht_rows(&mut fast, n, w);
            for i in 0..n {
                for c in 0..w {
                    let want: f64 = (0..n)
                        .map(|j| if (i & j).count_ones() % 2 == 0 { a[j * w + c] } else { -a[j * w + c] })
                        .sum();
                    assert_eq!(fast[i * w + c], want, "n {n} row {i} col {c}");
                }
            }
        }
    }
}
