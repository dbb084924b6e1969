//! The `talaria` CLI and `talaria-serve`: the OpenAI-compatible HTTP API
//! over the continuous-batching engine, on the CVM.
pub mod cli;
pub mod serve;
pub mod split_model;
pub mod verify;
