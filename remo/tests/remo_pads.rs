//! Pads are one-time: never handed out twice, at most 75 % of each batch
//! used, the rest discarded; pools refill as specified.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::*;
use talaria_models::{Op, OpId};
use talaria_remo::{CallKind, MaskScheme, PadPools, Remo, RemoParams};

fn op() -> OpId {
    OpId::new(2, Op::GateUp)
}

fn bits(row: &[f64]) -> Vec<u64> {
    row.iter().map(|v| v.to_bits()).collect()
}

/// With X = 0 the worker's online rows are the pads themselves.
#[test]
fn the_worker_never_sees_the_same_pad_twice() {
    let (d_in, d_out) = (16, 8);
    let shapes = [(op(), d_in, d_out)];
    let mut worker = RecordingWorker::random(&shapes, 3);
    let mut remo = Remo::<f64>::new(setup(&shapes, 1.0), RemoParams::default()).unwrap();
    let mut total = 0;
    for rows in [1usize, 7, 20, 3, 24, 1, 30, 9] {
        let mut out = vec![0.0f32; rows * d_out];
        remo.matmul(&mut worker, op(), rows, (&vec![0.0f32; rows * d_in][..]).into(), (&mut out[..]).into()).unwrap();
        // Every row sent, dummy rows of the bucket included, takes its own pad.
        total += rows.next_power_of_two();
        // X·W = 0 exactly up to the masking's rounding.
        assert!(out.iter().all(|v| v.abs() < 1e-6), "unmasked zero rows are not zero");
    }
    let online: Vec<Vec<u64>> =
        worker.calls().iter().filter(|c| c.kind == CallKind::Online).flat_map(|c| (0..c.rows).map(move |i| bits(c.row(i)))).collect();
    assert_eq!(online.len(), total);
    assert_eq!(online.iter().collect::<HashSet<_>>().len(), total, "a pad was used twice");
    assert!(online.iter().all(|r| r.iter().any(|&b| f64::from_bits(b) != 0.0)), "an online row was unmasked");
    let s = remo.pools().pool(op()).unwrap().stats();
    assert_eq!(s.pads_used, total as u64);
}

#[test]
fn at_most_three_quarters_of_each_batch_is_used() {
    let (d_in, d_out) = (40, 8);
    let shapes = [(op(), d_in, d_out)];
    let mut worker = RecordingWorker::random(&shapes, 4);
    let mut remo = Remo::<f64>::new(setup(&shapes, 1.0), RemoParams::default()).unwrap();
    for _ in 0..200 {
        let mut out = vec![0.0f32; d_out];
        remo.matmul(&mut worker, op(), 1, (&vec![0.0f32; d_in][..]).into(), (&mut out[..]).into()).unwrap();
    }
    // Online rows served between consecutive pad batches come from one batch.
    let mut per_batch = Vec::new();
    for c in worker.calls() {
        match c.kind {
            CallKind::PadBatch => {
                assert_eq!(c.rows, 64, "N_p = next power of two ≥ 1.25·40");
                assert_eq!(c.cols, d_in);
                per_batch.push(0);
            }
            CallKind::Online => *per_batch.last_mut().expect("a batch precedes every online row") += c.rows,
            CallKind::Plain => panic!("ReMO sent plaintext"),
        }
    }
    assert_eq!(per_batch.len(), 5, "200 rows / 48 usable per batch");
    assert!(per_batch.iter().all(|&n| n <= 48), "{per_batch:?}");
    assert_eq!(&per_batch[..4], &[48, 48, 48, 48]);
    let s = remo.pools().pool(op()).unwrap().stats();
    assert_eq!((s.batches, s.pads_made, s.pads_discarded, s.pads_available), (5, 240, 5 * 16, 40));
}

