//! (b) Span membership per call: if the CVM recovers `X·W` by linear
//! post-processing of the call's results, every real row lies in the span
//! of the rows the worker saw. Each candidate is projected onto an
//! orthonormal basis of that span (column-pivoted QR); the candidates with
//! (near) zero residual are the call's tokens. Breaks permutation and any
//! invertible row mixing with fewer rows than `d_in`.

use anyhow::Result;

use super::set_decoder::decode_set;
use super::{Assumption, Attack, AttackOutcome, Evidence, Guess};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::{row_norms2, scan_groups};
use crate::privacy::linalg::row_space_basis;
use crate::privacy::mat::{Rows32, Rows64};

/// Pivots below this fraction of the largest count as rank deficiency.
const RANK_TOL: f64 = 1e-6;

pub struct SpanMembership;

impl Attack for SpanMembership {
    fn name(&self) -> String {
        "span".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::DictionaryRows, Assumption::MixingLaw, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some((id, dict)) = ev.dictionary_op(cands) else { return Ok(None) };
        let steps: Vec<usize> = (0..ev.steps.len()).filter(|&k| ev.call(k, id).is_some()).collect();
        let bases: Vec<Rows64> = steps.iter().map(|&k| row_space_basis(&ev.call(k, id).expect("filtered").data, RANK_TOL)).collect();
        let resid = relative_residuals(dict, &bases);
        let mut guesses = vec![Vec::new(); ev.steps.len()];
        let mut ranks = Vec::new();
        for ((&k, basis), res) in steps.iter().zip(&bases).zip(&resid) {
            let y = &ev.call(k, id).expect("filtered").data;
            guesses[k] = decode_set(res, basis.rows, y, dict, ev.real_rows(k)).into_iter().map(Guess::unattributed).collect();
            ranks.push(format!("{}/{}", basis.rows, y.rows));
        }
        let deficient = steps.iter().zip(&bases).filter(|(&k, b)| b.rows < ev.call(k, id).map_or(0, |c| c.data.rows)).count();
        Ok(Some(AttackOutcome { guesses, notes: format!("{deficient}/{} calls rank-deficient", steps.len()) }))
    }
}

/// For each basis (orthonormal rows), `1 − ‖Qx_t‖²/‖x_t‖²` for every
/// candidate t, computed with blocked GEMMs over all bases at once.
pub fn relative_residuals(dict: &Rows32, bases: &[Rows64]) -> Vec<Vec<f32>> {
    let groups: Vec<Rows32> = bases.iter().map(Rows64::to_f32).collect();
    let norms2 = row_norms2(dict);
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); bases.len()];
    scan_groups(dict, &groups, |g, dots| {
        let mut acc = vec![0f32; dict.rows];
        for j in 0..dots.rows {
            acc.iter_mut().zip(dots.row(j)).for_each(|(a, d)| *a += d * d);
        }
        acc.iter_mut().zip(&norms2).for_each(|(a, n)| *a = (1.0 - *a / n.max(1e-30)).max(0.0));
        out[g] = acc;
    });
    out
}
