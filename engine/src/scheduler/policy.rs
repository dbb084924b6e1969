//! The scheduling policy of one step, over the running and waiting queues:
//! 1. running decodes (oldest first), one token each;
//! 2. running prefills (chunked prompts, recomputes), as many tokens as the
//!    budget and the free blocks allow;
//! 3. waiting sequences, FCFS, while the budget, the sequence cap and the
//!    free blocks allow (none in a step that had to preempt).
//!
//! When a running sequence cannot get blocks, the youngest running sequence
//! not yet scheduled in this step is preempted (blocks freed, requeued at
//! the front of the waiting queue to recompute prompt + generated tokens);
//! if there is none younger, the sequence preempts itself. The oldest
//! sequence can always evict every younger one, so the queue always moves.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use crate::kv_cache::KvPool;
use crate::model::LogitsWanted;

use super::sequence::{Forked, Sequence};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Token budget of one step (decode tokens + prefill chunk tokens).
    pub max_num_batched_tokens: usize,
    /// Most sequences in one step.
    pub max_num_seqs: usize,
    /// CVM memory that preempted sequences' K/V may take outside the pool
    /// (swapped out, resumed without recomputing); `None`: as much as the
    /// pool itself. Past it, a preempted sequence recomputes (its rows are
    /// sent to the worker again, and counted).
    pub max_swap_bytes: Option<usize>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { max_num_batched_tokens: 2048, max_num_seqs: 64, max_swap_bytes: None }
    }
}

/// One running sequence's share of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedChunk {
    /// Index into the running queue (stable until the next `schedule`).
    pub seq: usize,
    /// Which of its tokens run (their K/V get written).
    pub tokens: Range<usize>,
    /// `Last` when the chunk ends the known tokens: the next one is sampled;
    /// `All` while it holds prompt positions to score (prompt logprobs).
    pub logits: LogitsWanted,
}

/// What `schedule` decided: the value the model step runs.
#[derive(Debug, Default)]
pub struct StepPlan {
    /// In running-queue order.
    pub chunks: Vec<PlannedChunk>,
    pub num_preempted: usize,
    /// Of those, the ones whose K/V went to CVM memory.
    pub num_swapped: usize,
    /// Tokens of the sequences admitted in this step looked up in the
    /// prefix cache, and those found there.
    pub prefix_lookup_tokens: usize,
    pub prefix_hit_tokens: usize,
}

