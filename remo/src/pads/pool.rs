//! The pad pool of one op: makes pad batches through the worker and hands
//! out each usable pad once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use talaria_models::OpId;

use crate::accounting::leakage::leakage_bits_at_energy;
use crate::accounting::scales::{rescale_factor, ChannelScales};
use crate::error::RemoError;
use crate::mixing::butterfly::padded_rows;
use crate::online::worker::WorkerMatmul;
use crate::pads::batch::{BatchShape, FinishedBatch, PreparedBatch, Verify};
use crate::pads::pad::Pad;
use crate::pads::pad_buffers::PadBuffers;
use crate::pads::secure_rng::SecureRng;
use crate::params::RemoParams;
use crate::setup::OpSpec;
use crate::verify::{BatchVerifier, CheckStats, OpCheck};
use talaria_kernels::Float;

/// Counters of one pool (or, summed, of all pools).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PoolStats {
    /// Pads ready now.
    pub pads_available: usize,
    /// Pad batches made.
    pub batches: u64,
    /// Usable pads produced by those batches.
    pub pads_made: u64,
    /// Pads handed to online calls.
    pub pads_used: u64,
    /// Pads dropped unused: the ≥ 25 % of every batch.
    pub pads_discarded: u64,
    /// What pad batches cost the engine thread, worker call included (all
    /// of a batch made there; only the exchange and the accounting of one
    /// whose CVM stages ran on the pad threads).
    pub refill_time: Duration,
    /// CPU time of the batch stages run on the pad threads, off the engine
    /// thread (their breakdown is in `phases`, with the others').
    pub offloaded: Duration,
    /// The worker's share of `refill_time`.
    pub worker_time: Duration,
    /// Where the CVM's share of `refill_time` goes.
    pub phases: RefillPhases,
    /// Real rows masked, those among them scaled down to the energy budget
    /// first, and the leakage bound summed over them at the signal power
    /// actually sent (`leakage_bits_at_energy`, bits).
    pub rows_sent: u64,
    pub rows_rescaled: u64,
    pub bits_at_sent_energy: f64,
    /// The checks of the worker's answers.
    pub checks: CheckStats,
}

impl PoolStats {
    pub fn add(&mut self, o: &PoolStats) {
        self.pads_available += o.pads_available;
        self.batches += o.batches;
        self.pads_made += o.pads_made;
        self.pads_used += o.pads_used;
        self.pads_discarded += o.pads_discarded;
        self.refill_time += o.refill_time;
        self.offloaded += o.offloaded;
        self.worker_time += o.worker_time;
        self.phases.add(&o.phases);
        self.rows_rescaled += o.rows_rescaled;
        self.rows_sent += o.rows_sent;
        self.bits_at_sent_energy += o.bits_at_sent_energy;
        self.checks.add(&o.checks);
    }
}

/// The CVM-side phases of pad batches (the worker call is `worker_time`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RefillPhases {
    /// Gaussian `R` and the mixing's secret parameters.
    pub draw: Duration,
    /// `U = M·R`.
    pub mix: Duration,
    /// `R·W = M⁻¹·(U·W)`.
    pub unmix: Duration,
    /// Checking `R·W` (docs/DESIGN.md §3, "Verification").
    pub check: Duration,
    /// Choosing the kept pads, zeroizing the rest.
    pub keep: Duration,
}

impl RefillPhases {
    pub fn add(&mut self, o: &RefillPhases) {
        self.draw += o.draw;
        self.mix += o.mix;
        self.unmix += o.unmix;
        self.check += o.check;
        self.keep += o.keep;
    }

    pub fn total(&self) -> Duration {
        self.draw + self.mix + self.unmix + self.check + self.keep
    }
}

/// What refills reuse across batches: the recycled storage of `R` and `R·W`.
pub struct RefillScratch<P: Float = f64> {
    pub buffers: PadBuffers<P>,
}

impl<P: Float> Default for RefillScratch<P> {
    fn default() -> Self {
        Self { buffers: PadBuffers::default() }
    }
}

/// Scale of a decoy row against the channel scales: energy about 1/16 of
/// the budget, like a typical real row, and far below the pads' κ.
pub const DECOY_SCALE: f64 = 0.25;

