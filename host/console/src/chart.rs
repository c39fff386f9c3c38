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

/// Where the bars stand: room for a value above the highest, the plot, and
/// room for labels below.
const TOP: f64 = 16.0;
const PLOT: f64 = 120.0;
const LABELS: f64 = 24.0;
/// A row of a horizontal chart, and the room its label takes.
const ROW: f64 = 24.0;
const LABEL_COLUMN: f64 = 200.0;
const VALUE_COLUMN: f64 = 60.0;

/// `value` of `max` as a length of `room`: a value above zero is never
/// drawn thinner than one unit.
fn scaled(value: u64, max: u64, room: f64) -> f64 {
    if max == 0 {
        return 0.0;
    }
    (value as f64 / max as f64 * room).max(if value > 0 { 1.0 } else { 0.0 })
}

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
            let h = scaled(*value, max, PLOT);
            Bar {
                x: i as f64 * slot + (slot - bar_width) / 2.0,
                y: TOP + PLOT - h,
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
        height: TOP + PLOT + LABELS,
        max,
        total: points.iter().map(|p| p.1).sum(),
        bars,
    }
}

/// A horizontal chart of `points`, top to bottom: a row each, its label
/// on the left (for stages with long names, like a campaign's funnel).
pub fn rows(title: &str, points: &[(String, u64)], width: f64) -> Chart {
    let max = points.iter().map(|p| p.1).max().unwrap_or(0);
    let room = (width - LABEL_COLUMN - VALUE_COLUMN).max(1.0);
    let bars = points
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let w = scaled(*value, max, room);
            Bar {
                x: LABEL_COLUMN,
                y: i as f64 * ROW + 4.0,
                width: w,
                height: ROW - 8.0,
                label: label.clone(),
                value: *value,
            }
        })
        .collect();
    Chart {
        title: title.to_owned(),
        width,
        height: points.len() as f64 * ROW,
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
        assert_eq!(
            c.bars[2].y, TOP,
            "room for the highest bar's value above it"
        );
        assert_eq!(c.bars[1].height, PLOT / 2.0);
        assert!(c.bars.iter().all(|b| b.x >= 0.0 && b.x + b.width <= 300.0));
        let empty = bars("t", &[], 300.0);
        assert!(empty.bars.is_empty() && empty.max == 0);
    }

    #[test]
    fn rows_share_the_room_right_of_their_labels() {
        let c = rows(
            "f",
            &[
                ("targeted".into(), 4),
                ("sent".into(), 1),
                ("failed".into(), 0),
            ],
            700.0,
        );
        assert_eq!(c.bars[0].width, 700.0 - LABEL_COLUMN - VALUE_COLUMN);
        assert_eq!(c.bars[1].width, c.bars[0].width / 4.0);
        assert_eq!(c.bars[2].width, 0.0);
        assert!(c.bars.iter().all(|b| b.x == LABEL_COLUMN));
        assert_eq!(c.height, 3.0 * ROW);
    }
}
