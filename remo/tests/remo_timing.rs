//! CVM-side cost of ReMO (the worker's matmul excluded). Prints numbers,
//! asserts nothing about time; run with
//! `cargo test --release -p talaria-remo --test remo_timing -- --ignored --nocapture`.
//! Reports process CPU time (all threads) as well as wall time, since wall
//! time on a shared machine is mostly noise.

mod support;

use std::time::{Duration, Instant};

use support::*;
use talaria_kernels::{Precision, Rows, RowsMut};
use talaria_models::{Op, OpId};
use talaria_remo::{MaskScheme, Remo, RemoParams, WorkerCall, WorkerMatmul};

/// User + system CPU time of this process, all threads.
fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Answers honestly (the answers are checked) and keeps account of the
/// wall and CPU time of its own products, which the timings leave out.
struct TimedWorker {
    inner: RecordingWorker,
    wall: Duration,
    cpu: Duration,
}

impl WorkerMatmul for TimedWorker {
    fn call(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()> {
        assert_eq!(call.precision, Precision::F64);
        let mut x = vec![0f64; call.rows * call.d_in];
        fill(RowsMut::F64(&mut x));
        let (w, c) = (Instant::now(), cpu_time());
        let y = self.inner.exact(call.id, &x, call.rows)?;
        self.wall += w.elapsed();
        self.cpu += cpu_time() - c;
        take(Rows::F64(&y));
        Ok(())
    }
}

impl TimedWorker {
    /// Wall and CPU time of `f`, minus the time spent in this worker.
    fn time_without_worker(&mut self, f: impl FnOnce(&mut Self)) -> (Duration, Duration) {
        let (w0, c0, ww0, wc0) = (Instant::now(), cpu_time(), self.wall, self.cpu);
        f(self);
        let wall = w0.elapsed().saturating_sub(self.wall - ww0);
        let cpu = (cpu_time() - c0).saturating_sub(self.cpu - wc0);
        (wall, cpu)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
#[ignore = "timing report, run explicitly"]
fn pad_batch_and_online_call_cost() {
    let shapes = [(Op::GateUp, 576, 3072), (Op::Down, 1536, 576), (Op::Qkv, 576, 960)];
    for (op, d_in, d_out) in shapes {
        let id = OpId::new(0, op);
        let params = RemoParams { low_water: 1 << 20, ..RemoParams::default() };
        // Scales well above the test rows: no raise, no flush.
        let mut remo = Remo::<f64>::new(setup(&[(id, d_in, d_out)], 10.0), params).unwrap();
        let n_p = remo.pools().pool(id).unwrap().batch_rows();
        let usable = remo.pools().pool(id).unwrap().usable_per_batch();
        let inner = RecordingWorker::random(&[(id, d_in, d_out)], 1).record_data(false);
        let mut worker = TimedWorker { inner, wall: Duration::ZERO, cpu: Duration::ZERO };
        remo.ensure(&mut worker, id, 1).unwrap(); // warm-up (allocator, rayon)
        let mut runs: Vec<(Duration, Duration)> = (0..10)
            .map(|_| {
                worker.time_without_worker(|w| {
                    let n = remo.pools().available(id) + 1;
                    remo.ensure(w, id, n).unwrap();
                })
            })
            .collect();
        runs.sort();
        let (wall, cpu) = runs[runs.len() / 2];
        println!(
            "{d_in}→{d_out} (N_p {n_p}, {usable} usable): pad batch, median of 10: {:.2} ms wall, \
             {:.2} ms CPU (all threads) = {:.1} µs CPU per usable pad",
            ms(wall),
            ms(cpu),
            1e3 * ms(cpu) / usable as f64
        );
        for rows in [1usize, 16, 64] {
            let x = to_f32(&gaussian(rows, d_in, 1.0, 2));
            let mut out = vec![0.0f32; rows * d_out];
            let calls = 200;
            remo.ensure(&mut worker, id, calls * rows).unwrap();
            let (wall, cpu) = worker.time_without_worker(|w| {
                for _ in 0..calls {
                    remo.matmul(w, id, rows, (&x[..]).into(), (&mut out[..]).into()).unwrap();
                }
            });
            println!(
                "    online call, {rows:>2} rows: {:.1} µs wall, {:.1} µs CPU per call",
                1e3 * ms(wall) / calls as f64,
                1e3 * ms(cpu) / calls as f64
            );
        }
    }
}
