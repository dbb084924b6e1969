//! Markdown tables and SVG plots of the runs.

use std::fmt::Write;

use super::stats::{Dist, RunSummary};
use super::Args;
use crate::plot::bars::{Bar, BarPanel, BarPanels};

fn conc(c: Option<usize>) -> String {
    c.map_or("∞".into(), |c| c.to_string())
}

fn run_name(r: &RunSummary) -> String {
    format!("{} (concurrency {})", r.label, conc(r.concurrency))
}

pub fn one_line(r: &RunSummary) -> String {
    format!(
        "{}: {} ok, {} failed, {:.2} req/s, {:.1} output tok/s | TTFT p50 {:.0} ms | TPOT p50 {:.1} ms | ITL p50 {:.1} ms | E2E p50 {:.0} ms",
        run_name(r),
        r.completed,
        r.failed,
        r.request_throughput,
        r.output_throughput,
        r.ttft_ms.p50,
        r.tpot_ms.p50,
        r.itl_ms.p50,
        r.e2e_ms.p50
    )
}

fn dist_cells(d: &Dist) -> String {
    format!("{:.1} | {:.1} | {:.1} | {:.1}", d.mean, d.p50, d.p90, d.p99)
}

pub fn markdown(a: &Args, runs: &[RunSummary]) -> String {
    let rate = if a.request_rate.is_finite() {
        format!("{} req/s ({})", a.request_rate, if a.fixed_rate { "fixed" } else { "Poisson" })
    } else {
        "inf (all at once)".into()
    };
    let mut s = format!(
        "`bench serve`: endpoint {}, {} prompts ({}), rate {rate}, max_tokens {}, ignore_eos {}, temperature {}\n\n",
        a.endpoint,
        a.num_prompts,
        a.dataset.as_ref().map_or(format!("synthetic, up to {} extra sentences", a.synthetic_sentences), |p| p.display().to_string()),
        a.max_tokens,
        a.ignore_eos,
        a.temperature
    );
    s.push_str("| server | concurrency | ok | failed | duration s | req/s | output tok/s | total tok/s | output tok/s vs first row of this server |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let base = runs.iter().find(|b| b.label == r.label).map_or(1.0, |b| b.output_throughput.max(1e-9));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1} | {:.2} | {:.1} | {:.1} | {:.2}× |",
            r.label,
            conc(r.concurrency),
            r.completed,
            r.failed,
            r.duration_s,
            r.request_throughput,
            r.output_throughput,
            r.total_token_throughput,
            r.output_throughput / base
        );
    }
    s.push_str(&ratio_table(runs));
    s.push_str(&masking_table(runs));
    s.push_str(&cvm_side_table(runs));
    s.push_str("\n| server | concurrency | metric (ms) | mean | p50 | p90 | p99 |\n|---|---|---|---|---|---|---|\n");
    for r in runs {
        for (name, d) in [("TTFT", &r.ttft_ms), ("TPOT", &r.tpot_ms), ("ITL", &r.itl_ms), ("E2E", &r.e2e_ms)] {
            let _ = writeln!(s, "| {} | {} | {name} | {} |", r.label, conc(r.concurrency), dist_cells(d));
        }
    }
    if let Some(e) = runs.iter().find_map(|r| r.first_error.as_ref()) {
        let _ = writeln!(s, "\nFirst error: `{e}`");
    }
    s
}

