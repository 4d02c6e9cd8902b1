//! What an experiment reports: each run reduced to its numbers, the seeds of a λ
//! to mean ± sd, the real-data headline (held-out loss against the same seed's
//! baseline), and the tables printed from a summary.
//!
//! Owns no training (`mod.rs`) and no grid (`sweep.rs`).

use super::presets::{RealExperiment, SyntheticExperiment};
use super::stats::{PairedTest, Stat};
use crate::metrics;
use crate::train::{self, LogRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One trained ensemble at its last log, each value the mean over its SAEs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub lambda: f32,
    pub seed: u64,
    /// Metric name → value, in `METRICS` order.
    pub values: BTreeMap<String, f64>,
    pub reinits: usize,
    /// Steps trained (below the cap where the convergence rule stopped the run; 0 in
    /// summaries from before it was recorded).
    #[serde(default)]
    pub steps: u64,
}

/// The reported metrics: key and column title.
pub const METRICS: [(&str, &str); 10] = [
    ("mse", "MSE"),
    ("fvu", "FVU"),
    ("l0", "L0"),
    ("dead_fraction", "dead"),
    ("pair_mmcs_match", "pair MMCS match"),
    ("pair_mmcs_max", "pair MMCS max"),
    ("truth_mmcs_match", "truth MMCS match"),
    ("truth_mmcs_max", "truth MMCS max"),
    ("truth_recovered", "recovered>0.9"),
    ("truth_mmcs_match_init", "truth match @init"),
];

/// All seeds of one λ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub lambda: f32,
    pub stats: BTreeMap<String, Stat>,
    pub runs: Vec<RunResult>,
}

/// What `summary.json` holds: the experiment, one row per λ, and `baseline`
/// (λ = 0) and `mfr` (the largest λ) as named entries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub experiment: SyntheticExperiment,
    pub rows: Vec<Row>,
    pub runs: BTreeMap<String, Row>,
    /// Per λ > 0 and metric: the paired test of (λ − baseline) on each seed (empty in
    /// summaries from before it was recorded).
    #[serde(default)]
    pub paired: Vec<Paired>,
}

/// One metric at one λ against the baseline of the same seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub lambda: f32,
    pub metric: String,
    pub test: PairedTest,
}

/// The metrics the paired table shows (the recovery of the truth, the loss, dead latents).
pub const PAIRED_METRICS: [&str; 4] = ["truth_mmcs_match", "truth_recovered", "mse", "dead_fraction"];

impl Summary {
    /// Groups `runs` (λ-major, as the sweep ran them) into one row per λ, and names
    /// `baseline` (λ = 0) and `mfr` (the largest λ).
    pub fn of(exp: &SyntheticExperiment, runs: Vec<RunResult>) -> Summary {
        let mut rows: Vec<Row> = Vec::new();
        for run in runs {
            match rows.last_mut() {
                Some(row) if row.lambda == run.lambda => row.runs.push(run),
                _ => rows.push(Row {
                    lambda: run.lambda,
                    stats: BTreeMap::new(),
                    runs: vec![run],
                }),
            }
        }
        for row in &mut rows {
            row.stats = METRICS
                .iter()
                .map(|(k, _)| {
                    (
                        k.to_string(),
                        Stat::of(&row.runs.iter().map(|r| r.values[*k]).collect::<Vec<_>>()),
                    )
                })
                .collect();
        }
        let mut named = BTreeMap::new();
        for row in &rows {
            named.insert(format!("lambda={}", row.lambda), row.clone());
        }
        if let Some(base) = rows.iter().find(|r| r.lambda == 0.0) {
            named.insert("baseline".into(), base.clone());
        }
        if let Some(mfr) = rows
            .iter()
            .filter(|r| r.lambda > 0.0)
            .max_by(|a, b| a.lambda.total_cmp(&b.lambda))
        {
            named.insert("mfr".into(), mfr.clone());
        }
        let paired = paired(&rows);
        Summary {
            experiment: exp.clone(),
            rows,
            runs: named,
            paired,
        }
    }
}

