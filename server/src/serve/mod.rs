//! `talaria-serve`: an OpenAI-compatible HTTP server (axum + tokio) in
//! front of the continuous-batching engine, which runs on its own thread.
//!
//! - `args`: command-line flags;
//! - `server`: model loading, engine start, listening, graceful shutdown;
//! - `routes`: the router and the small endpoints (models, health, tokenize);
//! - `protocol`: request bodies, their validation, and the sampling mapping;
//! - `completions`, `chat`: the two generation endpoints' response shapes;
//! - `generation`: submitting to the engine, collecting or streaming events;
//! - `limits`: per-request caps (body size, stop strings, max_tokens);
//! - `metrics`: Prometheus counters and histograms;
//! - `error`: OpenAI-style error responses.
mod args;
mod chat;
mod completions;
mod error;
mod generation;
mod limits;
mod metrics;
mod protocol;
mod routes;
mod server;
mod state;

pub use args::{parse_bytes, ServeArgs};
pub use server::run;
