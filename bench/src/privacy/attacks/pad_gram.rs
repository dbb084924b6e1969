//! (e1) Gram test on pad batches: after whitening each channel by its
//! public σ_c, independent Gaussian rows in d dimensions have squared
//! correlations of mean 1/d, so `mean_i Σ_{j≠i} ρ_ij² · d/(m−1)` is ≈ 1 for
//! a batch of unmixed pads and grows when rows are mixtures of pads. When
//! the batch looks like individual pads, they are taken as such and
//! subtracted from the online rows.

use anyhow::Result;

use super::omp::normalize_rows;
use super::pad_subtract::decode_with_pads;
use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::linalg::gemm_abt64;
use crate::privacy::mat::Rows64;

pub struct PadGram;

/// Row-correlation statistics of a batch (channels whitened by `sigma`).
#[derive(Clone, Copy, Debug)]
pub struct GramStats {
    /// Mean squared off-diagonal correlation over its null value 1/d.
    pub excess: f64,
    /// Mean number of partners per row with |ρ| > 5/√d (≈ 0 when the rows
    /// are independent; the mixing's density otherwise).
    pub partners: f64,
}

pub fn gram_stats(u: &Rows64, sigma: &[f64]) -> GramStats {
    let mut w = u.clone();
    for i in 0..w.rows {
        w.row_mut(i).iter_mut().zip(sigma).for_each(|(v, s)| *v /= s);
    }
    let (unit, _) = normalize_rows(&w);
    let g = gemm_abt64(&unit, &unit);
    let (m, d) = (u.rows as f64, u.cols as f64);
    let thr = 5.0 / d.sqrt();
    let (mut sq, mut partners) = (0.0, 0usize);
    for i in 0..u.rows {
        for (j, &r) in g.row(i).iter().enumerate() {
            if j != i {
                sq += r * r;
                partners += usize::from(r.abs() > thr);
            }
        }
    }
    GramStats { excess: sq / (m * (m - 1.0).max(1.0)) * d, partners: partners as f64 / m }
}

/// All pad batches of the dictionary op, stacked, and their mean stats.
pub fn batches(ev: &Evidence, id: talaria_models::OpId) -> Vec<Rows64> {
    ev.rec.pad_batches(id).map(|c| c.data.clone()).collect()
}

impl Attack for PadGram {
    fn name(&self) -> String {
        "pad-gram".into()
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::PadBatches, Assumption::PublicNoiseScales, Assumption::DictionaryRows, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some((id, dict)) = ev.dictionary_op(cands) else { return Ok(None) };
        let bs = batches(ev, id);
        if bs.is_empty() {
            return Ok(None);
        }
        let sigma = ev.noise(id, dict.cols).sigma;
        let stats: Vec<GramStats> = bs.iter().map(|u| gram_stats(u, &sigma)).collect();
        let mut pads = Rows64::empty(dict.cols);
        bs.iter().for_each(|u| pads.extend(u));
        let dec = decode_with_pads(ev, id, dict, &pads, &sigma);
        let excess = stats.iter().map(|s| s.excess).sum::<f64>() / stats.len() as f64;
        let partners = stats.iter().map(|s| s.partners).sum::<f64>() / stats.len() as f64;
        Ok(Some(AttackOutcome {
            guesses: dec.stacked.guesses_from_rows(ev, &dec.per_row),
            notes: format!(
                "Gram excess ×{excess:.2} (1 = independent rows), {partners:.1} partners/row; best pad |cos| {:.2}",
                dec.mean_best_cos()
            ),
        }))
    }
}
