//! Operands read as textures: on llvmpipe a storage-buffer load runs lane by lane, a texel
//! fetch once for all lanes (ARCHITECTURE.md §5), so the kernels that read one large operand
//! many times (`matmul_texture` and the sparse kernels' `*_texture` flavours) read it from
//! an rgba32float 2-D texture array that their dispatch fills by a copy first (`Upload`).
//! Owns those textures: one per (role, size), made on first use and shared by every dispatch
//! of that role and size; each dispatch refills it right before it runs, and the queue runs
//! copies and dispatches in order.

use crate::gpu::{AdapterReport, Gpu, Tensor, Upload};
use std::collections::HashMap;
use std::sync::Mutex;

/// Whether kernels read their large operands from textures by default on this adapter: on
/// llvmpipe (lavapipe), where the texture matmul ran 3–10× above the buffer variants and
/// the sparse kernels 3.5–6× (README, ARCHITECTURE.md §5); not on other CPU adapters
/// (SwiftShader: unmeasured) or on GPUs.
pub(super) fn preferred(report: &AdapterReport) -> bool {
    report.is_software && report.name.contains("llvmpipe")
}

/// Which operand of which kernel a texture holds (two operands of one dispatch never
/// share a texture).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Role {
    MatmulA,
    MatmulB,
    DecodeDict,
    CodeGradientDict,
    CodeGradientG,
    ScatterY,
    TopKA,
    TopKCandidates,
}

#[derive(Default)]
pub(super) struct Textures {
    made: Mutex<HashMap<(Role, u32, u32, u32), wgpu::TextureView>>,
}

/// Whether `layers` slices of [rows, cols] values fit a texture a copy can fill: rows of a
/// multiple of 64 values (a copied row spans a multiple of 256 bytes), within the device's
/// texture limits.
pub(super) fn fits(gpu: &Gpu, rows: usize, cols: usize, layers: usize) -> bool {
    let limits = gpu.device.limits();
    let side = limits.max_texture_dimension_2d as usize;
    cols.is_multiple_of(64) && cols / 4 <= side && rows <= side && layers <= limits.max_texture_array_layers as usize
}

/// How [rows, cols] values lie in a texture array a copy can fill: (rows per layer, layers),
/// the fewest layers that divide the rows into slices within the device's limits (one where
/// the rows fit), or None where no such split exists or cols is not a multiple of 64.
pub(super) fn layered(gpu: &Gpu, rows: usize, cols: usize) -> Option<(usize, usize)> {
    let limits = gpu.device.limits();
    let side = limits.max_texture_dimension_2d as usize;
    let first = rows.div_ceil(side).max(1);
    (first..=limits.max_texture_array_layers as usize)
        .find(|layers| rows.is_multiple_of(*layers))
        .map(|layers| (rows / layers, layers))
        .filter(|&(per_layer, layers)| fits(gpu, per_layer, cols, layers))
}

impl Textures {
    /// The texture of `role` for `layers` slices [rows, cols] of `t` (`fits` must hold), and
    /// the copy that fills it from `t`.
    pub(super) fn upload(
        &self,
        gpu: &Gpu,
        role: Role,
        t: &Tensor<f32>,
        rows: usize,
        cols: usize,
        layers: usize,
    ) -> (Upload, wgpu::TextureView) {
        let (width, height, layers) = (super::u32_of(cols / 4), super::u32_of(rows), super::u32_of(layers));
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        let view = made.entry((role, width, height, layers)).or_insert_with(|| {
            let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
                label: Some("operand texture"),
                size: wgpu::Extent3d {
                    width,
                    height,
                    depth_or_array_layers: layers,
                },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            });
            texture.create_view(&wgpu::TextureViewDescriptor {
                dimension: Some(wgpu::TextureViewDimension::D2Array),
                ..Default::default()
            })
        });
        let (buffer, offset) = t.buffer_range();
        let upload = Upload {
            buffer: buffer.clone(),
            offset,
            texture: view.texture().clone(),
            width,
            height,
            layers,
        };
        (upload, view.clone())
    }
}
