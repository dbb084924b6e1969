//! One op's answer check: `LANES` secret Gaussian vectors `v` (drawn by the
//! CVM, never sent), their `z = Wᵀ·v` (from the op's first pad batch), and
//! the test every answer row must pass: for a row `x` the worker multiplied
//! and its answer `y`,
//!
//! ```text
//! |y·v_l − x·z_l| ≤ T = τ·‖x‖·ζ   for every lane l,   ζ = rms_l ‖z_l‖
//! ```
//!
//! The honest residual is the worker's rounding seen through `v`, about
//! `ε·‖x‖·ζ`; `τ` ([`Tolerance`]) sits far above it. A tampered answer
//! `y + e` gives `e·v_l ~ N(0, ‖e‖²)` on each independent lane, whose
//! density never exceeds `1/(√(2π)·‖e‖)`: it passes one lane with
//! probability at most `√(2/π)·T/‖e‖ ≈ 0.8·T/‖e‖`, all eight with at most
//! `(0.8·T/‖e‖)⁸` (2⁻⁴⁰ once `‖e‖ ≥ 26·T`).

use std::time::{Duration, Instant};

use rayon::prelude::*;
use talaria_kernels::{Float, Precision};
use talaria_models::OpId;
use talaria_protocol::CallKind;

use crate::error::RemoError;
use crate::online::worker::check_private_finite;
use crate::pads::secure_rng::SecureRng;
use crate::pads::wipe::{wipe, SecretVec};
use crate::verify::lanes::{minus_scaled, norm, project, project_rows, Lane, LANES};
use crate::verify::reference::solve_reference;

/// How far above the honest rounding the check's threshold sits, per
/// precision of the answer (`τ`, relative to `‖x‖·ζ`). Measured honest
/// residuals and the margin are in docs/DESIGN.md §3 ("Verification").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tolerance {
    /// f64 rows and answers (the exact mode, and calibration).
    Exact,
    /// f32 rows and answers (the fast mode).
    Fast,
}

impl Tolerance {
    pub fn of(precision: Precision) -> Self {
        match precision {
            Precision::F64 => Self::Exact,
            Precision::F32 => Self::Fast,
        }
    }

    /// `τ`. Honest residuals measured on the default model with the CPU
    /// worker, AMX and AVX-512 paths alike (docs/DESIGN.md §3): at most
    /// 4.7e-14 (f64) and 4.4e-6 (f32 reference: calibration's f64 answers
    /// checked against `z` from f32 pads are the worst case).
    pub fn tau(self) -> f64 {
        match self {
            Self::Exact => 1e-11,
            Self::Fast => 5e-5,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the checks of one op (or, summed, of all) did.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CheckStats {
    /// Answers checked, and their rows.
    pub calls: u64,
    pub rows: u64,
    /// The largest residual seen, as a fraction of its threshold, per
    /// [`Tolerance`] (honest answers stay far below 1).
    pub worst: [f64; 2],
    /// CVM time spent checking, references included.
    pub time: Duration,
    /// Of `time`: deriving the references (once per op and session).
    pub reference_time: Duration,
    /// Of `time`: checking online answers (on a step's critical path).
    pub online_time: Duration,
}

impl CheckStats {
    pub fn add(&mut self, o: &CheckStats) {
        self.calls += o.calls;
        self.rows += o.rows;
        for (w, &x) in self.worst.iter_mut().zip(&o.worst) {
            *w = w.max(x);
        }
        self.time += o.time;
        self.reference_time += o.reference_time;
        self.online_time += o.online_time;
    }

    pub fn worst_of(&self, t: Tolerance) -> f64 {
        self.worst[t.index()]
    }
}

/// "N answers verified (…)": the line the CLI and the server print.
impl std::fmt::Display for CheckStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answers verified ({} rows, {:.0} ms; largest residual against its threshold: f64 answers {:.1e}, f32 answers {:.1e})",
            self.calls,
            self.rows,
            self.time.as_secs_f64() * 1e3,
            self.worst_of(Tolerance::Exact),
            self.worst_of(Tolerance::Fast)
        )
    }
}

struct Reference {
    z: SecretVec<Lane>,
    zeta: f64,
    /// The precision of the batch it came from, which bounds how tightly
    /// anything can be checked against it.
    tolerance: Tolerance,
}

