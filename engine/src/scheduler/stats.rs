//! Engine counters, written by the engine thread after every step and
//! command, read lock-free by the HTTP side (`/metrics`, `/health`).

use super::policy::StepPlan;
use crate::linear::MaskingCounters;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct EngineStats {
    running_requests: AtomicU64,
    waiting_requests: AtomicU64,
    running_seqs: AtomicU64,
    waiting_seqs: AtomicU64,
    kv_used_blocks: AtomicU64,
    kv_total_blocks: AtomicU64,
    preemptions_total: AtomicU64,
    swaps_total: AtomicU64,
    resent_rows_total: AtomicU64,
    prefix_cache_queries_total: AtomicU64,
    prefix_cache_hits_total: AtomicU64,
    steps_total: AtomicU64,
    batched_tokens_total: AtomicU64,
    prompt_tokens_total: AtomicU64,
    generation_tokens_total: AtomicU64,
    alive: AtomicBool,
    ready: AtomicBool,
    masked: AtomicBool,
    online_rows_total: AtomicU64,
    dummy_rows_total: AtomicU64,
    online_check_ns_total: AtomicU64,
    all_checks_ns_total: AtomicU64,
    worker_wait_ns_total: AtomicU64,
    pad_engine_ns_total: AtomicU64,
    pad_threads_ns_total: AtomicU64,
    busy_ns_total: AtomicU64,
    cvm_compute_ns_total: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub running_requests: u64,
    pub waiting_requests: u64,
    pub running_seqs: u64,
    pub waiting_seqs: u64,
    pub kv_used_blocks: u64,
    pub kv_total_blocks: u64,
    pub preemptions_total: u64,
    /// Preemptions that kept the K/V in CVM memory (nothing recomputed).
    pub swaps_total: u64,
    /// Rows computed (and so masked and sent) a second time: preempted
    /// sequences that had to recompute.
    pub resent_rows_total: u64,
    /// Prompt positions looked up in the prefix cache, and those found
    /// there (their rows were not computed, nor sent, again).
    pub prefix_cache_queries_total: u64,
    pub prefix_cache_hits_total: u64,
    pub steps_total: u64,
    pub batched_tokens_total: u64,
    /// Prompt positions computed (recomputes of a prompt included).
    pub prompt_tokens_total: u64,
    /// Tokens sampled.
    pub generation_tokens_total: u64,
    /// False once the engine thread has exited.
    pub alive: bool,
    /// The backend's start-up work is done (ReMO: pad pools filled), so a
    /// request is served at full speed.
    pub ready: bool,
    /// A masking backend's totals (`Linear::masking_counters`).
    pub masking: Option<MaskingCounters>,
    /// The engine thread's time in steps (after-step work included) and
    /// in idle-time backend work.
    pub busy: Duration,
    /// The weight-free part of the forward passes (everything but the
    /// `Linear` calls).
    pub cvm_compute: Duration,
}

impl StatsSnapshot {
    /// Fraction of KV blocks in use, 0..=1.
    pub fn kv_usage(&self) -> f64 {
        if self.kv_total_blocks == 0 {
            0.0
        } else {
            self.kv_used_blocks as f64 / self.kv_total_blocks as f64
        }
    }
}

/// The queue and cache state the engine publishes.
pub(crate) struct Occupancy {
    pub running_requests: u64,
    pub waiting_requests: u64,
    pub running_seqs: u64,
    pub waiting_seqs: u64,
    pub kv_used_blocks: u64,
    pub kv_total_blocks: u64,
}

