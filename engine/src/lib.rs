//! The Llama forward pass over a `Linear` backend (plain local or ReMO
//! remote), the paged KV cache, sampling, and the request drivers.
pub mod generate;
pub mod kv_cache;
pub mod linear;
pub mod model;
pub mod prefix_hash;
pub mod sampling;
pub mod scheduler;
pub mod stop;

pub use generate::{generate, GenerateError, GenerateOutput, GenerateRequest};
pub use kv_cache::{KvCache, KvPool, SeqBlocks, DEFAULT_BLOCK_SIZE};
pub use linear::{Linear, LocalLinear, MaskingCounters};
pub use model::{DecoderModel, LogitsWanted, SeqChunk, StepTimings};
pub use sampling::{SampledToken, Sampler, SamplingParams};
pub use scheduler::FinishReason;
pub use talaria_kernels::{Precision, Rows, RowsMut};