/// Calibration answers that arrived before the op's reference: public rows,
/// and the answers' secret projections.
struct Transcript {
    x: Vec<f32>,
    yv: SecretVec<Lane>,
}

pub struct OpCheck {
    id: OpId,
    d_in: usize,
    v: SecretVec<Lane>,
    reference: Option<Reference>,
    pending: Vec<Transcript>,
    stats: CheckStats,
}

impl OpCheck {
    /// Fresh secret vectors for an op `d_in → d_out`.
    pub fn new(id: OpId, d_in: usize, d_out: usize, rng: &mut SecureRng) -> Self {
        let mut flat = SecretVec::<f64>::zeros(d_out * LANES);
        rng.fill_gaussian_rows(&mut flat, &[1.0; LANES]);
        let mut v = SecretVec::<Lane>::zeros(d_out);
        v.iter_mut().zip(flat.chunks_exact(LANES)).for_each(|(dst, src)| dst.copy_from_slice(src));
        Self { id, d_in, v, reference: None, pending: Vec::new(), stats: CheckStats::default() }
    }

    pub fn id(&self) -> OpId {
        self.id
    }

    pub fn d_in(&self) -> usize {
        self.d_in
    }

    pub fn d_out(&self) -> usize {
        self.v.len()
    }

    pub fn has_reference(&self) -> bool {
        self.reference.is_some()
    }

    pub fn stats(&self) -> CheckStats {
        self.stats
    }

    /// The check vectors, one lane per output channel.
    pub fn v(&self) -> &[Lane] {
        &self.v
    }

    /// `Wᵀ·v`, one lane per input channel (once the reference exists).
    pub fn z(&self) -> Result<&[Lane], RemoError> {
        self.reference.as_ref().map(|r| &r.z[..]).ok_or_else(|| self.no_reference())
    }

    fn no_reference(&self) -> RemoError {
        RemoError::Param(format!("{}: no answer can be checked before the op's first pad batch", self.id))
    }

    /// A residual's size as a fraction of its threshold for a row of norm
    /// `row_norm` (> 1: the answer is rejected).
    pub fn ratio(&self, residual: &Lane, row_norm: f64, tolerance: Tolerance) -> f64 {
        let zeta = self.reference.as_ref().map_or(0.0, |r| r.zeta);
        let threshold = tolerance.tau() * row_norm * zeta;
        // A NaN would pass silently (`f64::max` skips it, comparisons are
        // false), and an infinite threshold would pass anything.
        if residual.iter().any(|r| !r.is_finite()) || !threshold.is_finite() {
            return f64::INFINITY;
        }
        let worst = residual.iter().fold(0.0f64, |m, r| m.max(r.abs()));
        if threshold > 0.0 {
            worst / threshold
        } else if worst == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    }

    /// Accounts one checked answer; its worst row decides. `spent`: the
    /// CVM time of the check alone (not the call it checks).
    pub fn finish(
        &mut self,
        kind: CallKind,
        tolerance: Tolerance,
        rows: usize,
        worst: (usize, f64),
        spent: Duration,
    ) -> Result<(), RemoError> {
        self.stats.calls += 1;
        self.stats.rows += rows as u64;
        self.stats.time += spent;
        if kind == CallKind::Online {
            self.stats.online_time += spent;
        }
        let (row, ratio) = worst;
        let w = &mut self.stats.worst[tolerance.index()];
        *w = w.max(ratio);
        if ratio <= 1.0 {
            return Ok(());
        }
        Err(RemoError::rejected(self.id, kind, format!("row {row} of {rows} is off by {ratio:.3e}× its threshold")))
    }

    /// Checks a pad batch (`r`: its rows, `rw`: their products, private
    /// copies). The op's first batch becomes its reference: `z` is solved
    /// from it (its rows are then checked against the fit, which a
    /// non-linear tampering cannot pass with `N_p > d_in` rows), and the
    /// calibration answers waiting for it are checked.
    pub fn check_batch<P: Float>(&mut self, r: &[P], rw: &[P], sigma: &[f64]) -> Result<(), RemoError> {
        let started = Instant::now();
        if self.reference.is_none() {
            let z = solve_reference(self.id, r, rw, sigma, &self.v)?;
            self.stats.reference_time += started.elapsed();
            let zeta = lanes_rms(&z);
            if !zeta.is_finite() {
                // Only answers far beyond any weight's products get here: a
                // threshold of ∞ would pass every later answer of the op.
                return Err(RemoError::rejected(
                    self.id,
                    CallKind::PadBatch,
                    "the reference batch's products give a check vector of no finite norm",
                ));
            }
            self.reference = Some(Reference { z, zeta, tolerance: Tolerance::of(P::PRECISION) });
        }
        let tolerance = Tolerance::of(P::PRECISION);
        let worst = self.worst_batch_row(r, rw)?;
        self.finish(CallKind::PadBatch, tolerance, r.len() / self.d_in, worst, started.elapsed())?;
        for t in std::mem::take(&mut self.pending) {
            self.check_plain(&t.x, &t.yv)?;
        }
        Ok(())
    }

