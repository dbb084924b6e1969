//! The unprotected baseline over a worker (`--mode plain` with a worker):
//! rows go out as they are.

use talaria_models::OpId;

use super::scheme::{dims_from_buffers, MaskScheme};
use super::worker::{check_answer, CallKind, WorkerMatmul};

#[derive(Default)]
pub struct PlainScheme {
    x64: Vec<f64>,
}

impl PlainScheme {
    pub fn new() -> Self {
        Self::default()
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
        let (_, d_out) = dims_from_buffers(id, x.len(), out.len(), rows)?;
        self.x64.clear();
        self.x64.extend(x.iter().map(|&v| f64::from(v)));
        let y = worker.matmul(id, CallKind::Plain, &self.x64, rows)?;
        check_answer(id, &y, rows, d_out)?;
        out.iter_mut().zip(&y).for_each(|(o, &v)| *o = v as f32);
        Ok(())
    }
}
