//! `--plot FILE.svg`: a load run as one picture, for what the summary's
//! numbers cannot show, the shape of the latency distribution and how the
//! run went second by second.
//!
//! Top: the latency percentile spectrum. Its x axis is the "number of
//! nines", -log10(1 - p), labelled 50%, 90%, 99%, 99.9%..., up to the
//! slowest reply: each tick is ten times rarer than the one before, so the
//! tail, which a linear percentile axis crushes into its right edge, gets as
//! much room as the median. Its y axis is logarithmic, as latencies span
//! orders of magnitude. In rate mode it draws the corrected latency (from
//! when each message was due) beside the uncorrected one (from when it was
//! written): the gap between the two lines is the time messages waited for
//! the client, which is what coordinated omission hides.
//!
//! Bottom: the measured window second by second (the samples of
//! `--series`), throughput with the errors of each second where there were
//! any, on their own axis, and under it the p99 of each second: a stall or a
//! slow start shows as a dip there, where the run's totals average it away.
//!
//! A run that measured nothing still gets its picture, with "no data" where
//! there is nothing to draw: the file the user asked for is always there.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{micros, Bucket, Second, Summary};

/// The picture's size in pixels.
const SIZE: (u32, u32) = (1000, 900);
/// Height of the title, in pixels.
const TITLE: u32 = 64;
/// Width of the left and right label areas, the same in every panel so that
/// their time axes line up.
const LEFT: u32 = 80;
const RIGHT: u32 = 60;

/// Colours that read on white. The throughput line alone is drawn in
/// `THROUGHPUT`, so that it can be found in the SVG.
pub const THROUGHPUT: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const CORRECTED: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const UNCORRECTED: RGBColor = RGBColor(0xff, 0x7f, 0x0e);
const LATENCY: RGBColor = RGBColor(0x94, 0x67, 0xbd);
const ERRORS: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const P99: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);

/// What the legend says of each latency line.
pub const CORRECTED_LABEL: &str = "corrected: from when each message was due";
pub const UNCORRECTED_LABEL: &str = "uncorrected: from when each message was written";
pub const LATENCY_LABEL: &str = "latency: from when each message was sent";

/// Points per nine on the spectrum.
const STEPS_PER_NINE: f64 = 50.0;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws `summary` and writes it to `path`.
pub fn write(path: &Path, summary: &Summary) -> io::Result<()> {
    let text = svg(summary).map_err(|e| io::Error::other(format!("cannot draw --plot {}: {e}", path.display())))?;
    fs::write(path, text).map_err(|e| io::Error::new(e.kind(), format!("cannot write --plot {}: {e}", path.display())))
}

/// The picture of `summary`, as SVG text.
pub fn svg(summary: &Summary) -> Result<String, String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (title, rest) = root.split_vertically(TITLE);
        draw_title(&title, summary)?;
        let height = rest.dim_in_pixel().1;
        let (spectrum, seconds) = rest.split_vertically(height * 48 / 100);
        let (throughput, p99) = seconds.split_vertically(seconds.dim_in_pixel().1 * 60 / 100);
        draw_spectrum(&spectrum, summary)?;
        draw_throughput(&throughput, summary)?;
        draw_p99(&p99, summary)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// Mode, connections, size and duration; then the target.
fn draw_title(area: &Area, summary: &Summary) -> Result<(), String> {
    let center =
        |size: u32| TextStyle::from(("sans-serif", size).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    let middle = area.dim_in_pixel().0 as i32 / 2;
    area.draw(&Text::new(summary.shape(), (middle, 24), center(20))).map_err(|e| e.to_string())?;
    let target = format!("target {}", summary.target_name());
    area.draw(&Text::new(target, (middle, 48), center(14))).map_err(|e| e.to_string())?;
    Ok(())
}

/// A panel with nothing to draw: its caption, a frame, and why.
fn no_data(area: &Area, caption: &str, why: &str) -> Result<(), String> {
    let inner = area.margin(10, 10, LEFT, RIGHT);
    let inner = inner.titled(caption, ("sans-serif", 16)).map_err(|e| e.to_string())?;
    let (w, h) = inner.dim_in_pixel();
    let frame = Rectangle::new([(0, 0), (w as i32 - 1, h as i32 - 1)], BLACK.mix(0.3).stroke_width(1));
    inner.draw(&frame).map_err(|e| e.to_string())?;
    let style = ("sans-serif", 18).into_font().color(&BLACK.mix(0.6)).pos(Pos::new(HPos::Center, VPos::Center));
    inner.draw(&Text::new(format!("no data: {why}"), (w as i32 / 2, h as i32 / 2), style)).map_err(|e| e.to_string())
}

/// Why a run has no latency or throughput to draw.
fn nothing_measured(summary: &Summary) -> &'static str {
    if summary.mode == "hold" {
        "hold mode sends no messages"
    } else {
        "no reply in the measured window"
    }
}

