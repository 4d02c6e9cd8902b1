//! `shaders/elementwise.wgsl`: row-vector broadcast.

use super::{expect_shape, matrix_dims, u32_of, Kernels, WG};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    alpha: f32,
    _pad: u32,
}

impl Kernels {
    /// out [rows, cols] = x + alpha · v (v [cols] added to every row).
    pub fn add_row_vector(
        &self,
        gpu: &Gpu,
        x: &Tensor<f32>,
        v: &Tensor<f32>,
        alpha: f32,
        out: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, cols) = matrix_dims(x);
        expect_shape("add_row_vector", "v", v, &[cols])?;
        expect_shape("add_row_vector", "out", out, &[rows, cols])?;
        let uniform = gpu.uniform(&Params {
            rows: u32_of(rows),
            cols: u32_of(cols),
            alpha,
            _pad: 0,
        });
        let buffers = [&uniform, &x.buffer, &v.buffer, &out.buffer];
        Ok(self.add_row_vector.bind(gpu, &buffers, gpu.grid_1d(rows * cols, WG)))
    }
}
