//! The dictionary op as most attacks see it: every recorded row and every
//! candidate in the metric that makes the public pad law isotropic
//! (channel c scaled by `1/σ_c`), and all their dot products, computed
//! once per recording and shared (it is the costly GEMM: rows × V × d).

use std::ops::Range;

use talaria_models::OpId;

use super::{Evidence, StackedRows};
use crate::privacy::candidates::Candidates;
use crate::privacy::dict_scan::{row_norms2, scan_dots};
use crate::privacy::mat::{Rows32, Rows64};

pub struct DictView {
    pub id: OpId,
    /// Candidates, whitened (V × d).
    pub dict: Rows32,
    /// `‖x_t/σ‖²`.
    pub norms2: Vec<f32>,
    /// Recorded rows as sent (stacked over steps).
    pub stacked: StackedRows,
    /// The same rows, whitened.
    pub rows: Rows64,
    /// `⟨y_i/σ, x_t/σ⟩` (rows × V).
    pub dots: Rows32,
    /// Per step, its rows' range in `stacked` (None: no call of this op).
    pub ranges: Vec<Option<Range<usize>>>,
}

impl DictView {
    /// `None` when the recording has no op the candidates cover.
    pub fn build(ev: &Evidence, cands: &dyn Candidates) -> Option<Self> {
        let (id, raw) = ev.dictionary_op(cands)?;
        let weights: Vec<f64> = ev.noise(id, raw.cols).sigma.iter().map(|s| 1.0 / s).collect();
        let w32: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
        let dict = raw.scale_cols(&w32);
        let norms2 = row_norms2(&dict);
        let stacked = ev.stack(id);
        let rows = stacked.rows.scale_cols(&weights);
        let rows32 = rows.to_f32();
        let mut dots = Rows32::zeros(rows.rows, dict.rows);
        scan_dots(&dict, &rows32, |i, d| dots.row_mut(i).copy_from_slice(d));
        let mut ranges: Vec<Option<Range<usize>>> = vec![None; ev.steps.len()];
        for (i, &(k, _)) in stacked.owner.iter().enumerate() {
            let r = ranges[k].get_or_insert(i..i);
            r.end = i + 1;
        }
        Some(Self { id, dict, norms2, stacked, rows, dots, ranges })
    }

    /// The dot-product rows of step `k`'s call, as a table.
    pub fn step_dots(&self, k: usize) -> Option<Rows32> {
        let r = self.ranges[k].clone()?;
        let v = self.dots.cols;
        Some(Rows32 { rows: r.len(), cols: v, data: self.dots.data[r.start * v..r.end * v].to_vec() })
    }

    /// Whitened rows of step `k`'s call.
    pub fn step_rows(&self, k: usize) -> Option<Rows64> {
        let r = self.ranges[k].clone()?;
        Some(self.rows.select(&r.collect::<Vec<_>>()))
    }
}
