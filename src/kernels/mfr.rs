//! `shaders/mfr.wgsl`: pairwise decoder similarity (MMCS, in both forms), the full
//! similarity matrix, the MFR gradient and the grouping of latents it needs.
//! Owns the buffer layouts of these kernels; not the pairs, the schedule or the
//! matching (`crate::mfr`).

use super::{expect_shape, matrix_dims, u32_of, Kernels, Op, WG};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Program, Tensor};
use bytemuck::{Pod, Zeroable};
use serde::{Deserialize, Serialize};

/// How one SAE's latents are paired with another's (`--form max|match` on the CLI).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
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

/// Multiply-adds one invocation of the tiled kernels may do: on lavapipe, invocations of
/// ~100 000 and more silently stopped short (wrong maxima at m 1024, d 768).
const CHUNK_WORK: usize = 32_768;

/// Rows of ua [_, d] one dispatch of the tiled kernels covers.
fn chunk_rows(d: usize) -> usize {
    (CHUNK_WORK / d).clamp(1, 64)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    ma: u32,
    mb: u32,
    d: u32,
    scale: f32,
    /// The chunk of rows of ua of one tiled dispatch, and its index.
    lo: u32,
    hi: u32,
    chunk: u32,
    _pad: u32,
}

/// The per-step uniform the MFR gradient reads: `[weight, 0, 0, 0]`, weight = λ·w(t).
pub const MFR_STEP_UNIFORM_BYTES: u64 = 16;

/// Scratch of the `Max` similarity of dictionaries [m, d], one of:
/// - `Matrix`: S = ua · ubᵀ [m, m] by the adapter's matmul, then a column max (the fast path:
///   ~20× the tiles' rate on lavapipe at m 3072, d 768), where [m, m] fits one storage binding;
/// - `Chunks`: per chunk of `chunk_rows(d)` rows of ua, each latent j's best value in the chunk
///   and its argmax, val: [chunks, m] f32, arg: u32 (S never stored), for larger m.
pub struct MaxPartials(MaxScratch);

enum MaxScratch {
    Matrix(Tensor<f32>),
    Chunks { val: Tensor<f32>, arg: Tensor<u32> },
}

impl MaxPartials {
    /// The matrix form where [m, m] fits one storage binding of this adapter, else chunks.
    pub fn new(gpu: &Gpu, m: usize, d: usize) -> Result<MaxPartials> {
        if (m * m) as u64 <= gpu.max_binding_elements() {
            Self::matrix(gpu, m)
        } else {
            Self::chunked(gpu, m, d)
        }
    }

    pub fn matrix(gpu: &Gpu, m: usize) -> Result<MaxPartials> {
        Ok(MaxPartials(MaxScratch::Matrix(Tensor::zeros(
            gpu,
            &[m, m],
            "max similarity matrix",
        )?)))
    }

    pub fn chunked(gpu: &Gpu, m: usize, d: usize) -> Result<MaxPartials> {
        let shape = [m.div_ceil(chunk_rows(d.max(1))), m];
        Ok(MaxPartials(MaxScratch::Chunks {
            val: Tensor::zeros(gpu, &shape, "max similarity partials")?,
            arg: Tensor::zeros(gpu, &shape, "max similarity partial argmax")?,
        }))
    }
}

/// The latents of b grouped by their partner in a: group i is `members[offsets[i] ..
/// offsets[i + 1]]`, the j with assign[j] = i in increasing order. offsets: [m + 1] u32,
/// members: [m] u32.
pub struct Groups {
    pub offsets: Tensor<u32>,
    pub members: Tensor<u32>,
}

impl Groups {
    pub fn new(gpu: &Gpu, m: usize) -> Result<Groups> {
        Ok(Groups {
            offsets: Tensor::zeros(gpu, &[m + 1], "group offsets")?,
            members: Tensor::zeros(gpu, &[m], "group members")?,
        })
    }

    /// Sets the groups of `assign` (every entry < m) from the CPU: used for a fixed matching.
    pub fn write(&self, gpu: &Gpu, assign: &[u32]) -> Result<()> {
        let (offsets, members) = groups_of(assign, self.members.len());
        self.offsets.write(gpu, &offsets)?;
        self.members.write(gpu, &members)
    }
}

/// The grouping `Groups` holds, on the CPU: (offsets [m + 1], members [assign.len()]), every
/// assign[j] < m. For a permutation, members is its inverse.
pub fn groups_of(assign: &[u32], m: usize) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; m + 1];
    for &i in assign {
        offsets[i as usize + 1] += 1;
    }
    for i in 0..m {
        offsets[i + 1] += offsets[i];
    }
    let mut next = offsets.clone();
    let mut members = vec![0u32; assign.len()];
    for (j, &i) in assign.iter().enumerate() {
        members[next[i as usize] as usize] = j as u32;
        next[i as usize] += 1;
    }
    (offsets, members)
}

