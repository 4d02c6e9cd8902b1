//! `shaders/loss.wgsl`: mean squared error gradient and per-row squared error.

use super::contract::{layout_of, shader_params, EntryPoint};
use super::{expect_shape, matrix_dims, u32_of, Kernels, WG};
use crate::error::{Error, Result};
use crate::gpu::{Bind, Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    scale: f32,
    /// Rows of a target shared by each block of that many rows (0: as many as xhat).
    target_rows: u32,
}

shader_params!(Params as "Params" { rows, cols, scale, target_rows });
pub(super) const MSE: EntryPoint = EntryPoint::new("loss", "mse", &[layout_of::<Params>], 5);

impl Kernels {
    /// grad = coef · 2 (xhat − target) / (rows · cols); row_sq[r] = Σ_c (xhat − target)².
    /// `target` has xhat's rows, or fewer that divide them: then each block of that many rows
    /// of xhat (an ensemble's stacked reconstructions) is compared with the same target.
    #[allow(clippy::too_many_arguments)]
    pub fn mse(
        &self,
        gpu: &Gpu,
        xhat: &Tensor<f32>,
        target: &Tensor<f32>,
        coef: f32,
        grad: &Tensor<f32>,
        row_sq: &Tensor<f32>,
    ) -> Result<Dispatch> {
        self.mse_blocks(gpu, xhat, target, coef, 1, grad, row_sq)
    }

    /// `mse` over `blocks` equal blocks of xhat's rows (an ensemble's SAEs stacked), each
    /// block's mean its own: grad = coef · 2 (xhat − target) / (rows / blocks · cols), the
    /// factor one block alone gets.
    #[allow(clippy::too_many_arguments)]
    pub fn mse_blocks(
        &self,
        gpu: &Gpu,
        xhat: &Tensor<f32>,
        target: &Tensor<f32>,
        coef: f32,
        blocks: usize,
        grad: &Tensor<f32>,
        row_sq: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, cols) = matrix_dims(xhat);
        if blocks == 0 || !rows.is_multiple_of(blocks) {
            return Err(Error::Shape(format!("mse: {rows} rows in {blocks} blocks")));
        }
        let (target_rows, target_cols) = matrix_dims(target);
        if target_cols != cols || target_rows == 0 || !rows.is_multiple_of(target_rows) {
            return Err(Error::Shape(format!(
                "mse: `target` has shape {:?}; expected [{rows}, {cols}] or rows dividing {rows}",
                target.shape()
            )));
        }
        expect_shape("mse", "grad", grad, &[rows, cols])?;
        expect_shape("mse", "row_sq", row_sq, &[rows])?;
        let scale = coef * 2.0 / (rows / blocks * cols) as f32;
        let uniform = gpu.uniform(&Params {
            rows: u32_of(rows),
            cols: u32_of(cols),
            scale,
            target_rows: if target_rows == rows { 0 } else { u32_of(target_rows) },
        });
        let buffers: &[&dyn Bind] = &[&uniform, &xhat, &target, &grad, &row_sq];
        Ok(self.mse.bind(gpu, buffers, gpu.grid_1d(rows, WG)))
    }
}
