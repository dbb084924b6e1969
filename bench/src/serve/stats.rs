//! Summary of one run: throughput and TTFT / TPOT / ITL / E2E statistics.

use serde::Serialize;

use super::client::RequestResult;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Dist {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// Mean and percentiles (linear interpolation) of `v`, in milliseconds
/// when `v` is in seconds and `scale` is 1000.
pub fn dist(v: &[f64], scale: f64) -> Dist {
    if v.is_empty() {
        return Dist::default();
    }
    let mut s: Vec<f64> = v.iter().map(|x| x * scale).collect();
    s.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let pos = p / 100.0 * (s.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
    };
    Dist { mean: s.iter().sum::<f64>() / s.len() as f64, p50: pct(50.0), p90: pct(90.0), p99: pct(99.0) }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub label: String,
    pub concurrency: Option<usize>,
    pub completed: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub duration_s: f64,
    pub request_throughput: f64,
    pub output_throughput: f64,
    pub total_token_throughput: f64,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// Milliseconds.
    pub ttft_ms: Dist,
    pub tpot_ms: Dist,
    pub itl_ms: Dist,
    pub e2e_ms: Dist,
    /// What masking cost (masking servers only; set by the caller).
    pub masking: Option<super::masking::MaskingCost>,
    /// The CVM's own ms per output token (see `cvm_side`).
    pub cvm_side: Option<super::cvm_side::CvmSideCost>,
}

pub fn summarize(label: &str, concurrency: Option<usize>, results: &[RequestResult]) -> RunSummary {
    let ok: Vec<&RequestResult> = results.iter().filter(|r| r.ok).collect();
    let start = results.iter().map(|r| r.sent_at).fold(f64::INFINITY, f64::min);
    let end = results.iter().map(|r| r.sent_at + r.e2e).fold(0.0, f64::max);
    let duration = if start.is_finite() { (end - start).max(1e-9) } else { 0.0 };
    let prompt_tokens: usize = ok.iter().map(|r| r.prompt_tokens).sum();
    let output_tokens: usize = ok.iter().map(|r| r.output_tokens).sum();
    let per_sec = |x: f64| if duration > 0.0 { x / duration } else { 0.0 };
    let tpots: Vec<f64> = ok.iter().filter(|r| r.output_tokens > 1).map(|r| (r.e2e - r.ttft) / (r.output_tokens - 1) as f64).collect();
    let itls: Vec<f64> = ok.iter().flat_map(|r| r.itl.iter().copied()).collect();
    RunSummary {
        label: label.to_string(),
        concurrency,
        completed: ok.len(),
        failed: results.len() - ok.len(),
        first_error: results.iter().find_map(|r| r.error.clone()),
        duration_s: duration,
        request_throughput: per_sec(ok.len() as f64),
        output_throughput: per_sec(output_tokens as f64),
        total_token_throughput: per_sec((prompt_tokens + output_tokens) as f64),
        prompt_tokens,
        output_tokens,
        ttft_ms: dist(&ok.iter().map(|r| r.ttft).collect::<Vec<_>>(), 1e3),
        tpot_ms: dist(&tpots, 1e3),
        itl_ms: dist(&itls, 1e3),
        e2e_ms: dist(&ok.iter().map(|r| r.e2e).collect::<Vec<_>>(), 1e3),
        masking: None,
        cvm_side: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let d = dist(&[4.0, 1.0, 3.0, 2.0, 5.0], 1.0);
        assert_eq!((d.mean, d.p50), (3.0, 3.0));
        assert!((d.p90 - 4.6).abs() < 1e-9);
        assert_eq!(dist(&[], 1.0).p99, 0.0);
    }

    #[test]
    fn summary_counts_tokens_and_time() {
        let r = |sent_at: f64, ok: bool| RequestResult {
            ok,
            prompt_tokens: 10,
            output_tokens: 5,
            ttft: 0.1,
            itl: vec![0.1; 4],
            e2e: 0.5,
            sent_at,
            error: (!ok).then(|| "boom".into()),
        };
        let s = summarize("x", Some(2), &[r(0.0, true), r(0.5, true), r(0.2, false)]);
        assert_eq!((s.completed, s.failed, s.output_tokens), (2, 1, 10));
        assert!((s.duration_s - 1.0).abs() < 1e-9);
        assert!((s.output_throughput - 10.0).abs() < 1e-9);
        assert!((s.tpot_ms.mean - 100.0).abs() < 1e-9);
        assert_eq!(s.first_error.as_deref(), Some("boom"));
    }
}
