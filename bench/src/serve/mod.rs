//! `bench serve`: the serving benchmark against `talaria-serve`, in the
//! spirit of vLLM's benchmark_serving: Poisson (or fixed-rate, or all at
//! once) arrivals, an optional concurrency cap, streamed requests timed
//! for TTFT / TPOT / ITL / end-to-end, and request and token throughput.
//! It can start the server itself, once per `--mode`, so plain and
//! confidential are measured side by side in one run. `--duration` turns
//! it into a soak test (errors and the server's resident memory over time).
//!
//! - `dataset`: prompts from a JSONL file or built-in synthetic ones;
//! - `launch`: starting and stopping `talaria-serve`, reading its RSS;
//! - `client`: one streamed request, timed;
//! - `load`: arrivals and concurrency for one run;
//! - `stats`: percentiles and the summary of a run;
//! - `masking`: what masking cost a run (checks, bucket rows), from `/metrics`;
//! - `cvm_side`: the CVM's own ms per output token (all but the worker wait);
//! - `report`: markdown tables and SVG plots;
//! - `soak`: the soak mode.
mod client;
mod cvm_side;
mod dataset;
mod launch;
mod load;
mod masking;
mod report;
mod soak;
mod stats;

use std::path::PathBuf;

use anyhow::Context;

use crate::machine;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Benchmark a running server instead of starting one.
    #[arg(long)]
    pub url: Option<String>,
    /// Start `talaria-serve` with each of these backend modes in turn
    /// (local, plain, confidential, confidential-fast = `--mode
    /// confidential --precision fast`); ignored with --url.
    #[arg(long = "mode", value_delimiter = ',', default_value = "local")]
    pub modes: Vec<String>,
    /// The HTTP edge of a started server: `http` (plain HTTP) or `tls`
    /// (attested TLS, simulated attestation; the client trusts the
    /// certificate the server writes). A list runs each mode once per edge,
    /// one after the other (e.g. http,tls: the cost of TLS).
    #[arg(long = "edge", value_delimiter = ',', default_value = "http")]
    pub edges: Vec<String>,
    /// With an https --url: the server's certificate (PEM) to trust, e.g.
    /// the one `talaria verify` pinned.
    #[arg(long)]
    pub cacert: Option<PathBuf>,
    /// The server binary (default: `talaria-serve` next to this binary).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Model passed to the server (default: its default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Extra flags for the server, e.g. --server-arg=--kv-cache-memory=1GiB.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// `completions` or `chat`.
    #[arg(long, default_value = "completions")]
    pub endpoint: String,
    /// Prompts from a JSONL file: one object per line with "prompt" (text)
    /// or "messages" (chat), optionally "max_tokens". Default: synthetic.
    /// Prompts from a JSONL file (see `dataset.rs`) instead of synthetic ones.
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Requests per run.
    #[arg(long, default_value_t = 64)]
    pub num_prompts: usize,
    /// Synthetic prompts: at most this many extra sentences after the
    /// ~8-token instruction (0: all short, decode-dominated).
    #[arg(long, default_value_t = 30)]
    pub synthetic_sentences: usize,
    /// Requests per second (Poisson arrivals), or "inf" to send all at once.
    #[arg(long, default_value = "inf", value_parser = parse_rate)]
    pub request_rate: f64,
    /// Fixed intervals of 1/rate instead of Poisson arrivals.
    #[arg(long)]
    pub fixed_rate: bool,
    /// Most requests in flight; a list runs once per value (e.g. 1,32).
    #[arg(long, value_delimiter = ',')]
    pub max_concurrency: Vec<usize>,
    /// max_tokens of every request.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Generate max_tokens whatever the model says (fixed output lengths).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Sampling temperature of every request (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Seed of the arrivals and the synthetic prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where results.md, results.json and the SVG plots go.
    #[arg(long, default_value = "bench/out/serve")]
    pub out: PathBuf,
    /// Append the tables to bench/RESULTS.md.
    #[arg(long)]
    pub record: bool,
    /// Soak mode: run this long (e.g. 300s, 5m) with --clients closed-loop clients.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<f64>,
    /// Soak mode: closed-loop clients, each sending its next request when
    /// the last one ends.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// With --url in soak mode: the server's pid, to read its memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "inf" | "infinity" => Ok(f64::INFINITY),
        v => v.parse::<f64>().ok().filter(|r| *r > 0.0).ok_or_else(|| format!("request rate must be > 0 or inf, got {s:?}")),
    }
}