impl EngineStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            running_requests: self.running_requests.load(Relaxed),
            waiting_requests: self.waiting_requests.load(Relaxed),
            running_seqs: self.running_seqs.load(Relaxed),
            waiting_seqs: self.waiting_seqs.load(Relaxed),
            kv_used_blocks: self.kv_used_blocks.load(Relaxed),
            kv_total_blocks: self.kv_total_blocks.load(Relaxed),
            preemptions_total: self.preemptions_total.load(Relaxed),
            swaps_total: self.swaps_total.load(Relaxed),
            resent_rows_total: self.resent_rows_total.load(Relaxed),
            prefix_cache_queries_total: self.prefix_cache_queries_total.load(Relaxed),
            prefix_cache_hits_total: self.prefix_cache_hits_total.load(Relaxed),
            steps_total: self.steps_total.load(Relaxed),
            batched_tokens_total: self.batched_tokens_total.load(Relaxed),
            prompt_tokens_total: self.prompt_tokens_total.load(Relaxed),
            generation_tokens_total: self.generation_tokens_total.load(Relaxed),
            alive: self.alive.load(Relaxed),
            ready: self.ready.load(Relaxed),
            masking: self.masked.load(Relaxed).then(|| MaskingCounters {
                online_rows: self.online_rows_total.load(Relaxed),
                dummy_rows: self.dummy_rows_total.load(Relaxed),
                online_check: Duration::from_nanos(self.online_check_ns_total.load(Relaxed)),
                all_checks: Duration::from_nanos(self.all_checks_ns_total.load(Relaxed)),
                worker_wait: Duration::from_nanos(self.worker_wait_ns_total.load(Relaxed)),
                pad_engine: Duration::from_nanos(self.pad_engine_ns_total.load(Relaxed)),
                pad_threads: Duration::from_nanos(self.pad_threads_ns_total.load(Relaxed)),
            }),
            busy: Duration::from_nanos(self.busy_ns_total.load(Relaxed)),
            cvm_compute: Duration::from_nanos(self.cvm_compute_ns_total.load(Relaxed)),
        }
    }

    pub(crate) fn publish_masking(&self, m: Option<MaskingCounters>) {
        let Some(m) = m else { return };
        self.online_rows_total.store(m.online_rows, Relaxed);
        self.dummy_rows_total.store(m.dummy_rows, Relaxed);
        self.online_check_ns_total.store(ns(m.online_check), Relaxed);
        self.all_checks_ns_total.store(ns(m.all_checks), Relaxed);
        self.worker_wait_ns_total.store(ns(m.worker_wait), Relaxed);
        self.pad_engine_ns_total.store(ns(m.pad_engine), Relaxed);
        self.pad_threads_ns_total.store(ns(m.pad_threads), Relaxed);
        self.masked.store(true, Relaxed);
    }

    /// Adds engine-thread work time; `cvm_compute`: the forward passes'
    /// weight-free time so far (a running total).
    pub(crate) fn add_busy(&self, busy: Duration, cvm_compute: Duration) {
        self.busy_ns_total.fetch_add(ns(busy), Relaxed);
        self.cvm_compute_ns_total.store(ns(cvm_compute), Relaxed);
    }

    pub(crate) fn publish(&self, o: &Occupancy) {
        self.running_requests.store(o.running_requests, Relaxed);
        self.waiting_requests.store(o.waiting_requests, Relaxed);
        self.running_seqs.store(o.running_seqs, Relaxed);
        self.waiting_seqs.store(o.waiting_seqs, Relaxed);
        self.kv_used_blocks.store(o.kv_used_blocks, Relaxed);
        self.kv_total_blocks.store(o.kv_total_blocks, Relaxed);
    }

    pub(crate) fn count_step(&self, tokens: usize, plan: &StepPlan, prompt_tokens: usize, resent: usize, generated: usize) {
        self.steps_total.fetch_add(1, Relaxed);
        self.prompt_tokens_total.fetch_add(prompt_tokens as u64, Relaxed);
        self.generation_tokens_total.fetch_add(generated as u64, Relaxed);
        self.batched_tokens_total.fetch_add(tokens as u64, Relaxed);
        self.preemptions_total.fetch_add(plan.num_preempted as u64, Relaxed);
        self.swaps_total.fetch_add(plan.num_swapped as u64, Relaxed);
        self.resent_rows_total.fetch_add(resent as u64, Relaxed);
        self.prefix_cache_queries_total.fetch_add(plan.prefix_lookup_tokens as u64, Relaxed);
        self.prefix_cache_hits_total.fetch_add(plan.prefix_hit_tokens as u64, Relaxed);
    }

    /// Marks the start-up work done; true the first time.
    pub(crate) fn set_ready(&self) -> bool {
        !self.ready.swap(true, Relaxed)
    }

    pub(crate) fn set_alive(&self, alive: bool) {
        self.alive.store(alive, Relaxed);
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
