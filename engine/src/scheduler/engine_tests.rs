//! The engine on the real default model against the single-request driver
//! (`generate`): every request of a mixed batch — long prompts chunked,
//! sequences preempted under a tiny KV pool — gets exactly the tokens it
//! gets alone.

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

use talaria_kernels::WeightFormat;
use talaria_models::fetch::ensure_default_model;
use talaria_models::{Checkpoint, CvmWeights, WorkerWeights};

use super::request::FinishReason;
use super::{Engine, EngineRequest, RejectReason, RequestEvent, SchedulerConfig};
use crate::generate::{generate, GenerateRequest};
use crate::kv_cache::KvPool;
use crate::linear::LocalLinear;
use crate::model::DecoderModel;
use crate::prefix_hash::CacheSalt;

struct Fixture {
    ck: Checkpoint,
    weights: Arc<WorkerWeights>,
}

fn fixture() -> Fixture {
    let ck = Checkpoint::open(ensure_default_model(false).expect("default model")).expect("open");
    let weights = Arc::new(WorkerWeights::load(&ck, WeightFormat::Stored).expect("worker weights"));
    Fixture { ck, weights }
}

impl Fixture {
    fn model(&self) -> DecoderModel {
        DecoderModel::new(self.ck.config.clone(), CvmWeights::load(&self.ck, WeightFormat::Stored).expect("cvm weights")).expect("model")
    }

    fn engine(&self, blocks: usize, cfg: SchedulerConfig) -> Engine {
        let model = self.model();
        let kv = KvPool::new(&model.config, blocks, 16);
        let tok = Arc::new(Checkpoint::open(&self.ck.path).expect("open").tokenizer);
        Engine::new(model, kv, Box::new(LocalLinear::new(self.weights.clone())), tok, cfg)
    }

    /// An engine whose backend counts the rows reaching layer 0's qkv (the
    /// rows a worker would be sent), and that count.
    fn counting_engine(&self, blocks: usize, cfg: SchedulerConfig) -> (Engine, Arc<std::sync::atomic::AtomicUsize>) {
        let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let model = self.model();
        let kv = KvPool::new(&model.config, blocks, 16);
        let tok = Arc::new(Checkpoint::open(&self.ck.path).expect("open").tokenizer);
        let linear = CountingLinear { inner: LocalLinear::new(self.weights.clone()), rows: counted.clone() };
        (Engine::new(model, kv, Box::new(linear), tok, cfg), counted)
    }

    /// Greedy tokens of one request through `generate`.
    fn alone(&self, prompt: &[u32], max_tokens: usize) -> Vec<u32> {
        let model = self.model();
        let mut kv = KvPool::new(&model.config, (prompt.len() + max_tokens).div_ceil(16), 16);
        let mut linear = LocalLinear::new(self.weights.clone());
        let req =
            GenerateRequest { prompt_ids: prompt.to_vec(), params: Default::default(), max_tokens, stop_strings: vec![], ignore_eos: true };
        generate(&model, &mut kv, &mut linear, &self.ck.tokenizer, &req, |_, _, _| {})
            .expect("generate")
            .tokens
            .iter()
            .map(|t| t.id)
            .collect()
    }
}

fn submit(engine: &mut Engine, id: u64, req: EngineRequest) -> Receiver<RequestEvent> {
    let (tx, rx) = channel();
    engine.add_request(id, req, Box::new(move |ev| tx.send(ev).is_ok()));
    rx
}

