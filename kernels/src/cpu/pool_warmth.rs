//! Keeps rayon's other threads polling for work for a while after a call,
//! instead of letting them fall asleep between the many small parallel
//! calls of a decode step.
//!
//! Rayon parks an idle thread after a few dozen empty rounds, and waking a
//! parked thread is a futex wake-up of an idle vCPU: 50–90 µs on the 2-vCPU
//! VM we measure on, against ~100 µs for a whole one-row GEMV. So a
//! one-row call ran mostly on the calling thread alone. While warm, the
//! other threads loop on `rayon::yield_now` (running any pending rayon job)
//! and the OS `sched_yield`, so they take no CPU from a runnable thread of
//! this or another process.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Warm loops running or queued.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Nanoseconds since `epoch()` of the last `keep_pool_warm` call.
static LAST_CALL_NS: AtomicU64 = AtomicU64::new(0);
static LINGER_NS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Keeps the global pool's other threads polling until `linger` after the
/// last call of this function. Cheap when they already are (two atomics).
pub fn keep_pool_warm(linger: Duration) {
    LINGER_NS.store(linger.as_nanos() as u64, Ordering::Relaxed);
    LAST_CALL_NS.store(now_ns(), Ordering::Release);
    let threads = rayon::current_num_threads();
    if threads < 2 || ACTIVE.compare_exchange(0, threads, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    // The caller is never made to spin: its own copy returns at once.
    let caller = rayon::current_thread_index();
    rayon::spawn_broadcast(move |ctx| {
        if Some(ctx.index()) != caller {
            warm_loop();
        }
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    });
}

fn warm_loop() {
    loop {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => continue,
            _ => std::thread::yield_now(),
        }
        let last = LAST_CALL_NS.load(Ordering::Acquire);
        if now_ns().saturating_sub(last) > LINGER_NS.load(Ordering::Relaxed) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_threads_run_work_and_stop_after_the_linger() {
        keep_pool_warm(Duration::from_millis(20));
        let sum: u64 = rayon::broadcast(|c| c.index() as u64 + 1).into_iter().sum();
        let n = rayon::current_num_threads() as u64;
        assert_eq!(sum, n * (n + 1) / 2, "every thread still runs jobs while warm");
        let deadline = Instant::now() + Duration::from_secs(5);
        while ACTIVE.load(Ordering::Acquire) != 0 {
            assert!(Instant::now() < deadline, "warm loops did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