/// Scratch of the GPU grouping: cursor [m] (zero between uses) and slots [m], u32.
pub struct GroupScratch {
    cursor: Tensor<u32>,
    slots: Tensor<u32>,
}

impl GroupScratch {
    pub fn new(gpu: &Gpu, m: usize) -> Result<GroupScratch> {
        Ok(GroupScratch {
            cursor: Tensor::zeros(gpu, &[m], "group cursor")?,
            slots: Tensor::zeros(gpu, &[m], "group slots")?,
        })
    }
}

fn dictionaries(kernel: &str, ua: &Tensor<f32>, ub: &Tensor<f32>) -> Result<(usize, usize, usize)> {
    let (ma, d) = matrix_dims(ua);
    let (mb, db) = matrix_dims(ub);
    if ma == 0 || mb == 0 || d == 0 || db != d {
        return Err(Error::Shape(format!(
            "{kernel}: dictionaries of shapes {:?} and {:?} need rows of one positive width",
            ua.shape(),
            ub.shape()
        )));
    }
    Ok((ma, mb, d))
}

fn same_dictionaries(kernel: &str, ua: &Tensor<f32>, ub: &Tensor<f32>, assign: &Tensor<u32>) -> Result<(usize, usize)> {
    let (m, _, d) = dictionaries(kernel, ua, ub)?;
    expect_shape(kernel, "ub", ub, &[m, d])?;
    expect_shape(kernel, "assign", assign, &[m])?;
    Ok((m, d))
}

fn params(gpu: &Gpu, ma: usize, mb: usize, d: usize, scale: f32) -> wgpu::Buffer {
    chunk_params(gpu, ma, mb, d, scale, 0..ma)
}

fn chunk_params(gpu: &Gpu, ma: usize, mb: usize, d: usize, scale: f32, rows: std::ops::Range<usize>) -> wgpu::Buffer {
    gpu.uniform(&Params::of(ma, mb, d, scale, rows))
}

impl Params {
    /// The parameters of the chunk of rows `rows` of ua (`chunk` = its index).
    fn of(ma: usize, mb: usize, d: usize, scale: f32, rows: std::ops::Range<usize>) -> Params {
        Params {
            ma: u32_of(ma),
            mb: u32_of(mb),
            d: u32_of(d),
            scale,
            lo: u32_of(rows.start),
            hi: u32_of(rows.end),
            chunk: u32_of(rows.start / chunk_rows(d)),
            _pad: 0,
        }
    }
}

/// One dispatch of a tiled kernel per chunk of `chunk_rows(d)` rows of ua [ma, d], each over the mb
/// latents of b: `buffers` follow the chunk's uniform.
fn chunked(
    program: &Program,
    gpu: &Gpu,
    (ma, mb, d): (usize, usize, usize),
    buffers: &[&wgpu::Buffer],
) -> Vec<Dispatch> {
    let rows = chunk_rows(d);
    (0..ma.div_ceil(rows))
        .map(|c| {
            let uniform = chunk_params(gpu, ma, mb, d, 0.0, c * rows..((c + 1) * rows).min(ma));
            let bound: Vec<&wgpu::Buffer> = std::iter::once(&uniform).chain(buffers.iter().copied()).collect();
            program.bind(gpu, &bound, gpu.grid_1d(mb, WG))
        })
        .collect()
}

impl Kernels {
    /// sim[j] = max_i ua_i·ub_j with its argmax in assign (`Max`, through `partials`: S by the
    /// matmul and a column max, or one dispatch per chunk of rows of ua and a reduction), or ua_{assign[j]}·ub_j (`Match`: one dispatch; `partials` unused).
    #[allow(clippy::too_many_arguments)]
    pub fn similarity(
        &self,
        gpu: &Gpu,
        ua: &Tensor<f32>,
        ub: &Tensor<f32>,
        form: MmcsForm,
        partials: &MaxPartials,
        assign: &Tensor<u32>,
        sim: &Tensor<f32>,
    ) -> Result<Vec<Dispatch>> {
        let (m, d) = same_dictionaries("similarity", ua, ub, assign)?;
        expect_shape("similarity", "sim", sim, &[m])?;
        let uniform = params(gpu, m, m, d, 0.0);
        if form == MmcsForm::Match {
            let buffers = [&uniform, &ua.buffer, &ub.buffer, &assign.buffer, &sim.buffer];
            return Ok(vec![self.mfr_matched.bind(gpu, &buffers, gpu.grid_1d(m, WG))]);
        }
        let (val, arg) = match &partials.0 {
            MaxScratch::Matrix(s) => {
                expect_shape("similarity", "partials", s, &[m, m])?;
                let buffers = [&uniform, &s.buffer, &sim.buffer, &assign.buffer];
                return Ok(vec![
                    self.matmul(gpu, ua, Op::N, ub, Op::T, None, 1.0, s)?,
                    self.mfr_column_max.bind(gpu, &buffers, gpu.grid_1d(m, WG)),
                ]);
            }
            MaxScratch::Chunks { val, arg } => {
                expect_shape("similarity", "partials", val, &[m.div_ceil(chunk_rows(d)), m])?;
                (&val.buffer, &arg.buffer)
            }
        };
        let mut plan = chunked(&self.mfr_max_tiles, gpu, (m, m, d), &[&ua.buffer, &ub.buffer, val, arg]);
        // The reduction's `chunk` is the number of chunks (buffers may be padded past the partials).
        let chunks = gpu.uniform(&Params {
            chunk: u32_of(m.div_ceil(chunk_rows(d))),
            ..Params::of(m, m, d, 0.0, 0..m)
        });
        plan.push(self.mfr_max_reduce.bind(
            gpu,
            &[&chunks, val, arg, &sim.buffer, &assign.buffer],
            gpu.grid_1d(m, WG),
        ));
        Ok(plan)
    }

