//! The pad pools of every op, with the refill policy: `refill_idle` in the
//! worker's idle time, `refill_paced` after each step of a busy engine (as
//! many batches as the step used up), and synchronous `ensure` on the
//! critical path when a pool is still short.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use talaria_models::OpId;

use crate::error::RemoError;
use crate::online::worker::WorkerMatmul;
use crate::pads::pad::Pad;
use crate::pads::pool::{PadPool, PoolStats, RefillScratch};
use crate::pads::secure_rng::SecureRng;
use crate::params::RemoParams;
use crate::setup::RemoSetup;
use crate::verify::{AnswerChecks, OpCheck};
use talaria_kernels::Float;

/// What an idle-time refill achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdleProgress {
    pub batches_made: usize,
    /// Pools still below their low-water mark (0: nothing left to do).
    pub pools_below_low_water: usize,
}

pub struct PadPools<P: Float = f64> {
    params: RemoParams,
    rng: SecureRng,
    pools: BTreeMap<OpId, PadPool<P>>,
    /// Recycled pad storage, shared by all pools.
    scratch: RefillScratch<P>,
    /// Pads used so far, in batches (each pool's pads used / its usable pads
    /// per batch, summed), when `refill_paced` last ran.
    paced_use: f64,
    /// Batches `refill_paced` still owes (carried between calls).
    pace_credit: f64,
}

/// At most this many batches owed are carried between steps, so pacing
/// does not burst after a pause.
const MAX_PACE_CREDIT: f64 = 4.0;

impl<P: Float> PadPools<P> {
    /// Empty pools for every op of `setup`, each with its answer check
    /// from `checks` (which must hold one for every op).
    pub fn new(setup: &RemoSetup, params: RemoParams, mut checks: AnswerChecks) -> Result<Self, RemoError> {
        params.validate()?;
        let mut pools = BTreeMap::new();
        for id in setup.ids() {
            let spec = setup.get(id).ok_or(RemoError::UnknownOp { id })?;
            let check = checks.take(id).ok_or(RemoError::UnknownOp { id })?;
            if (check.d_in(), check.d_out()) != (spec.d_in, spec.d_out) {
                return Err(RemoError::Param(format!("{id}: the answer check is for another shape")));
            }
            pools.insert(id, PadPool::new(id, spec, &params, check));
        }
        Ok(Self { params, rng: SecureRng::from_os()?, pools, scratch: RefillScratch::default(), paced_use: 0.0, pace_credit: 0.0 })
    }

    pub fn params(&self) -> &RemoParams {
        &self.params
    }

    pub fn pool(&self, id: OpId) -> Option<&PadPool<P>> {
        self.pools.get(&id)
    }

    pub fn pools(&self) -> impl Iterator<Item = &PadPool<P>> {
        self.pools.values()
    }

    fn pool_mut(&mut self, id: OpId) -> Result<&mut PadPool<P>, RemoError> {
        self.pools.get_mut(&id).ok_or(RemoError::UnknownOp { id })
    }

    pub fn available(&self, id: OpId) -> usize {
        self.pools.get(&id).map_or(0, PadPool::available)
    }

    /// Makes pad batches for `id` now until it holds at least `n` pads.
    pub fn ensure(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, n: usize) -> anyhow::Result<()> {
        let Self { params, rng, pools, scratch, .. } = self;
        let pool = pools.get_mut(&id).ok_or(RemoError::UnknownOp { id })?;
        while pool.available() < n {
            pool.refill(worker, rng, params, scratch)?;
        }
        Ok(())
    }

    /// The answer check of `id`.
    pub fn check_mut(&mut self, id: OpId) -> Result<&mut OpCheck, RemoError> {
        Ok(self.pool_mut(id)?.check_mut())
    }

    /// Moves `n` pads of `id` out (fails if fewer are ready; see `ensure`).
    pub fn take(&mut self, id: OpId, n: usize) -> Result<Vec<Pad<P>>, RemoError> {
        self.pool_mut(id)?.take(n)
    }

    /// Prefetches the next pad of the op that usually follows `id` (the next
    /// op in (layer, op) order, which is the order of a forward pass).
    pub fn prefetch_after(&self, id: OpId) {
        use std::ops::Bound::{Excluded, Unbounded};
        let next = self.pools.range((Excluded(id), Unbounded)).next().or_else(|| self.pools.iter().next());
        if let Some((_, pool)) = next {
            pool.prefetch_next();
        }
    }

    /// The private per-row factors of real rows of `id` (see
    /// [`PadPool::rescale`]).
    pub fn rescale<X: Copy + Into<f64>>(&mut self, id: OpId, x: &[X], rows: usize, factors: &mut Vec<f64>) -> Result<(), RemoError> {
        let params = self.params;
        self.pool_mut(id)?.rescale(x, rows, &params, factors);
        Ok(())
    }

