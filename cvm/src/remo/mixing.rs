//! The secret butterfly mixing `M` of a pad batch (DESIGN §3).
//!
//! `M = B_k ⋯ B_1` with `k ≥ 3` rounds `B = (H/√N)·D·P`: `P` a secret
//! random permutation of the `N` rows, `D` a diagonal of random signs times
//! log-normal magnitudes, `H` the Walsh–Hadamard matrix. `M` is dense after
//! the first round (every entry of `H` is ±1), costs `O(N log N)` per
//! column, and is inverted exactly by running the rounds backwards.
//!
//! **Choice of the log-normal σ.** `H/√N` and `P` are orthogonal, so
//! `cond(B) = max|dᵢ| / min|dᵢ|` and `cond(M) ≤ Π cond(B)`. Magnitudes are
//! `exp(σ·g)` with `g` a standard normal truncated to `|g| ≤ 3`, so with
//! `σ = 0.25` each round has `cond(B) ≤ e^{1.5} ≈ 4.5` and three rounds have
//! `cond(M) ≤ e^{4.5} ≈ 90`, guaranteed. The worker's f64 rounding on
//! `U·W` (relative ≈ 1e-16·√d_in) is amplified by at most that factor in
//! `M⁻¹·(U·W)` (random errors far less), which keeps `R·W` within ~1e-14
//! to 1e-13 relative, so the κ-fold amplification of the online call
//! still leaves `X·W` within ~1e-10.

use super::column_blocks::par_column_blocks;
use super::error::RemoError;
use super::fwht::fwht_rows;
use super::secure_rng::SecureRng;
use super::wipe::wipe;

/// σ of the log-normal diagonal magnitudes (see the module docs).
pub const LOGNORMAL_SIGMA: f64 = 0.25;
/// The normal behind the log-normal is truncated to `|g| ≤` this.
pub const LOGNORMAL_TRUNCATION: f64 = 3.0;
/// The fewest rounds a mixing may have.
pub const MIN_ROUNDS: usize = 3;
/// Bytes of the two per-thread scratch blocks together (fits in L2).
const SCRATCH_BYTES: usize = 1 << 20;

/// Pad-batch rows for an op with `d_in` inputs: the smallest power of two
/// `≥ 1.25·d_in` (so `U = M·R` has full column rank with margin).
pub fn padded_rows(d_in: usize) -> usize {
    (5 * d_in).div_ceil(4).next_power_of_two().max(2)
}

struct Round {
    /// `(P·A)[i] = A[perm[i]]`.
    perm: Vec<usize>,
    /// `dᵢ / √N` (the normalization of `H` folded in).
    scale: Vec<f64>,
    /// `1 / (√N · dᵢ)`.
    inv_scale: Vec<f64>,
}

impl Drop for Round {
    fn drop(&mut self) {
        wipe(&mut self.perm);
        wipe(&mut self.scale);
        wipe(&mut self.inv_scale);
    }
}

/// A fresh secret mixing of `N` rows; all parameters are zeroized on drop.
pub struct Mixing {
    n: usize,
    rounds: Vec<Round>,
}

impl Mixing {
    /// Samples `rounds` (≥ 3) rounds for `n` rows (`n` a power of two ≥ 2).
    pub fn sample(n: usize, rounds: usize, rng: &mut SecureRng) -> Result<Self, RemoError> {
        if n < 2 || !n.is_power_of_two() {
            return Err(RemoError::Param(format!("mixing size {n} is not a power of two ≥ 2")));
        }
        if rounds < MIN_ROUNDS {
            return Err(RemoError::Param(format!("mixing needs ≥ {MIN_ROUNDS} rounds, got {rounds}")));
        }
        let norm = (n as f64).sqrt();
        let rounds = (0..rounds)
            .map(|_| {
                let mut perm = Vec::with_capacity(n);
                rng.permutation(n, &mut perm);
                let d: Vec<f64> = (0..n)
                    .map(|_| rng.sign() * (LOGNORMAL_SIGMA * rng.truncated_normal(LOGNORMAL_TRUNCATION)).exp())
                    .collect();
                let scale = d.iter().map(|d| d / norm).collect();
                let inv_scale = d.iter().map(|d| 1.0 / (norm * d)).collect();
                Round { perm, scale, inv_scale }
            })
            .collect();
        Ok(Self { n, rounds })
    }

    /// `N`, the number of rows mixed.
    pub fn size(&self) -> usize {
        self.n
    }

    pub fn rounds(&self) -> usize {
        self.rounds.len()
    }