/// Steps until idle; returns the tokens of choice 0 per receiver.
fn run(engine: &mut Engine, rxs: &[Receiver<RequestEvent>]) -> Vec<Vec<u32>> {
    let mut steps = 0;
    while engine.has_work() {
        engine.step();
        steps += 1;
        assert!(steps < 10_000, "the engine does not converge");
    }
    rxs.iter()
        .map(|rx| {
            let mut toks = Vec::new();
            let mut finished = false;
            for ev in rx.try_iter() {
                match ev {
                    RequestEvent::Output(o) => {
                        assert!(!finished, "output after finish");
                        toks.extend(o.tokens.iter().map(|t| t.id));
                        finished = o.finish == Some(FinishReason::Length);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(finished, "every request finishes");
            toks
        })
        .collect()
}

fn prompts(f: &Fixture) -> Vec<Vec<u32>> {
    let long = "The committee reviewed the annual report in detail. ".repeat(60);
    ["Hello there", "def add(a, b):", long.as_str(), "Three facts about owls:", "1 2 3 4"]
        .iter()
        .map(|p| f.ck.tokenizer.encode(p).expect("encode"))
        .collect()
}

#[test]
fn a_mixed_batch_with_chunked_prefill_matches_requests_run_alone() {
    let f = fixture();
    let ps = prompts(&f);
    assert!(ps[2].len() > 300, "the long prompt needs several chunks");
    let mut engine = f.engine(256, SchedulerConfig { max_num_batched_tokens: 128, max_num_seqs: 8, max_swap_bytes: None });
    let rxs: Vec<_> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| submit(&mut engine, i as u64, EngineRequest { ignore_eos: true, ..EngineRequest::greedy(p.clone(), 10) }))
        .collect();
    let got = run(&mut engine, &rxs);
    for (i, p) in ps.iter().enumerate() {
        assert_eq!(got[i], f.alone(p, 10), "request {i}");
    }
    let st = engine.stats().snapshot();
    assert_eq!((st.kv_used_blocks, st.running_seqs, st.waiting_seqs), (0, 0, 0));
    // The serving log's counters: every prompt position once, every token sampled.
    let prompt_total: usize = ps.iter().map(Vec::len).sum();
    assert_eq!((st.prompt_tokens_total, st.generation_tokens_total), (prompt_total as u64, 10 * ps.len() as u64));
}

#[test]
fn preemption_in_a_tiny_pool_keeps_every_output() {
    let f = fixture();
    let ps: Vec<Vec<u32>> = prompts(&f).into_iter().filter(|p| p.len() < 40).collect();
    // 6 blocks = 96 tokens for four sequences of up to ~40 tokens each.
    let mut engine = f.engine(6, SchedulerConfig::default());
    let rxs: Vec<_> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| submit(&mut engine, i as u64, EngineRequest { ignore_eos: true, ..EngineRequest::greedy(p.clone(), 30) }))
        .collect();
    let got = run(&mut engine, &rxs);
    assert!(engine.stats().snapshot().preemptions_total > 0, "the pool is too small not to preempt");
    for (i, p) in ps.iter().enumerate() {
        assert_eq!(got[i], f.alone(p, 30), "request {i}");
    }
}

#[test]
fn rejects_and_cancels() {
    let f = fixture();
    let mut engine = f.engine(4, SchedulerConfig::default());
    let rx = submit(&mut engine, 1, EngineRequest::greedy(vec![1; 10], 100));
    assert!(matches!(rx.try_recv(), Ok(RequestEvent::Rejected(RejectReason::ExceedsKvCache { needed: 110, capacity: 64 }))));
    let rx = submit(&mut engine, 2, EngineRequest::greedy(vec![], 1));
    assert!(matches!(rx.try_recv(), Ok(RequestEvent::Rejected(RejectReason::EmptyPrompt))));
    let _rx = submit(&mut engine, 3, EngineRequest { n: 2, ..EngineRequest::greedy(vec![1, 2, 3], 20) });
    engine.step();
    assert!(engine.stats().snapshot().kv_used_blocks > 0);
    engine.cancel_request(3);
    assert_eq!(engine.stats().snapshot().kv_used_blocks, 0);
    assert!(!engine.has_work());
}

/// Counts the rows of every layer-0 qkv call: each position the model
/// computes goes through it once.
struct CountingLinear {
    inner: LocalLinear,
    rows: Arc<std::sync::atomic::AtomicUsize>,
}

impl crate::linear::Linear for CountingLinear {
    fn forward(
        &mut self,
        id: talaria_models::OpId,
        rows: usize,
        x: talaria_kernels::Rows<'_>,
        out: talaria_kernels::RowsMut<'_>,
    ) -> anyhow::Result<()> {
        if id == talaria_models::OpId::new(0, talaria_models::Op::Qkv) {
            self.rows.fetch_add(rows, std::sync::atomic::Ordering::Relaxed);
        }
        self.inner.forward(id, rows, x, out)
    }
    fn name(&self) -> String {
        "counting".into()
    }
}

#[test]
fn n_choices_compute_the_prompt_once_and_fork_its_kv() {
    let f = fixture();
    let prompt = f.ck.tokenizer.encode("Three facts about owls:").expect("encode");
    let (n, max_tokens) = (4usize, 8usize);
    let params = crate::sampling::SamplingParams { temperature: 1.0, seed: Some(7), ..Default::default() };
    let (mut engine, counted) = f.counting_engine(64, SchedulerConfig::default());
    let req = EngineRequest { n, params: params.clone(), ignore_eos: true, ..EngineRequest::greedy(prompt.clone(), max_tokens) };
    let rx = submit(&mut engine, 1, req);
    while engine.has_work() {
        engine.step();
    }
    let mut choices = vec![Vec::new(); n];
    for ev in rx.try_iter() {
        let RequestEvent::Output(o) = ev else { panic!("unexpected {ev:?}") };
        choices[o.index].extend(o.tokens.iter().map(|t| t.id));
    }
    // The prompt once, then every choice's generated tokens but its last.
    let rows = counted.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(rows, prompt.len() + n * (max_tokens - 1), "prompt rows must be sent once");
    assert_eq!(engine.stats().snapshot().kv_used_blocks, 0, "forked blocks all return");
    // Each choice is what a request of one choice with its seed gets.
    let mut alone = f.engine(64, SchedulerConfig::default());
    for (i, got) in choices.iter().enumerate() {
        let seed = params.seed.map(|s| s.wrapping_add(i as u64 * 0x9E37_79B9_7F4A_7C15));
        let req = EngineRequest {
            params: crate::sampling::SamplingParams { seed, ..params.clone() },
            ignore_eos: true,
            ..EngineRequest::greedy(prompt.clone(), max_tokens)
        };
        let rx = submit(&mut alone, 10 + i as u64, req);
        let want = run(&mut alone, &[rx]);
        assert_eq!(got, &want[0], "choice {i}");
    }
    assert!(choices.iter().any(|c| c != &choices[0]), "seeded choices should differ");
}

/// Under a tiny pool, preempted sequences keep their K/V in CVM memory and
/// resume without recomputing: every position goes to the linears once.
/// With no swap budget they recompute, and the re-sent rows are counted.
#[test]
fn a_preempted_sequence_is_swapped_out_and_sends_no_row_twice() {
    let f = fixture();
    let ps: Vec<Vec<u32>> = prompts(&f).into_iter().filter(|p| p.len() < 40).collect();
    let max_tokens = 30;
    let once: usize = ps.iter().map(|p| p.len() + max_tokens - 1).sum();
    let salt = Some(CacheSalt::new(b"one client"));
    for (swap, cache_salt) in [(None, None), (Some(0), None), (Some(0), salt)] {
        let (mut engine, counted) = f.counting_engine(6, SchedulerConfig { max_swap_bytes: swap, ..SchedulerConfig::default() });
        let rxs: Vec<_> = ps
            .iter()
            .enumerate()
            .map(|(i, p)| {
                submit(
                    &mut engine,
                    i as u64,
                    EngineRequest { ignore_eos: true, cache_salt, ..EngineRequest::greedy(p.clone(), max_tokens) },
                )
            })
            .collect();
        let got = run(&mut engine, &rxs);
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(got[i], f.alone(p, max_tokens), "request {i}, swap budget {swap:?}, salt {cache_salt:?}");
        }
        let st = engine.stats().snapshot();
        let rows = counted.load(std::sync::atomic::Ordering::Relaxed);
        assert!(st.preemptions_total > 0, "the pool is too small not to preempt");
        match swap {
            None => {
                assert_eq!((st.swaps_total, st.resent_rows_total), (st.preemptions_total, 0));
                assert_eq!(rows, once, "no row is sent twice");
            }
            _ => {
                assert_eq!(st.swaps_total, 0);
                assert!(st.resent_rows_total > 0);
                // With a salt, a recompute may find its own blocks in the
                // prefix cache: fewer rows go out, and the count still holds.
                assert_eq!(rows, once + st.resent_rows_total as usize, "every re-sent row is counted");
            }
        }
    }
}

