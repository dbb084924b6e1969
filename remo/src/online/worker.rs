//! The one thing ReMO needs from the untrusted worker: multiply rows by the
//! weight of an op. Transports implement [`WorkerMatmul`].

use talaria_kernels::{Float, Rows, RowsMut};
use talaria_models::OpId;
pub use talaria_protocol::{CallKind, WorkerBusy, WorkerCall};

use crate::error::RemoError;

/// The untrusted worker as seen by the masking layer.
pub trait WorkerMatmul {
    /// The product of one call (`call.rows × d_in` rows, in
    /// `call.precision`, times `W_idᵀ`) with the input written and the
    /// answer read in place: `fill` writes the rows to send, `take` reads
    /// the `rows × d_out` answer, checked (shape, all finite) just before.
    /// On shared memory the worker could still rewrite the answer while
    /// `take` reads it, so callers check what they derived from it again.
    /// `fill` may run more than once when the call is retried. Both get
    /// rows of the call's precision.
    fn call(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), take: &mut dyn FnMut(Rows<'_>)) -> anyhow::Result<()>;

    /// The worker's own busy time per call kind so far, asked now, where
    /// the transport can ask.
    fn worker_busy(&mut self) -> Option<WorkerBusy> {
        None
    }

    /// Ends the session with this worker (it lied): the connection is
    /// dropped, a local worker process killed; the next call starts afresh.
    fn end_session(&mut self) {}
}

/// Whether an error is (or wraps) a rejected answer: the worker lied, and
/// its session must end rather than the call be retried.
pub fn is_rejected_answer(e: &anyhow::Error) -> bool {
    e.chain().any(|c| matches!(c.downcast_ref::<RemoError>(), Some(RemoError::AnswerRejected { .. })))
}

/// [`WorkerMatmul::call`] with rows of a known type `T` (the call's
/// precision is `T`'s).
pub fn call_in_place<T: Float>(
    worker: &mut (impl WorkerMatmul + ?Sized),
    call: WorkerCall,
    fill: &mut dyn FnMut(&mut [T]),
    take: &mut dyn FnMut(&[T]),
) -> anyhow::Result<()> {
    let call = WorkerCall { precision: T::PRECISION, ..call };
    // Checked here too, whatever the transport checked: nothing derived
    // from a short or non-finite answer may be used. The transport hands
    // over only answers it found whole and finite (a worker admitting a
    // failure is retried there), so one failing here was rewritten after
    // that check: a lie.
    let mut bad: Option<RemoError> = None;
    worker.call(call, &mut |rows| fill(T::of_rows_mut(rows).expect("the transport hands rows of the call's precision")), &mut |rows| {
        let y = T::of_rows(rows).expect("the transport hands rows of the call's precision");
        match check_answer(call.id, y, call.rows, call.d_out) {
            Ok(()) => take(y),
            Err(e) => bad = Some(RemoError::rejected(call.id, call.kind, e.to_string())),
        }
    })?;
    bad.map_or(Ok(()), |e| Err(e.into()))
}

/// The product into a fresh buffer, checked (shape, all finite) once it is
/// private.
pub fn matmul<T: Float>(worker: &mut (impl WorkerMatmul + ?Sized), call: WorkerCall, x: &[T]) -> anyhow::Result<Vec<T>> {
    let mut y = vec![T::default(); call.rows * call.d_out];
    call_in_place(worker, call, &mut |dst| dst.copy_from_slice(x), &mut |ans| y.copy_from_slice(ans))?;
    check_private_finite(call.id, call.kind, "the answer", &y)?;
    Ok(y)
}

/// Checks that every value derived from a worker's answer, in private
/// memory, is finite: the answer was checked finite on arrival, so a
/// non-finite value now is a lie (rewritten shared memory, or values so
/// large that unmixing or unmasking overflows).
pub(crate) fn check_private_finite<T: Copy + Sync + Into<f64>>(id: OpId, call: CallKind, what: &str, v: &[T]) -> Result<(), RemoError> {
    match talaria_protocol::first_non_finite(v) {
        None => Ok(()),
        Some(index) => Err(RemoError::rejected(id, call, format!("value {index} of {what} is not finite"))),
    }
}

/// Checks a worker's answer: `rows × d_out` values, all finite.
pub(crate) fn check_answer<T: Copy + Sync + Into<f64>>(id: OpId, y: &[T], rows: usize, d_out: usize) -> Result<(), RemoError> {
    let expected = rows * d_out;
    if y.len() != expected {
        return Err(RemoError::Shape { id, what: "worker answer", got: y.len(), expected });
    }
    check_finite(id, "worker answer", y)
}

/// Checks that every value is finite (NaN or ∞ would break the masking
/// arithmetic and, on input, mark a row to the worker).
pub(crate) fn check_finite<T: Copy + Sync + Into<f64>>(id: OpId, what: &'static str, v: &[T]) -> Result<(), RemoError> {
    match talaria_protocol::first_non_finite(v) {
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
        assert!(check_answer(id, &[0.0f64; 6], 2, 3).is_ok());
        assert!(matches!(check_answer(id, &[0.0f64; 5], 2, 3), Err(RemoError::Shape { .. })));
    }
}
