//! The untrusted GPU worker: holds the weight matrices (as the file stores
//! them by default), serves masked linear calls over shared memory or TCP, validates
//! every frame, and can record everything it is sent. What it agrees on
//! with the CVM is in `talaria-protocol`.
pub mod backend;
pub mod cuda_backend;
#[cfg(feature = "fault-injection")]
pub mod fault;
pub mod identity;
pub mod listen;
pub mod recorder;
pub mod service;

pub use backend::{CpuBackend, MatmulBackend};
pub use cuda_backend::CudaBackend;
pub use service::{SessionEnd, WorkerService};
