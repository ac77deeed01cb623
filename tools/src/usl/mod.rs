//! `weir usl`: fitting Gunther's Universal Scalability Law to measured throughput.
//!
//! [`fit`] owns the model and the solver, [`plot`] the SVG, [`sweep`] `weir usl sweep` (which
//! measures the points with `weir bench` before it fits them). This file holds the `weir usl`
//! subcommands' grammar (the top-level grammar in `args.rs` names [`UslCommand`]), the parser of
//! `N:throughput` points, the text report and the runner. `weir usl fit` is offline: it talks to
//! no broker, and its only I/O is stdout and the files named by `--plot` and `--json`.

pub mod fit;
pub mod plot;
pub mod sweep;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use fit::{Peak, Point, UslFit};

/// The `weir usl` subcommands.
#[derive(Debug, Subcommand)]
pub enum UslCommand {
    /// Fit C(N) = λN / (1 + α(N−1) + βN(N−1)) to measured points by nonlinear least squares;
    /// print each point with its fitted value and residual, then λ, α, β, R² and the peak N*.
    Fit(UslFitArgs),
    /// Run `weir bench` at each N of --values (producers, partitions or shards), --repeats times
    /// each, print each N's mean throughput, spread, broker CPU and forwarded requests, and fit
    /// the USL to every run as `weir usl fit` does.
    Sweep(Box<sweep::UslSweepArgs>),
}

