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

    /// [`Self::call`] with the answer copied into `out` (private memory,
    /// `rows × d_out` of the call's precision). The transport checks it
    /// finite, in the same pass as the copy where it can (the link does);
    /// this default copies after `call`'s check, so on shared memory
    /// callers still check what they derive from `out`, as with `call`.
    fn call_into(&mut self, call: WorkerCall, fill: &mut dyn FnMut(RowsMut<'_>), mut out: RowsMut<'_>) -> anyhow::Result<()> {
        let (mut got, mut copied) = (0, false);
        self.call(call, fill, &mut |y| {
            got = y.len();
            copied = match (y, out.reborrow()) {
                (Rows::F64(y), RowsMut::F64(o)) if y.len() == o.len() => {
                    o.copy_from_slice(y);
                    true
                }
                (Rows::F32(y), RowsMut::F32(o)) if y.len() == o.len() => {
                    o.copy_from_slice(y);
                    true
                }
                _ => false,
            };
        })?;
        if copied {
            return Ok(());
        }
        // The transport checked the answer's size: a mismatch now is a lie.
        let e = RemoError::Shape { id: call.id, what: "worker answer", got, expected: out.len() };
        Err(RemoError::rejected(call.id, call.kind, e.to_string()).into())
    }

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
    // The shape is checked here too, whatever the transport checked. The
    // values are not scanned again: the transport handed over only answers
    // it found finite (a worker admitting a failure is retried there), and
    // every caller checks what it derives from them in private memory
    // (a rewritten NaN or ∞ poisons what is derived from it), where a
    // failure is a lie. A second scan of shared memory was a tenth of the
    // engine thread's time at 16 streams.
    let mut bad: Option<RemoError> = None;
    worker.call(call, &mut |rows| fill(T::of_rows_mut(rows).expect("the transport hands rows of the call's precision")), &mut |rows| {
        let y = T::of_rows(rows).expect("the transport hands rows of the call's precision");
        let expected = call.rows * call.d_out;
        if y.len() == expected {
            take(y)
        } else {
            let e = RemoError::Shape { id: call.id, what: "worker answer", got: y.len(), expected };
            bad = Some(RemoError::rejected(call.id, call.kind, e.to_string()));
        }
    })?;
    bad.map_or(Ok(()), |e| Err(e.into()))
}

/// [`WorkerMatmul::call_into`] with rows of a known type `T`: the answer
/// lands in `out`, private and checked finite.
pub fn call_into_private<T: Float>(
    worker: &mut (impl WorkerMatmul + ?Sized),
    call: WorkerCall,
    fill: &mut dyn FnMut(&mut [T]),
    out: &mut [T],
) -> anyhow::Result<()> {
    let call = WorkerCall { precision: T::PRECISION, ..call };
    if out.len() != call.rows * call.d_out {
        return Err(RemoError::Shape { id: call.id, what: "answer buffer", got: out.len(), expected: call.rows * call.d_out }.into());
    }
    worker.call_into(
        call,
        &mut |rows| fill(T::of_rows_mut(rows).expect("the transport hands rows of the call's precision")),
        T::rows_mut(out),
    )
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
    }
}
