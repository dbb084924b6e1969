//! The seam between the weight-free forward pass and the weight matrices.
//! Every weight-matrix product of the model goes through `Linear`: the
//! plain in-process backend here, or the ReMO remote backend of the CVM.

use std::sync::Arc;

use talaria_kernels::cpu::{matmul, matmul_f64};
use talaria_models::{OpId, Progress, Unit, WorkerWeights};

use talaria_kernels::{mixed, Precision, Rows, RowsMut};

pub trait Linear: Send {
    /// `out (rows × d_out) = x (rows × d_in) · Wᵀ` for the weight `id`
    /// (the caller has applied the norm gain), on rows of either precision
    /// (`out` in the same one). The engine sends rows of `precision()`.
    fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()>;

    /// The activations this backend wants: `F64` for the exact backends, so
    /// the whole weight-free half runs in f64 around them (`Precision`).
    fn precision(&self) -> Precision {
        Precision::F32
    }

    /// A short name for logs ("plain-local", "remo", …).
    fn name(&self) -> String;

    /// Background work while no step is pending (ReMO pad refills). Returns
    /// whether anything was done, so callers can go idle when not.
    fn idle(&mut self, _budget: std::time::Duration) -> anyhow::Result<bool> {
        Ok(false)
    }

    /// Work that must keep pace with a busy engine, run after each step once
    /// its outputs are delivered (ReMO: pad refills paced to consumption,
    /// so no step has to make a whole round of them).
    fn after_step(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    /// How full the backend's ahead-of-time work is, 0 to 1 (ReMO: the pad
    /// pools against their low-water marks), for the serving log; `None`
    /// when it has none.
    fn background_fill(&self) -> Option<f64> {
        None
    }

    /// Runs the ahead-of-time work until there is none left (ReMO: fills
    /// the pad pools), with a progress bar while the pools are below their
    /// marks.
    fn fill_ahead(&mut self) -> anyhow::Result<()> {
        let slice = std::time::Duration::from_millis(250);
        let progress = self
            .background_fill()
            .filter(|&f| f < 1.0)
            .map(|_| Progress::new(format!("[{}] filling the pad pools", self.name()), 1000, Unit::Permille));
        while self.idle(slice)? {
            if let Some(p) = &progress {
                p.set((self.background_fill().unwrap_or(1.0).min(1.0) * 1000.0) as u64);
            }
        }
        if let Some(p) = &progress {
            p.set(1000);
        }
        Ok(())
    }

    /// A few lines for a human at the end of a run (ReMO: pools, refill
    /// phases, leakage bound); `None` when there is nothing to say.
    fn summary(&self) -> Option<String> {
        None
    }

    /// What a masking backend has sent and checked so far, over every
    /// worker session (for `/metrics`); `None` for an unmasked backend.
    fn masking_counters(&self) -> Option<MaskingCounters> {
        None
    }
}

/// Running totals of a masking backend: the rows it sent, the dummy rows
/// its row buckets added, and the CVM time spent verifying answers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaskingCounters {
    pub online_rows: u64,
    pub dummy_rows: u64,
    /// Checking online answers, on the steps' critical path.
    pub online_check: std::time::Duration,
    /// Every check, pad batches and their references included.
    pub all_checks: std::time::Duration,
    /// Waiting for the worker's answers, every call (its compute and the
    /// transport; the CVM's own writing and reading of rows excluded).
    pub worker_wait: std::time::Duration,
    /// Pad batches' CVM time on the engine thread (all their stages, or
    /// with pad threads only moving `U` and `U·W`), worker wait excluded.
    pub pad_engine: std::time::Duration,
    /// Pad batches' stages run on the pad threads, off the engine thread.
    pub pad_threads: std::time::Duration,
}

impl std::ops::Add for MaskingCounters {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            online_rows: self.online_rows + o.online_rows,
            dummy_rows: self.dummy_rows + o.dummy_rows,
            online_check: self.online_check + o.online_check,
            all_checks: self.all_checks + o.all_checks,
            worker_wait: self.worker_wait + o.worker_wait,
            pad_engine: self.pad_engine + o.pad_engine,
            pad_threads: self.pad_threads + o.pad_threads,
        }
    }
}

/// How long the pool keeps polling after a local linear call: longer than
/// the gap between two calls of a step, short enough to park soon after.
const POOL_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Unprotected in-process backend: the baseline and the reference.
pub struct LocalLinear {
    weights: Arc<WorkerWeights>,
    /// `F32`: f32 activations and accumulation, the fast plain engine.
    /// `F64`: rows accumulated in f64 like the worker's exact mode, with
    /// the engine's activations in f64 too: the reference the confidential
    /// mode must reproduce.
    precision: Precision,
}

impl LocalLinear {
    pub fn new(weights: Arc<WorkerWeights>) -> Self {
        Self { weights, precision: Precision::F32 }
    }

    pub fn exact(weights: Arc<WorkerWeights>) -> Self {
        Self { weights, precision: Precision::F64 }
    }
}

impl Linear for LocalLinear {
    fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        let w = self.weights.get(id).ok_or_else(|| anyhow::anyhow!("no weight for {id}"))?;
        anyhow::ensure!(x.len() == rows * w.cols && out.len() == rows * w.rows, "{id}: shape mismatch");
        // In-process, nothing else needs this CPU between the step's many
        // small parallel kernels: keep the pool polling instead of parking
        // (decode batch 1: +11–14 %, bench throughput A/B).
        talaria_kernels::cpu::keep_pool_warm(POOL_LINGER);
        match (x, out) {
            (Rows::F32(x), RowsMut::F32(out)) if self.precision == Precision::F32 => matmul(x, rows, w, out),
            (Rows::F32(x), RowsMut::F32(out)) => {
                let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                let mut yd = vec![0f64; out.len()];
                matmul_f64(&xd, rows, w, &mut yd);
                out.iter_mut().zip(&yd).for_each(|(o, &y)| *o = y as f32);
            }
            (Rows::F64(x), RowsMut::F64(out)) => matmul_f64(x, rows, w, out),
            (x, out) => return Err(mixed(x, &out)),
        }
        Ok(())
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn name(&self) -> String {
        match self.precision {
            Precision::F32 => "plain-local".into(),
            Precision::F64 => "plain-local-f64".into(),
        }
    }
}
