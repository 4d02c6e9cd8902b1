//! `shaders/matmul.wgsl`: C = alpha · op(A) · op(B) (+ bias row vector).

use super::{expect_shape, matrix_dims, u32_of, Kernels};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use bytemuck::{Pod, Zeroable};

/// Whether an operand is used as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    N,
    T,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    sa_i: u32,
    sa_k: u32,
    sb_k: u32,
    sb_j: u32,
    batch_a: u32,
    batch_b: u32,
    batch_c: u32,
    batch_bias: u32,
    alpha: f32,
    _pad: [u32; 3],
}

/// Rows, inner size and (row, inner) strides of `t` used under `op`.
fn operand(t: &Tensor<f32>, op: Op) -> (usize, usize, usize, usize) {
    let (r, c) = matrix_dims(t);
    match op {
        Op::N => (r, c, c, 1),
        Op::T => (c, r, 1, c),
    }
}

impl Kernels {
    /// `c [M, N] = alpha · op_a(a) [M, K] · op_b(b) [K, N] + bias [N]`.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        gpu: &Gpu,
        a: &Tensor<f32>,
        op_a: Op,
        b: &Tensor<f32>,
        op_b: Op,
        bias: Option<&Tensor<f32>>,
        alpha: f32,
        c: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (m, k, sa_i, sa_k) = operand(a, op_a);
        // B(k, j): as an operand its "rows" are j and its inner index is k.
        let (n, kb, sb_j, sb_k) = operand(b, if op_b == Op::N { Op::T } else { Op::N });
        if k != kb {
            return Err(Error::Shape(format!(
                "matmul: inner sizes differ: op(a) is [{m}, {k}] and op(b) is [{kb}, {n}]"
            )));
        }
        expect_shape("matmul", "c", c, &[m, n])?;
        if let Some(bias) = bias {
            expect_shape("matmul", "bias", bias, &[n])?;
        }
        let params = Params {
            m: u32_of(m),
            n: u32_of(n),
            k: u32_of(k),
            has_bias: bias.is_some() as u32,
            sa_i: u32_of(sa_i),
            sa_k: u32_of(sa_k),
            sb_k: u32_of(sb_k),
            sb_j: u32_of(sb_j),
            batch_a: 0,
            batch_b: 0,
            batch_c: 0,
            batch_bias: 0,
            alpha,
            _pad: [0; 3],
        };
        let uniform = gpu.uniform(&params);
        let bias = bias.unwrap_or(&self.unused);
        let grid = [u32_of(n.div_ceil(32)), u32_of(m.div_ceil(32)), 1];
        Ok(self
            .matmul
            .bind(gpu, &[&uniform, &a.buffer, &b.buffer, &bias.buffer, &c.buffer], grid))
    }
}
