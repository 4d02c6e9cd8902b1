//! The ensemble trainer: N SAEs on the same batches, each with its own Adam
//! (and optionally its own k and learning rate), the MFR penalty between them,
//! learning-rate schedule, the reference code's re-initialisation rule, metrics
//! every `log_every` steps (never a readback per step), the run folder, and
//! when checkpoints are taken and a run stops early (`run_with`).
//!
//! Does not own the kernels, one SAE's step (`sae.rs`), MFR's GPU stage
//! (`mfr.rs`), where batches come from (`data`) or the checkpoint format
//! (`checkpoint.rs`).

use crate::assignment::max_similarity_matching;
use crate::checkpoint::Checkpoint;
use crate::data::activations;
use crate::data::synthetic::Synthetic;
use crate::data::Source;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{Kernels, MmcsForm};
use crate::metrics::{self, Recovery};
use crate::mfr::{pairs, GpuMfr, MfrConfig, PairMatrices};
use crate::model::{Activation, SaeConfig, SaeWeights};
use crate::sae::{GpuSae, SaeMetrics, StackedStep};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The re-initialisation rule of the reference code (ARCHITECTURE.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
#[serde(deny_unknown_fields)]
pub struct EnsembleConfig {
    /// The shape, architecture, activation and optimiser shared by the SAEs.
    pub sae: SaeConfig,
    /// Number of SAEs N.
    pub n_saes: usize,
    /// Per-SAE k (TopK or BatchTopK); empty: every SAE uses `sae`'s k.
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
    /// `n_saes` SAEs of `sae` trained with `mfr` for `steps` steps, metrics read every
    /// `log_every`, weights seeded by `seed`; the rest at its default: one k and lr for
    /// all, no reinit, no learning-rate schedule, no denoising.
    pub fn new(sae: SaeConfig, n_saes: usize, mfr: MfrConfig, steps: u64, log_every: u64, seed: u64) -> EnsembleConfig {
        EnsembleConfig {
            sae,
            n_saes,
            k_per_sae: vec![],
            lr_per_sae: vec![],
            mfr,
            reinit: None,
            lr_warmup_steps: 0,
            lr_decay_steps: 0,
            steps,
            log_every,
            seed,
            denoising: false,
        }
    }

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
        if !self.k_per_sae.is_empty() && self.sae.activation.k().is_none() {
            return bad("k_per_sae needs the TopK or BatchTopK activation".into());
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
            if self.sae.activation.k().is_none() {
                return bad(
                    "the reinit rule targets a firing rate k/m and needs the TopK or BatchTopK activation".into(),
                );
            }
        }
        // The shared lr is replaced by lr_per_sae when given, but is stored all the same.
        if !self.sae.lr.is_finite() {
            return bad(format!(
                "the learning rate must be a finite number, got {}",
                self.sae.lr
            ));
        }
        let a = self.sae.adam;
        if !((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2) && a.eps.is_finite() && a.eps > 0.0) {
            return bad(format!(
                "Adam needs 0 ≤ beta1, beta2 < 1 and a finite eps > 0, got beta1 {}, beta2 {}, eps {}",
                a.beta1, a.beta2, a.eps
            ));
        }
        self.mfr.validate()?;
        // The SAEs differ only through the per-SAE lists (empty, or one entry per SAE), so the
        // configs to check are bounded by the input, not by N (N = 2³² must not loop 2³² times).
        (0..self.distinct_saes()).try_for_each(|n| self.sae_config(n).validate())
    }

    /// How many leading SAEs cover every distinct SAE config: N with per-SAE lists, else 1.
    pub fn distinct_saes(&self) -> usize {
        self.k_per_sae
            .len()
            .max(self.lr_per_sae.len())
            .clamp(1, self.n_saes.max(1))
    }

    /// SAE n's configuration, with its per-SAE k and lr.
    pub fn sae_config(&self, n: usize) -> SaeConfig {
        let mut c = self.sae;
        if let Some(&k) = self.k_per_sae.get(n) {
            c.activation = match c.activation {
                Activation::BatchTopK { .. } => Activation::BatchTopK { k },
                _ => Activation::TopK { k },
            };
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
    /// MSE on the run's validation rows at this step, where it has them (`Control::validate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_mse: Option<f64>,
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
    /// The SAEs' forward and backward passes as one (`GpuSae::stack`), or why they are
    /// recorded one by one.
    stacked: std::result::Result<StackedStep, String>,
    /// This step's update is the stacked Adam (`StackedStep::begin_update`).
    stacked_update: bool,
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
    /// Where the SAEs are stackable (`GpuSae::stackable`) their step is recorded as one.
    pub fn new(gpu: &Gpu, kernels: &Kernels, cfg: EnsembleConfig, weights: &[SaeWeights]) -> Result<Ensemble> {
        Self::build(gpu, kernels, cfg, weights, true)
    }

    /// `new`, with every SAE's step recorded by itself even where they could be stacked
    /// (the tests compare the two; `bench --unstacked` times it).
    pub fn new_unstacked(
        gpu: &Gpu,
        kernels: &Kernels,
        cfg: EnsembleConfig,
        weights: &[SaeWeights],
    ) -> Result<Ensemble> {
        Self::build(gpu, kernels, cfg, weights, false)
    }

    fn build(
        gpu: &Gpu,
        kernels: &Kernels,
        cfg: EnsembleConfig,
        weights: &[SaeWeights],
        stack: bool,
    ) -> Result<Ensemble> {
        cfg.validate()?;
        if weights.len() != cfg.n_saes {
            return Err(Error::Config(format!(
                "{} initial weights for {} SAEs",
                weights.len(),
                cfg.n_saes
            )));
        }
        let cfgs: Vec<SaeConfig> = (0..cfg.n_saes).map(|n| cfg.sae_config(n)).collect();
        let stackable = match stack {
            true => GpuSae::stackable(gpu, &cfgs),
            false => Err("recorded one by one on request".to_string()),
        };
        let x = Tensor::zeros(gpu, &[cfg.sae.batch, cfg.sae.d_in], "batch")?;
        let target = match cfg.denoising {
            true => Some(Tensor::zeros(gpu, &[cfg.sae.batch, cfg.sae.d_in], "clean target")?),
            false => None,
        };
        let threshold = cfg.reinit.unwrap_or_default().threshold;
        let target_or_x = target.as_ref().unwrap_or(&x);
        let (saes, stacked) = match stackable {
            Ok(()) => {
                let (saes, step) = GpuSae::stack(gpu, kernels, &cfgs, weights, &x, target_or_x, threshold)?;
                (saes, Ok(step))
            }
            Err(why) => {
                // Every SAE after the first reads the target's statistics the first one's step makes.
                let mut saes: Vec<GpuSae> = Vec::with_capacity(weights.len());
                for (w, &sae_cfg) in weights.iter().zip(&cfgs) {
                    let sae = GpuSae::new(gpu, kernels, sae_cfg, w, &x, target_or_x, threshold, saes.first())?;
                    saes.push(sae);
                }
                (saes, Err(why))
            }
        };
        let mfr = if cfg.mfr.lambda > 0.0 && cfg.n_saes >= 2 {
            Some(GpuMfr::new(gpu, kernels, cfg.mfr, &saes, stacked.as_ref().ok())?)
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
            stacked,
            stacked_update: false,
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

    /// Whether the SAEs' steps run as one stacked step (one dispatch per kernel for all N),
    /// or why they run one by one.
    pub fn stacking(&self) -> std::result::Result<(), &str> {
        self.stacked.as_ref().map(|_| ()).map_err(|why| why.as_str())
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
        self.stacked_update = match &self.stacked {
            Ok(step) => step.begin_update(gpu, &self.saes, lr_scale),
            Err(_) => false,
        };
        if let Some(mfr) = &mut self.mfr {
            mfr.begin_step(gpu, self.t);
        }
        gpu.submit(&self.step_plan());
        self.t += 1;
        Ok(())
    }

    /// The dispatches of one step, in order: every SAE's gradients, the MFR stage, every
    /// SAE's update. `step` submits them after writing the step's uniforms; `bench
    /// --profile` replays them one timed pass each.
    pub fn step_plan(&self) -> Vec<&Dispatch> {
        let mut plan: Vec<_> = match &self.stacked {
            Ok(step) => step.gradient_plan().iter().collect(),
            Err(_) => self.saes.iter().flat_map(|s| s.gradient_plan()).collect(),
        };
        plan.extend(self.mfr.iter().flat_map(|m| m.plan()));
        match (&self.stacked, self.stacked_update) {
            (Ok(step), true) => plan.extend(step.update_plan()),
            _ => plan.extend(self.saes.iter().flat_map(|s| s.update_plan())),
        }
        plan
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
        check_divergence(self.t, &windows)?;
        let pair_mmcs = match &mut self.mfr {
            Some(m) => Some(m.take_pair_mmcs(gpu).await?),
            None => None,
        };
        let weights = self.weights(gpu).await?;
        check_weights(self.t, &weights)?;
        let dicts: Vec<Vec<f32>> = weights.iter().map(SaeWeights::dictionary).collect();
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
                validation_mse: None,
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

/// Checkpoint hooks (`checkpoint.rs`): the counters and SAEs a checkpoint saves and puts back.
impl Ensemble {
    /// Re-initialisations so far.
    pub fn reinits(&self) -> u64 {
        self.reinits
    }

    pub(crate) fn saes_mut(&mut self) -> &mut [GpuSae] {
        &mut self.saes
    }

    pub(crate) fn set_counters(&mut self, steps: u64, reinits: u64) {
        self.t = steps;
        self.reinits = reinits;
    }
}

/// MSE per value above which a window counts as diverged: no data row may have a squared
/// norm above `validate::MAX_ROW_SQUARED_NORM` (10³⁰), so reconstructions this far off are
/// the optimiser's doing. (FVU is no criterion: a window whose targets have no variance,
/// batch 1 say, has an astronomical FVU without anything being wrong.)
pub const DIVERGED_MSE: f64 = crate::data::validate::MAX_ROW_SQUARED_NORM;

/// The divergence guard, on the metrics each log window reads back anyway (no extra
/// readback): a non-finite loss (MSE, L1, AuxK MSE) or an MSE above `DIVERGED_MSE` stops
/// the run, naming the step and the SAE, before the window's weights are used for anything.
pub fn check_divergence(step: u64, windows: &[SaeMetrics]) -> Result<()> {
    for (n, w) in windows.iter().enumerate() {
        let values = [("mse", w.mse), ("L1", w.l1), ("aux mse", w.aux_mse)];
        let bad = values.iter().find(|(_, v)| !v.is_finite());
        let bad = bad.or_else(|| (w.mse > DIVERGED_MSE).then_some(&values[0]));
        if let Some((what, value)) = bad {
            return Err(Error::Config(format!(
                "training diverged by step {step}: SAE {n}'s {what} over the last {} steps is {value:e} \
                 (a finite value ≤ {DIVERGED_MSE:e} is expected): lower the learning rate",
                w.steps
            )));
        }
    }
    Ok(())
}

/// Largest weight magnitude a run may reach: the data's rows have squared norms below
/// `validate::MAX_ROW_SQUARED_NORM` (10³⁰), so a weight beyond 10¹⁵ makes products with a
/// row leave f32's range; only a diverging optimiser (e.g. `--lr 1e30`) gets there.
pub const MAX_WEIGHT: f32 = 1e15;

/// The divergence guard on weights (read back each log window for the dictionaries anyway,
/// and at the end): a non-finite or exploding value stops the run, naming step, SAE and parameter.
pub fn check_weights(step: u64, weights: &[SaeWeights]) -> Result<()> {
    for (n, w) in weights.iter().enumerate() {
        for p in &w.params {
            if let Some(at) = p.data.iter().position(|v| !v.is_finite() || v.abs() > MAX_WEIGHT) {
                return Err(Error::Config(format!(
                    "training diverged by step {step}: SAE {n}'s {}[{at}] is {:e} (the limit is ±{MAX_WEIGHT:e}): \
                     lower the learning rate",
                    p.name, p.data[at]
                )));
            }
        }
    }
    Ok(())
}

/// A read-back similarity matrix as cosines in f64, clamped to [-1, 1] against rounding
/// (as `metrics::cosine_matrix` does).
fn cosines_of(s: &[f32]) -> Vec<f64> {
    s.iter().map(|&v| f64::from(v).clamp(-1.0, 1.0)).collect()
}

/// A run folder: `config.json`, `metrics.jsonl` (one line per logged step and SAE, appended
/// and synced at every log window), `events.jsonl`, `summary.json`, and a lock file holding
/// the owner's pid while the run lives. Whole files are written to a unique temporary name,
/// synced and renamed, so an interrupted run never leaves a half-written file; a folder that
/// holds another run's outputs is refused (`clear_run_outputs` empties it first, for
/// `--overwrite`), and two runs cannot share one folder.
pub struct RunDir {
    dir: PathBuf,
    _lock: Lock,
}

/// The names a run (or an experiment, with its `seed-S` folders) leaves in its folder.
const RUN_OUTPUTS: [&str; 5] = [
    "config.json",
    "metrics.jsonl",
    "events.jsonl",
    "summary.json",
    "saelens",
];
/// The lock file's name; it holds the pid of the run that owns the folder.
const LOCK_FILE: &str = ".mfr-sae.lock";
/// The suffix of temporary files (`write_atomic`).
const TMP_SUFFIX: &str = ".tmp";

fn is_run_output(name: &str) -> bool {
    let checkpoint = name == crate::checkpoint::DIR || name.starts_with(&format!("{}.", crate::checkpoint::DIR));
    RUN_OUTPUTS.contains(&name) || checkpoint || name.starts_with("seed-") || name.ends_with(TMP_SUFFIX)
}

/// The run outputs present in `dir`, sorted.
fn run_outputs(dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let name = entry
            .map_err(|e| io_error(dir, e))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if is_run_output(&name) {
            found.push(name);
        }
    }
    found.sort();
    Ok(found)
}

/// Removes a previous run's (or experiment's) outputs from `dir`, if it exists; refused while
/// another live run holds the folder's lock. Files that are not run outputs stay.
pub fn clear_run_outputs(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let _lock = Lock::acquire(dir)?;
    for name in run_outputs(dir)? {
        let path = dir.join(&name);
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| io_error(&path, e))?;
    }
    Ok(())
}

impl RunDir {
    /// Takes `dir` (created if needed) for a new run and writes `config` there; refuses a
    /// folder in use by another run or holding another run's outputs.
    pub fn create(dir: &Path, config: &impl Serialize) -> Result<RunDir> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let lock = Lock::acquire(dir)?;
        let found = run_outputs(dir)?;
        if !found.is_empty() {
            return Err(Error::Io {
                path: dir.display().to_string(),
                message: format!(
                    "the folder holds another run's files ({}): choose another --out, or pass --overwrite \
                     to replace them",
                    found.join(", ")
                ),
            });
        }
        let run = RunDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        run.write_json("config.json", config)?;
        write_atomic(&run.dir.join("metrics.jsonl"), b"")?;
        write_atomic(&run.dir.join("events.jsonl"), b"")?;
        Ok(run)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Appends the record's lines to `metrics.jsonl` and `events.jsonl` (synced).
    pub fn log(&mut self, record: &LogRecord) -> Result<()> {
        let lines = |items: Vec<Vec<u8>>| -> Vec<u8> {
            items
                .into_iter()
                .flat_map(|mut l| {
                    l.push(b'\n');
                    l
                })
                .collect()
        };
        let metrics = lines(
            record
                .saes
                .iter()
                .map(|s| serde_json::to_vec(s).expect("records serialise"))
                .collect(),
        );
        let events = lines(
            record
                .events
                .iter()
                .map(|e| serde_json::to_vec(e).expect("events serialise"))
                .collect(),
        );
        append(&self.dir.join("metrics.jsonl"), &metrics)?;
        append(&self.dir.join("events.jsonl"), &events)
    }

    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        write_json(&self.dir.join(name), value)
    }

    /// Reopens the run folder `dir` to continue after step `step` (a checkpoint's; 0:
    /// from the start), taking its lock: the lines of `metrics.jsonl` and
    /// `events.jsonl` logged after it (or cut short) are dropped, the bytes before it
    /// kept as they are, so that the resumed run appends exactly what an
    /// uninterrupted one would have written.
    pub fn reopen(dir: &Path, step: u64) -> Result<RunDir> {
        let lock = Lock::acquire(dir)?;
        for name in ["metrics.jsonl", "events.jsonl"] {
            let path = dir.join(name);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io_error(&path, e)),
            };
            let mut kept = Vec::new();
            for line in bytes.split_inclusive(|&b| b == b'\n').filter(|l| l.ends_with(b"\n")) {
                let at: Option<u64> = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()));
                if at.is_some_and(|at| at <= step) {
                    kept.extend_from_slice(line);
                }
            }
            write_atomic(&path, &kept)?;
        }
        Ok(RunDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }
}

