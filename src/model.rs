//! The SAE as a model, independent of where it runs: architectures, activations,
//! the configuration (constructor, defaults, validation), the step path, Adam's
//! hyper-parameters, the parameters (`SaeWeights`: initial weights, shape checks,
//! the unit-row dictionary) and the plain array helpers they need (row
//! normalisation, transpose). `eval` is the CPU forward pass production code
//! scores with (held-out reconstructions).
//!
//! Does not own the GPU step (`sae.rs`), ensembles and MFR (`train.rs`, `mfr.rs`)
//! or the f64 test oracle (`reference.rs`, which is checked against and built on
//! these types, never the other way round).
//!
//! Architectures (ARCHITECTURE.md §1):
//! - `tied` (the paper's): W [m, d], b [m]; a = x Wᵀ + b; x̂ = z U, U = W/‖W_j‖.
//! - `standard` (SAELens): W_enc [d, m], b_enc [m], W_dec [m, d] (unit rows),
//!   b_dec [d]; a = (x − b_dec) W_enc + b_enc; x̂ = z W_dec + b_dec.
//!
//! Loss: MSE over batch·d (+ l1 · Σ|z| / batch for ReLU + L1).

pub mod eval;

use crate::error::{Error, Result};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Adam's fixed hyper-parameters (Kingma & Ba 2015 defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamHyper {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamHyper {
    fn default() -> Self {
        AdamHyper {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// The CLI reads these with clap (a native-only dependency): `--arch tied|standard`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// One weight matrix; decoder = its rows normalised (the paper's).
    Tied,
    /// SAELens layout: W_enc, b_enc, unit-row W_dec, b_dec.
    Standard,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum Activation {
    /// Keep the k largest pre-activations per row (the paper's).
    TopK { k: usize },
    /// ReLU with an L1 penalty `l1 · Σ_j |z_j|` per row, averaged over the batch.
    ReluL1 { l1: f32 },
    /// BatchTopK (Bussmann et al. 2024): training keeps the batch·k largest ReLU'd
    /// pre-activations of the whole batch; inference is JumpReLU at the threshold
    /// estimated during training (`kernels::BATCH_TOPK_THRESHOLD_LR`).
    #[serde(rename = "batch_topk")]
    BatchTopK { k: usize },
}

impl Activation {
    /// The mean number of latents kept per row: TopK's and BatchTopK's k.
    pub fn k(&self) -> Option<usize> {
        match *self {
            Activation::TopK { k } | Activation::BatchTopK { k } => Some(k),
            Activation::ReluL1 { .. } => None,
        }
    }
}

/// AuxK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): latents
/// that have not fired for `dead_after_tokens` tokens reconstruct the residual
/// x − x̂ (held constant) through their own TopK, adding `coef · MSE` to the loss.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuxK {
    /// Dead latents kept per row (Gao: d/2).
    pub k_aux: usize,
    /// Weight of the auxiliary MSE (Gao: 1/32).
    pub coef: f32,
    /// Tokens without firing after which a latent counts as dead (Gao: 10M).
    pub dead_after_tokens: f64,
}

impl AuxK {
    /// Gao et al.'s settings for input width `d_in`.
    pub fn gao(d_in: usize) -> AuxK {
        AuxK {
            k_aux: (d_in / 2).max(1),
            coef: 1.0 / 32.0,
            dead_after_tokens: 10_000_000.0,
        }
    }
}

/// How a step computes the products after the encoder (decode, code gradient,
/// weight gradients). The encoder product x·W_encᵀ is dense on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepPath {
    /// Dense [batch, m] matrix products; works for every activation.
    Dense,
    /// TopK only: only each row's k active latents — decode by gather, the code
    /// gradient at the active latents, weight gradients by a latent-major scatter.
    Sparse,
}

/// The automatic choice takes the sparse path when k · SPARSE_RATIO ≤ m. Measured on
/// lavapipe (2-SAE tied MFR step, d 256, m 512, batch 1024, `tests/sparse.rs`'s
/// `step_time_dense_vs_sparse`, shared CPU): sparse/dense time ≈ 0.4 at k = 32, 0.5 at
/// k = 64, 0.7 at k = 128. The sparse products grow with k while the dense ones shrink
/// with every matmul speed-up (the encoder product, dense on both paths, is most of
/// the sparse step), so the threshold keeps a margin at m/8 rather than m/4.
pub const SPARSE_RATIO: usize = 8;

