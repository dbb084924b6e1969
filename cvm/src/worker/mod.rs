//! The CVM's side of the worker protocol: spawning or reaching a worker and
//! making validated, retried calls.
mod link;
mod remo_adapter;
mod spawn;
mod tls_link;

pub use link::{LinkStats, WorkerLink, WorkerTarget};
pub use remo_adapter::PublicDataLinear;
pub use spawn::{find_worker_binary, LocalWorker, SpawnConfig};
pub use tls_link::RemoteSecurity;
