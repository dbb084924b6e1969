//! (d2) Sparse recovery over the frame of the call's own rows: each
//! candidate is fitted by OMP with at most `max_atoms` of the call's
//! (normalised) rows. A mixing whose inverse is sparse (a permutation, a
//! scaled permutation, a few-term mixing) leaves every real token exactly
//! sparse in that frame; with `max_atoms ≥ rank` this is the span test.

use anyhow::Result;
use rayon::prelude::*;

use super::omp::{normalize_rows, omp_gram_with, OmpScratch};
use super::set_decoder::decode_set;
use super::{Assumption, Attack, AttackOutcome, Evidence, Guess};
use crate::privacy::candidates::Candidates;
use crate::privacy::linalg::{gemm_abt64, row_space_basis};

pub struct OmpFrame {
    pub max_atoms: usize,
}

impl Attack for OmpFrame {
    fn name(&self) -> String {
        "omp-frame".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::DictionaryRows, Assumption::MixingLaw, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let (Some(v), Some((_, raw))) = (&ev.view, ev.dictionary_op(cands)) else { return Ok(None) };
        let mut guesses = vec![Vec::new(); ev.steps.len()];
        let mut exact = 0usize;
        for (k, guess) in guesses.iter_mut().enumerate() {
            let (Some(rows), Some(dots), Some(call)) = (v.step_rows(k), v.step_dots(k), ev.call(k, v.id)) else { continue };
            let (unit, norms) = normalize_rows(&rows);
            let gram = gemm_abt64(&unit, &unit);
            let atoms = self.max_atoms.min(rows.rows).max(1);
            let inv: Vec<f64> = norms.iter().map(|n| 1.0 / n.max(1e-300)).collect();
            let resid: Vec<f32> = if dots.rows == 1 {
                // One row: the residual is 1 − cos².
                dots.row(0)
                    .iter()
                    .zip(&v.norms2)
                    .map(|(&c, &n)| (1.0 - (c as f64 * inv[0]).powi(2) / (n as f64).max(1e-300)).max(0.0) as f32)
                    .collect()
            } else {
                (0..v.dict.rows)
                    .into_par_iter()
                    .map_init(
                        || (OmpScratch::default(), Vec::with_capacity(dots.rows)),
                        |(sc, corr), t| {
                            corr.clear();
                            corr.extend((0..dots.rows).map(|j| dots.row(j)[t] as f64 * inv[j]));
                            let n2 = v.norms2[t] as f64;
                            (omp_gram_with(sc, &gram, corr, n2, atoms, 1e-6) / n2.max(1e-300)) as f32
                        },
                    )
                    .collect()
            };
            let rank = row_space_basis(&call.data, 1e-6).rows;
            exact += resid.iter().filter(|&&r| r < super::set_decoder::MEMBER_TOL).count().min(ev.real_rows(k));
            *guess = decode_set(&resid, rank, &call.data, raw, ev.real_rows(k)).into_iter().map(Guess::unattributed).collect();
        }
        Ok(Some(AttackOutcome { guesses, notes: format!("{exact} rows exactly sparse in their call's frame") }))
    }
}
