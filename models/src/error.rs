//! Errors of model loading: always name the file and what is wrong with it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic {magic:?})")]
    NotGguf { path: PathBuf, magic: [u8; 4] },
    #[error("{path}: unsupported GGUF version {version} (supported: 2, 3)")]
    GgufVersion { path: PathBuf, version: u32 },
    #[error("{path}: truncated or corrupt at byte {offset}: {what}")]
    Corrupt { path: PathBuf, offset: u64, what: String },
    #[error("{path}: tensor {tensor}: unsupported type {ty}")]
    UnsupportedTensorType { path: PathBuf, tensor: String, ty: String },
    #[error("{path}: missing tensor {tensor}")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor {tensor} belongs to the worker; a checkpoint opened for the {role} role never reads it")]
    NotForRole { path: PathBuf, tensor: String, role: &'static str },
    #[error("{path}: tensor {tensor} has shape {got:?}, expected {expected:?}")]
    Shape { path: PathBuf, tensor: String, got: Vec<usize>, expected: Vec<usize> },
    #[error("{path}: bad model config: {what}")]
    Config { path: PathBuf, what: String },
    #[error("{path}: unsupported model: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("{path}: tokenizer: {what}")]
    Tokenizer { path: PathBuf, what: String },
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Self::Corrupt { path: path.into(), offset, what: what.into() }
    }
}
