//! What an experiment reports: each run reduced to its numbers, the seeds of a λ
//! to mean ± sd, the real-data headline (held-out loss against the same seed's
//! baseline), and the tables printed from a summary.
//!
//! Owns no training (`mod.rs`) and no grid (`sweep.rs`).

use super::presets::{RealExperiment, SyntheticExperiment};
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

/// mean ± sd (sample sd; 0 for one value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub sd: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Stat { mean, sd: var.sqrt() }
    }
}

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
}

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
        Summary {
            experiment: exp.clone(),
            rows,
            runs: named,
        }
    }
}

/// Reduces one run's last log record (and the initial weights' recovery) to a `RunResult`.
pub(super) fn result_of(lambda: f32, seed: u64, last: &LogRecord, init_match: f64, reinits: usize) -> RunResult {
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
}

impl RealSummary {
    pub(super) fn of(exp: &RealExperiment, data: serde_json::Value, runs: Vec<RealRun>) -> RealSummary {
        let headline = headline(&runs, exp.seeds);
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
fn headline(runs: &[RealRun], seeds: u64) -> Vec<Headline> {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut lambdas: Vec<f32> = runs.iter().map(|r| r.lambda).filter(|&l| l > 0.0).collect();
    lambdas.dedup();
    lambdas
        .into_iter()
        .filter_map(|lambda| {
            let (mut rel_mean, mut rel_best, mut mfr, mut base) = (vec![], vec![], vec![], vec![]);
            for seed in 0..seeds {
                let find = |l: f32| runs.iter().find(|r| r.lambda == l && r.seed == seed);
                let (Some(m), Some(b)) = (find(lambda), find(0.0)) else {
                    continue;
                };
                rel_mean.push((mean(&m.held_out_mse) - mean(&b.held_out_mse)) / mean(&b.held_out_mse));
                rel_best.push((best(&m.held_out_mse) - best(&b.held_out_mse)) / best(&b.held_out_mse));
                mfr.push(mean(&m.held_out_mse));
                base.push(mean(&b.held_out_mse));
            }
            (!rel_mean.is_empty()).then(|| Headline {
                lambda,
                relative_change_mean: Stat::of(&rel_mean),
                relative_change_best: Stat::of(&rel_best),
                held_out_mse_mean: Stat::of(&mfr),
                baseline_held_out_mse_mean: Stat::of(&base),
            })
        })
        .collect()
}

/// The summary as a text table: one row per λ, `mean ± sd` over seeds per metric.
pub fn table(summary: &Summary) -> String {
    let mut header = vec!["λ".to_string()];
    header.extend(METRICS.iter().map(|(_, t)| t.to_string()));
    let mut lines = vec![header];
    for row in &summary.rows {
        let mut cells = vec![format!("{}", row.lambda)];
        cells.extend(METRICS.iter().map(|(k, _)| {
            let s = row.stats[*k];
            format!("{:.4} ± {:.4}", s.mean, s.sd)
        }));
        lines.push(cells);
    }
    let widths: Vec<usize> = (0..lines[0].len())
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

/// The real-data summary as text: per λ the held-out MSE and the headline.
pub fn real_table(s: &RealSummary) -> String {
    let mut out = String::from(
        "λ        held-out MSE (mean over SAEs)   Δ vs baseline (ensemble mean)   Δ vs baseline (best SAE)\n",
    );
    let mut lambdas: Vec<f32> = s.runs.iter().map(|r| r.lambda).collect();
    lambdas.dedup();
    for l in lambdas {
        let mses: Vec<f64> = s
            .runs
            .iter()
            .filter(|r| r.lambda == l)
            .map(|r| r.held_out_mse.iter().sum::<f64>() / r.held_out_mse.len() as f64)
            .collect();
        let m = Stat::of(&mses);
        let (dm, db) = match s.headline.iter().find(|h| h.lambda == l) {
            Some(h) => (
                format!(
                    "{:+.2} % ± {:.2}",
                    100.0 * h.relative_change_mean.mean,
                    100.0 * h.relative_change_mean.sd
                ),
                format!(
                    "{:+.2} % ± {:.2}",
                    100.0 * h.relative_change_best.mean,
                    100.0 * h.relative_change_best.sd
                ),
            ),
            None => ("(baseline)".into(), "(baseline)".into()),
        };
        out.push_str(&format!(
            "{l:<8} {:.5} ± {:.5}              {dm:<31} {db}\n",
            m.mean, m.sd
        ));
    }
    out
}
