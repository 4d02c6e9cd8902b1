//! `shaders/sparse.wgsl` and `sparse_*.wgsl` (one file per binding layout): the
//! products of a TopK step that touch only each row's k active latents — decode by
//! gather, the code gradient at the active latents, and the weight gradients by a
//! deterministic latent-major scatter (through a CSC index of the active set). Choosing between these and the dense products
//! is `sae.rs`'s business, not this module's.

use super::contract::{layout_of, shader_params, EntryPoint};
use super::texture::{self, Role};
use super::{expect_shape, matrix_dims, u32_of, Kernels, WG};
use crate::error::{Error, Result};
use crate::gpu::{Bind, Dispatch, Gpu, Resource, Tensor};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    k: u32,
    cols: u32,
    m: u32,
    has_bias: u32,
    accumulate: u32,
    transposed: u32,
    /// `decode` and `scatter`: output columns per invocation (`SparseWidth`).
    width: u32,
    /// The CSC build: the SAEs stacked in the code (1 for one SAE) and the rows of each.
    instances: u32,
    instance_rows: u32,
    /// `scatter` of a stacked index: y holds one instance's rows, shared by all.
    shared_y: u32,
    _pad: u32,
}

shader_params!(Params as "Params" { rows, k, cols, m, has_bias, accumulate, transposed, width, instances, instance_rows, shared_y, _pad });

/// Output columns per invocation of the sparse decode and scatter: 32 shares each index
/// load among more products (about 15 % faster scatters on lavapipe at the synthetic
/// shape), 16 keeps twice the invocations, which small shapes need to fill the adapter's
/// threads (the page's default run on SwiftShader: 61–70 steps/s at 16, 50 at 32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SparseWidth {
    Sixteen = 16,
    ThirtyTwo = 32,
}

impl SparseWidth {
    /// The width for `items` output rows (decode: rows; scatter: latents) of `cols`
    /// columns: 32 where that still makes at least `MIN_INVOCATIONS` invocations.
    pub fn for_shape(items: usize, cols: usize) -> SparseWidth {
        const MIN_INVOCATIONS: usize = 4096;
        if items * cols.div_ceil(32) >= MIN_INVOCATIONS {
            SparseWidth::ThirtyTwo
        } else {
            SparseWidth::Sixteen
        }
    }
}
pub(super) const DECODE: EntryPoint = EntryPoint::new("sparse", "decode", &[layout_of::<Params>], 6);
pub(super) const CODE_GRADIENT: EntryPoint =
    EntryPoint::new("sparse_code_gradient", "code_gradient", &[layout_of::<Params>], 6);
pub(super) const CODE_GRADIENT_TEXTURE: EntryPoint = EntryPoint::new(
    "sparse_code_gradient_texture",
    "code_gradient",
    &[layout_of::<Params>],
    6,
);
pub(super) const COUNT: EntryPoint = EntryPoint::new("sparse_csc_count", "count", &[layout_of::<Params>], 3);
pub(super) const OFFSETS: EntryPoint = EntryPoint::new("sparse_csc_offsets", "offsets_scan", &[layout_of::<Params>], 3);
pub(super) const FILL: EntryPoint = EntryPoint::new("sparse_csc_fill", "fill", &[layout_of::<Params>], 6);
pub(super) const SCATTER: EntryPoint = EntryPoint::new("sparse_scatter", "scatter", &[layout_of::<Params>], 8);

pub(super) const DECODE_TEXTURE: EntryPoint = EntryPoint::new("sparse_texture", "decode", &[layout_of::<Params>], 6);

pub(super) const SCATTER_TEXTURE: EntryPoint =
    EntryPoint::new("sparse_scatter_texture", "scatter", &[layout_of::<Params>], 8);

/// A k-sparse code in TopK's sparse form.
#[derive(Clone, Copy)]
pub struct SparseCode<'a> {
    /// idx [rows, k]: the active latents of each row.
    pub idx: &'a Tensor<u32>,
    /// val [rows, k]: their values (0 where a ReLU clipped them).
    pub val: &'a Tensor<f32>,
}

