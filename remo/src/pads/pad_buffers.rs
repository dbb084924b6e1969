//! Recycled storage for pad batches. A batch's `R` and `R·W` are 4–17 MB
//! each; fresh allocations that large come from the kernel as untouched
//! pages, and faulting them in (`clear_page`) was a sixth of the CVM's
//! refill time. A batch's buffers come back here, zeroized, when its last
//! pad is dropped, and the next batch of the same shape reuses them.
//!
//! Pools drain in lockstep (every step takes the same rows from every op),
//! so batches end in bursts: one step can hand back a buffer pair for most
//! of the 120 ops, while paced refills take them back over the next dozens
//! of steps. The cap is therefore in bytes, not buffers (a count of 32 kept
//! about 15 % of them), and sized by the session's own batches: one round
//! (every op's `R` and `R·W`), which a lockstep step can hand back at once.
//! A fixed 2 GiB held only part of a round of the default model's exact
//! batches (2.6 GB): a burst dropped the rest, and the next refills faulted
//! in fresh pages (bench/RESULTS.md, session 22: the pad threads' CPU per
//! token 5-10 % lower, peak RSS 3-7 % lower). What the recycler holds is
//! in `pad_pool_bound_bytes`: at worst one round of buffers whose lengths
//! no refill wants just then. A server reserves that round up front
//! (`RemoParams::reserve_storage`, `reserve`): under load its pools grow
//! from one batch per op to two, and that growth came as fresh pages the
//! kernel zeroed on the pad threads during the first batch period.

use std::sync::{Arc, Mutex};

/// Bytes kept for reuse at most where no session sized it (tests).
const DEFAULT_KEPT_BYTES: usize = 2 << 30;

/// Shared by every pool of a session and by the batches they made.
pub struct PadBuffers<T = f64> {
    kept: Arc<Mutex<Vec<Vec<T>>>>,
    cap_bytes: usize,
}

impl<T> Clone for PadBuffers<T> {
    fn clone(&self) -> Self {
        Self { kept: Arc::clone(&self.kept), cap_bytes: self.cap_bytes }
    }
}

impl<T> Default for PadBuffers<T> {
    fn default() -> Self {
        Self::with_cap(DEFAULT_KEPT_BYTES)
    }
}

impl<T> PadBuffers<T> {
    fn with_cap(cap_bytes: usize) -> Self {
        Self { kept: Arc::default(), cap_bytes }
    }

    /// Storage for a session whose batches' `R` and `R·W` take
    /// `round_bytes` over all ops: keeps up to one such round.
    pub fn for_round_of(round_bytes: usize) -> Self {
        Self::with_cap(round_bytes)
    }
}

impl<T: Copy + Default + PartialEq> PadBuffers<T> {
    /// A zeroed buffer of `len` values: a recycled one of that length if any.
    pub fn take(&self, len: usize) -> Vec<T> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        match kept.iter().position(|v| v.len() == len) {
            Some(i) => kept.swap_remove(i),
            None => {
                let v = vec![T::default(); len];
                talaria_kernels::cpu::advise_huge_pages(&v);
                v
            }
        }
    }

    /// Adds one zeroed buffer of `len` values, its pages faulted in now, if
    /// it fits under the cap; `false` if it does not.
    pub fn reserve(&self, len: usize) -> bool {
        let bytes = len * std::mem::size_of::<T>();
        let held: usize = self.kept.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|v| v.len() * std::mem::size_of::<T>()).sum();
        if len == 0 || held + bytes > self.cap_bytes {
            return false;
        }
        let mut v = vec![T::default(); len];
        talaria_kernels::cpu::advise_huge_pages(&v);
        // One store per 4 KiB page (volatile: a zero stored into zeroed
        // memory would otherwise be elided, and the page left unfaulted).
        let per_page = (4096 / std::mem::size_of::<T>().max(1)).max(1);
        for i in (0..len).step_by(per_page) {
            // SAFETY: `i < len`, inside the buffer.
            unsafe { std::ptr::write_volatile(v.as_mut_ptr().add(i), T::default()) };
        }
        self.give_back(v);
        true
    }

    /// Takes back a buffer the caller has already zeroized.
    pub(crate) fn give_back(&self, v: Vec<T>) {
        debug_assert!(v.iter().all(|&x| x == T::default()), "recycled pad storage must be zeroized first");
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let bytes = |v: &Vec<T>| v.len() * std::mem::size_of::<T>();
        if !v.is_empty() && kept.iter().map(bytes).sum::<usize>() + bytes(&v) <= self.cap_bytes {
            kept.push(v);
        }
    }

    /// Buffers held for reuse now.
    pub fn kept(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_a_buffer_of_the_same_length_only() {
        let b = PadBuffers::<f64>::default();
        let v = b.take(1000);
        let addr = v.as_ptr();
        b.give_back(v);
        assert_eq!(b.kept(), 1);
        let other = b.take(999);
        assert_eq!(other.len(), 999);
        assert_eq!(b.kept(), 1);
        let again = b.take(1000);
        assert_eq!((again.as_ptr(), again.len()), (addr, 1000));
        assert!(again.iter().all(|&x| x == 0.0));
        assert_eq!(b.kept(), 0);
    }

    #[test]
    fn keeps_a_burst_of_returns_up_to_the_byte_cap() {
        let b = PadBuffers::<f32>::with_cap(200 * 4096);
        // 200 buffers back in one step (more than the count cap we had).
        (0..200).for_each(|_| b.give_back(vec![0.0; 1024]));
        assert_eq!(b.kept(), 200);
        // One more is over the cap: dropped, not kept.
        b.give_back(vec![0.0; 1]);
        assert_eq!(b.kept(), 200);
    }

    /// Reserved buffers are zero, reused like returned ones, and stop at the cap.
    #[test]
    fn reserves_up_to_the_cap() {
        let b = PadBuffers::<f64>::with_cap(3 * 8192);
        assert!(b.reserve(1024) && b.reserve(1024) && b.reserve(512));
        assert!(!b.reserve(1024), "over the cap");
        assert_eq!(b.kept(), 3);
        let v = b.take(512);
        assert!(v.len() == 512 && v.iter().all(|&x| x == 0.0));
        assert_eq!(b.kept(), 2);
    }

    /// A session's storage keeps a whole round of its batches handed back
    /// at once, not beyond.
    #[test]
    fn a_session_keeps_one_round_of_its_batches() {
        // Three ops whose batches' R and R·W take 3 × 2 × 4 KiB.
        let b = PadBuffers::<f32>::for_round_of(3 * 2 * 4096);
        (0..6).for_each(|_| b.give_back(vec![0.0; 1024]));
        assert_eq!(b.kept(), 6);
        b.give_back(vec![0.0; 1024]);
        assert_eq!(b.kept(), 6);
    }
}
