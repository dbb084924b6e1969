//! GGUF files (llama.cpp): header, metadata, tensor table, quantized data;
//! and a writer that keeps the stored tensor bytes as they are.
mod file;
mod types;
mod value;
mod writer;

pub use file::{GgufFile, GgufTensorInfo};
pub use types::{code_name, dtype_of_code};
pub use value::GgufValue;
pub use writer::{write_gguf, GgufTensorOut};