/// Output throughput of each confidential run over the unprotected ones
/// (`plain`: unmasked rows to the same worker; `local`: no worker) at the
/// same concurrency, where the run has them (docs/DESIGN.md §6: the ratio measured
/// in one run).
fn ratio_table(runs: &[RunSummary]) -> String {
    let base = |label: &str, c: &RunSummary| {
        runs.iter().find(|b| b.label == label && b.concurrency == c.concurrency).map(|b| r_ratio(c.output_throughput, b.output_throughput))
    };
    let rows: Vec<String> = runs
        .iter()
        .filter(|r| r.label.starts_with("confidential"))
        .filter_map(|r| {
            let (p, l) = (base("plain", r), base("local", r));
            (p.is_some() || l.is_some()).then(|| {
                let cell = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
                format!("| {} | {} | {} | {} |\n", r.label, conc(r.concurrency), cell(p), cell(l))
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n| server | concurrency | output tok/s ÷ plain | ÷ local |\n|---|---|---|---|\n");
    rows.iter().for_each(|r| s.push_str(r));
    s
}

/// A table with a row for each run that has its figures, or nothing.
fn run_table(runs: &[RunSummary], header: &str, row: impl Fn(&RunSummary) -> Option<String>) -> String {
    let rows: Vec<String> = runs.iter().filter_map(row).collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut s = format!("\n{header}\n");
    rows.iter().for_each(|r| {
        s.push_str(r);
        s.push('\n');
    });
    s
}

/// What masking cost each masking run (see `masking`).
fn masking_table(runs: &[RunSummary]) -> String {
    run_table(
        runs,
        "| server | concurrency | online answer checks, ms / output token | share of the run's wall time | all checks (pad batches, references), ms / output token | rows masked | dummy rows (share) |\n|---|---|---|---|---|---|---|",
        |r| {
            let m = r.masking.as_ref()?;
            Some(format!(
                "| {} | {} | {:.3} | {:.1} % | {:.3} | {:.0} | {:.1} % |",
                r.label,
                conc(r.concurrency),
                m.online_check_ms_per_token,
                100.0 * m.online_check_share,
                m.all_checks_ms_per_token,
                m.masked_rows,
                100.0 * m.dummy_share
            ))
        },
    )
}

/// The CVM's own ms per output token (see `cvm_side`).
fn cvm_side_table(runs: &[RunSummary]) -> String {
    run_table(
        runs,
        "| server | concurrency | engine thread busy, ms / output token | of it waiting for the worker | CVM side | weight-free compute | pad production (engine thread) | masking, checks, moving rows | pad threads (CPU) |\n|---|---|---|---|---|---|---|---|---|",
        |r| {
            let c = r.cvm_side.as_ref()?;
            let masked = |v: f64| if c.masked { format!("{v:.2}") } else { "–".into() };
            Some(format!(
                "| {} | {} | {:.2} | {} | {} | {:.2} | {} | {} | {} |",
                r.label,
                conc(r.concurrency),
                c.engine_busy,
                masked(c.worker_wait),
                masked(c.cvm_side),
                c.compute,
                masked(c.pad_engine),
                masked(c.masking),
                masked(c.pad_threads),
            ))
        },
    )
}

fn r_ratio(a: f64, b: f64) -> f64 {
    a / b.max(1e-9)
}

pub fn latency_svg(runs: &[RunSummary]) -> anyhow::Result<String> {
    let panel = |title: &str, f: fn(&RunSummary) -> &Dist| BarPanel {
        title: title.into(),
        bars: runs.iter().map(|r| Bar { value: f(r).p50, whisker: Some(f(r).p99) }).collect(),
    };
    BarPanels {
        title: "Serving latency".into(),
        note: "solid: p50, light: p99".into(),
        series: runs.iter().map(run_name).collect(),
        panels: vec![
            panel("TTFT (ms)", |r| &r.ttft_ms),
            panel("TPOT (ms)", |r| &r.tpot_ms),
            panel("ITL (ms)", |r| &r.itl_ms),
            panel("E2E (ms)", |r| &r.e2e_ms),
        ],
    }
    .svg()
}

pub fn throughput_svg(runs: &[RunSummary]) -> anyhow::Result<String> {
    let panel = |title: &str, f: fn(&RunSummary) -> f64| BarPanel {
        title: title.into(),
        bars: runs.iter().map(|r| Bar { value: f(r), whisker: None }).collect(),
    };
    BarPanels {
        title: "Serving throughput".into(),
        note: String::new(),
        series: runs.iter().map(run_name).collect(),
        panels: vec![panel("output tokens/s", |r| r.output_throughput), panel("requests/s", |r| r.request_throughput)],
    }
    .svg()
}
