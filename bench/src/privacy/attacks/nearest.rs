//! (a) Nearest-neighbour inversion: each observed row of a dictionary op
//! is matched to the closest candidate row (cosine or L2, in the metric
//! that makes the public pad law isotropic). Breaks schemes that send rows
//! as they are or merely reorder them, and ReMO when κ is small.

use anyhow::Result;
use rayon::prelude::*;

use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::argmax;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Cosine,
    L2,
}

pub struct NearestNeighbour {
    pub metric: Metric,
}

impl Attack for NearestNeighbour {
    fn name(&self) -> String {
        match self.metric {
            Metric::Cosine => "nn-cos".into(),
            Metric::L2 => "nn-l2".into(),
        }
    }

    fn assumptions(&self) -> Vec<Assumption> {
        vec![Assumption::DictionaryRows, Assumption::RowCounts]
    }

    fn run(&self, ev: &Evidence, _cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some(v) = &ev.view else { return Ok(None) };
        let inv_norm: Vec<f32> = v.norms2.iter().map(|n| 1.0 / n.sqrt().max(1e-30)).collect();
        let per_row: Vec<(u32, f64)> = (0..v.dots.rows)
            .into_par_iter()
            .map(|i| {
                let dots = v.dots.row(i);
                let yn2: f64 = v.rows.row(i).iter().map(|x| x * x).sum();
                let score: Vec<f32> = match self.metric {
                    Metric::Cosine => dots.iter().zip(&inv_norm).map(|(d, n)| d * n).collect(),
                    Metric::L2 => dots.iter().zip(&v.norms2).map(|(d, n)| 2.0 * d - n).collect(),
                };
                let t = argmax(&score);
                let conf = match self.metric {
                    Metric::Cosine => score[t] as f64 / yn2.sqrt().max(1e-300),
                    Metric::L2 => score[t] as f64 - yn2,
                };
                (t as u32, conf)
            })
            .collect();
        Ok(Some(AttackOutcome { guesses: v.stacked.guesses_from_rows(ev, &per_row), notes: String::new() }))
    }
}
