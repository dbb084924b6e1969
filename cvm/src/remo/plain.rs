//! The unprotected baseline over a worker (`--mode plain` with a worker):
//! rows go out as they are, in f32, and the worker multiplies them with its
//! plain f32 kernel (the one the local engine uses), so the baseline costs
//! what an unprotected split would. (It used to widen rows to f64, which
//! ran the worker's exact f64 GEMM and halved the baseline's throughput.)

use talaria_models::OpId;

use super::scheme::{dims_from_buffers, MaskScheme};
use super::worker::{CallKind, WorkerCall, WorkerMatmul};

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

    fn matmul(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, x: &[f32], rows: usize, out: &mut [f32]) -> anyhow::Result<()> {
        if rows == 0 && x.is_empty() && out.is_empty() {
            return Ok(());
        }
        let (d_in, d_out) = dims_from_buffers(id, x.len(), out.len(), rows)?;
        worker.matmul_in_place_f32(
            WorkerCall { id, kind: CallKind::Plain, rows, d_in, d_out },
            &mut |dst| dst.copy_from_slice(x),
            &mut |y| out.copy_from_slice(y),
        )
    }
}
