//! PNG line charts (loss curves, precision-recall curves), drawn with plotters into a bitmap.
//!
//! Text is rendered with ab_glyph from DejaVu Sans (Debian's fonts-dejavu-core, which
//! `scripts/setup.sh` installs and the plugin's overlay uses too), so charts look the same on every
//! machine and no system font lookup (fontconfig) is needed.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// The font every chart uses.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (900, 600);

/// Draws `series` (name, points) as lines into a PNG at `path`. Non-finite points are skipped and
/// series left without points are left out; an error when nothing at all is left to draw.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    line_chart_in(path, title, x_label, y_label, series, None, None)
}

/// [`line_chart`] with fixed axis ranges where given (e.g. 0..1 for precision and recall), else
/// ranges fitted to the data.
pub fn line_chart_in(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
    x_range: Option<Range<f64>>,
    y_range: Option<Range<f64>>,
) -> Result<()> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let finite = pts
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            (*name, finite.collect::<Vec<_>>())
        })
        .filter(|(_, pts)| !pts.is_empty())
        .collect();
    if series.is_empty() {
        bail!("nothing to plot for '{title}': no series has a finite point");
    }
    ensure_font()?;
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let x = x_range.unwrap_or_else(|| padded_range(all().map(|p| p.0), 0.0));
    let y = y_range.unwrap_or_else(|| padded_range(all().map(|p| p.1), 0.05));
    if !(x.start < x.end && y.start < y.end) {
        bail!("empty axis range for '{title}': x {x:?}, y {y:?}");
    }
    let legend_at = legend_corner(all(), &x, &y);

    let plot_err = |e: &dyn std::fmt::Display| anyhow!("drawing chart {}: {e}", path.display());
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(|e| plot_err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| plot_err(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = series_colour(i);
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| plot_err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| plot_err(&e))?;
    root.present().map_err(|e| plot_err(&e))
}

/// Distinct colours for the first few series (easy/medium/hard, train/val), then plotters' palette.
fn series_colour(i: usize) -> RGBColor {
    const FIRST: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
    ];
    FIRST.get(i).copied().unwrap_or_else(|| {
        let (r, g, b) = Palette99::pick(i).rgb();
        RGBColor(r, g, b)
    })
}

/// Min..max of the values with `pad` of the span on each side; a single value gets ±1 (or ±10 %).
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let span = hi - lo;
    if span > 0.0 {
        (lo - span * pad)..(hi + span * pad)
    } else {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - d)..(hi + d)
    }
}

/// The corner whose quarter of the plot holds the fewest points, so the legend hides little.
fn legend_corner<'a>(
    points: impl Iterator<Item = &'a (f64, f64)>,
    x: &Range<f64>,
    y: &Range<f64>,
) -> SeriesLabelPosition {
    let mut counts = [0usize; 4]; // upper right, lower left, upper left, lower right
    for &(px, py) in points {
        let fx = (px - x.start) / (x.end - x.start);
        let fy = (py - y.start) / (y.end - y.start);
        let (left, right, low, high) = (fx < 0.4, fx > 0.6, fy < 0.35, fy > 0.65);
        counts[0] += usize::from(right && high);
        counts[1] += usize::from(left && low);
        counts[2] += usize::from(left && high);
        counts[3] += usize::from(right && low);
    }
    let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
    [
        SeriesLabelPosition::UpperRight,
        SeriesLabelPosition::LowerLeft,
        SeriesLabelPosition::UpperLeft,
        SeriesLabelPosition::LowerRight,
    ][best]
        .clone()
}

/// Registers [`FONT`] with plotters once per process (plotters keeps the bytes for the process's
/// lifetime, hence the one-time leak).
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| register(Path::new(FONT)))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn register(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the chart font {} ({e}): install Debian's fonts-dejavu-core \
             (scripts/setup.sh does)",
            path.display()
        )
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| {
        format!(
            "{} is not a usable TrueType font: reinstall fonts-dejavu-core",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_the_series_colours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let train: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64, 10.0 / (1.0 + i as f64)))
            .collect();
        let mut val: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64, 12.0 / (1.0 + i as f64)))
            .collect();
        val[7].1 = f64::NAN; // skipped, not a panic
        let series = [("train", train), ("val", val), ("empty", vec![])];
        line_chart(&path, "Loss", "epoch", "loss", &series).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SIZE);
        for i in 0..2 {
            let RGBColor(r, g, b) = series_colour(i);
            let n = img.pixels().filter(|p| p.0 == [r, g, b]).count();
            assert!(n > 100, "series {i}: only {n} pixels of its colour");
        }
        // Text was rendered: many dark grey/black pixels besides the axes.
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
        assert!(dark > 2000, "{dark} dark pixels");
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let err = line_chart(&path, "t", "x", "y", &[]).unwrap_err();
        assert!(err.to_string().contains("nothing to plot"), "{err}");
        let nan = [("a", vec![(f64::NAN, 1.0), (0.0, f64::INFINITY)])];
        assert!(line_chart(&path, "t", "x", "y", &nan).is_err());
        assert!(!path.exists());
        // A single point is drawable (degenerate ranges are widened).
        line_chart(&path, "t", "x", "y", &[("a", vec![(1.0, 1.0)])]).unwrap();
    }

    #[test]
    fn missing_font_names_the_package() {
        let err = register(Path::new("/nonexistent/DejaVuSans.ttf")).unwrap_err();
        assert!(err.contains("fonts-dejavu-core"), "{err}");
    }

    #[test]
    fn legend_avoids_the_data() {
        // A loss-like curve from upper left to lower right: upper right is free.
        let pts: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 9.0 - i as f64)).collect();
        let r = padded_range(pts.iter().map(|p| p.0), 0.0);
        assert_eq!(r, 0.0..9.0);
        let pos = legend_corner(pts.iter(), &r, &(-1.0..10.0));
        assert!(matches!(pos, SeriesLabelPosition::UpperRight));
    }
}
