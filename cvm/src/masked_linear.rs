//! What serving code may use: `ServingScheme` has exactly three variants,
//! ReMO exact, ReMO fast and the plain baseline, so no insecure reference
//! scheme can be selected on the serving path. `MaskedLinear` plugs it into
//! the engine, and ends the worker session when the worker is caught lying
//! (the next step starts a new one through its `SessionStart`).

use std::time::Duration;

use talaria_engine::{Linear, MaskingCounters};
use talaria_kernels::{Precision, Rows, RowsMut};
use talaria_models::OpId;
use talaria_remo::{
    is_rejected_answer, AnswerChecks, IdleProgress, MaskScheme, PlainScheme, Remo, RemoError, RemoParams, RemoReport, RemoSetup,
    WorkerMatmul,
};
use tracing::{error, info};

use crate::worker::WorkerLink;
use crate::worker_wait::WaitTimed;

pub enum ServingScheme {
    /// The exact mode (f64 pads).
    Remo(Box<Remo<f64>>),
    /// The fast mode (f32 pads, smaller κ).
    RemoFast(Box<Remo<f32>>),
    Plain(PlainScheme),
}

impl ServingScheme {
    /// ReMO with pads of `precision`, checking answers with `checks` (which
    /// may hold calibration answers still to check).
    pub fn remo(precision: Precision, setup: RemoSetup, params: RemoParams, checks: AnswerChecks) -> Result<Self, RemoError> {
        Ok(match precision {
            Precision::F64 => Self::Remo(Box::new(Remo::with_checks(setup, params, checks)?)),
            Precision::F32 => Self::RemoFast(Box::new(Remo::with_checks(setup, params, checks)?)),
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

    /// `None` for the unmasked baseline.
    fn masking_counters(&self) -> Option<MaskingCounters> {
        let ((online_rows, dummy_rows, checks), (pad_engine, pad_threads)) = match self {
            Self::Remo(r) => (r.traffic(), r.pad_costs()),
            Self::RemoFast(r) => (r.traffic(), r.pad_costs()),
            Self::Plain(_) => return None,
        };
        Some(MaskingCounters {
            online_rows,
            dummy_rows,
            online_check: checks.online_time,
            all_checks: checks.time,
            // The link's, added by `MaskedLinear`.
            worker_wait: Duration::ZERO,
            pad_engine,
            pad_threads,
        })
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

/// Starts a session with a worker: calibration and a fresh scheme (fresh
/// secret check vectors, empty pools).
pub trait SessionStart<W>: Send {
    fn start(&mut self, worker: &mut W) -> anyhow::Result<ServingScheme>;
}

/// The engine's `Linear` over a remote worker, masked by a serving scheme.
pub struct MaskedLinear<W: WorkerMatmul + Send = WorkerLink> {
    /// `None` once a session ended, until the next call starts one.
    scheme: Option<ServingScheme>,
    worker: W,
    restart: Option<Box<dyn SessionStart<W>>>,
    /// Every session's (the engine's KV cache is built for it).
    precision: Precision,
    sessions_ended: u64,
    /// The counters of the sessions that ended.
    ended: Option<MaskingCounters>,
    /// Time spent waiting for the worker's answers, every session.
    worker_wait: Duration,
}

impl<W: WorkerMatmul + Send> MaskedLinear<W> {
    /// A session already started; it cannot be restarted once ended.
    pub fn new(scheme: ServingScheme, worker: W) -> Self {
        Self {
            precision: scheme.precision(),
            scheme: Some(scheme),
            worker,
            restart: None,
            sessions_ended: 0,
            ended: None,
            worker_wait: Duration::ZERO,
        }
    }

    /// A session already started, and every later one started by `restart`.
    pub fn restartable(scheme: ServingScheme, worker: W, restart: Box<dyn SessionStart<W>>) -> Self {
        Self {
            precision: scheme.precision(),
            scheme: Some(scheme),
            worker,
            restart: Some(restart),
            sessions_ended: 0,
            ended: None,
            worker_wait: Duration::ZERO,
        }
    }

    /// The current session's scheme and the worker, starting a new session
    /// if the last one ended.
    fn session(&mut self) -> anyhow::Result<(&mut ServingScheme, &mut W)> {
        if self.scheme.is_none() {
            let start = self.restart.as_mut().ok_or_else(|| anyhow::anyhow!("the worker session ended and cannot be restarted"))?;
            info!("starting a new worker session (calibration, then pad batches)");
            let scheme = start.start(&mut self.worker)?;
            anyhow::ensure!(scheme.precision() == self.precision, "a new worker session changed precision");
            self.scheme = Some(scheme);
        }
        Ok((self.scheme.as_mut().expect("just started"), &mut self.worker))
    }

    /// Runs `f` on the session; a rejected answer ends the session (the
    /// worker is not asked again in it, nothing it made is used again).
    /// The worker is timed (`WaitTimed`) for the CVM-side figures.
    fn in_session<T>(&mut self, f: impl FnOnce(&mut ServingScheme, &mut WaitTimed<'_, W>) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let result = self.session().map(drop).and_then(|()| {
            let Self { scheme, worker, worker_wait, .. } = self;
            let scheme = scheme.as_mut().expect("the session just started");
            f(scheme, &mut WaitTimed { inner: worker, wait: worker_wait })
        });
        result.map_err(|e| {
            if !is_rejected_answer(&e) {
                return e;
            }
            error!("{e:#}");
            self.worker.end_session();
            if let Some(m) = self.scheme.take().and_then(|s| s.masking_counters()) {
                self.ended = Some(self.ended.unwrap_or_default() + m);
            }
            self.sessions_ended += 1;
            e.context("the worker's answer failed verification: its session was ended, and a new one starts with the next step")
        })
    }

    /// Pad refills while the worker has nothing else to do.
    pub fn idle(&mut self, budget: Duration) -> anyhow::Result<IdleProgress> {
        self.in_session(|scheme, worker| scheme.idle(worker, budget))
    }

    pub fn report(&self) -> Option<RemoReport> {
        self.scheme.as_ref()?.report()
    }

    /// The current session's scheme (`None` between an ended session and
    /// the next).
    pub fn scheme(&self) -> Option<&ServingScheme> {
        self.scheme.as_ref()
    }

    /// Sessions ended because the worker was caught lying.
    pub fn sessions_ended(&self) -> u64 {
        self.sessions_ended
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
        self.in_session(|scheme, worker| scheme.matmul(worker, id, rows, x, out))
    }

    fn precision(&self) -> Precision {
        self.precision
    }

    fn name(&self) -> String {
        self.scheme.as_ref().map_or_else(|| "ended-session".into(), |s| format!("{}-remote", s.name()))
    }

    fn idle(&mut self, budget: Duration) -> anyhow::Result<bool> {
        // Below the marks with nothing made: batches were still being
        // finished on the pad threads, which is progress too.
        let progress = MaskedLinear::idle(self, budget)?;
        Ok(progress.batches_made > 0 || progress.pools_below_low_water > 0 || progress.buffers_reserved > 0 || progress.storage_pending)
    }

    fn after_step(&mut self) -> anyhow::Result<()> {
        self.in_session(|scheme, worker| scheme.after_step(worker))
    }

    fn summary(&self) -> Option<String> {
        self.report().map(|r| r.to_string())
    }

    fn masking_counters(&self) -> Option<MaskingCounters> {
        let current = self.scheme.as_ref().and_then(ServingScheme::masking_counters);
        let all = match (self.ended, current) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        all.map(|m| MaskingCounters { worker_wait: self.worker_wait, ..m })
    }

    fn background_fill(&self) -> Option<f64> {
        let low_water = match self.scheme.as_ref() {
            Some(ServingScheme::Remo(s)) => s.params().low_water,
            Some(ServingScheme::RemoFast(s)) => s.params().low_water,
            Some(ServingScheme::Plain(_)) => return None,
            None => return Some(0.0),
        };
        // Per op, capped at its mark: a pool far above it (one batch makes
        // hundreds of pads) must not hide one still below.
        let r = self.report()?;
        let filled: usize = r.ops.iter().map(|o| o.pads_available.min(low_water)).sum();
        Some(filled as f64 / (r.ops.len() * low_water).max(1) as f64)
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
        let checks = AnswerChecks::for_setup(&setup).unwrap();
        let schemes = [ServingScheme::remo(Precision::F64, setup, RemoParams::default(), checks).unwrap(), ServingScheme::plain()];
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
