//! The CI gate (docs/DESIGN.md §6): the suite only means something for ReMO if
//! its attacks break every weak scheme (best attack ≥ 95 % top-1 in every
//! setting), and ReMO at each mode's default κ (exact: 10⁴, fast: the fast
//! mode's) must leak nothing: no attack
//! above 0.5 % more than it reaches on the recording's null twin (the same
//! calls with the masked rows replaced by pure pads; 0 on the synthetic
//! matrix, where no attack gets anything from priors). The twin's floor
//! matters on real recordings: an attack following the model's own
//! continuations, or guessing one frequent token for every row of a
//! prefill call, scores a few ChatML tokens with no information at all.

use serde::Serialize;

use super::attack_row::AttackRow;

pub const WEAK_MIN_TOP1: f64 = 0.95;
pub const REMO_MAX_TOP1: f64 = 0.005;
pub const DEFAULT_KAPPA: f64 = 1e4;

/// Whether a recording is ReMO at its mode's default κ (`remo`: the exact
/// mode; `remo-fast`: f32 pads), the settings users get and the gate holds.
pub fn at_default_kappa(scheme: &str, kappa: Option<f64>) -> bool {
    let precision = match scheme {
        "remo" => talaria_kernels::Precision::F64,
        "remo-fast" => talaria_kernels::Precision::F32,
        _ => return false,
    };
    kappa == Some(talaria_remo::default_kappa(precision))
}

#[derive(Clone, Debug, Serialize)]
pub struct Gate {
    pub passed: bool,
    pub checked: usize,
    pub failures: Vec<String>,
}

pub fn evaluate(rows: &[AttackRow]) -> Gate {
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut groups: Vec<(String, String)> = rows.iter().filter(|r| r.weak_scheme).map(|r| (r.scheme.clone(), r.setting.clone())).collect();
    groups.sort();
    groups.dedup();
    for (scheme, setting) in groups {
        checked += 1;
        let best = rows
            .iter()
            .filter(|r| r.scheme == scheme && r.setting == setting)
            .max_by(|a, b| a.top1.total_cmp(&b.top1))
            .expect("group has rows");
        if best.top1 < WEAK_MIN_TOP1 {
            failures.push(format!(
                "weak scheme {scheme} ({setting}): best attack {} reaches only {:.2}% < {:.0}%",
                best.attack,
                100.0 * best.top1,
                100.0 * WEAK_MIN_TOP1
            ));
        }
    }
    for r in rows.iter().filter(|r| at_default_kappa(&r.scheme, r.kappa)) {
        checked += 1;
        let limit = r.null_top1.unwrap_or(0.0) + REMO_MAX_TOP1;
        if r.top1 > limit {
            failures.push(format!(
                "{} κ={:e} ({}): attack {} reaches {:.3}% > {:.3}%",
                r.scheme,
                r.kappa.unwrap_or(0.0),
                r.setting,
                r.attack,
                100.0 * r.top1,
                100.0 * limit
            ));
        }
    }
    if !rows.iter().any(|r| r.scheme == "remo" && r.kappa == Some(DEFAULT_KAPPA)) {
        failures.push("no ReMO κ=1e4 results to check".into());
    }
    Gate { passed: failures.is_empty(), checked, failures }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scheme: &str, kappa: Option<f64>, attack: &str, top1: f64, weak: bool) -> AttackRow {
        AttackRow {
            scheme: scheme.into(),
            kappa,
            setting: "prefill".into(),
            attack: attack.into(),
            assumptions: vec![],
            uses_prior: false,
            weak_scheme: weak,
            top1,
            null_top1: None,
            top1_prompt: top1,
            top1_response: top1,
            bag_recall: top1,
            positions: 100,
            seconds: 0.0,
            notes: String::new(),
        }
    }

    #[test]
    fn fails_on_an_unbroken_weak_scheme_or_a_leaky_remo() {
        let ok = vec![row("plain", None, "nn", 1.0, true), row("plain", None, "span", 0.2, true), row("remo", Some(1e4), "nn", 0.0, false)];
        assert!(evaluate(&ok).passed);
        let weak_fails = vec![row("mix", None, "nn", 0.5, true), row("remo", Some(1e4), "nn", 0.0, false)];
        assert!(!evaluate(&weak_fails).passed);
        let leaky = vec![row("plain", None, "nn", 1.0, true), row("remo", Some(1e4), "seq", 0.02, false)];
        let g = evaluate(&leaky);
        assert!(!g.passed && g.failures[0].contains("seq"));
        let missing = vec![row("plain", None, "nn", 1.0, true)];
        assert!(!evaluate(&missing).passed);
        // The null twin's floor is allowed, and only it.
        let mut floor = row("remo", Some(1e4), "seq", 0.02, false);
        floor.null_top1 = Some(0.018);
        assert!(evaluate(&[row("plain", None, "nn", 1.0, true), floor.clone()]).passed);
        floor.null_top1 = Some(0.01);
        assert!(!evaluate(&[row("plain", None, "nn", 1.0, true), floor]).passed);
    }
}
