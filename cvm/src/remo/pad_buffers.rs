//! Recycled storage for pad batches. A batch's `R` and `R·W` are 4–17 MB
//! each; fresh allocations that large come from the kernel as untouched
//! pages, and faulting them in (`clear_page`) was a sixth of the CVM's
//! refill time. A batch's buffers come back here, zeroized, when its last
//! pad is dropped, and the next batch of the same shape reuses them.

use std::sync::{Arc, Mutex};

/// Buffers kept for reuse at most (a few batches' worth across all ops).
const MAX_KEPT: usize = 32;

/// Shared by every pool of a session and by the batches they made.
pub struct PadBuffers<T = f64>(Arc<Mutex<Vec<Vec<T>>>>);

impl<T> Clone for PadBuffers<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Default for PadBuffers<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T: Copy + Default + PartialEq> PadBuffers<T> {
    /// A zeroed buffer of `len` values: a recycled one of that length if any.
    pub fn take(&self, len: usize) -> Vec<T> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match kept.iter().position(|v| v.len() == len) {
            Some(i) => kept.swap_remove(i),
            None => vec![T::default(); len],
        }
    }

    /// Takes back a buffer the caller has already zeroized.
    pub(crate) fn give_back(&self, v: Vec<T>) {
        debug_assert!(v.iter().all(|&x| x == T::default()), "recycled pad storage must be zeroized first");
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() < MAX_KEPT && !v.is_empty() {
            kept.push(v);
        }
    }

    /// Buffers held for reuse now.
    pub fn kept(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
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
}
