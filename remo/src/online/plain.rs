//! The unprotected baseline over a worker (`--mode plain` with a worker):
//! rows go out as they are, in f32, and the worker multiplies them with its
//! plain f32 kernel (the one the local engine uses), so the baseline costs
//! what an unprotected split would. (It used to widen rows to f64, which
//! ran the worker's exact f64 GEMM and halved the baseline's throughput.)

use talaria_models::OpId;

use crate::online::scheme::{dims_from_buffers, MaskScheme};
use crate::online::worker::{call_in_place, check_private_finite, CallKind, WorkerCall, WorkerMatmul};
use talaria_kernels::{f32_product, Precision, Rows, RowsMut};

#[derive(Default)]
pub struct PlainScheme;

impl PlainScheme {
    pub fn new() -> Self {
        Self
    }
}

impl MaskScheme for PlainScheme {
    fn name(&self) -> &str {
        "plain"
    }

    fn secure(&self) -> bool {
        false
    }

    /// f64 rows are rounded to f32: the baseline runs the f32 kernel.
    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, rows: usize, x: Rows<'_>, out: RowsMut<'_>) -> anyhow::Result<()> {
        if rows == 0 && x.is_empty() && out.is_empty() {
            return Ok(());
        }
        let (d_in, d_out) = dims_from_buffers(id, x.len(), out.len(), rows)?;
        let call = WorkerCall { id, kind: CallKind::Plain, precision: Precision::F32, rows, d_in, d_out };
        f32_product(x, out, |x, out| {
            call_in_place(worker, call, &mut |dst| dst.copy_from_slice(x), &mut |y| out.copy_from_slice(y))?;
            Ok(check_private_finite(id, CallKind::Plain, "the answer", out)?)
        })
    }
}
