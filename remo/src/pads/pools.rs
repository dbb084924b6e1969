//! The pad pools of every op, with the refill policy: `refill_idle` in the
//! worker's idle time, `refill_paced` after each step of a busy engine (as
//! many batches as the step used up), and synchronous `ensure` on the
//! critical path when a pool is still short. With pad threads
//! (`RemoParams::pad_threads`), an op's batches after its first (which
//! solves its check's reference here) are drawn ahead and finished on them
//! ([`PadFactory`]); the engine thread only exchanges them with the worker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use talaria_models::OpId;

use crate::error::RemoError;
use crate::online::worker::WorkerMatmul;
use crate::pads::batch::PreparedBatch;
use crate::pads::factory::{FactoryOutput, PadFactory};
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
    /// Buffers of pad storage reserved, or handed to the pad threads to
    /// reserve (`RemoParams::reserve_storage`).
    pub buffers_reserved: usize,
    /// The pad threads are still reserving storage.
    pub storage_pending: bool,
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
    /// Lengths of the storage still to reserve once the pools are full
    /// (`RemoParams::reserve_storage`): every op's `R` and `R·W`.
    unreserved: Vec<usize>,
    /// Hears from each pad thread's reserve job as it ends, and how many
    /// have not yet.
    reserving: Option<(std::sync::mpsc::Receiver<()>, usize)>,
    /// The pad threads, if any.
    factory: Option<PadFactory<P>>,
    /// Per op: batches drawn ahead, batches being drawn, and answered
    /// batches being finished on the pad threads.
    prepared: BTreeMap<OpId, Vec<PreparedBatch<P>>>,
    preparing: BTreeMap<OpId, usize>,
    finishing: BTreeMap<OpId, usize>,
}

/// At most this many batches owed are carried between steps, so pacing
/// does not burst after a pause.
const MAX_PACE_CREDIT: f64 = 4.0;

