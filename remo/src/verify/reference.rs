//! `z = Wᵀ·v` for every check vector `v`, derived from one pad batch: the
//! batch gives `P = R·Wᵀ` for `N_p > d_in` Gaussian rows `R`, so `R·z = P·v`
//! is an overdetermined system with the exact solution `z`. It is solved by
//! least squares over the whitened rows `A = R·diag(1/σ)` (i.i.d. standard
//! normal entries, condition number ≈ 7–14): the normal equations are
//! factored in f32 (half the cost of f64; the Gram matrix dominates) and the
//! solution refined against f64 residuals `Aᵀ·(P·v − A·z)` until it is
//! f64-accurate. The CVM never forms `W`: only its `LANES` projections.

use rayon::prelude::*;
use talaria_kernels::cpu::{cholesky, cholesky_solve, gram};
use talaria_kernels::Float;
use talaria_models::OpId;

use crate::error::RemoError;
use crate::pads::wipe::SecretVec;
use crate::verify::lanes::{project, Lane, LANES};

/// Refinement steps at most; each gains about 6 decimal digits (the f32
/// factor's error times cond ≈ 200), so three usually reach f64's floor.
const MAX_REFINEMENTS: usize = 8;
/// Converged once an update is this small against the solution: the error
/// left after it is about its square, at f64's rounding floor.
const CONVERGED: f64 = 1e-9;

/// Solves `R·z = P·v` for each lane's `v` (rows of `r`: `d_in` values at
/// scales `sigma`; rows of `rw`: their `d_out`-value products).
pub fn solve_reference<P: Float>(id: OpId, r: &[P], rw: &[P], sigma: &[f64], v: &[Lane]) -> Result<SecretVec<Lane>, RemoError> {
    let (d_in, d_out) = (sigma.len(), v.len());
    let n_p = r.len() / d_in;
    if n_p <= d_in || r.len() != n_p * d_in || rw.len() != n_p * d_out {
        return Err(RemoError::Param(format!("{id}: a reference needs more pad rows than inputs ({n_p} rows of {d_in})")));
    }
    let inv: Vec<f64> = sigma.iter().map(|s| 1.0 / s).collect();
    let mut a = SecretVec::<f64>::zeros(n_p * d_in);
    a.par_chunks_exact_mut(d_in).zip(r.par_chunks_exact(d_in)).for_each(|(dst, src)| {
        dst.iter_mut().zip(src).zip(&inv).for_each(|((d, &x), &w)| *d = x.to_f64() * w);
    });
    let mut l = SecretVec::<f32>::zeros(d_in * d_in);
    {
        let a32: SecretVec<f32> = a.iter().map(|&x| x as f32).collect::<Vec<_>>().into();
        gram(&a32, n_p, d_in, &mut l);
    }
    cholesky(&mut l, d_in).map_err(|column| RemoError::Singular { column, pivot: 0.0 })?;
    // The right-hand sides P·V (n_p × LANES), and the residual A·z − P·V.
    let pv: SecretVec<Lane> = rw.par_chunks_exact(d_out).map(|row| project(row, v)).collect::<Vec<_>>().into();
    let mut z = SecretVec::<f64>::zeros(d_in * LANES);
    let mut step = SecretVec::<f64>::zeros(d_in * LANES);
    for _ in 0..MAX_REFINEMENTS {
        // step = Aᵀ·(P·V − A·z), in f64 (a sum over rows: per-thread partials).
        let partial = a
            .par_chunks_exact(d_in)
            .zip(pv.par_iter())
            .with_min_len(128)
            .fold(
                || vec![0.0f64; d_in * LANES],
                |mut acc, (arow, pv)| {
                    let az = project(arow, lanes_of(&z));
                    let res: Lane = std::array::from_fn(|l| pv[l] - az[l]);
                    for (dst, &x) in acc.chunks_exact_mut(LANES).zip(arow) {
                        for l in 0..LANES {
                            dst[l] = x.mul_add(res[l], dst[l]);
                        }
                    }
                    acc
                },
            )
            .reduce(
                || vec![0.0f64; d_in * LANES],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        step.copy_from_slice(&partial);
        // Aᵀ times a residual: derived from the secret pads and vectors.
        drop(SecretVec::from(partial));
        cholesky_solve(&l, d_in, &mut step, LANES);
        let (mut step_sq, mut z_sq) = (0.0, 0.0);
        for (zv, &s) in z.iter_mut().zip(step.iter()) {
            *zv += s;
            step_sq += s * s;
            z_sq += *zv * *zv;
        }
        if !(step_sq.is_finite() && z_sq.is_finite()) {
            // ∞ ≤ ∞ would pass as converged. Honest products of real
            // weights are nowhere near f64's range.
            return Err(RemoError::rejected(
                id,
                talaria_protocol::CallKind::PadBatch,
                "the reference solve overflows: the batch's products are far beyond any weight's",
            ));
        }
        if step_sq <= CONVERGED * CONVERGED * z_sq {
            // z = diag(1/σ)·z', z' being the solution for the whitened rows.
            let mut out = SecretVec::<Lane>::zeros(d_in);
            for ((dst, src), &w) in out.iter_mut().zip(z.chunks_exact(LANES)).zip(&inv) {
                *dst = std::array::from_fn(|l| src[l] * w);
            }
            return Ok(out);
        }
    }
    Err(RemoError::Param(format!("{id}: the answer-check reference did not converge in {MAX_REFINEMENTS} refinements")))
}

/// A flat `d × LANES` buffer seen as lanes.
fn lanes_of(flat: &[f64]) -> &[Lane] {
    bytemuck::cast_slice(flat)
}
