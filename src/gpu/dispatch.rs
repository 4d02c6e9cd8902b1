//! Compiled kernels (`Program`) and recorded dispatches (`Dispatch`).
//!
//! A `Program` is one WGSL entry point compiled once into a compute pipeline.
//! Binding convention for every shader in `shaders/`: `@group(0)`, bindings
//! numbered in the order the wrapper passes its buffers (uniforms first); each
//! kernel's is declared and checked in `crate::kernels::contract`.
//! A `Dispatch` is a program bound to concrete buffers with its grid size; an
//! SAE records its whole training step as a list of dispatches once and replays
//! it every step, so no bind group or uniform is created in the step loop.

use super::{Bind, Gpu};
use bytemuck::Pod;
use wgpu::util::DeviceExt;

#[derive(Clone)]
pub struct Program {
    pipeline: wgpu::ComputePipeline,
    name: &'static str,
    entry: &'static str,
}

pub struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    name: &'static str,
    entry: &'static str,
    /// Copies into the textures the dispatch reads, encoded before its compute pass (the
    /// matmul's and the sparse kernels' texture flavours); empty for every other kernel.
    uploads: Vec<Upload>,
}

/// A copy of a buffer's range into a texture that a dispatch reads: `layers` consecutive
/// `[height, width]` slices of rgba32float texels (a row of `width · 16` bytes, a multiple of
/// 256) from `offset`.
#[derive(Clone)]
pub struct Upload {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    pub texture: wgpu::Texture,
    pub width: u32,
    pub height: u32,
    pub layers: u32,
}

impl Upload {
    fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer: &self.buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: self.offset,
                    bytes_per_row: Some(self.width * 16),
                    rows_per_image: Some(self.height),
                },
            },
            self.texture.as_image_copy(),
            wgpu::Extent3d {
                width: self.width,
                height: self.height,
                depth_or_array_layers: self.layers,
            },
        );
    }
}

impl Program {
    /// Compiles `entry` of the WGSL `source`.
    pub fn new(gpu: &Gpu, name: &'static str, source: &str, entry: &'static str) -> Program {
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        });
        Program { pipeline, name, entry }
    }

    /// Binds `buffers` (uniforms whole, tensors their values) to bindings 0, 1, 2, … in order.
    pub fn bind(&self, gpu: &Gpu, buffers: &[&dyn Bind], workgroups: [u32; 3]) -> Dispatch {
        let resources: Vec<Resource> = buffers.iter().map(|&b| Resource::Buffer(b)).collect();
        self.bind_resources(gpu, &resources, Vec::new(), workgroups)
    }

    /// Binds `resources` to bindings 0, 1, 2, … in order; `uploads` fill the textures among
    /// them before each run.
    pub fn bind_resources(
        &self,
        gpu: &Gpu,
        resources: &[Resource<'_>],
        uploads: Vec<Upload>,
        workgroups: [u32; 3],
    ) -> Dispatch {
        let layout = self.pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: match r {
                    Resource::Buffer(b) => wgpu::BindingResource::Buffer(b.binding()),
                    Resource::Texture(view) => wgpu::BindingResource::TextureView(view),
                },
            })
            .collect();
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(self.name),
            layout: &layout,
            entries: &entries,
        });
        Dispatch {
            pipeline: self.pipeline.clone(),
            bind_group,
            workgroups,
            name: self.name,
            entry: self.entry,
            uploads,
        }
    }
}

/// What one binding of a dispatch holds.
pub enum Resource<'a> {
    Buffer(&'a dyn Bind),
    Texture(&'a wgpu::TextureView),
}

impl Dispatch {
    /// The kernel this dispatch runs, for profiles: `shader/entry` (`activation/topk`), or
    /// the shader's name alone where its entry point is `main` (`adam`, `matmul_register`).
    pub fn kernel(&self) -> String {
        match self.entry {
            "main" => self.name.to_string(),
            entry => format!("{}/{entry}", self.name),
        }
    }

    /// Encodes `dispatches` in order into `encoder`: runs of them in one compute pass, a new
    /// pass after the uploads of any dispatch that has them (copies cannot be encoded inside
    /// a pass). `pass(last)` describes each pass, `last` for the final one.
    pub fn encode_all<'q>(
        encoder: &mut wgpu::CommandEncoder,
        dispatches: &[&Dispatch],
        pass: impl Fn(bool) -> wgpu::ComputePassDescriptor<'q>,
    ) {
        let mut start = 0;
        while start < dispatches.len() {
            for u in &dispatches[start].uploads {
                u.encode(encoder);
            }
            let end = (start + 1..dispatches.len())
                .find(|&i| !dispatches[i].uploads.is_empty())
                .unwrap_or(dispatches.len());
            let mut compute = encoder.begin_compute_pass(&pass(end == dispatches.len()));
            for d in &dispatches[start..end] {
                d.record(&mut compute);
            }
            start = end;
        }
    }

    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

impl Gpu {
    /// A uniform buffer holding `value` (a `#[repr(C)]` parameter block).
    pub fn uniform<T: Pod>(&self, value: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Workgroup grid for `n` invocations of `size`-wide workgroups, folded into
    /// two dimensions when one would exceed the per-dimension limit. Shaders
    /// recover the linear index as `(wg.y * num_wg.x + wg.x) * size + local`.
    pub fn grid_1d(&self, n: usize, size: u32) -> [u32; 3] {
        let groups = (n as u64).div_ceil(size as u64).max(1);
        let max = self.report.limits.max_compute_workgroups_per_dimension as u64;
        if groups <= max {
            [groups as u32, 1, 1]
        } else {
            let y = groups.div_ceil(max);
            [groups.div_ceil(y) as u32, y as u32, 1]
        }
    }
}
