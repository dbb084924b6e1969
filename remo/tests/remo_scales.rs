//! Channel scales are fixed by the public calibration: rows larger than it
//! are scaled down privately (and their product scaled back), the pad σ
//! never moves, and the worker's view does not depend on private magnitudes.

mod support;

use support::*;
use talaria_models::{Op, OpId};
use talaria_remo::{CallKind, MaskScheme, Remo, RemoParams};

fn op() -> OpId {
    OpId::new(1, Op::Down)
}

/// RMS of each row the worker received in calls of `kind`.
fn row_rms(worker: &RecordingWorker, kind: CallKind) -> Vec<f64> {
    worker.calls().iter().filter(|c| c.kind == kind).flat_map(|c| (0..c.rows).map(|i| rms(c.row(i))).collect::<Vec<_>>()).collect()
}

/// The mean column norm of each pad batch the worker received (one
/// sample per batch: the columns of a batch share its mixing, so they are
/// not independent samples).
fn pad_batch_column_norms(worker: &RecordingWorker) -> Vec<f64> {
    worker
        .calls()
        .iter()
        .filter(|c| c.kind == CallKind::PadBatch)
        .map(|c| (0..c.cols).map(|j| (0..c.rows).map(|i| c.row(i)[j].powi(2)).sum::<f64>().sqrt()).sum::<f64>() / c.cols as f64)
        .collect()
}

/// Welch's t statistic of two samples.
fn welch_t(a: &[f64], b: &[f64]) -> f64 {
    let stats = |v: &[f64]| {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        (m, v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0), n)
    };
    let ((ma, va, na), (mb, vb, nb)) = (stats(a), stats(b));
    (ma - mb) / (va / na + vb / nb).sqrt()
}

#[test]
fn rows_above_the_calibration_are_scaled_down_privately_and_sigma_never_moves() {
    let (d_in, d_out, rows) = (64, 16, 8);
    let shapes = [(op(), d_in, d_out)];
    let mut worker = RecordingWorker::random(&shapes, 21);
    // Calibration claims s_c = 1e-3; real rows have RMS 1 in the first half
    // of the channels and 1e-4 in the second: a whitened energy of ~5e5.
    let mut remo = Remo::<f64>::new(setup(&shapes, 1e-3), RemoParams::with_kappa(100.0)).unwrap();
    let mut x = gaussian(rows, d_in, 1.0, 22);
    x.chunks_exact_mut(d_in).for_each(|r| r[d_in / 2..].iter_mut().for_each(|v| *v *= 1e-4));
    let mut out = vec![0.0f32; rows * d_out];
    remo.matmul(&mut worker, op(), rows, (&to_f32(&x)[..]).into(), (&mut out[..]).into()).unwrap();

    let pool = remo.pools().pool(op()).unwrap();
    assert!(pool.channel_scales().scales().iter().all(|&s| s == 1e-3), "σ must never follow private rows");
    assert_eq!(pool.stats().rows_rescaled, rows as u64);
    // The worker sees pads at κ·s = 0.1 and rows scaled to within the
    // budget (whitened energy ≤ 1, i.e. RMS ≤ 1e-3): RMS ≈ 0.1, not ≈ 0.7.
    let seen = rms(&worker.calls().iter().filter(|c| c.kind == CallKind::Online).flat_map(|c| c.data.clone()).collect::<Vec<_>>());
    assert!((0.09..0.11).contains(&seen), "online rows RMS {seen}, expected ≈ κ·s = 0.1");
    // And the product is still exact: the factors are powers of two.
    let want = worker.exact(op(), &to_f64(&to_f32(&x)), rows).unwrap();
    assert!(rel_err(&to_f64(&out), &want) < 1e-6, "{}", rel_err(&to_f64(&out), &want));
}

/// Two sessions whose private inputs differ only in the magnitude of some
/// outlier rows: the worker gets the same sequence of calls, and a
/// two-sample test cannot tell their pad batches' column norms or their
/// online rows' RMS apart. (With σ following the data, the outliers raised
/// every later pad batch's columns ~1000×.)
#[test]
fn the_workers_view_does_not_depend_on_private_outlier_magnitudes() {
    let (d_in, d_out, rows, calls) = (64, 16, 8, 120);
    let shapes = [(op(), d_in, d_out)];
    let session = |outlier: f64, scale: f64| {
        let mut worker = RecordingWorker::random(&shapes, 31);
        let params = RemoParams { low_water: 32, ..RemoParams::with_kappa(100.0) };
        let mut remo = Remo::<f64>::new(setup(&shapes, scale), params).unwrap();
        for call in 0..calls {
            let mut x = gaussian(rows, d_in, 0.3, 100 + call);
            // Rows 1, 4 and 6 of every call are outliers in the second session.
            for r in [1, 4, 6] {
                x[r * d_in..(r + 1) * d_in].iter_mut().for_each(|v| *v *= outlier);
            }
            let mut out = vec![0.0f64; rows * d_out];
            remo.matmul(&mut worker, op(), rows, (&x[..]).into(), (&mut out[..]).into()).unwrap();
            let want = worker.exact(op(), &x, rows).unwrap();
            assert!(rel_err(&out, &want) < 1e-9, "outlier {outlier}: call {call} off by {}", rel_err(&out, &want));
            remo.idle(&mut worker, std::time::Duration::from_secs(10)).unwrap();
        }
        worker
    };
    let (plain, outliers) = (session(1.0, 1.0), session(1000.0, 1.0));
    let shape = |w: &RecordingWorker| w.calls().iter().map(|c| (c.kind, c.id, c.rows, c.cols)).collect::<Vec<_>>();
    assert_eq!(shape(&plain), shape(&outliers), "the call sequence must not depend on the data");
    assert!(plain.calls().iter().filter(|c| c.kind == CallKind::PadBatch).count() >= 10);

    for (what, a, b) in [
        ("pad-batch column norms", pad_batch_column_norms(&plain), pad_batch_column_norms(&outliers)),
        ("online row RMS", row_rms(&plain, CallKind::Online), row_rms(&outliers, CallKind::Online)),
    ] {
        let t = welch_t(&a, &b);
        let ratio = b.iter().sum::<f64>() / a.iter().sum::<f64>();
        println!("{what}: {} vs {} samples, Welch t = {t:.2}, mean ratio {ratio:.4}", a.len(), b.len());
        assert!(t.abs() < 4.5, "{what}: the sessions differ (t = {t})");
        assert!((ratio - 1.0).abs() < 0.1, "{what}: mean ratio {ratio}");
    }
    // The same test tells σ 1.5× apart: it has the power to see a σ that
    // follows the data.
    let wider = session(1.0, 1.5);
    let t = welch_t(&pad_batch_column_norms(&plain), &pad_batch_column_norms(&wider));
    assert!(t.abs() > 4.5, "a 1.5× σ went unseen (t = {t})");
}