/// Forked choices respect the sequence cap: with `max_num_seqs` 2 and
/// `n = 4`, no step runs more than two sequences and every choice finishes.
#[test]
fn forked_choices_respect_the_sequence_cap() {
    let f = fixture();
    let prompt = f.ck.tokenizer.encode("Three facts about owls:").expect("encode");
    let mut engine = f.engine(64, SchedulerConfig { max_num_seqs: 2, ..SchedulerConfig::default() });
    let params = crate::sampling::SamplingParams { temperature: 1.0, seed: Some(3), ..Default::default() };
    let rx = submit(&mut engine, 1, EngineRequest { n: 4, params, ignore_eos: true, ..EngineRequest::greedy(prompt, 6) });
    while engine.has_work() {
        assert!(engine.step().num_seqs <= 2);
    }
    let finished = rx.try_iter().filter(|ev| matches!(ev, RequestEvent::Output(o) if o.finish.is_some())).count();
    assert_eq!(finished, 4);
    assert_eq!(engine.stats().snapshot().kv_used_blocks, 0);
}

/// Prompt logprobs scored over a chunked prefill match one forward pass of
/// the whole prompt with every position's logits; the forked choices share
/// them, and the sampled tokens are those of a request without them.
#[test]
fn prompt_logprobs_over_chunks_match_a_full_forward_and_are_shared_by_forks() {
    let f = fixture();
    let prompt = f.ck.tokenizer.encode(&"The committee reviewed the annual report in detail. ".repeat(4)).expect("encode");
    let (top, max_tokens) = (2, 4);
    let params = crate::sampling::SamplingParams { prompt_logprobs: Some(top), ..Default::default() };
    let mut engine = f.engine(64, SchedulerConfig { max_num_batched_tokens: 16, ..SchedulerConfig::default() });
    let req = EngineRequest { n: 2, params, ignore_eos: true, ..EngineRequest::greedy(prompt.clone(), max_tokens) };
    let rx = submit(&mut engine, 1, req);
    while engine.has_work() {
        engine.step();
    }
    let (mut scored, mut choices) = (Vec::new(), vec![Vec::new(); 2]);
    for ev in rx.try_iter() {
        let RequestEvent::Output(o) = ev else { panic!("unexpected {ev:?}") };
        scored.extend(o.prompt_logprobs);
        choices[o.index].extend(o.tokens.iter().map(|t| t.id));
    }
    assert_eq!(scored.len(), 2, "on each choice's first output");
    assert!(Arc::ptr_eq(&scored[0], &scored[1]), "the forked choice shares the scores");
    let ids: Vec<u32> = scored[0].iter().map(|t| t.id).collect();
    assert_eq!(ids, prompt[1..], "one entry per prompt token after the first");

    let model = f.model();
    let mut kv = KvPool::new(&model.config, prompt.len().div_ceil(16), 16);
    let mut seq = kv.new_sequence();
    seq.reserve(prompt.len()).expect("blocks");
    let chunk = crate::model::SeqChunk { blocks: &seq, tokens: &prompt, logits: crate::model::LogitsWanted::All };
    let mut linear = LocalLinear::new(f.weights.clone());
    let logits = model.forward(&[chunk], &mut kv, &mut linear, &mut Default::default()).expect("forward");
    for (p, row) in logits.chunks_exact(model.config.vocab_size).take(prompt.len() - 1).enumerate() {
        let want = crate::sampling::score_token(row, prompt[p + 1], top);
        assert!((scored[0][p].logprob - want.logprob).abs() < 1e-3, "position {p}: {:?} vs {want:?}", scored[0][p]);
        let top_ids = |t: &crate::sampling::SampledToken| t.top_logprobs.iter().map(|&(id, _)| id).collect::<Vec<_>>();
        assert_eq!(top_ids(&scored[0][p]), top_ids(&want), "position {p}");
    }
    let alone = f.alone(&prompt, max_tokens);
    assert!(choices.iter().all(|c| c == &alone), "{choices:?} vs {alone:?}");
    assert_eq!(engine.stats().snapshot().kv_used_blocks, 0);
}

