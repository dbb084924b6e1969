//! What serving code may use: `ServingScheme` has exactly two variants,
//! ReMO and the plain baseline, so no insecure reference scheme can be
//! selected on the serving path. `MaskedLinear` plugs it into the engine.

use std::time::Duration;

use talaria_engine::{through_f32, Linear, Precision};
use talaria_models::OpId;

use super::error::RemoError;
use super::pad_float::RemoPrecision;
use super::plain::PlainScheme;
use super::remo_scheme::{Remo, RemoParams};
use super::report::RemoReport;
use super::scheme::{IdleProgress, MaskScheme};
use super::setup::RemoSetup;
use super::worker::WorkerMatmul;

pub enum ServingScheme {
    /// The exact mode (f64 pads).
    Remo(Box<Remo>),
    /// The fast mode (f32 pads, smaller κ).
    RemoFast(Box<Remo<f32>>),
    Plain(PlainScheme),
}

impl ServingScheme {
    pub fn remo(setup: RemoSetup, params: RemoParams) -> Result<Self, RemoError> {
        Ok(Self::Remo(Box::new(Remo::new(setup, params)?)))
    }

    pub fn remo_with(precision: RemoPrecision, setup: RemoSetup, params: RemoParams) -> Result<Self, RemoError> {
        match precision {
            RemoPrecision::Exact => Self::remo(setup, params),
            RemoPrecision::Fast => Ok(Self::RemoFast(Box::new(Remo::new(setup, params)?))),
        }
    }

    pub fn plain() -> Self {
        Self::Plain(PlainScheme::new())
    }

    /// Exact ReMO runs f64 activations end to end (see `Precision`); fast
    /// ReMO and the plain baseline run the f32 engine.
    pub fn precision(&self) -> Precision {
        match self {
            Self::Remo(_) => Precision::F64,
            Self::RemoFast(_) | Self::Plain(_) => Precision::F32,
        }
    }

    /// The product on f64 rows (ReMO; the plain baseline goes through f32).
    pub fn matmul_f64(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, x: &[f64], rows: usize, out: &mut [f64]) -> anyhow::Result<()> {
        match self {
            Self::Remo(r) => r.matmul_f64(worker, id, x, rows, out),
            Self::RemoFast(r) => r.matmul_f64(worker, id, x, rows, out),
            Self::Plain(p) => through_f32(x, out, |x32, out32| p.matmul(worker, id, x32, rows, out32)),
        }
    }

    fn inner(&self) -> &dyn MaskScheme {
        match self {
            Self::Remo(r) => r.as_ref(),
            Self::RemoFast(r) => r.as_ref(),
            Self::Plain(p) => p,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn MaskScheme {
        match self {
            Self::Remo(r) => r.as_mut(),
            Self::RemoFast(r) => r.as_mut(),
            Self::Plain(p) => p,
        }
    }
}

impl MaskScheme for ServingScheme {
    fn name(&self) -> &str {
        self.inner().name()
    }
    fn secure(&self) -> bool {
        self.inner().secure()
    }
    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        self.inner_mut().matmul(worker, id, x, rows, out)
    }
    fn idle(&mut self, worker: &mut dyn WorkerMatmul, budget: Duration) -> anyhow::Result<IdleProgress> {
        self.inner_mut().idle(worker, budget)
    }
    fn after_step(&mut self, worker: &mut dyn WorkerMatmul) -> anyhow::Result<()> {
        self.inner_mut().after_step(worker)
    }
    fn report(&self) -> Option<RemoReport> {
        self.inner().report()
    }
}

/// The engine's `Linear` over a remote worker, masked by a serving scheme.
pub struct MaskedLinear {
    scheme: ServingScheme,
    worker: Box<dyn WorkerMatmul + Send>,
}

impl MaskedLinear {
    pub fn new(scheme: ServingScheme, worker: Box<dyn WorkerMatmul + Send>) -> Self {
        Self { scheme, worker }
    }

    /// Pad refills while the worker has nothing else to do.
    pub fn idle(&mut self, budget: Duration) -> anyhow::Result<IdleProgress> {
        self.scheme.idle(self.worker.as_mut(), budget)
    }

    pub fn report(&self) -> Option<RemoReport> {
        self.scheme.report()
    }

    pub fn scheme(&self) -> &ServingScheme {
        &self.scheme
    }
}

impl Linear for MaskedLinear {
    fn forward(&mut self, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        self.scheme.matmul(self.worker.as_mut(), id, x, rows, out)
    }

    fn precision(&self) -> Precision {
        self.scheme.precision()
    }

    fn forward_f64(&mut self, id: OpId, x: &[f64], rows: usize, out: &mut [f64]) -> anyhow::Result<()> {
        self.scheme.matmul_f64(self.worker.as_mut(), id, x, rows, out)
    }

    fn name(&self) -> String {
        format!("{}-remote", self.scheme.name())
    }

    fn idle(&mut self, budget: Duration) -> anyhow::Result<bool> {
        Ok(MaskedLinear::idle(self, budget)?.batches_made > 0)
    }

    fn after_step(&mut self) -> anyhow::Result<()> {
        self.scheme.after_step(self.worker.as_mut())
    }

    fn worker_busy(&mut self) -> Option<serde_json::Value> {
        self.worker.worker_busy()
    }

    fn summary(&self) -> Option<String> {
        self.report().map(|r| r.to_string())
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::json!({
            "scheme": self.scheme.name(),
            "remo": self.report().map(|r| serde_json::to_value(r).unwrap_or_default()),
            "link": self.worker.stats(),
        })
    }
}
