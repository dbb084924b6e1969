//! Weight matrices as the kernels see them: the element types a matrix can
//! be held in (plain floats and GGUF quant blocks, [`WeightDType`]), how a
//! loader chooses it ([`WeightFormat`]), the block layouts ([`blocks`]), stored
//! bytes to values ([`dequantize_stored`]) and the matrix ([`WeightMatrix`]).

pub mod blocks;
mod dtype;
pub mod load_only_blocks;
mod matrix;
mod stored;

pub use dtype::{WeightDType, WeightFormat};
pub use matrix::{WeightData, WeightMatrix};
pub use stored::dequantize_stored;
