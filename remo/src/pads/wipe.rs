//! Zeroizing secret buffers (pads, mixing parameters) before their memory
//! is released or reused.

use std::sync::atomic::{compiler_fence, Ordering};

/// Overwrites every element with its default (zero) value. The fill is a
/// vectorized memset (megabytes per pad batch); passing the buffer through
/// `black_box` afterwards keeps the compiler from eliding it as a dead store.
pub fn wipe<T: Copy + Default>(v: &mut [T]) {
    v.fill(T::default());
    std::hint::black_box(&mut *v);
    compiler_fence(Ordering::SeqCst);
}

/// Zeroizes a vector's whole capacity-backed contents, then empties it.
pub fn wipe_vec<T: Copy + Default>(v: &mut Vec<T>) {
    wipe(v.as_mut_slice());
    v.clear();
}

/// An owned buffer holding secrets (pads, pad products); zeroized on drop,
/// including on error paths.
pub struct SecretVec<T: Copy + Default = f64>(Vec<T>);

impl<T: Copy + Default> SecretVec<T> {
    pub fn zeros(len: usize) -> Self {
        Self(vec![T::default(); len])
    }

    /// Hands the buffer on to a new owner that takes over its zeroizing.
    pub fn into_inner(mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }
}

impl<T: Copy + Default> From<Vec<T>> for SecretVec<T> {
    fn from(v: Vec<T>) -> Self {
        Self(v)
    }
}

impl<T: Copy + Default> std::ops::Deref for SecretVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Copy + Default> std::ops::DerefMut for SecretVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T: Copy + Default> Drop for SecretVec<T> {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wipes_to_zero() {
        let mut v = vec![1.5f64, -2.0, 3.0];
        wipe(&mut v);
        assert_eq!(v, vec![0.0; 3]);
        let mut p = vec![3usize, 1, 2];
        wipe_vec(&mut p);
        assert!(p.is_empty());
    }
}
