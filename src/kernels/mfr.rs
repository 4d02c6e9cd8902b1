//! `shaders/mfr.wgsl`: pairwise decoder similarity (MMCS) and its gradient.

use super::{expect_shape, matrix_dims, u32_of, Kernels, WG};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

/// How one SAE's latents are paired with another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MmcsForm {
    /// Each latent of b with its most similar latent of a: the authors' `calculate_MMCS` until
    /// 2024-09-24. Directional: several latents of b may crowd onto one latent of a.
    Max,
    /// An optimal one-to-one matching (computed on the CPU, held fixed between refreshes): the
    /// authors' `calculate_MMCS` from 2024-09-24 on (scipy `linear_sum_assignment` on 1 − cos),
    /// the code their repository ends with, and the default.
    Match,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    d: u32,
    mode: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Grad {
    m: u32,
    d: u32,
    scale: f32,
    _pad: u32,
}

/// The per-step uniform the MFR gradient reads: `[weight, 0, 0, 0]`, weight = λ·w(t).
pub const MFR_STEP_UNIFORM_BYTES: u64 = 16;

fn same_dictionaries(kernel: &str, ua: &Tensor<f32>, ub: &Tensor<f32>, assign: &Tensor<u32>) -> Result<(usize, usize)> {
    let (m, d) = matrix_dims(ua);
    expect_shape(kernel, "ub", ub, &[m, d])?;
    expect_shape(kernel, "assign", assign, &[m])?;
    if m == 0 || d == 0 {
        return Err(Error::Shape(format!("{kernel}: empty dictionaries {:?}", ua.shape())));
    }
    Ok((m, d))
}

impl Kernels {
    /// sim[j] = max_i ua_i·ub_j with its argmax in assign (`Max`), or ua_{assign[j]}·ub_j (`Match`).
    pub fn similarity(
        &self,
        gpu: &Gpu,
        ua: &Tensor<f32>,
        ub: &Tensor<f32>,
        form: MmcsForm,
        assign: &Tensor<u32>,
        sim: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (m, d) = same_dictionaries("similarity", ua, ub, assign)?;
        expect_shape("similarity", "sim", sim, &[m])?;
        let mode = (form == MmcsForm::Match) as u32;
        let uniform = gpu.uniform(&Params {
            m: u32_of(m),
            d: u32_of(d),
            mode,
            _pad: 0,
        });
        let buffers = [&uniform, &ua.buffer, &ub.buffer, &assign.buffer, &sim.buffer];
        Ok(self.similarity.bind(gpu, &buffers, gpu.grid_1d(m, WG)))
    }

    /// ga, gb += c · ∂(Σ_j ua_{assign[j]}·ub_j)/∂(ua, ub), c = scale · weight (`step` uniform).
    #[allow(clippy::too_many_arguments)]
    pub fn mfr_gradient(
        &self,
        gpu: &Gpu,
        step: &wgpu::Buffer,
        scale: f32,
        ua: &Tensor<f32>,
        ub: &Tensor<f32>,
        assign: &Tensor<u32>,
        ga: &Tensor<f32>,
        gb: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (m, d) = same_dictionaries("mfr_gradient", ua, ub, assign)?;
        expect_shape("mfr_gradient", "ga", ga, &[m, d])?;
        expect_shape("mfr_gradient", "gb", gb, &[m, d])?;
        let uniform = gpu.uniform(&Grad {
            m: u32_of(m),
            d: u32_of(d),
            scale,
            _pad: 0,
        });
        let buffers = [
            &uniform,
            step,
            &ua.buffer,
            &ub.buffer,
            &assign.buffer,
            &ga.buffer,
            &gb.buffer,
        ];
        Ok(self.mfr_gradient.bind(gpu, &buffers, gpu.grid_1d(m, WG)))
    }
}
