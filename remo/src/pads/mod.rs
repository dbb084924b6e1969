//! Pads: drawing them (a cryptographic RNG), storing them (recycled
//! buffers, wiped on drop), and the per-op pools that refill them through
//! pad batches.
pub mod batch;
pub mod bulk_stream;
pub mod factory;
pub mod gaussian;
pub mod memory;
pub mod pad;
pub mod pad_buffers;
pub mod pool;
pub mod pools;
pub mod secure_rng;
pub mod wipe;
