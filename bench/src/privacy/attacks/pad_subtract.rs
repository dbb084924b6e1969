//! What separating pads would buy: an online row is `x + r` with `r` one
//! of the batch's pads, so an estimate of that pad (up to scale) can be
//! fitted and subtracted, leaving `x` (minus its component along the pad)
//! to match against the dictionary. Every pad-batch attack ends here.

use talaria_models::OpId;

use super::{Evidence, StackedRows};
use crate::privacy::attacks::omp::normalize_rows;
use crate::privacy::dict_scan::{argmax, row_norms2, scan_dots};
use crate::privacy::linalg::gemm_abt64;
use crate::privacy::mat::{Rows32, Rows64};

pub struct PadDecode {
    pub stacked: StackedRows,
    pub per_row: Vec<(u32, f64)>,
    /// Per stacked row, the best |cos| with a pad estimate (whitened);
    /// near 1 means the row's pad was found.
    pub best_cos: Vec<f64>,
}

impl PadDecode {
    pub fn mean_best_cos(&self) -> f64 {
        self.best_cos.iter().sum::<f64>() / self.best_cos.len().max(1) as f64
    }
}

/// `pads`: estimates of individual pads in channel units (any scale/sign).
pub fn decode_with_pads(ev: &Evidence, id: OpId, dict: &Rows32, pads: &Rows64, sigma: &[f64]) -> PadDecode {
    let stacked = ev.stack(id);
    let whiten = |m: &Rows64| {
        let mut w = m.clone();
        for i in 0..w.rows {
            w.row_mut(i).iter_mut().zip(sigma).for_each(|(v, s)| *v /= s);
        }
        w
    };
    let yw = whiten(&stacked.rows);
    let (pw, _) = normalize_rows(&whiten(pads));
    let corr = gemm_abt64(&yw, &pw);
    let mut cleaned = Rows32::zeros(yw.rows, yw.cols);
    let mut best_cos = vec![0.0; yw.rows];
    for (i, best) in best_cos.iter_mut().enumerate() {
        let yn = yw.row(i).iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300);
        let row = corr.row(i);
        let j = (0..row.len()).max_by(|&a, &b| row[a].abs().total_cmp(&row[b].abs()));
        let out = cleaned.row_mut(i);
        match j {
            Some(j) => {
                *best = row[j].abs() / yn;
                out.iter_mut().zip(yw.row(i)).zip(pw.row(j)).for_each(|((o, &y), &p)| *o = (y - row[j] * p) as f32);
            }
            None => out.iter_mut().zip(yw.row(i)).for_each(|(o, &v)| *o = v as f32),
        }
    }
    // Matched in the σ-whitened metric (see `dict_view`).
    let dict = &dict.scale_cols(&sigma.iter().map(|s| (1.0 / s) as f32).collect::<Vec<_>>());
    let inv_norm: Vec<f32> = row_norms2(dict).iter().map(|n| 1.0 / n.sqrt().max(1e-20)).collect();
    let mut per_row = vec![(0u32, 0f64); yw.rows];
    let mut score = vec![0f32; dict.rows];
    scan_dots(dict, &cleaned, |i, dots| {
        score.iter_mut().zip(dots).zip(&inv_norm).for_each(|((s, d), n)| *s = d * n);
        let t = argmax(&score);
        let n = cleaned.row(i).iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-30);
        per_row[i] = (t as u32, (score[t] / n) as f64);
    });
    PadDecode { best_cos, stacked, per_row }
}
