//! `shaders/adam.wgsl`: one Adam update of one or two parameter tensors.

use super::contract::{layout_of, shader_params, EntryPoint};
use super::{expect_shape, u32_of, Kernels, WG};
use crate::error::Result;
use crate::gpu::{Bind, Dispatch, Gpu, Tensor};
use crate::model::AdamHyper;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Hyper {
    n0: u32,
    n1: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    _pad: [u32; 3],
}

shader_params!(Hyper as "Hyper" { n0, n1, beta1, beta2, eps, _pad });

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

pub(super) const ADAM: EntryPoint = EntryPoint::new("adam", "main", &[layout_of::<Hyper>, layout_of::<Step>], 10);

/// A parameter tensor with its gradient and Adam moments, all of one size.
#[derive(Clone, Copy)]
pub struct AdamSlot<'a> {
    pub param: &'a Tensor<f32>,
    pub grad: &'a Tensor<f32>,
    pub m: &'a Tensor<f32>,
    pub v: &'a Tensor<f32>,
}

impl AdamSlot<'_> {
    fn checked(&self) -> Result<usize> {
        let n = self.param.len();
        for (what, t) in [("grad", self.grad), ("m", self.m), ("v", self.v)] {
            expect_shape("adam", what, t, &[n])?;
        }
        Ok(n)
    }
}

impl Kernels {
    /// Updates one or two parameter tensors (`first`, then `second`) from their gradients
    /// and moments, in one dispatch; step and lr come from `step` (a uniform buffer of
    /// [`STEP_UNIFORM_BYTES`] holding `[t, lr, 0, 0]`).
    pub fn adam(
        &self,
        gpu: &Gpu,
        hyper: AdamHyper,
        step: &wgpu::Buffer,
        first: AdamSlot<'_>,
        second: Option<AdamSlot<'_>>,
    ) -> Result<Dispatch> {
        let n0 = first.checked()?;
        let n1 = match &second {
            Some(s) => s.checked()?,
            None => 0,
        };
        let params = Hyper {
            n0: u32_of(n0),
            n1: u32_of(n1),
            beta1: hyper.beta1,
            beta2: hyper.beta2,
            eps: hyper.eps,
            _pad: [0; 3],
        };
        // Without a second tensor, one-element placeholders it never touches (n1 = 0): four
        // buffers, as one buffer may not be both read-only and writable in a dispatch.
        let placeholders;
        let other = match second {
            Some(s) => s,
            None => {
                let one = |label| Tensor::<f32>::zeros(gpu, &[1], label);
                placeholders = [one("adam p1")?, one("adam g1")?, one("adam m1")?, one("adam v1")?];
                AdamSlot {
                    param: &placeholders[0],
                    grad: &placeholders[1],
                    m: &placeholders[2],
                    v: &placeholders[3],
                }
            }
        };
        let buffers: &[&dyn Bind] = &[
            step,
            &first.param,
            &first.grad,
            &first.m,
            &first.v,
            &other.param,
            &other.grad,
            &other.m,
            &other.v,
        ];
        let quads = n0.div_ceil(4) + n1.div_ceil(4);
        Ok(self.adam.dispatch(gpu, &params, buffers, gpu.grid_1d(quads, WG)))
    }
}
