//! The ensemble trainer: N SAEs on the same batches, each with its own Adam
//! (and optionally its own k and learning rate), the MFR penalty between them,
//! learning-rate schedule, the reference code's re-initialisation rule, metrics
//! every `log_every` steps (never a readback per step) and the run folder.
//!
//! Does not own the kernels, one SAE's step (`sae.rs`), MFR's GPU stage
//! (`mfr.rs`) or where batches come from (`data`).

use crate::assignment::max_similarity_matching;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::kernels::{Kernels, MmcsForm};
use crate::metrics::{self, Recovery};
use crate::mfr::{pairs, GpuMfr, MfrConfig, PairMatrices};
use crate::sae::{Activation, Architecture, GpuSae, SaeConfig, SaeMetrics, SaeWeights};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The re-initialisation rule of the reference code (DESIGN.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReinitConfig {
    /// An SAE is re-initialised when its statistic exceeds this (reference: 2.5).
    pub threshold: f32,
}

impl Default for ReinitConfig {
    fn default() -> Self {
        ReinitConfig { threshold: 2.5 }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnsembleConfig {
    /// The shape, architecture, activation and optimiser shared by the SAEs.
    pub sae: SaeConfig,
    /// Number of SAEs N.
    pub n_saes: usize,
    /// Per-SAE k (TopK); empty: every SAE uses `sae`'s k.
    #[serde(default)]
    pub k_per_sae: Vec<usize>,
    /// Per-SAE learning rate; empty: every SAE uses `sae.lr`.
    #[serde(default)]
    pub lr_per_sae: Vec<f32>,
    pub mfr: MfrConfig,
    /// The reinit rule, if enabled. Checked once per log window (see `Ensemble::log`).
    #[serde(default)]
    pub reinit: Option<ReinitConfig>,
    /// Linear learning-rate warm-up over this many steps (0: none).
    #[serde(default)]
    pub lr_warmup_steps: u64,
    /// Linear decay to 0 over the last this many steps of `steps` (0: none).
    #[serde(default)]
    pub lr_decay_steps: u64,
    pub steps: u64,
    pub log_every: u64,
    /// Seeds the initial weights (SAE n gets `seed + n`) and re-initialisations.
    pub seed: u64,
    /// Denoising: every step comes with a separate clean target.
    #[serde(default)]
    pub denoising: bool,
}

impl EnsembleConfig {
    /// Refuses values no run can use, naming the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.n_saes < 1 {
            return bad(format!("the ensemble needs at least 1 SAE (N = {})", self.n_saes));
        }
        for (what, len) in [
            ("k_per_sae", self.k_per_sae.len()),
            ("lr_per_sae", self.lr_per_sae.len()),
        ] {
            if len != 0 && len != self.n_saes {
                return bad(format!("{what} has {len} values for {} SAEs", self.n_saes));
            }
        }
        if !self.k_per_sae.is_empty() && !matches!(self.sae.activation, Activation::TopK { .. }) {
            return bad("k_per_sae needs the TopK activation".into());
        }
        if self.steps == 0 || self.log_every == 0 {
            return bad(format!(
                "steps ({}) and log_every ({}) must be at least 1",
                self.steps, self.log_every
            ));
        }
        if let Some(r) = self.reinit {
            if !(r.threshold.is_finite() && r.threshold > 0.0) {
                return bad(format!(
                    "the reinit threshold must be a finite number > 0, got {}",
                    r.threshold
                ));
            }
            if !matches!(self.sae.activation, Activation::TopK { .. }) {
                return bad("the reinit rule targets a firing rate k/m and needs the TopK activation".into());
            }
        }
        self.mfr.validate()?;
        (0..self.n_saes).try_for_each(|n| self.sae_config(n).validate())
    }

    /// SAE n's configuration, with its per-SAE k and lr.
    pub fn sae_config(&self, n: usize) -> SaeConfig {
        let mut c = self.sae;
        if let Some(&k) = self.k_per_sae.get(n) {
            c.activation = Activation::TopK { k };
        }
        if let Some(&lr) = self.lr_per_sae.get(n) {
            c.lr = lr;
        }
        c
    }

    /// The learning-rate multiplier for the step after `t` completed steps.
    pub fn lr_scale(&self, t: u64) -> f32 {
        let warm = if t < self.lr_warmup_steps {
            (t + 1) as f32 / self.lr_warmup_steps as f32
        } else {
            1.0
        };
        let left = self.steps.saturating_sub(t);
        let decay = if left < self.lr_decay_steps {
            left as f32 / self.lr_decay_steps as f32
        } else {
            1.0
        };
        warm * decay
    }

    /// The initial weights of every SAE.
    pub fn initial_weights(&self) -> Vec<SaeWeights> {
        (0..self.n_saes)
            .map(|n| SaeWeights::init(&self.sae_config(n), self.seed.wrapping_add(n as u64)))
            .collect()
    }
}

/// Something that happened to one SAE during training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub step: u64,
    pub sae: usize,
    pub kind: String,
    pub detail: String,
}

