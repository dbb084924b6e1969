//! Wire frames and the two transports between the CVM process and the GPU
//! worker process: a zero-copy shared-memory ring for one host, and TCP.
//!
//! The crate knows nothing of models: `op` and `call_kind` are opaque bytes
//! that the upper layers map.
//!
//! ```no_run
//! use talaria_transport::{Connection, DType, FrameHeader, FrameKind, ShmRing};
//! let (mut cvm, region_fd) = ShmRing::create_memfd("talaria", ShmRing::DEFAULT_CAPACITY)?;
//! // ... spawn the worker with `region_fd` inherited; it calls ShmRing::open_fd ...
//! let header = FrameHeader::matrix(FrameKind::Call, DType::F64, 2, 3).with_call(1, 0, 0, 1);
//! cvm.send_with(header, &mut |dst| dst.fill(0))?;
//! let answer = cvm.recv(None)?;
//! let values = answer.f64s()?;
//! # let _ = (values, region_fd);
//! # Ok::<(), talaria_transport::TransportError>(())
//! ```

// Payloads are little-endian on the wire and viewed in place.
#[cfg(target_endian = "big")]
compile_error!("talaria-transport views little-endian payloads in place and needs a little-endian target");

pub mod aligned;
pub mod codes;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod frame;
pub mod payload;
pub mod shm_ring;
pub mod tcp;

pub use aligned::{AlignedBuf, PAYLOAD_ALIGN};
pub use connection::{Connection, OwnedFrame, Received};
pub use endpoint::WorkerAddress;
pub use error::{Result, TransportError};
pub use frame::{DType, FrameHeader, FrameKind, HEADER_LEN, MAX_PAYLOAD_LEN, PROTOCOL_VERSION};
pub use payload::{as_payload_bytes, cast_payload, typed_payload, Element};
pub use shm_ring::{ShmEndpoint, ShmRing, ShmSide};
pub use tcp::{TcpConnection, TcpWorkerListener, HANDSHAKE_TIMEOUT as TLS_HANDSHAKE_TIMEOUT};
