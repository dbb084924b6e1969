//! Every answer is checked (docs/DESIGN.md §3, "Verification"): a worker
//! that changes one element of one row, adds a bias to every row or scales
//! an answer is caught, on pad batches (the reference batch included),
//! online calls and calibration calls alike, and honest answers pass with a
//! wide margin in both precisions.

mod support;

use support::*;
use talaria_kernels::{Precision, Rows, RowsMut};
use talaria_models::{Op, OpId};
use talaria_remo::{AnswerChecks, CallKind, MaskScheme, Remo, RemoError, RemoParams, Tolerance, WorkerCall, WorkerMatmul};

fn down() -> OpId {
    OpId::new(0, Op::Down)
}

#[derive(Clone, Copy, Debug)]
enum Tamper {
    /// One element of one row, off by this fraction of the row's norm.
    Element(f64),
    /// The same vector (this fraction of the mean row norm per element)
    /// added to every row.
    Bias(f64),
    /// Every value times `1 + ε`.
    Scale(f64),
}

/// An honest worker whose answer to one call (0-based, counting every
/// call) is tampered with.
struct Lying {
    inner: RecordingWorker,
    calls: usize,
    at: usize,
    tamper: Tamper,
    tampered: Option<CallKind>,
}

impl Lying {
    fn new(inner: RecordingWorker, at: usize, tamper: Tamper) -> Self {
        Self { inner, calls: 0, at, tamper, tampered: None }
    }
}

fn tamper_rows(y: &mut [f64], d_out: usize, t: Tamper) {
    let rows = y.len() / d_out;
    let mean_norm = (y.iter().map(|v| v * v).sum::<f64>() / rows as f64).sqrt();
    match t {
        Tamper::Element(f) => {
            let r = rows / 2;
            let row_norm = y[r * d_out..(r + 1) * d_out].iter().map(|v| v * v).sum::<f64>().sqrt();
            y[r * d_out + d_out / 3] += f * row_norm;
        }
        Tamper::Bias(f) => y
            .chunks_exact_mut(d_out)
            .for_each(|row| row.iter_mut().enumerate().for_each(|(c, v)| *v += f * mean_norm * ((c % 7) as f64 - 3.0) / d_out as f64)),
        Tamper::Scale(e) => y.iter_mut().for_each(|v| *v *= 1.0 + e),
    }
}

impl WorkerMatmul for Lying {
    fn call(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()> {
        let n = self.calls;
        self.calls += 1;
        if n != self.at {
            return self.inner.call(call, fill, take);
        }
        self.tampered = Some(call.kind);
        let tamper = self.tamper;
        self.inner.call(call, fill, &mut |y| match y {
            Rows::F64(y) => {
                let mut y = y.to_vec();
                tamper_rows(&mut y, call.d_out, tamper);
                take(Rows::F64(&y));
            }
            Rows::F32(y) => {
                let mut y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
                tamper_rows(&mut y, call.d_out, tamper);
                take(Rows::F32(&to_f32(&y)));
            }
        })
    }
}

fn rejected(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref::<RemoError>(), Some(RemoError::AnswerRejected { .. })))
}

/// Runs `calls` online calls of `rows` rows through ReMO in `precision`
/// over `worker`, pad batches finished on `pad_threads` threads (0: on
/// this one); returns the first error.
fn run(worker: &mut dyn WorkerMatmul, precision: Precision, rows: usize, calls: u64, pad_threads: usize) -> (anyhow::Result<()>, f64) {
    let (d_in, d_out) = (96, 64);
    let shapes = [(down(), d_in, d_out)];
    let params = RemoParams { pad_threads, ..RemoParams::with_kappa(talaria_remo::default_kappa(precision)) };
    let mut scheme: Box<dyn MaskScheme> = match precision {
        Precision::F64 => Box::new(Remo::<f64>::new(setup(&shapes, 1.0), params).unwrap()),
        Precision::F32 => Box::new(Remo::<f32>::new(setup(&shapes, 1.0), params).unwrap()),
    };
    for call in 0..calls {
        let x = gaussian(rows, d_in, 0.3, call);
        let mut out = vec![0.0; rows * d_out];
        if let Err(e) = scheme.matmul(worker, down(), rows, (&x[..]).into(), (&mut out[..]).into()) {
            return (Err(e), 0.0);
        }
    }
    let checks = scheme.report().unwrap().checks;
    (Ok(()), checks.worst_of(Tolerance::of(precision)))
}

