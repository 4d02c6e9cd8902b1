//! One sparse autoencoder on the GPU: its configuration, parameters, and a full
//! training step (forward, loss, backward, Adam, renormalise) recorded once as
//! a list of dispatches and replayed every step. Weights and Adam state stay on
//! the GPU; only metrics (every log window) and, on request, weights come back.
//!
//! Architectures (DESIGN.md §1):
//! - `tied` (the paper's): W [m, d], b [m]; a = x Wᵀ + b; x̂ = z U, U = W/‖W_j‖.
//! - `standard` (SAELens): W_enc [d, m], b_enc [m], W_dec [m, d] (unit rows),
//!   b_dec [d]; a = (x − b_dec) W_enc + b_enc; x̂ = z W_dec + b_dec.
//!
//! Loss: MSE over batch·d (+ l1 · Σ|z| / batch for ReLU + L1).
//! Ensembles and MFR are not here (`mfr.rs`, `train.rs`).

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{AdamHyper, ColumnOp, Kernels, Op, TopK, STEP_UNIFORM_BYTES};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    Tied,
    Standard,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Activation {
    /// Keep the k largest pre-activations per row (the paper's).
    TopK { k: usize },
    /// ReLU with an L1 penalty `l1 · Σ_j |z_j|` per row, averaged over the batch.
    ReluL1 { l1: f32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
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
}

impl SaeConfig {
    /// Refuses values no SAE can be trained with, naming the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.d_in == 0 || self.d_sae == 0 || self.batch == 0 {
            return bad(format!(
                "d_in ({}), d_sae ({}) and batch ({}) must all be at least 1",
                self.d_in, self.d_sae, self.batch
            ));
        }
        if let Activation::TopK { k } = self.activation {
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
        let h = self.adam;
        if !(0.0..1.0).contains(&h.beta1) || !(0.0..1.0).contains(&h.beta2) || h.eps.is_nan() || h.eps <= 0.0 {
            return bad(format!("Adam needs 0 ≤ β1, β2 < 1 and ε > 0, got {h:?}"));
        }
        Ok(())
    }

    fn l1(&self) -> f32 {
        match self.activation {
            Activation::ReluL1 { l1 } => l1,
            Activation::TopK { .. } => 0.0,
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

/// All parameters of an SAE, in a fixed order per architecture:
/// tied `W [m, d], b [m]`; standard `W_enc [d, m], b_enc [m], W_dec [m, d], b_dec [d]`.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeWeights {
    pub arch: Architecture,
    pub params: Vec<Param>,
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
                let (w_dec, _) = crate::reference::rows_normalise(&rng.normals(m * d), d);
                let w_enc: Vec<f64> = (0..d * m).map(|i| w_dec[(i % m) * d + i / m]).collect();
                vec![
                    param(STANDARD[0], &[d, m], f32s(w_enc)),
                    param(STANDARD[1], &[m], vec![0.0; m]),
                    param(STANDARD[2], &[m, d], f32s(w_dec)),
                    param(STANDARD[3], &[d], vec![0.0; d]),
                ]
            }
        };
        SaeWeights { arch: cfg.arch, params }
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }
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

/// Slots of the on-GPU metrics accumulator (summed over a log window).
mod slot {
    pub const SQUARED_ERROR: usize = 0;
    pub const TARGET_VARIANCE: usize = 1;
    pub const ACTIVE: usize = 2;
    pub const ABS_CODE: usize = 3;
}

/// Metrics over the steps since the last read, per SAE.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SaeMetrics {
    /// Steps in the window.
    pub steps: u64,
    /// Mean squared error per value.
    pub mse: f64,
    /// Fraction of variance unexplained: Σ(x̂ − x)² / Σ(x − batch mean)².
    pub fvu: f64,
    /// Mean number of non-zero latents per row.
    pub l0: f64,
    /// Mean Σ_j |z_j| per row.
    pub l1: f64,
    /// Fraction of latents that never fired in the window.
    pub dead_fraction: f64,
    /// Firing count of each latent over the window.
    pub firing_counts: Vec<f32>,
}

/// Parameter tensor with its gradient and Adam moments.
struct Slot {
    param: Tensor<f32>,
    grad: Tensor<f32>,
}

/// An SAE living on the GPU, with its training step recorded.
pub struct GpuSae {
    pub cfg: SaeConfig,
    /// The input batch x [batch, d]; also the target.
    x: Tensor<f32>,
    slots: Vec<Slot>,
    /// Per-step uniform: [t, lr, 0, 0].
    step_uniform: wgpu::Buffer,
    plan: Vec<Dispatch>,
    /// Window accumulators: metrics slots and per-latent firing counts.
    acc: Tensor<f32>,
    firing: Tensor<f32>,
    /// Intermediate results kept for inspection by tests and the page.
    pub code: Tensor<f32>,
    pub xhat: Tensor<f32>,
    t: u64,
    window_steps: u64,
}

