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
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let size = (900, 520);
    match ext.as_str() {
        "png" => draw(BitMapBackend::new(path, size).into_drawing_area(), series),
        "svg" => draw(SVGBackend::new(path, size).into_drawing_area(), series),
        _ => bail!("plot file {} must end in .png or .svg", path.display()),
    }
    .with_context(|| format!("cannot draw {}", path.display()))
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
