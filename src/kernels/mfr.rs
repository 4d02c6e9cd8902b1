//! `shaders/mfr_*.wgsl`: pairwise decoder similarity (MMCS, in both forms), the full
//! similarity matrix, the MFR gradient and the grouping of latents it needs.
//! Owns the buffer layouts of these kernels; not the pairs, the schedule or the
//! matching (`crate::mfr`).

use super::contract::{layout_of, shader_params, EntryPoint, Kernel};
use super::{expect_shape, matrix_dims, u32_of, Kernels, Op, WG};
use crate::error::{Error, Result};
use crate::gpu::{Bind, Dispatch, Gpu, Tensor};
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
    /// The gradient kernels: 1 overwrites the gradient, 0 adds to it.
    fresh: u32,
}

shader_params!(Params as "Params" { ma, mb, d, scale, lo, hi, chunk, fresh });

/// The parameters of every pair of a stacked ensemble at once (`mfr_*_pairs.wgsl`): n SAEs of
/// m latents, dictionaries [n·m, d], the gradient's factor.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AllPairs {
    n: u32,
    m: u32,
    d: u32,
    scale: f32,
}

shader_params!(AllPairs as "Pairs" { n, m, d, scale });

/// Where `mfr_gradient` puts a pair's gradients: ga [m, d] and gb [m, d], each overwritten (its
/// SAE's first pair of the step: no pass zeroes it first) or added to.
pub struct PairGradients<'a> {
    pub a: &'a Tensor<f32>,
    pub b: &'a Tensor<f32>,
    pub overwrite_a: bool,
    pub overwrite_b: bool,
}

/// The per-step uniform the MFR gradient reads (written by `crate::mfr`): weight = λ·w(t).
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MfrStep {
    weight: f32,
    _pad: [f32; 3],
}

shader_params!(MfrStep as "Step" { weight, _pad });

impl MfrStep {
    /// A buffer for the per-step uniform (zero until `write`).
    pub fn buffer(gpu: &Gpu) -> wgpu::Buffer {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mfr step"),
            size: MFR_STEP_UNIFORM_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Queues `weight` into `buffer` (from `MfrStep::buffer`) for the next submit.
    pub fn write(gpu: &Gpu, buffer: &wgpu::Buffer, weight: f32) {
        let step = MfrStep { weight, _pad: [0.0; 3] };
        gpu.queue.write_buffer(buffer, 0, bytemuck::bytes_of(&step));
    }
}

/// The size of the per-step uniform the MFR gradient reads.
pub const MFR_STEP_UNIFORM_BYTES: u64 = std::mem::size_of::<MfrStep>() as u64;

/// An entry point of a `shaders/mfr_*.wgsl` file with `Params` at binding 0.
const fn entry(shader: &'static str, entry: &'static str, bindings: usize) -> EntryPoint {
    EntryPoint::new(shader, entry, &[layout_of::<Params>], bindings)
}

/// The gradient's entry points: `Params`, then the per-step `MfrStep`.
const fn gradient(shader: &'static str, entry: &'static str, bindings: usize) -> EntryPoint {
    EntryPoint::new(shader, entry, &[layout_of::<Params>, layout_of::<MfrStep>], bindings)
}

pub(super) const MAX_TILES: EntryPoint = entry("mfr_max_tiles", "max_tiles", 5);
pub(super) const MAX_REDUCE: EntryPoint = entry("mfr_max_reduce", "max_reduce", 5);
pub(super) const COLUMN_MAX: EntryPoint = entry("mfr_column_max", "column_max", 4);
pub(super) const MATCHED: EntryPoint = entry("mfr_matched", "matched", 5);
pub(super) const GRAD_B: EntryPoint = gradient("mfr_grad_b", "grad_b", 5);
pub(super) const GRAD_A: EntryPoint = gradient("mfr_grad_a", "grad_a", 6);
pub(super) const MATCHED_PAIRS: EntryPoint =
    EntryPoint::new("mfr_matched_pairs", "matched_pairs", &[layout_of::<AllPairs>], 4);
pub(super) const GRAD_PAIRS: EntryPoint = EntryPoint::new(
    "mfr_grad_pairs",
    "grad_pairs",
    &[layout_of::<AllPairs>, layout_of::<MfrStep>],
    6,
);
pub(super) const GROUP_COUNT: EntryPoint = entry("mfr_groups", "group_count", 3);
pub(super) const GROUP_FILL: EntryPoint = entry("mfr_groups", "group_fill", 4);
pub(super) const GROUP_SORT: EntryPoint = entry("mfr_groups", "group_sort", 6);
pub(super) const GROUP_SCAN: EntryPoint = entry("mfr_group_scan", "group_scan", 3);

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
            fresh: 0,
        }
    }
}

