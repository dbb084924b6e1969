//! Panels of bars side by side, each with its own y scale, one bar per
//! series in every panel and one legend of the series under them.

use anyhow::{ensure, Result};
use plotters::prelude::*;

use super::render;
use super::style::{bold_text, color, text, tick, GRID, MUTED};

/// A solid value with an optional taller light "whisker" value behind it
/// (e.g. p50 in front of p99).
#[derive(Clone, Copy, Debug)]
pub struct Bar {
    pub value: f64,
    pub whisker: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct BarPanel {
    pub title: String,
    /// One per series, in the order of `BarPanels::series`.
    pub bars: Vec<Bar>,
}

#[derive(Clone, Debug)]
pub struct BarPanels {
    pub title: String,
    /// A line under the title (empty: none).
    pub note: String,
    pub series: Vec<String>,
    pub panels: Vec<BarPanel>,
}

const PANEL_WIDTH: u32 = 290;
const PANEL_HEIGHT: u32 = 300;
const LEGEND_ROW: u32 = 18;

impl BarPanels {
    pub fn svg(&self) -> Result<String> {
        for p in &self.panels {
            ensure!(p.bars.len() == self.series.len(), "panel {:?} has {} bars for {} series", p.title, p.bars.len(), self.series.len());
        }
        let legend_height = 20 + LEGEND_ROW * self.series.len() as u32;
        let width = 20 + PANEL_WIDTH * self.panels.len().max(1) as u32;
        render((width, 50 + PANEL_HEIGHT + legend_height), |root| {
            let (head, rest) = root.split_vertically(50);
            head.draw(&Text::new(self.title.clone(), (20, 10), text(14.0)))?;
            head.draw(&Text::new(self.note.clone(), (20, 30), text(11.0).color(&MUTED)))?;
            let (body, legend) = rest.split_vertically(PANEL_HEIGHT);
            for (panel, area) in self.panels.iter().zip(body.split_evenly((1, self.panels.len().max(1)))) {
                self.draw_panel(panel, &area)?;
            }
            for (i, name) in self.series.iter().enumerate() {
                let y = 12 + (LEGEND_ROW * i as u32) as i32;
                legend.draw(
                    &(EmptyElement::at((60, y))
                        + Rectangle::new([(0, 0), (12, 12)], color(i).filled())
                        + Text::new(name.clone(), (18, 0), text(11.0))),
                )?;
            }
            Ok(())
        })
    }

    fn draw_panel(&self, panel: &BarPanel, area: &super::Area<'_>) -> Result<()> {
        let top = panel.bars.iter().map(|b| b.whisker.unwrap_or(b.value).max(b.value)).fold(0.0, f64::max);
        let top = if top > 0.0 && top.is_finite() { top * 1.05 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, bold_text(11.0))
            .margin(10)
            .x_label_area_size(4)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..self.series.len().max(1) as f64, 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(5)
            .y_label_formatter(&|v| tick(*v, false))
            .label_style(text(11.0))
            .bold_line_style(GRID)
            .max_light_lines(0)
            .draw()?;
        for (i, bar) in panel.bars.iter().enumerate() {
            let (x0, x1) = (i as f64 + 0.15, i as f64 + 0.85);
            if let Some(w) = bar.whisker {
                chart.draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x1, w)], color(i).mix(0.3).filled())))?;
            }
            chart.draw_series(std::iter::once(Rectangle::new([(x0, 0.0), (x1, bar.value)], color(i).filled())))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_bar_and_the_legend() {
        let panels = BarPanels {
            title: "Serving latency".into(),
            note: "solid: p50, light: p99".into(),
            series: vec!["a".into(), "b <c>".into()],
            panels: vec![BarPanel {
                title: "TTFT (ms)".into(),
                bars: vec![Bar { value: 3.0, whisker: Some(7.0) }, Bar { value: 1.0, whisker: None }],
            }],
        };
        let svg = panels.svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for t in ["Serving latency", "solid: p50, light: p99", "TTFT (ms)", "b &lt;c&gt;"] {
            assert!(svg.contains(t), "{t} missing");
        }
        // Background, three bars, two legend squares.
        assert_eq!(svg.matches("<rect").count(), 1 + 3 + 2, "{svg}");
        let short = BarPanels { series: vec!["only".into()], ..panels };
        assert!(short.svg().is_err());
    }
}
