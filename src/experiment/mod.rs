//! The paper's experiments, run: an MFR ensemble against the baseline (λ = 0)
//! on identical data and identical initial weights, over seeds and a list of λ
//! (`sweep`), each run in its own folder, summarised by `report`.
//!
//! Owns the runner: a run's folder, checkpoints and resume, the synthetic and
//! the real-data loops, held-out scoring. What an experiment is lives in
//! `presets`, its data split in `split`; training itself is `train::run_with`.

mod page;
mod presets;
mod report;
mod split;
mod stats;
mod sweep;

pub use page::page_defaults;
pub use presets::{
    Convergence, DataKind, Preset, RealData, RealExperiment, SyntheticExperiment, CONVERGENCE_LOGS,
    PAPER_SYNTHETIC_LAMBDAS,
};
pub use report::{
    metrics_table, paired_table, real_metrics_table, real_table, table, Headline, Paired, RealRun, RealSummary, Row,
    RunResult, Summary, Table, METRICS, PAIRED_METRICS,
};
pub use split::{load_split, split_bytes, Layout, Split, MIN_SPLIT_ROWS};
pub use stats::{student_t_two_sided, PairedTest, Stat};

use crate::checkpoint::{self, Checkpoint};
use crate::data::synthetic::Synthetic;
use crate::data::Source;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::Kernels;
use crate::metrics;
use crate::train::{self, EnsembleConfig, LogRecord, RunDir, TrainConfig};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

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
    convergence: Option<&Convergence>,
    validate: Option<train::Validate<'_>>,
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
    // With a convergence rule the run's stop flag is ours: raised at a log step where the
    // rule holds or the experiment's flag is up, so the run ends at the next log step.
    // The rule reads the validation MSE where the run has validation rows, else the
    // last window's training MSE (mean over the SAEs either way).
    // A resumed run's rule sees the losses logged before its checkpoint too, so that it
    // stops where an uninterrupted run would: one the rule had ended at its checkpoint
    // is finished, and where the rule held at the checkpoint's own log step the flag is
    // up from the start, so the run ends at the next log step, as it would have.
    let ours = AtomicBool::new(false);
    let mut history = match (&resume, convergence) {
        (Some(_), Some(_)) => logged_losses(dir)?,
        _ => Vec::new(),
    };
    let finished = convergence.is_some_and(|rule| rule.ended(&history));
    if convergence.is_some_and(|rule| rule.reached(&history)) {
        ours.store(true, Ordering::SeqCst);
    }
    let mut watch = |step: u64, log: Option<&LogRecord>| {
        if let (Some(rule), Some(log)) = (convergence, log) {
            history.push((step, mean_loss(&log.saes)));
            let asked = control.stop.is_some_and(|s| s.load(Ordering::SeqCst));
            if asked || rule.reached(&history) {
                ours.store(true, Ordering::SeqCst);
            }
        }
        on_progress(step, log)
    };
    let run_control = train::Control {
        checkpoint_every: if checkpointable { control.checkpoint_every } else { 0 },
        config_hash,
        resume,
        stop: if convergence.is_some() {
            Some(&ours)
        } else {
            control.stop
        },
        finished,
        validate,
    };
    let outcome = train::run_with(
        gpu,
        kernels,
        cfg,
        weights,
        source,
        Some(&mut run_dir),
        &mut watch,
        run_control,
    )
    .await?;
    let asked = control.stop.is_some_and(|s| s.load(Ordering::SeqCst));
    if let (Some(step), true) = (outcome.stopped, convergence.is_none() || asked) {
        return Err(Error::Stopped(format!(
            "stopped at step {step} of {} in {} (checkpointed)",
            cfg.steps,
            dir.display()
        )));
    }
    Ok((outcome, run_dir))
}

/// The loss a convergence rule reads at a log step: the mean over the SAEs of their
/// validation MSE where the run has validation rows, else of the last window's MSE.
fn mean_loss(saes: &[train::SaeRecord]) -> f64 {
    let loss = |s: &train::SaeRecord| s.validation_mse.unwrap_or(s.window.mse);
    saes.iter().map(loss).sum::<f64>() / saes.len().max(1) as f64
}