impl<P: Float> RefillScratch<P> {
    /// Recycling sized for these pools' batches (`PadBuffers::for_round_of`).
    pub fn for_pools<'a>(pools: impl Iterator<Item = &'a PadPool<P>>) -> Self {
        let round: usize = pools.map(|p| p.batch_rows() * (p.d_in() + p.d_out()) * std::mem::size_of::<P>()).sum();
        Self { buffers: PadBuffers::for_round_of(round) }
    }
}

pub struct PadPool<P: Float = f64> {
    id: OpId,
    d_in: usize,
    d_out: usize,
    n_p: usize,
    usable: usize,
    scales: ChannelScales,
    /// FIFO; pads of older batches first.
    pads: VecDeque<Pad<P>>,
    /// Checks every answer of this op (its first batch is the reference).
    check: OpCheck,
    /// A read-only copy of `check` for the pad threads, made once the
    /// reference exists (it never changes after).
    verifier: Option<BatchVerifier>,
    stats: PoolStats,
}

impl<P: Float> PadPool<P> {
    pub fn new(id: OpId, spec: &OpSpec, params: &RemoParams, check: OpCheck) -> Self {
        let n_p = padded_rows(spec.d_in);
        Self {
            check,
            verifier: None,
            id,
            d_in: spec.d_in,
            d_out: spec.d_out,
            n_p,
            usable: params.usable_per_batch(n_p),
            scales: ChannelScales::new(spec.channel_scales.clone()),
            pads: VecDeque::new(),
            stats: PoolStats::default(),
        }
    }

    pub fn id(&self) -> OpId {
        self.id
    }
    pub fn d_in(&self) -> usize {
        self.d_in
    }
    pub fn d_out(&self) -> usize {
        self.d_out
    }
    /// Rows of one pad batch, `N_p`.
    pub fn batch_rows(&self) -> usize {
        self.n_p
    }
    /// Pads kept from each batch.
    pub fn usable_per_batch(&self) -> usize {
        self.usable
    }
    pub fn available(&self) -> usize {
        self.pads.len()
    }
    pub fn channel_scales(&self) -> &ChannelScales {
        &self.scales
    }
    pub fn stats(&self) -> PoolStats {
        PoolStats { pads_available: self.pads.len(), checks: self.check.stats(), ..self.stats }
    }

    pub fn check(&self) -> &OpCheck {
        &self.check
    }

    /// The check for batches finished on the pad threads (`None` before
    /// the op's first batch has solved its reference).
    pub fn verifier(&mut self) -> Option<BatchVerifier> {
        if self.verifier.is_none() {
            self.verifier = self.check.batch_verifier();
        }
        self.verifier.clone()
    }

    /// The answer check of this op.
    pub fn check_mut(&mut self) -> &mut OpCheck {
        &mut self.check
    }

    /// What a batch of this op is made of.
    pub fn shape(&self, params: &RemoParams) -> BatchShape {
        BatchShape {
            id: self.id,
            d_in: self.d_in,
            d_out: self.d_out,
            n_p: self.n_p,
            usable: self.usable,
            sigma: self.scales.scales().iter().map(|s| params.kappa * s).collect(),
            mixing_rounds: params.mixing_rounds,
        }
    }

    /// Makes one pad batch here, every stage on this thread (see
    /// [`crate::pads::batch`]).
    pub fn refill(
        &mut self,
        worker: &mut dyn WorkerMatmul,
        rng: &mut SecureRng,
        params: &RemoParams,
        scratch: &mut RefillScratch<P>,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let prepared = PreparedBatch::draw(self.shape(params), rng, &scratch.buffers)?;
        let answered = prepared.exchange(worker)?;
        let finished = answered.finish(Verify::Here(&mut self.check), rng)?;
        self.accept(finished, start.elapsed(), false)
    }

