//! The worker protocol on top of transport frames (docs/DESIGN.md §5): what the
//! CVM's client and the untrusted worker must agree on. One type describes a
//! call ([`WorkerCall`]); it writes and reads the frame header, so the
//! routing fields are encoded in one place. Nothing here is secret beyond
//! what the worker is sent anyway.
mod busy;
mod call;
mod error;
mod finite;
mod handshake;

pub use busy::{KindBusy, WorkerBusy};
pub use call::{CallKind, WorkerCall};
pub use error::WorkerError;
pub use finite::{copy_first_non_finite, first_non_finite};
pub use handshake::{Hello, HelloAck, OpShape, PublicParams, WORKER_PROTOCOL};
