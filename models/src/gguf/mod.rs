//! GGUF files (llama.cpp): header, metadata, tensor table, quantized data.
mod file;
mod quant;
mod value;

pub use file::{GgufFile, GgufTensorInfo};
pub use quant::{dequantize, GgmlType};
pub use value::GgufValue;