/// A folder's lock: a file created exclusively, holding the owner's pid, removed on drop.
/// A lock whose pid is no longer running (Linux: no /proc/PID) is stale and taken over.
struct Lock {
    path: PathBuf,
}

impl Lock {
    fn acquire(dir: &Path) -> Result<Lock> {
        use std::io::Write;
        let path = dir.join(LOCK_FILE);
        let busy = |message: String| Error::Io {
            path: dir.display().to_string(),
            message,
        };
        // Twice at most: the second try follows the removal of a stale lock.
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let written = file
                        .write_all(std::process::id().to_string().as_bytes())
                        .and_then(|_| file.sync_all());
                    if let Err(e) = written {
                        std::fs::remove_file(&path).ok();
                        return Err(io_error(&path, e));
                    }
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    match text.trim().parse::<u32>() {
                        Ok(pid) if !process_is_gone(pid) => {
                            return Err(busy(format!(
                                "the folder is in use by another run (pid {pid}, lock file {LOCK_FILE}): wait for \
                                 it to finish or choose another --out"
                            )))
                        }
                        Ok(_) => std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?,
                        Err(_) => {
                            return Err(busy(format!(
                                "the lock file {LOCK_FILE} does not name a process (\"{}\"): another run may be \
                                 starting; if none is, remove the lock file",
                                text.trim()
                            )))
                        }
                    }
                }
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        Err(busy(format!(
            "the lock file {LOCK_FILE} could not be taken: another run took it first"
        )))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        std::fs::remove_file(&self.path).ok();
    }
}

