//! Reusable per-thread scratch buffers, so hot calls do not allocate.
//!
//! A buffer is taken out of its slot for the duration of a use and put back
//! afterwards, so a re-entrant call (rayon may run another task on a thread
//! that is waiting) gets a fresh buffer instead of a borrow panic.

use std::cell::RefCell;

thread_local! {
    static F32_SLOTS: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static F64_SLOTS: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
    static U16_SLOTS: RefCell<Vec<Vec<u16>>> = const { RefCell::new(Vec::new()) };
}

macro_rules! with_scratch_fn {
    ($name:ident, $slots:ident, $t:ty) => {
        /// Runs `f` with a cleared scratch vector of this thread.
        pub(crate) fn $name<R>(f: impl FnOnce(&mut Vec<$t>) -> R) -> R {
            let mut buf = $slots.with(|s| s.borrow_mut().pop()).unwrap_or_default();
            buf.clear();
            let result = f(&mut buf);
            $slots.with(|s| s.borrow_mut().push(buf));
            result
        }
    };
}

with_scratch_fn!(with_f32, F32_SLOTS, f32);

/// Runs `f` on `len` values of a scratch vector of this thread that hold
/// whatever an earlier use left there (zeros where it grew), for callers
/// that overwrite all of them: zeroing a widened weight panel first was
/// 8 % of a 16-sequence decode step.
pub(crate) fn with_f32_overwritten<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = F32_SLOTS.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let result = f(&mut buf[..len]);
    F32_SLOTS.with(|s| s.borrow_mut().push(buf));
    result
}
with_scratch_fn!(with_f64, F64_SLOTS, f64);
with_scratch_fn!(with_u16, U16_SLOTS, u16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_use_gets_distinct_buffers() {
        with_f32(|a| {
            a.push(1.0);
            with_f32(|b| {
                assert!(b.is_empty());
                b.push(2.0);
            });
            assert_eq!(a.as_slice(), &[1.0]);
        });
    }
}
