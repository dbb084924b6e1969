//! What masking itself costs a run, from the server's `/metrics` before and
//! after it: the rows masked, the dummy rows the row buckets added, and the
//! CVM time spent verifying the worker's answers. Measured directly rather
//! than by a run with checks off: verification has no off switch (a
//! deployment must not be able to turn it off), and the VM drifts more
//! between runs than the checks cost.

use serde::Serialize;

use super::client::agent;

/// The masking counters of `/metrics` at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MaskingTotals {
    pub masked_rows: f64,
    pub dummy_rows: f64,
    pub check_online_s: f64,
    pub check_all_s: f64,
}

impl MaskingTotals {
    /// `None` when the server masks nothing (no such counters).
    pub fn parse(metrics: &str) -> Option<Self> {
        let value = |name: &str| super::cvm_side::counter(metrics, name);
        Some(Self {
            masked_rows: value("talaria_masked_rows_total")?,
            dummy_rows: value("talaria_bucket_dummy_rows_total")?,
            check_online_s: value("talaria_answer_check_online_seconds_total")?,
            check_all_s: value("talaria_answer_check_seconds_total")?,
        })
    }

    pub fn scrape(base: &str) -> Option<Self> {
        let mut r = agent().get(&format!("{base}/metrics")).call().ok()?;
        Self::parse(&r.body_mut().read_to_string().ok()?)
    }

    /// The run's cost: the counters' growth over `output_tokens` tokens
    /// generated in `duration_s` seconds.
    pub fn cost_since(&self, before: &Self, output_tokens: usize, duration_s: f64) -> MaskingCost {
        let tokens = output_tokens.max(1) as f64;
        let rows = self.masked_rows - before.masked_rows;
        let dummy = self.dummy_rows - before.dummy_rows;
        let online = self.check_online_s - before.check_online_s;
        MaskingCost {
            masked_rows: rows,
            dummy_share: dummy / (rows + dummy).max(1.0),
            online_check_ms_per_token: 1e3 * online / tokens,
            all_checks_ms_per_token: 1e3 * (self.check_all_s - before.check_all_s) / tokens,
            online_check_share: online / duration_s.max(1e-9),
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct MaskingCost {
    pub masked_rows: f64,
    /// Dummy rows over all rows sent (each spends a pad and worker time).
    pub dummy_share: f64,
    /// Online answer checks, on the engine's critical path.
    pub online_check_ms_per_token: f64,
    /// Every check, pad batches and their one-off references included.
    pub all_checks_ms_per_token: f64,
    /// Online check time over the run's wall time: the throughput it costs.
    pub online_check_share: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_counters_and_their_growth() {
        let text = |rows: u32, secs: f64| {
            format!(
                "# HELP talaria_masked_rows_total x\ntalaria_masked_rows_total{{model_name=\"m\"}} {rows}\n\
                 talaria_bucket_dummy_rows_total{{model_name=\"m\"}} 10\n\
                 talaria_answer_check_online_seconds_total{{model_name=\"m\"}} {secs}\n\
                 talaria_answer_check_seconds_total{{model_name=\"m\"}} {}\n",
                secs * 4.0
            )
        };
        assert_eq!(MaskingTotals::parse("talaria_engine_alive{model_name=\"m\"} 1\n"), None, "an unmasked server");
        let a = MaskingTotals::parse(&text(100, 0.5)).unwrap();
        let b = MaskingTotals::parse(&text(190, 1.5)).unwrap();
        let c = b.cost_since(&a, 10, 4.0);
        assert_eq!(c.masked_rows, 90.0);
        assert_eq!(c.dummy_share, 0.0);
        assert!((c.online_check_ms_per_token - 100.0).abs() < 1e-9);
        assert!((c.all_checks_ms_per_token - 400.0).abs() < 1e-9);
        assert!((c.online_check_share - 0.25).abs() < 1e-12);
    }
}
