//! Small helpers for splitting kernel work across rayon's threads.

use rayon::prelude::*;

/// Below this many multiply-adds a call stays on the calling thread: waking
/// rayon's workers costs more than the work.
pub(crate) const MIN_PARALLEL_MACS: usize = 1 << 17;

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<T>(pub *mut T);

impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: every user writes only the elements of its own task; tasks never overlap.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// Threads a call may use (rayon's pool, which honours RAYON_NUM_THREADS).
pub(crate) fn threads() -> usize {
    rayon::current_num_threads().max(1)
}

/// Makes the calling thread worker 0 of rayon's global pool (building the
/// pool now). A parallel kernel called from a thread outside the pool hands
/// the whole call to the pool and sleeps until it is done: one more futex
/// wake-up per call, which on a VM costs tens of µs, against ~150 µs for a
/// decode GEMV. Called from inside the pool, the caller runs the first task
/// itself. Call it first thing on the thread that will run the model (the
/// worker's serve loop, the CLI's generation, the server's engine thread).
/// Returns false (and changes nothing) when the global pool already exists.
pub fn join_global_pool() -> bool {
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global().is_ok()
}

/// For a long-lived thread that runs the model when the global pool already
/// exists (a server's engine thread): a pool of the same size whose worker 0
/// is the calling thread, for the same reason as [`join_global_pool`].
/// Kernels called on this thread then use it; keep it alive as long as the
/// thread computes, and drop it on this thread.
pub fn pool_on_this_thread() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new().num_threads(rayon::current_num_threads()).use_current_thread().build().ok()
}

/// Asks the CPU to pull `data` into cache ahead of use (a hint: no effect
/// on results, nothing on targets without a prefetch instruction). For data
/// that is surely cold and needed soon, like the next call's one-time pads.
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = data.as_ptr().cast::<i8>();
        for off in (0..std::mem::size_of_val(data)).step_by(64) {
            // SAFETY: a prefetch never faults; the address is inside `data`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
        }
    }
}

/// Runs `task(0..n_tasks)`, in parallel when `macs` is worth it.
pub(crate) fn run_tasks(n_tasks: usize, macs: usize, task: impl Fn(usize) + Sync + Send) {
    if n_tasks <= 1 || macs < MIN_PARALLEL_MACS || threads() == 1 {
        (0..n_tasks).for_each(task);
    } else {
        (0..n_tasks).into_par_iter().for_each(task);
    }
}

/// Splits `n` items into about `parts` contiguous ranges whose starts are
/// multiples of `align` (the last range takes the remainder).
pub(crate) fn aligned_ranges(n: usize, parts: usize, align: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.max(1);
    let per = n.div_ceil(parts).div_ceil(align).max(1) * align;
    (0..n).step_by(per).map(|s| s..(s + per).min(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_exactly_once() {
        for n in [0, 1, 15, 16, 17, 576, 960, 49152] {
            for parts in [1, 2, 3, 8] {
                let r = aligned_ranges(n, parts, 16);
                let total: usize = r.iter().map(|r| r.len()).sum();
                assert_eq!(total, n);
                for w in r.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert_eq!(w[0].start % 16, 0);
                }
            }
        }
    }
}
