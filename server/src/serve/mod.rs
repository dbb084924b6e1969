//! `talaria-serve`: an OpenAI-compatible HTTP server (axum + tokio) in
//! front of the continuous-batching engine, which runs on its own thread.
//!
//! - `args`: command-line flags;
//! - `server`: model loading, engine start, listening, graceful shutdown;
//! - `tls`: the RA-TLS identity made at start (key in memory only);
//! - `listener`: the accept loop (TLS, connection limit, timeouts, drain);
//! - `attestation`: `/v1/attestation`, fresh evidence bound to key + nonce;
//! - `auth`: `--api-key` on /v1/*;
//! - `body_timeout`: the request body read under a deadline and size cap;
//! - `routes`: the router and the small endpoints (models, health, tokenize);
//! - `protocol`: request bodies, their validation, and the sampling mapping;
//! - `completions`, `chat`: the two generation endpoints' response shapes;
//! - `generation`: submitting to the engine, collecting or streaming events;
//! - `limits`: per-request caps (body size, stop strings, max_tokens);
//! - `metrics`: Prometheus counters and histograms;
//! - `error`: OpenAI-style error responses.
mod args;
mod attestation;
mod auth;
mod body_timeout;
mod chat;
mod completions;
mod error;
mod generation;
mod limits;
mod listener;
mod metrics;
mod protocol;
mod routes;
mod server;
mod state;
mod tls;

pub use args::{EdgeArgs, ServeArgs};
pub use server::run;
pub use talaria_cvm::byte_size::parse_bytes;
