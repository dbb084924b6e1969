//! Models: configs (HF `config.json`, GGUF metadata), weights (GGUF with its
//! quant formats, safetensors via memmap2), tokenizers, the default-model
//! fetch, and the split of tensors between the CVM and the worker (by role
//! when opening, and on disk with `split`).
pub mod chat_template;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod fetch;
pub mod gguf;
pub mod op;
mod part;
pub mod progress;
pub mod role;
mod safetensors_file;
pub mod split;
pub mod storage;
pub mod tokenizer;
pub mod weights;

pub use checkpoint::Checkpoint;
pub use config::{Activation, Family, LayerAttention, ModelConfig, RopeScaling};
pub use error::{ModelError, Result};
pub use op::{Op, OpId};
pub use progress::{Progress, Unit};
pub use role::{cvm_tensor_names, worker_tensor_names, Role};
pub use split::{split_model, SplitManifest};
pub use storage::ReadStats;
pub use tokenizer::{ChatMessage, DecodeStream, Tokenizer};
pub use weights::{op_dims, CvmAttn, CvmLayer, CvmWeights, WorkerWeights};
