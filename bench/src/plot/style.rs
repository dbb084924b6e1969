//! The colours, text sizes and tick labels every chart shares.

use plotters::prelude::{FontDesc, FontStyle, IntoFont, RGBColor, TextStyle};

/// Series colours, in order: matplotlib's ten (blue and red first, so two
/// series contrast), then black and light blue.
const PALETTE: [u32; 12] =
    [0x1f77b4, 0xd62728, 0x2ca02c, 0x9467bd, 0xff7f0e, 0x8c564b, 0xe377c2, 0x17becf, 0xbcbd22, 0x7f7f7f, 0x000000, 0xaec7e8];

/// The colour of series `i` (the table repeats).
pub fn color(i: usize) -> RGBColor {
    let [_, r, g, b] = PALETTE[i % PALETTE.len()].to_be_bytes();
    RGBColor(r, g, b)
}

/// Grid lines and reference lines that should stay in the background.
pub const GRID: RGBColor = RGBColor(0xdd, 0xdd, 0xdd);
pub const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);

/// plotters-svg writes a font's size divided by this as `font-size`.
const PLOTTERS_FONT_SCALE: f64 = 1.24;

/// Sans-serif text whose SVG `font-size` is `px`.
fn font(px: f64) -> FontDesc<'static> {
    ("sans-serif", px * PLOTTERS_FONT_SCALE).into_font()
}

pub fn text(px: f64) -> TextStyle<'static> {
    font(px).into()
}

pub fn bold_text(px: f64) -> TextStyle<'static> {
    font(px).style(FontStyle::Bold).into()
}

/// A tick label: powers of ten on a log axis as `1e3`, other values with
/// at most four significant digits and no trailing zeros.
pub fn tick(v: f64, log: bool) -> String {
    let e = v.log10().round();
    if log && v > 0.0 && (v.log10() - e).abs() < 1e-9 {
        return format!("1e{e}");
    }
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (3 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::tick;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(1000.0, true), "1e3");
        assert_eq!(tick(1e-4, true), "1e-4");
        assert_eq!(tick(1000.0, false), "1000");
        assert_eq!(tick(0.30000000000000004, false), "0.3");
        assert_eq!(tick(12.5, false), "12.5");
        assert_eq!(tick(0.0, false), "0");
        assert_eq!(tick(2.0, true), "2");
    }
}
