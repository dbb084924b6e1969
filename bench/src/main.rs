//! `bench`: Talaria's benchmarks. Numbers are printed and appended to
//! bench/RESULTS.md with the machine description; none of this is a test.
//!
//! Subcommands (one module each):
//! - `throughput`: offline prefill/decode tokens/s of the plain engine;
//! - `split`: confidential vs plain ratio and the per-step time split;
//! - `privacy`: the attack suite on worker recordings;
//! - `serve`: the serving benchmark against `talaria-serve`.
use clap::{Parser, Subcommand};

mod machine;
mod plot;
mod privacy;
mod serve;
mod split;
mod throughput;

#[derive(Parser)]
#[command(name = "bench", about = "Talaria benchmarks (numbers go to bench/RESULTS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offline throughput of the plain engine: prefill and decode tokens/s.
    Throughput(throughput::Args),
    /// Confidential vs plain: ratios and the per-step time split.
    Split(split::Args),
    /// Serving benchmark against talaria-serve (latency, throughput, soak).
    Serve(Box<serve::Args>),
    /// The privacy attack suite on worker recordings (or synthetic ones).
    Privacy(privacy::Args),
}

fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    talaria_kernels::cpu::join_global_pool();
    match Cli::parse().command {
        Command::Throughput(a) => throughput::run(a),
        Command::Split(a) => split::run(a),
        Command::Serve(a) => serve::run(*a),
        Command::Privacy(a) => privacy::run(a),
    }
}
