//! The CVM's side of the worker protocol: spawning or reaching a worker and
//! making validated, retried calls.
mod link;
mod spawn;

pub use link::{LinkStats, WireFloat, WorkerLink, WorkerTarget};
pub use spawn::{find_worker_binary, LocalWorker, SpawnConfig};
