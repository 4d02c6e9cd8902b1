//! mfr-sae: sparse autoencoders trained with Mutual Feature Regularization
//! (Marks, Paren, Krueger, Barez, arXiv:2411.01220) as WGSL compute shaders on
//! wgpu. The same library runs natively (Vulkan, Metal, DX12, GL) and in the
//! browser (WebGPU); everything here is async and target-independent, and the
//! target-specific edges are `main.rs` (native CLI) and `web.rs` (wasm).

pub mod assignment;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod experiment;
pub mod export;
pub mod gpu;
pub mod kernels;
pub mod limits;
pub mod metrics;
pub mod mfr;

pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
pub mod reference;
pub mod rng;
pub mod sae;
pub mod train;

pub use error::{Error, Result};

#[cfg(target_arch = "wasm32")]
pub mod web;
