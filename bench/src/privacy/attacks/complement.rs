//! Complement projection against noise confined to a secret low-rank
//! subspace that stays the same across calls: the noise dominates the
//! top principal directions of everything the worker saw, so projecting
//! rows and candidates onto the orthogonal complement of those directions
//! leaves clean rows to match. Refined by alternating: decode, take the
//! residuals `y − x_guess` (which lie in the noise subspace for every
//! correct guess), re-estimate the subspace, decode again.

use anyhow::Result;

use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::{row_norms2, scan_dots, top2};
use crate::privacy::linalg::{gemm_abt32, gemm_abt64, top_row_directions};
use crate::privacy::mat::Rows64;

pub struct ComplementProjection {
    pub iterations: usize,
}

/// Smallest ratio λ_rank/λ_rank+1 of the rows' second moments for which a
/// recording is taken to carry low-rank noise (otherwise: not applicable).
const MIN_GAP: f64 = 100.0;

/// `v − (v·bᵀ)·b` for every row `v` (b has orthonormal rows).
fn project_out64(v: &Rows64, b: &Rows64) -> Rows64 {
    let c = gemm_abt64(v, b);
    let mut out = v.clone();
    for i in 0..v.rows {
        for (j, &cij) in c.row(i).iter().enumerate() {
            out.row_mut(i).iter_mut().zip(b.row(j)).for_each(|(o, &bj)| *o -= cij * bj);
        }
    }
    out
}

impl Attack for ComplementProjection {
    fn name(&self) -> String {
        "complement".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::DictionaryRows, Assumption::PersistentSubspace, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        // Raw coordinates: there the scheme's noise is isotropic inside its
        // subspace, far above the signal in every direction of it.
        let (Some(v), Some((_, dict))) = (&ev.view, ev.dictionary_op(cands)) else { return Ok(None) };
        let y = &v.stacked.rows;
        let norms2 = row_norms2(dict);
        let rank = ev.rec.manifest.usize_param("rank").unwrap_or(y.cols / 4);
        if y.rows <= rank {
            return Ok(None);
        }
        // First pass: the noise subspace from the raw rows; later passes:
        // from the residuals of the most confidently decoded rows (exactly
        // in the subspace when right, so a clean subset pins it down).
        let mut fit_rows = y.clone();
        let mut per_row = vec![(0u32, 0f64); y.rows];
        let mut margin = vec![0f64; y.rows];
        let mut outside = 0.0;
        let keep = (rank * 3 / 2).max(y.rows / 2).min(y.rows);
        let mut gap = f64::NAN;
        for it in 0..self.iterations.max(1) {
            let (basis, vals) = top_row_directions(&fit_rows, rank)?;
            if it == 0 {
                // The attack applies to noise confined to `rank` dimensions
                // and far above the signal: an eigenvalue gap right there.
                gap = vals[rank - 1] / vals[rank].max(1e-300);
                if gap < MIN_GAP {
                    return Ok(None);
                }
            }
            // With P⊥ = I − BᵀB: ⟨P⊥y, P⊥x⟩ = ⟨P⊥y, x⟩ and ‖P⊥x‖² = ‖x‖² −
            // ‖Bx‖², so the dictionary need not be projected. The rows are
            // projected in f64 first: the noise can be 10⁴ times the signal.
            let bx = gemm_abt32(dict, &basis.to_f32());
            let n2: Vec<f32> = norms2.iter().zip(row_norms2(&bx)).map(|(a, b)| a - b).collect();
            let yp = project_out64(y, &basis);
            let yp32 = yp.to_f32();
            let mut score = vec![0f32; dict.rows];
            scan_dots(dict, &yp32, |i, dots| {
                score.iter_mut().zip(dots).zip(&n2).for_each(|((s, d), n)| *s = 2.0 * d - n);
                let (best, second) = top2(&score);
                let yn2: f64 = yp.row(i).iter().map(|x| x * x).sum();
                per_row[i] = (best as u32, score[best] as f64 - yn2);
                margin[i] = second.map_or(f64::INFINITY, |s| (score[best] - score[s]) as f64);
            });
            let mut order: Vec<usize> = (0..y.rows).collect();
            order.sort_by(|&a, &b| margin[b].total_cmp(&margin[a]));
            let mut resid = Rows64::zeros(keep, y.cols);
            for (o, &i) in order.iter().take(keep).enumerate() {
                let t = per_row[i].0 as usize;
                resid.row_mut(o).iter_mut().zip(y.row(i)).zip(dict.row(t)).for_each(|((r, &yv), &x)| *r = yv - x as f64);
            }
            let total: f64 = resid.data.iter().map(|v| v * v).sum();
            let out = project_out64(&resid, &basis);
            outside = out.data.iter().map(|v| v * v).sum::<f64>() / total.max(1e-300);
            fit_rows = resid;
        }
        Ok(Some(AttackOutcome {
            guesses: v.stacked.guesses_from_rows(ev, &per_row),
            notes: format!("rank {rank}, eigenvalue gap {gap:.1e}; confident residuals outside the subspace {outside:.1e}"),
        }))
    }
}
