//! Scheduling policy without a model: steps are simulated by advancing the
//! block tables and appending a token when a sequence reaches its end.

use std::sync::Arc;

use talaria_models::ModelConfig;

use super::policy::{Scheduler, SchedulerConfig, StepPlan};
use super::sequence::{SeqSpec, Sequence};
use crate::kv_cache::KvPool;
use crate::sampling::{Sampler, SamplingParams};
use crate::stop::StopStrings;

fn pool(blocks: usize, block_size: usize) -> KvPool {
    let cfg = ModelConfig { max_position_embeddings: 4096, ..ModelConfig::llama(16, 8, 16, 1, 2, 1) };
    KvPool::new(&cfg, blocks, block_size)
}

fn seq(req_id: u64, arrival: u64, prompt_len: usize) -> Sequence {
    let spec = SeqSpec { max_tokens: 1000, stop_ids: Arc::from(Vec::new()), stops: Arc::new(StopStrings::default()), cache_salt: None };
    Sequence::new(req_id, 0, arrival, vec![1; prompt_len], Sampler::new(SamplingParams::greedy()), &spec)
}

/// Runs the plan as the engine would: advance, then "sample" token 2.
fn fake_step(s: &mut Scheduler, plan: &StepPlan) {
    for c in &plan.chunks {
        let q = &mut s.running[c.seq];
        q.blocks.as_mut().unwrap().advance(c.tokens.len());
        if q.pending() == 0 {
            q.tokens.push(2);
        }
    }
}

/// (request, tokens) of each planned chunk.
fn scheduled(s: &Scheduler, plan: &StepPlan) -> Vec<(u64, usize)> {
    plan.chunks.iter().map(|c| (s.running[c.seq].req_id, c.tokens.len())).collect()
}

#[test]
fn decodes_first_then_prefill_chunks_fill_the_budget() {
    let mut kv = pool(64, 4);
    let mut s = Scheduler::new(SchedulerConfig { max_num_batched_tokens: 10, max_num_seqs: 8, max_swap_bytes: Some(0) });
    s.enqueue(seq(1, 0, 3));
    s.enqueue(seq(2, 1, 3));
    let (plan, _) = s.schedule(&mut kv);
    assert_eq!((plan.num_seqs(), plan.num_tokens()), (2, 6));
    fake_step(&mut s, &plan);
    // Both decode now; a long prompt arrives and gets the rest of the budget.
    s.enqueue(seq(3, 2, 30));
    let (plan, _) = s.schedule(&mut kv);
    assert_eq!(scheduled(&s, &plan), vec![(1, 1), (2, 1), (3, 8)]);
    assert_eq!(plan.num_tokens(), 10);
    fake_step(&mut s, &plan);
    // Its next chunk continues after the decodes.
    let plan = s.schedule(&mut kv).0;
    assert_eq!(scheduled(&s, &plan), vec![(1, 1), (2, 1), (3, 8)]);
    assert_eq!(s.running[2].computed(), 8);
}

#[test]
fn sequence_cap_limits_admission() {
    let mut kv = pool(64, 4);
    let mut s = Scheduler::new(SchedulerConfig { max_num_batched_tokens: 100, max_num_seqs: 2, max_swap_bytes: Some(0) });
    for r in 0..3 {
        s.enqueue(seq(r, r, 2));
    }
    let (plan, _) = s.schedule(&mut kv);
    assert_eq!(plan.num_seqs(), 2);
    assert_eq!(s.waiting.len(), 1);
}

#[test]
fn out_of_blocks_preempts_the_youngest_and_it_recomputes_later() {
    // 4 blocks of 4 tokens; two sequences of 8 tokens fill the pool.
    let mut kv = pool(4, 4);
    let mut s = Scheduler::new(SchedulerConfig { max_num_batched_tokens: 64, max_num_seqs: 8, max_swap_bytes: Some(0) });
    s.enqueue(seq(1, 0, 7));
    s.enqueue(seq(2, 1, 7));
    let plan = s.schedule(&mut kv).0;
    fake_step(&mut s, &plan); // both hold 7 tokens in 2 blocks, 8 tokens known
    let plan: StepPlan = s.schedule(&mut kv).0; // both fit their 8th token
    assert_eq!(plan.num_preempted, 0);
    fake_step(&mut s, &plan);
    assert_eq!(kv.allocator().free_blocks(), 0);
    // The 9th token needs a third block each: the younger one is evicted.
    let plan = s.schedule(&mut kv).0;
    assert_eq!(plan.num_preempted, 1);
    assert_eq!(scheduled(&s, &plan), vec![(1, 1)]);
    assert_eq!(s.waiting.len(), 1);
    assert_eq!(s.waiting[0].req_id, 2);
    assert!(s.waiting[0].blocks.is_none(), "preempted blocks are freed");
    assert_eq!(s.waiting[0].pending(), 9, "prompt + generated are recomputed");
    fake_step(&mut s, &plan);
    // Once the older one finishes, the younger one comes back whole.
    s.running.clear();
    let plan = s.schedule(&mut kv).0;
    assert_eq!(scheduled(&s, &plan), vec![(2, 9)]);
}