/// True only when `pid` is known not to be running (Linux: /proc has no entry); elsewhere
/// a lock is never taken for stale.
fn process_is_gone(pid: u32) -> bool {
    cfg!(target_os = "linux") && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
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

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, unique to this
/// process and call (`NAME.PID.N.tmp`), synced, renamed over `path`, and the folder synced
/// where the platform allows; the temporary file is removed if any step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |f| f.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!("{name}.{}.{n}{TMP_SUFFIX}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(|e| io_error(&tmp, e))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| io_error(path, e)));
    if written.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    written?;
    sync_folder(path);
    Ok(())
}

/// Appends `bytes` to `path` (created if missing), flushed and synced.
fn append(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    if bytes.is_empty() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.flush()).and_then(|_| f.sync_data()))
        .map_err(|e| io_error(path, e))
}

/// Makes a rename in `path`'s folder durable (Unix: fsync the folder); a no-op where
/// folders cannot be opened (Windows), and best effort: the data itself is already synced.
fn sync_folder(path: &Path) {
    if cfg!(unix) {
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(f) = std::fs::File::open(dir) {
                f.sync_all().ok();
            }
        }
    }
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
    run_dir: Option<&mut RunDir>,
    on_progress: &mut dyn FnMut(u64, Option<&LogRecord>),
) -> Result<Outcome> {
    run_with(
        gpu,
        kernels,
        cfg,
        weights,
        source,
        run_dir,
        on_progress,
        Control::default(),
    )
    .await
}

