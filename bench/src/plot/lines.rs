//! A line chart: labelled axes (linear, or log with decade ticks), lines
//! that may be dashed or marked, dotted horizontal guides with a label,
//! a legend of the named lines and a note under the chart.

use anyhow::Result;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::style::{text, tick, GRID};
use super::{render, Area};

#[derive(Clone, Debug, Default)]
pub struct Axis {
    pub label: String,
    /// Base-10 logarithmic.
    pub log: bool,
    /// The shown values; by default from 0 to the largest value (linear;
    /// a fifth more on the y axis, room for the legend) or the smallest
    /// to the largest value (log).
    pub range: Option<(f64, f64)>,
}

impl Axis {
    pub fn linear(label: &str) -> Self {
        Self { label: label.into(), ..Self::default() }
    }

    pub fn log(label: &str, range: (f64, f64)) -> Self {
        Self { label: label.into(), log: true, range: Some(range) }
    }

    fn range_of(&self, values: impl Iterator<Item = f64>, headroom: f64) -> (f64, f64) {
        if let Some(r) = self.range {
            return r;
        }
        let (lo, hi) =
            values.filter(|v| v.is_finite() && (!self.log || *v > 0.0)).fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        match (self.log, hi > 0.0) {
            (false, true) => (0.0, headroom * hi),
            (false, false) => (0.0, 1.0),
            (true, true) if lo < hi => (lo, hi),
            (true, true) => (lo / 10.0, hi * 10.0),
            (true, false) => (1.0, 10.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Line {
    /// The legend entry; unnamed lines have none.
    pub name: Option<String>,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
    /// A dot on every point.
    pub markers: bool,
}

impl Line {
    pub fn new(name: &str, color: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Self { name: Some(name.into()), points, color, dashed: false, markers: false }
    }
}

/// A dotted horizontal reference line across the chart.
#[derive(Clone, Debug)]
pub struct Guide {
    pub y: f64,
    pub label: String,
    pub color: RGBColor,
}

#[derive(Clone, Debug, Default)]
pub struct LineChart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub lines: Vec<Line>,
    pub guides: Vec<Guide>,
    pub note: Option<String>,
}

const NOTE_HEIGHT: u32 = 22;

impl LineChart {
    /// The chart alone as an SVG picture of `size` pixels.
    pub fn svg(&self, size: (u32, u32)) -> Result<String> {
        render(size, |area| self.draw(area))
    }

    fn draw(&self, area: &Area<'_>) -> Result<()> {
        let area = match &self.note {
            Some(note) => {
                let (chart, below) = area.split_vertically(area.dim_in_pixel().1.saturating_sub(NOTE_HEIGHT));
                below.draw(&Text::new(note.clone(), (10, 4), text(10.0)))?;
                chart
            }
            None => area.clone(),
        };
        let xs = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
        let ys = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).chain(self.guides.iter().map(|g| g.y));
        let ((x0, x1), (y0, y1)) = (self.x.range_of(xs, 1.0), self.y.range_of(ys, 1.2));
        // plotters types linear and log coordinates differently.
        match (self.x.log, self.y.log) {
            (false, false) => self.draw_on(&area, x0..x1, y0..y1),
            (true, false) => self.draw_on(&area, (x0..x1).log_scale(), y0..y1),
            (false, true) => self.draw_on(&area, x0..x1, (y0..y1).log_scale()),
            (true, true) => self.draw_on(&area, (x0..x1).log_scale(), (y0..y1).log_scale()),
        }
    }

    fn draw_on<X, Y>(&self, area: &Area<'_>, x: X, y: Y) -> Result<()>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        let mut chart = ChartBuilder::on(area)
            .caption(&self.title, text(14.0))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)?;
        let (x_log, y_log) = (self.x.log, self.y.log);
        chart
            .configure_mesh()
            .x_desc(&self.x.label)
            .y_desc(&self.y.label)
            .x_label_formatter(&|v| tick(*v, x_log))
            .y_label_formatter(&|v| tick(*v, y_log))
            .label_style(text(11.0))
            .axis_desc_style(text(12.0))
            .bold_line_style(GRID)
            .max_light_lines(0)
            .draw()?;
        let x_span = chart.x_range();
        for g in &self.guides {
            let ends = [(x_span.start, g.y), (x_span.end, g.y)];
            chart.draw_series(DashedLineSeries::new(ends, 2, 3, g.color.into()))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at(ends[0]) + Text::new(g.label.clone(), (6, -14), text(10.0).color(&g.color)),
            ))?;
        }
        for l in &self.lines {
            let style = l.color.stroke_width(2);
            let drawn = if l.dashed {
                chart.draw_series(DashedLineSeries::new(l.points.iter().copied(), 6, 4, style))?
            } else {
                chart.draw_series(LineSeries::new(l.points.iter().copied(), style))?
            };
            if let Some(name) = &l.name {
                let dashed = l.dashed;
                drawn.label(name).legend(move |(x, y)| {
                    let ends = vec![(x, y), (x + 20, y)];
                    if dashed {
                        DashedPathElement::new(ends, 4, 3, style).into_dyn()
                    } else {
                        PathElement::new(ends, style).into_dyn()
                    }
                });
            }
            if l.markers {
                chart.draw_series(l.points.iter().map(|&p| Circle::new(p, 3, l.color.filled())))?;
            }
        }
        if self.lines.iter().any(|l| l.name.is_some()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(text(10.0))
                .background_style(WHITE.mix(0.85))
                .border_style(GRID)
                .draw()?;
        }
        Ok(())
    }
}

/// Charts side by side, each an equal share of the `size` picture.
pub fn side_by_side(charts: &[LineChart], size: (u32, u32)) -> Result<String> {
    render(size, |root| {
        for (chart, area) in charts.iter().zip(root.split_evenly((1, charts.len().max(1)))) {
            chart.draw(&area)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::style::color;

    #[test]
    fn draws_axes_lines_guides_and_legend() {
        let chart = LineChart {
            title: "accuracy <κ>".into(),
            x: Axis::log("κ", (1.0, 1e4)),
            y: Axis::linear("top-1 (%)"),
            lines: vec![
                Line { markers: true, ..Line::new("nn-cos", color(0), vec![(1.0, 90.0), (10.0, 5.0), (1e4, 0.0)]) },
                Line { dashed: true, name: None, ..Line::new("", color(1), vec![(1.0, 50.0), (1e4, 0.0)]) },
            ],
            guides: vec![Guide { y: 8.0, label: "most frequent token".into(), color: color(9) }],
            note: Some("solid: decode-b1".into()),
        };
        let svg = chart.svg((480, 420)).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for t in ["accuracy &lt;κ&gt;", "1e2", "most frequent token", "nn-cos", "solid: decode-b1", "top-1 (%)"] {
            assert!(svg.contains(t), "{t} missing");
        }
        assert_eq!(svg.matches("<circle").count(), 3, "one marker per point");
    }

    #[test]
    fn default_ranges_cover_the_data() {
        let points = [0.5, 3.0, 7.0];
        assert_eq!(Axis::linear("").range_of(points.into_iter(), 2.0), (0.0, 14.0));
        let log = Axis { log: true, ..Axis::default() };
        assert_eq!(log.range_of(points.into_iter().chain([0.0]), 2.0), (0.5, 7.0));
        assert_eq!(Axis::linear("").range_of(std::iter::empty(), 2.0), (0.0, 1.0));
    }
}
