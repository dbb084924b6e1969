//! The SVG plots of every benchmark, drawn with plotters' SVG backend:
//! text stays SVG `<text>`, so no font library is needed to build or view
//! them. One colour table and font scale (`style`), a line chart with
//! linear or log axes (`lines`) and panels of bars (`bars`).

pub mod bars;
pub mod lines;
pub mod style;

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::{DrawingArea, IntoDrawingArea, SVGBackend, WHITE};

/// Where a chart draws: the whole picture or a part of it.
pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// A `size` (pixels) picture on white, drawn by `draw`, as SVG text.
pub fn render(size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(svg)
}