/// Checkpointing and stopping for `run_with`; the default does neither.
#[derive(Default)]
pub struct Control<'a> {
    /// With a run folder: a checkpoint at the first log step at least this many
    /// steps after the last one (or the start), and at the last step. 0: none.
    pub checkpoint_every: u64,
    /// `checkpoint::config_hash` of the run's configuration, stored in its checkpoints.
    pub config_hash: String,
    /// Continue from this checkpoint (of this configuration and `source`) instead of
    /// `weights`. The returned logs then start with the checkpoint's own record.
    pub resume: Option<Checkpoint>,
    /// Read at every log step: once set, the run ends at the next one (the end of
    /// the current log window), checkpointed there (with a run folder and
    /// `checkpoint_every` > 0), `Outcome::stopped` saying at which step.
    pub stop: Option<&'a AtomicBool>,
    /// The resumed run had ended at its checkpoint (a rule of the caller's stopped it
    /// there): no step is trained, and the outcome is the checkpoint's, `stopped` at it.
    pub finished: bool,
    /// At every log step, each SAE's MSE on rows kept from training, from its weights;
    /// recorded as `SaeRecord::validation_mse` (and so in `metrics.jsonl`).
    pub validate: Option<Validate<'a>>,
}

/// Scores each SAE of an ensemble from its weights (`Control::validate`).
pub type Validate<'a> = &'a dyn Fn(&[SaeWeights]) -> Vec<f64>;

