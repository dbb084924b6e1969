//! The online side: what ReMO needs from the worker, the masked call of a
//! step's real rows, and the schemes that put them together.
pub mod masked_matmul;
pub mod plain;
pub mod remo_scheme;
pub mod scheme;
pub mod worker;
