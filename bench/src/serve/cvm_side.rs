//! The CVM's own milliseconds per output token over a run, from the
//! server's `/metrics` before and after it: the engine thread's busy time
//! less its wait for the worker (what a GPU worker would leave), split into
//! weight-free compute, pad production on the engine thread, and masking
//! (the rest: masking, unmasking, checks, moving rows), plus the pad
//! threads' CPU time beside it. Every server has the engine counters; the
//! wait and the pad figures exist for masking servers only.

use serde::Serialize;

use super::client::agent;

/// The counters at one moment (seconds).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CvmTotals {
    pub busy_s: f64,
    pub compute_s: f64,
    /// `None` for a server that masks nothing.
    pub masking: Option<MaskingSeconds>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaskingSeconds {
    pub worker_wait_s: f64,
    pub pad_engine_s: f64,
    pub pad_thread_s: f64,
}

/// One counter of a Prometheus text page.
pub fn counter(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
}

impl CvmTotals {
    pub fn parse(metrics: &str) -> Option<Self> {
        let value = |name: &str| counter(metrics, name);
        let masking = (|| {
            Some(MaskingSeconds {
                worker_wait_s: value("talaria_worker_wait_seconds_total")?,
                pad_engine_s: value("talaria_pad_engine_seconds_total")?,
                pad_thread_s: value("talaria_pad_thread_seconds_total")?,
            })
        })();
        Some(Self { busy_s: value("talaria_engine_busy_seconds_total")?, compute_s: value("talaria_cvm_compute_seconds_total")?, masking })
    }

    pub fn scrape(base: &str) -> Option<Self> {
        let mut r = agent().get(&format!("{base}/metrics")).call().ok()?;
        Self::parse(&r.body_mut().read_to_string().ok()?)
    }

    /// Milliseconds per output token since `before`.
    pub fn cost_since(&self, before: &Self, output_tokens: usize) -> CvmSideCost {
        let per_token = |s: f64| 1e3 * s / output_tokens.max(1) as f64;
        let m = self.masking.unwrap_or_default();
        let b = before.masking.unwrap_or_default();
        let wait = m.worker_wait_s - b.worker_wait_s;
        let busy = self.busy_s - before.busy_s;
        let compute = self.compute_s - before.compute_s;
        let pad_engine = m.pad_engine_s - b.pad_engine_s;
        let cvm = busy - wait;
        CvmSideCost {
            masked: self.masking.is_some(),
            engine_busy: per_token(busy),
            cvm_side: per_token(cvm),
            compute: per_token(compute),
            pad_engine: per_token(pad_engine),
            masking: per_token((cvm - compute - pad_engine).max(0.0)),
            pad_threads: per_token(m.pad_thread_s - b.pad_thread_s),
            worker_wait: per_token(wait),
        }
    }
}

/// Milliseconds per output token.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CvmSideCost {
    /// Whether the wait and the pad figures were measured (a masking server).
    pub masked: bool,
    pub engine_busy: f64,
    /// `engine_busy − worker_wait`.
    pub cvm_side: f64,
    pub compute: f64,
    pub pad_engine: f64,
    pub masking: f64,
    pub pad_threads: f64,
    pub worker_wait: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_engine_time_per_token() {
        let page = |busy: f64, wait: f64| {
            format!(
                "talaria_engine_busy_seconds_total{{model_name=\"m\"}} {busy}\ntalaria_cvm_compute_seconds_total{{model_name=\"m\"}} {}\n\
                 talaria_worker_wait_seconds_total{{model_name=\"m\"}} {wait}\ntalaria_pad_engine_seconds_total{{model_name=\"m\"}} {}\n\
                 talaria_pad_thread_seconds_total{{model_name=\"m\"}} {}\n",
                busy / 4.0,
                busy / 8.0,
                busy
            )
        };
        let a = CvmTotals::parse(&page(8.0, 2.0)).unwrap();
        let b = CvmTotals::parse(&page(16.0, 6.0)).unwrap();
        let c = b.cost_since(&a, 1000);
        assert!(c.masked);
        assert!((c.engine_busy - 8.0).abs() < 1e-9);
        assert!((c.cvm_side - 4.0).abs() < 1e-9, "busy 8 s − wait 4 s over 1000 tokens");
        assert!((c.compute - 2.0).abs() < 1e-9);
        assert!((c.pad_engine - 1.0).abs() < 1e-9);
        assert!((c.masking - 1.0).abs() < 1e-9);
        assert!((c.pad_threads - 8.0).abs() < 1e-9);
        let plain = CvmTotals::parse("talaria_engine_busy_seconds_total 1\ntalaria_cvm_compute_seconds_total 0.5\n").unwrap();
        assert!(plain.masking.is_none());
    }
}
