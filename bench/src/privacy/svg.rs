//! A hand-written SVG: ReMO's top-1 accuracy against κ (log axis) per
//! setting and attack, beside the leakage bound in bits per position
//! (log–log) with log₂(V), the bits a token carries.

use std::fmt::Write as _;

use super::report::SuiteReport;

const W: f64 = 980.0;
const H: f64 = 420.0;
const COLORS: [&str; 12] =
    ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#000000", "#aec7e8"];

struct Panel {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    /// log10 κ range.
    lx: (f64, f64),
    /// y range (value space of the panel).
    ly: (f64, f64),
}

impl Panel {
    fn px(&self, log_k: f64) -> f64 {
        self.x0 + (log_k - self.lx.0) / (self.lx.1 - self.lx.0).max(1e-9) * self.w
    }
    fn py(&self, v: f64) -> f64 {
        self.y0 + self.h - (v - self.ly.0) / (self.ly.1 - self.ly.0).max(1e-9) * self.h
    }
    fn frame(&self, s: &mut String, title: &str, ylabel: &str) {
        let _ =
            writeln!(s, r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>"##, self.x0, self.y0, self.w, self.h);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="14" text-anchor="middle">{title}</text>"##,
            self.x0 + self.w / 2.0,
            self.y0 - 10.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle">κ (log scale)</text>"##,
            self.x0 + self.w / 2.0,
            self.y0 + self.h + 36.0
        );
        let _ = writeln!(
            s,
            r##"<text transform="translate({},{}) rotate(-90)" font-size="12" text-anchor="middle">{ylabel}</text>"##,
            self.x0 - 48.0,
            self.y0 + self.h / 2.0
        );
        let (a, b) = (self.lx.0.floor() as i32, self.lx.1.ceil() as i32);
        for e in a..=b {
            let x = self.px(e as f64);
            let _ = writeln!(
                s,
                r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" font-size="11" text-anchor="middle">1e{e}</text>"##,
                self.y0,
                self.y0 + self.h,
                self.y0 + self.h + 16.0
            );
        }
    }
}

fn polyline(s: &mut String, pts: &[(f64, f64)], color: &str, dash: bool) {
    if pts.is_empty() {
        return;
    }
    let p: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let d = if dash { r#" stroke-dasharray="6,4""# } else { "" };
    let _ = writeln!(s, r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{d}/>"#, p.join(" "));
    for (x, y) in pts {
        let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#);
    }
}

pub fn plot(r: &SuiteReport) -> String {
    let mut kappas: Vec<f64> = r.rows.iter().filter(|x| x.scheme == "remo").filter_map(|x| x.kappa).collect();
    kappas.sort_by(f64::total_cmp);
    kappas.dedup();
    let lx = match (kappas.first(), kappas.last()) {
        (Some(a), Some(b)) if b > a => (a.log10(), b.log10()),
        (Some(a), _) => (a.log10() - 1.0, a.log10() + 1.0),
        _ => (0.0, 4.0),
    };
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">"#);
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);

    // Left: accuracy of each attack on ReMO against κ.
    let left = Panel { x0: 70.0, y0: 40.0, w: 380.0, h: 300.0, lx, ly: (0.0, 100.0) };
    left.frame(&mut s, "ReMO: top-1 token accuracy of each attack", "top-1 accuracy (%)");
    for v in [0.0, 25.0, 50.0, 75.0, 100.0] {
        let y = left.py(v);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" font-size="11" text-anchor="end">{v}</text>"##,
            left.x0,
            left.x0 + left.w,
            left.x0 - 6.0,
            y + 4.0
        );
    }
    let mut series: Vec<(String, String)> =
        r.rows.iter().filter(|x| x.scheme == "remo").map(|x| (x.attack.clone(), x.setting.clone())).collect();
    series.sort();
    series.dedup();
    let mut legend_y = left.y0 + 10.0;
    let attacks: Vec<String> = {
        let mut a: Vec<String> = series.iter().map(|(a, _)| a.clone()).collect();
        a.dedup();
        a
    };
    for (attack, setting) in &series {
        let ci = attacks.iter().position(|a| a == attack).unwrap_or(0) % COLORS.len();
        let dash = setting != "decode-b1";
        let mut pts: Vec<(f64, f64)> = r
            .rows
            .iter()
            .filter(|x| x.scheme == "remo" && &x.attack == attack && &x.setting == setting)
            .filter_map(|x| x.kappa.map(|k| (left.px(k.log10()), left.py(100.0 * x.top1))))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        polyline(&mut s, &pts, COLORS[ci], dash);
    }
    for (i, a) in attacks.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}" font-size="10">{a}</text>"#,
            left.x0 + left.w - 120.0,
            left.x0 + left.w - 100.0,
            left.x0 + left.w - 96.0,
            legend_y + 3.0
        );
        legend_y += 13.0;
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" font-size="10">solid: decode-b1, dashed: prefill</text>"#, left.x0, left.y0 + left.h + 56.0);
    if let Some(b) = r.baselines.iter().map(|b| b.majority).reduce(f64::max) {
        let y = left.py(100.0 * b);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#999" stroke-dasharray="2,3"/><text x="{}" y="{}" font-size="10" fill="#666">most frequent token</text>"##,
            left.x0,
            left.x0 + left.w,
            left.x0 + 6.0,
            y - 4.0
        );
    }

    // Right: the bound, log–log.
    let bits: Vec<(f64, f64, f64)> =
        r.leakage.iter().map(|l| (l.kappa.log10(), l.bits_recorded_ops.max(1e-300).log10(), l.bits_all_ops.max(1e-300).log10())).collect();
    let token_bits = (r.vocab.max(2) as f64).log2().log10();
    let lo = bits.iter().map(|b| b.1).fold(token_bits, f64::min).floor();
    let hi = bits.iter().map(|b| b.2).fold(token_bits, f64::max).ceil();
    let right = Panel { x0: 560.0, y0: 40.0, w: 380.0, h: 300.0, lx, ly: (lo, hi) };
    right.frame(&mut s, "Leakage bound per position", "bits (log scale)");
    let step = ((hi - lo) / 8.0).ceil().max(1.0) as i32;
    let mut e = lo as i32;
    while e <= hi as i32 {
        let y = right.py(e as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" font-size="11" text-anchor="end">1e{e}</text>"##,
            right.x0,
            right.x0 + right.w,
            right.x0 - 6.0,
            y + 4.0
        );
        e += step;
    }
    let rec: Vec<(f64, f64)> = bits.iter().map(|b| (right.px(b.0), right.py(b.1))).collect();
    let all: Vec<(f64, f64)> = bits.iter().map(|b| (right.px(b.0), right.py(b.2))).collect();
    polyline(&mut s, &rec, COLORS[0], false);
    polyline(&mut s, &all, COLORS[1], true);
    let ty = right.py(token_bits);
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{ty}" x2="{}" y2="{ty}" stroke="#2ca02c" stroke-dasharray="2,3"/><text x="{}" y="{}" font-size="10" fill="#2ca02c">log₂ V = {:.1} bits</text>"##,
        right.x0,
        right.x0 + right.w,
        right.x0 + 6.0,
        ty - 4.0,
        (r.vocab as f64).log2()
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="10" fill="{}">ops recorded ({})</text>"#,
        right.x0 + right.w - 170.0,
        right.y0 + 14.0,
        COLORS[0],
        r.recorded_ops
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" font-size="10" fill="{}">all ops of the model (dashed)</text>"#,
        right.x0 + right.w - 170.0,
        right.y0 + 28.0,
        COLORS[1]
    );
    s.push_str("</svg>\n");
    s
}
