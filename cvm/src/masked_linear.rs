//! What serving code may use: `ServingScheme` has exactly three variants,
//! ReMO exact, ReMO fast and the plain baseline, so no insecure reference
//! scheme can be selected on the serving path. `MaskedLinear` plugs it into
//! the engine.

use std::time::Duration;

use talaria_engine::Linear;
use talaria_kernels::{Precision, Rows, RowsMut};
use talaria_models::OpId;
use talaria_remo::{IdleProgress, MaskScheme, PlainScheme, Remo, RemoError, RemoParams, RemoReport, RemoSetup, WorkerMatmul};

use crate::worker::WorkerLink;

pub enum ServingScheme {
    /// The exact mode (f64 pads).
    Remo(Box<Remo<f64>>),
    /// The fast mode (f32 pads, smaller κ).
    RemoFast(Box<Remo<f32>>),
    Plain(PlainScheme),
}

impl ServingScheme {
    /// ReMO with pads of `precision`.
    pub fn remo(precision: Precision, setup: RemoSetup, params: RemoParams) -> Result<Self, RemoError> {
        Ok(match precision {
            Precision::F64 => Self::Remo(Box::new(Remo::new(setup, params)?)),
            Precision::F32 => Self::RemoFast(Box::new(Remo::new(setup, params)?)),
        })
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
    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        self.inner_mut().matmul(worker, id, rows, x, out)
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
pub struct MaskedLinear<W: WorkerMatmul + Send = WorkerLink> {
    scheme: ServingScheme,
    worker: W,
}

impl<W: WorkerMatmul + Send> MaskedLinear<W> {
    pub fn new(scheme: ServingScheme, worker: W) -> Self {
        Self { scheme, worker }
    }

    /// Pad refills while the worker has nothing else to do.
    pub fn idle(&mut self, budget: Duration) -> anyhow::Result<IdleProgress> {
        self.scheme.idle(&mut self.worker, budget)
    }

    pub fn report(&self) -> Option<RemoReport> {
        self.scheme.report()
    }

    pub fn scheme(&self) -> &ServingScheme {
        &self.scheme
    }

    pub fn worker(&self) -> &W {
        &self.worker
    }

    pub fn worker_mut(&mut self) -> &mut W {
        &mut self.worker
    }
}

impl<W: WorkerMatmul + Send> Linear for MaskedLinear<W> {
    fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        self.scheme.matmul(&mut self.worker, id, rows, x, out)
    }

    fn precision(&self) -> Precision {
        self.scheme.precision()
    }

    fn name(&self) -> String {
        format!("{}-remote", self.scheme.name())
    }

    fn idle(&mut self, budget: Duration) -> anyhow::Result<bool> {
        Ok(MaskedLinear::idle(self, budget)?.batches_made > 0)
    }

    fn after_step(&mut self) -> anyhow::Result<()> {
        self.scheme.after_step(&mut self.worker)
    }

    fn summary(&self) -> Option<String> {
        self.report().map(|r| r.to_string())
    }

    fn background_fill(&self) -> Option<f64> {
        let r = self.report()?;
        let low_water = match &self.scheme {
            ServingScheme::Remo(s) => s.params().low_water,
            ServingScheme::RemoFast(s) => s.params().low_water,
            ServingScheme::Plain(_) => return None,
        };
        Some((r.pads_available as f64 / (r.ops.len() * low_water).max(1) as f64).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talaria_kernels::cpu::matmul_f64;
    use talaria_kernels::{WeightDType, WeightMatrix};
    use talaria_models::Op;
    use talaria_remo::{OpSpec, WorkerCall};

    /// An honest in-process worker holding one f32 weight.
    struct Honest(WeightMatrix);

    impl WorkerMatmul for Honest {
        fn call(&mut self, c: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()> {
            let mut y = vec![0f64; c.rows * c.d_out];
            match c.precision {
                Precision::F64 => {
                    let mut x = vec![0f64; c.rows * c.d_in];
                    fill(RowsMut::F64(&mut x));
                    matmul_f64(&x, c.rows, &self.0, &mut y);
                    take(Rows::F64(&y));
                }
                Precision::F32 => {
                    let mut x = vec![0f32; c.rows * c.d_in];
                    fill(RowsMut::F32(&mut x));
                    let xd: Vec<f64> = x.iter().map(|&v| v as f64).collect();
                    matmul_f64(&xd, c.rows, &self.0, &mut y);
                    take(Rows::F32(&y.iter().map(|&v| v as f32).collect::<Vec<_>>()));
                }
            }
            Ok(())
        }
    }

    #[test]
    fn the_serving_linear_runs_remo_or_plain_only() {
        let (id, d_in, d_out, rows) = (OpId::new(0, Op::Qkv), 32, 24, 4);
        let w: Vec<f32> = (0..d_in * d_out).map(|i| ((i * 37 % 101) as f32 - 50.0) / 200.0).collect();
        let weight = || WeightMatrix::from_f32(d_out, d_in, w.clone(), WeightDType::F32);
        let x: Vec<f32> = (0..rows * d_in).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let mut want = vec![0f64; rows * d_out];
        matmul_f64(&x.iter().map(|&v| v as f64).collect::<Vec<_>>(), rows, &weight(), &mut want);
        let setup = RemoSetup::new([(id, OpSpec { d_in, d_out, channel_scales: vec![1.0; d_in] })].into()).unwrap();
        let schemes = [ServingScheme::remo(Precision::F64, setup, RemoParams::default()).unwrap(), ServingScheme::plain()];
        for (scheme, (name, secure)) in schemes.into_iter().zip([("remo-remote", true), ("plain-remote", false)]) {
            assert_eq!(scheme.secure(), secure);
            let mut linear = MaskedLinear::new(scheme, Honest(weight()));
            assert_eq!(linear.name(), name);
            let mut out = vec![0.0f32; rows * d_out];
            linear.forward(id, rows, Rows::F32(&x), RowsMut::F32(&mut out)).unwrap();
            let err = out.iter().zip(&want).map(|(&o, &w)| (o as f64 - w).abs()).fold(0.0, f64::max);
            assert!(err < 1e-5, "{name}: max error {err:e}");
            assert_eq!(linear.report().is_some(), secure);
        }
    }
}
