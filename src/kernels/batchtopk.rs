//! `shaders/batchtopk.wgsl` and `batchtopk_*.wgsl` (one file per pass): BatchTopK's
//! training activation — the batch·k largest ReLU'd pre-activations of the whole
//! batch, by a deterministic radix select on the GPU — and the update of its inference
//! threshold θ. Owns the select's scratch
//! buffers and their layout; the threshold buffer itself belongs to the SAE
//! (`sae.rs`), and JumpReLU inference with θ is the reference's (`reference::jumprelu`).

use super::contract::{layout_of, shader_params, EntryPoint};
use super::{expect_shape, matrix_dims, u32_of, Kernels};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};

/// The threshold's learning rate: θ ← (1 − lr)·θ + lr·(smallest positive kept value)
/// after every training step, from θ = 0 — SAELens's `BatchTopKTrainingSAE`
/// (`topk_threshold_lr`, default 0.01; saprmarks/dictionary_learning's
/// `BatchTopKTrainer` uses the same average with β = 1 − lr = 0.999).
pub const BATCH_TOPK_THRESHOLD_LR: f32 = 0.01;

/// Digits of the 64-bit select key (8 bits each) and values per invocation of the
/// histogram and keep passes (must match `PASSES` and `PER` in `batchtopk*.wgsl`).
const PASSES: usize = 8;
const PER: usize = 16;
const WGS: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    n: u32,
    kk: u32,
    lr: f32,
    _pad: u32,
}

shader_params!(Params as "Params" { n, kk, lr, _pad });

pub(super) const START: EntryPoint = EntryPoint::new("batchtopk", "start", &[layout_of::<Params>], 3);

pub(super) const HISTOGRAM: EntryPoint = EntryPoint::new("batchtopk_histogram", "histogram", &[layout_of::<Params>], 4);

/// `pick` reads no uniform: its bindings 0, 1 are the histogram and the state.
pub(super) const PICK: EntryPoint = EntryPoint::new("batchtopk_pick", "pick", &[], 2);

pub(super) const KEEP: EntryPoint = EntryPoint::new("batchtopk_keep", "keep", &[layout_of::<Params>], 4);

pub(super) const THRESHOLD: EntryPoint = EntryPoint::new("batchtopk_threshold", "threshold", &[layout_of::<Params>], 3);

/// The select's scratch, reused every step: the radix histogram and its state.
pub struct BatchTopKScratch {
    /// hist [256]: counts of the current digit.
    hist: Tensor<u32>,
    /// state [8]: prefix (hi, lo), mask (hi, lo), remaining rank, pass, done, and the
    /// smallest positive kept value's bits (the shader's S_* words).
    state: Tensor<u32>,
}

impl BatchTopKScratch {
    pub fn new(gpu: &Gpu) -> Result<BatchTopKScratch> {
        Ok(BatchTopKScratch {
            hist: Tensor::zeros(gpu, &[256], "batch topk histogram")?,
            state: Tensor::zeros(gpu, &[8], "batch topk state")?,
        })
    }
}

impl Kernels {
    /// BatchTopK of `a` [rows, m]: z [rows, m] = relu(a) at the rows·k largest values
    /// of relu(a) over the whole batch (ties to the lower flat index), else 0; then
    /// θ [1] ← (1 − lr)·θ + lr·(smallest positive kept value), unchanged if none.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_topk(
        &self,
        gpu: &Gpu,
        a: &Tensor<f32>,
        k: usize,
        lr: f32,
        scratch: &BatchTopKScratch,
        z: &Tensor<f32>,
        theta: &Tensor<f32>,
    ) -> Result<Vec<Dispatch>> {
        let (rows, m) = matrix_dims(a);
        if k == 0 || k > m {
            return Err(Error::Shape(format!(
                "batch_topk: k = {k} must be between 1 and m = {m}"
            )));
        }
        expect_shape("batch_topk", "z", z, &[rows, m])?;
        expect_shape("batch_topk", "theta", theta, &[1])?;
        let n = rows * m;
        let uniform = gpu.uniform(&Params {
            n: u32_of(n),
            kk: u32_of(rows * k),
            lr,
            _pad: 0,
        });
        let (hist, state) = (&scratch.hist, &scratch.state);
        let tiles = gpu.grid_1d(n.div_ceil(PER), WGS);
        let mut plan = vec![self.btk_start.bind(gpu, &[&uniform, hist, state], [1, 1, 1])];
        for _ in 0..PASSES {
            plan.push(self.btk_histogram.bind(gpu, &[&uniform, &a, hist, state], tiles));
            plan.push(self.btk_pick.bind(gpu, &[hist, state], [1, 1, 1]));
        }
        plan.push(self.btk_keep.bind(gpu, &[&uniform, &a, &z, state], tiles));
        plan.push(self.btk_threshold.bind(gpu, &[&uniform, state, &theta], [1, 1, 1]));
        Ok(plan)
    }
}
