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
        let layout = self.pipeline.get_bind_group_layout(0);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(b.binding()),
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
        }
    }
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
