//! The engine: owns the model, the KV pool and the linear backend, holds
//! the requests in flight, and runs one batched step at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use talaria_models::Tokenizer;

use crate::kv_cache::KvPool;
use crate::linear::Linear;
use crate::model::{DecoderModel, StepTimings};
use crate::sampling::Sampler;
use crate::stop::StopStrings;

use super::policy::{Scheduler, SchedulerConfig};
use super::request::{EngineRequest, EventSink, RejectReason, RequestEvent, RequestId, SeqOutput};
use super::sequence::{Forked, SeqSpec, Sequence};
use super::stats::{EngineStats, Occupancy};
use super::step::{advance_and_sample, forward_plan};

/// What a request must satisfy to be accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineLimits {
    /// The model's context length (prompt + completion).
    pub context_len: usize,
    /// Tokens the whole KV cache holds (one sequence can use at most this).
    pub kv_capacity_tokens: usize,
    pub vocab_size: usize,
}

impl EngineLimits {
    /// Checks a request before it is queued; the same rules the engine
    /// applies, so the HTTP side can answer 400 without a round trip.
    pub fn check(&self, req: &EngineRequest) -> Result<(), RejectReason> {
        let prompt = req.prompt_ids.len();
        if prompt == 0 {
            return Err(RejectReason::EmptyPrompt);
        }
        if req.n == 0 {
            return Err(RejectReason::ZeroN);
        }
        if req.max_tokens == 0 {
            return Err(RejectReason::ZeroMaxTokens);
        }
        if prompt.saturating_add(req.max_tokens) > self.context_len {
            return Err(RejectReason::TooLong { prompt, max_tokens: req.max_tokens, context: self.context_len });
        }
        if prompt + req.max_tokens > self.kv_capacity_tokens {
            return Err(RejectReason::ExceedsKvCache { needed: prompt + req.max_tokens, capacity: self.kv_capacity_tokens });
        }
        if let Some(&id) = req.prompt_ids.iter().chain(&req.stop_token_ids).find(|&&id| id as usize >= self.vocab_size) {
            return Err(RejectReason::BadToken { id, vocab: self.vocab_size });
        }
        if let Some((id, _)) = req.params.logit_bias.iter().find(|(id, _)| *id as usize >= self.vocab_size) {
            return Err(RejectReason::BadParams(format!("logit_bias token id {id} is outside the vocabulary (size {})", self.vocab_size)));
        }
        req.params.validate().map_err(RejectReason::BadParams)
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepReport {
    pub num_seqs: usize,
    pub num_tokens: usize,
    pub num_preempted: usize,
    /// Sequences that produced a token.
    pub num_sampled: usize,
    pub forward_s: f64,
    /// A forward pass ran and succeeded.
    pub forward_ok: bool,
}

struct ActiveRequest {
    sink: EventSink,
    /// Sequences not yet finished.
    live: usize,
}

pub struct Engine {
    model: DecoderModel,
    kv: KvPool,
    linear: Box<dyn Linear>,
    tokenizer: Arc<Tokenizer>,
    sched: Scheduler,
    /// The other choices of an `n > 1` request, by the arrival of its first
    /// choice: they are forked from it (KV blocks shared, nothing sent to
    /// the worker again) once its prompt is computed.
    forks: HashMap<u64, Vec<Sequence>>,
    requests: HashMap<RequestId, ActiveRequest>,
    next_arrival: u64,
    stats: Arc<EngineStats>,
    timings: StepTimings,
}

impl Engine {
    pub fn new(model: DecoderModel, kv: KvPool, linear: Box<dyn Linear>, tokenizer: Arc<Tokenizer>, cfg: SchedulerConfig) -> Self {
        let engine = Self {
            model,
            kv,
            linear,
            tokenizer,
            sched: Scheduler::new(cfg),
            forks: HashMap::new(),
            requests: HashMap::new(),
            next_arrival: 0,
            stats: Arc::new(EngineStats::default()),
            timings: StepTimings::default(),
        };
        engine.stats.set_alive(true);
        engine.publish();
        engine
    }

    pub fn limits(&self) -> EngineLimits {
        EngineLimits {
            context_len: self.model.config.max_position_embeddings,
            kv_capacity_tokens: self.kv.allocator().total_blocks() * self.kv.block_size,
            vocab_size: self.model.config.vocab_size,
        }
    }

    pub fn config(&self) -> SchedulerConfig {
        self.sched.cfg
    }

    pub fn stats(&self) -> Arc<EngineStats> {
        self.stats.clone()
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    /// Time spent in the CVM part and the linear backend so far.
    pub fn timings(&self) -> StepTimings {
        self.timings
    }

    pub fn linear_name(&self) -> String {
        self.linear.name()
    }

    /// How full the backend's ahead-of-time work is (see
    /// `Linear::background_fill`).
    pub fn background_fill(&self) -> Option<f64> {
        self.linear.background_fill()
    }

    /// The backend's end-of-run summary (see `Linear::summary`).
    pub fn linear_summary(&self) -> Option<String> {
        self.linear.summary()
    }

    pub fn has_work(&self) -> bool {
        self.sched.has_work()
    }

    /// Background work of the backend (ReMO pad refills) while no request
    /// is pending; returns whether anything was done.
    pub fn idle(&mut self, budget: std::time::Duration) -> bool {
        let started = std::time::Instant::now();
        match self.linear.idle(budget) {
            Ok(did) => {
                // Pad batches were checked: the counters moved.
                self.stats.publish_masking(self.linear.masking_counters());
                self.stats.add_busy(started.elapsed(), std::time::Duration::from_secs_f64(self.timings.cvm_s));
                did
            }
            Err(e) => {
                tracing::warn!("backend idle work failed: {e:#}");
                false
            }
        }
    }

    /// Queues a request as `n` sequences, or rejects it through its sink.
    pub fn add_request(&mut self, id: RequestId, req: EngineRequest, mut sink: EventSink) {
        if let Err(reason) = self.limits().check(&req) {
            sink(RequestEvent::Rejected(reason));
            return;
        }
        let mut stop_ids: Vec<u32> = if req.ignore_eos { Vec::new() } else { self.tokenizer.stop_ids.clone() };
        stop_ids.extend(&req.stop_token_ids);
        let spec = SeqSpec {
            max_tokens: req.max_tokens,
            stop_ids: stop_ids.into(),
            stops: Arc::new(StopStrings::new(req.stop_strings.clone())),
            cache_salt: req.cache_salt,
        };
        let first = self.next_arrival;
        for index in 0..req.n {
            let mut params = req.params.clone();
            // Distinct but reproducible streams for the choices of a seeded request.
            params.seed = params.seed.map(|s| s.wrapping_add(index as u64 * 0x9E37_79B9_7F4A_7C15));
            let seq = Sequence::new(id, index, self.next_arrival, req.prompt_ids.clone(), Sampler::new(params), &spec);
            self.next_arrival += 1;
            if index == 0 {
                self.sched.enqueue(seq);
            } else {
                self.forks.entry(first).or_default().push(seq);
            }
        }
        self.requests.insert(id, ActiveRequest { sink, live: req.n });
        self.publish();
    }

    /// Drops a request (its client is gone): no event, blocks returned.
    pub fn cancel_request(&mut self, id: RequestId) {
        self.sched.remove_request(id);
        self.forks.retain(|_, kids| kids.first().is_none_or(|k| k.req_id != id));
        self.requests.remove(&id);
        self.publish();
    }

    /// Stops every request with an `Aborted` event.
    pub fn abort_all(&mut self, reason: &str) {
        let ids: Vec<RequestId> = self.requests.keys().copied().collect();
        for id in ids {
            self.abort_request(id, reason);
        }
    }

    fn abort_request(&mut self, id: RequestId, reason: &str) {
        self.sched.remove_request(id);
        self.forks.retain(|_, kids| kids.first().is_none_or(|k| k.req_id != id));
        if let Some(mut r) = self.requests.remove(&id) {
            (r.sink)(RequestEvent::Aborted { reason: reason.to_string() });
        }
        self.publish();
    }

    /// Schedules and runs one forward pass over every scheduled sequence,
    /// samples the sequences whose prompt (or recompute) is complete, and
    /// delivers their outputs.
    pub fn step(&mut self) -> StepReport {
        let started = std::time::Instant::now();
        let (plan, never_fit) = self.sched.schedule(&mut self.kv);
        let mut report = StepReport {
            num_seqs: plan.num_seqs(),
            num_tokens: plan.num_tokens(),
            num_preempted: plan.num_preempted,
            ..Default::default()
        };
        let mut outputs: Vec<(RequestId, SeqOutput)> = Vec::new();
        for mut s in never_fit {
            // Choices waiting to fork from it would wait forever: they end too.
            for mut kid in self.forks.remove(&s.arrival).unwrap_or_default() {
                outputs.push((kid.req_id, kid.finish_early()));
            }
            outputs.push((s.req_id, s.finish_early()));
        }

        // Positions of the step that belong to prompts, and those sent before
        // (a recompute, or a fork's tail): counted as re-sent.
        let prompt_tokens: usize =
            plan.chunks.iter().map(|c| c.tokens.end.min(self.sched.running[c.seq].prompt_len).saturating_sub(c.tokens.start)).sum();
        let mut resent = 0;
        for c in &plan.chunks {
            let s = &mut self.sched.running[c.seq];
            resent += c.tokens.end.min(s.sent).saturating_sub(c.tokens.start);
            s.sent = s.sent.max(c.tokens.end);
        }
        if !plan.is_empty() {
            let t0 = Instant::now();
            let result = forward_plan(&self.model, &mut self.kv, self.linear.as_mut(), &self.sched.running, &plan, &mut self.timings);
            report.forward_s = t0.elapsed().as_secs_f64();
            match result {
                Ok(logits) => {
                    report.forward_ok = true;
                    let vocab = self.model.config.vocab_size;
                    let (kv, forks, tok) = (&mut self.kv, &mut self.forks, &self.tokenizer);
                    let mut forked = Vec::new();
                    advance_and_sample(&mut self.sched.running, &plan, &logits, vocab, tok, |s, row, out| {
                        outputs.push((s.req_id, out));
                        report.num_sampled += 1;
                        for kid in forks.remove(&s.arrival).unwrap_or_default() {
                            let req_id = kid.req_id;
                            let (kid, out) = fork_choice(kv, s, kid, row, tok);
                            if let Some(out) = out {
                                outputs.push((req_id, out));
                                report.num_sampled += 1;
                            }
                            forked.push(kid);
                        }
                    });
                    for c in &plan.chunks {
                        self.sched.running[c.seq].offer_computed_blocks(&self.kv);
                    }
                    for kid in forked {
                        self.sched.admit_forked(kid);
                    }
                }
                Err(e) => {
                    tracing::error!("forward pass failed: {e:#}");
                    let ids: HashSet<RequestId> = plan.chunks.iter().map(|c| self.sched.running[c.seq].req_id).collect();
                    for id in ids {
                        self.abort_request(id, &format!("model forward pass failed: {e}"));
                    }
                }
            }
        }
        self.stats.count_step(report.num_tokens, &plan, prompt_tokens, resent, report.num_sampled);
        self.sched.running.retain(|s| !s.finished);
        self.deliver(outputs);
        self.publish();
        // Only after a step that went through: with a failing worker this
        // would make (and retry) a pad batch on every step.
        if report.forward_ok {
            if let Err(e) = self.linear.after_step() {
                tracing::warn!("backend work after the step failed: {e:#}");
            }
        }
        self.stats.publish_masking(self.linear.masking_counters());
        self.stats.add_busy(started.elapsed(), std::time::Duration::from_secs_f64(self.timings.cvm_s));
        report
    }

    /// Sends outputs to their requests; forgets finished requests and drops
    /// those whose receiver is gone.
    fn deliver(&mut self, outputs: Vec<(RequestId, SeqOutput)>) {
        let mut gone = Vec::new();
        for (id, out) in outputs {
            let Some(r) = self.requests.get_mut(&id) else { continue };
            let last = out.finish.is_some();
            if !(r.sink)(RequestEvent::Output(out)) {
                gone.push(id);
                continue;
            }
            if last {
                r.live -= 1;
                if r.live == 0 {
                    self.requests.remove(&id);
                }
            }
        }
        for id in gone {
            self.cancel_request(id);
        }
    }

    fn publish(&self) {
        let running: HashSet<RequestId> = self.sched.running.iter().map(|s| s.req_id).collect();
        let waiting: HashSet<RequestId> = self.sched.waiting.iter().map(|s| s.req_id).filter(|id| !running.contains(id)).collect();
        let a = self.kv.allocator();
        self.stats.publish(&Occupancy {
            running_requests: running.len() as u64,
            waiting_requests: waiting.len() as u64,
            running_seqs: self.sched.running.len() as u64,
            waiting_seqs: self.sched.waiting.len() as u64,
            kv_used_blocks: (a.total_blocks() - a.free_blocks()) as u64,
            kv_total_blocks: a.total_blocks() as u64,
        });
        self.stats.publish_masking(self.linear.masking_counters());
    }
}

/// Starts choice `kid` of a request from its first choice `parent`, whose
/// prompt was just computed and first token sampled from `row`: the KV
/// blocks are forked (full ones shared, the partial one copied) and the
/// kid samples its own first token from the same logits. Without a free
/// block for the copy it computes the prompt's tail after the shared
/// blocks itself (those rows are sent again, and counted).
fn fork_choice(kv: &mut KvPool, parent: &Sequence, mut kid: Sequence, row: &[f32], tok: &Tokenizer) -> (Forked, Option<SeqOutput>) {
    let Some(blocks) = parent.blocks.as_ref().map(|b| kv.fork(b)) else {
        return (Forked::Waiting(kid), None);
    };
    let tail = parent.prompt_len.saturating_sub(blocks.len());
    kid.blocks = Some(blocks);
    // Its prompt went out with the parent's: a tail it computes is a re-send.
    kid.sent = parent.prompt_len;
    kid.share_prompt_logprobs(parent);
    if tail > 0 {
        return (Forked::Waiting(kid), None);
    }
    let out = kid.sample_next(row, tok);
    (Forked::Running(kid), Some(out))
}