    /// The worst (row, ratio) of a pad batch against the reference.
    fn worst_batch_row<P: Float>(&self, r: &[P], rw: &[P]) -> Result<(usize, f64), RemoError> {
        let (d_in, d_out) = (self.d_in, self.v.len());
        let tolerance = Tolerance::of(P::PRECISION);
        let z = self.z()?;
        // Rows in chunks, each projected a few rows per pass (`project_rows`).
        const CHUNK: usize = 64;
        Ok(r.par_chunks(d_in * CHUNK)
            .zip(rw.par_chunks(d_out * CHUNK))
            .enumerate()
            .map(|(k, (x, y))| {
                let rows = x.len() / d_in;
                let (mut xz, mut yv) = ([[0.0; LANES]; CHUNK], [[0.0; LANES]; CHUNK]);
                project_rows(x, z, &mut xz[..rows]);
                project_rows(y, &self.v, &mut yv[..rows]);
                let worst = (0..rows)
                    .map(|i| (k * CHUNK + i, self.ratio(&minus_scaled(yv[i], 1.0, xz[i]), norm(&x[i * d_in..(i + 1) * d_in]), tolerance)))
                    .fold((0, 0.0), max_ratio);
                wipe(&mut xz);
                wipe(&mut yv);
                worst
            })
            .reduce(|| (0, 0.0), max_ratio))
    }

    /// A read-only copy of this op's check for a pad batch finished on
    /// another thread (`None` until the reference exists: the first batch
    /// is checked here, where its reference is solved).
    pub fn batch_verifier(&self) -> Option<BatchVerifier> {
        let reference = self.reference.as_ref()?;
        let z = SecretVec::from(reference.z.to_vec());
        let copy = OpCheck {
            id: self.id,
            d_in: self.d_in,
            v: SecretVec::from(self.v.to_vec()),
            reference: Some(Reference { z, zeta: reference.zeta, tolerance: reference.tolerance }),
            pending: Vec::new(),
            stats: CheckStats::default(),
        };
        Some(BatchVerifier(std::sync::Arc::new(copy)))
    }

    /// Accounts a pad batch checked by a [`BatchVerifier`]: an answer whose
    /// worst row is over its threshold is rejected here.
    pub fn account_batch(&mut self, verdict: BatchVerdict) -> Result<(), RemoError> {
        self.finish(CallKind::PadBatch, verdict.tolerance, verdict.rows, verdict.worst, verdict.spent)
    }

    /// Checks (or, before the op's reference exists, keeps for checking)
    /// the f64 answer `y` to unmasked public rows `x` (a private copy: a
    /// non-finite value in it was written after the transport's checks).
    pub fn record_plain(&mut self, x: &[f32], y: &[f64]) -> Result<(), RemoError> {
        check_private_finite(self.id, CallKind::Plain, "the answer", y)?;
        let d_out = self.v.len();
        let yv: SecretVec<Lane> = y.chunks_exact(d_out).map(|row| project(row, &self.v)).collect::<Vec<_>>().into();
        if self.reference.is_some() {
            self.check_plain(x, &yv)
        } else {
            self.pending.push(Transcript { x: x.to_vec(), yv });
            Ok(())
        }
    }

    fn check_plain(&mut self, x: &[f32], yv: &[Lane]) -> Result<(), RemoError> {
        let started = Instant::now();
        let z = self.z()?;
        // Calibration answers are f64, but the reference of a fast-mode
        // session comes from f32 pads.
        let tolerance = self.reference.as_ref().map_or(Tolerance::Exact, |r| r.tolerance);
        let worst = x
            .chunks_exact(self.d_in)
            .zip(yv)
            .enumerate()
            .map(|(i, (row, yv))| (i, self.ratio(&minus_scaled(*yv, 1.0, project(row, z)), norm(row), tolerance)))
            .fold((0, 0.0), max_ratio);
        self.finish(CallKind::Plain, tolerance, yv.len(), worst, started.elapsed())
    }
}

