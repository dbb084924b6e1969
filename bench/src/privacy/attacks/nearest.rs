//! (a) Nearest-neighbour inversion: each observed row of a dictionary op
//! is matched to the closest candidate row (cosine or L2, channels scaled
//! by the public `1/s_c`). Breaks schemes that send rows as they are or
//! merely reorder them, and ReMO when κ is small.

use anyhow::Result;

use super::{Assumption, Attack, AttackOutcome, Evidence};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::{argmax, row_norms2, scan_dots};

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

    fn run(&self, ev: &Evidence, cands: &mut dyn Candidates) -> Result<Option<AttackOutcome>> {
        let Some((id, raw)) = ev.dictionary_op(cands) else { return Ok(None) };
        let stacked = ev.stack(id);
        let w = ev.whitening(id, raw.cols);
        let dict = &raw.scale_cols(&w);
        let y = stacked.rows.to_f32().scale_cols(&w);
        let norms2 = row_norms2(dict);
        let inv_norm: Vec<f32> = norms2.iter().map(|n| 1.0 / n.sqrt().max(1e-20)).collect();
        let mut per_row = vec![(0u32, f64::NEG_INFINITY); y.rows];
        let mut score = vec![0f32; dict.rows];
        scan_dots(dict, &y, |i, dots| {
            let yn2: f32 = y.row(i).iter().map(|v| v * v).sum();
            match self.metric {
                Metric::Cosine => score.iter_mut().zip(dots).zip(&inv_norm).for_each(|((s, d), n)| *s = d * n),
                Metric::L2 => score.iter_mut().zip(dots).zip(&norms2).for_each(|((s, d), n)| *s = 2.0 * d - n),
            }
            let t = argmax(&score);
            let conf = match self.metric {
                Metric::Cosine => score[t] as f64 / (yn2 as f64).sqrt().max(1e-300),
                Metric::L2 => score[t] as f64 - yn2 as f64,
            };
            per_row[i] = (t as u32, conf);
        });
        Ok(Some(AttackOutcome { guesses: stacked.guesses_from_rows(ev, &per_row), notes: String::new() }))
    }
}
