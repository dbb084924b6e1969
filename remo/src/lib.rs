//! ReMO (Reversible Masked Outsourcing): the CVM side of the masking
//! protocol of docs/DESIGN.md §3, as a library: no engine, no transport, no HTTP.
//!
//! The CVM masks each batch of real rows `X` with one-time Gaussian pads,
//! `X̃ = Π·(X + R_sel)`, the untrusted worker multiplies, and the CVM removes
//! the mask with the precomputed `R_sel·W`. Pads and their products come
//! from pad batches sent through a secret butterfly mixing `M`
//! ([`Mixing`]), so the worker never sees an individual pad.
//!
//! - [`pads`]: one pad, pad storage, the per-op pools and their refill, the
//!   cryptographic RNG, wiping;
//! - [`mixing`]: the butterfly mixing `M` and its kernels;
//! - [`online`]: the worker-call trait ([`WorkerMatmul`]), the masked
//!   online call, the schemes ([`Remo`], the plain baseline);
//! - [`verify`]: the check of every worker answer against secret
//!   Freivalds vectors;
//! - [`accounting`]: channel scales, the leakage bound, the report.
//!
//! Pads, masked rows and answers are f64 in the exact mode and f32 in the
//! fast one (`Remo<f64>` / `Remo<f32>`, see [`default_kappa`]); the mixing's
//! arithmetic is f64 either way.

// The unit tests share the integration tests' in-process worker, which
// names this crate.
#[cfg(test)]
extern crate self as talaria_remo;
#[cfg(test)]
#[allow(dead_code)]
#[path = "../tests/support/recording_worker.rs"]
mod recording_worker;

pub mod accounting;
pub mod error;
pub mod mixing;
pub mod online;
pub mod pads;
pub mod params;
pub mod setup;
pub mod verify;

pub use accounting::leakage::{leakage_bits_at_energy, leakage_bits_per_call, leakage_bound_bits, leakage_bound_bits_for_dims};
pub use accounting::report::{OpReport, PhasesMs, RemoReport};
pub use error::RemoError;
pub use mixing::Mixing;
pub use online::plain::PlainScheme;
pub use online::remo_scheme::Remo;
pub use online::scheme::{IdleProgress, MaskScheme};
pub use online::worker::{call_in_place, call_into_private, is_rejected_answer, matmul, CallKind, WorkerBusy, WorkerCall, WorkerMatmul};
pub use pads::memory::pad_pool_bound_bytes;
pub use pads::pad::Pad;
pub use pads::pad_buffers::PadBuffers;
pub use pads::pool::{PadPool, PoolStats, RefillPhases};
pub use pads::pools::PadPools;
pub use params::{default_kappa, RemoParams, RowBuckets};
pub use setup::{OpSpec, RemoSetup};
pub use verify::{AnswerChecks, CheckStats, OpCheck, Tolerance};