    /// Takes a finished batch's pads once its verdict (if it was checked
    /// elsewhere) is accounted; a rejected batch's pads are dropped.
    /// `engine_time`: what the batch cost the engine thread; `offloaded`:
    /// whether its CVM stages ran on the pad threads.
    pub fn accept(&mut self, finished: FinishedBatch<P>, engine_time: Duration, offloaded: bool) -> anyhow::Result<()> {
        if let Some(verdict) = finished.verdict {
            self.check.account_batch(verdict).map_err(|e| anyhow::Error::from(e).context(format!("{}: pad batch", self.id)))?;
        }
        let usable = finished.pads.len();
        self.pads.extend(finished.pads);
        self.stats.phases.add(&finished.phases);
        if offloaded {
            self.stats.offloaded += finished.phases.total();
        }
        self.stats.worker_time += finished.worker_time;
        self.stats.batches += 1;
        self.stats.pads_made += usable as u64;
        self.stats.pads_discarded += (finished.n_p - usable) as u64;
        self.stats.refill_time += engine_time;
        Ok(())
    }

    /// Moves `n` pads out of the pool; they are never handed out again.
    pub fn take(&mut self, n: usize) -> Result<Vec<Pad<P>>, RemoError> {
        if self.pads.len() < n {
            return Err(RemoError::PoolShort { id: self.id, available: self.pads.len(), wanted: n });
        }
        let pads: Vec<Pad<P>> = self.pads.drain(..n).collect();
        self.stats.pads_used += n as u64;
        Ok(pads)
    }

    /// The private factor of each real row of a call (`rows × d_in`,
    /// checked by the caller): 1, or the power of two that brings the row's
    /// whitened energy within the budget (the row is sent divided by it and
    /// its product multiplied by it, so σ never depends on private data).
    /// Accounts the leakage bound at the energy each row is sent at.
    pub fn rescale<X: Copy + Into<f64>>(&mut self, x: &[X], rows: usize, params: &RemoParams, factors: &mut Vec<f64>) {
        factors.clear();
        for row in x.chunks_exact(self.d_in).take(rows) {
            let energy = self.scales.energy(row);
            let alpha = rescale_factor(energy);
            factors.push(alpha);
            self.stats.rows_sent += 1;
            self.stats.rows_rescaled += u64::from(alpha > 1.0);
            self.stats.bits_at_sent_energy += leakage_bits_at_energy(self.d_in, params.kappa, energy / (alpha * alpha));
        }
    }

    /// `count` decoy rows (`count × d_in` into `out`) for a call's dummy
    /// rows: Gaussian at [`DECOY_SCALE`] of each channel's scale, each
    /// within the energy budget. A dummy row sent as its pad alone is
    /// `fl(σ_c·g)` exactly, and in f64 the ziggurat's `g` lies on a lattice
    /// (multiples of 2⁻⁵¹ times one of 256 public layer widths) that a real
    /// row `fl(x/α + r)` leaves: a worker testing its near-zero elements
    /// told dummy rows from real ones, and so counted the real rows inside
    /// the bucket. A decoy added to the pad takes the dummy row off the
    /// lattice as a real row's values do.
    pub fn decoys(&self, count: usize, rng: &mut SecureRng, out: &mut Vec<f64>) {
        out.clear();
        out.resize(count * self.d_in, 0.0);
        let sigma: Vec<f64> = self.scales.scales().iter().map(|s| DECOY_SCALE * s).collect();
        rng.fill_gaussian_rows(out, &sigma);
        for row in out.chunks_exact_mut(self.d_in) {
            let alpha = rescale_factor(self.scales.energy(row));
            row.iter_mut().for_each(|v| *v /= alpha);
        }
    }

