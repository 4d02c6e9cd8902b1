//! One sparse autoencoder on the GPU: a full training step (forward, loss,
//! backward, Adam, renormalise) recorded once as a list of dispatches and
//! replayed every step. Weights and Adam state stay on the GPU; only metrics
//! (every log window) and, on request, weights come back.
//!
//! The model itself (architectures, activations, configuration, parameters,
//! initial weights) is `model.rs`; ensembles and MFR are not here (`mfr.rs`,
//! `train.rs`).
//!
//! Step paths (`StepPath`): after the dense encoder product, the decode, the code
//! gradient and the weight gradients are dense matrix products, or — TopK only —
//! touch just each row's k active latents (`kernels::sparse`: gather, active-latent
//! dot products, a deterministic latent-major scatter).

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{
    AdamSlot, BatchTopKScratch, CodeOf, ColumnOp, Csc, Deviation, Kernels, Op, SparseCode, StepMetrics, TopK,
    BATCH_TOPK_THRESHOLD_LR, STEP_UNIFORM_BYTES,
};
use crate::model::{param_names, Activation, Architecture, Param, SaeConfig, SaeWeights, StepPath};
use serde::{Deserialize, Serialize};

/// Slots of the on-GPU metrics accumulator (summed over a log window).
mod slot {
    pub const SQUARED_ERROR: usize = 0;
    pub const TARGET_VARIANCE: usize = 1;
    pub const ACTIVE: usize = 2;
    pub const ABS_CODE: usize = 3;
    /// Largest reinit statistic in the window; the next slot counts steps above the threshold.
    pub const REINIT_STAT: usize = 4;
    pub const REINIT_OVER: usize = 5;
    pub const AUX_SQUARED_ERROR: usize = 6;
    /// Padded to 256 bytes (the most any adapter asks a binding's offset to be a multiple
    /// of), so that a stacked ensemble's accumulators are each SAE's view of one buffer.
    pub const LEN: usize = 64;

    /// Where the step's totals go (`Kernels::window_totals`).
    pub const WINDOW: crate::kernels::WindowSlots = crate::kernels::WindowSlots {
        squared_error: SQUARED_ERROR,
        aux_squared_error: AUX_SQUARED_ERROR,
        target_variance: TARGET_VARIANCE,
        active: ACTIVE,
        abs_code: ABS_CODE,
        reinit: REINIT_STAT,
    };
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
    /// Largest per-step reinit statistic in the window (TopK only; 0 otherwise).
    pub reinit_stat_max: f64,
    /// Steps in the window whose reinit statistic exceeded the threshold.
    pub reinit_over: u64,
    /// AuxK: mean squared error of the dead latents' reconstruction of x − x̂ (0 without AuxK).
    pub aux_mse: f64,
    /// Firing count of each latent over the window.
    #[serde(skip)]
    pub firing_counts: Vec<f32>,
}

/// What an SAE carries from step to step besides its weights: Adam's step count and
/// moments (one per parameter, in parameter order) and AuxK's tokens since each latent
/// fired [m]. The metrics window is not part of it (it is read and restarted each log).
#[derive(Clone, Debug, PartialEq)]
pub struct SaeTrainingState {
    pub adam_steps: u64,
    pub adam_m: Vec<Vec<f32>>,
    pub adam_v: Vec<Vec<f32>>,
    pub since_fired: Vec<f32>,
}

/// Parameter tensor with its gradient and Adam moments.
struct Slot {
    param: Tensor<f32>,
    grad: Tensor<f32>,
    m: Tensor<f32>,
    v: Tensor<f32>,
}

/// A TopK code's sparse form and its latent-major index (sparse path only).
struct Active {
    idx: Tensor<u32>,
    val: Tensor<f32>,
    csc: Csc,
}

impl Active {
    fn code(&self) -> SparseCode<'_> {
        SparseCode {
            idx: &self.idx,
            val: &self.val,
        }
    }
}

/// A code of the step: dense z [batch, m] (dense path), or TopK's sparse form and its
/// index (sparse path, where no dense z is formed: nothing reads one).
enum Code {
    Dense(Tensor<f32>),
    Sparse(Box<Active>),
}

impl Code {
    /// The code's values as the weight gradients read them: z [batch, m] or val [batch, k].
    fn values(&self) -> &Tensor<f32> {
        match self {
            Code::Dense(z) => z,
            Code::Sparse(a) => &a.val,
        }
    }
}

/// One code of the step (the main one, or AuxK's) with what its weight gradients read.
struct Term {
    code: Code,
    /// The gradient at its pre-activation: [batch, m] (dense path) or [batch, k] (sparse).
    da: Tensor<f32>,
    /// dLoss/d(its reconstruction) [batch, d].
    g: Tensor<f32>,
    /// Its squared error per row [batch].
    row_sq: Tensor<f32>,
}

impl Term {
    /// Its active set: on the sparse path every term keeps one.
    fn active(&self) -> &Active {
        match &self.code {
            Code::Sparse(a) => a,
            Code::Dense(_) => unreachable!("on the sparse path every term keeps its active set"),
        }
    }
}

/// Adam's view of a parameter slot.
fn adam_slot(s: &Slot) -> AdamSlot<'_> {
    AdamSlot {
        param: &s.param,
        grad: &s.grad,
        m: &s.m,
        v: &s.v,
    }
}

