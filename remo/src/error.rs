//! Errors of the ReMO masking layer.

use talaria_models::OpId;
use talaria_protocol::CallKind;

#[derive(Debug, thiserror::Error)]
pub enum RemoError {
    #[error("{id}: not an op of this model (no shape or channel scales given)")]
    UnknownOp { id: OpId },
    #[error("{id}: {what} has {got} values, expected {expected}")]
    Shape { id: OpId, what: &'static str, got: usize, expected: usize },
    #[error("{id}: {what} holds a non-finite value at index {index}")]
    NonFinite { id: OpId, what: &'static str, index: usize },
    #[error("{id}: channel scale {channel} is {value}; scales must be finite and ≥ 0")]
    BadScale { id: OpId, channel: usize, value: f64 },
    #[error("invalid ReMO parameter: {0}")]
    Param(String),
    #[error("{id}: pool holds {available} pads, {wanted} requested")]
    PoolShort { id: OpId, available: usize, wanted: usize },
    #[error("seeding the cryptographic RNG from the OS failed: {0}")]
    OsRng(String),
    #[error(
        "{id}: the worker's answer to a {call} call failed verification ({detail}); the worker lied or is broken, and its session is ended"
    )]
    AnswerRejected { id: OpId, call: &'static str, detail: String },
    #[error("matrix is singular to working precision (pivot {pivot} in column {column})")]
    Singular { column: usize, pivot: f64 },
}

impl RemoError {
    /// The worker's answer to a `call` call failed a check: it lied.
    pub(crate) fn rejected(id: OpId, call: CallKind, detail: impl Into<String>) -> Self {
        Self::AnswerRejected { id, call: call.name(), detail: detail.into() }
    }
}