/// The environment variable that overrides the automatic choice: `dense` or `sparse`.
pub const STEP_PATH_ENV: &str = "MFR_SAE_STEP";

impl StepPath {
    /// How the path is chosen, in one line (for `mfr-sae info`).
    pub fn rule() -> String {
        format!(
            "sparse for TopK with k ≤ m/{SPARSE_RATIO}, else dense; {STEP_PATH_ENV}=dense|sparse overrides (TopK only)"
        )
    }

    /// `MFR_SAE_STEP` read as a path (None when unset), refusing other values.
    pub fn from_env() -> Result<Option<StepPath>> {
        match std::env::var(STEP_PATH_ENV) {
            Err(_) => Ok(None),
            Ok(v) => match v.as_str() {
                "dense" => Ok(Some(StepPath::Dense)),
                "sparse" => Ok(Some(StepPath::Sparse)),
                _ => Err(Error::Config(format!(
                    "{STEP_PATH_ENV} = `{v}`: expected `dense` or `sparse` (or unset for the automatic choice)"
                ))),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaeConfig {
    pub arch: Architecture,
    pub activation: Activation,
    /// Input width d.
    pub d_in: usize,
    /// Dictionary size m.
    pub d_sae: usize,
    /// Rows per batch.
    pub batch: usize,
    pub lr: f32,
    /// TopK without the ReLU, as the paper's reference code does.
    pub paper_exact: bool,
    pub adam: AdamHyper,
    /// The auxiliary loss for dead latents, if enabled.
    #[serde(default)]
    pub auxk: Option<AuxK>,
    /// Forces the step's path; None chooses (`resolved_step_path`).
    #[serde(default)]
    pub step_path: Option<StepPath>,
}

impl SaeConfig {
    /// An SAE of `arch` and `activation` with input width `d_in`, dictionary size `d_sae`,
    /// `batch` rows a step and learning rate `lr`; the rest at its default: TopK with
    /// the ReLU, Adam's defaults, no AuxK, the step path chosen automatically.
    pub fn new(
        arch: Architecture,
        activation: Activation,
        d_in: usize,
        d_sae: usize,
        batch: usize,
        lr: f32,
    ) -> SaeConfig {
        SaeConfig {
            arch,
            activation,
            d_in,
            d_sae,
            batch,
            lr,
            paper_exact: false,
            adam: AdamHyper::default(),
            auxk: None,
            step_path: None,
        }
    }

    /// Refuses values no SAE can be trained with, naming the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.d_in == 0 || self.d_sae == 0 || self.batch == 0 {
            return bad(format!(
                "d_in ({}), d_sae ({}) and batch ({}) must all be at least 1",
                self.d_in, self.d_sae, self.batch
            ));
        }
        if let Some(k) = self.activation.k() {
            if k == 0 || k > self.d_sae {
                return bad(format!(
                    "k = {k} must be between 1 and the dictionary size m = {}",
                    self.d_sae
                ));
            }
        }
        if let Activation::ReluL1 { l1 } = self.activation {
            if !(l1.is_finite() && l1 >= 0.0) {
                return bad(format!("the L1 coefficient must be a finite number ≥ 0, got {l1}"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "the learning rate must be a finite number > 0, got {}",
                self.lr
            ));
        }
        if let Some(a) = self.auxk {
            if a.k_aux == 0 || a.k_aux > self.d_sae {
                return bad(format!(
                    "AuxK's k_aux = {} must be between 1 and m = {}",
                    a.k_aux, self.d_sae
                ));
            }
            let coef_ok = a.coef.is_finite() && a.coef >= 0.0;
            let dead_after_ok = a.dead_after_tokens.is_finite() && a.dead_after_tokens > 0.0;
            if !(coef_ok && dead_after_ok) {
                return bad(format!(
                    "AuxK needs a finite coef ≥ 0 and dead_after_tokens > 0, got {a:?}"
                ));
            }
        }
        if self.step_path == Some(StepPath::Sparse) && !matches!(self.activation, Activation::TopK { .. }) {
            return bad(
                "the sparse step path needs a TopK activation; ReLU + L1 and BatchTopK codes are dense".to_string(),
            );
        }
        let h = self.adam;
        if !(0.0..1.0).contains(&h.beta1) || !(0.0..1.0).contains(&h.beta2) || h.eps.is_nan() || h.eps <= 0.0 {
            return bad(format!("Adam needs 0 ≤ β1, β2 < 1 and ε > 0, got {h:?}"));
        }
        Ok(())
    }

    /// The path this SAE's step takes: `step_path` if set, else `MFR_SAE_STEP` if set
    /// (TopK only: ReLU + L1 and BatchTopK stay dense — a batch-level selection has no
    /// per-row k layout), else sparse for TopK with k · SPARSE_RATIO ≤ m.
    /// AuxK's products follow the same path: its k_aux (Gao: d/2) is m/4 at m = 2d, and
    /// there the sparse step measured ≈ 0.6 of the dense one (d 256, m 512, k 32, AuxK).
    pub fn resolved_step_path(&self) -> Result<StepPath> {
        let Activation::TopK { k } = self.activation else {
            return Ok(self.step_path.unwrap_or(StepPath::Dense));
        };
        if let Some(p) = self.step_path.or(StepPath::from_env()?) {
            return Ok(p);
        }
        Ok(if k * SPARSE_RATIO <= self.d_sae {
            StepPath::Sparse
        } else {
            StepPath::Dense
        })
    }

    /// The L1 coefficient (0 for TopK and BatchTopK).
    pub fn l1(&self) -> f32 {
        match self.activation {
            Activation::ReluL1 { l1 } => l1,
            Activation::TopK { .. } | Activation::BatchTopK { .. } => 0.0,
        }
    }
}

/// One named parameter tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Parameter names, in their fixed order, per architecture.
const TIED: [&str; 2] = ["W", "b"];
const STANDARD: [&str; 4] = ["W_enc", "b_enc", "W_dec", "b_dec"];

pub(crate) fn param_names(arch: Architecture) -> &'static [&'static str] {
    match arch {
        Architecture::Tied => &TIED,
        Architecture::Standard => &STANDARD,
    }
}

/// All parameters of an SAE, in a fixed order per architecture:
/// tied `W [m, d], b [m]`; standard `W_enc [d, m], b_enc [m], W_dec [m, d], b_dec [d]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeWeights {
    pub arch: Architecture,
    pub params: Vec<Param>,
    /// BatchTopK's inference threshold θ (estimated during training, not a parameter
    /// Adam updates); None for the other activations.
    pub threshold: Option<f32>,
}

impl SaeWeights {
    /// The initial weights: tied W orthogonal and b = 0 (the paper); standard
    /// W_dec with random unit rows, W_enc = W_decᵀ, biases 0 (SAELens).
    pub fn init(cfg: &SaeConfig, seed: u64) -> SaeWeights {
        let (d, m) = (cfg.d_in, cfg.d_sae);
        let mut rng = Rng::new(seed);
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        let param = |name, shape: &[usize], data| Param {
            name,
            shape: shape.to_vec(),
            data,
        };
        let params = match cfg.arch {
            Architecture::Tied => vec![
                param(TIED[0], &[m, d], f32s(orthogonal(m, d, &mut rng))),
                param(TIED[1], &[m], vec![0.0; m]),
            ],
            Architecture::Standard => {
                let (w_dec, _) = rows_normalise(&rng.normals(m * d), d);
                let w_enc = transpose(&w_dec, m, d);
                vec![
                    param(STANDARD[0], &[d, m], f32s(w_enc)),
                    param(STANDARD[1], &[m], vec![0.0; m]),
                    param(STANDARD[2], &[m, d], f32s(w_dec)),
                    param(STANDARD[3], &[d], vec![0.0; d]),
                ]
            }
        };
        SaeWeights {
            arch: cfg.arch,
            params,
            threshold: initial_threshold(cfg),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Refuses weights whose architecture or shapes differ from `cfg`'s.
    pub fn check(&self, cfg: &SaeConfig) -> Result<()> {
        let fresh = SaeWeights::init_shapes(cfg);
        let shapes: Vec<(&str, &[usize])> = self.params.iter().map(|p| (p.name, &p.shape[..])).collect();
        let want: Vec<(&str, &[usize])> = fresh.iter().map(|(n, s)| (*n, &s[..])).collect();
        let lengths_ok = self
            .params
            .iter()
            .all(|p| p.data.len() == p.shape.iter().product::<usize>());
        let threshold_ok = self.threshold.is_some() == initial_threshold(cfg).is_some();
        if self.arch != cfg.arch || shapes != want || !lengths_ok || !threshold_ok {
            return Err(Error::Shape(format!(
                "weights {shapes:?} ({:?}, threshold {:?}) do not fit an SAE with {want:?} ({:?}, {:?})",
                self.arch, self.threshold, cfg.arch, cfg.activation
            )));
        }
        Ok(())
    }

    /// The unit-row decoder dictionary [m, d]: W's rows normalised (tied) or W_dec (standard).
    pub fn dictionary(&self) -> Vec<f32> {
        let w = match self.arch {
            Architecture::Tied => &self.params[0],
            Architecture::Standard => &self.params[2],
        };
        let w64: Vec<f64> = w.data.iter().map(|&v| v as f64).collect();
        rows_normalise(&w64, w.shape[1])
            .0
            .into_iter()
            .map(|v| v as f32)
            .collect()
    }

    /// Parameter names and shapes for `cfg`, in order.
    pub(crate) fn init_shapes(cfg: &SaeConfig) -> Vec<(&'static str, Vec<usize>)> {
        let (d, m) = (cfg.d_in, cfg.d_sae);
        let shapes = match cfg.arch {
            Architecture::Tied => vec![vec![m, d], vec![m]],
            Architecture::Standard => vec![vec![d, m], vec![m], vec![m, d], vec![d]],
        };
        param_names(cfg.arch).iter().copied().zip(shapes).collect()
    }
}

/// BatchTopK's threshold before training (SAELens starts it at 0); None otherwise.
fn initial_threshold(cfg: &SaeConfig) -> Option<f32> {
    matches!(cfg.activation, Activation::BatchTopK { .. }).then_some(0.0)
}

/// A [rows, cols] matrix with orthonormal columns (rows ≥ cols) or orthonormal
/// rows (rows < cols), by modified Gram–Schmidt on Gaussian vectors; the same
/// distribution as `torch.nn.init.orthogonal_`, up to signs.
pub fn orthogonal(rows: usize, cols: usize, rng: &mut Rng) -> Vec<f64> {
    let (count, len) = if rows >= cols { (cols, rows) } else { (rows, cols) };
    let mut vs: Vec<Vec<f64>> = Vec::with_capacity(count);
    while vs.len() < count {
        let mut v = rng.normals(len);
        for u in &vs {
            let along: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
            v.iter_mut().zip(u).for_each(|(a, b)| *a -= along * b);
        }
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        if n > 1e-6 {
            vs.push(v.into_iter().map(|a| a / n).collect());
        }
    }
    let mut out = vec![0.0; rows * cols];
    for (i, v) in vs.iter().enumerate() {
        for (j, &x) in v.iter().enumerate() {
            // Vector i is column i (rows ≥ cols) or row i (rows < cols).
            let at = if rows >= cols { j * cols + i } else { i * cols + j };
            out[at] = x;
        }
    }
    out
}

/// Smallest norm divided by (the shaders' EPS): a zero row stays zero.
pub const NORM_EPS: f64 = 1e-12;

/// (u, norms): rows of w [rows, cols] scaled to unit length, and their lengths.
pub fn rows_normalise(w: &[f64], cols: usize) -> (Vec<f64>, Vec<f64>) {
    let norms: Vec<f64> = w
        .chunks(cols)
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let u = w
        .iter()
        .enumerate()
        .map(|(i, v)| v / norms[i / cols].max(NORM_EPS))
        .collect();
    (u, norms)
}

/// The transpose [cols, rows] of a [rows, cols] row-major.
pub fn transpose<T: Copy>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    (0..rows * cols).map(|i| a[(i % rows) * cols + i / rows]).collect()
}
