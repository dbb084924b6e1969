//! Minimal SVG charts (no dependencies): panels of bars and a line chart.

use std::fmt::Write;

const COLORS: &[&str] = &["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"];

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A rounded-up axis maximum (1, 2 or 5 times a power of ten).
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * p).find(|&x| x >= v).unwrap_or(10.0 * p)
}

/// One panel: bars per series, each a solid value with an optional taller
/// light "whisker" value behind it (e.g. p50 in front of p99).
pub struct Panel {
    pub title: String,
    pub bars: Vec<(String, f64, Option<f64>)>,
}

/// Panels side by side, each with its own y scale; series share colours.
pub fn bar_panels(title: &str, note: &str, panels: &[Panel]) -> String {
    let (pw, ph, top, left) = (260.0, 240.0, 50.0, 50.0);
    let w = left + panels.len() as f64 * (pw + 30.0) + 10.0;
    let n_series = panels.iter().map(|p| p.bars.len()).max().unwrap_or(0);
    let h = top + ph + 50.0 + 18.0 * n_series as f64;
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="20" font-size="14">{}</text><text x="{left}" y="36" fill="#555">{}</text>"##,
        esc(title),
        esc(note)
    );
    for (pi, p) in panels.iter().enumerate() {
        let x0 = left + pi as f64 * (pw + 30.0);
        let max = nice_max(p.bars.iter().map(|b| b.2.unwrap_or(b.1).max(b.1)).fold(0.0, f64::max));
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" font-weight="bold">{}</text>"#,
            x0 + pw / 2.0,
            top - 2.0,
            esc(&p.title)
        );
        for k in 0..=4 {
            let y = top + ph - ph * k as f64 / 4.0;
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 + pw,
                x0 - 3.0,
                y + 4.0,
                fmt_num(max * k as f64 / 4.0)
            );
        }
        let bw = pw / (p.bars.len().max(1) as f64 * 1.4 + 0.4);
        for (bi, (_, v, whisker)) in p.bars.iter().enumerate() {
            let x = x0 + bw * 0.4 + bi as f64 * bw * 1.4;
            if let Some(wv) = whisker {
                let hh = ph * wv / max;
                let _ =
                    writeln!(s, r#"<rect x="{x}" y="{}" width="{bw}" height="{hh}" fill="{}" opacity="0.3"/>"#, top + ph - hh, color(bi));
            }
            let hh = ph * v / max;
            let _ = writeln!(s, r#"<rect x="{x}" y="{}" width="{bw}" height="{hh}" fill="{}"/>"#, top + ph - hh, color(bi));
        }
        let _ = writeln!(s, r#"<line x1="{x0}" x2="{}" y1="{}" y2="{}" stroke="black"/>"#, x0 + pw, top + ph, top + ph);
    }
    if let Some(p) = panels.first() {
        for (bi, (name, _, _)) in p.bars.iter().enumerate() {
            let y = top + ph + 25.0 + 18.0 * bi as f64;
            let _ = writeln!(
                s,
                r#"<rect x="{left}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                y - 10.0,
                color(bi),
                left + 18.0,
                y,
                esc(name)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Lines over a shared x axis.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h, left, top, pw, ph) = (760.0, 380.0, 70.0, 40.0, 640.0, 260.0);
    let xmax = nice_max(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)).fold(0.0, f64::max));
    let ymax = nice_max(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)).fold(0.0, f64::max));
    let mut s = String::new();
    let _ = writeln!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/><text x="{left}" y="22" font-size="14">{}</text>"#, esc(title));
    for k in 0..=4 {
        let y = top + ph - ph * k as f64 / 4.0;
        let x = left + pw * k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            left + pw,
            left - 4.0,
            y + 4.0,
            fmt_num(ymax * k as f64 / 4.0)
        );
        let _ = writeln!(s, r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#, top + ph + 15.0, fmt_num(xmax * k as f64 / 4.0));
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, left + pw / 2.0, top + ph + 32.0, esc(x_label));
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        top + ph / 2.0,
        top + ph / 2.0,
        esc(y_label)
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", left + pw * x / xmax, top + ph - ph * y / ymax)).collect();
        let _ = writeln!(s, r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#, color(i), path.join(" "));
        let ly = top + ph + 50.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{}" width="12" height="3" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            ly - 4.0,
            color(i),
            left + 18.0,
            ly,
            esc(name)
        );
    }
    let _ = writeln!(s, r#"<line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="black"/>"#, left + pw, top + ph, top + ph);
    s.push_str("</svg>\n");
    s
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed() {
        let p = Panel { title: "TTFT <ms>".into(), bars: vec![("a".into(), 3.0, Some(7.0)), ("b".into(), 1.0, None)] };
        let svg = bar_panels("t", "n", &[p]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("TTFT &lt;ms&gt;"));
        assert_eq!(svg.matches("<rect").count(), 1 + 3 + 2);
        let l = line_chart("rss", "s", "MiB", &[("x".into(), vec![(0.0, 1.0), (10.0, 2.0)])]);
        assert!(l.contains("<polyline"));
        assert_eq!(nice_max(730.0), 1000.0);
        assert_eq!(nice_max(0.13), 0.2);
    }
}
