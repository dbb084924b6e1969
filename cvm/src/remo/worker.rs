//! The one thing ReMO needs from the untrusted worker: multiply rows by the
//! weight of an op. Transports implement [`WorkerMatmul`].

use talaria_kernels::cpu::Activation;
use talaria_models::OpId;

use super::error::RemoError;

/// Why a matrix is sent (pad batch, online, plain): the wire vocabulary of
/// the worker protocol.
pub use talaria_gpu_worker::CallKind;

/// The untrusted worker as seen by the masking layer.
pub trait WorkerMatmul {
    /// Returns `rows × d_out` (f64, row-major) `= x (rows × d_in) · W_idᵀ`,
    /// computed by the worker.
    fn matmul(&mut self, id: OpId, kind: CallKind, x: &[f64], rows: usize) -> anyhow::Result<Vec<f64>>;

    /// The product with the input written and the answer read in place:
    /// `fill` writes the `rows × d_in` rows to send, `take` reads the
    /// `rows × d_out` answer, checked (shape, all finite) just before. On
    /// shared memory the worker could still rewrite the answer while `take`
    /// reads it, so callers check what they derived from it again. `fill`
    /// may run more than once when the call is retried. The default goes
    /// through buffers; a transport overrides it to skip copies of pad
    /// batches (tens of MB each way).
    fn matmul_in_place(&mut self, call: WorkerCall, fill: &mut dyn FnMut(&mut [f64]), take: &mut dyn FnMut(&[f64])) -> anyhow::Result<()> {
        through_buffers(self, call, fill, take)
    }

    /// The same with f32 rows and answer (the fast mode). The default goes
    /// through `matmul` in f64 and rounds the answer to f32, which is what
    /// an f32-accumulating worker would return to within its rounding; a
    /// transport overrides it to send f32 frames.
    fn matmul_in_place_f32(
        &mut self,
        call: WorkerCall,
        fill: &mut dyn FnMut(&mut [f32]),
        take: &mut dyn FnMut(&[f32]),
    ) -> anyhow::Result<()> {
        through_buffers(self, call, fill, take)
    }

    /// The worker's own busy seconds per call kind so far, asked now (JSON
    /// object keyed by call kind), where the transport can ask.
    fn worker_busy(&mut self) -> Option<serde_json::Value> {
        None
    }

    /// Transport counters (calls, bytes, round-trip time, retries), if any.
    fn stats(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// One call to the worker: which op, why, and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerCall {
    pub id: OpId,
    pub kind: CallKind,
    pub rows: usize,
    pub d_in: usize,
    pub d_out: usize,
}

/// The in-place calls through owned buffers and `matmul` (f64 on the way
/// to the worker, the answer rounded back to `T`).
fn through_buffers<W: WorkerMatmul + ?Sized, T: Activation>(
    worker: &mut W,
    c: WorkerCall,
    fill: &mut dyn FnMut(&mut [T]),
    take: &mut dyn FnMut(&[T]),
) -> anyhow::Result<()> {
    let mut x = vec![T::default(); c.rows * c.d_in];
    fill(&mut x);
    let wide: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
    let y = worker.matmul(c.id, c.kind, &wide, c.rows)?;
    check_answer(c.id, &y, c.rows, c.d_out)?;
    let narrow: Vec<T> = y.iter().map(|&v| T::from_f64(v)).collect();
    take(&narrow);
    Ok(())
}

/// Checks a worker's answer: `rows × d_out` values, all finite.
pub(crate) fn check_answer(id: OpId, y: &[f64], rows: usize, d_out: usize) -> Result<(), RemoError> {
    let expected = rows * d_out;
    if y.len() != expected {
        return Err(RemoError::Shape { id, what: "worker answer", got: y.len(), expected });
    }
    check_finite(id, "worker answer", y)
}

/// Checks that every value is finite (NaN or ∞ would break the masking
/// arithmetic and, on input, mark a row to the worker).
pub(crate) fn check_finite<T: Copy + Sync + Into<f64>>(id: OpId, what: &'static str, v: &[T]) -> Result<(), RemoError> {
    match talaria_gpu_worker::first_non_finite(v) {
        None => Ok(()),
        Some(index) => Err(RemoError::NonFinite { id, what, index }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use talaria_models::Op;

    #[test]
    fn finds_non_finite_values() {
        let id = OpId::new(0, Op::O);
        let mut v = vec![1.0f64; 1000];
        assert!(check_finite(id, "x", &v).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            v[700] = bad;
            assert!(matches!(check_finite(id, "x", &v), Err(RemoError::NonFinite { index: 700, .. })));
        }
        assert!(check_finite(id, "x", &[f32::MAX, -f32::MAX]).is_ok());
        assert!(check_answer(id, &[0.0; 6], 2, 3).is_ok());
        assert!(matches!(check_answer(id, &[0.0; 5], 2, 3), Err(RemoError::Shape { .. })));
    }
}
