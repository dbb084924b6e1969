//! Channel scales: rows larger than the calibration raise the pad σ (for
//! this call already), and pads drawn at a stale scale are flushed.

mod support;

use std::time::Duration;

use support::*;
use talaria_models::{Op, OpId};
use talaria_remo::{CallKind, MaskScheme, Remo, RemoParams};

fn op() -> OpId {
    OpId::new(1, Op::Down)
}

/// RMS of the online rows the worker received in call `seq` onwards.
fn online_rms_since(worker: &RecordingWorker, seq: u64) -> f64 {
    let rows: Vec<f64> =
        worker.calls().iter().filter(|c| c.kind == CallKind::Online && c.seq >= seq).flat_map(|c| c.data.clone()).collect();
    rms(&rows)
}

#[test]
fn rows_above_the_calibration_raise_the_pad_scale() {
    let (d_in, d_out, rows) = (64, 16, 8);
    let shapes = [(op(), d_in, d_out)];
    let mut worker = RecordingWorker::random(&shapes, 21);
    // Calibration claims s_c = 1e-3; real rows have RMS 1 in the first half
    // of the channels and 1e-4 in the second.
    let mut remo = Remo::<f64>::new(setup(&shapes, 1e-3), RemoParams::with_kappa(100.0)).unwrap();
    let mut x = gaussian(rows, d_in, 1.0, 22);
    x.chunks_exact_mut(d_in).for_each(|r| r[d_in / 2..].iter_mut().for_each(|v| *v *= 1e-4));
    let mut out = vec![0.0f32; rows * d_out];
    remo.matmul(&mut worker, op(), rows, (&to_f32(&x)[..]).into(), (&mut out[..]).into()).unwrap();

    let pool = remo.pools().pool(op()).unwrap();
    let scales = pool.channel_scales().scales();
    assert!(scales[..d_in / 2].iter().all(|&s| s > 0.3), "large channels not raised: {:?}", &scales[..4]);
    assert!(scales[d_in / 2..].iter().all(|&s| s == 1e-3), "small channels must keep their scale");
    assert_eq!(pool.stats().scale_raises, 1);
    // The very first call is already masked at the raised scale: σ ≈ κ·1 on
    // half the channels, so the received rows have RMS ≈ 100/√2, not 0.1.
    let seen = online_rms_since(&worker, 0);
    assert!(seen > 30.0, "online rows were masked at the stale scale (RMS {seen})");
    // And the product is still exact.
    let want = worker.exact(op(), &to_f64(&to_f32(&x)), rows).unwrap();
    assert!(rel_err(&to_f64(&out), &want) < 1e-6);
}

#[test]
fn pooled_pads_at_a_stale_scale_are_flushed() {
    let (d_in, d_out, rows) = (32, 8, 4);
    let shapes = [(op(), d_in, d_out)];
    let mut worker = RecordingWorker::random(&shapes, 23);
    let params = RemoParams { kappa: 100.0, low_water: 10, ..RemoParams::default() };
    let mut remo = Remo::<f64>::new(setup(&shapes, 1.0), params).unwrap();
    remo.idle(&mut worker, Duration::from_secs(60)).unwrap();
    let pooled = remo.pools().available(op());
    assert_eq!(pooled, 48);
    let mut out = vec![0.0f32; rows * d_out];

    // RMS 3: raised, but within the stale ratio (4): pooled pads stay.
    let x = vec![3.0f32; rows * d_in];
    remo.matmul(&mut worker, op(), rows, (&x[..]).into(), (&mut out[..]).into()).unwrap();
    let s = remo.pools().pool(op()).unwrap().stats();
    assert_eq!((s.flushes, s.batches, s.pads_available), (0, 1, pooled - rows));

    // RMS 10 > 4 × 1: the pool is flushed and refilled at scale 10.
    let seq = worker.calls().len() as u64;
    let x = vec![10.0f32; rows * d_in];
    remo.matmul(&mut worker, op(), rows, (&x[..]).into(), (&mut out[..]).into()).unwrap();
    let s = remo.pools().pool(op()).unwrap().stats();
    assert_eq!((s.flushes, s.batches, s.scale_raises), (1, 2, 2));
    assert_eq!(s.pads_discarded, 2 * 16 + (pooled - rows) as u64);
    let seen = online_rms_since(&worker, seq);
    assert!(seen > 500.0, "masked at the stale scale: RMS {seen}, expected ≈ κ·10 = 1000");
    assert!(out
        .iter()
        .zip(worker.exact(op(), &vec![10.0; rows * d_in], rows).unwrap())
        .all(|(o, w)| (f64::from(*o) - w).abs() < 1e-4 * w.abs().max(1.0)));
}
