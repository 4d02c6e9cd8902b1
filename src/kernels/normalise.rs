//! `shaders/normalise.wgsl` (decoder row normalisation) and `shaders/normalise_project.wgsl`
//! (its gradient).

use super::contract::{layout_of, shader_params, EntryPoint};
use super::{expect_shape, matrix_dims, u32_of, Kernels, WG};
use crate::error::Result;
use crate::gpu::{Bind, Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    accumulate: u32,
    use_norms: u32,
}

shader_params!(Params as "Params" { rows, cols, accumulate, use_norms });

pub(super) const ROWS: EntryPoint = EntryPoint::new("normalise", "rows", &[layout_of::<Params>], 4);

pub(super) const RENORMALISE: EntryPoint = EntryPoint::new("normalise", "renormalise", &[layout_of::<Params>], 2);

pub(super) const PROJECT: EntryPoint = EntryPoint::new("normalise_project", "project", &[layout_of::<Params>], 5);

impl Params {
    /// The normalisation of `rows` rows of `cols` values (no gradient options).
    fn rows(rows: usize, cols: usize) -> Params {
        Params {
            rows: u32_of(rows),
            cols: u32_of(cols),
            accumulate: 0,
            use_norms: 0,
        }
    }
}

impl Kernels {
    /// u [rows, cols] = w / ‖w_r‖ per row; norms [rows] = ‖w_r‖.
    pub fn rows_normalise(&self, gpu: &Gpu, w: &Tensor<f32>, u: &Tensor<f32>, norms: &Tensor<f32>) -> Result<Dispatch> {
        let (rows, cols) = matrix_dims(w);
        expect_shape("rows_normalise", "u", u, &[rows, cols])?;
        expect_shape("rows_normalise", "norms", norms, &[rows])?;
        let buffers: &[&dyn Bind] = &[&w, &u, &norms];
        Ok(self
            .rows_normalise
            .dispatch(gpu, &Params::rows(rows, cols), buffers, gpu.grid_1d(rows, WG)))
    }

    /// w_r ← w_r / ‖w_r‖ in place.
    pub fn renormalise(&self, gpu: &Gpu, w: &Tensor<f32>) -> Result<Dispatch> {
        let (rows, cols) = matrix_dims(w);
        Ok(self
            .renormalise
            .dispatch(gpu, &Params::rows(rows, cols), &[&w], gpu.grid_1d(rows, WG)))
    }

    /// dst_r (+)= (src_r − (src_r·u_r) u_r) / n_r, with n_r = norms[r] when given, else 1.
    /// With norms: the gradient w.r.t. W of a loss on U = W/‖W‖ (tied decoder).
    /// Without: the tangent projection that keeps unit rows on the sphere (standard).
    pub fn project(
        &self,
        gpu: &Gpu,
        src: &Tensor<f32>,
        u: &Tensor<f32>,
        norms: Option<&Tensor<f32>>,
        accumulate: bool,
        dst: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, cols) = matrix_dims(src);
        expect_shape("project", "u", u, &[rows, cols])?;
        expect_shape("project", "dst", dst, &[rows, cols])?;
        if let Some(n) = norms {
            expect_shape("project", "norms", n, &[rows])?;
        }
        let params = Params {
            rows: u32_of(rows),
            cols: u32_of(cols),
            accumulate: accumulate as u32,
            use_norms: norms.is_some() as u32,
        };
        let norms = norms.unwrap_or(&self.unused);
        let buffers: &[&dyn Bind] = &[&src, &u, &norms, &dst];
        Ok(self.project.dispatch(gpu, &params, buffers, gpu.grid_1d(rows, WG)))
    }
}