/// Refuses an input or target that is not [batch, d] (`what` names the SAE or the stack).
fn expect_batch(what: &str, x: &Tensor<f32>, target: &Tensor<f32>, b: usize, d: usize) -> Result<()> {
    if x.shape() != [b, d] || target.shape() != [b, d] {
        return Err(Error::Shape(format!(
            "{what} expects input and target of shape [{b}, {d}], got {:?} and {:?}",
            x.shape(),
            target.shape()
        )));
    }
    Ok(())
}

/// A step's uniform [t, lr, 0, 0] (`begin_step` writes it).
fn step_uniform(gpu: &Gpu) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step"),
        size: STEP_UNIFORM_BYTES,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The stacked step of an ensemble's SAEs (`GpuSae::stack`): forward, loss, backward and
/// metrics of all N in one dispatch per kernel, and Adam on all N in one dispatch where
/// their step counts and learning rates agree (`update_plan`; else each SAE's own, as a
/// re-initialised SAE restarts its count).
pub struct StackedStep {
    gradients: Vec<Dispatch>,
    /// Adam on the stacked parameters, reading `step_uniform`.
    update: Vec<Dispatch>,
    step_uniform: wgpu::Buffer,
    /// [N·m, d] and [N·m]: every SAE's dictionary, row norms and dictionary-parameter
    /// gradient side by side (MFR folds its gradient into all N in one dispatch).
    dictionaries: Tensor<f32>,
    norms: Tensor<f32>,
    dictionary_grads: Tensor<f32>,
}

impl StackedStep {
    pub fn gradient_plan(&self) -> &[Dispatch] {
        &self.gradients
    }

    /// The SAEs' dictionaries U [N·m, d], their row norms [N·m] and the gradient of the
    /// parameter they are made from [N·m, d], each SAE's rows at s·m.
    pub fn dictionaries(&self) -> (&Tensor<f32>, &Tensor<f32>, &Tensor<f32>) {
        (&self.dictionaries, &self.norms, &self.dictionary_grads)
    }

    /// Whether this step's update can be the stacked Adam (`update_plan`): every SAE of
    /// `saes` (the ones `stack` returned, after their `begin_step`) is at the same step count
    /// with the same lr. If so, queues that count and lr for it.
    pub fn begin_update(&self, gpu: &Gpu, saes: &[GpuSae], lr_scale: f32) -> bool {
        let Some(first) = saes.first() else { return false };
        if saes.iter().any(|s| s.t != first.t || s.cfg.lr != first.cfg.lr) {
            return false;
        }
        let step = [first.t as f32, first.cfg.lr * lr_scale, 0.0, 0.0];
        gpu.queue
            .write_buffer(&self.step_uniform, 0, bytemuck::cast_slice(&step));
        true
    }

    /// Adam on every SAE's parameters in one dispatch (after `begin_update` said yes).
    pub fn update_plan(&self) -> &[Dispatch] {
        &self.update
    }
}

/// An SAE living on the GPU. Its training step is recorded in two parts so that
/// an ensemble can add the MFR gradient between them: `gradients` (forward, loss,
/// backward, metrics) and `update` (Adam, renormalise).
pub struct GpuSae {
    pub cfg: SaeConfig,
    path: StepPath,
    slots: Vec<Slot>,
    /// Tied only: the unit-row dictionary U and the row norms of W, made by the forward pass.
    unit: Option<(Tensor<f32>, Tensor<f32>)>,
    /// Per-step uniform: [t, lr, 0, 0].
    step_uniform: wgpu::Buffer,
    gradients: Vec<Dispatch>,
    update: Vec<Dispatch>,
    /// Window accumulators: metrics slots and per-latent firing counts.
    acc: Tensor<f32>,
    firing: Tensor<f32>,
    /// Tokens since each latent last fired (AuxK's notion of dead).
    since_fired: Tensor<f32>,
    /// The target's centred squares per input [d] (the FVU's denominator), made by this
    /// SAE's step or by an earlier SAE's on the same target, and that target's buffer.
    target_sq: Tensor<f32>,
    target_of_sq: Tensor<f32>,
    /// The reconstruction x̂ [batch, d] of the last step.
    pub xhat: Tensor<f32>,
    /// BatchTopK's inference threshold θ [1] (None for the other activations).
    threshold: Option<Tensor<f32>>,
    /// Adam's step count (restarts at a re-initialisation).
    t: u64,
    window_steps: u64,
}

