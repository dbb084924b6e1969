//! The CVM side of Talaria: ReMO masking, the worker client, and the
//! `talaria` / `talaria-serve` binaries.
pub mod backend;
pub mod calibration;
pub mod cli;
pub mod model_source;
pub mod remo;
pub mod serve;
pub mod worker;
