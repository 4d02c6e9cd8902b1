//! Figures from experiment summaries (`mfr-sae plot`): λ on a log axis (λ = 0 at
//! a marked position left of the smallest λ > 0) against truth recovery and the
//! loss, mean ± sd over seeds as error bars, one series per summary (e.g. the
//! matched and the max form); and training curves per arm from the run folders'
//! `metrics.jsonl`. SVG only (plotters' SVG backend: text is SVG <text>, no font
//! files), native only.
//!
//! Owns the drawing; the numbers come from `experiment::{Summary, RealSummary}`.

use crate::error::{Error, Result};
use crate::experiment::{RealSummary, Stat, Summary};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One summary file, read: its label (the legend's) and its points.
pub struct Series {
    pub label: String,
    /// Per λ: metric → mean ± sd over seeds.
    pub points: Vec<(f32, BTreeMap<String, Stat>)>,
    /// The experiment's folder (run folders `seed-S/lambda-L` beneath it).
    pub dir: PathBuf,
}

/// The figure's size in pixels.
const SIZE: (u32, u32) = (720, 440);
/// λ = 0 is drawn this many decades left of the smallest λ > 0.
const ZERO_DECADES: f64 = 1.0;

impl Series {
    /// Reads a synthetic or a real-data `summary.json`; the label is the MMCS form
    /// and the generator or data kind, unless given.
    pub fn read(path: &Path, label: Option<String>) -> Result<Series> {
        let io = |message: String| Error::Io {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        // A synthetic summary has its table at the top level, under "rows" (a real-data
        // one may hold a "rows" count deeper down, in its data description).
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| io(format!("not JSON: {e}")))?;
        if value.get("rows").is_some() {
            let s: Summary =
                serde_json::from_value(value).map_err(|e| io(format!("not a synthetic experiment summary: {e}")))?;
            let label = label.unwrap_or_else(|| format!("{:?}", s.experiment.ensemble.mfr.form).to_lowercase());
            let points = s.rows.iter().map(|r| (r.lambda, r.stats.clone())).collect();
            return Ok(Series { label, points, dir });
        }
        let s: RealSummary = serde_json::from_value(value)
            .map_err(|e| io(format!("neither a synthetic nor a real-data experiment summary: {e}")))?;
        let label = label.unwrap_or_else(|| format!("{:?}", s.experiment.ensemble.mfr.form).to_lowercase());
        let mut lambdas: Vec<f32> = s.runs.iter().map(|r| r.lambda).collect();
        lambdas.dedup();
        let points = lambdas
            .into_iter()
            .map(|l| {
                let runs: Vec<_> = s.runs.iter().filter(|r| r.lambda == l).collect();
                let of = |f: &dyn Fn(&crate::experiment::RealRun) -> f64| {
                    Stat::of(&runs.iter().map(|r| f(r)).collect::<Vec<_>>())
                };
                let mut stats = BTreeMap::new();
                stats.insert(
                    "held_out_mse".to_string(),
                    of(&|r| r.held_out_mse.iter().sum::<f64>() / r.held_out_mse.len() as f64),
                );
                stats.insert("dead_fraction".to_string(), of(&|r| r.values["dead_fraction"]));
                (l, stats)
            })
            .collect();
        Ok(Series { label, points, dir })
    }
}

/// Where λ is drawn: log10 λ, and λ = 0 `ZERO_DECADES` left of the smallest λ > 0.
fn lambda_axis(series: &[Series]) -> impl Fn(f32) -> f64 {
    let smallest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .filter(|&l| l > 0.0)
        .fold(f32::INFINITY, f32::min);
    let zero = if smallest.is_finite() {
        f64::from(smallest).log10() - ZERO_DECADES
    } else {
        0.0
    };
    move |l: f32| if l > 0.0 { f64::from(l).log10() } else { zero }
}

fn plot_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: format!("drawing the figure: {e}"),
    }
}