#[test]
fn taken_pads_are_never_returned() {
    let shapes = [(op(), 8, 4)];
    let mut worker = RecordingWorker::random(&shapes, 5);
    let setup = setup(&shapes, 1.0);
    let checks = talaria_remo::AnswerChecks::for_setup(&setup).unwrap();
    let mut pools = PadPools::<f64>::new(&setup, RemoParams::default(), checks).unwrap();
    pools.ensure(&mut worker, op(), 12).unwrap();
    assert_eq!(pools.available(op()), 12, "one batch of N_p = 16 keeps 12");
    let first = pools.take(op(), 12).unwrap();
    assert!(pools.take(op(), 1).is_err(), "the pool is empty after taking everything");
    pools.ensure(&mut worker, op(), 5).unwrap();
    let second = pools.take(op(), 5).unwrap();
    let a: HashSet<Vec<u64>> = first.iter().map(|p| bits(p.r())).collect();
    assert_eq!(a.len(), 12);
    assert!(second.iter().all(|p| !a.contains(&bits(p.r()))), "a taken pad came back");
    assert!(pools.take(OpId::new(9, Op::O), 1).is_err(), "unknown op");
}

#[test]
fn idle_refill_tops_up_pools_below_low_water() {
    let shapes = [(op(), 8, 4), (OpId::new(0, Op::O), 16, 8)];
    let mut worker = RecordingWorker::random(&shapes, 6);
    let params = RemoParams { low_water: 20, ..RemoParams::default() };
    let mut remo = Remo::<f64>::new(setup(&shapes, 1.0), params).unwrap();
    // No budget: nothing happens.
    let p = remo.idle(&mut worker, Duration::ZERO).unwrap();
    assert_eq!((p.batches_made, p.pools_below_low_water), (0, 2));
    // The 8-wide op keeps 12 per batch, so needs two batches; the 16-wide one 24.
    let p = remo.idle(&mut worker, Duration::from_secs(60)).unwrap();
    assert_eq!((p.batches_made, p.pools_below_low_water), (3, 0));
    assert_eq!(remo.pools().available(op()), 24);
    assert_eq!(remo.pools().available(OpId::new(0, Op::O)), 24);
    let p = remo.idle(&mut worker, Duration::from_secs(60)).unwrap();
    assert_eq!(p.batches_made, 0, "pools at low water need nothing");
    assert!(worker.calls().iter().all(|c| c.kind == CallKind::PadBatch));
}

#[test]
fn the_report_counts_pads_and_bounds_leakage() {
    let shapes = [(op(), 16, 8)];
    let mut worker = RecordingWorker::random(&shapes, 7);
    let mut remo = Remo::<f64>::new(setup(&shapes, 1.0), RemoParams::default()).unwrap();
    let mut out = vec![0.0f32; 10 * 8];
    remo.matmul(&mut worker, op(), 10, (&to_f32(&gaussian(10, 16, 1.0, 1))[..]).into(), (&mut out[..]).into()).unwrap();
    let r = remo.report().unwrap();
    // 10 real rows go out as a bucket of 16: 6 dummy rows, 16 pads.
    assert_eq!((r.online_calls, r.online_rows, r.dummy_rows, r.batches, r.pads_used), (1, 10, 6, 1, 16));
    assert_eq!((r.pads_discarded, r.pads_available), (8, 8));
    assert_eq!(r.ops.len(), 1);
    assert_eq!(r.ops[0].n_p, 32);
    let want = 16.0 * 0.5 * (1e-8f64).ln_1p() / std::f64::consts::LN_2;
    assert!((r.leakage_bound_bits - want).abs() < 1e-6 * want);
    assert!(r.leakage_bits_at_sent_energy <= r.leakage_bound_bits * (1.0 + 1e-12));
    // The session total counts the real rows (not the dummies), and counts
    // a row sent again (a recompute) again.
    assert_eq!(r.positions_sent, 10);
    assert!((r.session_bound_bits - 10.0 * want).abs() < 1e-6 * want);
    remo.matmul(&mut worker, op(), 2, (&to_f32(&gaussian(2, 16, 1.0, 1))[..]).into(), (&mut out[..16]).into()).unwrap();
    let again = remo.report().unwrap();
    assert_eq!(again.positions_sent, 12, "two of the same rows, sent again, count again");
    let text = again.to_string();
    assert!(text.contains("leakage bound") && text.contains("gate_up") && text.contains("session total"), "{text}");
}
