//! Command-line flags of `talaria-serve`.

use std::path::PathBuf;
use talaria_cvm::byte_size::parse_bytes;

use clap::Parser;

use talaria_cvm::backend::BackendArgs;
use talaria_cvm::model_source::ModelArgs;

use super::limits::RequestLimits;

#[derive(Parser, Debug, Clone)]
#[command(name = "talaria-serve", version, about = "OpenAI-compatible server with continuous batching (plain or confidential)")]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub limits: RequestLimits,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// 0 picks a free port (the address is printed on stdout once ready).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Token budget of one engine step (decodes + prefill chunks).
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    /// Most sequences in one engine step.
    #[arg(long, default_value_t = 64)]
    pub max_num_seqs: usize,
    /// Memory for the KV cache, e.g. "2GiB", "512MiB", "100000000".
    /// Preempted sequences may hold as much again in CVM memory (their K/V
    /// swapped out of the cache instead of recomputed).
    #[arg(long, default_value = "2GiB", value_parser = parse_bytes)]
    pub kv_cache_memory: u64,
    /// The model name clients must use (default: the model file's name).
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT before
    /// they are aborted.
    #[arg(long, default_value_t = 30.0)]
    pub shutdown_timeout: f64,
    #[command(flatten)]
    pub edge: EdgeArgs,
}

/// The HTTP edge: TLS, authentication, and the bounds that keep slow or
/// numerous clients from holding the server.
#[derive(clap::Args, Debug, Clone)]
pub struct EdgeArgs {
    /// Serve plain HTTP instead of attested TLS (measurement and tests
    /// only: nothing protects the prompts on the wire). Needs --insecure.
    #[arg(long, requires = "insecure")]
    pub plain_http: bool,
    /// Require `Authorization: Bearer KEY` on every route except
    /// /v1/attestation and /health (and /metrics with --metrics-key).
    #[arg(long, env = "TALARIA_API_KEY", hide_env_values = true, value_parser = non_empty_key)]
    pub api_key: Option<String>,
    /// The key /metrics needs instead of --api-key. Its counters (rows
    /// masked, tokens batched, sequences running) give exact per-step
    /// counts that the row buckets hide from the worker; give this key to
    /// the operator only when a client could be the worker's host.
    #[arg(long, env = "TALARIA_METRICS_KEY", hide_env_values = true, value_parser = non_empty_key)]
    pub metrics_key: Option<String>,
    /// Write the server's RA-TLS certificate (PEM; public, not the key) to
    /// FILE once it is made. Clients should pin it through `talaria verify`.
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
    /// An extra DNS name or IP address for the certificate (repeatable);
    /// localhost, 127.0.0.1, ::1 and --host are always in it.
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_names: Vec<String>,
    /// Most connections open at once; further clients wait in the listen
    /// backlog until one closes.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Seconds a client gets to finish the TLS handshake.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    pub handshake_timeout: f64,
    /// Seconds a client gets to send a request's headers; an idle
    /// keep-alive connection is closed after as long.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = parse_secs)]
    pub header_timeout: f64,
    /// Seconds a response write may make no progress (a client that stops
    /// reading) before the connection is closed and its slot freed.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = parse_secs)]
    pub write_timeout: f64,
    /// Seconds a client gets to send a request's body (408 after).
    #[arg(long, value_name = "SECS", default_value_t = 30.0, value_parser = parse_secs)]
    pub body_timeout: f64,
}

/// A positive, finite number of seconds.
fn parse_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v < 1e9 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

/// An empty key would guard nothing: refuse it rather than serve openly.
fn non_empty_key(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("the API key is empty".into());
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("10"), Ok(10.0));
        assert_eq!(parse_secs("0.5"), Ok(0.5));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("inf").is_err());
    }

    #[test]
    fn edge_defaults() {
        let a = ServeArgs::try_parse_from(["talaria-serve"]).unwrap();
        assert_eq!(
            (a.edge.max_connections, a.edge.handshake_timeout, a.edge.header_timeout, a.edge.body_timeout),
            (1024, 10.0, 10.0, 30.0)
        );
        assert!(!a.edge.plain_http && a.edge.cert_out.is_none() && a.edge.tls_names.is_empty());
    }

    #[test]
    fn plain_http_needs_insecure() {
        assert!(ServeArgs::try_parse_from(["talaria-serve", "--plain-http"]).is_err());
        let a = ServeArgs::try_parse_from(["talaria-serve", "--plain-http", "--insecure"]).unwrap();
        assert!(a.edge.plain_http && a.backend.insecure);
    }
}
