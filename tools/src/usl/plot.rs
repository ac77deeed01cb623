//! Drawing a USL fit as an SVG: the measured points and the fitted curve on linear axes, with
//! λ, α and β in the caption.
//!
//! The picture is rendered into memory first and then written with one `std::fs::write`, so a
//! failed render leaves no file and a failed write names the path and the OS error.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::fit::UslFit;

/// The size of the picture, in SVG pixels.
const PLOT_PIXELS: (u32, u32) = (900, 600);

/// Samples along the fitted curve.
const CURVE_SAMPLES_COUNT: u32 = 400;

/// The label of the horizontal axis.
pub const X_AXIS_LABEL: &str = "N (concurrency)";

/// The label of the vertical axis.
pub const Y_AXIS_LABEL: &str = "throughput";

/// Why the plot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// plotters refused to draw (it reports its errors as text).
    #[error("cannot draw the USL plot: {message}")]
    Render {
        /// plotters' description of the failure.
        message: String,
    },
    /// The SVG could not be written.
    #[error("cannot write the USL plot to {}: {source}", path.display())]
    Write {
        /// Where the SVG was to go.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The caption: the model and its fitted parameters.
pub fn caption(fit: &UslFit) -> String {
    let parameters = &fit.parameters;
    format!(
        "USL fit: λ = {:.1}, α = {:.4}, β = {:.6}",
        parameters.lambda, parameters.alpha, parameters.beta
    )
}

/// Renders `fit` as an SVG document.
pub fn render_svg(fit: &UslFit) -> Result<String, PlotError> {
    let mut svg = String::new();
    draw(fit, &mut svg).map_err(|message| PlotError::Render { message })?;
    Ok(svg)
}

/// Renders `fit` and writes the SVG to `path`.
pub fn write_svg(fit: &UslFit, path: &Path) -> Result<(), PlotError> {
    let svg = render_svg(fit)?;
    std::fs::write(path, svg).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn draw(fit: &UslFit, svg: &mut String) -> Result<(), String> {
    let concurrency_max = fit
        .points
        .iter()
        .map(|point| f64::from(point.concurrency))
        .fold(1.0, f64::max);
    let x_max = concurrency_max * 1.1;
    let curve: Vec<(f64, f64)> = (0..=CURVE_SAMPLES_COUNT)
        .map(|sample| {
            let concurrency =
                1.0 + (x_max - 1.0) * f64::from(sample) / f64::from(CURVE_SAMPLES_COUNT);
            (concurrency, fit.parameters.throughput(concurrency))
        })
        .collect();
    let y_max = fit
        .points
        .iter()
        .map(|point| point.measured)
        .chain(curve.iter().map(|(_, throughput)| *throughput))
        .fold(0.0, f64::max)
        * 1.1;

    let root = SVGBackend::with_string(svg, PLOT_PIXELS).into_drawing_area();
    root.fill(&WHITE).map_err(|error| error.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption(fit), ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|error| error.to_string())?;
    chart
        .configure_mesh()
        .x_desc(X_AXIS_LABEL)
        .y_desc(Y_AXIS_LABEL)
        .draw()
        .map_err(|error| error.to_string())?;
    chart
        .draw_series(LineSeries::new(curve, BLUE.stroke_width(2)))
        .map_err(|error| error.to_string())?
        .label("fitted")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(fit.points.iter().map(|point| {
            Circle::new(
                (f64::from(point.concurrency), point.measured),
                4,
                RED.filled(),
            )
        }))
        .map_err(|error| error.to_string())?
        .label("measured")
        .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(|error| error.to_string())?;
    root.present().map_err(|error| error.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usl::fit::{fit, Point, UslParameters};

    fn example_fit() -> UslFit {
        let truth = UslParameters {
            lambda: 1000.0,
            alpha: 0.02,
            beta: 0.0005,
        };
        let points: Vec<Point> = [1, 2, 4, 8, 16, 32]
            .into_iter()
            .map(|concurrency| Point {
                concurrency,
                throughput: truth.throughput(f64::from(concurrency)),
            })
            .collect();
        fit(&points).expect("fit")
    }

    #[test]
    fn the_svg_file_holds_caption_axes_points_and_curve() {
        let fit = example_fit();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("usl.svg");
        write_svg(&fit, &path).expect("write the plot");
        let svg = std::fs::read_to_string(&path).expect("the plot was written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for needle in [
            "USL fit: λ = 1000.0, α = 0.0200, β = 0.000500",
            X_AXIS_LABEL,
            Y_AXIS_LABEL,
            "measured",
            "fitted",
            "<circle",
            "<polyline",
        ] {
            assert!(svg.contains(needle), "the SVG lacks {needle:?}");
        }
        // One circle per measured point, one more in the legend.
        assert_eq!(svg.matches("<circle").count(), fit.points.len() + 1);
    }

    #[test]
    fn an_unwritable_path_is_reported_with_the_path() {
        let fit = example_fit();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing-directory").join("usl.svg");
        let error = write_svg(&fit, &path).expect_err("the directory does not exist");
        assert!(matches!(error, PlotError::Write { .. }), "{error:?}");
        assert!(error.to_string().contains("missing-directory"), "{error}");
    }
}
