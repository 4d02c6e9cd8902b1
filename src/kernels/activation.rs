//! `shaders/activation.wgsl` (TopK with dense and sparse outputs, ReLU; TopK's texture
//! flavour: `topk_candidates_texture.wgsl` then `topk_select_texture.wgsl`),
//! `activation_backward.wgsl` (the shared backward pass), and AuxK's dead-latent mask
//! (`activation_mask_dead.wgsl`; its firing clock is `metrics_latents.wgsl`'s).

use super::contract::{layout_of, shader_params, EntryPoint};
use super::texture::{self, Role};
use super::{expect_shape, u32_of, Kernels, SparseCode, WG};
use crate::error::{Error, Result};
use crate::gpu::{Bind, Dispatch, Gpu, Resource, Tensor};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    rows: u32,
    m: u32,
    k: u32,
    relu: u32,
    /// topk: write the sparse form.
    sparse: u32,
    /// topk: write the dense code.
    dense: u32,
    /// topk: rows per instance of a stacked input (0: one instance); idx then names latents
    /// of the stacked dictionary.
    instance_rows: u32,
    /// topk's texture flavour: rows per texture layer.
    layer_rows: u32,
}

shader_params!(Params as "Params" { rows, m, k, relu, sparse, dense, instance_rows, layer_rows });
pub(super) const TOPK: EntryPoint = EntryPoint::new("activation", "topk", &[layout_of::<Params>], 7);
pub(super) const TOPK_CANDIDATES_TEXTURE: EntryPoint =
    EntryPoint::new("topk_candidates_texture", "candidates_pass", &[layout_of::<Params>], 6);
pub(super) const TOPK_SELECT_TEXTURE: EntryPoint =
    EntryPoint::new("topk_select_texture", "select_pass", &[layout_of::<Params>], 7);
pub(super) const RELU: EntryPoint = EntryPoint::new("activation", "relu", &[layout_of::<Params>], 3);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Back {
    n: u32,
    l1: f32,
    _pad: [u32; 2],
}

shader_params!(Back as "Back" { n, l1, _pad });
pub(super) const BACKWARD: EntryPoint = EntryPoint::new("activation_backward", "backward", &[layout_of::<Back>], 4);

/// Outputs of TopK: the dense code and, when asked for (the sparse step path), per row
/// the k kept latents in (value descending, index ascending) order.
pub struct TopK<'a> {
    /// z [rows, m]: kept values, zeros elsewhere; None where only the sparse form is read.
    pub z: Option<&'a Tensor<f32>>,
    /// idx [rows, k] (latent indices) and val [rows, k] (their values after the optional
    /// ReLU), or None where only the dense code is read.
    pub sparse: Option<SparseCode<'a>>,
    /// An ensemble's N instances stacked along the rows (`a` [N·rows, m]): idx then holds
    /// j + s·m for instance s's latent j, a latent of the stacked dictionary [N·m, d]
    /// (sparse form only). 1 for one SAE.
    pub instances: usize,
}

impl Kernels {
    /// TopK over each row of `a` [rows, m]; `relu` clamps kept values at 0. One dispatch, or
    /// two where the kernels read textures and m is a multiple of 64 (the candidates, then
    /// the selection reading them from a texture).
    pub fn topk(&self, gpu: &Gpu, a: &Tensor<f32>, k: usize, relu: bool, out: TopK<'_>) -> Result<Vec<Dispatch>> {
        let (rows, m) = super::matrix_dims(a);
        if k == 0 || k > m {
            return Err(Error::Shape(format!("topk: k = {k} must be between 1 and m = {m}")));
        }
        if out.instances == 0 || !rows.is_multiple_of(out.instances) || (out.instances > 1 && out.z.is_some()) {
            return Err(Error::Shape(format!(
                "topk: {rows} rows do not split into {} instances of the sparse form",
                out.instances
            )));
        }
        let z = match (out.z, &out.sparse) {
            (Some(z), _) => {
                expect_shape("topk", "z", z, &[rows, m])?;
                z
            }
            (None, Some(_)) => &self.unused,
            (None, None) => {
                return Err(Error::Shape(
                    "topk: neither the dense code nor the sparse form is asked for".into(),
                ))
            }
        };
        // Where the sparse form is not wanted, one-element placeholders the shader never writes.
        let placeholders;
        let (idx, val) = match &out.sparse {
            Some(s) => {
                expect_shape("topk", "idx", s.idx, &[rows, k])?;
                expect_shape("topk", "val", s.val, &[rows, k])?;
                (s.idx, s.val)
            }
            None => {
                placeholders = (
                    Tensor::<u32>::zeros(gpu, &[1], "topk idx placeholder")?,
                    Tensor::<f32>::zeros(gpu, &[1], "topk val placeholder")?,
                );
                (&placeholders.0, &placeholders.1)
            }
        };
        let layers = texture::layered(gpu, rows, m).filter(|_| self.read_textures);
        let uniform = gpu.uniform(&Params {
            rows: u32_of(rows),
            m: u32_of(m),
            k: u32_of(k),
            relu: relu as u32,
            sparse: out.sparse.is_some() as u32,
            dense: out.z.is_some() as u32,
            instance_rows: match out.instances {
                1 => 0,
                n => u32_of(rows / n),
            },
            layer_rows: layers.map_or(0, |(per_layer, _)| u32_of(per_layer)),
        });
        // Scratch [rows, m4], m4 = m rounded up to a multiple of 4 (each row's candidates
        // start on a vec4): each row's candidate values and indices (the bind groups keep
        // them alive).
        let m4 = m.div_ceil(4) * 4;
        let cand_v = Tensor::<f32>::zeros(gpu, &[rows, m4], "topk candidate values")?;
        let cand_j = Tensor::<u32>::zeros(gpu, &[rows, m4], "topk candidate indices")?;
        let grid = gpu.grid_1d(rows, WG);
        let Some((per_layer, layers)) = layers else {
            return Ok(vec![self.topk.bind(
                gpu,
                &[&uniform, &a, &z, &idx, &val, &cand_v, &cand_j],
                grid,
            )]);
        };
        // m is a multiple of 64 here, so m4 = m: cand_v has a's layout.
        let cand_n = Tensor::<u32>::zeros(gpu, &[rows], "topk candidate counts")?;
        let (upload_a, view_a) = self.textures.upload(gpu, Role::TopKA, a, per_layer, m, layers);
        let candidates = self.topk_candidates_texture.bind_resources(
            gpu,
            &[
                Resource::Buffer(&uniform),
                Resource::Texture(&view_a),
                Resource::Buffer(z),
                Resource::Buffer(&cand_v),
                Resource::Buffer(&cand_j),
                Resource::Buffer(&cand_n),
            ],
            vec![upload_a],
            grid,
        );
        let (upload_c, view_c) = self
            .textures
            .upload(gpu, Role::TopKCandidates, &cand_v, per_layer, m, layers);
        let select = self.topk_select_texture.bind_resources(
            gpu,
            &[
                Resource::Buffer(&uniform),
                Resource::Texture(&view_c),
                Resource::Buffer(&cand_j),
                Resource::Buffer(&cand_n),
                Resource::Buffer(z),
                Resource::Buffer(idx),
                Resource::Buffer(val),
            ],
            vec![upload_c],
            grid,
        );
        Ok(vec![candidates, select])
    }