/// Multi-turn chat: the second turn (the first turn, its answer and a new
/// message) finds the first turn's blocks in the prefix cache and sends
/// only the rest, with the tokens it gets from scratch; another client
/// (another salt) and a request without one reuse nothing.
#[test]
fn a_second_turn_reuses_the_first_turns_blocks_for_the_same_client_only() {
    let f = fixture();
    let (mut engine, counted) = f.counting_engine(64, SchedulerConfig::default());
    let sent = || counted.load(std::sync::atomic::Ordering::Relaxed);
    let request = |prompt: &[u32], salt: &[u8]| EngineRequest {
        ignore_eos: true,
        cache_salt: (!salt.is_empty()).then(|| CacheSalt::new(salt)),
        ..EngineRequest::greedy(prompt.to_vec(), 8)
    };
    let first = f.ck.tokenizer.encode(&"The committee reviewed the annual report in detail. ".repeat(5)).expect("encode");
    let rx = submit(&mut engine, 1, request(&first, b"client a"));
    let answer = run(&mut engine, &[rx]).remove(0);
    let mut second = [first.as_slice(), &answer].concat();
    second.extend(f.ck.tokenizer.encode(" What did they decide?").expect("encode"));
    let expected = f.alone(&second, 8);
    // The first turn's positions that have K/V (all but its last token), in whole blocks.
    let cached = (first.len() + answer.len() - 1) / 16 * 16;
    assert!(cached >= 48, "the test needs a few cached blocks");
    for (id, salt, reused) in [(2, &b"client a"[..], cached), (3, b"client b", 0), (4, b"", 0)] {
        let (rows_before, hits_before) = (sent(), engine.stats().snapshot().prefix_cache_hits_total);
        let rx = submit(&mut engine, id, request(&second, salt));
        assert_eq!(run(&mut engine, &[rx]).remove(0), expected, "salt {salt:?}: the answer from scratch");
        let hits = engine.stats().snapshot().prefix_cache_hits_total - hits_before;
        assert_eq!(hits as usize, reused, "salt {salt:?}");
        assert_eq!(sent() - rows_before, second.len() + 7 - reused, "salt {salt:?}: rows sent");
    }
}
