//! Each attack on small synthetic recordings whose answer is known: a
//! random dictionary (V = 3000, d = 64, anisotropic channels like real
//! embeddings), Zipf-like token streams with repeats, every scheme.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use talaria_models::ModelConfig;

use super::chosen_pads::ChosenPads;
use super::complement::ComplementProjection;
use super::dict_view::DictView;
use super::likelihood::{DecodeMode, SequentialDecoding};
use super::nearest::{Metric, NearestNeighbour};
use super::omp_dict::OmpDictionary;
use super::omp_frame::OmpFrame;
use super::pad_gram::PadGram;
use super::pad_ica::PadIca;
use super::pad_structure::PadStructure;
use super::span::SpanMembership;
use super::{Attack, Evidence};
use crate::privacy::candidates::Layer0Dictionary;
use crate::privacy::score::score;
use crate::privacy::steps::group_steps;
use crate::privacy::synth::scheme::Scheme;
use crate::privacy::synth::simulate::{simulate, SimInput};
use crate::privacy::synth::Setting;
use crate::privacy::tokens::{SequenceTokens, TokensFile};

const V: usize = 3000;
const D: usize = 64;

fn config() -> ModelConfig {
    ModelConfig { max_position_embeddings: 256, ..ModelConfig::llama(V, D, 128, 1, 1, 1) }
}

struct World {
    dict: Layer0Dictionary,
    scales: Vec<f64>,
    sequences: Vec<SequenceTokens>,
}

fn world() -> World {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // A few loud channels, as in real embeddings.
    let emb: Vec<f32> = (0..V * D).map(|i| rng.sample::<f32, _>(StandardNormal) * if i % D < 4 { 4.0 } else { 1.0 }).collect();
    let gain: Vec<f32> = (0..D).map(|c| 0.5 + (c % 7) as f32 / 7.0).collect();
    let dict = Layer0Dictionary::from_embedding(&emb, &gain, V, D, 1e-5).unwrap();
    let zipf = |rng: &mut ChaCha8Rng| ((V as f64).powf(rng.random::<f64>()) as usize).min(V - 1) as u32;
    // Sequence 0 is the worker's own request (chosen plaintext), unscored.
    let sequences: Vec<SequenceTokens> = (0..6)
        .map(|i| SequenceTokens { tokens: (0..30).map(|_| zipf(&mut rng)).collect(), prompt_len: 12, bos: false, attacker: i == 0 })
        .collect();
    let calib: Vec<u32> = (0..400).map(|_| zipf(&mut rng)).collect();
    let scales = (0..D)
        .map(|c| (calib.iter().map(|&t| (dict.rows.row(t as usize)[c] as f64).powi(2)).sum::<f64>() / calib.len() as f64).sqrt())
        .collect();
    World { dict, scales, sequences }
}

/// Top-1 of `attack` on `scheme` (None when it does not apply).
fn top1(w: &mut World, scheme: Scheme, kappa: f64, setting: Setting, attack: &dyn Attack) -> Option<f64> {
    let tokens = setting.tokens_file(w.sequences.clone());
    let cfg = config();
    let input = SimInput { config: &cfg, dict: &w.dict.rows, scales: &w.scales };
    let (rec, sources) = simulate(scheme, kappa, &tokens, &input, 5).unwrap();
    let tokens = TokensFile { row_sources: Some(sources), ..tokens };
    let steps = group_steps(&rec, &tokens).unwrap();
    let mut ev = Evidence { rec: &rec, steps: &steps, view: None };
    ev.view = DictView::build(&ev, &w.dict);
    let out = attack.run(&ev, &mut w.dict).unwrap()?;
    Some(score(&tokens, &steps, &out.guesses).top1)
}

fn all_attacks() -> Vec<Box<dyn Attack>> {
    vec![
        Box::new(NearestNeighbour { metric: Metric::Cosine }),
        Box::new(NearestNeighbour { metric: Metric::L2 }),
        Box::new(SpanMembership),
        Box::new(SequentialDecoding { mode: DecodeMode::Exhaustive, rerank: 8 }),
        Box::new(OmpDictionary { screen: 16, max_atoms: 8 }),
        Box::new(OmpFrame { max_atoms: 8 }),
        Box::new(ComplementProjection { iterations: 3 }),
        Box::new(PadGram),
        Box::new(PadIca { components: 32, max_iter: 50, seed: 1 }),
        Box::new(PadStructure),
        Box::new(ChosenPads),
    ]
}

#[test]
fn plain_and_permuted_rows_fall_to_nearest_neighbour_and_likelihood() {
    let mut w = world();
    for setting in [Setting::DecodeB1, Setting::Prefill] {
        for scheme in [Scheme::Plain, Scheme::Permute] {
            assert_eq!(
                top1(&mut w, scheme, 0.0, setting, &NearestNeighbour { metric: Metric::Cosine }),
                Some(1.0),
                "{scheme:?} {setting:?}"
            );
            assert_eq!(top1(&mut w, scheme, 0.0, setting, &SequentialDecoding { mode: DecodeMode::Exhaustive, rerank: 8 }), Some(1.0));
        }
    }
    assert_eq!(top1(&mut w, Scheme::Permute, 0.0, Setting::Prefill, &SpanMembership), Some(1.0));
}

