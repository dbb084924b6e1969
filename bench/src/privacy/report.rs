//! The suite's outputs: a markdown report (summary and full matrix), the
//! JSON of every row, and the SVG plot.

use std::fmt::Write as _;

use serde::Serialize;

use super::attack_row::AttackRow;
use super::gate::Gate;
use super::runner::{AttackOptions, Baseline};

/// The information-theoretic bound per position: `Σ_calls d_in·½·log₂(1+1/κ²)`.
pub fn leakage_bits(kappa: f64, d_ins: &[usize]) -> f64 {
    d_ins.iter().map(|&d| d as f64 * 0.5 * (1.0 / (kappa * kappa)).ln_1p() / std::f64::consts::LN_2).sum()
}

#[derive(Clone, Debug, Serialize)]
pub struct LeakageRow {
    pub kappa: f64,
    /// Over the ops in the recordings (layer-0 qkv for synthetic ones).
    pub bits_recorded_ops: f64,
    /// Over every outsourced op of the model.
    pub bits_all_ops: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SuiteReport {
    pub mode: String,
    pub model: String,
    pub vocab: usize,
    pub candidates: String,
    pub recorded_ops: String,
    pub sequences: usize,
    pub options: AttackOptions,
    pub baselines: Vec<Baseline>,
    pub rows: Vec<AttackRow>,
    pub leakage: Vec<LeakageRow>,
    pub gate: Gate,
    pub seconds: f64,
}

fn pct(v: f64) -> String {
    format!("{:.2}%", 100.0 * v)
}

fn kappa_cell(k: Option<f64>) -> String {
    k.map_or("–".into(), |k| format!("{k}"))
}

pub fn markdown(r: &SuiteReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Privacy attack suite ({})\n", r.mode);
    let _ = writeln!(
        s,
        "Model {}; candidates: {}; ops attacked: {}; {} sequences; {:.0} s in all.\n",
        r.model, r.candidates, r.recorded_ops, r.sequences, r.seconds
    );
    let _ = writeln!(s, "Top-1 is token accuracy over prompt and response positions (BOS excluded). A guess tied to an observed row is checked against that row's token (the row shuffle is known to the scorer, never to the attacks); a set test's guesses are matched to the call's tokens as a multiset (a layer-0 call carries no order). Bag recall: distinct true tokens of a sequence that appear among its guesses. Attacks that do not apply to a recording (no pad batches, no low-rank gap, no model) have no row.\n");
    let _ = writeln!(s, "| setting | scored positions | chance (1/V) | most frequent token |\n|---|---|---|---|");
    for b in &r.baselines {
        let _ = writeln!(s, "| {} | {} | {:.4}% | {} |", b.setting, b.positions, 100.0 * b.chance, pct(b.majority));
    }
    let _ = writeln!(
        s,
        "\n## Best attack per scheme\n\n| scheme | κ | setting | best attack | top-1 | bag recall |\n|---|---|---|---|---|---|"
    );
    let mut keys: Vec<(String, Option<f64>, String)> = Vec::new();
    for row in &r.rows {
        let k = (row.scheme.clone(), row.kappa, row.setting.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (scheme, kappa, setting) in &keys {
        // The first listed (simplest) attack among those that tie.
        let best =
            r.rows.iter().filter(|x| &x.scheme == scheme && x.kappa == *kappa && &x.setting == setting).fold(None::<&AttackRow>, |b, x| {
                match b {
                    Some(b) if b.top1 >= x.top1 => Some(b),
                    _ => Some(x),
                }
            });
        if let Some(b) = best {
            let _ =
                writeln!(s, "| {scheme} | {} | {setting} | {} | {} | {} |", kappa_cell(*kappa), b.attack, pct(b.top1), pct(b.bag_recall));
        }
    }
    let _ = writeln!(s, "\n## Leakage bound (bits per position)\n\n| κ | recorded ops | all ops of the model |\n|---|---|---|");
    for l in &r.leakage {
        let _ = writeln!(s, "| {} | {:.3e} | {:.3e} |", l.kappa, l.bits_recorded_ops, l.bits_all_ops);
    }
    let _ = writeln!(s, "\nA token needs log₂(V) = {:.1} bits.\n", (r.vocab as f64).log2());
    let _ = writeln!(s, "## Gate: {}\n", if r.gate.passed { "passed" } else { "FAILED" });
    for f in &r.gate.failures {
        let _ = writeln!(s, "- {f}");
    }
    let _ = writeln!(s, "\n## Full matrix\n\nAssumptions: dict = layer-0 inputs are a public dictionary; sigma = public pad scales; model = runs the plain model; subspace = noise subspace fixed across calls; mixlaw = law of the secret mixing; pads = sees pad batches; butterfly = public form of M; rows = real rows per step; own = submits requests of its own and knows their tokens. Null twin: the same attack on the recording with every masked row replaced by a pure pad (ReMO at each mode's default κ, or every masked recording with --null-twins; mean of 3 pad draws): its floor without information.\n");
    let _ = writeln!(s, "| scheme | κ | setting | attack | assumptions | top-1 | null twin | prompt | response | bag recall | s | notes |\n|---|---|---|---|---|---|---|---|---|---|---|---|");
    for x in &r.rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            x.scheme,
            kappa_cell(x.kappa),
            x.setting,
            x.attack,
            x.assumptions.join(", "),
            pct(x.top1),
            x.null_top1.map_or("–".into(), pct),
            pct(x.top1_prompt),
            pct(x.top1_response),
            pct(x.bag_recall),
            x.seconds,
            x.notes.replace('|', "/")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leakage_bound_matches_the_formula() {
        assert!((leakage_bits(1.0, &[576]) - 288.0).abs() < 1e-9);
        let small = leakage_bits(1e4, &[576]);
        assert!((small - 576.0 * 0.5 * 1e-8 / std::f64::consts::LN_2).abs() < 1e-12);
    }
}
