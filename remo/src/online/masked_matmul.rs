//! The online call of ReMO: mask the real rows of one step with fresh pads,
//! let the worker multiply, unmask.

use talaria_models::OpId;

use crate::error::RemoError;
use crate::online::worker::{call_in_place, check_private_finite, CallKind, WorkerCall, WorkerMatmul};
use crate::pads::pad::Pad;
use crate::pads::secure_rng::SecureRng;
use std::time::Instant;
use talaria_kernels::Float;

use crate::verify::lanes::{minus_scaled, project_rows, Lane, LANES};
use crate::verify::op_check::max_ratio;
use crate::verify::{OpCheck, Tolerance};

/// Reused across online calls (the rows themselves go straight into the
/// transport's frame).
#[derive(Default)]
pub struct OnlineScratch {
    perm: Vec<usize>,
    /// A block of a few unmasked answer rows, `(X̃·W − R·W)` in f64 (wiped
    /// after each call), checked together.
    rows: Vec<f64>,
    /// Per real row, its projection `x·z` (secret: wiped after each call).
    xz: Vec<Lane>,
    /// Per row sent, in the order sent: the norm of the row sent.
    sent_norms: Vec<f64>,
    /// The call's decoy rows, one per dummy row (`PadPool::decoys`; secret
    /// until sent masked, wiped after each call).
    pub(crate) decoys: Vec<f64>,
}

/// Answer rows unmasked and checked together (one pass over the check
/// vectors `v` for all of them).
const CHECK_GROUP: usize = 4;

/// The value sent for element `x` of a real row with private factor
/// `1/inv`, padded with `r`: formed in f64, rounded once to the wire type.
#[inline]
fn masked_value<X: Float, P: Float>(x: X, inv: f64, r: P) -> P {
    P::from_f64(x.to_f64() * inv + r.to_f64())
}

/// What one row sent carries before its pad: a real row with its inverse
/// private factor `1/α` (a power of two: the division is exact), or a
/// dummy row's decoy (factor 1).
enum Source<'a, X> {
    Real(&'a [X], f64),
    Decoy(&'a [f64]),
}

impl<X> Source<'_, X> {
    fn inverse_factor(&self) -> f64 {
        match self {
            Source::Real(_, inv) => *inv,
            Source::Decoy(_) => 1.0,
        }
    }
}

/// Independent partial sums of the sent row's squares: one running sum
/// made the whole pass scalar (each add waits for the last).
const NORM_LANES: usize = 8;

/// `dst = row/α + r`, formed in f64 and rounded once to the wire type;
/// returns `‖dst‖`, the norm of the row as sent (the check's threshold
/// scales with it), from the same values.
fn write_masked<S: Float, P: Float>(dst: &mut [P], row: &[S], inv: f64, r: &[P]) -> f64 {
    let mut sq = [0.0f64; NORM_LANES];
    let whole = dst.len() / NORM_LANES * NORM_LANES;
    let (dst_body, dst_tail) = dst.split_at_mut(whole);
    for ((m, x), r) in dst_body.chunks_exact_mut(NORM_LANES).zip(row.chunks_exact(NORM_LANES)).zip(r.chunks_exact(NORM_LANES)) {
        for l in 0..NORM_LANES {
            let v = masked_value(x[l], inv, r[l]);
            m[l] = v;
            sq[l] += v.to_f64() * v.to_f64();
        }
    }
    for (l, (m, (&x, &r))) in dst_tail.iter_mut().zip(row[whole..].iter().zip(&r[whole..])).enumerate() {
        let v = masked_value(x, inv, r);
        *m = v;
        sq[l] += v.to_f64() * v.to_f64();
    }
    sq.iter().sum::<f64>().sqrt()
}

/// Answer columns unmasked per block: a block of a check group's rows
/// (4 × 256 f64, 8 KiB) stays in L1 between its unmasking, its
/// projections and its copy out.
const BLOCK: usize = 256;

