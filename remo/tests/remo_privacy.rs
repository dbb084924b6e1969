//! What the worker sees: at κ = 1e4 no received row is close to a plaintext
//! row (while the insecure row permutation is caught by the same check),
//! no pad appears in a pad batch, and the row order is fresh per call.

mod support;

use support::*;
use talaria_kernels::Precision;
use talaria_models::{Op, OpId};
use talaria_remo::{CallKind, MaskScheme, Remo, RemoParams, RemoSetup, WorkerCall};

fn op() -> OpId {
    OpId::new(0, Op::Qkv)
}

/// The largest |cos| between any online row the worker got and any row of `x`.
fn max_cosine_to_plaintext(worker: &RecordingWorker, x: &[f64], d_in: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for c in worker.calls().iter().filter(|c| c.kind == CallKind::Online) {
        for i in 0..c.rows {
            for xr in x.chunks_exact(d_in) {
                worst = worst.max(cosine(c.row(i), xr).abs());
            }
        }
    }
    worst
}

#[test]
fn online_rows_are_not_close_to_any_plaintext_row() {
    let (d_in, d_out, rows) = (576, 32, 16);
    let shapes = [(op(), d_in, d_out)];
    let s: RemoSetup = setup(&shapes, 1.0);
    let x = gaussian(rows, d_in, 1.0, 11);
    for (name, secure) in [("remo", true), ("permute", false)] {
        let mut worker = RecordingWorker::random(&shapes, 12);
        if secure {
            let mut remo = Remo::<f64>::new(s.clone(), RemoParams::with_kappa(1e4)).unwrap();
            let mut out = vec![0.0f32; rows * d_out];
            remo.matmul(&mut worker, op(), rows, (&to_f32(&x)[..]).into(), (&mut out[..]).into()).unwrap();
        } else {
            // The insecure row permutation: the rows as they are, reordered.
            let permuted: Vec<f64> = (0..rows).rev().flat_map(|r| x[r * d_in..(r + 1) * d_in].to_vec()).collect();
            let call = WorkerCall { id: op(), kind: CallKind::Online, precision: Precision::F64, rows, d_in, d_out };
            talaria_remo::matmul(&mut worker, call, &permuted).unwrap();
        }
        let worst = max_cosine_to_plaintext(&worker, &x, d_in);
        println!("{name}: max |cos| to a plaintext row = {worst:.4}");
        if secure {
            // Independent directions in 576 dimensions: |cos| ~ 0.04.
            assert!(worst < 0.25, "{name}: a masked row is close to a plaintext row (|cos| {worst})");
        } else {
            assert!(worst > 0.999, "the check must catch an unmasked row ({worst})");
        }
    }
}

/// With X = 0 the online rows are the pads; none is visible in the batch
/// `U = M·R` the worker saw, because M mixes every pad into every row.
#[test]
fn no_individual_pad_appears_in_a_pad_batch() {
    let (d_in, d_out, rows) = (576, 8, 64);
    let shapes = [(op(), d_in, d_out)];
    let mut worker = RecordingWorker::random(&shapes, 13);
    let mut remo = Remo::<f64>::new(setup(&shapes, 1.0), RemoParams::default()).unwrap();
    let mut out = vec![0.0f32; rows * d_out];
    remo.matmul(&mut worker, op(), rows, (&vec![0.0f32; rows * d_in][..]).into(), (&mut out[..]).into()).unwrap();
    let calls = worker.calls();
    let batch = calls.iter().find(|c| c.kind == CallKind::PadBatch).unwrap();
    let online = calls.iter().find(|c| c.kind == CallKind::Online).unwrap();
    assert_eq!(batch.rows, 1024);
    let mut worst: f64 = 0.0;
    for i in 0..online.rows {
        for j in 0..batch.rows {
            worst = worst.max(cosine(online.row(i), batch.row(j)).abs());
        }
    }
    println!("max |cos| between a pad and a batch row: {worst:.4}");
    assert!(worst < 0.5, "a pad is visible in its batch (|cos| {worst})");
}

/// Recovers the permutation a call applied by matching received rows to
/// plaintext rows (possible only because κ is negligible here).
fn observed_order(call: &support::ReceivedCall, x: &[f64], d_in: usize) -> Vec<usize> {
    (0..call.rows)
        .map(|j| {
            x.chunks_exact(d_in)
                .enumerate()
                .max_by(|a, b| cosine(call.row(j), a.1).total_cmp(&cosine(call.row(j), b.1)))
                .map(|(i, _)| i)
                .unwrap()
        })
        .collect()
}

#[test]
fn the_row_permutation_is_fresh_per_call() {
    let (d_in, d_out, rows) = (32, 8, 16);
    let shapes = [(op(), d_in, d_out)];
    let mut worker = RecordingWorker::random(&shapes, 14);
    // κ = 1e-9: pads are negligible, so the order becomes observable.
    let mut remo = Remo::<f64>::new(setup(&shapes, 1.0), RemoParams::with_kappa(1e-9)).unwrap();
    let x = gaussian(rows, d_in, 1.0, 15);
    let mut out = vec![0.0f32; rows * d_out];
    for _ in 0..4 {
        remo.matmul(&mut worker, op(), rows, (&to_f32(&x)[..]).into(), (&mut out[..]).into()).unwrap();
    }
    let orders: Vec<Vec<usize>> =
        worker.calls().iter().filter(|c| c.kind == CallKind::Online).map(|c| observed_order(c, &x, d_in)).collect();
    assert_eq!(orders.len(), 4);
    for o in &orders {
        let mut sorted = o.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..rows).collect::<Vec<_>>(), "not a permutation: {o:?}");
    }
    for a in 0..4 {
        for b in a + 1..4 {
            assert_ne!(orders[a], orders[b], "calls {a} and {b} used the same permutation");
        }
    }
    assert!(orders.iter().any(|o| *o != (0..rows).collect::<Vec<_>>()));
}
