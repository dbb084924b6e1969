//! Confidential vs plain, measured in one run on this machine: prefill of a
//! 512-token prompt and decode at batch 1, with the time split per step
//! (CVM compute, masking, transport, worker compute, pad refill).

use std::sync::Arc;
use std::time::Instant;

use talaria_cvm::backend::{build_linear, Backend, BackendArgs};
use talaria_cvm::model_source::ModelArgs;
use talaria_cvm::worker::LinkStats;
use talaria_engine::{DecoderModel, KvPool, Linear, LocalLinear, LogitsWanted, SeqChunk, StepTimings};
use talaria_models::{Checkpoint, CvmWeights, WorkerWeights};
use talaria_remo::{RemoReport, WorkerBusy};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens of the prefill phase.
    #[arg(long, default_value_t = 512)]
    prefill: usize,
    /// Decode steps at batch 1.
    #[arg(long, default_value_t = 64)]
    decode_steps: usize,
    /// Append the table to bench/RESULTS.md.
    #[arg(long)]
    record: bool,
}

struct Measured {
    prefill_s: f64,
    prefill_t: StepTimings,
    decode_s: f64,
    decode_t: StepTimings,
    /// Backend reports before/after prefill and decode.
    stats: [Snapshot; 4],
}

/// What the backend reports at one point of a run.
struct Snapshot {
    remo: Option<RemoReport>,
    link: LinkStats,
    /// The worker's own busy seconds per call kind.
    busy: Option<WorkerBusy>,
}

impl Snapshot {
    fn of(linear: &mut Backend) -> Self {
        Self { remo: linear.remo_report(), link: linear.link_stats().unwrap_or_default(), busy: linear.worker_busy() }
    }
    fn batches(&self) -> f64 {
        self.remo.as_ref().map_or(0.0, |r| r.batches as f64)
    }
    fn rescaled(&self) -> f64 {
        self.remo.as_ref().map_or(0.0, |r| r.rows_rescaled as f64)
    }
    /// Seconds spent checking online answers so far.
    fn online_checks_s(&self) -> f64 {
        self.remo.as_ref().map_or(0.0, |r| r.checks.online_time.as_secs_f64())
    }
}

