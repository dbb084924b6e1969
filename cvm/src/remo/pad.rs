//! One-time pads: a Gaussian row `r` and its product `r·W`, stored in the
//! buffers of the pad batch that made them (no per-pad copy or allocation).

use std::sync::Arc;

use super::pad_buffers::PadBuffers;
use super::pad_float::PadFloat;
use super::wipe::wipe;

/// The rows of one pad batch: `R` (`N_p × d_in`) and `R·W` (`N_p × d_out`).
/// Rows of discarded pads are zeroized when the batch is made; the whole
/// store is zeroized when its last pad is dropped, and its buffers go back
/// to `recycle`.
pub(crate) struct BatchStore<P: PadFloat> {
    d_in: usize,
    d_out: usize,
    r: Vec<P>,
    rw: Vec<P>,
    recycle: PadBuffers<P>,
}

impl<P: PadFloat> BatchStore<P> {
    /// Takes ownership of the batch buffers and zeroizes every row not in
    /// `keep`, then returns one `Pad` per kept row, in `keep`'s order.
    pub(crate) fn into_pads(
        d_in: usize,
        d_out: usize,
        mut r: Vec<P>,
        mut rw: Vec<P>,
        keep: &[usize],
        recycle: &PadBuffers<P>,
    ) -> Vec<Pad<P>> {
        let rows = r.len() / d_in.max(1);
        let mut kept = vec![false; rows];
        keep.iter().for_each(|&i| kept[i] = true);
        for (i, _) in kept.iter().enumerate().filter(|(_, k)| !**k) {
            wipe(&mut r[i * d_in..(i + 1) * d_in]);
            wipe(&mut rw[i * d_out..(i + 1) * d_out]);
        }
        let store = Arc::new(BatchStore { d_in, d_out, r, rw, recycle: recycle.clone() });
        keep.iter().map(|&row| Pad { store: Arc::clone(&store), row }).collect()
    }
}

impl<P: PadFloat> Drop for BatchStore<P> {
    fn drop(&mut self) {
        wipe(&mut self.r);
        wipe(&mut self.rw);
        self.recycle.give_back(std::mem::take(&mut self.r));
        self.recycle.give_back(std::mem::take(&mut self.rw));
    }
}

/// One pad of one op. It is neither `Clone` nor `Copy`: the pool moves it
/// out exactly once and the online call consumes it, so no API can hand
/// out the same pad twice.
///
/// ```compile_fail
/// fn reuse(p: talaria_cvm::remo::Pad) -> (talaria_cvm::remo::Pad, talaria_cvm::remo::Pad) {
///     (p.clone(), p)
/// }
/// ```
pub struct Pad<P: PadFloat = f64> {
    store: Arc<BatchStore<P>>,
    row: usize,
}

impl<P: PadFloat> Pad<P> {
    /// The pad row `r` (`d_in` values).
    pub fn r(&self) -> &[P] {
        let d = self.store.d_in;
        &self.store.r[self.row * d..(self.row + 1) * d]
    }

    /// Its product `r·W` (`d_out` values).
    pub fn rw(&self) -> &[P] {
        let d = self.store.d_out;
        &self.store.rw[self.row * d..(self.row + 1) * d]
    }

    pub fn d_in(&self) -> usize {
        self.store.d_in
    }

    pub fn d_out(&self) -> usize {
        self.store.d_out
    }
}

impl<P: PadFloat> std::fmt::Debug for Pad<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pad({}→{}, secret)", self.d_in(), self.d_out())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_view_their_rows_and_discarded_rows_are_zeroized() {
        let (d_in, d_out) = (2, 3);
        let r: Vec<f64> = (1..=8).map(f64::from).collect();
        let rw: Vec<f64> = (1..=12).map(|v| -f64::from(v)).collect();
        let recycle = PadBuffers::default();
        let pads = BatchStore::into_pads(d_in, d_out, r, rw, &[3, 1], &recycle);
        assert_eq!(pads.len(), 2);
        assert_eq!(pads[0].r(), &[7.0, 8.0]);
        assert_eq!(pads[0].rw(), &[-10.0, -11.0, -12.0]);
        assert_eq!(pads[1].r(), &[3.0, 4.0]);
        assert_eq!(pads[1].store.r[..2], [0.0, 0.0], "row 0 was discarded");
        assert_eq!(pads[1].store.rw[6..9], [0.0, 0.0, 0.0], "row 2 was discarded");
        drop(pads);
        assert_eq!(recycle.kept(), 2, "both buffers recycled, zeroized, after the last pad");
        assert!(recycle.take(8).iter().all(|&v| v == 0.0));
    }
}