/// The latency percentile spectrum (see the module's doc).
fn draw_spectrum(area: &Area, summary: &Summary) -> Result<(), String> {
    const CAPTION: &str = "Latency by percentile";
    let rate = summary.mode == "rate";
    let mut lines: Vec<(&[Bucket], RGBColor, &str)> = Vec::new();
    match (&summary.latency_histogram, &summary.latency_uncorrected_histogram) {
        (Some(corrected), Some(uncorrected)) if rate => {
            lines.push((corrected, CORRECTED, CORRECTED_LABEL));
            lines.push((uncorrected, UNCORRECTED, UNCORRECTED_LABEL));
        }
        (Some(latency), _) => lines.push((latency, if rate { CORRECTED } else { LATENCY }, LATENCY_LABEL)),
        (None, _) => return no_data(area, CAPTION, nothing_measured(summary)),
    }
    let curves: Vec<Vec<(f64, f64)>> = lines.iter().map(|(buckets, _, _)| spectrum(buckets)).collect();
    if curves.iter().all(Vec::is_empty) {
        return no_data(area, CAPTION, nothing_measured(summary));
    }
    let x_end = curves.iter().flatten().map(|p| p.0).fold(HALF, f64::max) * 1.03;
    let values: Vec<f64> = curves.iter().flatten().map(|p| p.1).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(CAPTION, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(LEFT)
        .margin_right(10 + RIGHT)
        .build_cartesian_2d(Nines::new(0.0..x_end), decades(&values).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile (each tick ten times rarer than the one before)")
        .y_desc("latency (log scale)")
        .x_label_formatter(&|&x| percentile_label(x))
        .y_label_formatter(&|&y| axis_micros(y))
        .draw()
        .map_err(|e| e.to_string())?;
    for ((buckets, color, label), curve) in lines.iter().zip(curves) {
        let color = *color;
        let total: u64 = buckets.iter().map(|b| b.count).sum();
        let at = |q: f64| micros(value_at(buckets, total, q));
        let max = buckets.last().map_or(0.0, |b| b.high_us);
        let legend = format!("{label} (p50 {}, p99 {}, max {})", at(0.5), at(0.99), micros(max));
        chart
            .draw_series(LineSeries::new(curve, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(legend)
            .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 18, y + 3)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        // The spectrum climbs to the right: the lower right is clear.
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())
}

/// x of the 50th percentile on the spectrum: -log10(1 - 0.5).
const HALF: f64 = std::f64::consts::LOG10_2;

/// The spectrum of a latency histogram: (x = -log10(1 - p), latency in µs)
/// at `STEPS_PER_NINE` points per nine, from the fastest reply to the
/// slowest, which is at x = log10(replies) (one reply in all of them). Empty
/// for an empty histogram.
pub fn spectrum(buckets: &[Bucket]) -> Vec<(f64, f64)> {
    let total: u64 = buckets.iter().map(|b| b.count).sum();
    if total == 0 {
        return Vec::new();
    }
    let x_max = (total as f64).log10();
    let steps = (x_max * STEPS_PER_NINE).ceil() as usize;
    let mut points: Vec<(f64, f64)> = (0..steps)
        .map(|step| {
            let x = step as f64 / STEPS_PER_NINE;
            (x, value_at(buckets, total, 1.0 - 10f64.powf(-x)))
        })
        .collect();
    points.push((x_max, buckets.last().map_or(0.0, |b| b.high_us)));
    points
}

/// The latency at quantile `q` of a histogram of `total` replies: the high
/// end of the bucket where the count reaches `q` of them.
fn value_at(buckets: &[Bucket], total: u64, q: f64) -> f64 {
    // Less a hair, so that 0.99 of 1,000 is the 990th reply, whatever the
    // rounding of 0.99 * 1000.
    let wanted = ((q * total as f64 - 1e-9).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for bucket in buckets {
        seen += bucket.count;
        if seen >= wanted {
            return bucket.high_us;
        }
    }
    buckets.last().map_or(0.0, |b| b.high_us)
}

/// "50%", "90%", "99%", "99.9%"... for x = -log10(1 - p).
pub fn percentile_label(x: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.round() as i64 - 2).max(0) as usize;
    format!("{percent:.decimals$}%")
}

/// The spectrum's x axis: linear in -log10(1 - p), with its ticks at 50%
/// and at every whole number of nines (90%, 99%, 99.9%...) that it spans.
struct Nines {
    linear: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Nines {
    fn new(range: Range<f64>) -> Nines {
        let nines = (1..).map(f64::from).take_while(|&x| x <= range.end);
        let ticks = std::iter::once(HALF).chain(nines).filter(|&x| x <= range.end).collect();
        Nines { linear: range.into(), ticks }
    }
}

impl Ranged for Nines {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.linear.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.ticks.clone()
    }

    fn range(&self) -> Range<f64> {
        self.linear.range()
    }
}

/// A label of seconds (or of errors per second): whole numbers as such,
/// fractions with one decimal.
fn seconds(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// A latency axis label: `1 µs`, `250 µs`, `1.5 ms`, `10 ms`, `2 s`, with
/// no trailing zeros.
fn axis_micros(us: f64) -> String {
    let (value, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// The middle of each second of the window, in seconds from its start.
fn middle(second: &Second) -> f64 {
    second.start_s + second.length_s / 2.0
}

/// The seconds of the window, if any reply or error happened in them. None
/// in hold mode, whose only replies are to its probes: like the summary, the
/// picture counts no messages there.
fn seconds_with_data(summary: &Summary) -> Option<&[Second]> {
    if summary.mode == "hold" {
        return None;
    }
    let series = summary.series.as_deref()?;
    series.iter().any(|s| s.messages > 0 || s.errors > 0).then_some(series)
}

/// Messages per second, second by second, and errors per second where
/// there were any, on an axis of their own at the right.
fn draw_throughput(area: &Area, summary: &Summary) -> Result<(), String> {
    const CAPTION: &str = "Throughput, second by second";
    let Some(series) = seconds_with_data(summary) else {
        return no_data(area, CAPTION, nothing_measured(summary));
    };
    let errors: u64 = series.iter().map(|s| s.errors).sum();
    let caption = match errors {
        0 => format!("{CAPTION} (no errors)"),
        n => format!("{CAPTION} ({} in the window)", crate::report::count(n, "error")),
    };
    let x_end = summary.measured_s.max(series.len() as f64).max(1.0);
    let y_max = series.iter().map(|s| s.messages_per_s).fold(1.0, f64::max) * 1.15;
    let per_s = |s: &Second| if s.length_s > 0.0 { s.errors as f64 / s.length_s } else { s.errors as f64 };
    let errors_max = series.iter().map(per_s).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(LEFT)
        .right_y_label_area_size(RIGHT)
        .build_cartesian_2d(0.0..x_end, 0.0..y_max)
        .map_err(|e| e.to_string())?
        .set_secondary_coord(0.0..x_end, 0.0..errors_max);
    chart
        .configure_mesh()
        .x_desc("seconds into the measured window")
        .y_desc("messages/s")
        .x_label_formatter(&|&x| seconds(x))
        .y_label_formatter(&|&y| crate::report::group(y.round() as u64))
        .draw()
        .map_err(|e| e.to_string())?;
    let line: Vec<(f64, f64)> = series.iter().map(|s| (middle(s), s.messages_per_s)).collect();
    chart
        .draw_series(LineSeries::new(line.clone(), THROUGHPUT.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label("messages/s")
        .legend(|(x, y)| Rectangle::new([(x, y - 3), (x + 18, y + 3)], THROUGHPUT.filled()));
    chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, THROUGHPUT.filled()))).map_err(|e| e.to_string())?;
    if errors > 0 {
        chart
            .configure_secondary_axes()
            .y_desc("errors/s")
            .y_label_formatter(&|&y| seconds(y))
            .draw()
            .map_err(|e| e.to_string())?;
        let marks = series
            .iter()
            .filter(|s| s.errors > 0)
            .map(|s| Cross::new((middle(s), per_s(s)), 6, ERRORS.stroke_width(2)));
        chart
            .draw_secondary_series(marks)
            .map_err(|e| e.to_string())?
            .label("errors/s (right axis)")
            .legend(|(x, y)| Cross::new((x + 9, y), 5, ERRORS.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| e.to_string())
}

/// The p99 latency of each second's replies; a second without replies
/// breaks the line.
fn draw_p99(area: &Area, summary: &Summary) -> Result<(), String> {
    let caption = if summary.mode == "rate" {
        "p99 latency, second by second (corrected: from when each message was due)"
    } else {
        "p99 latency, second by second"
    };
    let Some(series) = seconds_with_data(summary).filter(|s| s.iter().any(|s| s.p99_us.is_some())) else {
        return no_data(area, caption, nothing_measured(summary));
    };
    let values: Vec<f64> = series.iter().filter_map(|s| s.p99_us).collect();
    let x_end = summary.measured_s.max(series.len() as f64).max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(LEFT)
        .margin_right(10 + RIGHT)
        .build_cartesian_2d(0.0..x_end, decades(&values).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds into the measured window")
        .y_desc("p99 (log scale)")
        // Decades only: a short panel has no room for more.
        .y_labels(6)
        .x_label_formatter(&|&x| seconds(x))
        .y_label_formatter(&|&y| axis_micros(y))
        .draw()
        .map_err(|e| e.to_string())?;
    // Runs of consecutive seconds with replies, each its own line.
    for run in series.split(|s| s.p99_us.is_none()).filter(|run| !run.is_empty()) {
        let points: Vec<(f64, f64)> = run.iter().filter_map(|s| s.p99_us.map(|p| (middle(s), p))).collect();
        chart.draw_series(LineSeries::new(points.clone(), P99.stroke_width(2))).map_err(|e| e.to_string())?;
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, P99.filled()))).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The whole decades around `values`, at least one, with room above the
/// highest: 38,000 and 60 give 10..100,000; 1..10 when there are none.
pub fn decades(values: &[f64]) -> Range<f64> {
    let positive: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0 && v.is_finite()).collect();
    if positive.is_empty() {
        return 1.0..10.0;
    }
    let low = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let high = positive.iter().copied().fold(0.0, f64::max);
    let low = 10f64.powf(low.log10().floor());
    let high = 10f64.powf(high.log10().ceil()).max(low * 10.0);
    // A value on a decade's edge gets room above it.
    let high = if positive.iter().any(|&v| v >= high * 0.999) { high * 10.0 } else { high };
    low..high
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(us: f64, count: u64) -> Bucket {
        Bucket { low_us: us, high_us: us, count }
    }

    #[test]
    fn percentiles_are_labelled_by_their_nines() {
        assert_eq!(percentile_label(HALF), "50%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(5.0), "99.999%");
    }

    #[test]
    fn axis_labels_carry_no_trailing_zeros() {
        assert_eq!(axis_micros(1.0), "1 µs");
        assert_eq!(axis_micros(0.1), "0.1 µs");
        assert_eq!(axis_micros(1000.0), "1 ms");
        assert_eq!(axis_micros(2500.0), "2.5 ms");
        assert_eq!(axis_micros(100_000.0), "100 ms");
        assert_eq!(axis_micros(3e6), "3 s");
        assert_eq!((seconds(2.0), seconds(2.5)), ("2".to_string(), "2.5".to_string()));
    }

    #[test]
    fn the_axis_ticks_at_half_and_at_each_nine_it_spans() {
        let axis = Nines::new(0.0..3.2);
        assert_eq!(axis.key_points(10), [HALF, 1.0, 2.0, 3.0]);
        assert_eq!(Nines::new(0.0..0.5).key_points(10), [HALF]);
    }

    #[test]
    fn the_spectrum_climbs_to_the_slowest_reply() {
        // 1,000 replies: 900 at 10 µs, 90 at 100 µs, 9 at 1 ms, 1 at 10 ms.
        let buckets = [bucket(10.0, 900), bucket(100.0, 90), bucket(1000.0, 9), bucket(10_000.0, 1)];
        let points = spectrum(&buckets);
        assert_eq!(points.len(), 3 * 50 + 1, "50 points a nine over 3 nines, and the slowest");
        assert_eq!(points[0], (0.0, 10.0));
        let at = |x: f64| points.iter().find(|p| (p.0 - x).abs() < 1e-9).expect("a point there").1;
        assert_eq!(at(1.0), 10.0, "p90 is the 900th reply");
        assert_eq!(at(1.02), 100.0, "just past p90");
        assert_eq!(at(2.0), 100.0, "p99 is the 990th");
        assert_eq!(*points.last().unwrap(), (3.0, 10_000.0), "the slowest at log10(1000)");
        assert!(points.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1), "never falls");
        assert!(spectrum(&[]).is_empty());
    }

    #[test]
    fn the_log_axis_spans_whole_decades() {
        assert_eq!(decades(&[38_000.0, 60.0]), 10.0..100_000.0);
        assert_eq!(decades(&[500.0]), 100.0..1000.0);
        assert_eq!(decades(&[1000.0]), 1000.0..10_000.0);
        assert_eq!(decades(&[100.0, 10_000.0]), 100.0..100_000.0);
        assert_eq!(decades(&[]), 1.0..10.0);
        assert_eq!(decades(&[0.0, f64::NAN]), 1.0..10.0);
    }
}