fn measure(model: &DecoderModel, linear: &mut Backend, a: &Args) -> anyhow::Result<Measured> {
    let mut kv = KvPool::with_precision(&model.config, (a.prefill + a.decode_steps).div_ceil(16) + 2, 16, linear.precision());
    let prompt: Vec<u32> = (0..a.prefill as u32).map(|i| 100 + (i * 7919) % 40000).collect();
    // In both modes, a serving engine's KV blocks and step buffers were
    // touched long ago; a fresh pool's first page faults (tens of MB, f64 in
    // the exact mode) are not part of a step.
    kv.prefault();
    model.reserve_buffers(a.prefill, linear.precision());
    linear.fill_ahead()?;
    let mut seq = kv.new_sequence();
    seq.reserve(a.prefill + a.decode_steps)?;
    let s0 = Snapshot::of(linear);
    let mut prefill_t = StepTimings::default();
    let t0 = Instant::now();
    model.forward(&[SeqChunk { blocks: &seq, tokens: &prompt, logits: LogitsWanted::Last }], &mut kv, linear, &mut prefill_t)?;
    let prefill_s = t0.elapsed().as_secs_f64();
    let s1 = Snapshot::of(linear);
    seq.advance(a.prefill);
    // Refill ahead of decode, off the clock, as idle worker time would.
    linear.fill_ahead()?;
    let s2 = Snapshot::of(linear);
    let mut decode_t = StepTimings::default();
    let t1 = Instant::now();
    for i in 0..a.decode_steps {
        let tok = [500 + i as u32];
        model.forward(&[SeqChunk { blocks: &seq, tokens: &tok, logits: LogitsWanted::Last }], &mut kv, linear, &mut decode_t)?;
        seq.advance(1);
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let s3 = Snapshot::of(linear);
    Ok(Measured { prefill_s, prefill_t, decode_s, decode_t, stats: [s0, s1, s2, s3] })
}

/// Seconds the worker itself spent on online calls between two points.
fn worker_online_s(m: &Measured, from: usize, to: usize) -> anyhow::Result<f64> {
    let at = |i: usize| m.stats[i].busy.map(|b| b.online.busy_s);
    match (at(from), at(to)) {
        (Some(a), Some(b)) => Ok(b - a),
        _ => anyhow::bail!("the worker did not report its busy time (an older worker?)"),
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let dtype = a.model.dtype;
    let ck = Checkpoint::open(a.model.resolve()?)?;
    let model = DecoderModel::new(ck.config.clone(), CvmWeights::load(&ck, dtype)?)?;

    eprintln!("measuring plain (local, single process)…");
    let mut local = Backend::Local(LocalLinear::new(Arc::new(WorkerWeights::load(&ck, dtype)?)));
    let plain = measure(&model, &mut local, &a)?;
    drop(local);

    eprintln!("measuring confidential (ReMO κ=1e4, local worker over shared memory)…");
    let mut remo = build_linear(&BackendArgs::default(), &ck, dtype)?;
    let t_fill = Instant::now();
    remo.fill_ahead()?;
    let fill_s = t_fill.elapsed().as_secs_f64();
    let conf = measure(&model, &mut remo, &a)?;
    let final_stats = remo.remo_report().ok_or_else(|| anyhow::anyhow!("the confidential backend has no ReMO report"))?;
    drop(remo);

    let worker_prefill = worker_online_s(&conf, 0, 1)?;
    let worker_decode = worker_online_s(&conf, 2, 3)?;

    // Pad refill cost per position: each op's batch time per usable pad, summed.
    let batches = final_stats.batches as f64;
    let refill_per_token_s: f64 = final_stats
        .ops
        .iter()
        .map(|o| {
            let made = (o.batches * o.usable_per_batch as u64) as f64;
            if made > 0.0 {
                o.refill_ms / 1e3 / made
            } else {
                0.0
            }
        })
        .sum();

    let row = |name: &str, steps: f64, total: f64, t: &StepTimings, (online_s, verify_s): (f64, f64), worker_s: f64, plain_total: f64| {
        let masking = (t.linear_s - online_s).max(0.0);
        // The answer is unmasked and checked inside the round trip.
        let transport = (online_s - worker_s - verify_s).max(0.0);
        let with_refill = total + refill_per_token_s * if name.starts_with("prefill") { a.prefill as f64 } else { steps };
        format!(
            "| {name} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.1} |\n",
            tps(name, &a, plain_total, steps),
            tps(name, &a, total, steps),
            plain_total / total,
            plain_total / with_refill,
            1e3 * t.cvm_s / steps,
            1e3 * masking / steps,
            1e3 * verify_s / steps,
            1e3 * transport / steps,
            1e3 * worker_s / steps,
            1e3 * refill_per_token_s * if name.starts_with("prefill") { a.prefill as f64 } else { 1.0 },
        )
    };
    let online = |m: &Measured, from: usize, to: usize| {
        let busy = m.stats[to].link.per_kind.online.busy_s - m.stats[from].link.per_kind.online.busy_s;
        (busy, m.stats[to].online_checks_s() - m.stats[from].online_checks_s())
    };
    let mut table = String::from(
        "| phase | plain tok/s | confidential tok/s | ratio (pads ready) | ratio (refill amortized) | CVM compute ms/step | masking ms/step | answer checks ms/step | transport ms/step | worker compute ms/step | pad refill ms/step (amortized) |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    table.push_str(&row(
        &format!("prefill {}", a.prefill),
        1.0,
        conf.prefill_s,
        &conf.prefill_t,
        online(&conf, 0, 1),
        worker_prefill,
        plain.prefill_s,
    ));
    table.push_str(&row(
        "decode batch 1",
        a.decode_steps as f64,
        conf.decode_s,
        &conf.decode_t,
        online(&conf, 2, 3),
        worker_decode,
        plain.decode_s,
    ));
    let notes = format!(
        "Weights {dtype_name}; confidential = ReMO κ=1e4 exact f64 mode, worker process over the shared-memory ring (worker backend auto: CUDA where a GPU is present, else the CPUs it shares with the CVM). \
Pools are filled before each phase (initial fill {fill_s:.1}s for {batches:.0} pad batches); 'refill amortized' adds each position's share of pad-batch time \
({:.2} ms per position, CVM mixing + worker GEMM; a batch takes {:.1} ms, {:.0} % of it in the worker call; CVM side per batch: \
{:.1} ms drawing R, {:.1} ms mixing, {:.1} ms unmixing, {:.1} ms keeping). Worker compute is the worker's own busy time on the online calls (it reports it when pinged); transport = online round trip − worker compute − answer checks \
(it includes writing the masked rows into the frame and unmasking the answer from it); \
masking = linear time − online round trip (it includes pad batches made synchronously on the critical path: \
{} during prefill, {} during decode; {} and {} rows scaled down to the energy budget). Plain CVM compute {:.2} ms/step (decode). \
Answer verification (DESIGN §3): online answers are checked row by row as they are unmasked, inside the round trip (their own column); pad batches are checked during refill \
({:.1} ms per batch, in the refill figure), and each op's reference is derived once per session from its first batch ({:.0} ms in all, in the initial fill).",
        refill_per_token_s * 1e3,
        final_stats.refill_ms / batches.max(1.0),
        100.0 * final_stats.worker_ms / final_stats.refill_ms.max(1e-9),
        final_stats.refill_phases_ms.draw / batches.max(1.0),
        final_stats.refill_phases_ms.mix / batches.max(1.0),
        final_stats.refill_phases_ms.unmix / batches.max(1.0),
        final_stats.refill_phases_ms.keep / batches.max(1.0),
        conf.stats[1].batches() - conf.stats[0].batches(),
        conf.stats[3].batches() - conf.stats[2].batches(),
        conf.stats[1].rescaled() - conf.stats[0].rescaled(),
        conf.stats[3].rescaled() - conf.stats[2].rescaled(),
        1e3 * plain.decode_t.cvm_s / a.decode_steps as f64,
        (final_stats.checks.time - final_stats.checks.reference_time - final_stats.checks.online_time).as_secs_f64() * 1e3 / batches.max(1.0),
        final_stats.checks.reference_time.as_secs_f64() * 1e3,
        dtype_name = dtype.name()
    );
    println!("\n{table}\n{notes}");
    if a.record {
        crate::machine::append_results("Confidential vs plain, time split (`bench split`)", &format!("{table}\n{notes}\n"))?;
    }
    Ok(())
}

fn tps(name: &str, a: &Args, total: f64, steps: f64) -> f64 {
    if name.starts_with("prefill") {
        a.prefill as f64 / total
    } else {
        steps / total
    }
}