#[test]
fn honest_answers_pass_with_a_wide_margin() {
    for (precision, pad_threads) in [(Precision::F64, 0), (Precision::F32, 0), (Precision::F64, 2), (Precision::F32, 2)] {
        // 40 calls of 5 rows (bucket 8): 320 pads, four pad batches.
        let mut worker = RecordingWorker::random(&[(down(), 96, 64)], 1).record_data(false);
        let (result, worst) = run(&mut worker, precision, 5, 40, pad_threads);
        result.unwrap();
        println!("{precision:?}, {pad_threads} pad threads: worst honest residual {worst:.3e} of the threshold");
        assert!(worst < 1e-2, "{precision:?}: honest residuals reach {worst:e} of the threshold");
    }
}

#[test]
fn every_tampering_is_caught_on_every_kind_of_call() {
    // Call 0 is the reference batch, call 1 an online call, and with 5 rows
    // per call (8 sent) and 96 usable pads per batch, call 13 is the second
    // pad batch.
    for precision in [Precision::F64, Precision::F32] {
        // Sizes far below a meaningful change of the true product in each
        // mode (the masked answer is κ times larger than it).
        let small = match precision {
            Precision::F64 => 1e-6,
            Precision::F32 => 1e-2,
        };
        for tamper in [Tamper::Element(small), Tamper::Bias(small), Tamper::Scale(small)] {
            // With pad threads, the second batch is finished (and checked)
            // on one of them, and the verdict is taken when its pads are.
            for (at, kind, pad_threads) in
                [(0, CallKind::PadBatch, 0), (1, CallKind::Online, 0), (13, CallKind::PadBatch, 0), (13, CallKind::PadBatch, 2)]
            {
                let mut worker = Lying::new(RecordingWorker::random(&[(down(), 96, 64)], 2).record_data(false), at, tamper);
                let (result, _) = run(&mut worker, precision, 5, 30, pad_threads);
                assert_eq!(worker.tampered, Some(kind), "{precision:?} {tamper:?}: call {at} is a {kind:?} call");
                let err = result
                    .expect_err(&format!("{precision:?} {tamper:?} at call {at} ({kind:?}, {pad_threads} pad threads) went unnoticed"));
                assert!(rejected(&err), "{precision:?} {tamper:?} at call {at}: {err:#}");
            }
        }
    }
}

#[test]
fn a_lying_reference_batch_is_caught_at_the_next_batch() {
    // Scaling is linear: the first batch alone is consistent with the
    // weights (1 + ε)·W, so its own fit passes, and the honest second batch
    // then disagrees with the reference. At 1e160 every value of the lie is
    // finite but the reference's squared norm is not: a threshold of ∞
    // passed every later answer of the op, the honest and the lying alike.
    for eps in [1e-3, 1e150, 1e160] {
        let mut worker = Lying::new(RecordingWorker::random(&[(down(), 96, 64)], 3).record_data(false), 0, Tamper::Scale(eps));
        let d_in = 96;
        let mut remo = Remo::<f64>::new(setup(&[(down(), d_in, 64)], 1.0), RemoParams::default()).unwrap();
        let mut calls = 0;
        let err = loop {
            let x = gaussian(8, d_in, 0.3, calls);
            let mut out = vec![0.0; 8 * 64];
            if let Err(e) = remo.matmul(&mut worker, down(), 8, (&x[..]).into(), (&mut out[..]).into()) {
                break e;
            }
            calls += 1;
            assert!(calls < 20, "ε = {eps:e}: never caught");
        };
        assert!(rejected(&err), "ε = {eps:e}: {err:#}");
        let text = format!("{err:#}");
        assert!(text.contains("online call") || text.contains("pad_batch"), "ε = {eps:e}: {err:#}");
    }
}

#[test]
fn calibration_answers_are_checked_once_the_reference_exists() {
    let shapes = [(down(), 96, 64)];
    for tampered in [false, true] {
        let mut worker =
            Lying::new(RecordingWorker::random(&shapes, 4).record_data(false), if tampered { 1 } else { usize::MAX }, Tamper::Element(1.0));
        let setup = setup(&shapes, 1.0);
        let mut checks = AnswerChecks::for_setup(&setup).unwrap();
        // Two plain calls before any pad batch: kept, not yet checkable.
        for seed in 0..2 {
            let x = to_f32(&gaussian(6, 96, 1.0, seed));
            let mut y = vec![0f32; 6 * 64];
            // The calibration rows are f32; the call is exact (f64).
            checks.plain_matmul(&mut worker, down(), 6, Rows::F32(&x), RowsMut::F32(&mut y)).unwrap();
        }
        let mut remo = Remo::<f64>::with_checks(setup, RemoParams::default(), checks).unwrap();
        let result = remo.warm_up(&mut worker);
        assert_eq!(result.is_err(), tampered, "{result:?}");
        if let Err(e) = result {
            assert!(format!("{e:#}").contains("plain call"), "{e:#}");
        }
    }
}