/// An op's check vectors and reference, shared with the threads that
/// finish pad batches (the verdict is accounted by the op's `OpCheck`).
#[derive(Clone)]
pub struct BatchVerifier(std::sync::Arc<OpCheck>);

/// What checking one pad batch found, for [`OpCheck::account_batch`].
#[derive(Clone, Copy, Debug)]
pub struct BatchVerdict {
    tolerance: Tolerance,
    rows: usize,
    worst: (usize, f64),
    spent: Duration,
}

impl BatchVerifier {
    /// Checks every row of a pad batch (`r`, `rw`: its rows and products).
    pub fn check<P: Float>(&self, r: &[P], rw: &[P]) -> Result<BatchVerdict, RemoError> {
        let started = Instant::now();
        let worst = self.0.worst_batch_row(r, rw)?;
        Ok(BatchVerdict { tolerance: Tolerance::of(P::PRECISION), rows: r.len() / self.0.d_in, worst, spent: started.elapsed() })
    }
}

/// `ζ = rms_l ‖z_l‖`, scaled so that no square overflows: finite whenever
/// every element is.
fn lanes_rms(z: &[Lane]) -> f64 {
    let big = z.iter().flatten().fold(0.0f64, |m, v| if v.is_nan() { f64::NAN } else { m.max(v.abs()) });
    if big == 0.0 || !big.is_finite() {
        return big;
    }
    let sum: f64 = z.iter().flatten().map(|v| (v / big) * (v / big)).sum();
    big * (sum / LANES as f64).sqrt()
}

/// The (row, ratio) with the larger ratio (NaN counts as the largest).
pub fn max_ratio(a: (usize, f64), b: (usize, f64)) -> (usize, f64) {
    if b.1 > a.1 || b.1.is_nan() {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talaria_models::Op;

    /// An op `d_in → d_out` checked against an honest first batch.
    fn checked_op(rng: &mut SecureRng) -> (OpCheck, Vec<f64>) {
        let (d_in, d_out, n_p) = (8, 5, 16);
        let w: Vec<f64> = (0..d_out * d_in).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.1).collect();
        let mut r = vec![0.0; n_p * d_in];
        rng.fill_gaussian_rows(&mut r, &[1.0; 8]);
        let product = |x: &[f64]| -> Vec<f64> { (0..d_out).map(|o| x.iter().zip(&w[o * d_in..]).map(|(a, b)| a * b).sum()).collect() };
        let rw: Vec<f64> = r.chunks_exact(d_in).flat_map(product).collect();
        let mut check = OpCheck::new(OpId::new(0, Op::O), d_in, d_out, rng);
        check.check_batch(&r, &rw, &[1.0; 8]).unwrap();
        (check, w)
    }

    /// NaN compares false and `f64::max` skips it: a NaN residual counted
    /// as 0 and passed. Now it, and an overflowing threshold, reject.
    #[test]
    fn non_finite_residuals_and_thresholds_reject() {
        let mut rng = SecureRng::from_os().unwrap();
        let (mut check, _) = checked_op(&mut rng);
        for tolerance in [Tolerance::Exact, Tolerance::Fast] {
            assert_eq!(check.ratio(&[0.0; LANES], 1.0, tolerance), 0.0);
            let mut one_nan = [0.0; LANES];
            one_nan[3] = f64::NAN;
            for bad in [[f64::NAN; LANES], one_nan, [f64::INFINITY; LANES]] {
                assert_eq!(check.ratio(&bad, 1.0, tolerance), f64::INFINITY, "{bad:?}");
            }
            assert_eq!(check.ratio(&[0.0; LANES], f64::INFINITY, tolerance), f64::INFINITY, "a threshold of ∞ passes anything");
        }
        // A calibration answer with a NaN is a lie at once.
        let x = vec![0.5f32; 8];
        let err = check.record_plain(&x, &[0.0, 1.0, f64::NAN, 0.0, 0.0]).unwrap_err();
        assert!(matches!(err, RemoError::AnswerRejected { .. }), "{err}");
    }
}