/// `run` with checkpoints, resume and a stop flag (`Control`). Checkpoints fall on
/// log steps, where the metrics windows have just restarted, so a resumed run logs
/// exactly what an uninterrupted one would.
#[allow(clippy::too_many_arguments)]
pub async fn run_with(
    gpu: &Gpu,
    kernels: &Kernels,
    cfg: &EnsembleConfig,
    weights: &[SaeWeights],
    source: &mut dyn crate::data::Source,
    mut run_dir: Option<&mut RunDir>,
    on_progress: &mut dyn FnMut(u64, Option<&LogRecord>),
    control: Control<'_>,
) -> Result<Outcome> {
    if source.d() != cfg.sae.d_in {
        return Err(Error::Shape(format!(
            "the data has width {} but the SAEs expect d = {}",
            source.d(),
            cfg.sae.d_in
        )));
    }
    let checkpoints = control.checkpoint_every > 0 && run_dir.is_some();
    let (mut ens, mut logs) = match &control.resume {
        Some(ck) => (ck.restore(gpu, kernels, cfg, source)?, vec![ck.state.last_log.clone()]),
        None => (Ensemble::new(gpu, kernels, cfg.clone(), weights)?, Vec::new()),
    };
    let mut last_checkpoint = ens.steps_done();
    let finished = control.finished && control.resume.is_some();
    let mut stopped = finished.then(|| ens.steps_done());
    let last = if finished { ens.steps_done() } else { cfg.steps };
    for step in ens.steps_done() + 1..=last {
        let (batch, target) = source.next_pair(cfg.sae.batch)?;
        ens.step_with_target(gpu, &batch, target.as_deref()).await?;
        if step.is_multiple_of(cfg.log_every) || step == cfg.steps {
            let mut record = ens.log(gpu, source.truth()).await?;
            if let Some(validate) = control.validate {
                let scores = validate(&ens.weights(gpu).await?);
                for (sae, mse) in record.saes.iter_mut().zip(scores) {
                    sae.validation_mse = Some(mse);
                }
            }
            if let Some(dir) = run_dir.as_deref_mut() {
                dir.log(&record)?;
            }
            let stop = control.stop.is_some_and(|s| s.load(Ordering::SeqCst));
            let due = step - last_checkpoint >= control.checkpoint_every || step == cfg.steps || stop;
            if let (true, true, Some(dir)) = (checkpoints, due, run_dir.as_deref()) {
                Checkpoint::capture(gpu, &ens, &*source, &control.config_hash, &record)
                    .await?
                    .write(dir.path())?;
                last_checkpoint = step;
            }
            on_progress(step, Some(&record));
            logs.push(record);
            if stop {
                stopped = Some(step);
                break;
            }
        } else {
            on_progress(step, None);
        }
    }
    let weights = ens.weights(gpu).await?;
    check_weights(ens.steps_done(), &weights)?;
    Ok(Outcome { logs, weights, stopped })
}