impl SparseCode<'_> {
    fn dims(&self, kernel: &str) -> Result<(usize, usize)> {
        let (rows, k) = matrix_dims(self.idx);
        expect_shape(kernel, "val", self.val, &[rows, k])?;
        Ok((rows, k))
    }
}

/// The latent-major (CSC) index of a sparse code's active set, rebuilt by the
/// dispatches of `Kernels::csc` every step: for latent j, `entries[offsets[j] ..
/// offsets[j + 1]]` are the entries e = r·k + t with idx[r, t] = j, in row order.
pub struct Csc {
    /// counts [blocks, m]: per block of `CSC_BLOCK` rows, its entries of each latent, then
    /// where they start among the latent's, then (during fill) a cursor.
    counts: Tensor<u32>,
    /// offsets [m + 1]: where each latent's entries start.
    pub(super) offsets: Tensor<u32>,
    /// entries [rows · k], and the row r of each.
    pub(super) entries: Tensor<u32>,
    entry_rows: Tensor<u32>,
    pub(super) rows: usize,
    pub(super) k: usize,
    pub(super) m: usize,
    /// SAEs stacked in the code (`Csc::stacked`); rows and m are the stack's.
    instances: usize,
}

/// Rows per block of the CSC build (must match `BLOCK` in `sparse_csc_*.wgsl`): the build costs
/// rows·k + (rows / CSC_BLOCK)·m, and each block is one invocation's serial work.
const CSC_BLOCK: usize = 64;

impl Csc {
    /// Buffers for the active sets of `rows` rows with `k` of `m` latents each.
    pub fn new(gpu: &Gpu, rows: usize, k: usize, m: usize) -> Result<Csc> {
        Self::stacked(gpu, 1, rows, k, m)
    }

    /// The index of an ensemble's stacked code: `instances` SAEs of `rows` rows with `k` of
    /// `m` latents each, the code [instances·rows, k] naming latents of the stacked
    /// dictionary [instances·m, d] (`TopK::instances`). Each SAE's blocks and latents are its
    /// own (the build costs what the SAEs' own indices would), and the index is theirs side
    /// by side: latent s·m + j's entries are instance s's entries of j.
    pub fn stacked(gpu: &Gpu, instances: usize, rows: usize, k: usize, m: usize) -> Result<Csc> {
        if instances == 0 {
            return Err(Error::Shape("csc: a stack of no SAEs".into()));
        }
        let blocks = instances * rows.div_ceil(CSC_BLOCK);
        Ok(Csc {
            counts: Tensor::zeros(gpu, &[blocks, m], "csc block counts")?,
            offsets: Tensor::zeros(gpu, &[instances * m + 1], "csc offsets")?,
            entries: Tensor::zeros(gpu, &[instances * rows * k], "csc entries")?,
            entry_rows: Tensor::zeros(gpu, &[instances * rows * k], "csc entry rows")?,
            rows: instances * rows,
            k,
            m: instances * m,
            instances,
        })
    }

    pub fn offsets(&self) -> &Tensor<u32> {
        &self.offsets
    }

    pub fn entries(&self) -> &Tensor<u32> {
        &self.entries
    }

    /// The SAEs stacked in this index (1 for one SAE's).
    pub fn instances(&self) -> usize {
        self.instances
    }

    fn params(&self, cols: usize, accumulate: bool, transposed: bool) -> Params {
        Params {
            rows: u32_of(self.rows),
            k: u32_of(self.k),
            cols: u32_of(cols),
            m: u32_of(self.m),
            has_bias: 0,
            accumulate: accumulate as u32,
            transposed: transposed as u32,
            width: 0,
            instances: u32_of(self.instances),
            instance_rows: u32_of(self.rows / self.instances),
            shared_y: 0,
            _pad: 0,
        }
    }
}

