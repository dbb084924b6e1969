//! The pad pools of every op, with the refill policy: synchronous
//! `ensure` on the critical path, `refill_idle` in the worker's idle time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use talaria_models::OpId;

use super::error::RemoError;
use super::pad::Pad;
use super::params::RemoParams;
use super::pool::{PadPool, PoolStats, RefillScratch};
use super::scheme::IdleProgress;
use super::secure_rng::SecureRng;
use super::setup::RemoSetup;
use super::worker::WorkerMatmul;

pub struct PadPools {
    params: RemoParams,
    rng: SecureRng,
    pools: BTreeMap<OpId, PadPool>,
    /// `U` and recycled pad storage, shared by all pools.
    scratch: RefillScratch,
}

impl PadPools {
    /// Empty pools for every op of `setup`.
    pub fn new(setup: &RemoSetup, params: RemoParams) -> Result<Self, RemoError> {
        params.validate()?;
        let pools = setup.ids().into_iter().filter_map(|id| Some((id, PadPool::new(id, setup.get(id)?, &params)))).collect();
        Ok(Self { params, rng: SecureRng::from_os()?, pools, scratch: RefillScratch::default() })
    }

    pub fn params(&self) -> &RemoParams {
        &self.params
    }

    pub fn pool(&self, id: OpId) -> Option<&PadPool> {
        self.pools.get(&id)
    }

    pub fn pools(&self) -> impl Iterator<Item = &PadPool> {
        self.pools.values()
    }

    fn pool_mut(&mut self, id: OpId) -> Result<&mut PadPool, RemoError> {
        self.pools.get_mut(&id).ok_or(RemoError::UnknownOp { id })
    }

    pub fn available(&self, id: OpId) -> usize {
        self.pools.get(&id).map_or(0, PadPool::available)
    }

    /// Makes pad batches for `id` now until it holds at least `n` pads.
    pub fn ensure(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, n: usize) -> anyhow::Result<()> {
        let Self { params, rng, pools, scratch } = self;
        let pool = pools.get_mut(&id).ok_or(RemoError::UnknownOp { id })?;
        while pool.available() < n {
            pool.refill(worker, rng, params, scratch)?;
        }
        Ok(())
    }

    /// Moves `n` pads of `id` out (fails if fewer are ready; see `ensure`).
    pub fn take(&mut self, id: OpId, n: usize) -> Result<Vec<Pad>, RemoError> {
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

    /// Records real rows of `id` (raising scales, flushing stale pads).
    pub fn observe<X: Copy + Into<f64>>(&mut self, id: OpId, x: &[X], rows: usize) -> Result<(), RemoError> {
        let params = self.params;
        self.pool_mut(id)?.observe(x, rows, &params);
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