impl GpuSae {
    /// Uploads `weights` and records the training step.
    pub fn new(gpu: &Gpu, kernels: &Kernels, cfg: SaeConfig, weights: &SaeWeights) -> Result<GpuSae> {
        cfg.validate()?;
        if weights.arch != cfg.arch {
            return Err(Error::Config(format!(
                "weights are for the {:?} architecture but the config says {:?}",
                weights.arch, cfg.arch
            )));
        }
        let (b, d, m) = (cfg.batch, cfg.d_in, cfg.d_sae);
        let z = |shape: &[usize], label: &str| Tensor::<f32>::zeros(gpu, shape, label);
        let mut slots = Vec::new();
        let mut moments = Vec::new();
        for p in &weights.params {
            slots.push(Slot {
                param: Tensor::from_slice(gpu, &p.shape, &p.data, p.name)?,
                grad: z(&p.shape, p.name)?,
            });
            moments.push((z(&p.shape, "adam m")?, z(&p.shape, "adam v")?));
        }
        let x = z(&[b, d], "x")?;
        let pre = z(&[b, m], "pre-activation")?;
        let code = z(&[b, m], "code")?;
        let xhat = z(&[b, d], "reconstruction")?;
        let dxhat = z(&[b, d], "d reconstruction")?;
        let row_sq = z(&[b], "row squared error")?;
        let dz = z(&[b, m], "d code")?;
        let da = z(&[b, m], "d pre-activation")?;
        let acc = z(&[8], "metrics")?;
        let firing = z(&[m], "firing counts")?;
        let per_latent = z(&[m], "per-latent scratch")?;
        let per_input = z(&[d], "per-input scratch")?;
        let step_uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step"),
            size: STEP_UNIFORM_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let k = kernels;
        let mut plan = Vec::new();
        let l1 = cfg.l1() / b as f32;
        let activate = |a: &Tensor<f32>, plan: &mut Vec<Dispatch>| -> Result<()> {
            match cfg.activation {
                Activation::TopK { k: kk } => {
                    let idx = Tensor::<u32>::zeros(gpu, &[b, kk], "topk indices")?;
                    let val = z(&[b, kk], "topk values")?;
                    plan.push(k.topk(
                        gpu,
                        a,
                        kk,
                        !cfg.paper_exact,
                        TopK {
                            z: &code,
                            idx: &idx,
                            val: &val,
                        },
                    )?);
                }
                Activation::ReluL1 { .. } => plan.push(k.relu(gpu, a, &code)?),
            }
            Ok(())
        };
        match cfg.arch {
            Architecture::Standard => {
                let [w_enc, b_enc, w_dec, b_dec] = &slots[..] else {
                    unreachable!("standard has 4 parameters")
                };
                let xc = z(&[b, d], "x - b_dec")?;
                let dec_raw = z(&[m, d], "raw W_dec gradient")?;
                plan.push(k.add_row_vector(gpu, &x, &b_dec.param, -1.0, &xc)?);
                plan.push(k.matmul(gpu, &xc, Op::N, &w_enc.param, Op::N, Some(&b_enc.param), 1.0, &pre)?);
                activate(&pre, &mut plan)?;
                plan.push(k.matmul(gpu, &code, Op::N, &w_dec.param, Op::N, Some(&b_dec.param), 1.0, &xhat)?);
                plan.push(k.mse(gpu, &xhat, &x, &dxhat, &row_sq)?);
                plan.push(k.matmul(gpu, &dxhat, Op::N, &w_dec.param, Op::T, None, 1.0, &dz)?);
                plan.push(k.act_backward(gpu, &code, &dz, l1, &da)?);
                plan.push(k.matmul(gpu, &xc, Op::T, &da, Op::N, None, 1.0, &w_enc.grad)?);
                plan.push(k.columns(gpu, &da, ColumnOp::Sum, false, &b_enc.grad)?);
                plan.push(k.matmul(gpu, &code, Op::T, &dxhat, Op::N, None, 1.0, &dec_raw)?);
                plan.push(k.project(gpu, &dec_raw, &w_dec.param, None, false, &w_dec.grad)?);
                // db_dec = Σ_rows dx̂ − db_enc · W_encᵀ (b_dec enters the output and, negated, the input).
                plan.push(k.columns(gpu, &dxhat, ColumnOp::Sum, false, &per_input)?);
                plan.push(k.matmul(
                    gpu,
                    &b_enc.grad,
                    Op::N,
                    &w_enc.param,
                    Op::T,
                    Some(&per_input),
                    -1.0,
                    &b_dec.grad,
                )?);
            }
            Architecture::Tied => {
                let [w, bias] = &slots[..] else {
                    unreachable!("tied has 2 parameters")
                };
                let u = z(&[m, d], "U")?;
                let norms = z(&[m], "row norms")?;
                let du = z(&[m, d], "dU")?;
                plan.push(k.matmul(gpu, &x, Op::N, &w.param, Op::T, Some(&bias.param), 1.0, &pre)?);
                activate(&pre, &mut plan)?;
                plan.push(k.rows_normalise(gpu, &w.param, &u, &norms)?);
                plan.push(k.matmul(gpu, &code, Op::N, &u, Op::N, None, 1.0, &xhat)?);
                plan.push(k.mse(gpu, &xhat, &x, &dxhat, &row_sq)?);
                plan.push(k.matmul(gpu, &dxhat, Op::N, &u, Op::T, None, 1.0, &dz)?);
                plan.push(k.act_backward(gpu, &code, &dz, l1, &da)?);
                plan.push(k.matmul(gpu, &da, Op::T, &x, Op::N, None, 1.0, &w.grad)?);
                plan.push(k.columns(gpu, &da, ColumnOp::Sum, false, &bias.grad)?);
                plan.push(k.matmul(gpu, &code, Op::T, &dxhat, Op::N, None, 1.0, &du)?);
                plan.push(k.project(gpu, &du, &u, Some(&norms), true, &w.grad)?);
            }
        }
        for (s, (mm, vv)) in slots.iter().zip(&moments) {
            plan.push(k.adam(gpu, cfg.adam, &step_uniform, &s.param, &s.grad, mm, vv)?);
        }
        if cfg.arch == Architecture::Standard {
            plan.push(k.renormalise(gpu, &slots[2].param)?);
        }
        // Metrics, accumulated on the GPU over the log window.
        plan.push(k.total(gpu, &row_sq, &acc, slot::SQUARED_ERROR)?);
        plan.push(k.columns(gpu, &x, ColumnOp::CenteredSquares, false, &per_input)?);
        plan.push(k.total(gpu, &per_input, &acc, slot::TARGET_VARIANCE)?);
        plan.push(k.columns(gpu, &code, ColumnOp::CountNonZero, false, &per_latent)?);
        plan.push(k.total(gpu, &per_latent, &acc, slot::ACTIVE)?);
        plan.push(k.columns(gpu, &code, ColumnOp::CountNonZero, true, &firing)?);
        plan.push(k.columns(gpu, &code, ColumnOp::AbsSum, false, &per_latent)?);
        plan.push(k.total(gpu, &per_latent, &acc, slot::ABS_CODE)?);
        Ok(GpuSae {
            cfg,
            x,
            slots,
            step_uniform,
            plan,
            acc,
            firing,
            code,
            xhat,
            t: 0,
            window_steps: 0,
        })
    }

