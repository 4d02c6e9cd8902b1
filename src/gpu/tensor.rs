//! Typed GPU buffers that know their shape, and the one readback path.
//! Layout is always row-major (C order); the shape is written once, here.

use super::{oneshot, Gpu};
use crate::error::{Error, Result};
use bytemuck::Pod;
use std::marker::PhantomData;

/// A storage buffer holding `shape.iter().product()` values of `T`, row-major. A clone is
/// another handle to the same buffer.
#[derive(Clone)]
pub struct Tensor<T: Pod> {
    pub buffer: wgpu::Buffer,
    shape: Vec<usize>,
    label: String,
    _t: PhantomData<T>,
}

impl<T: Pod> Tensor<T> {
    /// A tensor filled with zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize], label: &str) -> Result<Self> {
        let len: usize = shape.iter().product();
        let bytes = Self::checked_bytes(gpu, len, label)?;
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Tensor {
            buffer,
            shape: shape.to_vec(),
            label: label.to_string(),
            _t: PhantomData,
        })
    }

    /// A tensor holding `data`, which must have exactly `shape`'s element count.
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[T], label: &str) -> Result<Self> {
        let t = Self::zeros(gpu, shape, label)?;
        t.write(gpu, data)?;
        Ok(t)
    }

    /// Replaces the contents (queued; takes effect before the next submit).
    pub fn write(&self, gpu: &Gpu, data: &[T]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::Shape(format!(
                "tensor `{}` of shape {:?} holds {} values, got {}",
                self.label,
                self.shape,
                self.len(),
                data.len()
            )));
        }
        if !data.is_empty() {
            gpu.queue.write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes for `len` values, at least 4 (wgpu refuses empty bindings) and rounded up to
    /// 16 so that a kernel may view any tensor as vec4s (the matmul does), checked
    /// against the device's binding limit so that an SAE too large for this
    /// adapter is refused with its size instead of a validation panic.
    fn checked_bytes(gpu: &Gpu, len: usize, label: &str) -> Result<u64> {
        let bytes = (len * std::mem::size_of::<T>()).max(4) as u64;
        let limit = gpu
            .report
            .limits
            .max_storage_buffer_binding_size
            .min(gpu.report.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::Shape(format!(
                "buffer `{label}` needs {bytes} bytes but this adapter binds at most {limit}: \
                 use a smaller batch or dictionary"
            )));
        }
        Ok(bytes.div_ceil(16) * 16)
    }

    /// Copies the tensor back to the CPU. The same code runs natively (where
    /// `poll` blocks until the copy is done) and in the browser (where the map
    /// callback arrives from the event loop).
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<T>> {
        let bytes = read_buffer(gpu, &self.buffer).await?;
        let n = self.len();
        let mut out = vec![T::zeroed(); n];
        bytemuck::cast_slice_mut(&mut out).copy_from_slice(&bytes[..n * std::mem::size_of::<T>()]);
        Ok(out)
    }
}

/// Reads a whole buffer (`COPY_SRC`) back through a staging buffer.
pub(crate) async fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
    let size = buffer.size();
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, size);
    gpu.queue.submit([encoder.finish()]);
    let (tx, rx) = oneshot::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| tx.send(r));
    // Blocks on native until the map is done; a no-op in the browser.
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| Error::Device(format!("the GPU device was lost while reading back: {e}")))?;
    rx.await
        .map_err(|e| Error::Device(format!("reading a buffer back from the GPU failed: {e}")))?;
    let view = staging
        .get_mapped_range(..)
        .map_err(|e| Error::Device(format!("reading a buffer back from the GPU failed: {e}")))?;
    let out = view.to_vec();
    drop(view);
    staging.unmap();
    Ok(out)
}