impl GpuSae {
    /// Uploads `weights` and records the training step on `x` [batch, d], with
    /// `target` [batch, d] as the reconstruction target (`x` itself, or the clean
    /// signal in denoising). `reinit_threshold` only sets which steps the metrics
    /// count as over the threshold; acting on it is the trainer's business.
    /// `shared_target` is an SAE of the same ensemble whose step runs before this one's on
    /// the same `target`: this step reads the target's statistics it makes instead of making
    /// them again (None: this step makes them).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        cfg: SaeConfig,
        weights: &SaeWeights,
        x: &Tensor<f32>,
        target: &Tensor<f32>,
        reinit_threshold: f32,
        shared_target: Option<&GpuSae>,
    ) -> Result<GpuSae> {
        cfg.validate()?;
        weights.check(&cfg)?;
        let (b, d, m) = (cfg.batch, cfg.d_in, cfg.d_sae);
        expect_batch("the SAE", x, target, b, d)?;
        let z = |shape: &[usize], label: &str| Tensor::<f32>::zeros(gpu, shape, label);
        let mut slots = Vec::new();
        for p in &weights.params {
            slots.push(Slot {
                param: Tensor::from_slice(gpu, &p.shape, &p.data, p.name)?,
                grad: z(&p.shape, p.name)?,
                m: z(&p.shape, "adam m")?,
                v: z(&p.shape, "adam v")?,
            });
        }
        let path = cfg.resolved_step_path()?;
        let on_sparse = path == StepPath::Sparse;
        let pre = z(&[b, m], "pre-activation")?;
        let xhat = z(&[b, d], "reconstruction")?;
        let dxhat = z(&[b, d], "d reconstruction")?;
        let row_sq = z(&[b], "row squared error")?;
        let acc = z(&[slot::LEN], "metrics")?;
        let firing = z(&[m], "firing counts")?;
        let latent_stats = z(&[2, m], "per-latent metrics")?;
        let per_input = z(&[d], "per-input scratch")?;
        let step_uniform = step_uniform(gpu);
        let k = kernels;
        let mut plan = Vec::new();
        let l1 = cfg.l1() / b as f32;
        // TopK of `a`: the dense code z (dense path), or its sparse form and that form's
        // latent-major index, rebuilt right after (sparse path).
        let topk = |plan: &mut Vec<Dispatch>, a: &Tensor<f32>, kk: usize, relu: bool, label: &str| -> Result<Code> {
            if !on_sparse {
                let code = z(&[b, m], label)?;
                plan.extend(k.topk(
                    gpu,
                    a,
                    kk,
                    relu,
                    TopK {
                        instances: 1,
                        z: Some(&code),
                        sparse: None,
                    },
                )?);
                return Ok(Code::Dense(code));
            }
            let idx = Tensor::<u32>::zeros(gpu, &[b, kk], "topk indices")?;
            let val = z(&[b, kk], "topk values")?;
            let sparse = Some(SparseCode { idx: &idx, val: &val });
            plan.extend(k.topk(
                gpu,
                a,
                kk,
                relu,
                TopK {
                    instances: 1,
                    z: None,
                    sparse,
                },
            )?);
            let csc = Csc::new(gpu, b, kk, m)?;
            plan.extend(k.csc(gpu, &idx, &csc)?);
            Ok(Code::Sparse(Box::new(Active { idx, val, csc })))
        };
        // BatchTopK's inference threshold θ [1], updated by every step's selection.
        let threshold = match weights.threshold {
            Some(t) => Some(Tensor::from_slice(gpu, &[1], &[t], "batch topk threshold")?),
            None => None,
        };
        let activate = |plan: &mut Vec<Dispatch>, a: &Tensor<f32>| -> Result<Code> {
            match cfg.activation {
                Activation::TopK { k: kk } => topk(plan, a, kk, !cfg.paper_exact, "code"),
                Activation::ReluL1 { .. } => {
                    let code = z(&[b, m], "code")?;
                    plan.push(k.relu(gpu, a, &code)?);
                    Ok(Code::Dense(code))
                }
                Activation::BatchTopK { k: kk } => {
                    let theta = threshold.as_ref().expect("checked weights carry BatchTopK's threshold");
                    let scratch = BatchTopKScratch::new(gpu)?;
                    let code = z(&[b, m], "code")?;
                    plan.extend(k.batch_topk(gpu, a, kk, BATCH_TOPK_THRESHOLD_LR, &scratch, &code, theta)?);
                    Ok(Code::Dense(code))
                }
            }
        };
        // out [b, d] = z · dict (+ bias): a gather of the active rows on the sparse path.
        let decode = |plan: &mut Vec<Dispatch>,
                      code: &Code,
                      dict: &Tensor<f32>,
                      bias: Option<&Tensor<f32>>,
                      out: &Tensor<f32>|
         -> Result<()> {
            plan.push(match code {
                Code::Sparse(s) => k.sparse_decode(gpu, s.code(), dict, bias, out)?,
                Code::Dense(z) => k.matmul(gpu, z, Op::N, dict, Op::N, bias, 1.0, out)?,
            });
            Ok(())
        };
        // The gradient at the pre-activation for dL/dout = g [b, d] of `decode`:
        // [b, m] on the dense path, [b, k] at the active latents on the sparse path.
        let pre_gradient = |plan: &mut Vec<Dispatch>,
                            code: &Code,
                            dict: &Tensor<f32>,
                            g: &Tensor<f32>,
                            l1: f32|
         -> Result<Tensor<f32>> {
            match code {
                Code::Sparse(s) => {
                    let dval = z(s.val.shape(), "d pre-activation at the active latents")?;
                    plan.push(k.sparse_code_gradient(gpu, s.code(), dict, g, &dval)?);
                    Ok(dval)
                }
                Code::Dense(z_dense) => {
                    let (dz, da) = (z(&[b, m], "d code")?, z(&[b, m], "d pre-activation")?);
                    plan.push(k.matmul(gpu, g, Op::N, dict, Op::T, None, 1.0, &dz)?);
                    plan.push(k.act_backward(gpu, z_dense, &dz, l1, &da)?);
                    Ok(da)
                }
            }
        };
        // out = sᵀ y per latent: [m, cols], or [cols, m] when transposed, for a code or
        // code gradient s ([b, m] dense, [b, k] sparse) and y [b, cols].
        let outer =
            |code: &Code, s: &Tensor<f32>, y: &Tensor<f32>, transposed: bool, out: &Tensor<f32>| -> Result<Dispatch> {
                match (code, transposed) {
                    (Code::Sparse(a), _) => k.sparse_scatter(gpu, &a.csc, s, y, transposed, false, out, None),
                    (Code::Dense(_), false) => k.matmul(gpu, s, Op::T, y, Op::N, None, 1.0, out),
                    (Code::Dense(_), true) => k.matmul(gpu, y, Op::T, s, Op::N, None, 1.0, out),
                }
            };
        let since_fired = z(&[m], "tokens since fired")?;
        // AuxK's part of the forward and backward pass, given the decoder dictionary
        // `dec` [m, d] (no bias): the dead latents' code and gradients, as a term.
        let auxk = |plan: &mut Vec<Dispatch>, dec: &Tensor<f32>| -> Result<Option<Term>> {
            let Some(aux) = cfg.auxk else { return Ok(None) };
            let masked = z(&[b, m], "AuxK masked pre-activation")?;
            let resid = z(&[b, d], "x - xhat")?;
            let ehat = z(&[b, d], "AuxK reconstruction")?;
            let g_aux = z(&[b, d], "AuxK reconstruction gradient")?;
            let aux_sq = z(&[b], "AuxK row squared error")?;
            plan.push(k.mask_dead(gpu, &pre, &since_fired, aux.dead_after_tokens as f32, &masked)?);
            let code = topk(plan, &masked, aux.k_aux, true, "AuxK code")?;
            plan.push(k.axpby(gpu, 1.0, target, -1.0, &xhat, &resid)?);
            decode(plan, &code, dec, None, &ehat)?;
            plan.push(k.mse(gpu, &ehat, &resid, aux.coef, &g_aux, &aux_sq)?);
            let da = pre_gradient(plan, &code, dec, &g_aux, 0.0)?;
            Ok(Some(Term {
                code,
                da,
                g: g_aux,
                row_sq: aux_sq,
            }))
        };
        // The encoder-side gradients of every term: enc_grad (+)= Σ daᵀ·enc_in (layout
        // [m, d], or [d, m] when transposed) and bias_grad = Σ_rows da. Dense: the terms'
        // da are summed first; sparse: each term scatters through its own index.
        let encoder_gradients = |plan: &mut Vec<Dispatch>,
                                 terms: &[&Term],
                                 enc_in: &Tensor<f32>,
                                 transposed: bool,
                                 enc_grad: &Tensor<f32>,
                                 bias_grad: &Tensor<f32>|
         -> Result<()> {
            if on_sparse {
                for (i, t) in terms.iter().enumerate() {
                    let a = t.active();
                    let (sums, acc) = (Some(bias_grad), i > 0);
                    plan.push(k.sparse_scatter(gpu, &a.csc, &t.da, enc_in, transposed, acc, enc_grad, sums)?);
                }
                return Ok(());
            }
            let total = match terms {
                [_] => None,
                _ => {
                    let sum = z(&[b, m], "d pre-activation with AuxK")?;
                    plan.push(k.axpby(gpu, 1.0, &terms[0].da, 1.0, &terms[1].da, &sum)?);
                    Some(sum)
                }
            };
            let da = total.as_ref().unwrap_or(&terms[0].da);
            plan.push(outer(&terms[0].code, da, enc_in, transposed, enc_grad)?);
            plan.push(k.columns(gpu, da, ColumnOp::Sum, false, bias_grad)?);
            Ok(())
        };
        // The decoder-dictionary gradient of every term, zᵀ·g per latent, taken through
        // `project` (the tied normalisation, or the standard unit-row tangent) into `dst`.
        let dictionary_gradients = |plan: &mut Vec<Dispatch>,
                                    terms: &[&Term],
                                    dict: &Tensor<f32>,
                                    norms: Option<&Tensor<f32>>,
                                    accumulate: bool,
                                    dst: &Tensor<f32>|
         -> Result<()> {
            let raw = z(&[m, d], "raw dictionary gradient")?;
            for (i, t) in terms.iter().enumerate() {
                plan.push(outer(&t.code, t.code.values(), &t.g, false, &raw)?);
                plan.push(k.project(gpu, &raw, dict, norms, accumulate || i > 0, dst)?);
            }
            Ok(())
        };
        let mut unit = None;
        let (main, aux) = match cfg.arch {
            Architecture::Standard => {
                let [w_enc, b_enc, w_dec, b_dec] = &slots[..] else {
                    unreachable!("standard has 4 parameters")
                };
                let xc = z(&[b, d], "x - b_dec")?;
                plan.push(k.add_row_vector(gpu, x, &b_dec.param, -1.0, &xc)?);
                plan.push(k.matmul(gpu, &xc, Op::N, &w_enc.param, Op::N, Some(&b_enc.param), 1.0, &pre)?);
                let code = activate(&mut plan, &pre)?;
                decode(&mut plan, &code, &w_dec.param, Some(&b_dec.param), &xhat)?;
                plan.push(k.mse(gpu, &xhat, target, 1.0, &dxhat, &row_sq)?);
                let da = pre_gradient(&mut plan, &code, &w_dec.param, &dxhat, l1)?;
                let main = Term {
                    code,
                    da,
                    g: dxhat,
                    row_sq,
                };
                let aux = auxk(&mut plan, &w_dec.param)?;
                let terms: Vec<&Term> = std::iter::once(&main).chain(&aux).collect();
                encoder_gradients(&mut plan, &terms, &xc, true, &w_enc.grad, &b_enc.grad)?;
                dictionary_gradients(&mut plan, &terms, &w_dec.param, None, false, &w_dec.grad)?;
                // db_dec = Σ_rows dx̂ − db_enc · W_encᵀ (b_dec enters the output and, negated, the input).
                plan.push(k.columns(gpu, &main.g, ColumnOp::Sum, false, &per_input)?);
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
                (main, aux)
            }
            Architecture::Tied => {
                let [w, bias] = &slots[..] else {
                    unreachable!("tied has 2 parameters")
                };
                let u = z(&[m, d], "U")?;
                let norms = z(&[m], "row norms")?;
                plan.push(k.matmul(gpu, x, Op::N, &w.param, Op::T, Some(&bias.param), 1.0, &pre)?);
                let code = activate(&mut plan, &pre)?;
                plan.push(k.rows_normalise(gpu, &w.param, &u, &norms)?);
                decode(&mut plan, &code, &u, None, &xhat)?;
                plan.push(k.mse(gpu, &xhat, target, 1.0, &dxhat, &row_sq)?);
                let da = pre_gradient(&mut plan, &code, &u, &dxhat, l1)?;
                let main = Term {
                    code,
                    da,
                    g: dxhat,
                    row_sq,
                };
                let aux = auxk(&mut plan, &u)?;
                let terms: Vec<&Term> = std::iter::once(&main).chain(&aux).collect();
                encoder_gradients(&mut plan, &terms, x, false, &w.grad, &bias.grad)?;
                dictionary_gradients(&mut plan, &terms, &u, Some(&norms), true, &w.grad)?;
                unit = Some((u, norms));
                (main, aux)
            }
        };
        // Metrics, accumulated on the GPU over the log window: one pass over the code for the
        // per-latent counts, sums and firing clock (its sparse form where there is one: rows·k,
        // not rows·m; same sums), one for the step's totals. The target's statistics are made
        // once an ensemble.
        let target_sq = match shared_target {
            Some(earlier) => {
                if !earlier.target_of_sq.shares_buffer(target) {
                    return Err(Error::Config(
                        "an SAE shares the target statistics only of an SAE trained on the same target".into(),
                    ));
                }
                earlier.target_sq.clone()
            }
            None => {
                let own = z(&[d], "target centred squares")?;
                plan.push(k.columns(gpu, target, ColumnOp::CenteredSquares, false, &own)?);
                own
            }
        };
        let code_of = match &main.code {
            Code::Sparse(a) => CodeOf::Sparse {
                csc: &a.csc,
                val: &a.val,
            },
            Code::Dense(z) => CodeOf::Dense(z),
        };
        plan.push(k.latent_stats(gpu, code_of, &latent_stats, &firing, &since_fired)?);
        let deviation = cfg.activation.k().map(|kk| Deviation {
            batch: b,
            rate: kk as f32 / m as f32,
            threshold: reinit_threshold,
        });
        let step_metrics = StepMetrics {
            instances: 1,
            row_sq: &main.row_sq,
            aux_sq: aux.as_ref().map(|t| &t.row_sq),
            col_sq: &target_sq,
            stats: &latent_stats,
        };
        plan.push(k.window_totals(gpu, step_metrics, deviation, slot::WINDOW, &acc)?);

        let mut update = Vec::new();
        // Two parameter tensors a dispatch (tied: one; standard: two).
        for pair in slots.chunks(2) {
            let second = pair.get(1).map(adam_slot);
            update.push(k.adam(gpu, cfg.adam, &step_uniform, adam_slot(&pair[0]), second)?);
        }
        if cfg.arch == Architecture::Standard {
            update.push(k.renormalise(gpu, &slots[2].param)?);
        }
        Ok(GpuSae {
            cfg,
            path,
            slots,
            unit,
            step_uniform,
            gradients: plan,
            update,
            acc,
            firing,
            since_fired,
            target_sq,
            target_of_sq: target.clone(),
            xhat,
            threshold,
            t: 0,
            window_steps: 0,
        })
    }

    /// Records the training step of an ensemble's SAEs as one: each kernel of the step runs
    /// once for all N, on tensors stacked [N, …] (`kernels::matmul`'s instances, the other
    /// kernels on the stack's rows and latents side by side), instead of once per SAE. The
    /// SAEs returned are views of the stacks, so everything else (Adam, MFR, metrics,
    /// weights, checkpoints) sees N separate SAEs. Bit for bit the step `new` records for
    /// each (`tests/stacked.rs`).
    ///
    /// `x` and `target` are [batch, d], shared by all N (the kernels that read them per row
    /// of the stack read row r of SAE s's rows at r − s·batch). SAEs that are not stackable
    /// are refused with `stackable`'s reason; `new` records such SAEs one by one.
    pub fn stack(
        gpu: &Gpu,
        kernels: &Kernels,
        cfgs: &[SaeConfig],
        weights: &[SaeWeights],
        x: &Tensor<f32>,
        target: &Tensor<f32>,
        reinit_threshold: f32,
    ) -> Result<(Vec<GpuSae>, StackedStep)> {
        Self::stackable(gpu, cfgs).map_err(|why| Error::Config(format!("these SAEs cannot be stacked: {why}")))?;
        for (cfg, w) in cfgs.iter().zip(weights) {
            cfg.validate()?;
            w.check(cfg)?;
        }
        let n = cfgs.len();
        let cfg = cfgs[0];
        let (b, d, m) = (cfg.batch, cfg.d_in, cfg.d_sae);
        let Activation::TopK { k: kk } = cfg.activation else {
            unreachable!("stackable checked TopK")
        };
        expect_batch("a stack of SAEs", x, target, b, d)?;
        let z = |shape: &[usize], label: &str| Tensor::<f32>::zeros(gpu, shape, label);
        let view = |t: &Tensor<f32>, s: usize, shape: &[usize], label: &str| t.view(gpu, n, s, shape, label);
        // The parameters stacked ([N, m, d] and [N, m]), with gradients and moments alike.
        let stacked_param = |name: &'static str, shape: &[usize]| -> Result<Slot> {
            let len: usize = shape.iter().product();
            let mut data = Vec::with_capacity(n * len);
            for w in weights {
                let p = w
                    .params
                    .iter()
                    .find(|p| p.name == name)
                    .expect("checked weights have every parameter");
                data.extend_from_slice(&p.data);
            }
            let all = [n * len];
            Ok(Slot {
                param: Tensor::from_slice(gpu, &all, &data, name)?,
                grad: z(&all, name)?,
                m: z(&all, "adam m")?,
                v: z(&all, "adam v")?,
            })
        };
        let names = param_names(Architecture::Tied);
        let w_all = stacked_param(names[0], &[m, d])?;
        let bias_all = stacked_param(names[1], &[m])?;
        let pre = z(&[n * b, m], "pre-activation")?;
        let idx = Tensor::<u32>::zeros(gpu, &[n * b, kk], "topk indices")?;
        let val = z(&[n * b, kk], "topk values")?;
        let csc = Csc::stacked(gpu, n, b, kk, m)?;
        let u = z(&[n * m, d], "U")?;
        let norms = z(&[n * m], "row norms")?;
        let xhat = z(&[n * b, d], "reconstruction")?;
        let dxhat = z(&[n * b, d], "d reconstruction")?;
        let row_sq = z(&[n * b], "row squared error")?;
        let dval = z(&[n * b, kk], "d pre-activation at the active latents")?;
        let raw = z(&[n * m, d], "raw dictionary gradient")?;
        let acc = z(&[n * slot::LEN], "metrics")?;
        let firing = z(&[n * m], "firing counts")?;
        let since = z(&[n * m], "tokens since fired")?;
        let stats = z(&[2, n * m], "per-latent metrics")?;
        let target_sq = z(&[d], "target centred squares")?;
        let (w, w_grad) = (&w_all.param, &w_all.grad);
        let (bias, bias_grad) = (&bias_all.param, &bias_all.grad);
        let code = SparseCode { idx: &idx, val: &val };
        let k = kernels;
        // The encoder product reads the one batch for all N (a shared operand).
        let mut plan = vec![k.matmul(
            gpu,
            x,
            Op::N,
            &w.reshaped(&[n, m, d])?,
            Op::T,
            Some(&bias.reshaped(&[n, m])?),
            1.0,
            &pre.reshaped(&[n, b, m])?,
        )?];
        let out = TopK {
            instances: n,
            z: None,
            sparse: Some(code),
        };
        plan.extend(k.topk(gpu, &pre, kk, !cfg.paper_exact, out)?);
        plan.extend(k.csc(gpu, &idx, &csc)?);
        plan.push(k.rows_normalise(gpu, &w.reshaped(&[n * m, d])?, &u, &norms)?);
        plan.push(k.sparse_decode(gpu, code, &u, None, &xhat)?);
        // The MSE's mean is each SAE's (over its batch·d values, not the stack's).
        plan.push(k.mse_blocks(gpu, &xhat, target, 1.0, n, &dxhat, &row_sq)?);
        plan.push(k.sparse_code_gradient(gpu, code, &u, &dxhat, &dval)?);
        // AuxK: the dead latents' code of each SAE (its own clocks) reconstructs its residual
        // target − x̂, in `new`'s order of dispatches.
        let aux = match cfg.auxk {
            Some(aux) => {
                let masked = z(&[n * b, m], "AuxK masked pre-activation")?;
                let idx = Tensor::<u32>::zeros(gpu, &[n * b, aux.k_aux], "AuxK topk indices")?;
                let val = z(&[n * b, aux.k_aux], "AuxK topk values")?;
                let csc = Csc::stacked(gpu, n, b, aux.k_aux, m)?;
                let resid = z(&[n * b, d], "x - xhat")?;
                let ehat = z(&[n * b, d], "AuxK reconstruction")?;
                let g = z(&[n * b, d], "AuxK reconstruction gradient")?;
                let row_sq = z(&[n * b], "AuxK row squared error")?;
                let da = z(&[n * b, aux.k_aux], "AuxK d pre-activation at the active latents")?;
                let code = SparseCode { idx: &idx, val: &val };
                plan.push(k.mask_dead(gpu, &pre, &since, aux.dead_after_tokens as f32, &masked)?);
                let out = TopK {
                    instances: n,
                    z: None,
                    sparse: Some(code),
                };
                plan.extend(k.topk(gpu, &masked, aux.k_aux, true, out)?);
                plan.extend(k.csc(gpu, &idx, &csc)?);
                plan.push(k.axpby(gpu, 1.0, target, -1.0, &xhat, &resid)?);
                plan.push(k.sparse_decode(gpu, code, &u, None, &ehat)?);
                plan.push(k.mse_blocks(gpu, &ehat, &resid, aux.coef, n, &g, &row_sq)?);
                plan.push(k.sparse_code_gradient(gpu, code, &u, &g, &da)?);
                let code = Code::Sparse(Box::new(Active { idx, val, csc }));
                Some(Term { code, da, g, row_sq })
            }
            None => None,
        };
        let w_grad_rows = w_grad.reshaped(&[n * m, d])?;
        plan.push(k.sparse_scatter(gpu, &csc, &dval, x, false, false, &w_grad_rows, Some(bias_grad))?);
        if let Some(t) = &aux {
            plan.push(k.sparse_scatter(
                gpu,
                &t.active().csc,
                &t.da,
                x,
                false,
                true,
                &w_grad_rows,
                Some(bias_grad),
            )?);
        }
        plan.push(k.sparse_scatter(gpu, &csc, &val, &dxhat, false, false, &raw, None)?);
        plan.push(k.project(gpu, &raw, &u, Some(&norms), true, &w_grad_rows)?);
        if let Some(t) = &aux {
            let a = t.active();
            plan.push(k.sparse_scatter(gpu, &a.csc, &a.val, &t.g, false, false, &raw, None)?);
            plan.push(k.project(gpu, &raw, &u, Some(&norms), true, &w_grad_rows)?);
        }
        plan.push(k.columns(gpu, target, ColumnOp::CenteredSquares, false, &target_sq)?);
        plan.push(k.latent_stats(gpu, CodeOf::Sparse { csc: &csc, val: &val }, &stats, &firing, &since)?);
        let step_metrics = StepMetrics {
            instances: n,
            row_sq: &row_sq,
            aux_sq: aux.as_ref().map(|t| &t.row_sq),
            col_sq: &target_sq,
            stats: &stats,
        };
        let deviation = Deviation {
            batch: b,
            rate: kk as f32 / m as f32,
            threshold: reinit_threshold,
        };
        plan.push(k.window_totals(gpu, step_metrics, Some(deviation), slot::WINDOW, &acc)?);

        let mut saes = Vec::with_capacity(n);
        for (s, &cfg) in cfgs.iter().enumerate() {
            let slot = |all: &Slot, shape: &[usize], name: &str| -> Result<Slot> {
                Ok(Slot {
                    param: view(&all.param, s, shape, name)?,
                    grad: view(&all.grad, s, shape, name)?,
                    m: view(&all.m, s, shape, "adam m")?,
                    v: view(&all.v, s, shape, "adam v")?,
                })
            };
            let slots = vec![slot(&w_all, &[m, d], names[0])?, slot(&bias_all, &[m], names[1])?];
            let step_uniform = step_uniform(gpu);
            let update = vec![k.adam(
                gpu,
                cfg.adam,
                &step_uniform,
                adam_slot(&slots[0]),
                Some(adam_slot(&slots[1])),
            )?];
            saes.push(GpuSae {
                cfg,
                path: StepPath::Sparse,
                unit: Some((view(&u, s, &[m, d], "U")?, view(&norms, s, &[m], "row norms")?)),
                slots,
                step_uniform,
                gradients: Vec::new(),
                update,
                acc: view(&acc, s, &[slot::LEN], "metrics")?,
                firing: view(&firing, s, &[m], "firing counts")?,
                since_fired: view(&since, s, &[m], "tokens since fired")?,
                target_sq: target_sq.clone(),
                target_of_sq: target.clone(),
                xhat: view(&xhat, s, &[b, d], "reconstruction")?,
                threshold: None,
                t: 0,
                window_steps: 0,
            });
        }
        let step_uniform = step_uniform(gpu);
        let update = vec![k.adam(
            gpu,
            cfg.adam,
            &step_uniform,
            adam_slot(&w_all),
            Some(adam_slot(&bias_all)),
        )?];
        let step = StackedStep {
            gradients: plan,
            update,
            step_uniform,
            dictionaries: u,
            norms,
            dictionary_grads: w_grad_rows,
        };
        Ok((saes, step))
    }

    /// Whether `cfgs` can be recorded as one stacked step (`stack`), or why not: N ≥ 2 tied
    /// TopK SAEs of one shape and k (and AuxK, or none) on the sparse path, whose per-SAE slices
    /// start where this adapter can bind them (m and batch·d multiples of 64 values on most).
    pub fn stackable(gpu: &Gpu, cfgs: &[SaeConfig]) -> std::result::Result<(), String> {
        let Some(first) = cfgs.first() else {
            return Err("no SAEs".into());
        };
        if cfgs.len() < 2 {
            return Err("one SAE".into());
        }
        let same = |c: &SaeConfig| SaeConfig { lr: first.lr, ..*c } == *first;
        if !cfgs.iter().all(same) {
            return Err("the SAEs differ in more than the learning rate".into());
        }
        if first.arch != Architecture::Tied || !matches!(first.activation, Activation::TopK { .. }) {
            return Err("stacking is built for tied TopK SAEs".into());
        }
        if first.resolved_step_path().map_err(|e| e.to_string())? != StepPath::Sparse {
            return Err("stacking is built for the sparse step path".into());
        }
        let (b, d, m) = (first.batch, first.d_in, first.d_sae);
        for len in [m * d, m, b * d, slot::LEN] {
            if !Tensor::<f32>::view_aligned(gpu, len) {
                return Err(format!(
                    "a slice of {len} values does not start where this adapter binds (a multiple of {} bytes)",
                    gpu.report.limits.min_storage_buffer_offset_alignment
                ));
            }
        }
        Ok(())
    }

    /// Advances the step count and queues this step's uniform (Adam's t and the lr,
    /// scaled by `lr_scale` from the trainer's schedule).
    pub fn begin_step(&mut self, gpu: &Gpu, lr_scale: f32) {
        self.t += 1;
        self.window_steps += 1;
        let step = [self.t as f32, self.cfg.lr * lr_scale, 0.0, 0.0];
        gpu.queue
            .write_buffer(&self.step_uniform, 0, bytemuck::cast_slice(&step));
    }

    /// The path the recorded step takes (dense or sparse products).
    pub fn step_path(&self) -> StepPath {
        self.path
    }

    /// Forward, loss, backward and metrics: fills the parameter gradients.
    pub fn gradient_plan(&self) -> &[Dispatch] {
        &self.gradients
    }

    /// Adam on every parameter, then (standard) the decoder renormalisation.
    pub fn update_plan(&self) -> &[Dispatch] {
        &self.update
    }

    /// The unit-row decoder dictionary U [m, d] as of the last forward pass, and
    /// (tied) the row norms the gradient through the normalisation divides by.
    pub fn dictionary(&self) -> (&Tensor<f32>, Option<&Tensor<f32>>) {
        match &self.unit {
            Some((u, norms)) => (u, Some(norms)),
            None => (&self.slots[2].param, None),
        }
    }

    /// The gradient of the parameter the dictionary is made from (tied W, standard W_dec).
    pub fn dictionary_param_grad(&self) -> &Tensor<f32> {
        match self.cfg.arch {
            Architecture::Tied => &self.slots[0].grad,
            Architecture::Standard => &self.slots[2].grad,
        }
    }

    /// Adam steps since the start or the last re-initialisation.
    pub fn adam_steps(&self) -> u64 {
        self.t
    }

    /// Replaces the weights and resets Adam (moments and step count).
    pub fn reset(&mut self, gpu: &Gpu, weights: &SaeWeights) -> Result<()> {
        weights.check(&self.cfg)?;
        for (s, p) in self.slots.iter().zip(&weights.params) {
            s.param.write(gpu, &p.data)?;
            let zeros = vec![0.0; p.data.len()];
            s.m.write(gpu, &zeros)?;
            s.v.write(gpu, &zeros)?;
        }
        self.since_fired.write(gpu, &vec![0.0; self.cfg.d_sae])?;
        if let (Some(t), Some(theta)) = (&self.threshold, weights.threshold) {
            t.write(gpu, &[theta])?;
        }
        self.t = 0;
        Ok(())
    }

    /// Reads Adam's state and the AuxK firing clock back (for a checkpoint).
    pub async fn training_state(&self, gpu: &Gpu) -> Result<SaeTrainingState> {
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for s in &self.slots {
            m.push(s.m.read(gpu).await?);
            v.push(s.v.read(gpu).await?);
        }
        Ok(SaeTrainingState {
            adam_steps: self.t,
            adam_m: m,
            adam_v: v,
            since_fired: self.since_fired.read(gpu).await?,
        })
    }

    /// Puts back what `training_state` read (the weights go in through `new` or
    /// `reset`); refuses a state whose shapes differ from this SAE's.
    pub fn set_training_state(&mut self, gpu: &Gpu, state: &SaeTrainingState) -> Result<()> {
        let lens: Vec<usize> = self.slots.iter().map(|s| s.param.shape().iter().product()).collect();
        let fits = |moments: &[Vec<f32>]| moments.iter().map(Vec::len).eq(lens.iter().copied());
        if !fits(&state.adam_m) || !fits(&state.adam_v) || state.since_fired.len() != self.cfg.d_sae {
            return Err(Error::Shape(format!(
                "the saved Adam moments or firing clock do not fit an SAE with parameter sizes {lens:?} and m = {}",
                self.cfg.d_sae
            )));
        }
        for ((s, m), v) in self.slots.iter().zip(&state.adam_m).zip(&state.adam_v) {
            s.m.write(gpu, m)?;
            s.v.write(gpu, v)?;
        }
        self.since_fired.write(gpu, &state.since_fired)?;
        self.t = state.adam_steps;
        Ok(())
    }

    /// Reads the metrics of the steps since the last call and starts a new window.
    pub async fn take_metrics(&mut self, gpu: &Gpu) -> Result<SaeMetrics> {
        let acc = self.acc.read(gpu).await?;
        let firing_counts = self.firing.read(gpu).await?;
        self.acc.write(gpu, &[0.0; slot::LEN])?;
        self.firing.write(gpu, &vec![0.0; self.cfg.d_sae])?;
        let steps = std::mem::take(&mut self.window_steps);
        let rows = (steps as usize * self.cfg.batch).max(1) as f64;
        let values = rows * self.cfg.d_in as f64;
        let dead = firing_counts.iter().filter(|&&c| c == 0.0).count();
        let acc = |i: usize| acc[i] as f64;
        Ok(SaeMetrics {
            steps,
            mse: acc(slot::SQUARED_ERROR) / values,
            fvu: acc(slot::SQUARED_ERROR) / acc(slot::TARGET_VARIANCE).max(f64::MIN_POSITIVE),
            l0: acc(slot::ACTIVE) / rows,
            l1: acc(slot::ABS_CODE) / rows,
            dead_fraction: dead as f64 / self.cfg.d_sae as f64,
            reinit_stat_max: acc(slot::REINIT_STAT),
            reinit_over: acc(slot::REINIT_OVER) as u64,
            aux_mse: acc(slot::AUX_SQUARED_ERROR) / values,
            firing_counts,
        })
    }

    /// Copies the parameters back.
    pub async fn weights(&self, gpu: &Gpu) -> Result<SaeWeights> {
        let mut params = Vec::new();
        for (s, &name) in self.slots.iter().zip(param_names(self.cfg.arch)) {
            params.push(Param {
                name,
                shape: s.param.shape().to_vec(),
                data: s.param.read(gpu).await?,
            });
        }
        let threshold = match &self.threshold {
            Some(t) => Some(t.read(gpu).await?[0]),
            None => None,
        };
        Ok(SaeWeights {
            arch: self.cfg.arch,
            params,
            threshold,
        })
    }
}