/// For every λ > 0 row and metric, the per-seed differences to the λ = 0 row.
fn paired(rows: &[Row]) -> Vec<Paired> {
    let Some(base) = rows.iter().find(|r| r.lambda == 0.0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for row in rows.iter().filter(|r| r.lambda != 0.0) {
        for (metric, _) in METRICS {
            let differences: Vec<f64> = row
                .runs
                .iter()
                .filter_map(|r| {
                    let b = base.runs.iter().find(|b| b.seed == r.seed)?;
                    Some(r.values[metric] - b.values[metric])
                })
                .collect();
            out.push(Paired {
                lambda: row.lambda,
                metric: metric.to_string(),
                test: PairedTest::of(&differences),
            });
        }
    }
    out
}

/// Reduces one run's last log record (and the initial weights' recovery) to a `RunResult`.
pub(super) fn result_of(lambda: f32, seed: u64, last: &LogRecord, init_match: f64, reinits: usize) -> RunResult {
    let steps = last.step;
    let mean = |f: &dyn Fn(&train::SaeRecord) -> f64| last.saes.iter().map(f).sum::<f64>() / last.saes.len() as f64;
    let pairs = last.pairs.len().max(1) as f64;
    let truth = |f: fn(&metrics::Recovery) -> f64| mean(&|s| s.truth.as_ref().map_or(f64::NAN, f));
    let values = [
        ("mse", mean(&|s| s.window.mse)),
        ("fvu", mean(&|s| s.window.fvu)),
        ("l0", mean(&|s| s.window.l0)),
        ("dead_fraction", mean(&|s| s.window.dead_fraction)),
        (
            "pair_mmcs_match",
            last.pairs.iter().map(|p| p.matched).sum::<f64>() / pairs,
        ),
        (
            "pair_mmcs_max",
            last.pairs.iter().map(|p| 0.5 * (p.max_ab + p.max_ba)).sum::<f64>() / pairs,
        ),
        ("truth_mmcs_match", truth(|r| r.matched)),
        ("truth_mmcs_max", truth(|r| r.max)),
        ("truth_recovered", truth(|r| r.recovered)),
        ("truth_mmcs_match_init", init_match),
    ];
    RunResult {
        lambda,
        seed,
        values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        reinits,
        steps,
    }
}

/// One real-data run: per SAE, the held-out MSE and FVU, and the usual metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealRun {
    pub lambda: f32,
    pub seed: u64,
    pub held_out_mse: Vec<f64>,
    pub held_out_fvu: Vec<f64>,
    /// Last-window values averaged over the SAEs, in `METRICS` keys where they apply.
    pub values: BTreeMap<String, f64>,
    /// Steps trained (below the cap where the convergence rule stopped the run; 0 in
    /// summaries from before it was recorded).
    #[serde(default)]
    pub steps: u64,
    /// Each SAE's MSE on the validation rows at the last log step (empty without them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_mse: Vec<f64>,
}

impl RealRun {
    /// One run's held-out scores and its last log's metrics that apply to real data.
    pub(super) fn of(
        lambda: f32,
        seed: u64,
        last: &LogRecord,
        held_out_mse: Vec<f64>,
        held_out_fvu: Vec<f64>,
    ) -> RealRun {
        let partial = result_of(lambda, seed, last, f64::NAN, 0);
        let values = ["mse", "fvu", "l0", "dead_fraction", "pair_mmcs_match", "pair_mmcs_max"]
            .iter()
            .map(|k| (k.to_string(), partial.values[*k]))
            .collect();
        RealRun {
            lambda,
            seed,
            held_out_mse,
            held_out_fvu,
            values,
            steps: partial.steps,
            validation_mse: last.saes.iter().filter_map(|s| s.validation_mse).collect(),
        }
    }
}

/// The real-data summary: rows per λ and the paper's headline metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealSummary {
    pub experiment: RealExperiment,
    pub data: serde_json::Value,
    pub runs: Vec<RealRun>,
    /// Per λ > 0: the relative change of held-out MSE against the baseline of the
    /// same seed, (MFR − baseline) / baseline, for the ensemble mean and for the
    /// best SAE of each ensemble; mean ± sd over seeds.
    pub headline: Vec<Headline>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub lambda: f32,
    pub relative_change_mean: Stat,
    pub relative_change_best: Stat,
    pub held_out_mse_mean: Stat,
    pub baseline_held_out_mse_mean: Stat,
    /// The paired test of the ensemble-mean held-out MSE, MFR − baseline, per seed.
    pub paired_held_out_mse: PairedTest,
    /// Mean dead fraction at the last log window (MFR, baseline).
    pub dead_fraction: Stat,
    pub baseline_dead_fraction: Stat,
}