/// One dispatch of a tiled kernel per chunk of `chunk_rows(d)` rows of ua [ma, d], each over the mb
/// latents of b: `buffers` follow the chunk's uniform.
fn chunked(kernel: &Kernel, gpu: &Gpu, (ma, mb, d): (usize, usize, usize), buffers: &[&dyn Bind]) -> Vec<Dispatch> {
    let rows = chunk_rows(d);
    (0..ma.div_ceil(rows))
        .map(|c| {
            let params = Params::of(ma, mb, d, 0.0, c * rows..((c + 1) * rows).min(ma));
            kernel.dispatch(gpu, &params, buffers, gpu.grid_1d(mb, WG))
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
        let params = Params::of(m, m, d, 0.0, 0..m);
        let grid = gpu.grid_1d(m, WG);
        if form == MmcsForm::Match {
            let buffers: &[&dyn Bind] = &[&ua, &ub, &assign, &sim];
            return Ok(vec![self.mfr_matched.dispatch(gpu, &params, buffers, grid)]);
        }
        let (val, arg) = match &partials.0 {
            MaxScratch::Matrix(s) => {
                expect_shape("similarity", "partials", s, &[m, m])?;
                let buffers: &[&dyn Bind] = &[&s, &sim, &assign];
                return Ok(vec![
                    self.matmul(gpu, ua, Op::N, ub, Op::T, None, 1.0, s)?,
                    self.mfr_column_max.dispatch(gpu, &params, buffers, grid),
                ]);
            }
            MaxScratch::Chunks { val, arg } => {
                expect_shape("similarity", "partials", val, &[m.div_ceil(chunk_rows(d)), m])?;
                (val, arg)
            }
        };
        let mut plan = chunked(&self.mfr_max_tiles, gpu, (m, m, d), &[&ua, &ub, val, arg]);
        // The reduction's `chunk` is the number of chunks (buffers may be padded past the partials).
        let chunks = Params {
            chunk: u32_of(m.div_ceil(chunk_rows(d))),
            ..params
        };
        let buffers: &[&dyn Bind] = &[val, arg, &sim, &assign];
        plan.push(self.mfr_max_reduce.dispatch(gpu, &chunks, buffers, grid));
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
        let p = &Params::of(m, m, 1, 0.0, 0..m);
        let (assign, cursor, slots) = (&assign, &scratch.cursor, &scratch.slots);
        let (offsets, members) = (&groups.offsets, &groups.members);
        let grid = gpu.grid_1d(m, WG);
        Ok(vec![
            self.mfr_group_count.dispatch(gpu, p, &[assign, cursor], grid),
            self.mfr_group_scan.dispatch(gpu, p, &[cursor, offsets], [1, 1, 1]),
            self.mfr_group_fill.dispatch(gpu, p, &[assign, cursor, slots], grid),
            self.mfr_group_sort
                .dispatch(gpu, p, &[assign, cursor, slots, offsets, members], grid),
        ])
    }

    /// ga, gb (+)= c · ∂(Σ_j ua_{assign[j]}·ub_j)/∂(ua, ub), c = scale · weight (`step`
    /// uniform), into `into`; `groups` must hold the grouping of `assign`. Two dispatches.
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
        into: PairGradients<'_>,
    ) -> Result<Vec<Dispatch>> {
        let (m, d) = same_dictionaries("mfr_gradient", ua, ub, assign)?;
        expect_shape("mfr_gradient", "ga", into.a, &[m, d])?;
        expect_shape("mfr_gradient", "gb", into.b, &[m, d])?;
        expect_shape("mfr_gradient", "offsets", &groups.offsets, &[m + 1])?;
        expect_shape("mfr_gradient", "members", &groups.members, &[m])?;
        let params = |fresh: bool| Params {
            fresh: fresh as u32,
            ..Params::of(m, m, d, scale, 0..m)
        };
        let grid = gpu.grid_1d(m * d, WG);
        let (offsets, members) = (&groups.offsets, &groups.members);
        let (pa, pb) = (params(into.overwrite_a), params(into.overwrite_b));
        Ok(vec![
            self.mfr_grad_b.dispatch(gpu, &pb, &[step, &ua, &assign, &into.b], grid),
            self.mfr_grad_a
                .dispatch(gpu, &pa, &[step, &ub, offsets, members, &into.a], grid),
        ])
    }

    /// The `Match` similarity of every pair of a stacked ensemble in one dispatch: `dicts` the
    /// n SAEs' dictionaries [n·m, d], `assign` [P·m] and `sim` [P·m] pair after pair (P =
    /// n(n−1)/2, `crate::mfr::pairs` order): sim[p·m + j] = U_a[assign[p·m + j]]·U_b[j], the
    /// bits `similarity` gives pair p alone.
    pub fn matched_pairs(
        &self,
        gpu: &Gpu,
        n: usize,
        dicts: &Tensor<f32>,
        assign: &Tensor<u32>,
        sim: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (m, d) = stacked_dictionaries("matched_pairs", n, dicts)?;
        let pairs = n * (n - 1) / 2;
        expect_shape("matched_pairs", "assign", assign, &[pairs * m])?;
        expect_shape("matched_pairs", "sim", sim, &[pairs * m])?;
        let params = AllPairs::of(n, m, d, 0.0);
        let buffers: &[&dyn Bind] = &[&dicts, &assign, &sim];
        Ok(self
            .mfr_matched_pairs
            .dispatch(gpu, &params, buffers, gpu.grid_1d(pairs * m, WG)))
    }

    /// The `Match` gradient of every pair of a stacked ensemble in one dispatch, written into
    /// `grads` [n·m, d]: per SAE, c · ∂(Σ_pairs Σ_j U_a[assign[p·m + j]]·U_b[j]) over its pairs,
    /// c = scale · weight (`step` uniform); `inverse` [P·m] holds each pair's inverse
    /// permutation. The bits `mfr_gradient` gives running pair by pair (each SAE's first pair
    /// overwriting, the others adding).
    #[allow(clippy::too_many_arguments)]
    pub fn mfr_gradient_pairs(
        &self,
        gpu: &Gpu,
        step: &wgpu::Buffer,
        scale: f32,
        n: usize,
        dicts: &Tensor<f32>,
        assign: &Tensor<u32>,
        inverse: &Tensor<u32>,
        grads: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (m, d) = stacked_dictionaries("mfr_gradient_pairs", n, dicts)?;
        let pairs = n * (n - 1) / 2;
        expect_shape("mfr_gradient_pairs", "assign", assign, &[pairs * m])?;
        expect_shape("mfr_gradient_pairs", "inverse", inverse, &[pairs * m])?;
        expect_shape("mfr_gradient_pairs", "grads", grads, &[n * m, d])?;
        let params = AllPairs::of(n, m, d, scale);
        let buffers: &[&dyn Bind] = &[step, &dicts, &assign, &inverse, &grads];
        let grid = gpu.grid_1d((n * m * d).div_ceil(4), WG);
        Ok(self.mfr_grad_pairs.dispatch(gpu, &params, buffers, grid))
    }
}

impl AllPairs {
    fn of(n: usize, m: usize, d: usize, scale: f32) -> AllPairs {
        AllPairs {
            n: u32_of(n),
            m: u32_of(m),
            d: u32_of(d),
            scale,
        }
    }
}

/// (m, d) of n ≥ 2 dictionaries stacked [n·m, d].
fn stacked_dictionaries(kernel: &str, n: usize, dicts: &Tensor<f32>) -> Result<(usize, usize)> {
    let (rows, d) = matrix_dims(dicts);
    if n < 2 || d == 0 || rows == 0 || !rows.is_multiple_of(n) {
        return Err(Error::Shape(format!(
            "{kernel}: {n} dictionaries stacked in a tensor of shape {:?} (need n ≥ 2 of m rows each)",
            dicts.shape()
        )));
    }
    Ok((rows / n, d))
}
