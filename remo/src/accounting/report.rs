//! `RemoReport`: what the CLI prints about ReMO after a run.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use talaria_models::Op;

use crate::accounting::leakage::leakage_bound_bits_for_dims;
use crate::pads::pool::{PoolStats, RefillPhases};
use crate::pads::pools::PadPools;
use crate::setup::RemoSetup;
use crate::verify::CheckStats;
use talaria_kernels::Float;

/// One op's pool.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    pub layer: i32,
    pub op: &'static str,
    pub d_in: usize,
    pub d_out: usize,
    /// Rows of each pad batch.
    pub n_p: usize,
    pub usable_per_batch: usize,
    pub pads_available: usize,
    pub batches: u64,
    pub pads_used: u64,
    pub pads_discarded: u64,
    pub refill_ms: f64,
    pub worker_ms: f64,
    /// Real rows scaled down to the energy budget before masking.
    pub rows_rescaled: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RemoReport {
    /// Pad and wire precision: "f64" (exact mode) or "f32" (fast mode).
    pub pads: &'static str,
    pub kappa: f64,
    pub mixing_rounds: usize,
    pub usable_fraction: f64,
    pub online_calls: u64,
    pub online_rows: u64,
    /// Dummy rows sent to pad online calls up to their row bucket (each
    /// spends a pad).
    pub dummy_rows: u64,
    pub batches: u64,
    pub pads_used: u64,
    pub pads_discarded: u64,
    pub pads_available: usize,
    /// Real rows above the energy budget, scaled down by a private power of
    /// two before masking (σ itself never moves).
    pub rows_rescaled: u64,
    /// Wall time of all pad batches, and the worker's share of it.
    pub refill_ms: f64,
    pub worker_ms: f64,
    /// The CVM stages of every pad batch, by phase, wherever they ran.
    pub refill_phases_ms: PhasesMs,
    /// The part of `refill_phases_ms` run on the pad threads, off the
    /// engine thread (`refill_ms` then holds only the exchange): wall time
    /// of those stages, which a busy machine stretches.
    pub offloaded_ms: f64,
    /// CPU time the pad threads have used.
    pub pad_thread_cpu_ms: f64,
    /// docs/DESIGN.md §3's bound in bits per position: every row is sent
    /// within the energy budget, so it holds for every row sent.
    pub leakage_bound_bits: f64,
    /// The bound at the actual signal power of the rows sent: per op, the
    /// mean over its rows, summed over ops (bits per position).
    pub leakage_bits_at_sent_energy: f64,
    /// Positions sent in the session, re-sends included: the real rows of
    /// the op that saw the most (every position passes each layer's ops).
    pub positions_sent: u64,
    /// `leakage_bound_bits` × `positions_sent`: the session's total, where a
    /// position sent k times (a recompute after preemption) counts k times.
    pub session_bound_bits: f64,
    /// Every answer checked (docs/DESIGN.md §3, "Verification").
    pub checks: CheckStats,
    pub ops: Vec<OpReport>,
}

impl RemoReport {
    pub fn new<P: Float>(setup: &RemoSetup, pools: &PadPools<P>, online_calls: u64, online_rows: u64, dummy_rows: u64) -> Self {
        let p = pools.params();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let ops: Vec<OpReport> = pools
            .pools()
            .map(|pool| {
                let s = pool.stats();
                OpReport {
                    layer: pool.id().layer,
                    op: pool.id().op.name(),
                    d_in: pool.d_in(),
                    d_out: pool.d_out(),
                    n_p: pool.batch_rows(),
                    usable_per_batch: pool.usable_per_batch(),
                    pads_available: s.pads_available,
                    batches: s.batches,
                    pads_used: s.pads_used,
                    pads_discarded: s.pads_discarded,
                    refill_ms: ms(s.refill_time),
                    worker_ms: ms(s.worker_time),
                    rows_rescaled: s.rows_rescaled,
                }
            })
            .collect();
        let t: PoolStats = pools.total_stats();
        let leakage_bound_bits = leakage_bound_bits_for_dims(setup.input_dims(), p.kappa);
        let positions_sent = pools.pools().map(|pool| pool.stats().rows_sent).max().unwrap_or(0);
        Self {
            pads: P::PRECISION.name(),
            kappa: p.kappa,
            mixing_rounds: p.mixing_rounds,
            usable_fraction: p.usable_fraction,
            online_calls,
            online_rows,
            dummy_rows,
            batches: t.batches,
            pads_used: t.pads_used,
            pads_discarded: t.pads_discarded,
            pads_available: t.pads_available,
            rows_rescaled: t.rows_rescaled,
            refill_ms: ms(t.refill_time),
            worker_ms: ms(t.worker_time),
            refill_phases_ms: t.phases.into(),
            offloaded_ms: ms(t.offloaded),
            pad_thread_cpu_ms: ms(pools.pad_thread_cpu()),
            leakage_bound_bits,
            positions_sent,
            session_bound_bits: leakage_bound_bits * positions_sent as f64,
            leakage_bits_at_sent_energy: pools
                .pools()
                .map(|pool| pool.stats())
                .filter(|s| s.rows_sent > 0)
                .map(|s| s.bits_at_sent_energy / s.rows_sent as f64)
                .sum(),
            checks: t.checks,
            ops,
        }
    }
}

