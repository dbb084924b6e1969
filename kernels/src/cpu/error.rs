//! Errors the CPU kernels report for inputs that can go wrong at run time
//! (positions, block tables); slice-shape mismatches are caller bugs and panic.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum KernelError {
    #[error("RoPE position {pos} is beyond the table's {max} positions (grow it with ensure_positions)")]
    PositionOutOfRange { pos: usize, max: usize },
    #[error("RoPE head_dim must be even and non-zero, got {0}")]
    OddHeadDim(usize),
    #[error("RoPE scaling gives {got} frequency divisors for head_dim {head_dim} (need head_dim / 2)")]
    RopeDivisors { got: usize, head_dim: usize },
    #[error("invalid attention shape: {0}")]
    AttentionShape(String),
    #[error("query {query}: context of {context_len} tokens needs {needed} blocks, block table has {have}")]
    BlockTableTooShort { query: usize, context_len: usize, needed: usize, have: usize },
    #[error("block {block} is outside the KV pool of {num_blocks} blocks")]
    BlockOutOfRange { block: u32, num_blocks: usize },
}
