//! Recycled storage for pad batches. A batch's `R` and `R·W` are 4–17 MB
//! each; fresh allocations that large come from the kernel as untouched
//! pages, and faulting them in (`clear_page`) was a sixth of the CVM's
//! refill time. A batch's buffers come back here, zeroized, when its last
//! pad is dropped, and the next batch of the same shape reuses them.
//!
//! Pools drain in lockstep (every step takes the same rows from every op),
//! so batches end in bursts: one step can hand back a buffer pair for most
//! of the 120 ops, while paced refills take them back over the next dozens
//! of steps. The cap is therefore in bytes, not buffers: a count of 32 kept
//! about 15 % of them, and the misses cost fresh pages (`clear_page`) and
//! a memset, 3.5 % of the CVM's time at 16 streams.

use std::sync::{Arc, Mutex};

/// Bytes kept for reuse at most: a whole round of batches of a small
/// model, without letting a large one hoard memory it has given up.
const MAX_KEPT_BYTES: usize = 2 << 30;

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
        Self::with_cap(MAX_KEPT_BYTES)
    }
}

impl<T> PadBuffers<T> {
    fn with_cap(cap_bytes: usize) -> Self {
        Self { kept: Arc::default(), cap_bytes }
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
}
