//! The scheme matrix: every attack on every recording, scored. Recordings
//! come from disk (a worker's `--record` folder with tokens.json) or from
//! the synthetic simulator.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::attack_row::AttackRow;
use super::attacks::chosen_pads::ChosenPads;
use super::attacks::complement::ComplementProjection;
use super::attacks::likelihood::{DecodeMode, SequentialDecoding};
use super::attacks::nearest::{Metric, NearestNeighbour};
use super::attacks::omp_dict::OmpDictionary;
use super::attacks::omp_frame::OmpFrame;
use super::attacks::pad_gram::PadGram;
use super::attacks::pad_ica::PadIca;
use super::attacks::pad_structure::PadStructure;
use super::attacks::span::SpanMembership;
use super::attacks::{Attack, Evidence};
use super::candidates::Candidates;
use super::gate;
use super::null_twin::null_twin;
use super::recording::{op_key, Call, CallKind, Recording};
use super::score::{majority_baseline, score};
use super::steps::group_steps;
use super::tokens::TokensFile;

/// Null twins per gated recording (their mean is the floor).
const NULL_TWINS: u64 = 3;

/// Knobs of the attacks (quick mode shrinks the expensive ones).
#[derive(Clone, Debug, Serialize)]
pub struct AttackOptions {
    pub omp_screen: usize,
    pub omp_atoms: usize,
    pub complement_iterations: usize,
    pub ica_components: usize,
    pub ica_iterations: usize,
    pub rerank: usize,
    pub fast_top_k: usize,
    pub seed: u64,
}

pub fn attacks(o: &AttackOptions) -> Vec<Box<dyn Attack>> {
    vec![
        Box::new(NearestNeighbour { metric: Metric::Cosine }),
        Box::new(NearestNeighbour { metric: Metric::L2 }),
        Box::new(SpanMembership),
        Box::new(SequentialDecoding { mode: DecodeMode::Exhaustive, rerank: o.rerank }),
        Box::new(SequentialDecoding { mode: DecodeMode::Fast { top_k: o.fast_top_k }, rerank: o.rerank }),
        Box::new(OmpDictionary { screen: o.omp_screen, max_atoms: o.omp_atoms }),
        Box::new(OmpFrame { max_atoms: o.omp_atoms }),
        Box::new(ComplementProjection { iterations: o.complement_iterations }),
        Box::new(PadGram),
        Box::new(PadIca { components: o.ica_components, max_iter: o.ica_iterations, seed: o.seed }),
        Box::new(PadStructure),
        Box::new(ChosenPads),
    ]
}

/// What a recording is, for the report.
#[derive(Clone, Debug)]
pub struct RecordingLabel {
    pub scheme: String,
    pub kappa: Option<f64>,
    pub setting: String,
    pub weak: bool,
    /// Null twins even off the default κ (`--null-twins`).
    pub null_twins: bool,
}

/// Runs every applicable attack on one recording.
pub fn attack_recording(
    rec: &Recording,
    tokens: &TokensFile,
    cands: &mut dyn Candidates,
    list: &[Box<dyn Attack>],
    label: &RecordingLabel,
) -> Result<Vec<AttackRow>> {
    let steps = group_steps(rec, tokens)?;
    let mut ev = Evidence { rec, steps: &steps, view: None };
    ev.view = super::attacks::dict_view::DictView::build(&ev, cands);
    // The gated recordings (and any with `null_twins`) also get null twins:
    // the floor each attack reaches from its priors alone, averaged over a
    // few pad draws (which frequent tokens noise rows land on varies from
    // draw to draw).
    let gated = gate::at_default_kappa(&label.scheme, label.kappa) || (label.null_twins && label.kappa.is_some());
    let twins: Vec<Recording> = if gated { (0..NULL_TWINS).map(|i| null_twin(rec, 0x6e75_6c6c + i)).collect() } else { Vec::new() };
    let mut null_evs: Vec<Evidence> = twins.iter().map(|t| Evidence { rec: t, steps: &steps, view: None }).collect();
    for ev in null_evs.iter_mut() {
        ev.view = super::attacks::dict_view::DictView::build(ev, cands);
    }
    let mut rows = Vec::new();
    for a in list {
        let t0 = Instant::now();
        let what = || format!("attack {} on {} {}", a.name(), label.scheme, label.setting);
        let Some(out) = a.run(&ev, cands).with_context(what)? else {
            continue;
        };
        let s = score(tokens, &steps, &out.guesses);
        let seconds = t0.elapsed().as_secs_f64();
        let mut null_scores = Vec::new();
        for nev in &null_evs {
            if let Some(o) = a.run(nev, cands).with_context(|| format!("{} (null twin)", what()))? {
                null_scores.push(score(tokens, &steps, &o.guesses).top1);
            }
        }
        let null_top1 = (!null_scores.is_empty()).then(|| null_scores.iter().sum::<f64>() / null_scores.len() as f64);
        eprintln!(
            "  {:<12} {:<10} κ={:<8} {:<16} top-1 {:6.2}%  bag {:6.2}%  {:6.1}s  {}{}",
            label.scheme,
            label.setting,
            label.kappa.map_or("-".into(), |k| format!("{k}")),
            a.name(),
            100.0 * s.top1,
            100.0 * s.bag_recall,
            seconds,
            null_top1.map_or(String::new(), |n| format!("(null twin {:.2}%) ", 100.0 * n)),
            out.notes
        );
        rows.push(AttackRow {
            scheme: label.scheme.clone(),
            kappa: label.kappa,
            setting: label.setting.clone(),
            attack: a.name(),
            assumptions: a.assumptions().iter().map(|x| x.short()).collect(),
            uses_prior: a.uses_prior(),
            weak_scheme: label.weak,
            top1: s.top1,
            null_top1,
            top1_prompt: s.top1_prompt,
            top1_response: s.top1_response,
            bag_recall: s.bag_recall,
            positions: s.positions,
            seconds,
            notes: out.notes,
        });
    }
    Ok(rows)
}

