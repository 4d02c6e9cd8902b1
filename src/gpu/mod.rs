//! The GPU context: adapter and device set-up with the limits the adapter
//! really has, typed buffers (`tensor`), one async readback path for native and
//! web, and the recorded dispatches (`dispatch`) that a training step replays.
//! Kernels themselves live in `crate::kernels`.

mod dispatch;
pub mod oneshot;
mod tensor;

pub use dispatch::{Dispatch, Program, Resource, Upload};
pub(crate) use tensor::read_buffer;
pub use tensor::{Bind, Tensor};

use crate::error::{Error, Result};
use serde::Serialize;

/// What the adapter is and which limits the device was created with.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    /// True for CPU adapters (lavapipe, SwiftShader, WARP): correct but slow.
    pub is_software: bool,
    pub limits: LimitsReport,
}

/// The limits this crate depends on, as granted to the device.
#[derive(Debug, Clone, Serialize)]
pub struct LimitsReport {
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub max_compute_workgroups_per_dimension: u32,
    /// Where a binding of part of a buffer may start (bytes): an ensemble's per-SAE views.
    pub min_storage_buffer_offset_alignment: u32,
}

/// Device, queue and what was learned about the adapter.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: AdapterReport,
}

/// The sentence printed when no adapter exists at all.
const NO_ADAPTER_HELP: &str = "no GPU adapter found: install a Vulkan, Metal or DX12 driver \
(on Debian/Ubuntu without a GPU: `apt-get install mesa-vulkan-drivers` gives the lavapipe CPU \
adapter), or choose a backend with WGPU_BACKEND=vulkan|metal|dx12|gl";

impl Gpu {
    /// Finds the best adapter (backends from `WGPU_BACKEND`, else all) and opens a
    /// device with the adapter's own storage, buffer and workgroup limits rather than
    /// the WebGPU floor.
    pub async fn new() -> Result<Gpu> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                ..Default::default()
            })
            .await
            .map_err(|_| Error::NoAdapter(NO_ADAPTER_HELP.to_string()))?;
        Self::from_adapter(adapter).await
    }

    async fn from_adapter(adapter: wgpu::Adapter) -> Result<Gpu> {
        let have = adapter.limits();
        // Start from the WebGPU defaults (clipped to what a downlevel adapter has)
        // and raise the limits that decide how large an SAE fits in one buffer.
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
            max_buffer_size: have.max_buffer_size,
            max_compute_workgroup_storage_size: have.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: have.max_compute_invocations_per_workgroup,
            max_storage_buffers_per_shader_stage: have.max_storage_buffers_per_shader_stage,
            max_compute_workgroups_per_dimension: have.max_compute_workgroups_per_dimension,
            // The texture kernels (matmul, sparse) hold whole operands in 2-D texture arrays.
            max_texture_dimension_2d: have.max_texture_dimension_2d,
            max_texture_array_layers: have.max_texture_array_layers,
            ..wgpu::Limits::default().or_worse_values_from(&have)
        };
        let info = adapter.get_info();
        // GPU timestamps at compute-pass boundaries, for `bench`, where the adapter has them.
        let features = adapter.features() & wgpu::Features::TIMESTAMP_QUERY;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("mfr-sae"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Device(format!("the adapter `{}` refused a device: {e}", info.name)))?;
        let report = AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            is_software: info.device_type == wgpu::DeviceType::Cpu,
            limits: LimitsReport {
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_buffer_size: limits.max_buffer_size,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
                max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
                min_storage_buffer_offset_alignment: limits.min_storage_buffer_offset_alignment,
            },
        };
        Ok(Gpu { device, queue, report })
    }

    /// Largest number of f32 values one storage binding may hold on this device.
    pub fn max_binding_elements(&self) -> u64 {
        self.report
            .limits
            .max_storage_buffer_binding_size
            .min(self.report.limits.max_buffer_size)
            / 4
    }

    /// Records `dispatches` into one command buffer and submits it.
    pub fn submit(&self, dispatches: &[&Dispatch]) {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        Dispatch::encode_all(&mut encoder, dispatches, |_| Default::default());
        self.queue.submit([encoder.finish()]);
    }
}

impl Gpu {
    /// Resolves when the GPU has finished everything submitted so far: the
    /// back-pressure that keeps a browser's queue short between frames.
    pub async fn finish(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue.on_submitted_work_done(move || tx.send(()));
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Device(format!("the GPU device was lost: {e}")))?;
        rx.await;
        Ok(())
    }
}
