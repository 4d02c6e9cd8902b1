//! `shaders/adam.wgsl`: one Adam update of one parameter tensor.

use super::contract::{layout_of, shader_params, EntryPoint};
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

shader_params!(Hyper as "Hyper" { n, beta1, beta2, eps });

/// The per-step uniform every Adam dispatch of an SAE reads (written by the trainer).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Step {
    t: f32,
    lr: f32,
    _pad: [f32; 2],
}

shader_params!(Step as "Step" { t, lr, _pad });

/// The size of the per-step uniform: `[t, lr, 0, 0]` as f32.
pub const STEP_UNIFORM_BYTES: u64 = std::mem::size_of::<Step>() as u64;

pub(super) const ADAM: EntryPoint = EntryPoint::new("adam", "main", &[layout_of::<Hyper>, layout_of::<Step>], 6);

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
        let params = Hyper {
            n: u32_of(n),
            beta1: hyper.beta1,
            beta2: hyper.beta2,
            eps: hyper.eps,
        };
        let buffers = [step, &param.buffer, &grad.buffer, &m.buffer, &v.buffer];
        Ok(self
            .adam
            .dispatch(gpu, &params, &buffers, gpu.grid_1d(n.div_ceil(4), WG)))
    }
}