/// One SAE at one logged step: a line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SaeRecord {
    pub step: u64,
    pub sae: usize,
    #[serde(flatten)]
    pub window: SaeMetrics,
    /// The learning rate of the last step.
    pub lr: f32,
    /// λ·w(t) of the last step.
    pub mfr_weight: f64,
    /// Mean over the window, and over the other SAEs, of the MMCS the penalty uses
    /// (absent without a penalty).
    pub penalty_mmcs: Option<f64>,
    /// The MFR penalty λ·w·mean over pairs (1 − MMCS), ensemble-wide, last window.
    pub mfr_loss: f64,
    /// At this step, mean over the other SAEs of MMCS_max(other → this) and MMCS_match.
    pub mmcs_max_to_others: Option<f64>,
    pub mmcs_match_to_others: Option<f64>,
    /// Recovery of the true features, where the data has them.
    pub truth: Option<Recovery>,
}

/// Both MMCS forms between two SAEs' dictionaries at one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub a: usize,
    pub b: usize,
    /// MMCS_max(a, b): each latent of b with its best latent of a.
    pub max_ab: f64,
    pub max_ba: f64,
    /// MMCS over an optimal one-to-one matching.
    pub matched: f64,
}

/// One logged step of the whole ensemble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub step: u64,
    pub saes: Vec<SaeRecord>,
    pub pairs: Vec<PairRecord>,
    pub events: Vec<Event>,
}

/// N SAEs, their shared input and the MFR stage, on one GPU.
pub struct Ensemble {
    pub cfg: EnsembleConfig,
    x: Tensor<f32>,
    /// The reconstruction target when denoising (else the SAEs use `x`).
    target: Option<Tensor<f32>>,
    saes: Vec<GpuSae>,
    mfr: Option<GpuMfr>,
    /// N ≥ 2: the pairs' similarity matrices, for the matchings and the logs.
    matrices: Option<PairMatrices>,
    /// Steps completed.
    t: u64,
    reinits: u64,
}

