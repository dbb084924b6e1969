//! GGUF files (llama.cpp): header, metadata, tensor table, quantized data;
//! the vocabulary as an HF tokenizer; and a writer that keeps the stored
//! tensor bytes as they are.
mod file;
mod types;
mod value;
pub(crate) mod vocab;
mod writer;

pub use file::{GgufFile, GgufTensorInfo};
pub use types::{code_name, dtype_of_code};
pub use value::GgufValue;
pub use writer::{write_gguf, GgufTensorOut};