    /// A guaranteed upper bound on `cond₂(M)`: the product over rounds of
    /// `max|dᵢ| / min|dᵢ|`.
    pub fn condition_bound(&self) -> f64 {
        self.rounds
            .iter()
            .map(|r| {
                let (lo, hi) = r.scale.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), s| (lo.min(s.abs()), hi.max(s.abs())));
                hi / lo
            })
            .product()
    }

    /// `A ← M·A` for the row-major `N × cols` matrix `a`.
    pub fn apply(&self, a: &mut [f64], cols: usize) -> Result<(), RemoError> {
        self.check(a, cols)?;
        self.run(None, a, cols, Direction::Forward);
        Ok(())
    }

    /// `dst = M·src` for row-major `N × cols` matrices (saves a copy).
    pub fn apply_from(&self, src: &[f64], dst: &mut [f64], cols: usize) -> Result<(), RemoError> {
        self.check(src, cols)?;
        self.check(dst, cols)?;
        self.run(Some(src), dst, cols, Direction::Forward);
        Ok(())
    }

    /// `A ← M⁻¹·A` for the row-major `N × cols` matrix `a`.
    pub fn apply_inverse(&self, a: &mut [f64], cols: usize) -> Result<(), RemoError> {
        self.check(a, cols)?;
        self.run(None, a, cols, Direction::Inverse);
        Ok(())
    }

    /// Transforms `dst` (or `src` into `dst`) block of columns by block of
    /// columns, in parallel; each block stays in cache through all rounds.
    fn run(&self, src: Option<&[f64]>, dst: &mut [f64], cols: usize, dir: Direction) {
        let (n, bw) = (self.n, block_width(self.n, cols));
        par_column_blocks(dst, n, cols, bw, || Scratch::new(n, bw), |s, mut block| {
            let w = block.width();
            let (cur, next) = s.halves(n * w);
            match src {
                Some(src) => block.load_from(src, cur),
                None => block.load(cur),
            }
            if transform_block(&self.rounds, dir, cur, next, n, w) {
                block.store(cur);
            } else {
                block.store(next);
            }
        });
    }

    fn check(&self, a: &[f64], cols: usize) -> Result<(), RemoError> {
        if a.len() != self.n * cols {
            return Err(RemoError::Param(format!("mixing {} rows: matrix has {} values, expected {}×{cols}", self.n, a.len(), self.n)));
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Forward,
    Inverse,
}

/// All rounds on one `n × w` block held in `a`; `b` is scratch. Returns
/// whether the result ended in `a` (else in `b`). Runs the AVX-512 or AVX2
/// build of the same code where the CPU has it.
fn transform_block(rounds: &[Round], dir: Direction, a: &mut [f64], b: &mut [f64], n: usize, w: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { transform_block_avx512(rounds, dir, a, b, n, w) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { transform_block_avx2(rounds, dir, a, b, n, w) };
        }
    }
    transform_block_generic(rounds, dir, a, b, n, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transform_block_avx512(rounds: &[Round], dir: Direction, a: &mut [f64], b: &mut [f64], n: usize, w: usize) -> bool {
    transform_block_generic(rounds, dir, a, b, n, w)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transform_block_avx2(rounds: &[Round], dir: Direction, a: &mut [f64], b: &mut [f64], n: usize, w: usize) -> bool {
    transform_block_generic(rounds, dir, a, b, n, w)
}

#[inline(always)]
fn transform_block_generic(rounds: &[Round], dir: Direction, a: &mut [f64], b: &mut [f64], n: usize, w: usize) -> bool {
    let (mut cur, mut next) = (a, b);
    let mut in_a = true;
    let step = |r: &Round, cur: &mut [f64], next: &mut [f64]| match dir {
        // next = H·D·P·cur.
        Direction::Forward => {
            for ((dst, &src), &d) in next.chunks_exact_mut(w).zip(&r.perm).zip(&r.scale) {
                for (x, y) in dst.iter_mut().zip(&cur[src * w..(src + 1) * w]) {
                    *x = d * y;
                }
            }
            fwht_rows(next, n, w);
        }
        // next = P⁻¹·D⁻¹·H·cur (cur is overwritten).
        Direction::Inverse => {
            fwht_rows(cur, n, w);
            for ((src, &dst), &d) in cur.chunks_exact(w).zip(&r.perm).zip(&r.inv_scale) {
                for (x, y) in next[dst * w..(dst + 1) * w].iter_mut().zip(src) {
                    *x = d * y;
                }
            }
        }
    };
    match dir {
        Direction::Forward => rounds.iter().for_each(|r| {
            step(r, cur, next);
            std::mem::swap(&mut cur, &mut next);
            in_a = !in_a;
        }),
        Direction::Inverse => rounds.iter().rev().for_each(|r| {
            step(r, cur, next);
            std::mem::swap(&mut cur, &mut next);
            in_a = !in_a;
        }),
    }
    in_a
}

/// Columns per cache block for `n` rows (at most `cols`).
fn block_width(n: usize, cols: usize) -> usize {
    let w = SCRATCH_BYTES / (2 * 8 * n);
    let w = if w >= 8 { w / 8 * 8 } else { w.max(1) };
    w.min(cols).max(1)
}

/// Two scratch blocks per worker thread; they hold partial mixtures of
/// secret rows, so they are zeroized when dropped.
struct Scratch {
    buf: Vec<f64>,
}

impl Scratch {
    fn new(n: usize, width: usize) -> Self {
        Self { buf: vec![0.0; 2 * n * width] }
    }

    fn halves(&mut self, len: usize) -> (&mut [f64], &mut [f64]) {
        let half = self.buf.len() / 2;
        let (a, b) = self.buf.split_at_mut(half);
        (&mut a[..len], &mut b[..len])
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        wipe(&mut self.buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(rng: &mut SecureRng, len: usize) -> Vec<f64> {
        (0..len).map(|_| rng.standard_normal()).collect()
    }

    fn rel_err(a: &[f64], b: &[f64]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
        let den: f64 = b.iter().map(|y| y * y).sum();
        (num / den).sqrt()
    }

    #[test]
    fn padded_rows_is_a_power_of_two_with_margin() {
        assert_eq!(padded_rows(576), 1024);
        assert_eq!(padded_rows(1536), 2048);
        assert_eq!(padded_rows(64), 128);
        assert_eq!(padded_rows(819), 1024);
        assert_eq!(padded_rows(820), 2048);
        assert_eq!(padded_rows(1), 2);
    }

    #[test]
    fn inverse_undoes_apply() {
        let mut rng = SecureRng::from_os().unwrap();
        for (n, cols) in [(2, 1), (8, 3), (128, 64), (1024, 300)] {
            let m = Mixing::sample(n, 3, &mut rng).unwrap();
            let a = gaussian(&mut rng, n * cols);
            let mut b = a.clone();
            m.apply(&mut b, cols).unwrap();
            assert!(rel_err(&b, &a) > 0.5, "mixing changed almost nothing");
            m.apply_inverse(&mut b, cols).unwrap();
            assert!(rel_err(&b, &a) < 1e-14, "n {n}: round trip error {}", rel_err(&b, &a));
        }
    }

    /// Column j of the explicit matrix is `M·e_j`.
    fn explicit(m: &Mixing) -> Vec<f64> {
        let n = m.size();
        let mut id = vec![0.0; n * n];
        (0..n).for_each(|i| id[i * n + i] = 1.0);
        m.apply(&mut id, n).unwrap();
        id
    }

    #[test]
    fn mixing_is_dense_and_well_conditioned() {
        let mut rng = SecureRng::from_os().unwrap();
        let n = 128;
        let m = Mixing::sample(n, 3, &mut rng).unwrap();
        let dense = explicit(&m);
        // Every output row depends on every input row.
        let smallest = dense.iter().fold(f64::INFINITY, |a, v| a.min(v.abs()));
        assert!(smallest > 0.0, "M has a zero entry");
        // Each round's magnitudes span at most e^{±3σ}.
        assert!(m.condition_bound() <= (3.0 * 2.0 * LOGNORMAL_TRUNCATION * LOGNORMAL_SIGMA).exp() * (1.0 + 1e-12));
        // Not orthogonal: the log-normal diagonal makes column norms differ.
        let norms: Vec<f64> = (0..n).map(|j| (0..n).map(|i| dense[i * n + j].powi(2)).sum::<f64>().sqrt()).collect();
        let (lo, hi) = norms.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &v| (l.min(v), h.max(v)));
        assert!(hi / lo > 1.05, "column norms {lo}..{hi}: M looks orthogonal");
    }

    #[test]
    fn apply_equals_the_explicit_product_and_inverse_recovers_products() {
        let mut rng = SecureRng::from_os().unwrap();
        let (n, d_in, d_out) = (64, 40, 24);
        let m = Mixing::sample(n, 4, &mut rng).unwrap();
        let dense = explicit(&m);
        let r = gaussian(&mut rng, n * d_in);
        let mut u = r.clone();
        m.apply(&mut u, d_in).unwrap();
        let mut want = vec![0.0; n * d_in];
        for i in 0..n {
            for k in 0..n {
                for c in 0..d_in {
                    want[i * d_in + c] += dense[i * n + k] * r[k * d_in + c];
                }
            }
        }
        assert!(rel_err(&u, &want) < 1e-14);
        // M⁻¹·(U·W) = R·W.
        let w = gaussian(&mut rng, d_in * d_out);
        let mul = |a: &[f64]| -> Vec<f64> {
            let mut out = vec![0.0; n * d_out];
            for i in 0..n {
                for k in 0..d_in {
                    for j in 0..d_out {
                        out[i * d_out + j] += a[i * d_in + k] * w[k * d_out + j];
                    }
                }
            }
            out
        };
        let mut uw = mul(&u);
        m.apply_inverse(&mut uw, d_out).unwrap();
        assert!(rel_err(&uw, &mul(&r)) < 1e-13);
    }

    #[test]
    fn rejects_bad_sizes() {
        let mut rng = SecureRng::from_os().unwrap();
        assert!(Mixing::sample(12, 3, &mut rng).is_err());
        assert!(Mixing::sample(16, 2, &mut rng).is_err());
        let m = Mixing::sample(16, 3, &mut rng).unwrap();
        assert!(m.apply(&mut [0.0; 15], 1).is_err());
    }
}