/// Arguments of `weir usl fit`.
#[derive(Debug, Args)]
pub struct UslFitArgs {
    /// The measured points as N:throughput, comma-separated or repeated (e.g.
    /// 1:1000,2:1980,4:3800). N is a whole number from 1; throughput is positive, in any unit.
    /// At least three distinct N; repeats of one N are all fitted.
    #[arg(long, required = true, value_name = "N:THROUGHPUT,...", value_delimiter = ',', value_parser = parse_point)]
    pub points: Vec<Point>,
    /// Also draw the points and the fitted curve into this SVG file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Also write the fit (parameters, R², peak, every point) as JSON into this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Parses one `N:throughput` point.
pub fn parse_point(text: &str) -> Result<Point, String> {
    let (concurrency, throughput) = text
        .split_once(':')
        .ok_or_else(|| format!("expected N:throughput, got {text:?}"))?;
    let concurrency: u32 = concurrency
        .trim()
        .parse()
        .map_err(|_| format!("N must be a whole number from 1, got {concurrency:?} in {text:?}"))?;
    let throughput: f64 = throughput
        .trim()
        .parse()
        .map_err(|_| format!("throughput must be a number, got {throughput:?} in {text:?}"))?;
    Ok(Point {
        concurrency,
        throughput,
    })
}

/// Runs a `weir usl` command; `broker` is used by `sweep --over producers|partitions` only.
pub async fn run(broker: &str, command: UslCommand) -> anyhow::Result<()> {
    match command {
        UslCommand::Fit(arguments) => run_fit(&arguments),
        UslCommand::Sweep(arguments) => sweep::run(broker, &arguments).await,
    }
}

fn run_fit(arguments: &UslFitArgs) -> anyhow::Result<()> {
    let fitted = fit::fit(&arguments.points)?;
    let mut out = std::io::stdout().lock();
    write_report(&mut out, &fitted).context("writing the report to stdout")?;
    if let Some(path) = &arguments.plot {
        plot::write_svg(&fitted, path)?;
        eprintln!("wrote the plot to {}", path.display());
    }
    if let Some(path) = &arguments.json {
        write_json(&fitted, path)?;
        eprintln!("wrote the fit to {}", path.display());
    }
    Ok(())
}

/// Writes the fit as pretty-printed JSON to `path`.
pub fn write_json(fitted: &UslFit, path: &Path) -> anyhow::Result<()> {
    let mut json = serde_json::to_string_pretty(fitted).context("encoding the fit as JSON")?;
    json.push('\n');
    std::fs::write(path, json).with_context(|| format!("writing the fit to {}", path.display()))
}

/// Writes the human-readable report: a table of the points, then the parameters and the peak.
pub fn write_report(out: &mut impl Write, fitted: &UslFit) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>6}  {:>14}  {:>14}  {:>12}  {:>9}",
        "N", "measured", "fitted", "residual", "residual%"
    )?;
    for point in &fitted.points {
        writeln!(
            out,
            "{:>6}  {:>14.2}  {:>14.2}  {:>12.2}  {:>8.2}%",
            point.concurrency,
            point.measured,
            point.fitted,
            point.residual,
            100.0 * point.residual / point.measured
        )?;
    }
    let parameters = &fitted.parameters;
    writeln!(out)?;
    writeln!(
        out,
        "lambda = {:.4}  (throughput at N = 1)",
        parameters.lambda
    )?;
    writeln!(out, "alpha  = {:.6}  (contention)", parameters.alpha)?;
    writeln!(out, "beta   = {:.8}  (coherency)", parameters.beta)?;
    match fitted.r_squared {
        Some(r_squared) => writeln!(out, "R^2    = {r_squared:.6}")?,
        None => writeln!(
            out,
            "R^2    = undefined (every measured throughput is equal)"
        )?,
    }
    let concurrency_max = fitted
        .points
        .iter()
        .map(|point| point.concurrency)
        .max()
        .unwrap_or(1);
    match fitted.peak {
        Peak::At {
            concurrency,
            throughput,
        } => {
            let where_ = if concurrency > f64::from(concurrency_max) {
                format!(", beyond the largest measured N = {concurrency_max}: extrapolated")
            } else {
                String::new()
            };
            writeln!(
                out,
                "N*     = {concurrency:.1}  (peak throughput {throughput:.2}{where_})"
            )
        }
        Peak::None {
            ceiling: Some(ceiling),
        } => writeln!(
            out,
            "N*     = none: beta is 0, so throughput never falls; it approaches lambda/alpha = {ceiling:.2}"
        ),
        Peak::None { ceiling: None } => writeln!(
            out,
            "N*     = none: alpha and beta are 0, so throughput grows linearly"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fit::UslParameters;

    /// A minimal parser holding only the `usl` subcommands, so this grammar is tested apart
    /// from the rest of the command line.
    #[derive(Debug, clap::Parser)]
    struct UslOnly {
        #[command(subcommand)]
        command: UslCommand,
    }

    fn parse(args: &[&str]) -> Result<UslFitArgs, clap::Error> {
        use clap::Parser;
        let parsed = UslOnly::try_parse_from(std::iter::once("usl").chain(args.iter().copied()))?;
        match parsed.command {
            UslCommand::Fit(arguments) => Ok(arguments),
            other => panic!("expected usl fit, got {other:?}"),
        }
    }

    fn point(concurrency: u32, throughput: f64) -> Point {
        Point {
            concurrency,
            throughput,
        }
    }

    #[test]
    fn points_parse_comma_separated_and_repeated() {
        let arguments = parse(&["fit", "--points", "1:1000,2:1980.5", "--points", "4: 3800"])
            .expect("valid command line");
        assert_eq!(
            arguments.points,
            vec![point(1, 1000.0), point(2, 1980.5), point(4, 3800.0)]
        );
        assert_eq!(arguments.plot, None);
        assert_eq!(arguments.json, None);
        let arguments = parse(&[
            "fit",
            "--points",
            "1:1,2:2,3:3",
            "--plot",
            "a.svg",
            "--json",
            "a.json",
        ])
        .expect("valid command line");
        assert_eq!(arguments.plot, Some(PathBuf::from("a.svg")));
        assert_eq!(arguments.json, Some(PathBuf::from("a.json")));
    }

    #[test]
    fn weir_usl_fit_parses_through_the_top_level_grammar_without_a_broker_flag() {
        use clap::Parser;
        let cli =
            crate::args::Cli::try_parse_from(["weir", "usl", "fit", "--points", "1:10,2:19,4:30"])
                .expect("valid command line");
        let crate::args::Command::Usl(UslCommand::Fit(arguments)) = cli.command else {
            panic!("expected usl fit, got {:?}", cli.command);
        };
        assert_eq!(arguments.points.len(), 3);
        for args in [&["usl", "--help"][..], &["usl", "fit", "--help"]] {
            let error = crate::args::Cli::try_parse_from(
                std::iter::once("weir").chain(args.iter().copied()),
            )
            .expect_err("--help exits through clap");
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{args:?}"
            );
            assert!(
                error.to_string().contains("Universal Scalability Law")
                    || error.to_string().contains("λN"),
                "{error}"
            );
        }
    }

    #[test]
    fn malformed_points_are_rejected_by_the_parser() {
        for text in ["", "1", "1:", ":5", "a:5", "-1:5", "1.5:5", "1:fast", "1=5"] {
            assert!(parse_point(text).is_err(), "{text:?} should be rejected");
        }
        assert!(parse(&["fit"]).is_err(), "--points is required");
        // Values the syntax allows but the fit refuses come through, for the fit to explain.
        assert_eq!(parse_point("0:5"), Ok(point(0, 5.0)));
        assert_eq!(parse_point("3:-5"), Ok(point(3, -5.0)));
    }

    #[test]
    fn the_report_lists_every_point_then_the_parameters() {
        let truth = UslParameters {
            lambda: 1000.0,
            alpha: 0.02,
            beta: 0.0005,
        };
        let points: Vec<Point> = [1, 2, 4, 8]
            .into_iter()
            .map(|concurrency| point(concurrency, truth.throughput(f64::from(concurrency))))
            .collect();
        let fitted = fit::fit(&points).expect("fit");
        let mut report = Vec::new();
        write_report(&mut report, &fitted).expect("write to memory");
        let report = String::from_utf8(report).expect("UTF-8");
        let lines: Vec<&str> = report.lines().collect();
        assert!(lines[0].contains("residual%"), "{report}");
        assert!(lines[1].trim_start().starts_with("1 "), "{report}");
        assert!(lines[4].trim_start().starts_with("8 "), "{report}");
        for needle in [
            "lambda = 1000.0000",
            "alpha  = 0.020000",
            "beta   = 0.00050000",
            "R^2    = 1.000000",
            "N*     = 44.3",
            "beyond the largest measured N = 8",
        ] {
            assert!(
                report.contains(needle),
                "report lacks {needle:?}:\n{report}"
            );
        }
    }

    #[test]
    fn the_json_file_holds_parameters_peak_and_points() {
        let points = [
            point(1, 100.0),
            point(2, 190.0),
            point(4, 330.0),
            point(8, 480.0),
        ];
        let fitted = fit::fit(&points).expect("fit");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("usl.json");
        write_json(&fitted, &path).expect("write JSON");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("written"))
                .expect("valid JSON");
        let parameters = fitted.parameters;
        for (name, expected) in [
            ("lambda", parameters.lambda),
            ("alpha", parameters.alpha),
            ("beta", parameters.beta),
        ] {
            let found = json["parameters"][name].as_f64().expect("a number");
            // serde_json's default float parsing may differ from the printed value in the
            // last bit.
            assert!(
                (found - expected).abs() <= 1e-12 * expected.abs(),
                "{name}: {found}"
            );
        }
        assert_eq!(json["points"].as_array().map(Vec::len), Some(4));
        assert_eq!(json["points"][3]["concurrency"], 8);
        assert_eq!(json["points"][3]["measured"], 480.0);
        assert!(json["peak"]["kind"].is_string(), "{json}");
    }
}
