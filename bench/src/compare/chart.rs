//! `compare --svg`: the comparison as a chart. One horizontal bar per
//! server, as long as its median figure (server CPU per message, per MB or
//! per connection; anonymous memory per held connection in hold mode), with
//! each round's own value as a dot on it: a bar whose dots scatter is a
//! figure to read with care, whatever its length.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::results::{Medians, Report, Run};
use super::workload::Unit;

/// The chart's size in pixels: its height grows with the number of servers.
const WIDTH: u32 = 900;
const ROW: u32 = 70;
const FRAME: u32 = 130;
/// Width of the server names' column, in pixels.
const NAMES: u32 = 110;

/// The figure `compare` compares by, of one run and of the medians.
fn of_run(report: &Report, run: &Run) -> Option<f64> {
    if report.mode == "hold" {
        run.rss_anon_bytes_per_conn
    } else {
        run.server_cpu_us_per_unit
    }
}

fn of_medians(report: &Report, medians: &Medians) -> Option<f64> {
    if report.mode == "hold" {
        medians.rss_anon_bytes_per_conn
    } else {
        medians.server_cpu_us_per_unit
    }
}

/// What the x axis measures, in words.
fn axis_label(report: &Report) -> String {
    if report.mode == "hold" {
        return "anonymous memory per held connection (bytes)".into();
    }
    let per = match report.unit {
        Unit::Message => "message",
        Unit::Megabyte => "MB",
        Unit::Connection => "connection",
    };
    format!("server CPU per {per} (µs)")
}

/// The chart of `report` as SVG text.
pub(super) fn svg(report: &Report) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rows = report.medians.len().max(1);
    let height = FRAME + ROW * rows as u32;
    let values: Vec<f64> = report.runs.iter().filter_map(|run| of_run(report, run)).collect();
    let x_max = values.iter().copied().fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.15;
    let workload = report.workload.unwrap_or(report.mode);
    let load = match report.mode {
        "pipelined" => format!("{} connections, {} B, {} deep", report.connections, report.size, report.depth),
        _ => format!("{} connections, {} B", report.connections, report.size),
    };
    let rounds = if report.rounds == 1 { "1 round".to_string() } else { format!("{} rounds", report.rounds) };
    let caption = format!("{workload}: {load}; bar = median of {rounds}, dots = each round");
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(NAMES)
            .build_cartesian_2d(0.0..x_max, 0.0..rows as f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(WHITE)
            .x_desc(axis_label(report))
            .x_label_formatter(&|x| if report.mode == "hold" { format!("{x:.0}") } else { format!("{x:.2}") })
            .draw()
            .map_err(|e| err(&e))?;
        let bar = RGBColor(0x1f, 0x77, 0xb4);
        for (i, medians) in report.medians.iter().enumerate() {
            // The first server at the top.
            let y = (rows - 1 - i) as f64;
            // Offsets in pixels: SVG collapses spaces at the ends of text.
            let name = EmptyElement::at((0.0, y + 0.5))
                + Text::new(
                    medians.peer.to_string(),
                    (-8, 0),
                    ("sans-serif", 16).into_font().color(&BLACK).pos(Pos::new(HPos::Right, VPos::Center)),
                );
            chart.plotting_area().draw(&name).map_err(|e| err(&e))?;
            match of_medians(report, medians) {
                Some(value) => {
                    let rect = Rectangle::new([(0.0, y + 0.25), (value, y + 0.75)], bar.mix(0.55).filled());
                    chart.draw_series(std::iter::once(rect)).map_err(|e| err(&e))?;
                    // Inside the bar, at its start: clear of the dots.
                    let label = EmptyElement::at((0.0, y + 0.5))
                        + Text::new(
                            if report.mode == "hold" { format!("{value:.0}") } else { format!("{value:.3}") },
                            (8, 0),
                            ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
                        );
                    chart.plotting_area().draw(&label).map_err(|e| err(&e))?;
                }
                None => {
                    let label = EmptyElement::at((0.0, y + 0.5))
                        + Text::new(
                            "no figure (every round failed)",
                            (8, 0),
                            ("sans-serif", 14).into_font().color(&RED).pos(Pos::new(HPos::Left, VPos::Center)),
                        );
                    chart.plotting_area().draw(&label).map_err(|e| err(&e))?;
                }
            }
            let dots = report
                .runs
                .iter()
                .filter(|run| run.peer == medians.peer)
                .filter_map(|run| of_run(report, run))
                .map(|value| Circle::new((value, y + 0.5), 4, BLACK.filled()));
            chart.draw_series(dots).map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::results::tests::{sample_report, sample_run};
    use super::*;
    use crate::peers::Peer;

    #[test]
    fn a_bar_per_server_with_its_rounds_and_the_unit() {
        let runs = vec![
            sample_run(Peer::Reactor, 1.0, Some(4.0)),
            sample_run(Peer::Reactor, 1.0, Some(5.0)),
            sample_run(Peer::Epoll, 1.0, None),
        ];
        let medians = vec![Medians::of(Peer::Reactor, &runs), Medians::of(Peer::Epoll, &runs)];
        let report = sample_report(runs, medians);
        let text = svg(&report).unwrap();
        assert!(text.contains("reactor") && text.contains("epoll"), "a row per server");
        assert!(text.contains("server CPU per message"), "the axis names the unit");
        assert!(text.contains("4.500"), "reactor's bar is labelled with its median");
        assert!(text.contains("no figure"), "epoll, which has none, says so");
        assert_eq!(text.matches("<circle").count(), 2, "a dot per round with a figure");
    }
}
