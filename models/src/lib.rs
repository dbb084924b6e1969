//! Models: configs (HF `config.json`, GGUF metadata), weights (GGUF with its
//! quant formats, safetensors via memmap2), tokenizers, the default-model
//! fetch, and the split of tensors between the CVM and the worker.
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod fetch;
pub mod gguf;
pub mod op;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use config::LlamaConfig;
pub use error::{ModelError, Result};
pub use op::{Op, OpId};
pub use tokenizer::{ChatMessage, DecodeStream, Tokenizer};
pub use weights::{op_dims, CvmWeights, WorkerWeights};