/// What a finished run leaves: its log records and every SAE's final weights.
pub struct Outcome {
    pub logs: Vec<LogRecord>,
    pub weights: Vec<SaeWeights>,
    /// Where a stop flag ended the run early (`run_with`); None: it ran to the end.
    pub stopped: Option<u64>,
}

/// A whole training run as `mfr-sae train --config` reads it and as every run
/// folder's `config.json` records it: the data and the ensemble.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub ensemble: EnsembleConfig,
}

/// Where a training run's batches come from. In JSON: a data file's object (it has `file`)
/// or a synthetic generator's (it has `generator`); unknown keys are refused in both.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum DataConfig {
    /// A seeded synthetic generator with known features.
    Synthetic(crate::data::synthetic::SyntheticConfig),
    /// Activations streamed from a `.npy` / `.safetensors` file.
    File(FileConfig),
}

/// Chooses the variant by its key (`file` or `generator`) rather than by trying both as
/// `untagged` would, so that a misspelt key is named instead of "did not match any variant".
impl<'de> Deserialize<'de> for DataConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let value = serde_json::Value::deserialize(deserializer)?;
        let keys = value
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "));
        let parsed = match (value.get("file"), value.get("generator")) {
            (Some(_), _) => FileConfig::deserialize(value).map(DataConfig::File),
            (None, Some(_)) => crate::data::synthetic::SyntheticConfig::deserialize(value).map(DataConfig::Synthetic),
            (None, None) => {
                return Err(D::Error::custom(format!(
                    "data: neither `file` (a data file) nor `generator` (synthetic data) is given (keys: {})",
                    keys.unwrap_or_else(|| format!("none, {value} is not an object"))
                )))
            }
        };
        parsed.map_err(|e| D::Error::custom(format!("data: {e}")))
    }
}