impl Ensemble {
    /// Uploads `weights` (one per SAE) and records every step's dispatches.
    /// With λ = 0 there is no MFR stage: the SAEs train independently.
    pub fn new(gpu: &Gpu, kernels: &Kernels, cfg: EnsembleConfig, weights: &[SaeWeights]) -> Result<Ensemble> {
        cfg.validate()?;
        if weights.len() != cfg.n_saes {
            return Err(Error::Config(format!(
                "{} initial weights for {} SAEs",
                weights.len(),
                cfg.n_saes
            )));
        }
        let x = Tensor::zeros(gpu, &[cfg.sae.batch, cfg.sae.d_in], "batch")?;
        let target = match cfg.denoising {
            true => Some(Tensor::zeros(gpu, &[cfg.sae.batch, cfg.sae.d_in], "clean target")?),
            false => None,
        };
        let threshold = cfg.reinit.unwrap_or_default().threshold;
        let saes = weights
            .iter()
            .enumerate()
            .map(|(n, w)| {
                GpuSae::new(
                    gpu,
                    kernels,
                    cfg.sae_config(n),
                    w,
                    &x,
                    target.as_ref().unwrap_or(&x),
                    threshold,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mfr = if cfg.mfr.lambda > 0.0 && cfg.n_saes >= 2 {
            Some(GpuMfr::new(gpu, kernels, cfg.mfr, &saes)?)
        } else {
            None
        };
        let matrices = match cfg.n_saes >= 2 {
            true => Some(PairMatrices::new(
                gpu,
                kernels,
                cfg.n_saes,
                cfg.sae.d_sae,
                cfg.sae.d_in,
            )?),
            false => None,
        };
        Ok(Ensemble {
            cfg,
            x,
            target,
            saes,
            mfr,
            matrices,
            t: 0,
            reinits: 0,
        })
    }

    pub fn steps_done(&self) -> u64 {
        self.t
    }

    pub fn saes(&self) -> &[GpuSae] {
        &self.saes
    }

    pub fn mfr(&self) -> Option<&GpuMfr> {
        self.mfr.as_ref()
    }

    /// One step of every SAE on `batch` [batch, d]: gradients, MFR, updates, in
    /// one submission. Reads nothing back, except that the `Match` form refreshes
    /// its matchings every `match_every` steps.
    pub async fn step(&mut self, gpu: &Gpu, batch: &[f32]) -> Result<()> {
        self.step_with_target(gpu, batch, None).await
    }

    /// `step` with a separate clean target [batch, d], required when denoising.
    pub async fn step_with_target(&mut self, gpu: &Gpu, batch: &[f32], target: Option<&[f32]>) -> Result<()> {
        match (&self.target, target) {
            (Some(t), Some(clean)) => t.write(gpu, clean)?,
            (None, None) => {}
            (Some(_), None) => {
                return Err(Error::Config(
                    "a denoising ensemble needs a clean target every step".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "a target was given but the ensemble is not denoising".into(),
                ))
            }
        }
        if let Some(mfr) = &self.mfr {
            if mfr.cfg.form == MmcsForm::Match && self.t.is_multiple_of(mfr.cfg.match_every) {
                self.refresh_matchings(gpu).await?;
            }
        }
        self.x.write(gpu, batch)?;
        let lr_scale = self.cfg.lr_scale(self.t);
        for sae in &mut self.saes {
            sae.begin_step(gpu, lr_scale);
        }
        if let Some(mfr) = &mut self.mfr {
            mfr.begin_step(gpu, self.t);
        }
        let mut plan: Vec<_> = self.saes.iter().flat_map(|s| s.gradient_plan()).collect();
        plan.extend(self.mfr.iter().flat_map(|m| m.plan()));
        plan.extend(self.saes.iter().flat_map(|s| s.update_plan()));
        gpu.submit(&plan);
        self.t += 1;
        Ok(())
    }

    /// Recomputes the optimal one-to-one matching of every pair from the current weights:
    /// S on the GPU, read back one pair at a time, the assignment on the CPU.
    async fn refresh_matchings(&self, gpu: &Gpu) -> Result<()> {
        let (mfr, m) = (self.mfr.as_ref().expect("only called with MFR"), self.cfg.sae.d_sae);
        let matrices = self.matrices.as_ref().expect("MFR implies N ≥ 2");
        matrices.upload(gpu, &self.dictionaries(gpu).await?)?;
        for p in 0..mfr.pairs().len() {
            let cosines = cosines_of(&matrices.matrix(gpu, p).await?);
            let mut assign = vec![0u32; m];
            for (i, j) in max_similarity_matching(&cosines, m, m) {
                assign[j] = i as u32;
            }
            mfr.set_matching(gpu, p, &assign)?;
        }
        Ok(())
    }

    /// Every SAE's unit-row decoder dictionary [m, d], from its current weights.
    pub async fn dictionaries(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for s in &self.saes {
            out.push(s.weights(gpu).await?.dictionary());
        }
        Ok(out)
    }

    pub async fn weights(&self, gpu: &Gpu) -> Result<Vec<SaeWeights>> {
        let mut out = Vec::new();
        for s in &self.saes {
            out.push(s.weights(gpu).await?);
        }
        Ok(out)
    }

    /// Reads the window's metrics, evaluates the dictionaries (pairwise MMCS in
    /// both forms, recovery of `truth` if given), applies the reinit rule to any
    /// SAE whose statistic exceeded the threshold during the window, and starts
    /// a new window. The reinit check runs here, once per window, because the
    /// statistic lives on the GPU; with `log_every = 1` it acts at the very step,
    /// as the reference code does.
    pub async fn log(&mut self, gpu: &Gpu, truth: Option<&[f32]>) -> Result<LogRecord> {
        let (d, m) = (self.cfg.sae.d_in, self.cfg.sae.d_sae);
        let mut windows = Vec::new();
        for s in &mut self.saes {
            windows.push(s.take_metrics(gpu).await?);
        }
        let pair_mmcs = match &mut self.mfr {
            Some(m) => Some(m.take_pair_mmcs(gpu).await?),
            None => None,
        };
        let dicts = self.dictionaries(gpu).await?;
        let ps = pairs(self.saes.len());
        let mut pair_records = Vec::new();
        if let Some(matrices) = &self.matrices {
            matrices.upload(gpu, &dicts)?;
            for (p, &(a, b)) in ps.iter().enumerate() {
                let mmcs = metrics::mmcs_of_cosines(&cosines_of(&matrices.matrix(gpu, p).await?), m, m);
                pair_records.push(PairRecord {
                    a,
                    b,
                    max_ab: mmcs.max_ab,
                    max_ba: mmcs.max_ba,
                    matched: mmcs.matched,
                });
            }
        }
        let last_t = self.t.saturating_sub(1);
        let mfr_weight = self.mfr.as_ref().map_or(0.0, |m| m.cfg.weight(last_t));
        let mfr_loss = pair_mmcs.as_ref().map_or(0.0, |v| {
            mfr_weight * v.iter().map(|s| 1.0 - s).sum::<f64>() / v.len().max(1) as f64
        });
        let lr_scale = self.cfg.lr_scale(last_t);
        let mut saes = Vec::new();
        for (n, window) in windows.into_iter().enumerate() {
            let mine: Vec<usize> = (0..ps.len()).filter(|&p| ps[p].0 == n || ps[p].1 == n).collect();
            let mean = |f: &dyn Fn(usize) -> f64| {
                (!mine.is_empty()).then(|| mine.iter().map(|&p| f(p)).sum::<f64>() / mine.len() as f64)
            };
            let max_to_me = |p: usize| {
                if ps[p].1 == n {
                    pair_records[p].max_ab
                } else {
                    pair_records[p].max_ba
                }
            };
            saes.push(SaeRecord {
                step: self.t,
                sae: n,
                window,
                lr: self.saes[n].cfg.lr * lr_scale,
                mfr_weight,
                penalty_mmcs: pair_mmcs.as_ref().and_then(|v| mean(&|p| v[p])),
                mfr_loss,
                mmcs_max_to_others: mean(&max_to_me),
                mmcs_match_to_others: mean(&|p| pair_records[p].matched),
                truth: truth.map(|t| metrics::truth_recovery(&dicts[n], t, d)),
            });
        }
        let mut events = Vec::new();
        if let Some(r) = self.cfg.reinit {
            for (n, rec) in saes.iter().enumerate() {
                if rec.window.reinit_over > 0 {
                    self.reinits += 1;
                    let seed = self.cfg.seed.wrapping_add(1_000_003 * self.reinits + n as u64);
                    let fresh = SaeWeights::init(&self.saes[n].cfg, seed);
                    self.saes[n].reset(gpu, &fresh)?;
                    events.push(Event {
                        step: self.t,
                        sae: n,
                        kind: "reinit".into(),
                        detail: format!(
                            "statistic reached {:.3} (> {}) on {} of the last {} steps; weights and Adam state reset",
                            rec.window.reinit_stat_max, r.threshold, rec.window.reinit_over, rec.window.steps
                        ),
                    });
                }
            }
        }
        Ok(LogRecord {
            step: self.t,
            saes,
            pairs: pair_records,
            events,
        })
    }
}

/// A read-back similarity matrix as cosines in f64, clamped to [-1, 1] against rounding
/// (as `metrics::cosine_matrix` does).
fn cosines_of(s: &[f32]) -> Vec<f64> {
    s.iter().map(|&v| f64::from(v).clamp(-1.0, 1.0)).collect()
}

impl SaeWeights {
    /// The unit-row decoder dictionary [m, d]: W's rows normalised (tied) or W_dec (standard).
    pub fn dictionary(&self) -> Vec<f32> {
        let (w, d) = match self.arch {
            Architecture::Tied => (&self.params[0], self.params[0].shape[1]),
            Architecture::Standard => (&self.params[2], self.params[2].shape[1]),
        };
        let w64: Vec<f64> = w.data.iter().map(|&v| v as f64).collect();
        crate::reference::rows_normalise(&w64, d)
            .0
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }
}

/// A run folder: `config.json`, `metrics.jsonl` (one line per logged step and
/// SAE), `events.jsonl`, `summary.json`. Whole files are written to a temporary
/// name and renamed, so an interrupted run never leaves a half-written file.
pub struct RunDir {
    dir: PathBuf,
    metrics: Vec<u8>,
    events: Vec<u8>,
}

impl RunDir {
    pub fn create(dir: &Path, config: &impl Serialize) -> Result<RunDir> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let run = RunDir {
            dir: dir.to_path_buf(),
            metrics: Vec::new(),
            events: Vec::new(),
        };
        run.write_json("config.json", config)?;
        Ok(run)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Appends the record's lines and rewrites `metrics.jsonl` and `events.jsonl`.
    pub fn log(&mut self, record: &LogRecord) -> Result<()> {
        for s in &record.saes {
            self.metrics.extend(serde_json::to_vec(s).expect("records serialise"));
            self.metrics.push(b'\n');
        }
        for e in &record.events {
            self.events.extend(serde_json::to_vec(e).expect("events serialise"));
            self.events.push(b'\n');
        }
        write_atomic(&self.dir.join("metrics.jsonl"), &self.metrics)?;
        write_atomic(&self.dir.join("events.jsonl"), &self.events)
    }

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        write_json(&self.dir.join(name), value)
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `value` as pretty JSON to `path` (its folder created), atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let mut bytes = serde_json::to_vec_pretty(value).expect("values serialise");
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// Trains `cfg.steps` steps of an ensemble from `weights` on batches from
/// `source`, logging every `log_every` steps and at the last step; every log
/// record goes to `run_dir` (if any) and to `on_progress`, which also hears of
/// every step. Returns the log records and the final weights.
pub async fn run(
    gpu: &Gpu,
    kernels: &Kernels,
    cfg: &EnsembleConfig,
    weights: &[SaeWeights],
    source: &mut dyn crate::data::Source,
    mut run_dir: Option<&mut RunDir>,
    on_progress: &mut dyn FnMut(u64, Option<&LogRecord>),
) -> Result<Outcome> {
    if source.d() != cfg.sae.d_in {
        return Err(Error::Shape(format!(
            "the data has width {} but the SAEs expect d = {}",
            source.d(),
            cfg.sae.d_in
        )));
    }
    let mut ens = Ensemble::new(gpu, kernels, cfg.clone(), weights)?;
    let mut logs = Vec::new();
    for step in 1..=cfg.steps {
        let (batch, target) = source.next_pair(cfg.sae.batch)?;
        ens.step_with_target(gpu, &batch, target.as_deref()).await?;
        if step.is_multiple_of(cfg.log_every) || step == cfg.steps {
            let record = ens.log(gpu, source.truth()).await?;
            if let Some(dir) = run_dir.as_deref_mut() {
                dir.log(&record)?;
            }
            on_progress(step, Some(&record));
            logs.push(record);
        } else {
            on_progress(step, None);
        }
    }
    Ok(Outcome {
        logs,
        weights: ens.weights(gpu).await?,
    })
}

/// What a finished run leaves: its log records and every SAE's final weights.
pub struct Outcome {
    pub logs: Vec<LogRecord>,
    pub weights: Vec<SaeWeights>,
}

/// A whole training run as `mfr-sae train --config` reads it and as every run
/// folder's `config.json` records it: the data and the ensemble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub ensemble: EnsembleConfig,
}

/// Where a training run's batches come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataConfig {
    /// A seeded synthetic generator with known features.
    Synthetic(crate::data::synthetic::SyntheticConfig),
    /// Activations streamed from a `.npy` / `.safetensors` file.
    File(FileConfig),
}

/// A file of activations [N, d], read in chunks through a seeded shuffling
/// buffer, so that files larger than memory train too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileConfig {
    pub file: String,
    /// The tensor of a `.safetensors` file with several.
    pub tensor: Option<String>,
    /// Scale rows to mean norm √d (one streaming pass over the file measures it).
    pub normalise: bool,
    /// Rows held by the shuffling buffer.
    pub shuffle_rows: usize,
}
