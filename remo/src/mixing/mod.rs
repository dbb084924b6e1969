//! The secret mixing `M` of a pad batch: butterfly rounds of permutation,
//! random signs and log-normal magnitudes, and Walsh–Hadamard transforms.
pub mod butterfly;
mod column_blocks;
mod fwht;
mod streaming_store;

pub use butterfly::{padded_rows, Mixing, MIN_ROUNDS};