/// λ against one metric (mean ± sd error bars), one series per summary, into `path`.
pub fn lambda_figure(series: &[Series], metric: &str, title: &str, path: &Path) -> Result<()> {
    let x_of = lambda_axis(series);
    let points: Vec<Vec<(f64, Stat)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .filter_map(|(l, stats)| stats.get(metric).map(|st| (x_of(*l), *st)))
                .filter(|(_, st)| st.mean.is_finite())
                .collect()
        })
        .collect();
    let all: Vec<&(f64, Stat)> = points.iter().flatten().collect();
    if all.is_empty() {
        return Err(Error::Config(format!("no summary has the metric {metric}")));
    }
    let zero = x_of(0.0);
    let (x0, x1) = all.iter().fold((zero, zero), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
        (a.min(p.1.mean - p.1.sd), b.max(p.1.mean + p.1.sd))
    });
    let pad = ((y1 - y0) * 0.1).max(1e-6);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let err = |e| plot_error(path, e);
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((x0 - 0.3)..(x1 + 0.3), (y0 - pad)..(y1 + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("λ (log axis; 0 at the left mark)")
        .y_desc(metric)
        .light_line_style(WHITE)
        .x_label_formatter(&|x| match *x < zero + 0.5 {
            true => String::new(),
            false => format!("{:.3}", 10f64.powf(*x)),
        })
        .draw()
        .map_err(err)?;
    // The λ = 0 mark: a dashed vertical line.
    chart
        .draw_series(DashedLineSeries::new(
            vec![(zero, y0 - pad), (zero, y1 + pad)],
            4,
            4,
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(err)?;
    chart
        .draw_series(std::iter::once(Text::new(
            "λ = 0",
            (zero + 0.03, y1 + pad * 0.6),
            ("sans-serif", 13),
        )))
        .map_err(err)?;
    for (i, (s, pts)) in series.iter().zip(&points).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(x, st)| (*x, st.mean)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|(x, st)| ErrorBar::new_vertical(*x, st.mean - st.sd, st.mean, st.mean + st.sd, color, 8)),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Training curves: MSE (mean over the SAEs and seeds) against step, one line per
/// (series, λ), from the run folders' `metrics.jsonl`.
pub fn curves_figure(series: &[Series], path: &Path) -> Result<()> {
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for s in series {
        for (lambda, _) in &s.points {
            let mut by_step: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
            for seed in std::fs::read_dir(&s.dir).into_iter().flatten().flatten() {
                let file = seed.path().join(format!("lambda-{lambda}")).join("metrics.jsonl");
                let Ok(text) = std::fs::read_to_string(&file) else {
                    continue;
                };
                for line in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Io {
                        path: file.display().to_string(),
                        message: format!("not a metrics line: {e}"),
                    })?;
                    if let (Some(step), Some(mse)) = (v["step"].as_u64(), v["mse"].as_f64()) {
                        let e = by_step.entry(step).or_insert((0.0, 0));
                        *e = (e.0 + mse, e.1 + 1);
                    }
                }
            }
            if !by_step.is_empty() {
                let pts = by_step
                    .into_iter()
                    .map(|(st, (sum, n))| (st as f64, sum / n as f64))
                    .collect();
                lines.push((format!("{} λ={lambda}", s.label), pts));
            }
        }
    }
    if lines.is_empty() {
        return Err(Error::Io {
            path: series.first().map_or(String::new(), |s| s.dir.display().to_string()),
            message: "no run folder with a metrics.jsonl beside the summaries".into(),
        });
    }
    let all = lines.iter().flat_map(|l| l.1.iter());
    let (x1, y0, y1) = all.fold((1.0f64, f64::INFINITY, f64::NEG_INFINITY), |(x, a, b), p| {
        (x.max(p.0), a.min(p.1), b.max(p.1))
    });
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let err = |e| plot_error(path, e);
    root.fill(&WHITE).map_err(err)?;
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "training curves: MSE of the log window (mean over SAEs and seeds)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x1, (y0 - pad)..(y1 + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("MSE")
        .draw()
        .map_err(err)?;
    for (i, (label, pts)) in lines.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Every figure the summaries support, into `out`; returns the files written.
pub fn plot(series: &[Series], out: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        message: e.to_string(),
    })?;
    let figures = [
        (
            "truth_mmcs_match",
            "truth recovery (matched MMCS to the true features)",
            "lambda_truth.svg",
        ),
        (
            "truth_recovered",
            "fraction of true features recovered (cos > 0.9)",
            "lambda_recovered.svg",
        ),
        ("mse", "MSE (synthetic: newly drawn batches)", "lambda_mse.svg"),
        (
            "held_out_mse",
            "held-out MSE (mean over the SAEs)",
            "lambda_held_out.svg",
        ),
        ("dead_fraction", "dead fraction", "lambda_dead.svg"),
    ];
    let mut written = Vec::new();
    for (metric, title, file) in figures {
        let has = series.iter().any(|s| s.points.iter().any(|p| p.1.contains_key(metric)));
        if has {
            let path = out.join(file);
            lambda_figure(series, metric, title, &path)?;
            written.push(path);
        }
    }
    let path = out.join("curves.svg");
    curves_figure(series, &path)?;
    written.push(path);
    Ok(written)
}