impl RealSummary {
    pub(super) fn of(exp: &RealExperiment, data: serde_json::Value, runs: Vec<RealRun>) -> RealSummary {
        let headline = headline(&runs);
        RealSummary {
            experiment: exp.clone(),
            data,
            runs,
            headline,
        }
    }
}

/// The paper's headline: relative change of held-out reconstruction loss against
/// the same seed's baseline, for the ensemble mean and for its best SAE.
fn headline(runs: &[RealRun]) -> Vec<Headline> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut lambdas: Vec<f32> = runs.iter().map(|r| r.lambda).filter(|&l| l > 0.0).collect();
    lambdas.dedup();
    let mut seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    lambdas
        .into_iter()
        .filter_map(|lambda| {
            let (mut rel_mean, mut rel_best, mut mfr, mut base) = (vec![], vec![], vec![], vec![]);
            let (mut dead, mut base_dead) = (vec![], vec![]);
            for &seed in &seeds {
                let find = |l: f32| runs.iter().find(|r| r.lambda == l && r.seed == seed);
                let (Some(m), Some(b)) = (find(lambda), find(0.0)) else {
                    continue;
                };
                rel_mean.push((mean(&m.held_out_mse) - mean(&b.held_out_mse)) / mean(&b.held_out_mse));
                rel_best.push((best(&m.held_out_mse) - best(&b.held_out_mse)) / best(&b.held_out_mse));
                mfr.push(mean(&m.held_out_mse));
                base.push(mean(&b.held_out_mse));
                dead.push(m.values["dead_fraction"]);
                base_dead.push(b.values["dead_fraction"]);
            }
            let differences: Vec<f64> = mfr.iter().zip(&base).map(|(m, b)| m - b).collect();
            (!rel_mean.is_empty()).then(|| Headline {
                lambda,
                relative_change_mean: Stat::of(&rel_mean),
                relative_change_best: Stat::of(&rel_best),
                held_out_mse_mean: Stat::of(&mfr),
                baseline_held_out_mse_mean: Stat::of(&base),
                paired_held_out_mse: PairedTest::of(&differences),
                dead_fraction: Stat::of(&dead),
                baseline_dead_fraction: Stat::of(&base_dead),
            })
        })
        .collect()
}