    /// s = ua · ubᵀ: ua [ma, d], ub [mb, d], s [ma, mb] row-major: the adapter's matmul
    /// variant (on lavapipe ~20× the chunked per-latent kernel's rate at m 3072, d 768).
    pub fn similarity_matrix(
        &self,
        gpu: &Gpu,
        ua: &Tensor<f32>,
        ub: &Tensor<f32>,
        s: &Tensor<f32>,
    ) -> Result<Vec<Dispatch>> {
        let (ma, mb, _) = dictionaries("similarity_matrix", ua, ub)?;
        expect_shape("similarity_matrix", "s", s, &[ma, mb])?;
        Ok(vec![self.matmul(gpu, ua, Op::N, ub, Op::T, None, 1.0, s)?])
    }

    /// Groups the latents j by assign[j] on the GPU (four dispatches; `scratch.cursor` is zero
    /// before and after).
    pub fn group_by_partner(
        &self,
        gpu: &Gpu,
        assign: &Tensor<u32>,
        scratch: &GroupScratch,
        groups: &Groups,
    ) -> Result<Vec<Dispatch>> {
        let m = assign.len();
        expect_shape("group_by_partner", "cursor", &scratch.cursor, &[m])?;
        expect_shape("group_by_partner", "offsets", &groups.offsets, &[m + 1])?;
        expect_shape("group_by_partner", "members", &groups.members, &[m])?;
        let uniform = params(gpu, m, m, 1, 0.0);
        let (assign, cursor, slots) = (&assign.buffer, &scratch.cursor.buffer, &scratch.slots.buffer);
        let (offsets, members) = (&groups.offsets.buffer, &groups.members.buffer);
        let grid = gpu.grid_1d(m, WG);
        Ok(vec![
            self.mfr_group_count.bind(gpu, &[&uniform, assign, cursor], grid),
            self.mfr_group_scan.bind(gpu, &[&uniform, cursor, offsets], [1, 1, 1]),
            self.mfr_group_fill.bind(gpu, &[&uniform, assign, cursor, slots], grid),
            self.mfr_group_sort
                .bind(gpu, &[&uniform, assign, offsets, slots, members, cursor], grid),
        ])
    }

    /// ga, gb += c · ∂(Σ_j ua_{assign[j]}·ub_j)/∂(ua, ub), c = scale · weight (`step` uniform);
    /// `groups` must hold the grouping of `assign`. Two dispatches.
    #[allow(clippy::too_many_arguments)]
    pub fn mfr_gradient(
        &self,
        gpu: &Gpu,
        step: &wgpu::Buffer,
        scale: f32,
        ua: &Tensor<f32>,
        ub: &Tensor<f32>,
        assign: &Tensor<u32>,
        groups: &Groups,
        ga: &Tensor<f32>,
        gb: &Tensor<f32>,
    ) -> Result<Vec<Dispatch>> {
        let (m, d) = same_dictionaries("mfr_gradient", ua, ub, assign)?;
        expect_shape("mfr_gradient", "ga", ga, &[m, d])?;
        expect_shape("mfr_gradient", "gb", gb, &[m, d])?;
        expect_shape("mfr_gradient", "offsets", &groups.offsets, &[m + 1])?;
        expect_shape("mfr_gradient", "members", &groups.members, &[m])?;
        let uniform = params(gpu, m, m, d, scale);
        let grid = gpu.grid_1d(m * d, WG);
        Ok(vec![
            self.mfr_grad_b
                .bind(gpu, &[&uniform, step, &ua.buffer, &assign.buffer, &gb.buffer], grid),
            self.mfr_grad_a.bind(
                gpu,
                &[
                    &uniform,
                    step,
                    &ub.buffer,
                    &groups.offsets.buffer,
                    &groups.members.buffer,
                    &ga.buffer,
                ],
                grid,
            ),
        ])
    }
}
