//! Prometheus metrics through `prometheus-client`: the engine's queue and KV
//! gauges and step counters (read from its stats at each scrape), token
//! counters, finished requests by reason, and TTFT / TPOT / end-to-end
//! histograms. Names follow vLLM's with the `talaria_` prefix; every series
//! carries the `model_name` label.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeCounterValue, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use talaria_engine::scheduler::StatsSnapshot;

/// The `Content-Type` of what `render` returns (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

const TTFT_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const TPOT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
const E2E_BUCKETS: &[f64] = &[0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedReason {
    finished_reason: &'static str,
}

pub struct ServerMetrics {
    registry: Registry,
    prompt_tokens: Counter,
    generation_tokens: Counter,
    finished: Family<FinishedReason, Counter>,
    ttft: Histogram,
    tpot: Histogram,
    e2e: Histogram,
    /// The engine's counters as of the scrape in progress; `render` holds
    /// `scrape` while it sets this and encodes.
    engine: Arc<Mutex<StatsSnapshot>>,
    scrape: Mutex<()>,
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
    pub fn new(model_name: &str) -> Self {
        let labels = [(Cow::Borrowed("model_name"), Cow::Owned(model_name.to_string()))];
        let mut registry = Registry::with_prefix_and_labels("talaria", labels.into_iter());
        let m = Self {
            prompt_tokens: Counter::default(),
            generation_tokens: Counter::default(),
            finished: Family::default(),
            ttft: Histogram::new(TTFT_BUCKETS.iter().copied()),
            tpot: Histogram::new(TPOT_BUCKETS.iter().copied()),
            e2e: Histogram::new(E2E_BUCKETS.iter().copied()),
            engine: Arc::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register("prompt_tokens", "Prompt tokens of finished requests", m.prompt_tokens.clone());
        registry.register("generation_tokens", "Generated tokens of finished requests", m.generation_tokens.clone());
        registry.register("request_success", "Finished requests by finish reason", m.finished.clone());
        registry.register("time_to_first_token_seconds", "Time to first token", m.ttft.clone());
        registry.register("time_per_output_token_seconds", "Mean time per output token after the first, per request", m.tpot.clone());
        registry.register("e2e_request_latency_seconds", "End-to-end request latency", m.e2e.clone());
        registry.register_collector(Box::new(EngineCollector(m.engine.clone())));
        Self { registry, ..m }
    }

    pub fn record(&self, r: &RequestRecord) {
        self.prompt_tokens.inc_by(r.prompt_tokens as u64);
        self.generation_tokens.inc_by(r.generation_tokens as u64);
        self.finished.get_or_create(&FinishedReason { finished_reason: r.finished_reason }).inc();
        // A histogram cannot take NaN or infinity (it would poison `_sum`).
        let observe = |h: &Histogram, v: f64| {
            if v.is_finite() {
                h.observe(v)
            }
        };
        if let Some(t) = r.ttft_s {
            observe(&self.ttft, t);
        }
        if let Some(t) = r.tpot_s {
            observe(&self.tpot, t);
        }
        observe(&self.e2e, r.e2e_s);
    }

    /// The Prometheus text exposition, with the engine's counters `e`.
    pub fn render(&self, e: &StatsSnapshot) -> String {
        let _one_scrape_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        *self.engine.lock().unwrap_or_else(|p| p.into_inner()) = *e;
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Counters as (name, help, value).
fn encode_counters<N: EncodeCounterValue + Copy>(enc: &mut DescriptorEncoder, list: &[(&str, &str, N)]) -> Result<(), std::fmt::Error> {
    for &(name, help, v) in list {
        ConstCounter::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)?;
    }
    Ok(())
}

/// The engine's gauges and counters, encoded from the snapshot of the scrape.
#[derive(Debug)]
struct EngineCollector(Arc<Mutex<StatsSnapshot>>);

impl Collector for EngineCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        let gauges: [(&str, &str, f64); 8] = [
            ("num_requests_running", "Requests with sequences in the running batch.", e.running_requests as f64),
            ("num_requests_waiting", "Requests waiting to be scheduled.", e.waiting_requests as f64),
            ("num_sequences_running", "Sequences in the running batch.", e.running_seqs as f64),
            ("kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0..1).", e.kv_usage()),
            ("kv_cache_used_blocks", "KV-cache blocks in use.", e.kv_used_blocks as f64),
            ("kv_cache_total_blocks", "KV-cache blocks in the pool.", e.kv_total_blocks as f64),
            ("engine_alive", "1 while the engine thread runs.", if e.alive { 1.0 } else { 0.0 }),
            ("ready", "1 once the backend's start-up work (pad pools) is done.", if e.ready { 1.0 } else { 0.0 }),
        ];
        for (name, help, v) in gauges {
            ConstGauge::new(v).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let counters: [(&str, &str, u64); 6] = [
            ("num_preemptions", "Sequences preempted (K/V swapped out or freed).", e.preemptions_total),
            ("resent_rows", "Rows masked and sent again because a preempted sequence recomputed.", e.resent_rows_total),
            ("engine_steps", "Engine steps (forward passes).", e.steps_total),
            ("batched_tokens", "Tokens run through the model, prefill and decode.", e.batched_tokens_total),
            ("prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", e.prefix_cache_queries_total),
            ("prefix_cache_hits", "Prompt tokens found in the prefix cache (not computed or sent again).", e.prefix_cache_hits_total),
        ];
        encode_counters(&mut enc, &counters)?;
        let engine_seconds: [(&str, &str, f64); 2] = [
            (
                "engine_busy_seconds",
                "Engine-thread time in steps (after-step work included) and idle-time backend work.",
                e.busy.as_secs_f64(),
            ),
            (
                "cvm_compute_seconds",
                "Weight-free part of the forward passes (embedding, norms, RoPE, attention, sampling).",
                e.cvm_compute.as_secs_f64(),
            ),
        ];
        encode_counters(&mut enc, &engine_seconds)?;
        // Only a masking backend has these (absent, not zero, otherwise).
        if let Some(m) = e.masking {
            let rows: [(&str, &str, u64); 2] = [
                ("masked_rows", "Real rows masked and sent to the worker, summed over ops.", m.online_rows),
                ("bucket_dummy_rows", "Dummy rows added to reach the row buckets (each spends a pad).", m.dummy_rows),
            ];
            encode_counters(&mut enc, &rows)?;
            let seconds: [(&str, &str, f64); 5] = [
                (
                    "answer_check_online_seconds",
                    "CVM time verifying online answers (on the steps' critical path).",
                    m.online_check.as_secs_f64(),
                ),
                (
                    "answer_check_seconds",
                    "CVM time verifying every answer, pad batches and references included.",
                    m.all_checks.as_secs_f64(),
                ),
                (
                    "worker_wait_seconds",
                    "Time waiting for the worker's answers (its compute and the transport).",
                    m.worker_wait.as_secs_f64(),
                ),
                (
                    "pad_engine_seconds",
                    "Pad batches' CVM time on the engine thread, the worker's wait excluded.",
                    m.pad_engine.as_secs_f64(),
                ),
                (
                    "pad_thread_seconds",
                    "CPU time of the pad threads (pad batches' stages off the engine thread).",
                    m.pad_threads.as_secs_f64(),
                ),
            ];
            encode_counters(&mut enc, &seconds)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ttft_s: Option<f64>, e2e_s: f64, finished_reason: &'static str) -> RequestRecord {
        RequestRecord { prompt_tokens: 2, generation_tokens: 3, ttft_s, tpot_s: Some(0.02), e2e_s, finished_reason }
    }

    #[test]
    fn histograms_are_cumulative_and_every_series_names_the_model() {
        let m = ServerMetrics::new("m");
        m.record(&record(Some(0.003), 0.4, "stop"));
        m.record(&record(Some(0.5), 1000.0, "length"));
        m.record(&record(Some(f64::NAN), f64::INFINITY, "abort"));
        let text = m.render(&StatsSnapshot { kv_used_blocks: 1, kv_total_blocks: 4, alive: true, ..Default::default() });
        for line in [
            "talaria_time_to_first_token_seconds_bucket{model_name=\"m\",le=\"0.005\"} 1\n",
            "talaria_time_to_first_token_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 2\n",
            "talaria_e2e_request_latency_seconds_bucket{model_name=\"m\",le=\"960\"} 1\n",
            "talaria_e2e_request_latency_seconds_count{model_name=\"m\"} 2\n",
            "talaria_prompt_tokens_total{model_name=\"m\"} 6\n",
            "talaria_kv_cache_usage_perc{model_name=\"m\"} 0.25\n",
            "talaria_engine_alive{model_name=\"m\"} 1",
            "talaria_num_preemptions_total{model_name=\"m\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains("finished_reason=\"length\""), "{text}");
        let series = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty());
        for l in series {
            assert!(l.contains("model_name=\"m\""), "a series without the model label: {l}");
        }
    }

    #[test]
    fn masking_counters_appear_only_for_a_masking_backend() {
        let m = ServerMetrics::new("m");
        assert!(!m.render(&StatsSnapshot::default()).contains("answer_check"), "an unmasked backend has no checks");
        let masking = talaria_engine::MaskingCounters {
            online_rows: 96,
            dummy_rows: 32,
            online_check: std::time::Duration::from_millis(250),
            all_checks: std::time::Duration::from_secs(2),
            worker_wait: std::time::Duration::from_secs(3),
            pad_engine: std::time::Duration::from_millis(500),
            pad_threads: std::time::Duration::from_secs(4),
        };
        let text = m.render(&StatsSnapshot { masking: Some(masking), ..Default::default() });
        for line in [
            "talaria_masked_rows_total{model_name=\"m\"} 96\n",
            "talaria_bucket_dummy_rows_total{model_name=\"m\"} 32\n",
            "talaria_answer_check_online_seconds_total{model_name=\"m\"} 0.25\n",
            "talaria_answer_check_seconds_total{model_name=\"m\"} 2.0\n",
            "talaria_worker_wait_seconds_total{model_name=\"m\"} 3.0\n",
            "talaria_pad_engine_seconds_total{model_name=\"m\"} 0.5\n",
            "talaria_pad_thread_seconds_total{model_name=\"m\"} 4.0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = ServerMetrics::new("a \"quoted\"\\name\n");
        let text = m.render(&StatsSnapshot::default());
        assert!(text.contains(r#"model_name="a \"quoted\"\\name\n""#), "{text}");
        assert!(!text.lines().any(|l| l == "\"}"), "a raw newline split a series: {text}");
    }
}