/// A file of activations [N, d], read in chunks through a seeded shuffling
/// buffer, so that files larger than memory train too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub file: String,
    /// The tensor of a `.safetensors` file with several.
    pub tensor: Option<String>,
    /// Scale rows to mean norm √d (one streaming pass over the file measures it).
    pub normalise: bool,
    /// Rows held by the shuffling buffer.
    pub shuffle_rows: usize,
}

/// Rows a data file is checked and its scale measured in, per read (`activations::checked_scale`).
const SCALE_CHUNK_ROWS: usize = 4096;

impl DataConfig {
    /// The batches of a run on this data (seeded by `seed`: the generator, or the file's
    /// shuffling), and the factor the rows are multiplied by (1 unless a file is normalised).
    /// A file is checked whole (every row finite and not degenerate) before the first batch.
    pub fn source(&self, seed: u64) -> Result<(Box<dyn Source>, f32)> {
        Ok(match self {
            DataConfig::Synthetic(s) => {
                s.validate()?;
                (Box::new(Synthetic::new(*s, seed)?), 1.0)
            }
            DataConfig::File(f) => {
                let (reader, scale) = f.scaled_reader()?;
                (
                    Box::new(activations::Shuffler::new(reader, f.shuffle_rows, seed)?.with_scale(scale)),
                    scale,
                )
            }
        })
    }

    /// The factor a run on this data multiplies the rows by (1 unless a file is normalised).
    pub fn scale(&self) -> Result<f32> {
        match self {
            DataConfig::Synthetic(_) => Ok(1.0),
            DataConfig::File(f) => Ok(f.scaled_reader()?.1),
        }
    }

    /// The number of true features the data has (synthetic data), for the size checks.
    pub fn true_features(&self) -> Option<usize> {
        match self {
            DataConfig::Synthetic(s) => Some(s.n_features()),
            DataConfig::File(_) => None,
        }
    }
}

impl FileConfig {
    /// The file opened for reading, checked whole, and the scale its rows are trained at.
    fn scaled_reader(&self) -> Result<(activations::ChunkReader<std::io::BufReader<std::fs::File>>, f32)> {
        let mut reader = activations::open(Path::new(&self.file), self.tensor.as_deref())?;
        let scale = activations::checked_scale(&mut reader, SCALE_CHUNK_ROWS, self.normalise)?;
        Ok((reader, scale))
    }

    /// The data file at `path` (stored absolute, so that a run folder's config.json works
    /// from any directory) and the width d of its rows; the file's header is read and checked.
    pub fn open(
        path: &Path,
        tensor: Option<String>,
        normalise: bool,
        shuffle_rows: usize,
    ) -> Result<(FileConfig, usize)> {
        let d = activations::open(path, tensor.as_deref())?.d();
        let absolute = std::path::absolute(path).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: format!("cannot resolve the path: {e}"),
        })?;
        let file = FileConfig {
            file: absolute.display().to_string(),
            tensor,
            normalise,
            shuffle_rows,
        };
        Ok((file, d))
    }
}
