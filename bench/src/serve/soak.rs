//! Soak mode: `--clients` closed-loop clients for `--duration`, counting
//! errors, while the server's resident memory (VmRSS) is sampled every
//! second. Reports RSS growth after warm-up (a leak shows as a steady
//! climb) and checks that every KV block is free at the end.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::client::{self, RequestSpec};
use super::launch::{rss_bytes, Server};
use super::{dataset, Args};
use crate::machine;
use crate::plot::lines::{Axis, Line, LineChart};
use crate::plot::style::color;

struct Sample {
    t: f64,
    rss_mib: f64,
    ok: usize,
    errors: usize,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let duration = a.duration.context("soak needs --duration")?;
    let prompts = dataset::load(a)?;
    let server = match &a.url {
        Some(_) => None,
        None => {
            Some(Server::start(a, a.modes.first().map_or("local", String::as_str), a.edges.first().map_or("http", String::as_str), &a.out)?)
        }
    };
    let base = server.as_ref().map(|s| s.base.clone()).or_else(|| a.url.clone()).unwrap_or_default();
    let pid = server.as_ref().map(|s| s.pid).or(a.server_pid);
    let label = a.url.clone().unwrap_or_else(|| a.modes.first().cloned().unwrap_or_default());
    let model = client::served_model(&base)?;
    let spec = RequestSpec { base: &base, model: &model, chat: a.endpoint == "chat", temperature: a.temperature, ignore_eos: a.ignore_eos };
    let agent = client::agent();
    let (ok, tokens, next) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    let errors: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::new());
    let start = Instant::now();
    eprintln!("soak: {} clients for {duration:.0}s against {base}", a.clients);
    std::thread::scope(|sc| {
        for _ in 0..a.clients.max(1) {
            sc.spawn(|| {
                while start.elapsed().as_secs_f64() < duration {
                    let p = &prompts[next.fetch_add(1, Relaxed) % prompts.len()];
                    let r = client::send(&agent, &spec, p, start.elapsed().as_secs_f64());
                    if r.ok {
                        ok.fetch_add(1, Relaxed);
                        tokens.fetch_add(r.output_tokens, Relaxed);
                    } else {
                        let kind: String = r.error.unwrap_or_default().chars().take(100).collect();
                        *errors.lock().expect("errors").entry(kind).or_default() += 1;
                    }
                }
            });
        }
        sc.spawn(|| {
            while !stop.load(Relaxed) {
                let rss = pid.and_then(rss_bytes).map_or(0.0, |b| b as f64 / (1024.0 * 1024.0));
                let errs = errors.lock().expect("errors").values().sum();
                samples.lock().expect("samples").push(Sample {
                    t: start.elapsed().as_secs_f64(),
                    rss_mib: rss,
                    ok: ok.load(Relaxed),
                    errors: errs,
                });
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        // The sampler stops once the clients have drained.
        while start.elapsed().as_secs_f64() < duration {
            std::thread::sleep(Duration::from_millis(200));
        }
        while next.load(Relaxed) > ok.load(Relaxed) + errors.lock().expect("errors").values().sum::<usize>() {
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Relaxed);
    });
    let elapsed = start.elapsed().as_secs_f64();
    let kv_used = kv_blocks_used(&base);
    let samples = samples.into_inner().expect("samples");
    let errors = errors.into_inner().expect("errors");
    let md = report(a, &label, elapsed, ok.load(Relaxed), tokens.load(Relaxed), &errors, &samples, kv_used);
    println!("{md}");
    std::fs::write(a.out.join("soak.md"), &md)?;
    let rss = samples.iter().map(|s| (s.t, s.rss_mib)).collect();
    std::fs::write(a.out.join("soak_rss.svg"), rss_svg(&format!("Soak: {} clients, {label}", a.clients), rss)?)?;
    eprintln!("wrote {}/soak.md and soak_rss.svg", a.out.display());
    if let Some(s) = server {
        s.stop()?;
    }
    if a.record {
        machine::append_results("Serving soak test", &md)?;
    }
    Ok(())
}

/// The server's resident memory over the run, (seconds, MiB) per sample.
fn rss_svg(title: &str, rss: Vec<(f64, f64)>) -> anyhow::Result<String> {
    LineChart {
        title: title.into(),
        x: Axis::linear("seconds"),
        y: Axis::linear("VmRSS (MiB)"),
        lines: vec![Line::new("server VmRSS (MiB)", color(0), rss)],
        ..LineChart::default()
    }
    .svg((760, 380))
}

/// KV blocks in use per the server's /metrics (None if unreadable).
fn kv_blocks_used(base: &str) -> Option<f64> {
    let mut r = client::agent().get(&format!("{base}/metrics")).call().ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    text.lines().find(|l| l.starts_with("talaria_kv_cache_used_blocks")).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

#[allow(clippy::too_many_arguments)]
fn report(
    a: &Args,
    label: &str,
    elapsed: f64,
    ok: usize,
    tokens: usize,
    errors: &BTreeMap<String, usize>,
    samples: &[Sample],
    kv_used: Option<f64>,
) -> String {
    let n_err: usize = errors.values().sum();
    let rss: Vec<f64> = samples.iter().map(|s| s.rss_mib).filter(|&r| r > 0.0).collect();
    let warm = rss.get(rss.len() / 10).copied().unwrap_or(0.0);
    let (first, last) = (rss.first().copied().unwrap_or(0.0), rss.last().copied().unwrap_or(0.0));
    let peak = rss.iter().copied().fold(0.0, f64::max);
    let mut s = format!(
        "`bench serve` soak: {label}, {} clients, {elapsed:.0} s, endpoint {}, max_tokens {}\n\n",
        a.clients, a.endpoint, a.max_tokens
    );
    s.push_str(
        "| requests ok | errors | output tok/s | VmRSS start | after warm-up (10%) | peak | end | growth after warm-up | KV blocks in use at the end |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let _ = writeln!(
        s,
        "| {ok} | {n_err} | {:.1} | {first:.0} MiB | {warm:.0} MiB | {peak:.0} MiB | {last:.0} MiB | {:+.1} MiB | {} |",
        tokens as f64 / elapsed.max(1e-9),
        last - warm,
        kv_used.map_or("?".into(), |v| format!("{v:.0}"))
    );
    if !errors.is_empty() {
        s.push_str("\n| error | count |\n|---|---|\n");
        for (k, v) in errors {
            let _ = writeln!(s, "| `{}` | {v} |", k.replace('|', "\\|"));
        }
    }
    s.push_str("\n| t (s) | VmRSS (MiB) | requests ok | errors |\n|---|---|---|---|\n");
    let stride = (samples.len() / 20).max(1);
    for smp in samples.iter().step_by(stride).chain(samples.last()) {
        let _ = writeln!(s, "| {:.0} | {:.0} | {} | {} |", smp.t, smp.rss_mib, smp.ok, smp.errors);
    }
    s
}
