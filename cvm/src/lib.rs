//! The CVM side of Talaria: ReMO masking, the worker client, and the
//! `talaria` / `talaria-serve` binaries.
pub mod cli;
pub mod model_source;
pub mod backend;
pub mod worker;
pub mod calibration;
pub mod serve;
pub mod remo;