/// [`RefillPhases`] in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PhasesMs {
    pub draw: f64,
    pub mix: f64,
    pub unmix: f64,
    pub check: f64,
    pub keep: f64,
}

impl From<RefillPhases> for PhasesMs {
    fn from(p: RefillPhases) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Self { draw: ms(p.draw), mix: ms(p.mix), unmix: ms(p.unmix), check: ms(p.check), keep: ms(p.keep) }
    }
}

/// Per op kind, summed over layers.
#[derive(Default)]
struct KindTotals {
    layers: usize,
    d_in: usize,
    d_out: usize,
    n_p: usize,
    batches: u64,
    used: u64,
    discarded: u64,
    refill_ms: f64,
    worker_ms: f64,
    rescaled: u64,
}

impl fmt::Display for RemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ReMO: {} pads, κ = {:e}, {} mixing rounds, ≤ {:.0} % of each pad batch used",
            self.pads,
            self.kappa,
            self.mixing_rounds,
            100.0 * self.usable_fraction
        )?;
        writeln!(
            f,
            "  leakage bound: {:.3e} bits per position, for every row sent; {:.3e} at the rows' actual energy ({} rows scaled down to the budget)",
            self.leakage_bound_bits, self.leakage_bits_at_sent_energy, self.rows_rescaled
        )?;
        writeln!(
            f,
            "  session total: ≤ {:.3e} bits over {} positions sent (a position sent again, e.g. recomputed after preemption, counts again)",
            self.session_bound_bits, self.positions_sent
        )?;
        writeln!(
            f,
            "  online: {} calls, {} rows (+{} dummy rows up to the row buckets); pads: {} used, {} discarded, {} ready; {} batches, refill {:.1} ms (worker {:.1} ms)",
            self.online_calls,
            self.online_rows,
            self.dummy_rows,
            self.pads_used,
            self.pads_discarded,
            self.pads_available,
            self.batches,
            self.refill_ms,
            self.worker_ms
        )?;
        writeln!(f, "  verification against {} secret vectors per op: {}", crate::verify::lanes::LANES, self.checks)?;
        let p = &self.refill_phases_ms;
        writeln!(
            f,
            "  pad batches, CVM side: draw {:.1} ms, mix {:.1} ms, unmix {:.1} ms, check {:.1} ms, keep {:.1} ms ({:.1} ms of it on the pad threads)",
            p.draw, p.mix, p.unmix, p.check, p.keep, self.offloaded_ms
        )?;
        let mut kinds: BTreeMap<Op, KindTotals> = BTreeMap::new();
        for o in &self.ops {
            let k = kinds.entry(Op::parse(o.op).unwrap_or(Op::LmHead)).or_default();
            k.layers += 1;
            (k.d_in, k.d_out, k.n_p) = (o.d_in, o.d_out, o.n_p);
            k.batches += o.batches;
            k.used += o.pads_used;
            k.discarded += o.pads_discarded;
            k.refill_ms += o.refill_ms;
            k.worker_ms += o.worker_ms;
            k.rescaled += o.rows_rescaled;
        }
        for (op, k) in kinds {
            writeln!(
                f,
                "  {:<8} ×{:<3} {:>5}→{:<6} N_p {:>5}: {} batches, {} pads used, {} discarded, refill {:.1} ms (worker {:.1} ms), {} rows rescaled",
                op.name(), k.layers, k.d_in, k.d_out, k.n_p, k.batches, k.used, k.discarded, k.refill_ms, k.worker_ms, k.rescaled
            )?;
        }
        Ok(())
    }
}
