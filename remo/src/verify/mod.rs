//! Answer verification (docs/DESIGN.md §3, "Verification"): every answer of
//! the untrusted worker, pad batch, online call and calibration call alike,
//! is checked against eight secret Freivalds vectors `v` of its op, with
//! `Wᵀ·v` derived from the op's first pad batch, so the CVM never holds a
//! weight matrix.
//!
//! - [`lanes`]: the eight vectors as f64 lanes, projections of a row;
//! - [`reference`]: `z = Wᵀ·v` by least squares over a pad batch;
//! - [`op_check`]: one op's vectors, reference, tolerance and checks;
//! - [`answer_checks`]: every op's, and the calibration transcript.

pub mod answer_checks;
pub mod lanes;
pub mod op_check;
pub mod reference;

pub use answer_checks::AnswerChecks;
pub use op_check::{BatchVerdict, BatchVerifier, CheckStats, OpCheck, Tolerance};