    /// z = max(a, 0), elementwise.
    pub fn relu(&self, gpu: &Gpu, a: &Tensor<f32>, z: &Tensor<f32>) -> Result<Dispatch> {
        let (rows, m) = super::matrix_dims(a);
        expect_shape("relu", "z", z, &[rows, m])?;
        let uniform = gpu.uniform(&Params {
            rows: u32_of(rows),
            m: u32_of(m),
            k: 0,
            relu: 1,
            sparse: 0,
            dense: 1,
            instance_rows: 0,
            layer_rows: 0,
        });
        Ok(self.relu.bind(gpu, &[&uniform, &a, &z], gpu.grid_1d(rows * m, WG)))
    }

    /// da = dz + l1 · sign(z) where z ≠ 0, else 0 (TopK, ReLU and ReLU + L1).
    pub fn act_backward(
        &self,
        gpu: &Gpu,
        z: &Tensor<f32>,
        dz: &Tensor<f32>,
        l1: f32,
        da: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, m) = super::matrix_dims(z);
        expect_shape("act_backward", "dz", dz, &[rows, m])?;
        expect_shape("act_backward", "da", da, &[rows, m])?;
        let uniform = gpu.uniform(&Back {
            n: u32_of(rows * m),
            l1,
            _pad: [0; 2],
        });
        Ok(self
            .act_backward
            .bind(gpu, &[&uniform, &z, &dz, &da], gpu.grid_1d(rows * m, WG)))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Mask {
    rows: u32,
    m: u32,
    threshold: f32,
    /// Rows of one SAE (an ensemble's SAEs stacked: rows / instances).
    per: u32,
}

shader_params!(Mask as "Mask" { rows, m, threshold, per });
pub(super) const MASK_DEAD: EntryPoint = EntryPoint::new("activation_mask_dead", "mask_dead", &[layout_of::<Mask>], 4);

impl Kernels {
    /// masked [rows, m] = a where since[j] ≥ threshold (dead latents), else a very
    /// negative number that a TopK with ReLU never keeps. Stacked SAEs: `since` [N·m] holds N
    /// SAEs' clocks and a's rows are N SAEs' rows in turn (rows / N each).
    pub fn mask_dead(
        &self,
        gpu: &Gpu,
        a: &Tensor<f32>,
        since: &Tensor<f32>,
        threshold: f32,
        masked: &Tensor<f32>,
    ) -> Result<Dispatch> {
        let (rows, m) = super::matrix_dims(a);
        let instances = since.len() / m.max(1);
        if m == 0 || instances == 0 || since.len() != instances * m || !rows.is_multiple_of(instances) {
            return Err(crate::error::Error::Shape(format!(
                "mask_dead: clocks of shape {:?} for pre-activations of shape {:?} (need N·m clocks for N SAEs' rows)",
                since.shape(),
                a.shape()
            )));
        }
        expect_shape("mask_dead", "masked", masked, &[rows, m])?;
        let uniform = gpu.uniform(&Mask {
            rows: u32_of(rows),
            m: u32_of(m),
            threshold,
            per: u32_of(rows / instances).max(1),
        });
        let buffers: &[&dyn Bind] = &[&uniform, &a, &since, &masked];
        Ok(self.mask_dead.bind(gpu, buffers, gpu.grid_1d(rows * m, WG)))
    }
}
