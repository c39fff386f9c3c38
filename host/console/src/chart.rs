//! Bar charts drawn on the server as SVG geometry (the template draws the
//! rectangles): no chart library, no script, readable without either.

use serde::Serialize;

/// One bar.
#[derive(Debug, Serialize, PartialEq)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub label: String,
    pub value: u64,
}

/// A chart: bars scaled to the largest value, in a `width` × `height` box.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub title: String,
    pub width: f64,
    pub height: f64,
    pub max: u64,
    pub total: u64,
    pub bars: Vec<Bar>,
}

/// Where the bars stand: the box less room for labels below.
const PLOT: f64 = 120.0;
const LABELS: f64 = 24.0;

/// A chart of `points` (label, value), left to right.
pub fn bars(title: &str, points: &[(String, u64)], width: f64) -> Chart {
    let max = points.iter().map(|p| p.1).max().unwrap_or(0);
    let n = points.len().max(1) as f64;
    let slot = width / n;
    let bar_width = (slot * 0.8).max(1.0);
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let h = if max == 0 {
                0.0
            } else {
                (*value as f64 / max as f64 * PLOT).max(if *value > 0 { 1.0 } else { 0.0 })
            };
            Bar {
                x: i as f64 * slot + (slot - bar_width) / 2.0,
                y: PLOT - h,
                width: bar_width,
                height: h,
                label: label.clone(),
                value: *value,
            }
        })
        .collect();
    Chart {
        title: title.to_owned(),
        width,
        height: PLOT + LABELS,
        max,
        total: points.iter().map(|p| p.1).sum(),
        bars,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_bar_fills_the_plot_and_zero_is_flat() {
        let c = bars(
            "t",
            &[("a".into(), 0), ("b".into(), 5), ("c".into(), 10)],
            300.0,
        );
        assert_eq!(c.max, 10);
        assert_eq!(c.total, 15);
        assert_eq!(c.bars[0].height, 0.0);
        assert_eq!(c.bars[2].height, PLOT);
        assert_eq!(c.bars[1].height, PLOT / 2.0);
        assert!(c.bars.iter().all(|b| b.x >= 0.0 && b.x + b.width <= 300.0));
        let empty = bars("t", &[], 300.0);
        assert!(empty.bars.is_empty() && empty.max == 0);
    }
}
