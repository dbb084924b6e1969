//! Confidential vs plain, measured in one run on this machine: prefill of a
//! 512-token prompt, and decode at batch 1 and at 16 streams, for the exact
//! and the fast mode. Besides the ratios it reports the CVM's own
//! milliseconds per token (everything but the worker's compute: what would
//! be left with a GPU worker) and where they go.

use std::sync::Arc;
use std::time::Instant;

use talaria_cvm::backend::{build_linear, Backend, BackendArgs};
use talaria_cvm::model_source::ModelArgs;
use talaria_engine::{DecoderModel, KvPool, Linear, LocalLinear, LogitsWanted, SeqChunk, StepTimings};
use talaria_kernels::Precision;
use talaria_models::{Checkpoint, CvmWeights, WorkerWeights};
use talaria_remo::{RemoReport, WorkerBusy};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens of the prefill phase.
    #[arg(long, default_value_t = 512)]
    prefill: usize,
    /// Decode steps of each decode phase.
    #[arg(long, default_value_t = 64)]
    decode_steps: usize,
    /// Sequences decoded together, one decode phase each.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    streams: Vec<usize>,
    /// Confidential modes to measure (`exact`, `fast`).
    #[arg(long, value_delimiter = ',', default_value = "exact,fast")]
    precision: Vec<Precision>,
    /// CVM threads for pad production (default: one per core; 0: on the
    /// engine thread).
    #[arg(long)]
    pad_threads: Option<usize>,
    /// Append the table to bench/RESULTS.md.
    #[arg(long)]
    record: bool,
}

#[derive(Clone, Copy)]
enum Phase {
    Prefill(usize),
    Decode { streams: usize, steps: usize },
}

impl Phase {
    fn name(self) -> String {
        match self {
            Phase::Prefill(n) => format!("prefill {n}"),
            Phase::Decode { streams: 1, .. } => "decode batch 1".into(),
            Phase::Decode { streams, .. } => format!("decode {streams} streams"),
        }
    }
    fn tokens(self) -> usize {
        match self {
            Phase::Prefill(n) => n,
            Phase::Decode { streams, steps } => streams * steps,
        }
    }
}

/// Prompt tokens of each decode stream before its timed steps.
const DECODE_CONTEXT: usize = 64;

/// What the backend reports at one point of a run.
struct Snapshot {
    remo: Option<RemoReport>,
    /// The worker's own busy seconds per call kind.
    busy: Option<WorkerBusy>,
    /// CPU seconds of this (the CVM's) process, every thread.
    cpu_s: f64,
}

impl Snapshot {
    fn of(linear: &mut Backend) -> Self {
        Self { remo: linear.remo_report(), busy: linear.worker_busy(), cpu_s: crate::machine::process_cpu_s() }
    }
    fn remo<T: Default>(&self, f: impl Fn(&RemoReport) -> T) -> T {
        self.remo.as_ref().map(f).unwrap_or_default()
    }
}

/// One phase of one backend.
struct PhaseRun {
    phase: Phase,
    /// Steps, and the backend's work after each (paced pad refills).
    wall_s: f64,
    timings: StepTimings,
    before: Snapshot,
    after: Snapshot,
}

/// Milliseconds per token of a confidential phase, by where they go.
struct CvmSide {
    total: f64,
    compute: f64,
    masking: f64,
    checks: f64,
    pads_engine: f64,
    pad_threads: f64,
    worker: f64,
}

impl PhaseRun {
    fn per_token(&self, seconds: f64) -> f64 {
        1e3 * seconds / self.phase.tokens() as f64
    }

    /// CPU ms per token of this process, every thread.
    fn cpu_per_token(&self) -> f64 {
        self.per_token(self.after.cpu_s - self.before.cpu_s)
    }

    fn cvm_side(&self) -> anyhow::Result<CvmSide> {
        let (b, a) = (&self.before, &self.after);
        let busy = |s: &Snapshot| s.busy.ok_or_else(|| anyhow::anyhow!("the worker did not report its busy time"));
        let (wb, wa) = (busy(b)?, busy(a)?);
        let worker_online = wa.online.busy_s - wb.online.busy_s;
        let worker_pads = wa.pad_batch.busy_s - wb.pad_batch.busy_s;
        let refill = (a.remo(|r| r.refill_ms) - b.remo(|r| r.refill_ms)) / 1e3;
        let checks = (a.remo(|r| r.checks.online_time) - b.remo(|r| r.checks.online_time)).as_secs_f64();
        let pads_engine = (refill - worker_pads).max(0.0);
        let total = self.wall_s - worker_online - worker_pads;
        Ok(CvmSide {
            total: self.per_token(total),
            compute: self.per_token(self.timings.cvm_s),
            masking: self.per_token((total - self.timings.cvm_s - checks - pads_engine).max(0.0)),
            checks: self.per_token(checks),
            pads_engine: self.per_token(pads_engine),
            pad_threads: self.per_token((a.remo(|r| r.pad_thread_cpu_ms) - b.remo(|r| r.pad_thread_cpu_ms)) / 1e3),
            worker: self.per_token(worker_online + worker_pads),
        })
    }
}