impl StepPlan {
    pub fn num_seqs(&self) -> usize {
        self.chunks.len()
    }
    pub fn num_tokens(&self) -> usize {
        self.chunks.iter().map(|c| c.tokens.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

pub(crate) struct Scheduler {
    pub cfg: SchedulerConfig,
    /// Sorted by arrival (oldest first).
    pub running: Vec<Sequence>,
    /// Sorted by arrival (preempted sequences come back to the front).
    pub waiting: VecDeque<Sequence>,
    /// While `schedule` runs: tokens given so far to each sequence in this
    /// step, by arrival.
    planned: HashMap<u64, usize>,
}

/// Outcome of one attempt to get blocks for a running sequence.
enum Fit {
    /// With this many tokens.
    Scheduled(usize),
    /// The sequence was preempted (index `i` now holds the next one).
    PreemptedSelf,
    /// Left for a later step.
    Skipped,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig) -> Self {
        Self {
            cfg: SchedulerConfig {
                max_num_batched_tokens: cfg.max_num_batched_tokens.max(1),
                max_num_seqs: cfg.max_num_seqs.max(1),
                ..cfg
            },
            running: Vec::new(),
            waiting: VecDeque::new(),
            planned: HashMap::new(),
        }
    }

    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }

    /// Adds a new sequence at the back of the waiting queue.
    pub fn enqueue(&mut self, seq: Sequence) {
        self.waiting.push_back(seq);
    }

    /// Adds a choice forked from a running sequence: running if its KV is
    /// forked, else waiting to compute its prompt (in arrival order either
    /// way).
    pub fn admit_forked(&mut self, kid: Forked) {
        match kid {
            // Within the sequence cap; else it waits, keeping its blocks
            // (admission takes a waiting sequence that holds some).
            Forked::Running(s) if self.running.len() < self.cfg.max_num_seqs => {
                let at = self.running.partition_point(|r| r.arrival < s.arrival);
                self.running.insert(at, s);
            }
            Forked::Running(s) | Forked::Waiting(s) => {
                let at = self.waiting.partition_point(|w| w.arrival < s.arrival);
                self.waiting.insert(at, s);
            }
        }
    }

    /// Removes every sequence of request `id` (their blocks return).
    pub fn remove_request(&mut self, id: u64) -> usize {
        let before = self.running.len() + self.waiting.len();
        self.running.retain(|s| s.req_id != id);
        self.waiting.retain(|s| s.req_id != id);
        before - self.running.len() - self.waiting.len()
    }

    /// Decides the next step: which running sequences run how many tokens,
    /// admits waiting ones, preempts when blocks run out. Sequences that
    /// could never fit in the whole cache are returned.
    pub fn schedule(&mut self, kv: &mut KvPool) -> (StepPlan, Vec<Sequence>) {
        let mut plan = StepPlan::default();
        let mut never_fit = Vec::new();
        self.planned.clear();
        let mut budget = self.cfg.max_num_batched_tokens;
        let total_blocks = kv.allocator().total_blocks();

        for decodes in [true, false] {
            let mut i = 0;
            while i < self.running.len() && budget > 0 {
                let s = &self.running[i];
                if self.planned.contains_key(&s.arrival) || (s.pending() == 1) != decodes {
                    i += 1;
                    continue;
                }
                let want = s.pending().min(budget);
                if s.tokens.len().div_ceil(kv.block_size) > total_blocks {
                    never_fit.push(self.running.remove(i));
                    continue;
                }
                match self.fit_running(i, want, !decodes, kv, &mut plan) {
                    Fit::Scheduled(n) => {
                        budget -= n;
                        i += 1;
                    }
                    Fit::PreemptedSelf => {}
                    Fit::Skipped => i += 1,
                }
            }
        }

        while budget > 0 && plan.num_preempted == 0 && self.running.len() < self.cfg.max_num_seqs {
            let Some(s) = self.waiting.front_mut() else { break };
            if s.tokens.len().div_ceil(kv.block_size) > total_blocks {
                never_fit.extend(self.waiting.pop_front());
                continue;
            }
            if s.blocks.is_none() && s.swapped.is_none() {
                let blocks = s.fresh_blocks(kv);
                plan.prefix_lookup_tokens += s.tokens.len();
                plan.prefix_hit_tokens += blocks.len();
                s.blocks = Some(blocks);
            }
            let want = s.pending().min(budget);
            if let Some(len) = s.swapped.as_ref().map(|w| w.len) {
                // Back from CVM memory, when the blocks for it and this
                // step's tokens are free.
                if kv.allocator().free_blocks() < (len + want).div_ceil(kv.block_size) {
                    if self.release_waiting_holder(kv, &mut plan) {
                        continue;
                    }
                    break;
                }
                let swapped = s.swapped.take().expect("checked");
                s.blocks = Some(kv.swap_in(swapped).expect("blocks checked free"));
            }
            if s.blocks.get_or_insert_with(|| kv.new_sequence()).reserve(want).is_err() {
                // Keep its (empty) table; wait for blocks to come back.
                if self.release_waiting_holder(kv, &mut plan) {
                    continue;
                }
                break;
            }
            self.planned.insert(s.arrival, want);
            budget -= want;
            let s = self.waiting.pop_front().expect("front exists");
            let at = self.running.partition_point(|r| r.arrival < s.arrival);
            self.running.insert(at, s);
        }
        plan.chunks = self
            .running
            .iter()
            .enumerate()
            .filter_map(|(seq, s)| {
                let n = *self.planned.get(&s.arrival)?;
                let from = s.computed();
                Some(PlannedChunk { seq, tokens: from..from + n, logits: s.logits_wanted(from, n) })
            })
            .collect();
        (plan, never_fit)
    }

    /// Reserves blocks for `want` tokens of running sequence `i`, preempting
    /// younger unscheduled sequences as needed. A prefill that cannot get
    /// all its blocks takes a shorter chunk when that fits.
    fn fit_running(&mut self, i: usize, want: usize, shrinkable: bool, kv: &mut KvPool, plan: &mut StepPlan) -> Fit {
        loop {
            let s = &mut self.running[i];
            let blocks = s.blocks.get_or_insert_with(|| kv.new_sequence());
            if blocks.reserve(want).is_ok() {
                self.planned.insert(s.arrival, want);
                return Fit::Scheduled(want);
            }
            if let Some(v) = self.victim(i) {
                self.preempt(v, kv, plan);
                continue;
            }
            if shrinkable {
                let fits = self.fitting_tokens(i, kv);
                let s = &mut self.running[i];
                if fits > 0 && s.blocks.as_mut().is_some_and(|b| b.reserve(fits).is_ok()) {
                    self.planned.insert(s.arrival, fits);
                    return Fit::Scheduled(fits);
                }
                return Fit::Skipped;
            }
            self.preempt(i, kv, plan);
            return Fit::PreemptedSelf;
        }
    }

    /// The youngest running sequence younger than `i` and not scheduled.
    fn victim(&self, i: usize) -> Option<usize> {
        (i + 1..self.running.len()).rev().find(|&v| !self.planned.contains_key(&self.running[v].arrival))
    }

    /// Tokens sequence `i` can add with its own slack plus the free blocks.
    fn fitting_tokens(&self, i: usize, kv: &KvPool) -> usize {
        let s = &self.running[i];
        let held = s.blocks.as_ref().map_or(0, |b| b.block_table().len());
        let room = (held + kv.allocator().free_blocks()) * kv.block_size;
        room.saturating_sub(s.computed()).min(s.pending())
    }

    /// Takes running sequence `v` off the pool: its K/V swapped out to CVM
    /// memory while the swap budget allows, else dropped (it recomputes).
    fn preempt(&mut self, v: usize, kv: &mut KvPool, plan: &mut StepPlan) {
        let mut s = self.running.remove(v);
        self.release_blocks(&mut s, kv, plan);
        plan.num_preempted += 1;
        let at = self.waiting.partition_point(|w| w.arrival < s.arrival);
        self.waiting.insert(at, s);
    }

    /// Moves a sequence's KV out of the pool: swapped to CVM memory within
    /// the swap budget, else dropped for a recompute.
    fn release_blocks(&self, s: &mut Sequence, kv: &mut KvPool, plan: &mut StepPlan) {
        let budget = self.cfg.max_swap_bytes.unwrap_or_else(|| kv.bytes());
        let held: usize = self.waiting.iter().filter_map(|w| w.swapped.as_ref()).map(|w| w.bytes).sum();
        match s.blocks.take() {
            Some(b) if !b.is_empty() && held + kv.swap_bytes(&b) <= budget => {
                s.swapped = Some(kv.swap_out(b));
                plan.num_swapped += 1;
            }
            b => {
                // Its full blocks stay in the prefix cache (when it has a
                // salt) until their memory is needed: a recompute may find
                // them. Rows computed again are counted as re-sent.
                drop(b);
                s.preempt();
            }
        }
    }

    /// The front of the queue cannot get its blocks: the youngest waiting
    /// sequence behind it that holds some (a forked choice waiting with its
    /// parent's prompt blocks, or past the sequence cap) gives them up, as
    /// a running one would be preempted. Waiting holders were never
    /// evicted, so a swapped-out parent waiting for blocks its own forked
    /// choice held stalled the queue for good. Returns whether one did.
    fn release_waiting_holder(&mut self, kv: &mut KvPool, plan: &mut StepPlan) -> bool {
        let Some(i) = (1..self.waiting.len()).rev().find(|&i| self.waiting[i].blocks.as_ref().is_some_and(|b| !b.is_empty())) else {
            return false;
        };
        let mut s = self.waiting.remove(i).expect("index found");
        self.release_blocks(&mut s, kv, plan);
        self.waiting.insert(i, s);
        true
    }
}
