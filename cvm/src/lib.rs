//! The CVM assembly: the engine's `Linear` masked by ReMO over a link to
//! the untrusted worker ([`masked_linear`]), the link itself ([`worker`]),
//! how a worker session starts ([`session`]), the time spent waiting
//! for the worker ([`worker_wait`]), the public channel-scale
//! calibration, and the choice of backend
//! ([`backend`]).
pub mod backend;
pub mod byte_size;
pub mod calibration;
pub mod masked_linear;
pub mod model_source;
pub mod session;
pub mod worker;
pub mod worker_wait;

pub use masked_linear::{MaskedLinear, ServingScheme};
