//! `shaders/adam.wgsl`: one Adam update of one parameter tensor.

use super::{expect_shape, u32_of, Kernels, WG};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::AdamHyper;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Hyper {
    n: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

/// The per-step uniform every Adam dispatch of an SAE reads: `[t, lr, 0, 0]`.
pub const STEP_UNIFORM_BYTES: u64 = 16;

impl Kernels {
    /// Updates `param` from `grad` with moments `m`, `v`; step and lr come from
    /// `step` (a uniform buffer of [`STEP_UNIFORM_BYTES`] holding `[t, lr, 0, 0]`).
    #[allow(clippy::too_many_arguments)]
    pub fn adam(
        &self,
        gpu: &Gpu,
        hyper: AdamHyper,
        step: &wgpu::Buffer,
        param: &Tensor<f32>,
        grad: &Tensor<f32>,
        m: &Tensor<f32>,
        v: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let n = param.len();
        for (what, t) in [("grad", grad), ("m", m), ("v", v)] {
            expect_shape("adam", what, t, &[n])?;
        }
        let uniform = gpu.uniform(&Hyper {
            n: u32_of(n),
            beta1: hyper.beta1,
            beta2: hyper.beta2,
            eps: hyper.eps,
        });
        let buffers = [&uniform, step, &param.buffer, &grad.buffer, &m.buffer, &v.buffer];
        Ok(self.adam.bind(gpu, &buffers, gpu.grid_1d(n, WG)))
    }
}
