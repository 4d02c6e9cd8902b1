//! `shaders/reduce.wgsl` (column reductions) and `reduce_total.wgsl` (a total into an
//! accumulator). A step's metrics are `metrics.rs`'.

use super::contract::{layout_of, shader_params, EntryPoint};
use super::{expect_shape, matrix_dims, u32_of, Kernels, WG};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};

/// What `columns` reduces over the rows of each column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnOp {
    /// Σ x (bias gradients).
    Sum = 0,
    /// Σ (x − column mean)² (FVU denominator).
    CenteredSquares = 1,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    op: u32,
    accumulate: u32,
}

shader_params!(Params as "Params" { rows, cols, op, accumulate });
pub(super) const COLUMNS: EntryPoint = EntryPoint::new("reduce", "columns", &[layout_of::<Params>], 3);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Total {
    n: u32,
    slot: u32,
    _pad: [u32; 2],
}

shader_params!(Total as "Total" { n, slot, _pad });
pub(super) const TOTAL: EntryPoint = EntryPoint::new("reduce_total", "total", &[layout_of::<Total>], 3);

impl Kernels {
    /// dst[j] (+)= op over the rows of column j of `src` [rows, cols].
    pub fn columns(
        &self,
        gpu: &Gpu,
        src: &Tensor<f32>,
        op: ColumnOp,
        accumulate: bool,
        dst: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, cols) = matrix_dims(src);
        expect_shape("columns", "dst", dst, &[cols])?;
        let uniform = gpu.uniform(&Params {
            rows: u32_of(rows),
            cols: u32_of(cols),
            op: op as u32,
            accumulate: accumulate as u32,
        });
        Ok(self.columns.bind(gpu, &[&uniform, &src, &dst], gpu.grid_1d(cols, WG)))
    }

    /// acc[slot] += Σ src.
    pub fn total(&self, gpu: &Gpu, src: &Tensor<f32>, acc: &Tensor<f32>, slot: usize) -> Result<Dispatch> {
        self.totals(gpu, src, 1, acc, slot)
    }

    /// acc[first + g] += Σ of slice g of `src` split into `slices` equal slices, one workgroup
    /// a slice (each sum is the one `total` gives the slice alone).
    pub fn totals(
        &self,
        gpu: &Gpu,
        src: &Tensor<f32>,
        slices: usize,
        acc: &Tensor<f32>,
        first: usize,
    ) -> Result<Dispatch> {
        if slices == 0 || first + slices > acc.len() || !src.len().is_multiple_of(slices) {
            return Err(crate::error::Error::Shape(format!(
                "totals: {} values in {slices} slices into slots {first}.. of an accumulator of {} values",
                src.len(),
                acc.len()
            )));
        }
        let max = gpu.report.limits.max_compute_workgroups_per_dimension as usize;
        if slices > max {
            return Err(crate::error::Error::Shape(format!(
                "totals: {slices} slices need as many workgroups along one dimension, but this adapter \
                 allows {max} (MFR's pairs of an ensemble: use fewer SAEs)"
            )));
        }
        let uniform = gpu.uniform(&Total {
            n: u32_of(src.len() / slices),
            slot: u32_of(first),
            _pad: [0; 2],
        });
        Ok(self.total.bind(gpu, &[&uniform, &src, &acc], [u32_of(slices), 1, 1]))
    }
}
