//! Plots (PNG or SVG by file extension) with plotters. Text uses an embedded DejaVu Sans so
//! that plots render the same on machines without system fonts.

use anyhow::{bail, Context};
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// Per-layer expert weight-norm profiles, one line per checkpoint (dense layers skipped).
pub fn norm_profiles(path: &Path, series: &[(String, Vec<Option<f64>>)]) -> anyhow::Result<()> {
    register_font();
    match Format::of(path)? {
        Format::Png => draw(BitMapBackend::new(path, SIZE).into_drawing_area(), series),
        Format::Svg => draw(SVGBackend::new(path, SIZE).into_drawing_area(), series),
    }
    .with_context(|| format!("cannot draw {}", path.display()))
}

/// Every plot is 900 × 520.
const SIZE: (u32, u32) = (900, 520);

/// The image format a plot path asks for.
enum Format {
    Png,
    Svg,
}

impl Format {
    fn of(path: &Path) -> anyhow::Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        match ext.as_str() {
            "png" => Ok(Format::Png),
            "svg" => Ok(Format::Svg),
            _ => bail!("plot file {} must end in .png or .svg", path.display()),
        }
    }
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    series: &[(String, Vec<Option<f64>>)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let layers = series
        .iter()
        .map(|(_, v)| v.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().cloned())
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (lo, hi) = if values.is_empty() {
        (0.0, 1.0)
    } else {
        (lo, hi)
    };
    // Start at zero so that the profile's shape reads as a ratio, not as noise around its mean.
    let (lo, hi) = (lo.min(0.0), hi.max(lo + 1e-9));
    let pad = (hi - lo) * 0.08;
    let mut chart = ChartBuilder::on(&area)
        .caption("Expert weight-norm profile", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(layers as f64 - 0.5), lo..(hi + pad))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("layer")
        .x_labels(layers.min(30))
        .x_label_formatter(&|x| format!("{:.0}", x))
        .y_desc("mean ||W||_F / sqrt(numel)")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (name, v)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .filter_map(|(l, x)| x.map(|x| (l as f64, x)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    area.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// A line chart of several `(x, y)` series with optional horizontal reference lines (loss
/// curves against steps or FLOPs, with the unigram baseline drawn across).
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    hlines: &[(String, f64)],
) -> anyhow::Result<()> {
    lines_marked(path, title, x_desc, y_desc, series, hlines, &[])
}

/// [`lines`] plus `marks`: points drawn as open circles (growth points on a loss curve).
pub fn lines_marked(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    hlines: &[(String, f64)],
    marks: &[(f64, f64)],
) -> anyhow::Result<()> {
    register_font();
    let args = LineArgs {
        title,
        x_desc,
        y_desc,
        series,
        hlines,
        marks,
    };
    match Format::of(path)? {
        Format::Png => draw_lines(BitMapBackend::new(path, SIZE).into_drawing_area(), &args),
        Format::Svg => draw_lines(SVGBackend::new(path, SIZE).into_drawing_area(), &args),
    }
    .with_context(|| format!("cannot draw {}", path.display()))
}

struct LineArgs<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    series: &'a [(String, Vec<(f64, f64)>)],
    hlines: &'a [(String, f64)],
    marks: &'a [(f64, f64)],
}

fn draw_lines<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    a: &LineArgs,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("{e}");
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let pts = a.series.iter().flat_map(|(_, v)| v.iter().cloned());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in pts.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    for (_, y) in a.hlines {
        (y0, y1) = (y0.min(*y), y1.max(*y));
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let x1 = x1.max(x0 + 1e-9);
    let pad = (y1 - y0).max(1e-9) * 0.06;
    let mut chart = ChartBuilder::on(&area)
        .caption(a.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(a.x_desc)
        .y_desc(a.y_desc)
        .x_label_formatter(&|x| {
            if x.abs() >= 1e5 {
                format!("{x:.1e}")
            } else if x1 - x0 < 10.0 {
                format!("{x:.2}")
            } else {
                format!("{x:.0}")
            }
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, v)) in a.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(v.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    if !a.marks.is_empty() {
        chart
            .draw_series(
                a.marks
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 6, BLACK.stroke_width(2))),
            )
            .map_err(|e| err(&e))?
            .label("growth point")
            .legend(|(x, y)| Circle::new((x + 9, y), 5, BLACK.stroke_width(2)));
    }
    for (i, (name, y)) in a.hlines.iter().enumerate() {
        let shade = 60 + 50 * (i as u8 % 3);
        let color = RGBColor(shade, shade, shade).to_rgba();
        let y = *y;
        chart
            .draw_series(LineSeries::new(
                vec![(x0, y), (x1, y)],
                color.stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label(name.clone())
            .legend(move |(x, yy)| {
                PathElement::new(vec![(x, yy), (x + 18, yy)], color.stroke_width(1))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    area.present().map_err(|e| err(&e))?;
    Ok(())
}