fn measure(model: &DecoderModel, linear: &mut Backend, phase: Phase) -> anyhow::Result<PhaseRun> {
    let (streams, context, steps) = match phase {
        Phase::Prefill(n) => (1, n, 0),
        Phase::Decode { streams, steps } => (streams, DECODE_CONTEXT, steps),
    };
    let per_seq_blocks = (context + steps).div_ceil(16) + 1;
    let mut kv = KvPool::with_precision(&model.config, streams * per_seq_blocks + 2, 16, linear.precision());
    // In both modes, a serving engine's KV blocks and step buffers were
    // touched long ago; a fresh pool's first page faults (tens of MB, f64 in
    // the exact mode) are not part of a step.
    kv.prefault();
    model.reserve_buffers(context.max(streams), linear.precision());
    let mut seqs = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut seq = kv.new_sequence();
        seq.reserve(context + steps)?;
        seqs.push(seq);
    }
    let prompts: Vec<Vec<u32>> =
        (0..streams as u32).map(|s| (0..context as u32).map(|i| 100 + (i * 7919 + s * 104729) % 40000).collect()).collect();
    let forward = |seqs: &[talaria_engine::SeqBlocks], tokens: &[&[u32]], kv: &mut KvPool, linear: &mut Backend, t: &mut StepTimings| {
        let chunks: Vec<SeqChunk> =
            seqs.iter().zip(tokens).map(|(s, tokens)| SeqChunk { blocks: s, tokens, logits: LogitsWanted::Last }).collect();
        model.forward(&chunks, kv, linear, t)
    };
    let prompt_refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let mut timings = StepTimings::default();
    if let Phase::Prefill(_) = phase {
        linear.fill_ahead()?;
        let before = Snapshot::of(linear);
        let t0 = Instant::now();
        forward(&seqs, &prompt_refs, &mut kv, linear, &mut timings)?;
        let wall_s = t0.elapsed().as_secs_f64();
        return Ok(PhaseRun { phase, wall_s, timings, before, after: Snapshot::of(linear) });
    }
    forward(&seqs, &prompt_refs, &mut kv, linear, &mut StepTimings::default())?;
    seqs.iter_mut().for_each(|s| s.advance(context));
    // Pools full before the timed steps, as idle worker time would leave them.
    linear.fill_ahead()?;
    let before = Snapshot::of(linear);
    let t0 = Instant::now();
    for i in 0..steps {
        let toks: Vec<[u32; 1]> = (0..streams).map(|s| [500 + (i * 31 + s * 7) as u32 % 40000]).collect();
        let refs: Vec<&[u32]> = toks.iter().map(|t| &t[..]).collect();
        forward(&seqs, &refs, &mut kv, linear, &mut timings)?;
        seqs.iter_mut().for_each(|s| s.advance(1));
        // As the server does after each step: pad batches paced to use.
        linear.after_step()?;
    }
    let wall_s = t0.elapsed().as_secs_f64();
    Ok(PhaseRun { phase, wall_s, timings, before, after: Snapshot::of(linear) })
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let dtype = a.model.dtype;
    let ck = Checkpoint::open(a.model.resolve()?)?;
    let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, dtype)?)?;
    let mut phases = vec![Phase::Prefill(a.prefill)];
    phases.extend(a.streams.iter().map(|&streams| Phase::Decode { streams, steps: a.decode_steps }));

    eprintln!("measuring plain (local, single process)…");
    let mut local = Backend::Local(LocalLinear::new(Arc::new(WorkerWeights::load(&ck, dtype)?)));
    let plain: Vec<PhaseRun> = phases.iter().map(|&p| measure(&model, &mut local, p)).collect::<anyhow::Result<_>>()?;
    drop(local);

    let mut table = String::from(
        "| mode | phase | plain tok/s | confidential tok/s | ratio | CVM side ms/token | weight-free compute | masking + transport | answer checks | pad production (engine thread) | pad threads (CPU ms/token) | worker ms/token | CVM CPU ms/token (all threads) | plain ms/token | plain CPU ms/token |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut notes = Vec::new();
    for &precision in &a.precision {
        // Storage reserved as a server does: the timed steps are its steady state.
        let args = BackendArgs { precision, pad_threads: a.pad_threads, reserve_pad_storage: true, ..BackendArgs::default() };
        eprintln!("measuring confidential {} (ReMO κ={:.0e}, worker over shared memory)…", precision.mode_name(), args.kappa());
        let mut remo = build_linear(&args, &ck, dtype)?;
        let t_fill = Instant::now();
        remo.fill_ahead()?;
        let fill_s = t_fill.elapsed().as_secs_f64();
        let runs: Vec<PhaseRun> = phases.iter().map(|&p| measure(&model, &mut remo, p)).collect::<anyhow::Result<_>>()?;
        drop(remo);
        for (conf, plain) in runs.iter().zip(&plain) {
            let s = conf.cvm_side()?;
            let tokens = conf.phase.tokens() as f64;
            table.push_str(&format!(
                "| {} κ={:.0e} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                precision.mode_name(),
                args.kappa(),
                conf.phase.name(),
                tokens / plain.wall_s,
                tokens / conf.wall_s,
                plain.wall_s / conf.wall_s,
                s.total,
                s.compute,
                s.masking,
                s.checks,
                s.pads_engine,
                s.pad_threads,
                s.worker,
                conf.cpu_per_token(),
                plain.per_token(plain.wall_s),
                plain.cpu_per_token(),
            ));
        }
        // Stage costs over the timed phases only (the initial fill also
        // solves every op's check reference).
        let (first, last) = (&runs[0].before, &runs[runs.len() - 1].after);
        let delta = |f: &dyn Fn(&RemoReport) -> f64| last.remo(f) - first.remo(f);
        let batches = delta(&|r| r.batches as f64);
        let per = |f: &dyn Fn(&RemoReport) -> f64| delta(f) / batches.max(1.0);
        let stages = delta(&|r| {
            let p = &r.refill_phases_ms;
            p.draw + p.mix + p.unmix + p.check + p.keep
        });
        notes.push(format!(
            "{}: initial fill {fill_s:.1} s (the first batch of every op, which solves its check reference); {batches:.0} pad batches during the phases, per batch {:.2} ms drawing R, {:.2} mixing, {:.2} unmixing, {:.2} checking, {:.2} keeping, {:.2} on the engine thread less the worker's share ({:.0} % of the stages on the pad threads).",
            precision.mode_name(),
            per(&|r| r.refill_phases_ms.draw),
            per(&|r| r.refill_phases_ms.mix),
            per(&|r| r.refill_phases_ms.unmix),
            per(&|r| r.refill_phases_ms.check),
            per(&|r| r.refill_phases_ms.keep),
            per(&|r| r.refill_ms - r.worker_ms),
            100.0 * delta(&|r| r.offloaded_ms) / stages.max(1e-9),
        ));
    }
    let pad_threads = BackendArgs { pad_threads: a.pad_threads, ..BackendArgs::default() }.pad_threads();
    let text = format!(
        "{table}\nWeights {}; worker process over the shared-memory ring, on the CPUs it shares with the CVM; {pad_threads} pad thread(s). \
Decode phases: {DECODE_CONTEXT}-token prompts prefilled untimed, pools filled, then {} timed steps, each followed by the paced pad refill a server runs (in the wall time). \
The prefill row has its pads ready (its pad batches are made later, at the decode rows' rate). \
CVM side = wall − the worker's own busy time (online and pad-batch calls, as it reports): what would remain with a GPU worker. \
It splits into weight-free compute (embedding, norms, RoPE, attention, sampling), answer checks, pad production on the engine thread \
(pad-batch time there less the worker's busy time: with pad threads, only moving U and U·W), and masking + transport (the rest: masking, writing rows to and reading answers from the ring). \
Pad threads: their CPU time (the kernel's per-thread accounting), off the engine thread. \
CVM CPU: every thread of the CVM process (engine, its kernel pool, pad threads; not the worker process), against the plain engine's process CPU.\n{}",
        dtype.name(),
        a.decode_steps,
        notes.join("\n")
    );
    println!("\n{text}");
    if a.record {
        crate::machine::append_results("Confidential vs plain, time split (`bench split`)", &format!("{text}\n"))?;
    }
    Ok(())
}
