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
use crate::privacy::dict_scan::{row_norms2, scan_dots, top_k};
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

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some((id, raw)) = ev.dictionary_op(cands) else { return Ok(None) };
        let mut stacked = ev.stack(id);
        let w = ev.whitening(id, raw.cols);
        let dict = &raw.scale_cols(&w);
        stacked.rows = stacked.rows.scale_cols(&w.iter().map(|&v| v as f64).collect::<Vec<_>>());
        let y = stacked.rows.to_f32();
        let inv_norm: Vec<f32> = row_norms2(dict).iter().map(|n| 1.0 / n.sqrt().max(1e-20)).collect();
        let mut screened: Vec<Vec<usize>> = Vec::with_capacity(y.rows);
        let mut abs_corr = vec![0f32; dict.rows];
        scan_dots(dict, &y, |_, dots| {
            abs_corr.iter_mut().zip(dots).zip(&inv_norm).for_each(|((a, d), n)| *a = (d * n).abs());
            screened.push(top_k(&abs_corr, self.screen));
        });
        let fits: Vec<(u32, f64, usize)> = screened
            .par_iter()
            .enumerate()
            .map(|(i, idx)| {
                // Exact f64 atoms and correlations: f32 rounding would stop
                // the pursuit from ever reaching a zero residual.
                let (atoms, _) = normalize_rows(&dict.select(idx).to_f64());
                let gram = gemm_abt64(&atoms, &atoms);
                let yr = stacked.rows.row(i);
                let corr: Vec<f64> = (0..atoms.rows).map(|a| dot64(atoms.row(a), yr)).collect();
                let n2 = dot64(yr, yr);
                let (k, _) = stacked.owner[i];
                let call_rows = ev.call(k, id).map_or(1, |c| c.data.rows);
                let fit = omp_gram(&gram, &corr, n2, self.max_atoms.min(call_rows).max(1), 1e-6);
                let heaviest = fit.support.iter().zip(&fit.coefs).max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).map(|(&s, _)| idx[s] as u32).unwrap_or(0);
                (heaviest, 1.0 - fit.residual2 / n2.max(1e-300), fit.support.len())
            })
            .collect();
        let per_row: Vec<(u32, f64)> = fits.iter().map(|&(t, c, _)| (t, c)).collect();
        let mean_support = fits.iter().map(|f| f.2 as f64).sum::<f64>() / fits.len().max(1) as f64;
        Ok(Some(AttackOutcome { guesses: stacked.guesses_from_rows(ev, &per_row), notes: format!("mean support {mean_support:.1} atoms") }))
    }
}
