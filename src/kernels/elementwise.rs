//! `shaders/elementwise.wgsl` (row-vector broadcast) and `elementwise_axpby.wgsl`.

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
    alpha: f32,
    _pad: u32,
}

shader_params!(Params as "Params" { rows, cols, alpha, _pad });
pub(super) const ADD_ROW_VECTOR: EntryPoint =
    EntryPoint::new("elementwise", "add_row_vector", &[layout_of::<Params>], 4);

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
        let buffers: &[&dyn Bind] = &[&uniform, &x, &v, &out];
        Ok(self.add_row_vector.bind(gpu, buffers, gpu.grid_1d(rows * cols, WG)))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Axpby {
    n: u32,
    a: f32,
    b: f32,
    /// Values of x, which repeats where it is shorter than y.
    nx: u32,
}

shader_params!(Axpby as "Axpby" { n, a, b, nx });
pub(super) const AXPBY: EntryPoint = EntryPoint::new("elementwise_axpby", "axpby", &[layout_of::<Axpby>], 4);

impl Kernels {
    /// out = a · x + b · y, elementwise over y's length; x is as long as y or repeats (its
    /// length divides y's: an ensemble's one target against its SAEs' stacked rows).
    #[allow(clippy::too_many_arguments)]
    pub fn axpby(
        &self,
        gpu: &Gpu,
        a: f32,
        x: &Tensor<f32>,
        b: f32,
        y: &Tensor<f32>,
        out: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let n = y.len();
        if x.is_empty() || !n.is_multiple_of(x.len()) {
            return Err(crate::error::Error::Shape(format!(
                "axpby: x of shape {:?} neither matches nor repeats across y of shape {:?}",
                x.shape(),
                y.shape()
            )));
        }
        expect_shape("axpby", "out", out, &[n])?;
        let uniform = gpu.uniform(&Axpby {
            n: u32_of(n),
            a,
            b,
            nx: u32_of(x.len()),
        });
        Ok(self.axpby.bind(gpu, &[&uniform, &x, &y, &out], gpu.grid_1d(n, WG)))
    }
}
