//! The untrusted GPU worker: holds the weight matrices (norm gains folded
//! in), serves masked linear calls over shared memory or TCP, validates
//! every frame, and can record everything it is sent.
pub mod backend;
pub mod cuda_backend;
pub mod fault;
pub mod npy;
pub mod protocol;
pub mod recorder;
pub mod service;

pub use backend::{CpuBackend, MatmulBackend};
pub use cuda_backend::CudaBackend;
pub use protocol::{first_non_finite, CallKind, Hello, HelloAck, OpShape, WorkerBusy, WorkerError, WORKER_PROTOCOL};
pub use service::{SessionEnd, WorkerService};
