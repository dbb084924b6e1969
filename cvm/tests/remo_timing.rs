//! CVM-side cost of ReMO (the worker's matmul excluded). Prints numbers,
//! asserts nothing about time; run with
//! `cargo test --release -p talaria-cvm --test remo_timing -- --ignored --nocapture`.

mod remo_support;

use std::time::{Duration, Instant};

use remo_support::*;
use talaria_cvm::remo::{CallKind, MaskScheme, Remo, RemoParams, WorkerMatmul};
use talaria_models::{Op, OpId};

/// Answers with canned finite values of the right shape, doing no matmul.
struct CannedWorker {
    d_out: usize,
    answer: Vec<f64>,
}

impl WorkerMatmul for CannedWorker {
    fn matmul(&mut self, _id: OpId, _kind: CallKind, _x: &[f64], rows: usize) -> anyhow::Result<Vec<f64>> {
        Ok(self.answer[..rows * self.d_out].to_vec())
    }
}

#[test]
#[ignore = "timing report, run explicitly"]
fn pad_batch_and_online_call_cost() {
    for (op, d_in, d_out) in [(Op::GateUp, 576, 3072), (Op::Down, 1536, 576), (Op::Qkv, 576, 960)] {
        let id = OpId::new(0, op);
        let shapes = [(id, d_in, d_out)];
        let mut remo = Remo::new(setup(&shapes, 10.0), RemoParams { low_water: 1 << 20, ..RemoParams::default() }).unwrap();
        let n_p = remo.pools().pool(id).unwrap().batch_rows();
        let mut worker = CannedWorker { d_out, answer: gaussian(n_p, d_out, 1.0, 1) };
        remo.ensure(&mut worker, id, 1).unwrap(); // warm-up (allocator, rayon)
        let batches = 10;
        let before = remo.pools().pool(id).unwrap().stats();
        let start = Instant::now();
        for _ in 0..batches {
            let n = remo.pools().available(id) + 1;
            remo.ensure(&mut worker, id, n).unwrap();
        }
        let wall = start.elapsed();
        let after = remo.pools().pool(id).unwrap().stats();
        let cvm = (after.refill_time - before.refill_time) - (after.worker_time - before.worker_time);
        let usable = remo.pools().pool(id).unwrap().usable_per_batch();
        println!(
            "{d_in}→{d_out} (N_p {n_p}): pad batch {:.2} ms CVM-side ({:.2} ms wall incl. canned answer), {:.2} µs per usable pad",
            ms(cvm) / batches as f64,
            ms(wall) / batches as f64,
            1e3 * ms(cvm) / (batches * usable) as f64
        );
        for rows in [1usize, 64] {
            let x = to_f32(&gaussian(rows, d_in, 1.0, 2));
            let mut out = vec![0.0f32; rows * d_out];
            let calls = 200;
            remo.ensure(&mut worker, id, calls * rows).unwrap();
            let start = Instant::now();
            for _ in 0..calls {
                remo.matmul(&mut worker, id, &x, rows, &mut out).unwrap();
            }
            println!("    online call, {rows} rows: {:.1} µs (canned answer copy included)", 1e3 * ms(start.elapsed()) / calls as f64);
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
