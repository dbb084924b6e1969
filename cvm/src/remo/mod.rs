//! ReMO (Reversible Masked Outsourcing): the CVM side of the masking
//! protocol of DESIGN §3, independent of any transport.
//!
//! The CVM masks each batch of real rows `X` with one-time Gaussian pads,
//! `X̃ = Π·(X + R_sel)`, the untrusted worker multiplies, and the CVM removes
//! the mask with the precomputed `R_sel·W`. Pads and their products come
//! from pad batches sent through a secret butterfly mixing `M`
//! ([`mixing::Mixing`]), so the worker never sees an individual pad.
//!
//! Pads, masked rows and answers are f64 in the exact mode and f32 in the
//! fast one ([`PadFloat`], [`RemoPrecision`]); the mixing's arithmetic is
//! f64 either way.
//!
//! The worker is reached through [`WorkerMatmul`]; the masking schemes
//! implement [`MaskScheme`]. Serving code can only build a [`ServingScheme`]
//! (ReMO or the plain baseline); the insecure reference schemes in
//! [`insecure`] exist for the attack suite alone.

pub mod error;
pub mod insecure;
pub mod leakage;
pub mod mixing;
pub mod online;
pub mod pad;
pub mod pad_buffers;
pub mod pad_float;
pub mod params;
pub mod plain;
pub mod pool;
pub mod pools;
pub mod recording_worker;
pub mod remo_scheme;
pub mod report;
pub mod scales;
pub mod scheme;
pub mod scheme_by_name;
pub mod secure_rng;
pub mod serving;
pub mod setup;
pub mod wipe;
pub mod worker;

mod column_blocks;
mod fwht;
mod streaming_store;

pub use error::RemoError;
pub use leakage::{leakage_bits_at_energy, leakage_bits_per_call, leakage_bound_bits, leakage_bound_bits_for_dims};
pub use mixing::Mixing;
pub use pad::Pad;
pub use pad_buffers::PadBuffers;
pub use pad_float::{PadFloat, RemoPrecision};
pub use params::RemoParams;
pub use plain::PlainScheme;
pub use pool::{PadPool, PoolStats, RefillPhases};
pub use pools::PadPools;
pub use recording_worker::{ReceivedCall, RecordingWorker};
pub use remo_scheme::Remo;
pub use report::{OpReport, PhasesMs, RemoReport};
pub use scheme::{IdleProgress, MaskScheme};
pub use scheme_by_name::{scheme_by_name, SCHEME_NAMES};
pub use serving::{MaskedLinear, ServingScheme};
pub use setup::{OpSpec, RemoSetup};
pub use worker::{CallKind, WorkerCall, WorkerMatmul};
