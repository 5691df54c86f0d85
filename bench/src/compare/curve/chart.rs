//! `curve --svg`: the medians as a chart, x idle connections, y round
//! trips/s, a line per peer.
//!
//! The y axis is logarithmic unless `--linear` is given: the peers differ by
//! orders of magnitude (poll falls from tens of thousands of round trips/s
//! to tens as N grows), and on a linear axis the classic peers' fall is
//! flattened against zero. The x axis stays linear: N = 0 is a point of the
//! curve, which a log axis cannot show.
//!
//! A failed point has no number to draw, but it is a result: it is a cross
//! at the bottom of the axis, in its peer's colour, the first one of a peer
//! with a short label of why (the whole reason is in the table and the
//! JSON), so that a curve that stops says where and why it stopped.

use std::ops::Range;

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{Median, Report};
use crate::plot::decades;
use crate::report::group;

/// The chart's size in pixels.
const SIZE: (u32, u32) = (900, 560);
/// About the height of the plotting area, in pixels: the size less the
/// caption, the margins and the x labels.
const PLOT_HEIGHT: f64 = 450.0;
/// Vertical distance between stacked failure marks at one N, in pixels.
const STACK: i32 = 16;
/// Colours that read on white, a peer each, in `--peers` order.
const COLORS: [RGBColor; 7] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0x17, 0xbe, 0xcf),
];

type Chart<'a, Y> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;

/// The chart of `report`'s medians as SVG text; `linear` for a linear y
/// axis instead of a logarithmic one.
pub(super) fn svg(report: &Report, linear: bool) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let rates: Vec<f64> = report.medians.iter().filter_map(|m| m.round_trips_per_s).collect();
        let x_max = report.idle.iter().copied().max().unwrap_or(1).max(1) as f64;
        let scale = if linear { "" } else { ", log scale" };
        let rounds = if report.rounds == 1 { "1 round".into() } else { format!("median of {} rounds", report.rounds) };
        let caption = format!("One active connection among N idle ones ({rounds})");
        // The share of the plot's height kept under the lowest value for
        // the failure marks, so that no line runs through them.
        let band = match failure_levels(report) {
            0 => 0.0,
            levels => ((levels as f64 * f64::from(STACK) + 12.0) / PLOT_HEIGHT).min(0.5),
        };
        let mut builder = ChartBuilder::on(&root);
        builder.caption(caption, ("sans-serif", 20)).margin(15).x_label_area_size(45).y_label_area_size(70);
        let x_range = 0.0..x_max * 1.02;
        if linear {
            let y_max = rates.iter().copied().fold(1.0, f64::max) * 1.1;
            let bottom = -y_max * band / (1.0 - band);
            let chart = builder.build_cartesian_2d(x_range, bottom..y_max).map_err(|e| err(&e))?;
            draw(chart, report, bottom, &format!("round trips/s{scale}"))?;
        } else {
            let Range { start, end } = decades(&rates);
            let bottom = start / (end / start).powf(band / (1.0 - band));
            let chart = builder.build_cartesian_2d(x_range, (bottom..end).log_scale()).map_err(|e| err(&e))?;
            draw(chart, report, bottom, &format!("round trips/s{scale}"))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(text)
}

/// The most failed peers at any one N: how many marks stack there.
fn failure_levels(report: &Report) -> usize {
    report
        .idle
        .iter()
        .map(|&n| report.medians.iter().filter(|m| m.idle == n && m.round_trips_per_s.is_none()).count())
        .max()
        .unwrap_or(0)
}

/// Draws the mesh, a line per peer and the failed points on `chart`, whose
/// y axis starts at `bottom`.
fn draw<'a, Y>(mut chart: Chart<'a, Y>, report: &Report, bottom: f64, y_desc: &str) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    chart
        .configure_mesh()
        .x_desc("idle connections")
        .y_desc(y_desc)
        .x_label_formatter(&|&x| group(x.round() as u64))
        // No label under 0, in the band of failure marks of a linear axis.
        .y_label_formatter(&|&y| if y < 0.0 { String::new() } else { group(y.round() as u64) })
        .draw()
        .map_err(|e| err(&e))?;
    let x_max = report.idle.iter().copied().max().unwrap_or(1).max(1) as f64;
    // How many failure marks are already stacked at each N.
    let mut stacked: Vec<(usize, i32)> = Vec::new();
    for (i, peer) in report.peers.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mine: Vec<&Median> = report.medians.iter().filter(|m| m.peer == *peer).collect();
        let ok: Vec<(f64, f64)> = mine.iter().filter_map(|m| m.round_trips_per_s.map(|y| (m.idle as f64, y))).collect();
        chart
            .draw_series(LineSeries::new(ok.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*peer)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(ok.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| err(&e))?;
        // Only a peer's first failed point is labelled: its later ones are
        // crosses on the same line, and their labels would overlap.
        for (nth, m) in mine.iter().filter(|m| m.round_trips_per_s.is_none()).enumerate() {
            let level = match stacked.iter_mut().find(|(idle, _)| *idle == m.idle) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    stacked.push((m.idle, 0));
                    0
                }
            };
            let label = format!("{peer}: {}", m.label.as_deref().unwrap_or("failed"));
            // Labels of points on the right half grow leftwards, so that
            // they stay on the chart.
            let right = (m.idle as f64) > x_max * 0.5;
            let (dx, h) = if right { (-10, HPos::Right) } else { (10, HPos::Left) };
            let style = ("sans-serif", 13).into_font().color(&color).pos(Pos::new(h, VPos::Center));
            let dy = -10 - STACK * level;
            let label = if nth == 0 { label } else { String::new() };
            let mark = EmptyElement::at((m.idle as f64, bottom))
                + Cross::new((0, dy), 6, color.stroke_width(2))
                + Text::new(label, (dx, dy), style);
            chart.draw_series(std::iter::once(mark)).map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}