/// A table as the reports print it: a header and rows of cells, as aligned text
/// (right-aligned columns) or as Markdown.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn text(&self) -> String {
        let lines: Vec<&Vec<String>> = std::iter::once(&self.header).chain(&self.rows).collect();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0))
            .collect();
        lines
            .iter()
            .map(|l| {
                l.iter()
                    .zip(&widths)
                    .map(|(s, w)| format!("{s:>w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
        let rule = format!("|{}", "---|".repeat(self.header.len()));
        std::iter::once(line(&self.header))
            .chain(std::iter::once(rule))
            .chain(self.rows.iter().map(|r| line(r)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn pm(s: Stat) -> String {
    format!("{:.4} ± {:.4}", s.mean, s.sd)
}

/// A paired difference: `Δ ± sd (p)`.
fn paired_cell(t: &PairedTest, percent: bool) -> String {
    let f = if percent { 100.0 } else { 1.0 };
    let unit = if percent { " %" } else { "" };
    format!(
        "{:+.4}{unit} ± {:.4} (p {:.3})",
        f * t.difference.mean,
        f * t.difference.sd,
        t.p
    )
}

/// The synthetic summary: one row per λ, `mean ± sd` over seeds per metric.
pub fn metrics_table(summary: &Summary) -> Table {
    let mut header = vec!["λ".to_string(), "steps".to_string()];
    header.extend(METRICS.iter().map(|(_, t)| t.to_string()));
    let rows = summary
        .rows
        .iter()
        .map(|row| {
            let steps = Stat::of(&row.runs.iter().map(|r| r.steps as f64).collect::<Vec<_>>());
            let mut cells = vec![format!("{}", row.lambda), format!("{:.0}", steps.mean)];
            cells.extend(METRICS.iter().map(|(k, _)| pm(row.stats[*k])));
            cells
        })
        .collect();
    Table { header, rows }
}

/// The synthetic summary's paired differences to the baseline: one row per λ > 0.
pub fn paired_table(summary: &Summary) -> Table {
    let mut header = vec!["λ".to_string(), "seeds".to_string()];
    header.extend(
        PAIRED_METRICS
            .iter()
            .map(|k| format!("Δ {}", METRICS.iter().find(|(m, _)| m == k).map_or(*k, |(_, t)| t))),
    );
    let mut lambdas: Vec<f32> = summary.paired.iter().map(|p| p.lambda).collect();
    lambdas.dedup();
    let rows = lambdas
        .into_iter()
        .map(|l| {
            let find = |k: &str| summary.paired.iter().find(|p| p.lambda == l && p.metric == k);
            let seeds = find(PAIRED_METRICS[0]).map_or(0, |p| p.test.pairs);
            let mut cells = vec![format!("{l}"), seeds.to_string()];
            cells.extend(
                PAIRED_METRICS
                    .iter()
                    .map(|k| find(k).map_or_else(String::new, |p| paired_cell(&p.test, false))),
            );
            cells
        })
        .collect();
    Table { header, rows }
}

/// Both synthetic tables as text, for the terminal.
pub fn table(summary: &Summary) -> String {
    format!(
        "{}\n\npaired difference to λ = 0 on the same seed (mean ± sd, paired t-test p):\n{}",
        metrics_table(summary).text(),
        paired_table(summary).text()
    )
}

/// The real-data summary: per λ the held-out MSE, the headline with its paired
/// test, and dead latents.
pub fn real_metrics_table(s: &RealSummary) -> Table {
    let mut header = [
        "λ",
        "seeds",
        "steps",
        "held-out MSE (mean over SAEs)",
        "Δ vs baseline (ensemble mean)",
        "Δ vs baseline (best SAE)",
        "Δ held-out MSE (paired)",
        "dead",
    ]
    .map(String::from)
    .to_vec();
    // Runs stopped on validation rows show their MSE there, beside the held-out one.
    let validated = s.runs.iter().any(|r| !r.validation_mse.is_empty());
    if validated {
        header.insert(4, "validation MSE".to_string());
    }
    let mut lambdas: Vec<f32> = s.runs.iter().map(|r| r.lambda).collect();
    lambdas.dedup();
    let rows = lambdas
        .into_iter()
        .map(|l| {
            let runs: Vec<&RealRun> = s.runs.iter().filter(|r| r.lambda == l).collect();
            let of = |f: &dyn Fn(&RealRun) -> f64| Stat::of(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
            let mse = of(&|r| r.held_out_mse.iter().sum::<f64>() / r.held_out_mse.len() as f64);
            let steps = of(&|r| r.steps as f64);
            let dead = of(&|r| r.values["dead_fraction"]);
            let percent = |st: Stat| format!("{:+.2} % ± {:.2}", 100.0 * st.mean, 100.0 * st.sd);
            let (dm, db, dp) = match s.headline.iter().find(|h| h.lambda == l) {
                Some(h) => (
                    percent(h.relative_change_mean),
                    percent(h.relative_change_best),
                    paired_cell(&h.paired_held_out_mse, false),
                ),
                None => ("(baseline)".into(), "(baseline)".into(), String::new()),
            };
            let mut row = vec![
                format!("{l}"),
                runs.len().to_string(),
                format!("{:.0}", steps.mean),
                format!("{:.5} ± {:.5}", mse.mean, mse.sd),
                dm,
                db,
                dp,
                pm(dead),
            ];
            if validated {
                let v = of(&|r| r.validation_mse.iter().sum::<f64>() / r.validation_mse.len().max(1) as f64);
                row.insert(4, format!("{:.5} ± {:.5}", v.mean, v.sd));
            }
            row
        })
        .collect();
    Table { header, rows }
}

/// The real-data table as text, for the terminal.
pub fn real_table(s: &RealSummary) -> String {
    real_metrics_table(s).text() + "\n"
}