/// `acc[k] += Σ_c u[k][c]·v[c]` for the `rows` rows of `u` (each `BLOCK`
/// long, `v.len()` used), lane by lane.
fn project_block(u: &[f64], rows: usize, v: &[Lane], acc: &mut [Lane; CHECK_GROUP]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { project_block_avx512(u, rows, v, acc) };
    }
    project_block_generic(u, rows, v, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn project_block_avx512(u: &[f64], rows: usize, v: &[Lane], acc: &mut [Lane; CHECK_GROUP]) {
    project_block_generic(u, rows, v, acc)
}

#[inline(always)]
fn project_block_generic(u: &[f64], rows: usize, v: &[Lane], acc: &mut [Lane; CHECK_GROUP]) {
    if rows == CHECK_GROUP {
        // Four rows per pass over `v` (one load of `v[c]` for four FMAs).
        for (c, b) in v.iter().enumerate() {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = u[k * BLOCK + c];
                for l in 0..LANES {
                    acc[l] = x.mul_add(b[l], acc[l]);
                }
            }
        }
    } else {
        for (k, acc) in acc.iter_mut().enumerate().take(rows) {
            for (c, b) in v.iter().enumerate() {
                let x = u[k * BLOCK + c];
                for l in 0..LANES {
                    acc[l] = x.mul_add(b[l], acc[l]);
                }
            }
        }
    }
}