    /// Tops up pools below the low-water mark, emptiest first, one batch at
    /// a time, starting no batch after `budget` has elapsed (so it may
    /// overrun by one batch).
    pub fn refill_idle(&mut self, worker: &mut dyn WorkerMatmul, budget: Duration) -> anyhow::Result<IdleProgress> {
        let start = Instant::now();
        let mut progress = IdleProgress::default();
        while start.elapsed() < budget {
            let Some(id) = self.emptiest_below_low_water() else {
                break;
            };
            self.ensure(worker, id, self.available(id) + 1)?;
            progress.batches_made += 1;
        }
        progress.pools_below_low_water = self.pools.values().filter(|p| p.available() < self.params.low_water).count();
        Ok(progress)
    }

    /// Keeps pad production in step with consumption while the engine is
    /// busy: makes as many batches as were used up since the last call
    /// (fractions carried over), each for the emptiest pool holding less
    /// than one batch (so no pool holds more than two). Without it a busy server never has idle time, every
    /// pool runs dry in the same step, and that step makes a whole round
    /// of batches (at 16 streams, 120 batches: a multi-second stall).
    /// Returns the batches made.
    pub fn refill_paced(&mut self, worker: &mut dyn WorkerMatmul) -> anyhow::Result<usize> {
        let used: f64 = self.pools.values().map(|p| p.stats().pads_used as f64 / p.usable_per_batch() as f64).sum();
        self.pace_credit = (self.pace_credit + used - self.paced_use).min(MAX_PACE_CREDIT);
        self.paced_use = used;
        let mut made = 0;
        while self.pace_credit >= 1.0 {
            let Some(id) = self
                .pools
                .values()
                .filter(|p| p.available() < p.usable_per_batch())
                .min_by_key(|p| (p.available(), p.id()))
                .map(PadPool::id)
            else {
                break;
            };
            self.ensure(worker, id, self.available(id) + 1)?;
            self.pace_credit -= 1.0;
            made += 1;
        }
        Ok(made)
    }

    fn emptiest_below_low_water(&self) -> Option<OpId> {
        self.pools.values().filter(|p| p.available() < self.params.low_water).min_by_key(|p| (p.available(), p.id())).map(PadPool::id)
    }

    /// Statistics summed over all pools.
    pub fn total_stats(&self) -> PoolStats {
        let mut total = PoolStats::default();
        self.pools.values().for_each(|p| total.add(&p.stats()));
        total
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::recording_worker::RecordingWorker;
    use crate::setup::OpSpec;
    use talaria_models::Op;

    #[test]
    fn paced_refills_match_consumption_and_go_to_the_emptiest_pool() {
        let (a, b) = (OpId::new(0, Op::O), OpId::new(1, Op::O));
        let (d_in, d_out) = (16, 8);
        let ops: HashMap<OpId, OpSpec> = [a, b].iter().map(|&id| (id, OpSpec { d_in, d_out, channel_scales: vec![1.0; d_in] })).collect();
        let setup = RemoSetup::new(ops).unwrap();
        let mut worker = RecordingWorker::random(&[(a, d_in, d_out), (b, d_in, d_out)], 3);
        let checks = AnswerChecks::for_setup(&setup).unwrap();
        let mut pools = PadPools::<f64>::new(&setup, RemoParams::default(), checks).unwrap();
        pools.ensure(&mut worker, a, 1).unwrap();
        pools.ensure(&mut worker, b, 1).unwrap();
        let usable = pools.pool(a).unwrap().usable_per_batch();
        assert_eq!(pools.refill_paced(&mut worker).unwrap(), 0, "nothing used: nothing owed");

        // Three quarters of a batch from a: 0.75 owed, nothing made yet.
        drop(pools.take(a, usable * 3 / 4).unwrap());
        assert_eq!(pools.refill_paced(&mut worker).unwrap(), 0);

        // A quarter from b: one batch owed, for the emptiest pool (a).
        drop(pools.take(b, usable / 4).unwrap());
        let (before_a, before_b) = (pools.available(a), pools.available(b));
        assert!(before_a < before_b);
        assert_eq!(pools.refill_paced(&mut worker).unwrap(), 1);
        assert_eq!(pools.available(a), before_a + usable);
        assert_eq!(pools.available(b), before_b);
        assert_eq!(pools.refill_paced(&mut worker).unwrap(), 0, "nothing owed right after");

        // One more batch used: only pools holding less than one batch are
        // refilled (a holds more).
        drop(pools.take(b, pools.available(b)).unwrap());
        drop(pools.take(a, usable / 4).unwrap());
        assert!(pools.available(a) >= usable);
        assert_eq!(pools.refill_paced(&mut worker).unwrap(), 1, "only b may be refilled");
        assert_eq!(pools.available(b), usable);
    }
}
