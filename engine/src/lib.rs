//! The Llama forward pass over a `Linear` backend (plain local or ReMO
//! remote), the paged KV cache, sampling, and the request drivers.
pub mod generate;
pub mod kv_cache;
mod lane;
pub mod linear;
pub mod model;
pub mod precision;
pub mod sampling;
pub mod scheduler;
pub mod stop;

pub use generate::{generate, FinishReason, GenerateError, GenerateOutput, GenerateRequest};
pub use kv_cache::{KvPool, SeqBlocks, DEFAULT_BLOCK_SIZE};
pub use linear::{through_f32, Accumulate, Linear, LocalLinear};
pub use model::{LlamaModel, LogitsWanted, SeqChunk, StepTimings};
pub use precision::Precision;
pub use sampling::{SampledToken, Sampler, SamplingParams};
