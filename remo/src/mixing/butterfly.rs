//! The secret butterfly mixing `M` of a pad batch (docs/DESIGN.md §3).
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

use crate::error::RemoError;
use crate::mixing::column_blocks::{par_column_blocks, ColumnBlockMut};
use crate::mixing::fwht::{l1_group_rows, stages};
use crate::mixing::streaming_store::{self, copy_streaming};
use crate::pads::secure_rng::SecureRng;
use crate::pads::wipe::{wipe, SecretVec};
use talaria_kernels::Float;

/// σ of the log-normal diagonal magnitudes (see the module docs).
pub const LOGNORMAL_SIGMA: f64 = 0.25;
/// The normal behind the log-normal is truncated to `|g| ≤` this.
pub const LOGNORMAL_TRUNCATION: f64 = 3.0;
/// Values converted per streaming copy (a stack buffer of 256–512 bytes).
const STREAM_CHUNK: usize = 64;

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
                // The diagonal is secret like the rest: wiped once derived.
                let d: SecretVec<f64> = (0..n)
                    .map(|_| rng.sign() * (LOGNORMAL_SIGMA * rng.truncated_normal(LOGNORMAL_TRUNCATION)).exp())
                    .collect::<Vec<_>>()
                    .into();
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
    pub fn apply<P: Float>(&self, a: &mut [P], cols: usize) -> Result<(), RemoError> {
        self.check(a, cols)?;
        self.run(None, a, cols, Direction::Forward);
        Ok(())
    }

    /// `dst = M·src` for row-major `N × cols` matrices (saves a copy).
    pub fn apply_from<P: Float>(&self, src: &[P], dst: &mut [P], cols: usize) -> Result<(), RemoError> {
        self.check(src, cols)?;
        self.check(dst, cols)?;
        self.run(Some(src), dst, cols, Direction::Forward);
        Ok(())
    }

    /// `A ← M⁻¹·A` for the row-major `N × cols` matrix `a`.
    pub fn apply_inverse<P: Float>(&self, a: &mut [P], cols: usize) -> Result<(), RemoError> {
        self.check(a, cols)?;
        self.run(None, a, cols, Direction::Inverse);
        Ok(())
    }

    /// `dst = M⁻¹·src` for row-major `N × cols` matrices (saves a copy).
    pub fn apply_inverse_from<P: Float>(&self, src: &[P], dst: &mut [P], cols: usize) -> Result<(), RemoError> {
        self.check(src, cols)?;
        self.check(dst, cols)?;
        self.run(Some(src), dst, cols, Direction::Inverse);
        Ok(())
    }

    /// Transforms `dst` (or `src` into `dst`) block of columns by block of
    /// columns, in parallel; each block stays in cache through all rounds.
    fn run<P: Float>(&self, src: Option<&[P]>, dst: &mut [P], cols: usize, dir: Direction) {
        let (n, bw) = (self.n, block_width(self.n, cols));
        par_column_blocks(dst, n, cols, bw, ScratchWipe::default, |wipe, mut block| {
            SCRATCH.with(|s| process_block(&self.rounds, dir, src, cols, &mut block, &mut s.borrow_mut()));
            wipe.used = wipe.used.max(n * block.width());
        });
    }

    fn check<P>(&self, a: &[P], cols: usize) -> Result<(), RemoError> {
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

/// All rounds on one block of columns. Runs the AVX-512 or AVX2 build of
/// the same code where the CPU has it.
fn process_block<P: Float>(
    rounds: &[Round],
    dir: Direction,
    src: Option<&[P]>,
    cols: usize,
    block: &mut ColumnBlockMut<'_, P>,
    s: &mut Scratch,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { process_block_avx512(rounds, dir, src, cols, block, s) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { process_block_avx2(rounds, dir, src, cols, block, s) };
        }
    }
    process_block_generic(rounds, dir, src, cols, block, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn process_block_avx512<P: Float>(
    rounds: &[Round],
    dir: Direction,
    src: Option<&[P]>,
    cols: usize,
    block: &mut ColumnBlockMut<'_, P>,
    s: &mut Scratch,
) {
    process_block_generic(rounds, dir, src, cols, block, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn process_block_avx2<P: Float>(
    rounds: &[Round],
    dir: Direction,
    src: Option<&[P]>,
    cols: usize,
    block: &mut ColumnBlockMut<'_, P>,
    s: &mut Scratch,
) {
    process_block_generic(rounds, dir, src, cols, block, s)
}

/// Forward: the first round gathers straight from the source rows, the
/// result is stored once. Inverse: the block is loaded once (from the
/// source rows when given), the last round scatters straight into it.
/// Rounds in between ping-pong between the two scratch halves. The
/// arithmetic is f64 whatever `P` is: f32 pads are rounded once, on the
/// way out, instead of at each of the ~30 butterfly stages (which, times
/// κ, was the fast mode's largest error).
#[inline(always)]
fn process_block_generic<P: Float>(
    rounds: &[Round],
    dir: Direction,
    src: Option<&[P]>,
    cols: usize,
    block: &mut ColumnBlockMut<'_, P>,
    s: &mut Scratch,
) {
    let (w, c0) = (block.width(), block.c0());
    let n = rounds.first().map_or(0, |r| r.perm.len());
    let (mut cur, mut next) = s.halves(n * w);
    match dir {
        Direction::Forward => {
            let blk: &ColumnBlockMut<'_, P> = block;
            match src {
                Some(m) => gather_round(&rounds[0], cur, n, w, FROM_MEMORY, |i| &m[i * cols + c0..i * cols + c0 + w]),
                None => gather_round(&rounds[0], cur, n, w, FROM_MEMORY, |i| blk.row(i)),
            }
            for r in &rounds[1..] {
                let from: &[f64] = cur;
                gather_round(r, next, n, w, 0, |i| &from[i * w..(i + 1) * w]);
                std::mem::swap(&mut cur, &mut next);
            }
            // `U` is next read when the engine thread copies it into the
            // transport, after other batches' work: streamed past the caches
            // as `R·W` is below.
            let mut buf = [P::zeroed(); STREAM_CHUNK];
            for (i, row) in cur.chunks_exact(w).enumerate() {
                for (dst, src) in block.row_mut(i).chunks_mut(STREAM_CHUNK).zip(row.chunks(STREAM_CHUNK)) {
                    buf.iter_mut().zip(src).for_each(|(x, &y)| *x = P::from_f64(y));
                    copy_streaming(dst, &buf[..dst.len()]);
                }
            }
            wipe(&mut buf);
            streaming_store::fence();
        }
        Direction::Inverse => {
            let from = |i: usize| match src {
                Some(m) => &m[i * cols + c0..i * cols + c0 + w],
                None => block.row(i),
            };
            for (i, row) in cur.chunks_exact_mut(w).enumerate() {
                if i + FROM_MEMORY < n {
                    talaria_kernels::cpu::prefetch(from(i + FROM_MEMORY));
                }
                row.iter_mut().zip(from(i)).for_each(|(x, &y)| *x = y.into());
            }
            for r in rounds[1..].iter().rev() {
                let to: &mut [f64] = next;
                scatter_round(r, cur, n, w, |i, d, row| to[i * w..(i + 1) * w].iter_mut().zip(row).for_each(|(x, y)| *x = d * y));
                std::mem::swap(&mut cur, &mut next);
            }
            // The result (a batch's `R·W`) is next read seconds later:
            // streaming stores keep it from evicting the serving step's
            // working set.
            let mut buf = [P::zeroed(); STREAM_CHUNK];
            scatter_round(&rounds[0], cur, n, w, |i, d, row| {
                for (dst, src) in block.row_mut(i).chunks_mut(STREAM_CHUNK).zip(row.chunks(STREAM_CHUNK)) {
                    buf.iter_mut().zip(src).for_each(|(x, y)| *x = P::from_f64(d * y));
                    copy_streaming(dst, &buf[..dst.len()]);
                }
            });
            wipe(&mut buf);
            streaming_store::fence();
        }
    }
}

/// `out = H·D·P·A` for the `n × w` block `A` whose row `i` is `row(i)`:
/// each L1 group of `out` is gathered and run through the low stages while
/// hot, then the high stages follow over the whole block. With `ahead > 0`
/// the rows `ahead` places later in the gather are prefetched.
#[inline(always)]
fn gather_round<'a, S: Copy + Into<f64> + 'a>(
    r: &Round,
    out: &mut [f64],
    n: usize,
    w: usize,
    ahead: usize,
    row: impl Fn(usize) -> &'a [S],
) {
    let g = l1_group_rows::<f64>(n, w);
    for (gi, group) in out.chunks_exact_mut(g * w).enumerate() {
        let rows = gi * g..(gi + 1) * g;
        for (((j, dst), &src), &d) in group.chunks_exact_mut(w).enumerate().zip(&r.perm[rows.clone()]).zip(&r.scale[rows.clone()]) {
            if let Some(&later) = r.perm.get(rows.start + j + ahead).filter(|_| ahead > 0) {
                talaria_kernels::cpu::prefetch(row(later));
            }
            dst.iter_mut().zip(row(src)).for_each(|(x, &y)| *x = d * y.into());
        }
        stages(group, w, 1, g);
    }
    stages(out, w, g, n);
}

/// `P⁻¹·D⁻¹·H·A` for the `n × w` block `a` (overwritten): the high stages,
/// then per L1 group the low stages and the scatter, which hands row `i` of
/// the result as `sink(i, 1/dᵢ-scale, values)`.
#[inline(always)]
fn scatter_round(r: &Round, a: &mut [f64], n: usize, w: usize, mut sink: impl FnMut(usize, f64, &[f64])) {
    let g = l1_group_rows::<f64>(n, w);
    stages(a, w, g, n);
    for (gi, group) in a.chunks_exact_mut(g * w).enumerate() {
        stages(group, w, 1, g);
        let rows = gi * g..(gi + 1) * g;
        for ((src, &dst), &d) in group.chunks_exact(w).zip(&r.perm[rows.clone()]).zip(&r.inv_scale[rows]) {
            sink(dst, d, src);
        }
    }
}

/// Rows prefetched ahead when a block is read from memory (its rows lie
/// `cols` values apart, in the mixing's own random order going forward:
/// neither a stride nor a sequence the hardware prefetchers follow).
const FROM_MEMORY: usize = 8;

/// Columns per cache block for `n` rows (at most `cols`; the scratch is f64).
fn block_width(n: usize, cols: usize) -> usize {
    let w = SCRATCH_BYTES / (2 * 8 * n);
    let w = if w >= 8 { w / 8 * 8 } else { w.max(1) };
    w.min(cols).max(1)
}

thread_local! {
    /// Kept per thread: a fresh 1 MB scratch per rayon job meant fresh
    /// pages, and the kernel clearing them showed as 4 % of a busy
    /// server's CPU time.
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch { buf: Vec::new() }) };
}

/// Two scratch blocks of one thread; they hold partial mixtures of secret
/// rows, so the used part is zeroized after every block and all of it when
/// the thread ends.
struct Scratch {
    buf: Vec<f64>,
}

impl Scratch {
    /// Two blocks of `len` values (grown on first use).
    fn halves(&mut self, len: usize) -> (&mut [f64], &mut [f64]) {
        if self.buf.len() < 2 * len {
            self.buf.resize(2 * len, 0.0);
        }
        let (a, b) = self.buf.split_at_mut(len);
        (a, &mut b[..len])
    }

    /// Zeroizes what `halves(len)` handed out.
    fn wipe_used(&mut self, len: usize) {
        let end = (2 * len).min(self.buf.len());
        wipe(&mut self.buf[..end]);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        wipe(&mut self.buf);
    }
}

/// Zeroizes this thread's scratch when one parallel job of a transform
/// ends (after all its blocks), not after every block: a block overwrites
/// what the one before left, and wiping 1 MB per block of 64 columns wiped
/// twice the matrix itself.
#[derive(Default)]
struct ScratchWipe {
    /// Values of one half that the job's blocks used.
    used: usize,
}

impl Drop for ScratchWipe {
    fn drop(&mut self) {
        if self.used > 0 {
            SCRATCH.with(|s| s.borrow_mut().wipe_used(self.used));
        }
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
            let mut b = vec![0.0; n * cols];
            m.apply_from(&a, &mut b, cols).unwrap();
            let mut in_place = a.clone();
            m.apply(&mut in_place, cols).unwrap();
            assert_eq!(b, in_place, "apply_from and apply differ");
            // With 2 or 8 rows a random mixing can land near the identity; the check is
            // only meaningful (and overwhelmingly likely) at realistic sizes.
            if n >= 128 {
                assert!(rel_err(&b, &a) > 0.5, "n {n}: mixing changed almost nothing");
            }
            let mut back = vec![0.0; n * cols];
            m.apply_inverse_from(&b, &mut back, cols).unwrap();
            m.apply_inverse(&mut b, cols).unwrap();
            assert_eq!(back, b, "apply_inverse_from and apply_inverse differ");
            assert!(rel_err(&b, &a) < 1e-14, "n {n}: round trip error {}", rel_err(&b, &a));
        }
    }

    /// f32 pads: the rounds run in f64 and round once on the way out, so a
    /// round trip is within a few f32 ulps (30 f32 butterfly stages each way
    /// gave ~5e-7, which κ then amplified).
    #[test]
    fn f32_round_trip_rounds_once() {
        let mut rng = SecureRng::from_os().unwrap();
        let (n, cols) = (1024, 96);
        let m = Mixing::sample(n, 3, &mut rng).unwrap();
        let a: Vec<f32> = gaussian(&mut rng, n * cols).iter().map(|&v| v as f32).collect();
        let mut u = vec![0f32; n * cols];
        m.apply_from(&a, &mut u, cols).unwrap();
        let mut back = vec![0f32; n * cols];
        m.apply_inverse_from(&u, &mut back, cols).unwrap();
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let err = rel_err(&wide(&back), &wide(&a));
        assert!(err < 2e-7, "f32 round trip error {err:e}");
        // The f32 result is the f64 result rounded.
        let mut u64v = vec![0f64; n * cols];
        m.apply_from(&wide(&a), &mut u64v, cols).unwrap();
        assert!(u.iter().zip(&u64v).all(|(&x, &y)| x == y as f32));
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