#[test]
fn a_sequence_alone_that_cannot_fit_is_reported() {
    let mut kv = pool(2, 4);
    let mut s = Scheduler::new(SchedulerConfig { max_swap_bytes: Some(0), ..SchedulerConfig::default() });
    s.enqueue(seq(1, 0, 9));
    let (plan, never) = s.schedule(&mut kv);
    assert_eq!(plan.num_seqs(), 0);
    assert_eq!(never.len(), 1);
    assert!(!s.has_work());
}

#[test]
fn no_admission_while_blocks_are_short_and_waiting_keeps_order() {
    let mut kv = pool(3, 4);
    let mut s = Scheduler::new(SchedulerConfig { max_swap_bytes: Some(0), ..SchedulerConfig::default() });
    s.enqueue(seq(1, 0, 8));
    s.enqueue(seq(2, 1, 8));
    s.enqueue(seq(3, 2, 2));
    let plan = s.schedule(&mut kv).0;
    // Request 2 does not fit; request 3 (which would) must not jump the queue.
    assert_eq!(scheduled(&s, &plan), vec![(1, 8)]);
    assert_eq!(s.waiting.iter().map(|q| q.req_id).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(s.remove_request(2), 1);
    assert_eq!(kv.allocator().free_blocks(), 1);
}

#[test]
fn a_running_prefill_short_of_blocks_takes_the_chunk_that_fits() {
    let mut kv = pool(3, 4);
    let mut s = Scheduler::new(SchedulerConfig { max_num_batched_tokens: 6, max_num_seqs: 8, max_swap_bytes: Some(0) });
    s.enqueue(seq(1, 0, 2));
    s.enqueue(seq(2, 1, 12));
    let plan = s.schedule(&mut kv).0;
    assert_eq!(scheduled(&s, &plan), vec![(1, 2), (2, 4)]);
    fake_step(&mut s, &plan);
    // Budget 5 for the prefill, but one free block holds only 4 more tokens.
    let plan = s.schedule(&mut kv).0;
    assert_eq!(scheduled(&s, &plan), vec![(1, 1), (2, 4)]);
    assert_eq!((plan.num_preempted, kv.allocator().free_blocks()), (0, 0));
}

/// A forked choice that waits keeps its parent's prompt blocks. When the
/// parent is then preempted (swapped out) and the older sequence that
/// preempted it finishes, the parent waits at the front for more blocks
/// than are free while its choice, behind it, holds the rest: the queue
/// stalled with every step empty. The waiting holder now gives them up.
#[test]
fn a_waiting_forked_choice_gives_up_its_blocks_to_the_front() {
    use super::sequence::Forked;
    let mut kv = pool(6, 4);
    let mut s = Scheduler::new(SchedulerConfig { max_num_batched_tokens: 64, max_num_seqs: 8, max_swap_bytes: None });
    s.enqueue(seq(1, 0, 4));
    s.enqueue(seq(2, 1, 17));
    let plan = s.schedule(&mut kv).0;
    assert_eq!(scheduled(&s, &plan), vec![(1, 4), (2, 17)]);
    fake_step(&mut s, &plan);
    assert_eq!(kv.allocator().free_blocks(), 0);
    // Request 2's second choice: no free block for the partial one, so it
    // waits holding the four full blocks it shares.
    let mut kid = seq(2, 2, 17);
    kid.blocks = Some(kv.fork(s.running[1].blocks.as_ref().unwrap()));
    s.admit_forked(Forked::Waiting(kid));
    // Request 1 decodes and needs a block: request 2's first choice is
    // swapped out (its full blocks stay, held by the choice).
    let plan = s.schedule(&mut kv).0;
    assert_eq!(scheduled(&s, &plan), vec![(1, 1)]);
    assert_eq!(plan.num_swapped, 1);
    fake_step(&mut s, &plan);
    s.remove_request(1);
    // The parent needs five blocks, two are free, the choice holds four.
    let plan = s.schedule(&mut kv).0;
    assert_eq!(scheduled(&s, &plan), vec![(2, 1)], "the swapped-out parent resumes");
    assert!(s.waiting.iter().all(|w| w.blocks.as_ref().is_none_or(|b| b.is_empty())), "the choice gave its blocks up");
}