    /// Starts pulling the next pad this pool will hand out into cache: pads
    /// were made long ago and are cold, and reading one cold pad cost
    /// ~25 µs of a ~250 µs decode call.
    pub fn prefetch_next(&self) {
        if let Some(p) = self.pads.front() {
            talaria_kernels::cpu::prefetch(p.r());
            talaria_kernels::cpu::prefetch(p.rw());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording_worker::RecordingWorker;
    use talaria_models::Op;

    fn pool(d_in: usize, d_out: usize) -> (PadPool<f64>, RecordingWorker, RemoParams) {
        let id = OpId::new(0, Op::Down);
        let spec = OpSpec { d_in, d_out, channel_scales: vec![1.0; d_in] };
        let params = RemoParams::default();
        let check = OpCheck::new(id, d_in, d_out, &mut SecureRng::from_os().unwrap());
        (PadPool::new(id, &spec, &params, check), RecordingWorker::random(&[(id, d_in, d_out)], 1), params)
    }

    #[test]
    fn a_batch_keeps_at_most_three_quarters_and_pads_are_taken_once() {
        let (mut p, mut w, params) = pool(40, 24);
        let mut rng = SecureRng::from_os().unwrap();
        assert_eq!(p.batch_rows(), 64);
        p.refill(&mut w, &mut rng, &params, &mut RefillScratch::default()).unwrap();
        assert_eq!(p.available(), 48);
        let s = p.stats();
        assert_eq!((s.batches, s.pads_made, s.pads_discarded), (1, 48, 16));
        let first = p.take(30).unwrap();
        let second = p.take(18).unwrap();
        assert_eq!(p.available(), 0);
        assert!(matches!(p.take(1), Err(RemoError::PoolShort { .. })));
        // All 48 pads are distinct rows.
        let mut rows: Vec<Vec<u64>> = first.iter().chain(&second).map(|p| p.r().iter().map(|v| v.to_bits()).collect()).collect();
        rows.sort();
        rows.dedup();
        assert_eq!(rows.len(), 48);
        assert_eq!(p.stats().pads_used, 48);
        // Each pad carries r·W for its own r.
        for pad in &first {
            let want = w.exact(p.id(), pad.r(), 1).unwrap();
            let err = want.iter().zip(pad.rw()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            let scale = want.iter().map(|v| v.abs()).fold(0.0, f64::max);
            assert!(err <= 1e-13 * scale, "r·W off by {err} (scale {scale})");
        }
    }

    #[test]
    fn the_bound_at_the_rows_sent_is_the_nominal_one_at_full_scale_and_less_below() {
        let (mut p, mut w, params) = pool(8, 4);
        let mut rng = SecureRng::from_os().unwrap();
        p.refill(&mut w, &mut rng, &params, &mut RefillScratch::default()).unwrap();
        let mut factors = Vec::new();
        // Two rows with every channel at its scale (energy 1): the nominal bound each.
        p.rescale(&[1.0f32; 16], 2, &params, &mut factors);
        assert_eq!(factors, [1.0, 1.0]);
        let nominal = crate::leakage_bits_per_call(8, params.kappa);
        let s = p.stats();
        assert_eq!(s.rows_sent, 2);
        assert!((s.bits_at_sent_energy - 2.0 * nominal).abs() <= 1e-12 * nominal);
        // A row at half the scale: about a quarter of the nominal bound.
        p.rescale(&[0.5f32; 8], 1, &params, &mut factors);
        let third = p.stats().bits_at_sent_energy - s.bits_at_sent_energy;
        assert!((third / nominal - 0.25).abs() < 1e-6, "{}", third / nominal);
    }

    #[test]
    fn rows_above_the_budget_are_scaled_down_and_the_pads_stay() {
        let (mut p, mut w, params) = pool(8, 4);
        let mut rng = SecureRng::from_os().unwrap();
        p.refill(&mut w, &mut rng, &params, &mut RefillScratch::default()).unwrap();
        let before = p.available();
        let mut factors = Vec::new();
        // Energies 9 (every channel at 3×), 2 (one channel at 3×, the rest
        // at 1×: (9 + 7) / 8) and 1e6 (one channel at 2829×).
        let mut x = vec![3.0f32; 8];
        x.extend([3.0f32, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        x.extend([2829.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        p.rescale(&x, 3, &params, &mut factors);
        assert_eq!(factors, [4.0, 2.0, 1024.0]);
        assert_eq!(p.available(), before, "no pad is dropped, no scale moves");
        assert_eq!(p.channel_scales().scales(), &[1.0; 8]);
        let s = p.stats();
        assert_eq!((s.rows_sent, s.rows_rescaled, s.pads_discarded), (3, 3, (p.batch_rows() - p.usable_per_batch()) as u64));
        // Each row is accounted at the energy it is sent at (≤ the budget).
        assert!(s.bits_at_sent_energy <= 3.0 * crate::leakage_bits_per_call(8, params.kappa) * (1.0 + 1e-12));
    }
}
