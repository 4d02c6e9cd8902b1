//! The paper's synthetic experiment: an MFR ensemble against the baseline
//! (λ = 0) on identical data and identical initial weights, over seeds and a
//! list of λ, summarised as mean ± sd per λ.
//!
//! Owns the presets and the summary; training itself is `train::run`.

use crate::data::synthetic::{PaperConfig, Synthetic, SyntheticConfig};
use crate::data::Source;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{AdamHyper, Kernels, MmcsForm};
use crate::metrics;
use crate::mfr::MfrConfig;
use crate::sae::{Activation, Architecture, SaeConfig};
use crate::train::{self, EnsembleConfig, LogRecord, RunDir, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Scaled down to finish in minutes on a CPU adapter (lavapipe).
    Quick,
    /// The paper's synthetic configuration (reference code): for GPUs.
    Paper,
}

/// Everything that defines a synthetic experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyntheticExperiment {
    pub data: SyntheticConfig,
    /// The ensemble; its λ is replaced by each entry of `lambdas`.
    pub ensemble: EnsembleConfig,
    pub lambdas: Vec<f32>,
    /// Seeds 0..seeds; each seeds both the data and the initial weights.
    pub seeds: u64,
}

impl Preset {
    pub fn synthetic(self) -> SyntheticExperiment {
        // Paper (reference code): d = 256, 512 features in 12 groups of 42, 32 active,
        // N = 2, m = 512, k = 32, λ = 3, lr 1e-2, batch 10 000, 5 000 steps, 100 warm-up.
        let (data, m, k, batch, steps, log_every) = match self {
            Preset::Paper => (PaperConfig::default(), 512, 32, 10_000, 5_000, 250),
            Preset::Quick => (
                PaperConfig {
                    d: 64,
                    n_features: 128,
                    n_groups: 6,
                    group_size: 20,
                    active: 8,
                    decay: 0.99,
                },
                128,
                8,
                512,
                600,
                100,
            ),
        };
        let ensemble = EnsembleConfig {
            sae: SaeConfig {
                arch: Architecture::Tied,
                activation: Activation::TopK { k },
                d_in: data.d,
                d_sae: m,
                batch,
                lr: 1e-2,
                paper_exact: false,
                adam: AdamHyper::default(),
                auxk: None,
            },
            n_saes: 2,
            k_per_sae: vec![],
            lr_per_sae: vec![],
            mfr: MfrConfig {
                lambda: 3.0,
                warmup_steps: 100,
                form: MmcsForm::Max,
                match_every: 100,
            },
            reinit: None,
            lr_warmup_steps: 0,
            lr_decay_steps: 0,
            steps,
            log_every,
            seed: 0,
        };
        SyntheticExperiment {
            data: SyntheticConfig::Paper(data),
            ensemble,
            lambdas: vec![0.0, 3.0],
            seeds: 3,
        }
    }
}

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

/// Reduces one run's last log record (and the initial weights' recovery) to a `RunResult`.
fn result_of(lambda: f32, seed: u64, last: &LogRecord, init_match: f64, reinits: usize) -> RunResult {
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

/// Runs every (λ, seed): the same data stream and the same initial weights for
/// every λ of a seed. Each run gets a folder `out/seed-S/lambda-L`.
/// `on_progress(label, step, total, log)` hears of every step.
pub async fn run_synthetic(
    gpu: &Gpu,
    kernels: &Kernels,
    exp: &SyntheticExperiment,
    out: &Path,
    on_progress: &mut dyn FnMut(&str, u64, Option<&LogRecord>),
) -> Result<Summary> {
    exp.data.validate()?;
    exp.ensemble.validate()?;
    if exp.data.d() != exp.ensemble.sae.d_in {
        return Err(Error::Config(format!(
            "the data has d = {} but the SAEs d_in = {}",
            exp.data.d(),
            exp.ensemble.sae.d_in
        )));
    }
    if exp.lambdas.is_empty() || exp.seeds == 0 {
        return Err(Error::Config("an experiment needs at least one λ and one seed".into()));
    }
    let mut rows = Vec::new();
    for &lambda in &exp.lambdas {
        let mut runs = Vec::new();
        for seed in 0..exp.seeds {
            let mut cfg = exp.ensemble.clone();
            cfg.mfr.lambda = lambda;
            cfg.seed = seed;
            cfg.validate()?;
            let mut data = Synthetic::new(exp.data, seed)?;
            let weights = cfg.initial_weights();
            let d = cfg.sae.d_in;
            let init_match = weights
                .iter()
                .map(|w| metrics::truth_recovery(&w.dictionary(), data.truth(), d).matched)
                .sum::<f64>()
                / weights.len() as f64;
            let run_cfg = TrainConfig {
                data: exp.data,
                ensemble: cfg.clone(),
            };
            let mut dir = RunDir::create(
                &out.join(format!("seed-{seed}")).join(format!("lambda-{lambda}")),
                &run_cfg,
            )?;
            let label = format!("λ={lambda} seed {seed}");
            let logs = train::run(
                gpu,
                kernels,
                &cfg,
                &weights,
                &mut data,
                Some(&mut dir),
                &mut |step, log| on_progress(&label, step, log),
            )
            .await?
            .logs;
            let last = logs.last().expect("a run of at least one step logs at its end");
            let reinits = logs.iter().map(|l| l.events.len()).sum();
            let result = result_of(lambda, seed, last, init_match, reinits);
            dir.write_json("summary.json", &result)?;
            runs.push(result);
        }
        let stats = METRICS
            .iter()
            .map(|(k, _)| {
                (
                    k.to_string(),
                    Stat::of(&runs.iter().map(|r| r.values[*k]).collect::<Vec<_>>()),
                )
            })
            .collect();
        rows.push(Row { lambda, stats, runs });
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
    let summary = Summary {
        experiment: exp.clone(),
        rows,
        runs: named,
    };
    std::fs::create_dir_all(out).map_err(|e| Error::Io {
        path: out.display().to_string(),
        message: e.to_string(),
    })?;
    train::write_atomic(
        &out.join("summary.json"),
        &serde_json::to_vec_pretty(&summary).expect("the summary serialises"),
    )?;
    Ok(summary)
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

impl Source for Synthetic {
    fn d(&self) -> usize {
        Synthetic::d(self)
    }

    fn next_batch(&mut self, rows: usize) -> Result<Vec<f32>> {
        Ok(self.batch(rows))
    }

    fn truth(&self) -> Option<&[f32]> {
        Some(Synthetic::truth(self))
    }
}