    /// One training step on `batch` ([batch, d] row-major). Queues the upload
    /// and the step; nothing is read back.
    pub fn step(&mut self, gpu: &Gpu, batch: &[f32]) -> Result<()> {
        self.x.write(gpu, batch)?;
        self.t += 1;
        self.window_steps += 1;
        let step = [self.t as f32, self.cfg.lr, 0.0, 0.0];
        gpu.queue
            .write_buffer(&self.step_uniform, 0, bytemuck::cast_slice(&step));
        gpu.submit(&self.plan.iter().collect::<Vec<_>>());
        Ok(())
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Reads the metrics of the steps since the last call and starts a new window.
    pub async fn take_metrics(&mut self, gpu: &Gpu) -> Result<SaeMetrics> {
        let acc = self.acc.read(gpu).await?;
        let firing_counts = self.firing.read(gpu).await?;
        self.acc.write(gpu, &[0.0; 8])?;
        self.firing.write(gpu, &vec![0.0; self.cfg.d_sae])?;
        let steps = std::mem::take(&mut self.window_steps);
        let rows = (steps as usize * self.cfg.batch).max(1) as f64;
        let values = rows * self.cfg.d_in as f64;
        let dead = firing_counts.iter().filter(|&&c| c == 0.0).count();
        Ok(SaeMetrics {
            steps,
            mse: acc[slot::SQUARED_ERROR] as f64 / values,
            fvu: acc[slot::SQUARED_ERROR] as f64 / (acc[slot::TARGET_VARIANCE] as f64).max(f64::MIN_POSITIVE),
            l0: acc[slot::ACTIVE] as f64 / rows,
            l1: acc[slot::ABS_CODE] as f64 / rows,
            dead_fraction: dead as f64 / self.cfg.d_sae as f64,
            firing_counts,
        })
    }

    /// Copies the parameters back.
    pub async fn weights(&self, gpu: &Gpu) -> Result<SaeWeights> {
        let names = match self.cfg.arch {
            Architecture::Tied => &TIED[..],
            Architecture::Standard => &STANDARD[..],
        };
        let mut params = Vec::new();
        for (s, &name) in self.slots.iter().zip(names) {
            params.push(Param {
                name,
                shape: s.param.shape().to_vec(),
                data: s.param.read(gpu).await?,
            });
        }
        Ok(SaeWeights {
            arch: self.cfg.arch,
            params,
        })
    }
}