/// "300s", "5m", "1h", "90" (seconds).
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (num, scale) = if let Some(v) = t.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = t.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = t.strip_suffix('m') {
        (v, 60.0)
    } else if let Some(v) = t.strip_suffix('h') {
        (v, 3600.0)
    } else {
        (t, 1.0)
    };
    num.trim().parse::<f64>().ok().filter(|v| *v > 0.0).map(|v| v * scale).ok_or_else(|| format!("not a duration: {s:?} (try 300s or 5m)"))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    if a.duration.is_some() {
        return soak::run(&a);
    }
    let prompts = dataset::load(&a)?;
    let concurrencies: Vec<Option<usize>> =
        if a.max_concurrency.is_empty() { vec![None] } else { a.max_concurrency.iter().map(|&c| Some(c.max(1))).collect() };
    let mut runs = Vec::new();
    if let Some(c) = &a.cacert {
        client::trust_certificate(Some(std::fs::read(c).with_context(|| format!("reading {}", c.display()))?));
    }
    let targets: Vec<Option<(String, String)>> = if a.url.is_some() {
        vec![None]
    } else {
        a.modes.iter().flat_map(|m| a.edges.iter().map(move |e| Some((m.clone(), e.clone())))).collect()
    };
    for target in targets {
        let server = match &target {
            Some((m, e)) => Some(launch::Server::start(&a, m, e, &a.out)?),
            None => None,
        };
        let base = server.as_ref().map(|s| s.base.clone()).or_else(|| a.url.clone()).unwrap_or_default();
        let label = match &target {
            Some((m, e)) if a.edges.len() > 1 || e != "http" => format!("{m}+{e}"),
            Some((m, _)) => m.clone(),
            None => base.clone(),
        };
        let model = client::served_model(&base)?;
        for &conc in &concurrencies {
            eprintln!(
                "[{label}] {} prompts, rate {}, concurrency {}",
                prompts.len(),
                a.request_rate,
                conc.map_or("unlimited".into(), |c| c.to_string())
            );
            let before = masking::MaskingTotals::scrape(&base);
            let cvm_before = cvm_side::CvmTotals::scrape(&base);
            let results = load::run(&a, &base, &model, &prompts, conc)?;
            let mut summary = stats::summarize(&label, conc, &results);
            if let (Some(b), Some(after)) = (before, masking::MaskingTotals::scrape(&base)) {
                summary.masking = Some(after.cost_since(&b, summary.output_tokens, summary.duration_s));
            }
            if let (Some(b), Some(after)) = (cvm_before, cvm_side::CvmTotals::scrape(&base)) {
                summary.cvm_side = Some(after.cost_since(&b, summary.output_tokens));
            }
            println!("{}", report::one_line(&summary));
            runs.push(summary);
        }
        if let Some(s) = server {
            s.stop()?;
        }
    }
    let md = report::markdown(&a, &runs);
    println!("\n{md}");
    std::fs::write(a.out.join("results.md"), &md)?;
    std::fs::write(a.out.join("results.json"), serde_json::to_string_pretty(&runs)?)?;
    std::fs::write(a.out.join("latency.svg"), report::latency_svg(&runs)?)?;
    std::fs::write(a.out.join("throughput.svg"), report::throughput_svg(&runs)?)?;
    eprintln!("wrote {}/results.md, results.json, latency.svg, throughput.svg", a.out.display());
    if a.record {
        machine::append_results("Serving benchmark", &md)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("300s"), Ok(300.0));
        assert_eq!(parse_duration("5m"), Ok(300.0));
        assert_eq!(parse_duration("250ms"), Ok(0.25));
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_rate("inf"), Ok(f64::INFINITY));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0").is_err());
    }
}
