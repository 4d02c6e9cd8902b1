//! The paper's synthetic experiment: an MFR ensemble against the baseline
//! (λ = 0) on identical data and identical initial weights, over seeds and a
//! list of λ, summarised as mean ± sd per λ.
//!
//! Owns the presets and the summary; training itself is `train::run`.

use crate::checkpoint::{self, Checkpoint};
use crate::data::synthetic::{PaperConfig, Synthetic, SyntheticConfig};
use crate::data::Source;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{Kernels, MmcsForm};
use crate::metrics;
use crate::mfr::MfrConfig;
use crate::model::{Activation, AdamHyper, Architecture, SaeConfig};
use crate::train::{self, EnsembleConfig, LogRecord, RunDir, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Scaled down to finish in minutes on a CPU adapter (lavapipe).
    Quick,
    /// The paper's configuration (reference code; synthetic: d 256, m 512, k 32, batch
    /// 10 000, 5 000 steps): for GPUs.
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
        let base = tied_topk_ensemble(2, m, k, 3.0, batch, steps);
        let ensemble = EnsembleConfig {
            sae: SaeConfig {
                d_in: data.d,
                lr: 1e-2,
                ..base.sae
            },
            log_every,
            ..base
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

/// Checkpointing for an experiment's runs (each seed and λ is a run folder).
#[derive(Default)]
pub struct Control<'a> {
    /// Per run, as `train::Control::checkpoint_every` (0: no checkpoints).
    pub checkpoint_every: u64,
    /// Runs whose folder holds a checkpoint of the same configuration continue from
    /// it (a finished run's final checkpoint just gives back its result); the others
    /// start afresh.
    pub resume: bool,
    /// Ends the experiment at the current run's next log step, checkpointed, with
    /// `Error::Stopped`.
    pub stop: Option<&'a AtomicBool>,
}

/// Trains one run of an experiment in `dir` (config.json: `run_cfg`), resumed from
/// its checkpoint where `control` says so. A source that cannot be checkpointed
/// (denoising) trains without checkpoints.
#[allow(clippy::too_many_arguments)]
async fn run_in(
    gpu: &Gpu,
    kernels: &Kernels,
    dir: &Path,
    run_cfg: &impl Serialize,
    cfg: &EnsembleConfig,
    weights: &[crate::model::SaeWeights],
    source: &mut dyn Source,
    on_progress: &mut dyn FnMut(u64, Option<&LogRecord>),
    control: &Control<'_>,
) -> Result<(train::Outcome, RunDir)> {
    let config_hash = checkpoint::config_hash(run_cfg);
    let checkpointable = source.state().is_some();
    let resume = match control.resume && checkpointable {
        true => Checkpoint::read(dir, &config_hash)?,
        false => None,
    };
    let mut run_dir = match &resume {
        Some(ck) => RunDir::reopen(dir, ck.step())?,
        None => {
            if control.resume {
                // Resuming, a run without a checkpoint starts again from its beginning.
                train::clear_run_outputs(dir)?;
            }
            RunDir::create(dir, run_cfg)?
        }
    };
    let run_control = train::Control {
        checkpoint_every: if checkpointable { control.checkpoint_every } else { 0 },
        config_hash,
        resume,
        stop: control.stop,
    };
    let outcome = train::run_with(
        gpu,
        kernels,
        cfg,
        weights,
        source,
        Some(&mut run_dir),
        on_progress,
        run_control,
    )
    .await?;
    if let Some(step) = outcome.stopped {
        return Err(Error::Stopped(format!(
            "stopped at step {step} of {} in {} (checkpointed)",
            cfg.steps,
            dir.display()
        )));
    }
    Ok((outcome, run_dir))
}

/// Lines of a run folder's `events.jsonl` (every event of the run, resumed or not).
fn events_logged(dir: &Path) -> Result<usize> {
    let path = dir.join("events.jsonl");
    let bytes = std::fs::read(&path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(bytes.iter().filter(|&&b| b == b'\n').count())
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
    run_synthetic_with(gpu, kernels, exp, out, on_progress, &Control::default()).await
}

/// `run_synthetic` with checkpoints, resume and a stop flag for its runs.
pub async fn run_synthetic_with(
    gpu: &Gpu,
    kernels: &Kernels,
    exp: &SyntheticExperiment,
    out: &Path,
    on_progress: &mut dyn FnMut(&str, u64, Option<&LogRecord>),
    control: &Control<'_>,
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
            crate::limits::check(
                &cfg,
                Some(exp.data.n_features()),
                &gpu.report,
                crate::limits::host_budget(),
            )?;
            let mut data = Synthetic::new(exp.data, seed)?;
            let weights = cfg.initial_weights();
            let d = cfg.sae.d_in;
            let init_match = weights
                .iter()
                .map(|w| metrics::truth_recovery(&w.dictionary(), data.truth(), d).matched)
                .sum::<f64>()
                / weights.len() as f64;
            let run_cfg = TrainConfig {
                data: train::DataConfig::Synthetic(exp.data),
                ensemble: cfg.clone(),
            };
            let dir = out.join(format!("seed-{seed}")).join(format!("lambda-{lambda}"));
            let label = format!("λ={lambda} seed {seed}");
            let (outcome, run_dir) = run_in(
                gpu,
                kernels,
                &dir,
                &run_cfg,
                &cfg,
                &weights,
                &mut data,
                &mut |step, log| on_progress(&label, step, log),
                control,
            )
            .await?;
            let last = outcome.logs.last().expect("a run of at least one step logs at its end");
            let reinits = events_logged(&dir)?;
            let result = result_of(lambda, seed, last, init_match, reinits);
            run_dir.write_json("summary.json", &result)?;
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
    train::write_json(&out.join("summary.json"), &summary)?;
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

    fn state(&self) -> Option<crate::data::SourceState> {
        Some(self.stream_state())
    }

    fn restore(&mut self, state: &crate::data::SourceState) -> Result<()> {
        self.restore_stream(state)
    }
}

/// The paper's real-data experiments (EEG, transformer activations): baseline
/// and MFR ensembles on identical batches and initial weights, scored on
/// held-out rows the training never saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealExperiment {
    /// "eeg" or "activations".
    pub kind: String,
    /// The data file.
    pub data: String,
    /// For `.safetensors`: the tensor to read.
    pub tensor: Option<String>,
    /// EEG preprocessing (EEG only).
    pub eeg: Option<crate::data::eeg::EegConfig>,
    /// Denoising: noisy input, clean target (EEG only).
    pub noise: Option<crate::data::eeg::NoiseConfig>,
    /// Activations: the last fraction of rows (in file order) is held out.
    pub held_out_fraction: f64,
    /// Activations: scale rows to mean norm √d (the factor is recorded).
    pub normalise: bool,
    /// The ensemble; its λ is replaced by each entry of `lambdas`, and `steps`
    /// by `epochs` passes over the training rows when `epochs` is set.
    pub ensemble: EnsembleConfig,
    pub epochs: Option<f64>,
    pub lambdas: Vec<f32>,
    pub seeds: u64,
}

impl Preset {
    /// EEG (paper, reference code: N = 5, m = 512, k = 6, λ = 0.5, lr 1e-3,
    /// batch 1024, 10 epochs). `quick` scales it to a CPU adapter.
    pub fn eeg(self, data: &str) -> RealExperiment {
        let (n, m, batch, steps, epochs, stride) = match self {
            Preset::Paper => (5, 512, 1024, 0, Some(10.0), None),
            Preset::Quick => (3, 128, 32, 300, None, Some(32)),
        };
        let eeg = crate::data::eeg::EegConfig {
            stride_samples: stride,
            ..Default::default()
        };
        RealExperiment {
            kind: "eeg".into(),
            data: data.into(),
            tensor: None,
            eeg: Some(eeg),
            noise: None,
            held_out_fraction: eeg.held_out_fraction,
            normalise: false,
            ensemble: tied_topk_ensemble(n, m, 6, 0.5, batch, steps),
            epochs,
            lambdas: vec![0.0, 0.5],
            seeds: 3,
        }
    }

    /// Transformer activations (paper, GPT-2 Small layer-0 MLP out: N = 10,
    /// m = 4·768, k = 6, λ = 0.005, lr 1e-3, batch 500). `quick`: N = 2, m = d.
    pub fn activations(self, data: &str) -> RealExperiment {
        let (n, expansion, batch, steps, lambda) = match self {
            Preset::Paper => (10, 4, 500, 10_000, 0.005),
            Preset::Quick => (2, 1, 64, 200, 0.005),
        };
        RealExperiment {
            kind: "activations".into(),
            data: data.into(),
            tensor: None,
            eeg: None,
            noise: None,
            held_out_fraction: 0.2,
            normalise: true,
            // d and m are set from the file; m = expansion · d.
            ensemble: tied_topk_ensemble(n, expansion, 6, lambda, batch, steps),
            epochs: None,
            lambdas: vec![0.0, lambda],
            seeds: 3,
        }
    }
}

/// An ensemble of tied TopK SAEs with the paper's real-data lr (1e-3), 100 warm-up
/// steps and three logs a run; `m` is the dictionary size (or, for activations
/// until the data's width is known, the expansion factor).
fn tied_topk_ensemble(n: usize, m: usize, k: usize, lambda: f32, batch: usize, steps: u64) -> EnsembleConfig {
    EnsembleConfig {
        sae: SaeConfig {
            arch: Architecture::Tied,
            activation: Activation::TopK { k },
            d_in: 0,
            d_sae: m,
            batch,
            lr: 1e-3,
            paper_exact: false,
            adam: AdamHyper::default(),
            auxk: None,
            step_path: None,
        },
        n_saes: n,
        k_per_sae: vec![],
        lr_per_sae: vec![],
        mfr: MfrConfig {
            lambda,
            warmup_steps: 100,
            form: MmcsForm::Match,
            match_every: 100,
        },
        reinit: None,
        lr_warmup_steps: 0,
        lr_decay_steps: 0,
        steps: steps.max(1),
        log_every: (steps / 3).max(1),
        seed: 0,
        denoising: false,
    }
}

/// Training and held-out rows of one data file, as the SAEs see them.
pub struct Split {
    pub d: usize,
    pub train: Vec<f32>,
    pub held_out: Vec<f32>,
    /// What the loader did, for the summary (rows, channels, scale, …).
    pub description: serde_json::Value,
    /// EEG: the segment layout, for the noise model.
    pub segments: Option<crate::data::eeg::Segments>,
}

/// Loads and splits the experiment's data: EEG through the paper's
/// preprocessing (held out by time), activations by file order.
pub fn load_split(exp: &RealExperiment) -> Result<Split> {
    let io = |e: std::io::Error| Error::Io {
        path: exp.data.clone(),
        message: e.to_string(),
    };
    // The experiments hold the file (and its rows, twice) in memory: size it before reading.
    let len = std::fs::metadata(&exp.data).map_err(io)?.len();
    let budget = crate::limits::host_budget();
    if len.saturating_mul(3) > budget {
        return Err(Error::Io {
            path: exp.data.clone(),
            message: format!(
                "{} MiB: an experiment holds the file and its rows in memory (about {} MiB) but {} MiB is \
                 available; `mfr-sae train --data-file` streams it instead",
                len >> 20,
                len.saturating_mul(3) >> 20,
                budget >> 20
            ),
        });
    }
    let bytes = std::fs::read(&exp.data).map_err(io)?;
    split_bytes(exp, &bytes)
}

/// `load_split` on the file's bytes (the browser passes what the reader chose).
pub fn split_bytes(exp: &RealExperiment, bytes: &[u8]) -> Result<Split> {
    if exp.kind == "eeg" {
        let cfg = exp.eeg.unwrap_or_default();
        let edf = crate::data::edf::parse(&exp.data, bytes)?;
        let seg = crate::data::eeg::segments(&edf, &cfg)?;
        let description = serde_json::json!({
            "channels": seg.channels, "labels": seg.labels, "sample_rate": seg.sample_rate,
            "samples_per_segment": seg.samples_per_segment, "train_rows": seg.train_rows(),
            "held_out_rows": seg.held_out_rows(), "stride_samples": cfg.stride_samples,
        });
        let (d, train, held_out) = (seg.width(), seg.train.clone(), seg.held_out.clone());
        crate::data::validate::check_split(&exp.data, d, &train, &held_out, false)?;
        return Ok(Split {
            d,
            train,
            held_out,
            description,
            segments: Some(seg),
        });
    }
    let matrix = crate::data::activations::read(&exp.data, bytes, exp.tensor.as_deref())?;
    let (rows, d) = (matrix.rows, matrix.d);
    // At least 2 training and 2 held-out rows: each part needs a variance (FVU's denominator).
    if rows < MIN_SPLIT_ROWS {
        return Err(Error::Io {
            path: exp.data.clone(),
            message: format!("{rows} rows: a split needs at least {MIN_SPLIT_ROWS} (2 to train on, 2 held out)"),
        });
    }
    let held = ((rows as f64 * exp.held_out_fraction).round() as usize).clamp(2, rows - 2);
    let mut data = matrix.data;
    let held_out_start = (rows - held) * d;
    let scale = crate::data::validate::check_split(
        &exp.data,
        d,
        &data[..held_out_start],
        &data[held_out_start..],
        exp.normalise,
    )?;
    if scale != 1.0 {
        // Mean row norm → √d, measured on the training rows only (in f64; the product is f32).
        data.iter_mut()
            .for_each(|v| *v = (f64::from(*v) * f64::from(scale)) as f32);
    }
    let held_out = data.split_off(held_out_start);
    let description =
        serde_json::json!({ "rows": rows, "d": d, "train_rows": rows - held, "held_out_rows": held, "scale": scale });
    Ok(Split {
        d,
        train: data,
        held_out,
        description,
        segments: None,
    })
}

/// Rows an activation file needs for a split: 2 to train on and 2 held out.
pub const MIN_SPLIT_ROWS: usize = 4;

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

/// Held-out MSE and FVU of each SAE, computed by the f64 CPU forward pass (`model::eval`).
fn held_out_scores(
    cfg: &EnsembleConfig,
    weights: &[crate::model::SaeWeights],
    input: &[f32],
    target: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = input.iter().map(|&v| v as f64).collect();
    let t: Vec<f64> = target.iter().map(|&v| v as f64).collect();
    let d = cfg.sae.d_in;
    let variance = crate::model::eval::centered_squares(&t, d);
    weights
        .iter()
        .enumerate()
        .map(|(n, w)| {
            let xhat = crate::model::eval::reconstruct(&cfg.sae_config(n), w, &x);
            let sq: f64 = xhat.iter().zip(&t).map(|(a, b)| (a - b) * (a - b)).sum();
            (sq / t.len() as f64, sq / variance.max(f64::MIN_POSITIVE))
        })
        .unzip()
}

/// Runs every (λ, seed) of a real-data experiment into `out/seed-S/lambda-L`.
pub async fn run_real(
    gpu: &Gpu,
    kernels: &Kernels,
    exp: &RealExperiment,
    out: &Path,
    on_progress: &mut dyn FnMut(&str, u64, Option<&LogRecord>),
) -> Result<RealSummary> {
    run_real_with(gpu, kernels, exp, out, on_progress, &Control::default()).await
}

/// `run_real` with checkpoints, resume and a stop flag for its runs.
pub async fn run_real_with(
    gpu: &Gpu,
    kernels: &Kernels,
    exp: &RealExperiment,
    out: &Path,
    on_progress: &mut dyn FnMut(&str, u64, Option<&LogRecord>),
    control: &Control<'_>,
) -> Result<RealSummary> {
    let split = load_split(exp)?;
    let mut base = exp.ensemble.clone();
    base.sae.d_in = split.d;
    if exp.kind == "activations" {
        base.sae.d_sae *= split.d; // the preset's expansion factor
    }
    if let Some(epochs) = exp.epochs {
        let rows = split.train.len() / split.d;
        base.steps = ((epochs * rows as f64) / base.sae.batch as f64).ceil().max(1.0) as u64;
        base.log_every = (base.steps / 3).max(1);
    }
    base.denoising = exp.noise.is_some();
    if exp.lambdas.is_empty() || exp.seeds == 0 {
        return Err(Error::Config("an experiment needs at least one λ and one seed".into()));
    }
    let noise_seed = 0x5eed_0015e;
    let held_out_input = match (&exp.noise, &split.segments) {
        (Some(noise), Some(seg)) => crate::data::eeg::add_noise(&split.held_out, seg, noise, noise_seed)?,
        _ => split.held_out.clone(),
    };
    let mut runs = Vec::new();
    for &lambda in &exp.lambdas {
        for seed in 0..exp.seeds {
            let mut cfg = base.clone();
            cfg.mfr.lambda = lambda;
            cfg.seed = seed;
            cfg.validate()?;
            crate::limits::check(&cfg, None, &gpu.report, crate::limits::host_budget())?;
            let weights = cfg.initial_weights();
            let rows = crate::data::Rows::new(split.train.clone(), split.d, seed)?;
            let mut source: Box<dyn Source> = match (&exp.noise, &split.segments) {
                (Some(noise), Some(seg)) => {
                    let (noise, seg) = (*noise, seg.clone());
                    Box::new(crate::data::Noisy::new(
                        rows,
                        Box::new(move |clean, batch| {
                            crate::data::eeg::add_noise(clean, &seg, &noise, seed * 1_000_003 + batch)
                        }),
                    ))
                }
                _ => Box::new(rows),
            };
            let dir = out.join(format!("seed-{seed}")).join(format!("lambda-{lambda}"));
            let label = format!("λ={lambda} seed {seed}");
            let (outcome, run_dir) = run_in(
                gpu,
                kernels,
                &dir,
                &cfg,
                &cfg,
                &weights,
                source.as_mut(),
                &mut |step, log| on_progress(&label, step, log),
                control,
            )
            .await?;
            let (held_out_mse, held_out_fvu) =
                held_out_scores(&cfg, &outcome.weights, &held_out_input, &split.held_out);
            let last = outcome.logs.last().expect("a run logs at its end");
            let partial = result_of(lambda, seed, last, f64::NAN, 0);
            let values = ["mse", "fvu", "l0", "dead_fraction", "pair_mmcs_match", "pair_mmcs_max"]
                .iter()
                .map(|k| (k.to_string(), partial.values[*k]))
                .collect();
            let run = RealRun {
                lambda,
                seed,
                held_out_mse,
                held_out_fvu,
                values,
            };
            run_dir.write_json("summary.json", &run)?;
            runs.push(run);
        }
    }
    let headline = headline(&runs, exp.seeds);
    let summary = RealSummary {
        experiment: exp.clone(),
        data: split.description,
        runs,
        headline,
    };
    train::write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
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
