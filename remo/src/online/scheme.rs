//! One interface for every way of outsourcing a linear to the worker, so
//! the attack suite can run ReMO and the insecure reference schemes alike.

use std::time::Duration;

use talaria_kernels::{Rows, RowsMut};
use talaria_models::OpId;

use crate::accounting::report::RemoReport;
use crate::error::RemoError;
use crate::online::worker::WorkerMatmul;
pub use crate::pads::pools::IdleProgress;

pub trait MaskScheme: Send {
    /// A short name for logs and reports ("remo", "plain", "permute", …).
    fn name(&self) -> &str;

    /// Whether the worker's view is (nearly) independent of the data.
    fn secure(&self) -> bool;

    /// `out (rows × d_out) = x (rows × d_in) · W_idᵀ`, computed by `worker`,
    /// on rows of either precision (`out` in the same one).
    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()>;

    /// Work to do while the worker is idle (pad refills), for up to about
    /// `budget`.
    fn idle(&mut self, _worker: &mut dyn WorkerMatmul, _budget: Duration) -> anyhow::Result<IdleProgress> {
        Ok(IdleProgress::default())
    }

    /// Work that keeps pace with a busy engine, after each step (ReMO: pad
    /// refills in proportion to the pads used).
    fn after_step(&mut self, _worker: &mut dyn WorkerMatmul) -> anyhow::Result<()> {
        Ok(())
    }

    /// ReMO's statistics and leakage bound, where the scheme has them.
    fn report(&self) -> Option<RemoReport> {
        None
    }
}

/// `(d_in, d_out)` of a call from its buffer lengths (schemes that know no
/// shapes up front).
pub(crate) fn dims_from_buffers(id: OpId, x_len: usize, out_len: usize, rows: usize) -> Result<(usize, usize), RemoError> {
    let (d_in, d_out) = (x_len.checked_div(rows).unwrap_or(0), out_len.checked_div(rows).unwrap_or(0));
    if d_in == 0 || d_out == 0 || d_in * rows != x_len || d_out * rows != out_len {
        return Err(RemoError::Param(format!("{id}: buffers of {x_len} and {out_len} values do not hold {rows} non-empty rows")));
    }
    Ok((d_in, d_out))
}