/// Batches drawn ahead with `threads` pad threads (one per thread, at most
/// four); up to twice as many may be being finished.
pub fn batches_ahead(threads: usize) -> usize {
    threads.min(4)
}

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
        let mut rng = SecureRng::from_os()?;
        let scratch = RefillScratch::for_pools(pools.values());
        let unreserved = match params.reserve_storage {
            true => pools.values().flat_map(|p| [p.batch_rows() * p.d_in(), p.batch_rows() * p.d_out()]).collect(),
            false => Vec::new(),
        };
        let factory = match params.pad_threads {
            0 => None,
            n => Some(PadFactory::new(n, &mut rng, scratch.buffers.clone())?),
        };
        Ok(Self {
            params,
            rng,
            pools,
            scratch,
            unreserved,
            reserving: None,
            paced_use: 0.0,
            pace_credit: 0.0,
            factory,
            prepared: BTreeMap::new(),
            preparing: BTreeMap::new(),
            finishing: BTreeMap::new(),
        })
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

    /// Makes pad batches for `id` now until it holds at least `n` pads
    /// (waiting for those being finished on the pad threads first).
    pub fn ensure(&mut self, worker: &mut dyn WorkerMatmul, id: OpId, n: usize) -> anyhow::Result<()> {
        self.collect()?;
        loop {
            let available = self.pool_mut(id)?.available();
            if available >= n {
                return Ok(());
            }
            if available + self.incoming(id) >= n {
                self.wait_one()?;
            } else {
                self.make_batch(worker, id)?;
            }
        }
    }

    /// Pads of `id` on their way: answered batches being finished.
    fn incoming(&self, id: OpId) -> usize {
        let usable = self.pools.get(&id).map_or(0, PadPool::usable_per_batch);
        self.finishing.get(&id).copied().unwrap_or(0) * usable
    }

    /// Pads ready or on their way, which is what the refill policy goes by.
    fn expected(&self, id: OpId) -> usize {
        self.available(id) + self.incoming(id)
    }

    /// Makes one batch of `id`: all here, or (pad threads, once the op's
    /// reference exists) exchanged here and finished there.
    fn make_batch(&mut self, worker: &mut dyn WorkerMatmul, id: OpId) -> anyhow::Result<()> {
        self.collect()?;
        let offload = self.factory.is_some() && self.pool_mut(id)?.check().has_reference();
        if !offload {
            let Self { params, rng, pools, scratch, .. } = self;
            let pool = pools.get_mut(&id).ok_or(RemoError::UnknownOp { id })?;
            return pool.refill(worker, rng, params, scratch);
        }
        while self.finishing.values().sum::<usize>() >= 2 * self.batches_ahead() {
            self.wait_one()?;
        }
        let prepared = loop {
            if let Some(batch) = self.prepared.get_mut(&id).and_then(Vec::pop) {
                break batch;
            }
            if self.preparing.get(&id).copied().unwrap_or(0) == 0 {
                self.start_prepare(id)?;
            }
            self.wait_one()?;
        };
        let answered = prepared.exchange(worker)?;
        let verifier =
            self.pool_mut(id)?.verifier().ok_or_else(|| RemoError::Param(format!("{id}: offloading a batch before the reference")))?;
        *self.finishing.entry(id).or_default() += 1;
        self.factory.as_mut().expect("offloading needs the pad threads").finish(answered, verifier);
        self.prepare_ahead()
    }

    /// Batches drawn ahead at most; twice as many may be being finished.
    /// Each batch's stages are parallel over the pad threads themselves, so
    /// a few batches at once keep them busy, and the memory they take is
    /// bounded (`pad_pool_bound_bytes`).
    fn batches_ahead(&self) -> usize {
        self.factory.as_ref().map_or(0, |f| batches_ahead(f.threads()))
    }

    fn start_prepare(&mut self, id: OpId) -> Result<(), RemoError> {
        let shape = self.pools.get(&id).ok_or(RemoError::UnknownOp { id })?.shape(&self.params);
        if let Some(factory) = self.factory.as_mut() {
            *self.preparing.entry(id).or_default() += 1;
            factory.prepare(shape);
        }
        Ok(())
    }

    /// Keeps `batches_ahead` batches drawn (or being drawn) ahead, for the
    /// ops that will run short first (every step drains every op alike, so
    /// the emptiest go next).
    fn prepare_ahead(&mut self) -> anyhow::Result<()> {
        let ahead = self.prepared.values().map(Vec::len).sum::<usize>() + self.preparing.values().sum::<usize>();
        let want = self.batches_ahead().saturating_sub(ahead);
        if want == 0 {
            return Ok(());
        }
        let mut next: Vec<(usize, OpId)> = self
            .pools
            .values()
            .filter(|p| p.check().has_reference())
            .map(PadPool::id)
            .filter(|id| self.prepared.get(id).is_none_or(Vec::is_empty) && self.preparing.get(id).copied().unwrap_or(0) == 0)
            .map(|id| (self.expected(id), id))
            .collect();
        next.sort_unstable();
        for (_, id) in next.into_iter().take(want) {
            self.start_prepare(id)?;
        }
        Ok(())
    }

    /// Takes whatever the pad threads have finished, without waiting.
    fn collect(&mut self) -> anyhow::Result<()> {
        while let Some(out) = self.factory.as_mut().and_then(PadFactory::try_next) {
            self.take_output(out)?;
        }
        Ok(())
    }

    /// Waits for the pad threads' next result (none: returns at once).
    fn wait_one(&mut self) -> anyhow::Result<()> {
        match self.factory.as_mut().and_then(PadFactory::wait_next) {
            Some(out) => self.take_output(out),
            None => Ok(()),
        }
    }

    fn take_output(&mut self, out: FactoryOutput<P>) -> anyhow::Result<()> {
        let less = |m: &mut BTreeMap<OpId, usize>, id| {
            if let Some(n) = m.get_mut(&id) {
                *n = n.saturating_sub(1);
            }
        };
        match out {
            FactoryOutput::Prepared(id, batch) => {
                less(&mut self.preparing, id);
                self.prepared.entry(id).or_default().push(batch?);
            }
            FactoryOutput::Finished(id, batch) => {
                less(&mut self.finishing, id);
                let batch = batch?;
                let engine_time = batch.exchange_time;
                self.pool_mut(id)?.accept(batch, engine_time, true)?;
            }
        }
        Ok(())
    }

    /// The answer check of `id`.
    /// Decoy rows for `count` dummy rows of a call to `id` (see
    /// [`PadPool::decoys`]).
    pub fn decoys(&self, id: OpId, count: usize, rng: &mut SecureRng, out: &mut Vec<f64>) -> Result<(), RemoError> {
        self.pool(id).ok_or(RemoError::UnknownOp { id })?.decoys(count, rng, out);
        Ok(())
    }

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
    /// overrun by one batch). Once they are all full, reserves the storage
    /// (`RemoParams::reserve_storage`): on the pad threads, in the
    /// background (waiting for it within the budget), or without them a
    /// buffer at a time here.
    pub fn refill_idle(&mut self, worker: &mut dyn WorkerMatmul, budget: Duration) -> anyhow::Result<IdleProgress> {
        let start = Instant::now();
        let mut progress = IdleProgress::default();
        self.collect()?;
        while start.elapsed() < budget {
            match self.emptiest_below_low_water() {
                Some(id) => {
                    self.make_batch(worker, id)?;
                    progress.batches_made += 1;
                }
                // What is left below the mark is on its way.
                None if self.finishing.values().any(|&n| n > 0) => self.wait_one()?,
                None if !self.unreserved.is_empty() => progress.buffers_reserved += self.reserve_storage(),
                None => {
                    while let Some((done, jobs)) = &mut self.reserving {
                        let left = budget.saturating_sub(start.elapsed()).min(Duration::from_secs(3600));
                        match done.recv_timeout(left) {
                            Ok(()) if *jobs > 1 => *jobs -= 1,
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                                progress.storage_pending = true;
                                break;
                            }
                            // All done (or the pad threads are gone).
                            _ => self.reserving = None,
                        }
                    }
                    break;
                }
            }
        }
        self.collect()?;
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
        self.collect()?;
        while self.pace_credit >= 1.0 {
            let Some(id) = self
                .pools
                .values()
                .filter(|p| self.expected(p.id()) < p.usable_per_batch())
                .min_by_key(|p| (self.expected(p.id()), p.id()))
                .map(PadPool::id)
            else {
                break;
            };
            self.make_batch(worker, id)?;
            self.pace_credit -= 1.0;
            made += 1;
        }
        Ok(made)
    }

    /// Starts reserving what storage is left: all of it on the pad threads,
    /// or one buffer here. Returns the buffers reserved or handed over.
    fn reserve_storage(&mut self) -> usize {
        if let Some(factory) = &self.factory {
            let lens = std::mem::take(&mut self.unreserved);
            let handed = lens.len();
            let (tx, rx) = std::sync::mpsc::channel();
            let jobs = factory.reserve(lens, tx);
            self.reserving = Some((rx, jobs));
            return handed;
        }
        match self.unreserved.pop() {
            Some(len) if self.scratch.buffers.reserve(len) => 1,
            // The recycler is full: nothing more to reserve.
            _ => {
                self.unreserved.clear();
                0
            }
        }
    }

    fn emptiest_below_low_water(&self) -> Option<OpId> {
        self.pools
            .values()
            .map(|p| (self.expected(p.id()), p.id()))
            .filter(|&(expected, _)| expected < self.params.low_water)
            .min()
            .map(|(_, id)| id)
    }

    /// CPU time of the pad threads so far (zero without them).
    pub fn pad_thread_cpu(&self) -> Duration {
        self.factory.as_ref().map_or(Duration::ZERO, PadFactory::cpu_time)
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

    /// Pools for two 16 → 8 ops, and an honest worker for them.
    fn two_pools(a: OpId, b: OpId, params: RemoParams, seed: u64) -> (PadPools<f64>, RecordingWorker) {
        let (d_in, d_out) = (16, 8);
        let ops: HashMap<OpId, OpSpec> = [a, b].iter().map(|&id| (id, OpSpec { d_in, d_out, channel_scales: vec![1.0; d_in] })).collect();
        let setup = RemoSetup::new(ops).unwrap();
        let worker = RecordingWorker::random(&[(a, d_in, d_out), (b, d_in, d_out)], seed);
        let checks = AnswerChecks::for_setup(&setup).unwrap();
        (PadPools::new(&setup, params, checks).unwrap(), worker)
    }

    #[test]
    fn paced_refills_match_consumption_and_go_to_the_emptiest_pool() {
        let (a, b) = (OpId::new(0, Op::O), OpId::new(1, Op::O));
        let (mut pools, mut worker) = two_pools(a, b, RemoParams::default(), 3);
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

    /// With `reserve_storage`, idle time after the pools are full faults in
    /// one `R` and one `R·W` per op, and the next batch of an op takes them
    /// instead of fresh pages.
    #[test]
    fn idle_time_reserves_one_round_of_storage() {
        let (a, b) = (OpId::new(0, Op::O), OpId::new(1, Op::Down));
        for (reserve, pad_threads) in [(false, 0), (true, 0), (true, 2)] {
            let params = RemoParams { low_water: 100, reserve_storage: reserve, pad_threads, ..RemoParams::default() };
            let (mut pools, mut worker) = two_pools(a, b, params, 7);
            let progress = pools.refill_idle(&mut worker, Duration::MAX).unwrap();
            assert_eq!(progress.pools_below_low_water, 0);
            // Up to the recycler's cap, one round (what the fill's `U` and
            // `U·W` left there counts against it).
            assert_eq!(progress.buffers_reserved > 0, reserve, "{progress:?}");
            assert!(!progress.storage_pending, "an unbounded idle refill waits for the pad threads' reserve");
            if pad_threads == 0 {
                assert!(pools.scratch.buffers.kept() >= progress.buffers_reserved);
            }
            assert_eq!(pools.refill_idle(&mut worker, Duration::MAX).unwrap(), IdleProgress::default(), "done once");
            // A batch of `a` takes its R and R·W (and U, U·W) from the recycler.
            drop(pools.take(a, pools.available(a)).unwrap());
            let kept_before = pools.scratch.buffers.kept();
            pools.ensure(&mut worker, a, 1).unwrap();
            if reserve {
                assert!(pools.scratch.buffers.kept() < kept_before, "the batch used reserved storage");
            }
        }
    }

    #[test]
    fn pad_threads_make_the_same_exact_pads_and_say_so() {
        let (a, b) = (OpId::new(0, Op::O), OpId::new(1, Op::Down));
        let (mut pools, mut worker) = two_pools(a, b, RemoParams { low_water: 100, pad_threads: 2, ..RemoParams::default() }, 5);
        let usable = pools.pool(a).unwrap().usable_per_batch();
        let progress = pools.refill_idle(&mut worker, Duration::MAX).unwrap();
        assert_eq!(progress.pools_below_low_water, 0, "an unbounded idle refill waits for the batches in progress");
        for id in [a, b] {
            assert!(pools.available(id) >= 100);
            let s = pools.pool(id).unwrap().stats();
            assert_eq!(s.batches, 100u64.div_ceil(usable as u64));
            assert!(s.offloaded > Duration::ZERO, "batches after the first are finished on the pad threads");
        }
        // Drain a, then ask for more than a batch: ensure waits for what it started.
        drop(pools.take(a, pools.available(a)).unwrap());
        pools.ensure(&mut worker, a, usable + 1).unwrap();
        for pad in pools.take(a, usable + 1).unwrap() {
            let want = worker.exact(a, pad.r(), 1).unwrap();
            let err = want.iter().zip(pad.rw()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(err <= 1e-12 * want.iter().map(|v| v.abs()).fold(1.0, f64::max), "r·W off by {err}");
        }
        let total = pools.total_stats();
        assert_eq!(total.checks.calls, total.batches, "every batch was checked and accounted");
    }
}