#[test]
fn row_mixing_falls_to_span_membership_but_not_to_nearest_neighbour() {
    let mut w = world();
    let span = top1(&mut w, Scheme::Mix, 0.0, Setting::Prefill, &SpanMembership).unwrap();
    assert!(span >= 0.95, "span on mixed prefill calls: {span}");
    assert_eq!(top1(&mut w, Scheme::Mix, 0.0, Setting::DecodeB1, &SpanMembership), Some(1.0));
    let nn = top1(&mut w, Scheme::Mix, 0.0, Setting::Prefill, &NearestNeighbour { metric: Metric::Cosine }).unwrap();
    assert!(nn < 0.8, "a dense mixing should defeat plain matching: {nn}");
}

#[test]
fn low_rank_noise_falls_to_complement_projection() {
    let mut w = world();
    for setting in [Setting::DecodeB1, Setting::Prefill] {
        let c = top1(&mut w, Scheme::LowRank, 1e4, setting, &ComplementProjection { iterations: 3 }).unwrap();
        assert!(c >= 0.95, "complement on low-rank noise: {c}");
        let nn = top1(&mut w, Scheme::LowRank, 1e4, setting, &NearestNeighbour { metric: Metric::Cosine }).unwrap();
        assert!(nn < 0.05, "noise this large hides rows from plain matching: {nn}");
    }
    // No low-rank structure in ReMO: the attack does not apply.
    assert_eq!(top1(&mut w, Scheme::REMO, 1e4, Setting::DecodeB1, &ComplementProjection { iterations: 3 }), None);
}

#[test]
fn crippled_pad_mixing_is_broken_by_the_pad_batch_tests() {
    let mut w = world();
    assert_eq!(top1(&mut w, Scheme::Remo { rounds: 0 }, 1e4, Setting::Prefill, &PadGram), Some(1.0));
    assert_eq!(top1(&mut w, Scheme::Remo { rounds: 1 }, 1e4, Setting::Prefill, &PadStructure), Some(1.0));
    let full = top1(&mut w, Scheme::REMO, 1e4, Setting::Prefill, &PadStructure).unwrap();
    assert!(full <= 0.02, "three rounds resist the structure test: {full}");
}

#[test]
fn a_reused_pad_falls_to_the_workers_own_request() {
    let mut w = world();
    for setting in [Setting::DecodeB1, Setting::Prefill] {
        assert_eq!(top1(&mut w, Scheme::StaticPad, 1e4, setting, &ChosenPads), Some(1.0), "{setting:?}");
        let nn = top1(&mut w, Scheme::StaticPad, 1e4, setting, &NearestNeighbour { metric: Metric::Cosine }).unwrap();
        assert!(nn < 0.05, "without its own rows the pad hides the tokens: {nn}");
    }
    // Without an own request there is nothing to start from.
    let mut alone = world();
    alone.sequences.iter_mut().for_each(|s| s.attacker = false);
    assert_eq!(top1(&mut alone, Scheme::StaticPad, 1e4, Setting::Prefill, &ChosenPads), None);
}

#[test]
fn remo_at_kappa_1e4_leaves_every_attack_at_chance_and_kappa_1_does_not() {
    let mut w = world();
    for setting in [Setting::DecodeB1, Setting::Prefill] {
        for a in all_attacks() {
            if let Some(acc) = top1(&mut w, Scheme::REMO, 1e4, setting, a.as_ref()) {
                // 150 scored positions: two lucky hits at most (chance is 1/3000).
                assert!(acc <= 2.0 / 150.0 + 1e-9, "{} on ReMO κ=1e4 ({setting:?}): {acc}", a.name());
            }
        }
    }
    let weak = top1(&mut w, Scheme::REMO, 1.0, Setting::DecodeB1, &SequentialDecoding { mode: DecodeMode::Exhaustive, rerank: 8 }).unwrap();
    assert!(weak >= 0.8, "κ = 1 hides little: {weak}");
}

#[test]
fn synthetic_recording_round_trips_through_the_worker_format() {
    let w = world();
    let tokens = Setting::Prefill.tokens_file(w.sequences.clone());
    let cfg = config();
    let input = SimInput { config: &cfg, dict: &w.dict.rows, scales: &w.scales };
    let (rec, sources) = simulate(Scheme::REMO, 100.0, &tokens, &input, 9).unwrap();
    let tokens = TokensFile { row_sources: Some(sources), ..tokens };
    let dir = std::env::temp_dir().join(format!("talaria-privacy-rt-{}", std::process::id()));
    rec.save(&dir).unwrap();
    tokens.save(&dir.join("tokens.json")).unwrap();
    let (back, tback) = crate::privacy::runner::load_recorded(&dir, &w.dict).unwrap();
    assert_eq!(tback, tokens);
    assert_eq!(back.calls.len(), rec.calls.len());
    assert!(back.calls.iter().zip(&rec.calls).all(|(a, b)| a.data == b.data && a.kind == b.kind && a.id == b.id));
    assert_eq!(back.manifest.kappa(), 100.0);
    // serde_json's default float parser may be one ulp off.
    let scales = back.manifest.channel_scales(talaria_models::OpId::new(0, talaria_models::Op::Qkv)).unwrap();
    assert!(scales.iter().zip(&w.scales).all(|(a, b)| (a - b).abs() <= 1e-15 * b.abs()) && scales.len() == D);
    std::fs::remove_dir_all(&dir).unwrap();
}
