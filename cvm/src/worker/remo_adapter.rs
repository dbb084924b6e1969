//! The worker link as ReMO's `WorkerMatmul`, and as a plain `Linear` for
//! public-data calls (calibration).

use talaria_engine::Linear;
use talaria_kernels::{Precision, Rows, RowsMut};
use talaria_models::OpId;
use talaria_remo::{AnswerChecks, WorkerBusy, WorkerCall, WorkerMatmul};

use super::link::WorkerLink;

impl WorkerMatmul for WorkerLink {
    /// One frame each way when the rows fit, else through buffers in
    /// frame-sized chunks; rows and answer in the call's precision on the
    /// wire either way.
    fn call(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()> {
        if self.matmul_in_place(call, fill, take)? {
            return Ok(());
        }
        match call.precision {
            Precision::F64 => through_buffers::<f64>(self, call, fill, take),
            Precision::F32 => through_buffers::<f32>(self, call, fill, take),
        }
    }

    /// The copy checked finite in one pass (one frame each way), or
    /// frame-sized chunks straight into `out`.
    fn call_into(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), mut out: RowsMut<'_>) -> anyhow::Result<()> {
        if self.matmul_into(call, fill, out.reborrow())? {
            return Ok(());
        }
        match out {
            RowsMut::F64(out) => chunked_into::<f64>(self, call, fill, out),
            RowsMut::F32(out) => chunked_into::<f32>(self, call, fill, out),
        }
    }

    fn end_session(&mut self) {
        WorkerLink::end_session(self)
    }

    fn worker_busy(&mut self) -> Option<WorkerBusy> {
        match WorkerLink::worker_busy(self) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!("no busy-time report from the worker: {e:#}");
                None
            }
        }
    }
}

fn through_buffers<T: talaria_kernels::Float>(
    link: &mut WorkerLink,
    call: WorkerCall,
    fill: &mut dyn FnMut(RowsMut<'_>),
    take: &mut dyn FnMut(Rows<'_>),
) -> anyhow::Result<()> {
    let mut y = vec![T::default(); call.rows * call.d_out];
    chunked_into(link, call, fill, &mut y)?;
    take(T::rows(&y));
    Ok(())
}

fn chunked_into<T: talaria_kernels::Float>(
    link: &mut WorkerLink,
    call: WorkerCall,
    fill: &mut dyn FnMut(RowsMut<'_>),
    out: &mut [T],
) -> anyhow::Result<()> {
    let mut x = vec![T::default(); call.rows * call.d_in];
    fill(T::rows_mut(&mut x));
    link.matmul(call, &x, out)
}

/// Unmasked f32 calls: only for public data (the calibration text). Every
/// answer is recorded by the session's answer checks, and checked once the
/// op's reference exists (its first pad batch).
pub struct PublicDataLinear<'a> {
    pub link: &'a mut WorkerLink,
    pub checks: &'a mut AnswerChecks,
}

impl Linear for PublicDataLinear<'_> {
    fn forward(&mut self, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        self.checks.plain_matmul(self.link, id, rows, x, out)
    }
    fn name(&self) -> String {
        "public-data".into()
    }
}
