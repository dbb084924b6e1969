//! `Remo`: the secure masking scheme (docs/DESIGN.md §3) behind `MaskScheme`.

use std::time::Duration;

use talaria_models::OpId;

use crate::accounting::report::RemoReport;
use crate::error::RemoError;
use crate::online::masked_matmul::{masked_matmul, OnlineScratch};
use crate::online::scheme::{IdleProgress, MaskScheme};
use crate::online::worker::{check_finite, WorkerMatmul};
use crate::pads::pools::PadPools;
use crate::pads::secure_rng::SecureRng;
use crate::setup::RemoSetup;
use crate::verify::{AnswerChecks, CheckStats};
use talaria_kernels::{mixed, Float, Precision, Rows, RowsMut};

pub use crate::params::RemoParams;

/// `P` is the pad type: `f64` for the exact mode, `f32` for the fast one.
pub struct Remo<P: Float = f64> {
    setup: RemoSetup,
    pools: PadPools<P>,
    /// For the per-call row permutations.
    rng: SecureRng,
    scratch: OnlineScratch,
    /// The private per-row factors of the current call (CVM memory only).
    factors: Vec<f64>,
    online_calls: u64,
    online_rows: u64,
    /// Rows sent to fill calls up to their bucket.
    dummy_rows: u64,
}

impl<P: Float> Remo<P> {
    /// With fresh answer checks.
    pub fn new(setup: RemoSetup, params: RemoParams) -> Result<Self, RemoError> {
        let checks = AnswerChecks::for_setup(&setup)?;
        Self::with_checks(setup, params, checks)
    }

    /// With the session's answer checks (which may hold calibration answers
    /// still to be checked).
    pub fn with_checks(setup: RemoSetup, params: RemoParams, checks: AnswerChecks) -> Result<Self, RemoError> {
        let pools = PadPools::new(&setup, params, checks)?;
        Ok(Self {
            setup,
            pools,
            rng: SecureRng::from_os()?,
            scratch: OnlineScratch::default(),
            factors: Vec::new(),
            online_calls: 0,
            online_rows: 0,
            dummy_rows: 0,
        })
    }

    pub fn params(&self) -> &RemoParams {
        self.pools.params()
    }

    pub fn kappa(&self) -> f64 {
        self.params().kappa
    }

    pub fn setup(&self) -> &RemoSetup {
        &self.setup
    }

    pub fn pools(&self) -> &PadPools<P> {
        &self.pools
    }

    /// For the engine: make sure `n` pads of `id` are ready before a step.
    pub fn ensure(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, n: usize) -> anyhow::Result<()> {
        self.pools.ensure(worker, id, n)
    }

    /// Fills every pool up to its low-water mark (e.g. at start-up).
    pub fn warm_up(&mut self, worker: &mut dyn WorkerMatmul) -> anyhow::Result<IdleProgress> {
        self.pools.refill_idle(worker, Duration::MAX)
    }

    fn masked<X: Float, O: Float>(
        &mut self,
        worker: &mut dyn WorkerMatmul,
        id: OpId,
        x: &[X],
        rows: usize,
        out: &mut [O],
    ) -> anyhow::Result<()> {
        let spec = self.setup.get(id).ok_or(RemoError::UnknownOp { id })?;
        let (d_in, d_out) = (spec.d_in, spec.d_out);
        if x.len() != rows * d_in {
            return Err(RemoError::Shape { id, what: "input rows", got: x.len(), expected: rows * d_in }.into());
        }
        if out.len() != rows * d_out {
            return Err(RemoError::Shape { id, what: "output", got: out.len(), expected: rows * d_out }.into());
        }
        if rows == 0 {
            return Ok(());
        }
        check_finite(id, "input rows", x)?;
        self.pools.rescale(id, x, rows, &mut self.factors)?;
        let sent = self.params().row_buckets.bucket(rows);
        self.pools.ensure(worker, id, sent)?;
        let pads = self.pools.take(id, sent)?;
        self.pools.decoys(id, sent - rows, &mut self.rng, &mut self.scratch.decoys)?;
        let check = self.pools.check_mut(id)?;
        let called = masked_matmul(worker, id, x, rows, pads, &self.factors, check, &mut self.rng, &mut self.scratch, out);
        // The rows' private factors say which rows were large.
        crate::pads::wipe::wipe(&mut self.factors);
        called?;
        self.pools.prefetch_after(id);
        self.online_calls += 1;
        self.online_rows += rows as u64;
        self.dummy_rows += (sent - rows) as u64;
        Ok(())
    }

    /// Real rows sent, dummy rows added by the row buckets, and the answer
    /// checks so far: the per-step counters, without a whole report.
    pub fn traffic(&self) -> (u64, u64, CheckStats) {
        (self.online_rows, self.dummy_rows, self.pools.total_stats().checks)
    }

    /// What pad batches cost the CVM: on the engine thread (the worker's
    /// wait excluded), and the pad threads' CPU time.
    pub fn pad_costs(&self) -> (Duration, Duration) {
        let t = self.pools.total_stats();
        (t.refill_time.saturating_sub(t.worker_time), self.pools.pad_thread_cpu())
    }

    /// Pools, statistics and the leakage bound, for the CLI.
    pub fn remo_report(&self) -> RemoReport {
        RemoReport::new(&self.setup, &self.pools, self.online_calls, self.online_rows, self.dummy_rows)
    }
}

impl<P: Float> MaskScheme for Remo<P> {
    fn name(&self) -> &str {
        match P::PRECISION {
            Precision::F64 => "remo",
            Precision::F32 => "remo-fast",
        }
    }

    fn secure(&self) -> bool {
        true
    }

    /// Rows of either precision; they go out as `P` (rounded to f32 on the
    /// wire in the fast mode).
    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        match (x, out) {
            (Rows::F32(x), RowsMut::F32(out)) => self.masked(worker, id, x, rows, out),
            (Rows::F64(x), RowsMut::F64(out)) => self.masked(worker, id, x, rows, out),
            (x, out) => Err(mixed(x, &out)),
        }
    }

    fn idle(&mut self, worker: &mut dyn WorkerMatmul, budget: Duration) -> anyhow::Result<IdleProgress> {
        self.pools.refill_idle(worker, budget)
    }

    fn after_step(&mut self, worker: &mut dyn WorkerMatmul) -> anyhow::Result<()> {
        self.pools.refill_paced(worker).map(drop)
    }

    fn report(&self) -> Option<RemoReport> {
        Some(self.remo_report())
    }
}
