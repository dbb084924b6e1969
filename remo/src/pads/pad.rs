//! One-time pads: a Gaussian row `r` and its product `r·W`, stored in the
//! buffers of the pad batch that made them (no per-pad copy or allocation).

use std::ptr::NonNull;
use std::sync::Arc;

use crate::pads::pad_buffers::PadBuffers;
use crate::pads::wipe::wipe;
use talaria_kernels::Float;

/// One matrix of a pad batch (`R` or `R·W`), owned as raw parts so that
/// each `Pad` can zeroize its own row while other pads of the batch are
/// still in use elsewhere.
struct PadRows<P: Float> {
    ptr: NonNull<P>,
    len: usize,
    cap: usize,
    width: usize,
}

impl<P: Float> PadRows<P> {
    fn new(v: Vec<P>, width: usize) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        let ptr = NonNull::new(v.as_mut_ptr()).expect("Vec pointers are never null");
        Self { ptr, len: v.len(), cap: v.capacity(), width }
    }

    /// Row `i`.
    ///
    /// # Safety
    /// No `wipe_row(i)` may run while the returned slice lives.
    unsafe fn row(&self, i: usize) -> &[P] {
        debug_assert!((i + 1) * self.width <= self.len);
        std::slice::from_raw_parts(self.ptr.as_ptr().add(i * self.width), self.width)
    }

    /// Zeroizes row `i`.
    ///
    /// # Safety
    /// The caller has exclusive use of row `i` (its `Pad`, being dropped).
    unsafe fn wipe_row(&self, i: usize) {
        debug_assert!((i + 1) * self.width <= self.len);
        wipe(std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(i * self.width), self.width));
    }

    fn into_vec(self) -> Vec<P> {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the raw parts came from a `Vec<P>` in `new` and are
        // reassembled exactly once (`self` is not dropped).
        unsafe { Vec::from_raw_parts(this.ptr.as_ptr(), this.len, this.cap) }
    }
}

impl<P: Float> Drop for PadRows<P> {
    fn drop(&mut self) {
        // SAFETY: as in `into_vec`; only reached when `into_vec` was not.
        let mut v = unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), self.len, self.cap) };
        wipe(&mut v);
    }
}

/// The rows of one pad batch: `R` (`N_p × d_in`) and `R·W` (`N_p × d_out`).
/// Rows of discarded pads are zeroized when the batch is made and each kept
/// row when its pad is dropped (hot in cache right after the online call
/// read it, where zeroizing the whole batch at the end was a cold memset
/// of 4–17 MB). The buffers go back to `recycle`, all zero, when the last
/// pad is dropped.
pub(crate) struct BatchStore<P: Float> {
    r: PadRows<P>,
    rw: PadRows<P>,
    recycle: PadBuffers<P>,
}

// SAFETY: the raw rows are only read through a `Pad` (one per kept row,
// never cloned) and only written by that pad's `Drop`, so no row is ever
// shared between a writer and another user across threads.
unsafe impl<P: Float> Send for BatchStore<P> {}
unsafe impl<P: Float> Sync for BatchStore<P> {}

impl<P: Float> BatchStore<P> {
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
        let store = Arc::new(BatchStore { r: PadRows::new(r, d_in), rw: PadRows::new(rw, d_out), recycle: recycle.clone() });
        keep.iter().map(|&row| Pad { store: Arc::clone(&store), row }).collect()
    }
}

impl<P: Float> Drop for BatchStore<P> {
    fn drop(&mut self) {
        // Every row is zero by now: discarded ones since `into_pads`, kept
        // ones since their pad's drop.
        let take = |rows: &mut PadRows<P>| std::mem::replace(rows, PadRows::new(Vec::new(), 0)).into_vec();
        let (r, rw) = (take(&mut self.r), take(&mut self.rw));
        self.recycle.give_back(r);
        self.recycle.give_back(rw);
    }
}

/// One pad of one op. It is neither `Clone` nor `Copy`: the pool moves it
/// out exactly once and the online call consumes it, so no API can hand
/// out the same pad twice. Its rows are zeroized when it is dropped.
///
/// ```compile_fail
/// fn reuse(p: talaria_cvm::remo::Pad) -> (talaria_cvm::remo::Pad, talaria_cvm::remo::Pad) {
///     (p.clone(), p)
/// }
/// ```
pub struct Pad<P: Float = f64> {
    store: Arc<BatchStore<P>>,
    row: usize,
}

impl<P: Float> Pad<P> {
    /// The pad row `r` (`d_in` values).
    pub fn r(&self) -> &[P] {
        // SAFETY: only this pad's drop wipes its row, and it cannot run
        // while `&self` is borrowed.
        unsafe { self.store.r.row(self.row) }
    }

    /// Its product `r·W` (`d_out` values).
    pub fn rw(&self) -> &[P] {
        // SAFETY: as in `r`.
        unsafe { self.store.rw.row(self.row) }
    }

    pub fn d_in(&self) -> usize {
        self.store.r.width
    }

    pub fn d_out(&self) -> usize {
        self.store.rw.width
    }
}

impl<P: Float> Drop for Pad<P> {
    fn drop(&mut self) {
        // SAFETY: this pad is the only user of its row, and it is going away.
        unsafe {
            self.store.r.wipe_row(self.row);
            self.store.rw.wipe_row(self.row);
        }
    }
}

impl<P: Float> std::fmt::Debug for Pad<P> {
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
        // SAFETY (test): rows 0 and 2 belong to no pad.
        unsafe {
            assert_eq!(pads[1].store.r.row(0), &[0.0, 0.0], "row 0 was discarded");
            assert_eq!(pads[1].store.rw.row(2), &[0.0, 0.0, 0.0], "row 2 was discarded");
        }
        let mut pads = pads;
        let store = Arc::clone(&pads[0].store);
        drop(pads.remove(0));
        // SAFETY (test): row 3's pad is gone.
        unsafe { assert_eq!(store.r.row(3), &[0.0, 0.0], "a dropped pad's row is zeroized at once") };
        drop(store);
        drop(pads);
        assert_eq!(recycle.kept(), 2, "both buffers recycled, zeroized, after the last pad");
        assert!(recycle.take(8).iter().all(|&v| v == 0.0));
    }
}
