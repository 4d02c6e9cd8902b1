//! Typed GPU buffers that know their shape, and the one readback path.
//! Layout is always row-major (C order); the shape is written once, here.

use super::{oneshot, Gpu};
use crate::error::{Error, Result};
use bytemuck::Pod;
use std::marker::PhantomData;

/// `shape.iter().product()` values of `T`, row-major, in a storage buffer: the whole
/// buffer, or a view of part of it (`Tensor::view`: one SAE's slice of an ensemble's
/// stacked tensor). A clone is another handle to the same values.
#[derive(Clone)]
pub struct Tensor<T: Pod> {
    buffer: wgpu::Buffer,
    /// Where the values start in `buffer`, in bytes (a multiple of the adapter's storage
    /// offset alignment).
    offset: u64,
    shape: Vec<usize>,
    label: String,
    _t: PhantomData<T>,
}

/// What a dispatch binds: a uniform buffer whole, or a tensor's values (a view binds only
/// its range, so a kernel never sees its neighbours).
pub trait Bind {
    fn binding(&self) -> wgpu::BufferBinding<'_>;
}

impl Bind for wgpu::Buffer {
    fn binding(&self) -> wgpu::BufferBinding<'_> {
        self.as_entire_buffer_binding()
    }
}

impl<T: Pod> Bind for Tensor<T> {
    fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.bound_bytes()),
        }
    }
}

impl<B: Bind + ?Sized> Bind for &B {
    fn binding(&self) -> wgpu::BufferBinding<'_> {
        (**self).binding()
    }
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
            offset: 0,
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
            gpu.queue
                .write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// The buffer holding the values and where they start in it, in bytes (for copies).
    pub fn buffer_range(&self) -> (&wgpu::Buffer, u64) {
        (&self.buffer, self.offset)
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

    /// The same values as a tensor of another shape with as many elements (a stack [N·r, c]
    /// seen as [N, r, c]).
    pub fn reshaped(&self, shape: &[usize]) -> Result<Self> {
        if shape.iter().product::<usize>() != self.len() {
            return Err(Error::Shape(format!(
                "tensor `{}` of shape {:?} cannot be seen as {shape:?}",
                self.label, self.shape
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Whether `other` holds its values in the same buffer (a view of it, or it).
    pub fn shares_buffer<U: Pod>(&self, other: &Tensor<U>) -> bool {
        self.buffer == other.buffer
    }

    /// The bytes a binding of this tensor covers: its values rounded up to 16 (a kernel
    /// may read a tensor as vec4s), within the buffer.
    fn bound_bytes(&self) -> u64 {
        let bytes = ((self.len() * std::mem::size_of::<T>()).max(4) as u64).div_ceil(16) * 16;
        bytes.min(self.buffer.size() - self.offset)
    }

    /// The `part`-th of `parts` equal consecutive slices of this tensor, as a tensor of
    /// `shape` (a slice's element count) sharing this one's buffer. The slice must start
    /// at a multiple of the adapter's storage offset alignment (`view_aligned` says
    /// whether every slice of a length does).
    pub fn view(&self, gpu: &Gpu, parts: usize, part: usize, shape: &[usize], label: &str) -> Result<Self> {
        let len: usize = shape.iter().product();
        if part >= parts || len * parts != self.len() {
            return Err(Error::Shape(format!(
                "tensor `{}` of shape {:?} has no slice {part} of {parts} of shape {shape:?}",
                self.label, self.shape
            )));
        }
        let offset = self.offset + (part * len * std::mem::size_of::<T>()) as u64;
        let align = gpu.report.limits.min_storage_buffer_offset_alignment.max(1) as u64;
        if !offset.is_multiple_of(align) {
            return Err(Error::Shape(format!(
                "tensor `{}`: slice {part} of {parts} starts at byte {offset}, which this adapter cannot bind \
                 (a multiple of {align} bytes)",
                self.label
            )));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            offset,
            shape: shape.to_vec(),
            label: label.to_string(),
            _t: PhantomData,
        })
    }

    /// Whether consecutive slices of `len` values each start at a storage offset the
    /// adapter can bind.
    pub fn view_aligned(gpu: &Gpu, len: usize) -> bool {
        let align = gpu.report.limits.min_storage_buffer_offset_alignment as usize;
        (len * std::mem::size_of::<T>()).is_multiple_of(align.max(1))
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
        let n = self.len();
        let bytes = read_range(gpu, &self.buffer, self.offset, self.bound_bytes()).await?;
        let mut out = vec![T::zeroed(); n];
        bytemuck::cast_slice_mut(&mut out).copy_from_slice(&bytes[..n * std::mem::size_of::<T>()]);
        Ok(out)
    }
}

/// Reads a whole buffer (`COPY_SRC`) back through a staging buffer.
pub(crate) async fn read_buffer(gpu: &Gpu, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
    read_range(gpu, buffer, 0, buffer.size()).await
}

/// Reads `size` bytes of `buffer` from `offset` (both multiples of 4) back.
async fn read_range(gpu: &Gpu, buffer: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
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
