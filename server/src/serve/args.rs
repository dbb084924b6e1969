//! Command-line flags of `talaria-serve`.

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
    /// Address to listen on (loopback by default; the HTTP API is not yet
    /// behind TLS).
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
}

/// Parses a byte size: a number with an optional unit (B, KB, MB, GB, KiB,
/// MiB, GiB, also K/M/G = binary), case-insensitive.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{s:?} is not a byte size (try 2GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown byte unit {other:?} in {s:?}")),
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5 MiB"), Ok(1_572_864));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert_eq!(parse_bytes("3gb"), Ok(3_000_000_000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("2XB").is_err());
        assert!(parse_bytes("0").is_err());
    }
}
