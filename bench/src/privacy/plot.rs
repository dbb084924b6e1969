//! privacy.svg: ReMO's top-1 accuracy against κ (log axis) per setting and
//! attack, beside the leakage bound in bits per position (log–log) with
//! log₂(V), the bits a token carries.

use anyhow::Result;

use super::report::SuiteReport;
use crate::plot::lines::{side_by_side, Axis, Guide, Line, LineChart};
use crate::plot::style::{color, MUTED};

pub fn privacy_svg(r: &SuiteReport) -> Result<String> {
    let kappa_axis = Axis::log("κ (log scale)", kappa_range(r));
    side_by_side(&[accuracy(r, kappa_axis.clone()), leakage(r, kappa_axis)], (980, 420))
}

/// The swept κ, one decade either side of a single value.
fn kappa_range(r: &SuiteReport) -> (f64, f64) {
    let kappas = r.rows.iter().filter(|x| x.scheme == "remo").filter_map(|x| x.kappa);
    match kappas.fold(None, |acc: Option<(f64, f64)>, k| Some(acc.map_or((k, k), |(lo, hi)| (lo.min(k), hi.max(k))))) {
        Some((lo, hi)) if hi > lo => (lo, hi),
        Some((k, _)) => (k / 10.0, k * 10.0),
        None => (1.0, 1e4),
    }
}

/// One colour per attack, solid for decode-b1 and dashed for the other
/// settings; the legend names each attack once.
fn accuracy(r: &SuiteReport, x: Axis) -> LineChart {
    let remo = || r.rows.iter().filter(|x| x.scheme == "remo" && x.kappa.is_some());
    let mut attacks: Vec<&str> = remo().map(|x| x.attack.as_str()).collect();
    attacks.sort();
    attacks.dedup();
    let mut lines = Vec::new();
    for (i, attack) in attacks.iter().enumerate() {
        let mut settings: Vec<&str> = remo().filter(|x| x.attack == *attack).map(|x| x.setting.as_str()).collect();
        settings.sort_by_key(|s| (*s != "decode-b1", *s));
        settings.dedup();
        for (j, setting) in settings.iter().enumerate() {
            let mut points: Vec<(f64, f64)> =
                remo().filter(|x| x.attack == *attack && x.setting == *setting).map(|x| (x.kappa.unwrap_or(1.0), 100.0 * x.top1)).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let name = (j == 0).then(|| attack.to_string());
            lines.push(Line { name, points, color: color(i), dashed: *setting != "decode-b1", markers: true });
        }
    }
    let guides = r
        .baselines
        .iter()
        .map(|b| b.majority)
        .reduce(f64::max)
        .map(|b| Guide { y: 100.0 * b, label: "most frequent token".into(), color: MUTED })
        .into_iter()
        .collect();
    LineChart {
        title: "ReMO: top-1 token accuracy of each attack".into(),
        x,
        y: Axis { range: Some((0.0, 100.0)), ..Axis::linear("top-1 accuracy (%)") },
        lines,
        guides,
        note: Some("solid: decode-b1, dashed: prefill".into()),
    }
}

/// The bound over the recorded ops and over every op of the model, with
/// the bits of one token for scale.
fn leakage(r: &SuiteReport, x: Axis) -> LineChart {
    let token_bits = (r.vocab.max(2) as f64).log2();
    let recorded: Vec<(f64, f64)> = r.leakage.iter().map(|l| (l.kappa, l.bits_recorded_ops)).filter(|p| p.1 > 0.0).collect();
    let all: Vec<(f64, f64)> = r.leakage.iter().map(|l| (l.kappa, l.bits_all_ops)).filter(|p| p.1 > 0.0).collect();
    // Whole decades around every value shown.
    let decade = |v: f64| v.log10();
    let lo = recorded.iter().chain(&all).map(|p| decade(p.1)).fold(decade(token_bits), f64::min).floor();
    let hi = recorded.iter().chain(&all).map(|p| decade(p.1)).fold(decade(token_bits), f64::max).ceil();
    LineChart {
        title: "Leakage bound per position".into(),
        x,
        y: Axis::log("bits (log scale)", (10f64.powf(lo), 10f64.powf(hi))),
        lines: vec![
            Line { markers: true, ..Line::new(&format!("ops recorded ({})", r.recorded_ops), color(0), recorded) },
            Line { markers: true, dashed: true, ..Line::new("all ops of the model", color(1), all) },
        ],
        guides: vec![Guide { y: token_bits, label: format!("log₂ V = {token_bits:.1} bits"), color: color(2) }],
        note: None,
    }
}