/// `out (rows × d_out) = X·W` for the real rows `x` (`rows × d_in`),
/// consuming one pad per row sent: the call carries `pads.len() ≥ rows`
/// rows, the real ones and dummy rows up to the bucket (`scratch.decoys`,
/// fresh small Gaussian rows), each masked with its own pad. Sends `X̃ = Π·(A⁻¹·X + R)` with a fresh uniformly
/// random row permutation `Π` and the rows' private power-of-two factors
/// `A = diag(factors)` (see `PadPool::rescale`), receives `X̃·W`, returns
/// `A·(Π⁻¹·(X̃·W) − R·W)` for the real rows. The pads are zeroized when
/// this returns.
/// The sums and differences are always formed in f64, then rounded once
/// to the pad type (on the wire) or the output type.
/// Every row of the answer, dummy rows included, is checked by `check`
/// (docs/DESIGN.md §3, "Verification") on a private copy before any of it
/// is used.
#[allow(clippy::too_many_arguments)]
pub fn masked_matmul<X: Float, O: Float, P: Float>(
    worker: &mut dyn WorkerMatmul,
    id: OpId,
    x: &[X],
    rows: usize,
    pads: Vec<Pad<P>>,
    factors: &[f64],
    check: &mut OpCheck,
    rng: &mut SecureRng,
    scratch: &mut OnlineScratch,
    out: &mut [O],
) -> anyhow::Result<()> {
    let Some(first) = pads.first() else {
        return if rows == 0 { Ok(()) } else { Err(RemoError::PoolShort { id, available: 0, wanted: rows }.into()) };
    };
    let (d_in, d_out) = (first.d_in(), first.d_out());
    if pads.len() < rows {
        return Err(RemoError::PoolShort { id, available: pads.len(), wanted: rows }.into());
    }
    let sent = pads.len();
    if x.len() != rows * d_in {
        return Err(RemoError::Shape { id, what: "input rows", got: x.len(), expected: rows * d_in }.into());
    }
    if out.len() != rows * d_out {
        return Err(RemoError::Shape { id, what: "output", got: out.len(), expected: rows * d_out }.into());
    }
    if factors.len() != rows {
        return Err(RemoError::Shape { id, what: "row factors", got: factors.len(), expected: rows }.into());
    }
    if scratch.decoys.len() != (sent - rows) * d_in {
        return Err(RemoError::Shape { id, what: "decoy rows", got: scratch.decoys.len(), expected: (sent - rows) * d_in }.into());
    }

    // Pads were made seconds ago and are cold: start every row's misses at
    // once (the `R·W` rows then arrive while the worker computes).
    for pad in &pads {
        talaria_kernels::cpu::prefetch(pad.r());
        talaria_kernels::cpu::prefetch(pad.rw());
    }
    // Row j of X̃ is row perm[j] of X + R; it is written straight into the
    // outgoing frame, and the answer unmasked straight from the incoming one.
    rng.permutation(sent, &mut scratch.perm);
    let OnlineScratch { perm, rows: group, xz, sent_norms, decoys } = scratch;
    // Row `i` of the call before permuting: real row `i`, or decoy `i − rows`.
    let source = |i: usize| -> Source<'_, X> {
        if i < rows {
            Source::Real(&x[i * d_in..(i + 1) * d_in], 1.0 / factors[i])
        } else {
            Source::Decoy(&decoys[(i - rows) * d_in..(i - rows + 1) * d_in])
        }
    };
    group.clear();
    group.resize(CHECK_GROUP * BLOCK, 0.0);
    // The norm of each row as sent, written with it (the threshold scales with it).
    sent_norms.clear();
    sent_norms.resize(sent, 0.0);
    // The check's own CVM time (not the call around it).
    let tolerance = Tolerance::of(P::PRECISION);
    let (v, z) = (check.v(), check.z()?);
    // Written by the fill, read by the answer check (both closures hold it).
    let sent_norms = std::cell::Cell::from_mut(&mut sent_norms[..]).as_slice_of_cells();
    let checking = Instant::now();
    // `x·z` for every real row and decoy at once (the answer's `u·v` must
    // equal it).
    xz.clear();
    xz.resize(sent, [0.0; LANES]);
    project_rows(x, z, &mut xz[..rows]);
    project_rows(&decoys[..], z, &mut xz[rows..]);
    let mut check_time = checking.elapsed();
    let check_ref: &OpCheck = check;
    let mut worst = (0, 0.0);
    // Whether every output value is finite, seen as it is written.
    let mut out_finite = true;
    let called = call_in_place::<P>(
        worker,
        WorkerCall { id, kind: CallKind::Online, precision: P::PRECISION, rows: sent, d_in, d_out },
        &mut |masked| {
            for ((dst, &i), norm) in masked.chunks_exact_mut(d_in).zip(perm.iter()).zip(sent_norms) {
                norm.set(match source(i) {
                    Source::Real(row, inv) => write_masked(dst, row, inv, pads[i].r()),
                    Source::Decoy(row) => write_masked(dst, row, 1.0, pads[i].r()),
                });
            }
        },
        &mut |y| {
            (worst, out_finite) = ((0, 0.0), true);
            for (g, (ys, order)) in y.chunks(CHECK_GROUP * d_out).zip(perm.chunks(CHECK_GROUP)).enumerate() {
                let mut uv = [[0.0; LANES]; CHECK_GROUP];
                for c0 in (0..d_out).step_by(BLOCK) {
                    let c1 = (c0 + BLOCK).min(d_out);
                    // `u = x̃·W − r·W`, the product of `x/α` (zero for a
                    // dummy row), read once from the answer into private
                    // memory: it is checked and used from there, so a worker
                    // rewriting shared memory meanwhile changes nothing.
                    for (k, (u, &i)) in group.chunks_exact_mut(BLOCK).zip(order).enumerate() {
                        let (u, yk, rw) = (&mut u[..c1 - c0], &ys[k * d_out + c0..k * d_out + c1], &pads[i].rw()[c0..c1]);
                        u.iter_mut().zip(yk).zip(rw).for_each(|((u, &yv), &rw)| *u = yv.to_f64() - rw.to_f64());
                        if i < rows {
                            let alpha = factors[i];
                            let mut finite = true;
                            out[i * d_out + c0..i * d_out + c1].iter_mut().zip(&*u).for_each(|(o, &u)| {
                                *o = O::from_f64(alpha * u);
                                finite &= o.to_f64().is_finite();
                            });
                            out_finite &= finite;
                        }
                    }
                    let checking = Instant::now();
                    project_block(group, order.len(), &v[c0..c1], &mut uv);
                    check_time += checking.elapsed();
                }
                let checking = Instant::now();
                for (k, (&i, uv)) in order.iter().zip(&uv).enumerate() {
                    let s = g * CHECK_GROUP + k;
                    let residual = minus_scaled(*uv, source(i).inverse_factor(), xz[i]);
                    worst = max_ratio(worst, (s, check_ref.ratio(&residual, sent_norms[s].get(), tolerance)));
                }
                check_time += checking.elapsed();
            }
        },
    );
    crate::pads::wipe::wipe(group);
    crate::pads::wipe::wipe(xz);
    // Π says which sent row is which real one, and the decoys which are not.
    crate::pads::wipe::wipe(perm);
    crate::pads::wipe::wipe(decoys);
    called.map_err(|e| e.context(format!("{id}: online call")))?;
    check.finish(CallKind::Online, tolerance, sent, worst, check_time)?;
    // The output is checked in private memory (see `WorkerMatmul::call`)
    // as it is written; a rescan finds the value for the message.
    if !out_finite {
        check_private_finite(id, CallKind::Online, "the unmasked output", out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pads::pool::{PadPool, RefillScratch};
    use crate::recording_worker::RecordingWorker;
    use crate::setup::OpSpec;
    use crate::RemoParams;
    use talaria_models::Op;

    /// A call of one real row fills its bucket of 8 with decoys: no row
    /// sent is a pad alone (in f64 a pad's values lie on the ziggurat's
    /// lattice, which told dummy rows from real ones), every row's answer
    /// is checked, and the real row's product is exact.
    #[test]
    fn dummy_rows_are_decoys_not_their_pads() {
        let (id, d_in, d_out) = (OpId::new(0, Op::Down), 40, 24);
        let params = RemoParams::default();
        let mut rng = SecureRng::from_os().unwrap();
        let spec = OpSpec { d_in, d_out, channel_scales: vec![1.0; d_in] };
        let mut pool = PadPool::<f64>::new(id, &spec, &params, OpCheck::new(id, d_in, d_out, &mut rng));
        let mut worker = RecordingWorker::random(&[(id, d_in, d_out)], 5);
        pool.refill(&mut worker, &mut rng, &params, &mut RefillScratch::default()).unwrap();
        let pads = pool.take(8).unwrap();
        let pad_rows: Vec<Vec<u64>> = pads.iter().map(|p| p.r().iter().map(|v| v.to_bits()).collect()).collect();
        let mut scratch = OnlineScratch::default();
        pool.decoys(7, &mut rng, &mut scratch.decoys);
        let x: Vec<f64> = (0..d_in).map(|c| (c as f64 * 0.37).sin()).collect();
        let mut out = vec![0.0f64; d_out];
        masked_matmul(&mut worker, id, &x, 1, pads, &[1.0], pool.check_mut(), &mut rng, &mut scratch, &mut out).unwrap();
        let call = worker.calls().iter().rev().find(|c| c.kind == CallKind::Online).unwrap();
        assert_eq!(call.rows, 8);
        for i in 0..8 {
            let sent: Vec<u64> = call.row(i).iter().map(|v| v.to_bits()).collect();
            assert!(!pad_rows.contains(&sent), "row {i} went out as its pad alone");
        }
        let want = worker.exact(id, &x, 1).unwrap();
        let err = want.iter().zip(&out).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-9, "product off by {err:e}");
        assert!(scratch.decoys.iter().all(|&v| v == 0.0), "decoys wiped");
        // A call whose decoys do not match its dummy rows is refused.
        let pads = pool.take(8).unwrap();
        pool.decoys(6, &mut rng, &mut scratch.decoys);
        assert!(masked_matmul(&mut worker, id, &x, 1, pads, &[1.0], pool.check_mut(), &mut rng, &mut scratch, &mut out).is_err());
    }
}
