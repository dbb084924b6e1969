//! (d1) Sparse recovery of each observed row over the candidate
//! dictionary: OMP on the atoms most correlated with the row (screening
//! keeps it affordable at V = 49152). A row that is a combination of a
//! few tokens' rows (sparse mixing) gives them away; the guess for a row
//! is its heaviest atom.

use anyhow::Result;
use rayon::prelude::*;

use super::omp::{normalize_rows, omp_gram};
use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::top_k;
use crate::privacy::linalg::gemm_abt64;
use crate::privacy::mat::dot64;

pub struct OmpDictionary {
    /// Atoms kept by screening per row.
    pub screen: usize,
    /// Most atoms per row.
    pub max_atoms: usize,
}

impl Attack for OmpDictionary {
    fn name(&self) -> String {
        "omp-dict".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::DictionaryRows, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, _cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some(v) = &ev.view else { return Ok(None) };
        let inv_norm: Vec<f32> = v.norms2.iter().map(|n| 1.0 / n.sqrt().max(1e-30)).collect();
        let fits: Vec<(u32, f64, usize)> = (0..v.dots.rows)
            .into_par_iter()
            .map(|i| {
                let abs_corr: Vec<f32> = v.dots.row(i).iter().zip(&inv_norm).map(|(d, n)| (d * n).abs()).collect();
                let idx = top_k(&abs_corr, self.screen);
                // Exact f64 atoms and correlations: f32 rounding would stop
                // the pursuit from ever reaching a zero residual.
                let (atoms, _) = normalize_rows(&v.dict.select(&idx).to_f64());
                let gram = gemm_abt64(&atoms, &atoms);
                let yr = v.rows.row(i);
                let corr: Vec<f64> = (0..atoms.rows).map(|a| dot64(atoms.row(a), yr)).collect();
                let n2 = dot64(yr, yr);
                let (k, _) = v.stacked.owner[i];
                let call_rows = v.ranges[k].as_ref().map_or(1, |r| r.len());
                let fit = omp_gram(&gram, &corr, n2, self.max_atoms.min(call_rows).max(1), 1e-6);
                let heaviest = fit
                    .support
                    .iter()
                    .zip(&fit.coefs)
                    .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                    .map(|(&s, _)| idx[s] as u32)
                    .unwrap_or(0);
                (heaviest, 1.0 - fit.residual2 / n2.max(1e-300), fit.support.len())
            })
            .collect();
        let per_row: Vec<(u32, f64)> = fits.iter().map(|&(t, c, _)| (t, c)).collect();
        let mean_support = fits.iter().map(|f| f.2 as f64).sum::<f64>() / fits.len().max(1) as f64;
        Ok(Some(AttackOutcome {
            guesses: v.stacked.guesses_from_rows(ev, &per_row),
            notes: format!("mean support {mean_support:.1} atoms"),
        }))
    }
}