/// No-skill baselines of one setting's tokens.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    pub setting: String,
    pub positions: usize,
    pub chance: f64,
    pub majority: f64,
}

pub fn baseline(setting: &str, tokens: &TokensFile, vocab: usize) -> Baseline {
    let positions =
        tokens.sequences.iter().enumerate().map(|(s, q)| (0..q.tokens.len()).filter(|&p| tokens.is_scored((s, p))).count()).sum();
    Baseline { setting: setting.into(), positions, chance: 1.0 / vocab as f64, majority: majority_baseline(tokens) }
}

/// Loads a worker recording folder with its tokens.json, keeping the
/// calls the given candidates provider can use (plus step boundaries).
pub fn load_recorded(dir: &Path, cands: &dyn Candidates) -> Result<(Recording, TokensFile)> {
    let tokens = TokensFile::load(&dir.join("tokens.json"))?;
    let ctx = cands.contextual_ops();
    let mut rec = Recording::load(dir, |m| match m.op_id() {
        Ok(id) => cands.dictionary(id).is_some() || ctx.contains(&id) || (id.layer == 0 && id.op == talaria_models::Op::Qkv),
        Err(_) => false,
    })?;
    drop_public_calibration(&mut rec);
    Ok((rec, tokens))
}

/// A confidential session opens with the CVM's calibration pass: plain calls
/// on public text (`talaria_cvm::calibration::CALIBRATION_TEXTS`) that belong
/// to no request. They are not the client's tokens, so they are not scored;
/// but the worker served them, so it knows the channel scales the CVM drew
/// its pads from: the same public function of those rows' peaks. They go
/// into the manifest (where a worker-announced `channel_scales` would be)
/// unless it already has them.
fn drop_public_calibration(rec: &mut Recording) {
    if rec.manifest.remo["mode"].as_str() != Some("remo") {
        return;
    }
    let first_masked = rec.calls.iter().position(|c| c.kind != CallKind::Plain).unwrap_or(rec.calls.len());
    let calibration: Vec<Call> = rec.calls.drain(..first_masked).collect();
    if rec.manifest.remo.get("channel_scales").is_some() {
        return;
    }
    let mut peaks: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for call in &calibration {
        let peak = peaks.entry(op_key(call.id)).or_insert_with(|| vec![0.0; call.data.cols]);
        for row in call.data.data.chunks_exact(call.data.cols.max(1)) {
            peak.iter_mut().zip(row).for_each(|(p, &v)| *p = p.max(v.abs()));
        }
    }
    if peaks.is_empty() {
        return;
    }
    let scales: serde_json::Map<String, serde_json::Value> =
        peaks.into_iter().map(|(k, peak)| (k, serde_json::json!(talaria_cvm::calibration::scales_from_peaks(peak)))).collect();
    if let Some(remo) = rec.manifest.remo.as_object_mut() {
        remo.insert("channel_scales".into(), serde_json::Value::Object(scales));
        remo.insert("channel_scales_source".into(), "recomputed from the recorded public calibration pass".into());
    }
}
