//! (d2) Sparse recovery over the frame of the call's own rows: each
//! candidate is fitted by OMP with at most `max_atoms` of the call's
//! (normalised) rows. A mixing whose inverse is sparse (a permutation, a
//! scaled permutation, a few-term mixing) leaves every real token exactly
//! sparse in that frame; with `max_atoms ≥ rank` this is the span test.

use anyhow::Result;
use rayon::prelude::*;

use super::omp::{normalize_rows, omp_gram};
use super::set_decoder::decode_set;
use super::{Assumption, Attack, AttackOutcome, Evidence, Guess};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::{row_norms2, scan_groups};
use crate::privacy::linalg::{gemm_abt64, row_space_basis};
use crate::privacy::mat::Rows64;

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
        let Some((id, dict)) = ev.dictionary_op(cands) else { return Ok(None) };
        let steps: Vec<usize> = (0..ev.steps.len()).filter(|&k| ev.call(k, id).is_some()).collect();
        let frames: Vec<(Rows64, Rows64)> = steps
            .iter()
            .map(|&k| {
                let (unit, _) = normalize_rows(&ev.call(k, id).expect("filtered").data);
                let gram = gemm_abt64(&unit, &unit);
                (unit, gram)
            })
            .collect();
        let groups: Vec<_> = frames.iter().map(|(u, _)| u.to_f32()).collect();
        let norms2 = row_norms2(dict);
        let mut guesses = vec![Vec::new(); ev.steps.len()];
        let mut exact = 0usize;
        scan_groups(dict, &groups, |g, dots| {
            let k = steps[g];
            let y = &ev.call(k, id).expect("filtered").data;
            let gram = &frames[g].1;
            let atoms = self.max_atoms.min(y.rows).max(1);
            let resid: Vec<f32> = (0..dict.rows)
                .into_par_iter()
                .map(|t| {
                    let corr: Vec<f64> = (0..dots.rows).map(|j| dots.row(j)[t] as f64).collect();
                    let n2 = norms2[t] as f64;
                    let fit = omp_gram(gram, &corr, n2, atoms, 1e-6);
                    (fit.residual2 / n2.max(1e-300)) as f32
                })
                .collect();
            let rank = row_space_basis(y, 1e-6).rows;
            exact += resid.iter().filter(|&&r| r < super::set_decoder::MEMBER_TOL).count().min(ev.real_rows(k));
            guesses[k] = decode_set(&resid, rank, y, dict, ev.real_rows(k)).into_iter().map(Guess::unattributed).collect();
        });
        Ok(Some(AttackOutcome { guesses, notes: format!("{exact} rows exactly sparse in their call's frame") }))
    }
}
