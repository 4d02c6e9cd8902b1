//! What an experiment is: the synthetic and the real-data experiment
//! definitions and their presets (the paper's settings and a CPU-sized one).
//!
//! Owns no running and no reporting (`mod.rs`, `report.rs`) and no data
//! loading (`split.rs`).

use crate::data::eeg::{EegConfig, NoiseConfig};
use crate::data::synthetic::{PaperConfig, SyntheticConfig};
use crate::kernels::{AdamHyper, MmcsForm};
use crate::mfr::MfrConfig;
use crate::sae::{Activation, Architecture, SaeConfig};
use crate::train::EnsembleConfig;
use serde::{Deserialize, Serialize};

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

/// The kind of file a real-data experiment reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKind {
    Eeg,
    Activations,
}

/// How a real-data experiment reads its file: each kind with its own settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RealData {
    /// An EDF/EDF+ recording through the paper's preprocessing; its
    /// `held_out_fraction` (the end of the recording) is the held-out part.
    Eeg {
        eeg: EegConfig,
        /// Denoising: noisy input, clean target.
        noise: Option<NoiseConfig>,
    },
    /// Activation rows [N, d] from `.npy` or `.safetensors`.
    Activations {
        /// For `.safetensors`: the tensor to read.
        tensor: Option<String>,
        /// The last fraction of rows (in file order) is held out.
        held_out_fraction: f64,
        /// Scale rows to mean norm √d (the factor is recorded).
        normalise: bool,
    },
}

impl RealData {
    pub fn kind(&self) -> DataKind {
        match self {
            RealData::Eeg { .. } => DataKind::Eeg,
            RealData::Activations { .. } => DataKind::Activations,
        }
    }
}

/// The paper's real-data experiments (EEG, transformer activations): baseline
/// and MFR ensembles on identical batches and initial weights, scored on
/// held-out rows the training never saw.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealExperiment {
    /// The data file.
    pub data: String,
    #[serde(flatten)]
    pub read: RealData,
    /// The ensemble; its λ is replaced by each entry of `lambdas`, and `steps`
    /// by `epochs` passes over the training rows when `epochs` is set.
    pub ensemble: EnsembleConfig,
    pub epochs: Option<f64>,
    pub lambdas: Vec<f32>,
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

    /// EEG (paper, reference code: N = 5, m = 512, k = 6, λ = 0.5, lr 1e-3,
    /// batch 1024, 10 epochs). `quick` scales it to a CPU adapter.
    pub fn eeg(self, data: &str) -> RealExperiment {
        let (n, m, batch, steps, epochs, stride) = match self {
            Preset::Paper => (5, 512, 1024, 0, Some(10.0), None),
            Preset::Quick => (3, 128, 32, 300, None, Some(32)),
        };
        let eeg = EegConfig {
            stride_samples: stride,
            ..Default::default()
        };
        RealExperiment {
            data: data.into(),
            read: RealData::Eeg { eeg, noise: None },
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
            data: data.into(),
            read: RealData::Activations {
                tensor: None,
                held_out_fraction: 0.2,
                normalise: true,
            },
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
