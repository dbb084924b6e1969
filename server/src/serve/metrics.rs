//! Prometheus metrics: the engine's queue and KV gauges, token counters,
//! finished requests by reason, and TTFT / TPOT / end-to-end histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use talaria_engine::scheduler::StatsSnapshot;

const TTFT_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const TPOT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const E2E_BUCKETS: &[f64] = &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0];

pub struct Histogram {
    buckets: &'static [f64],
    /// Per-bucket counts (not cumulative), then the sum and the count.
    state: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Self { buckets, state: Mutex::new((vec![0; buckets.len()], 0.0, 0)) }
    }

    pub fn observe(&self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if let Ok(mut s) = self.state.lock() {
            if let Some(i) = self.buckets.iter().position(|&b| v <= b) {
                s.0[i] += 1;
            }
            s.1 += v;
            s.2 += 1;
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let Ok(s) = self.state.lock() else { return };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.buckets.iter().zip(&s.0) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}", s.2, s.1, s.2);
    }
}

pub struct ServerMetrics {
    pub prompt_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    finished: Mutex<BTreeMap<&'static str, u64>>,
    pub ttft: Histogram,
    pub tpot: Histogram,
    pub e2e: Histogram,
}

impl Default for ServerMetrics {
    fn default() -> Self {
        Self {
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            finished: Mutex::new(BTreeMap::new()),
            ttft: Histogram::new(TTFT_BUCKETS),
            tpot: Histogram::new(TPOT_BUCKETS),
            e2e: Histogram::new(E2E_BUCKETS),
        }
    }
}

/// One finished (or abandoned) request, as the metrics see it.
pub struct RequestRecord {
    pub prompt_tokens: usize,
    pub generation_tokens: usize,
    pub ttft_s: Option<f64>,
    pub tpot_s: Option<f64>,
    pub e2e_s: f64,
    /// "stop", "length", "abort".
    pub finished_reason: &'static str,
}

impl ServerMetrics {
    pub fn record(&self, r: &RequestRecord) {
        self.prompt_tokens.fetch_add(r.prompt_tokens as u64, Relaxed);
        self.generation_tokens.fetch_add(r.generation_tokens as u64, Relaxed);
        if let Ok(mut f) = self.finished.lock() {
            *f.entry(r.finished_reason).or_default() += 1;
        }
        if let Some(t) = r.ttft_s {
            self.ttft.observe(t);
        }
        if let Some(t) = r.tpot_s {
            self.tpot.observe(t);
        }
        self.e2e.observe(r.e2e_s);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, e: &StatsSnapshot, model: &str) -> String {
        let mut o = String::new();
        let gauges: [(&str, &str, f64); 7] = [
            ("talaria_num_requests_running", "Requests with sequences in the running batch.", e.running_requests as f64),
            ("talaria_num_requests_waiting", "Requests waiting to be scheduled.", e.waiting_requests as f64),
            ("talaria_num_sequences_running", "Sequences in the running batch.", e.running_seqs as f64),
            ("talaria_kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1).", e.kv_usage()),
            ("talaria_kv_cache_used_blocks", "KV-cache blocks in use.", e.kv_used_blocks as f64),
            ("talaria_kv_cache_total_blocks", "KV-cache blocks in the pool.", e.kv_total_blocks as f64),
            ("talaria_engine_alive", "1 while the engine thread runs.", if e.alive { 1.0 } else { 0.0 }),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{model_name=\"{model}\"}} {v}");
        }
        let counters: [(&str, &str, u64); 5] = [
            ("talaria_prompt_tokens_total", "Prompt tokens of finished requests.", self.prompt_tokens.load(Relaxed)),
            ("talaria_generation_tokens_total", "Generated tokens of finished requests.", self.generation_tokens.load(Relaxed)),
            ("talaria_num_preemptions_total", "Sequences preempted (KV blocks freed, recomputed later).", e.preemptions_total),
            ("talaria_engine_steps_total", "Engine steps (forward passes).", e.steps_total),
            ("talaria_batched_tokens_total", "Tokens run through the model, prefill and decode.", e.batched_tokens_total),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{model_name=\"{model}\"}} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP talaria_request_success_total Finished requests by finish reason.\n# TYPE talaria_request_success_total counter"
        );
        if let Ok(f) = self.finished.lock() {
            for (reason, n) in f.iter() {
                let _ = writeln!(o, "talaria_request_success_total{{model_name=\"{model}\",finished_reason=\"{reason}\"}} {n}");
            }
        }
        self.ttft.render(&mut o, "talaria_time_to_first_token_seconds", "Time to first token.");
        self.tpot.render(&mut o, "talaria_time_per_output_token_seconds", "Mean time per output token after the first, per request.");
        self.e2e.render(&mut o, "talaria_e2e_request_latency_seconds", "End-to-end request latency.");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = ServerMetrics::default();
        m.record(&RequestRecord {
            prompt_tokens: 3,
            generation_tokens: 5,
            ttft_s: Some(0.003),
            tpot_s: Some(0.02),
            e2e_s: 0.4,
            finished_reason: "stop",
        });
        m.record(&RequestRecord {
            prompt_tokens: 1,
            generation_tokens: 1,
            ttft_s: Some(0.5),
            tpot_s: None,
            e2e_s: 1000.0,
            finished_reason: "length",
        });
        let text = m.render(&StatsSnapshot { kv_used_blocks: 1, kv_total_blocks: 4, alive: true, ..Default::default() }, "m");
        assert!(text.contains("talaria_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"), "{text}");
        assert!(text.contains("talaria_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("talaria_e2e_request_latency_seconds_bucket{le=\"960\"} 1\n"));
        assert!(text.contains("talaria_prompt_tokens_total{model_name=\"m\"} 4\n"));
        assert!(text.contains("talaria_kv_cache_usage_perc{model_name=\"m\"} 0.25\n"));
        assert!(text.contains("finished_reason=\"length\"} 1\n"));
    }
}