impl Kernels {
    /// out [rows, d] = Σ_t val[r, t] · dict[idx[r, t], :] (+ bias [d]), dict [m, d].
    pub fn sparse_decode(
        &self,
        gpu: &Gpu,
        code: SparseCode<'_>,
        dict: &Tensor<f32>,
        bias: Option<&Tensor<f32>>,
        out: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, k) = code.dims("sparse_decode")?;
        let (m, d) = matrix_dims(dict);
        expect_shape("sparse_decode", "out", out, &[rows, d])?;
        if let Some(b) = bias {
            expect_shape("sparse_decode", "bias", b, &[d])?;
        }
        let width = self.sparse_width(rows, d);
        let uniform = gpu.uniform(&Params {
            rows: u32_of(rows),
            k: u32_of(k),
            cols: u32_of(d),
            m: u32_of(m),
            has_bias: bias.is_some() as u32,
            accumulate: 0,
            transposed: 0,
            width: width as u32,
            instances: 1,
            instance_rows: 0,
            shared_y: 0,
            _pad: 0,
        });
        let bias = bias.unwrap_or(&self.unused);
        // One invocation per `width` columns of a row.
        let grid = gpu.grid_1d(rows * d.div_ceil(width as usize), WG);
        if self.read_textures && texture::fits(gpu, m, d, 1) {
            let (upload, view) = self.textures.upload(gpu, Role::DecodeDict, dict, m, d, 1);
            let resources = [
                Resource::Buffer(&uniform),
                Resource::Buffer(code.idx),
                Resource::Buffer(code.val),
                Resource::Texture(&view),
                Resource::Buffer(bias),
                Resource::Buffer(out),
            ];
            return Ok(self
                .sparse_decode_texture
                .bind_resources(gpu, &resources, vec![upload], grid));
        }
        let buffers: &[&dyn Bind] = &[&uniform, &code.idx, &code.val, &dict, &bias, &out];
        Ok(self.sparse_decode.bind(gpu, buffers, grid))
    }

    /// dval [rows, k] = g[r, :] · dict[idx[r, t], :] where val[r, t] ≠ 0, else 0:
    /// the pre-activation gradient of each active latent, for g [rows, d] = dLoss/dx̂.
    pub fn sparse_code_gradient(
        &self,
        gpu: &Gpu,
        code: SparseCode<'_>,
        dict: &Tensor<f32>,
        g: &Tensor<f32>,
        dval: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, k) = code.dims("sparse_code_gradient")?;
        let (m, d) = matrix_dims(dict);
        expect_shape("sparse_code_gradient", "g", g, &[rows, d])?;
        expect_shape("sparse_code_gradient", "dval", dval, &[rows, k])?;
        let uniform = gpu.uniform(&Params {
            rows: u32_of(rows),
            k: u32_of(k),
            cols: u32_of(d),
            m: u32_of(m),
            has_bias: 0,
            accumulate: 0,
            transposed: 0,
            width: 0,
            instances: 1,
            instance_rows: 0,
            shared_y: 0,
            _pad: 0,
        });
        // One invocation per 4 active latents of a row.
        let grid = gpu.grid_1d(rows * k.div_ceil(4), WG);
        if self.read_textures && texture::fits(gpu, m, d, 1) && texture::fits(gpu, rows, d, 1) {
            let (upload_dict, view_dict) = self.textures.upload(gpu, Role::CodeGradientDict, dict, m, d, 1);
            let (upload_g, view_g) = self.textures.upload(gpu, Role::CodeGradientG, g, rows, d, 1);
            let resources = [
                Resource::Buffer(&uniform),
                Resource::Buffer(code.idx),
                Resource::Buffer(code.val),
                Resource::Texture(&view_dict),
                Resource::Texture(&view_g),
                Resource::Buffer(dval),
            ];
            return Ok(self.sparse_code_gradient_texture.bind_resources(
                gpu,
                &resources,
                vec![upload_dict, upload_g],
                grid,
            ));
        }
        let buffers: &[&dyn Bind] = &[&uniform, &code.idx, &code.val, &dict, &g, &dval];
        Ok(self.sparse_code_gradient.bind(gpu, buffers, grid))
    }

    /// The three dispatches (count, offsets, fill) that rebuild `csc` from idx [rows, k].
    pub fn csc(&self, gpu: &Gpu, idx: &Tensor<u32>, csc: &Csc) -> Result<Vec<Dispatch>> {
        expect_shape("csc", "idx", idx, &[csc.rows, csc.k])?;
        let uniform = gpu.uniform(&csc.params(0, false, false));
        let per = (csc.rows / csc.instances).div_ceil(CSC_BLOCK);
        let blocks = gpu.grid_1d(csc.instances * per, WG);
        Ok(vec![
            self.csc_count.bind(gpu, &[&uniform, &idx, &csc.counts], blocks),
            self.csc_offsets.bind(
                gpu,
                &[&uniform, &csc.counts, &csc.offsets],
                [u32_of(csc.instances), 1, 1],
            ),
            self.csc_fill.bind(
                gpu,
                &[&uniform, &idx, &csc.counts, &csc.offsets, &csc.entries, &csc.entry_rows],
                blocks,
            ),
        ])
    }

    /// Per latent j, out[j, :] (+)= Σ_{r, t: idx[r, t] = j} s[r, t] · y[r, :], summed in
    /// row order through `csc`: s [rows, k], y [rows, cols] (for a stacked index, or one
    /// instance's rows shared by all: an ensemble's batch); out [m, cols], or
    /// [cols, m] when `transposed`. With y = x and s = the code gradient this is a
    /// weight gradient (daᵀ x); with y = dL/dx̂ and s = the code, a decoder gradient.
    /// With `sums` [m] also sums[j] (+)= Σ of j's entries of s: the dense code's column sums
    /// bit for bit (a row where j is inactive adds exactly 0), the bias gradient.
    #[allow(clippy::too_many_arguments)]
    pub fn sparse_scatter(
        &self,
        gpu: &Gpu,
        csc: &Csc,
        s: &Tensor<f32>,
        y: &Tensor<f32>,
        transposed: bool,
        accumulate: bool,
        out: &Tensor<f32>,
        sums: Option<&Tensor<f32>>,
    ) -> Result<Dispatch> {
        expect_shape("sparse_scatter", "s", s, &[csc.rows, csc.k])?;
        let (rows, cols) = matrix_dims(y);
        // A stacked index's instances may share one y of an instance's rows.
        let shared_y = csc.instances > 1 && rows * csc.instances == csc.rows;
        if rows != csc.rows && !shared_y {
            return Err(Error::Shape(format!(
                "sparse_scatter: `y` has {rows} rows, the sparse code {}",
                csc.rows
            )));
        }
        let out_shape = if transposed { [cols, csc.m] } else { [csc.m, cols] };
        expect_shape("sparse_scatter", "out", out, &out_shape)?;
        if let Some(sums) = sums {
            expect_shape("sparse_scatter", "sums", sums, &[csc.m])?;
        }
        let width = self.sparse_width(csc.m, cols);
        let uniform = gpu.uniform(&Params {
            width: width as u32,
            has_bias: sums.is_some() as u32,
            shared_y: shared_y as u32,
            ..csc.params(cols, accumulate, transposed)
        });
        // One invocation per `width` columns of a latent's output row.
        let grid = gpu.grid_1d(csc.m * cols.div_ceil(width as usize), WG);
        let sums = sums.unwrap_or(&self.unused);
        if self.read_textures && texture::fits(gpu, rows, cols, 1) {
            let (upload, view) = self.textures.upload(gpu, Role::ScatterY, y, rows, cols, 1);
            let resources = [
                Resource::Buffer(&uniform),
                Resource::Buffer(&csc.offsets),
                Resource::Buffer(&csc.entries),
                Resource::Buffer(&csc.entry_rows),
                Resource::Buffer(s),
                Resource::Buffer(out),
                Resource::Texture(&view),
                Resource::Buffer(sums),
            ];
            return Ok(self
                .sparse_scatter_texture
                .bind_resources(gpu, &resources, vec![upload], grid));
        }
        let buffers: &[&dyn Bind] = &[
            &uniform,
            &csc.offsets,
            &csc.entries,
            &csc.entry_rows,
            &s,
            &out,
            &y,
            sums,
        ];
        Ok(self.sparse_scatter.bind(gpu, buffers, grid))
    }

    /// The decode's and scatter's columns per invocation: `KernelOptions::sparse_width`
    /// where forced, else `SparseWidth::for_shape`.
    fn sparse_width(&self, items: usize, cols: usize) -> SparseWidth {
        self.sparse_width.unwrap_or_else(|| SparseWidth::for_shape(items, cols))
    }
}
