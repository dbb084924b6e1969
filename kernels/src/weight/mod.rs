//! Weight matrices as the kernels see them: the element types a matrix can
//! be held in (plain floats and GGUF quant blocks, [`WeightDType`]), how a
//! loader chooses it ([`WeightFormat`]), the block layouts ([`blocks`],
//! [`k_blocks`]), stored
//! bytes to values ([`dequantize_stored`]) and the matrix ([`WeightMatrix`]).

pub mod blocks;
mod dtype;
pub mod k_blocks;
mod matrix;
mod stored;

pub use dtype::{WeightDType, WeightFormat};
pub use matrix::{WeightData, WeightMatrix};
pub use stored::{dequantize_stored, stored_as_q8_0};