/// [(step, `mean_loss`)] at every log step of a run folder's `metrics.jsonl`, in order.
fn logged_losses(dir: &Path) -> Result<Vec<(u64, f64)>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut by_step: std::collections::BTreeMap<u64, Vec<train::SaeRecord>> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let record: train::SaeRecord = serde_json::from_str(line).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: format!("line {}: not a metrics record: {e}", i + 1),
        })?;
        by_step.entry(record.step).or_default().push(record);
    }
    Ok(by_step
        .into_iter()
        .map(|(step, saes)| (step, mean_loss(&saes)))
        .collect())
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
/// `on_progress(label, step, log)` hears of every step.
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
    let points = sweep::plan(
        gpu,
        &exp.ensemble,
        &exp.lambdas,
        exp.first_seed,
        exp.seeds,
        Some(exp.data.n_features()),
        out,
    )?;
    let mut runs = Vec::new();
    for point in points {
        let cfg = &point.cfg;
        let mut data = Synthetic::new(exp.data, point.seed)?;
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
        let (outcome, run_dir) = run_in(
            gpu,
            kernels,
            &point.dir,
            &run_cfg,
            cfg,
            &weights,
            &mut data,
            &mut |step, log| on_progress(&point.label, step, log),
            control,
            exp.convergence.as_ref(),
            None,
        )
        .await?;
        let last = outcome.logs.last().expect("a run of at least one step logs at its end");
        let reinits = events_logged(&point.dir)?;
        let result = report::result_of(point.lambda, point.seed, last, init_match, reinits);
        run_dir.write_json("summary.json", &result)?;
        runs.push(result);
    }
    let summary = Summary::of(exp, runs);
    train::write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
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
    let noise = match &exp.read {
        RealData::Eeg { noise, .. } => *noise,
        RealData::Activations { .. } => None,
    };
    let mut base = exp.ensemble.clone();
    base.sae.d_in = split.d;
    // An AuxK asked for before the width was known (k_aux 0) gets Gao's d/2 of the data.
    if let Some(aux) = base.sae.auxk.as_mut().filter(|a| a.k_aux == 0) {
        aux.k_aux = crate::model::AuxK::gao(split.d).k_aux;
    }
    if exp.read.kind() == DataKind::Activations {
        base.sae.d_sae *= split.d; // the preset's expansion factor
    }
    if let Some(epochs) = exp.epochs {
        let (rows, _) = split.rows();
        base.steps = ((epochs * rows as f64) / base.sae.batch as f64).ceil().max(1.0) as u64;
        let logs = if exp.convergence.is_some() {
            presets::CONVERGENCE_LOGS
        } else {
            3
        };
        base.log_every = (base.steps / logs).max(1);
    }
    base.denoising = noise.is_some();
    let points = sweep::plan(gpu, &base, &exp.lambdas, exp.first_seed, exp.seeds, None, out)?;
    let noise_seed = 0x5eed_0015e;
    let noisy = |noise: &Option<crate::data::eeg::NoiseConfig>| match (noise, &split.layout) {
        (Some(noise), Layout::Segments(seg)) => Some((*noise, seg.clone())),
        _ => None,
    };
    let held_out_input = match noisy(&noise) {
        Some((noise, seg)) => crate::data::eeg::add_noise(&split.held_out, &seg, &noise, noise_seed)?,
        None => split.held_out.clone(),
    };
    // Validation rows get their own noise draw (another seed), fixed for the whole experiment.
    let validation_input = match noisy(&noise) {
        Some((noise, seg)) if !split.validation.is_empty() => {
            crate::data::eeg::add_noise(&split.validation, &seg, &noise, noise_seed + 1)?
        }
        _ => split.validation.clone(),
    };
    let mut runs = Vec::new();
    for point in points {
        let (cfg, seed) = (&point.cfg, point.seed);
        let weights = cfg.initial_weights();
        let rows = crate::data::Rows::new(split.train.clone(), split.d, seed)?;
        let mut source: Box<dyn Source> = match noisy(&noise) {
            Some((noise, seg)) => Box::new(crate::data::Noisy::new(
                rows,
                Box::new(move |clean, batch| {
                    crate::data::eeg::add_noise(clean, &seg, &noise, seed * 1_000_003 + batch)
                }),
            )),
            None => Box::new(rows),
        };
        let validate = |w: &[crate::model::SaeWeights]| held_out_scores(cfg, w, &validation_input, &split.validation).0;
        let (outcome, run_dir) = run_in(
            gpu,
            kernels,
            &point.dir,
            cfg,
            cfg,
            &weights,
            source.as_mut(),
            &mut |step, log| on_progress(&point.label, step, log),
            control,
            exp.convergence.as_ref(),
            (!split.validation.is_empty()).then_some(&validate as _),
        )
        .await?;
        let (held_out_mse, held_out_fvu) = held_out_scores(cfg, &outcome.weights, &held_out_input, &split.held_out);
        let last = outcome.logs.last().expect("a run logs at its end");
        let run = RealRun::of(point.lambda, seed, last, held_out_mse, held_out_fvu);
        run_dir.write_json("summary.json", &run)?;
        runs.push(run);
    }
    let summary = RealSummary::of(exp, split.description, runs);
    train::write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}
