//! Shared test helpers: one GPU per test binary, seeded data, error measures, the
//! binary, scratch folders and data files for the tests that run it.
#![allow(dead_code)]

use mfr_sae::gpu::{Dispatch, Gpu, Tensor};
use mfr_sae::kernels::Kernels;
use mfr_sae::rng::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Ctx {
    pub gpu: Gpu,
    pub k: Kernels,
}

/// The device and compiled kernels, created once for all tests of a binary.
pub fn ctx() -> &'static Ctx {
    static CTX: OnceLock<Ctx> = OnceLock::new();
    CTX.get_or_init(|| {
        let gpu = pollster::block_on(Gpu::new()).expect("tests need a wgpu adapter (lavapipe: mesa-vulkan-drivers)");
        let k = Kernels::new(&gpu).expect("kernels compile");
        Ctx { gpu, k }
    })
}

/// Shapes that are not multiples of any tile, plus degenerate and square ones.
pub const SHAPES: &[(usize, usize, usize)] = &[(37, 19, 53), (1, 1, 1), (5, 130, 7), (64, 32, 96), (33, 65, 17)];

pub fn normals(n: usize, seed: u64) -> Vec<f64> {
    Rng::new(seed).normals(n)
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The f32-rounded values back in f64, so the reference sees exactly the GPU's inputs.
pub fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|&x| x as f32 as f64).collect()
}

pub fn upload(shape: &[usize], v: &[f64]) -> Tensor<f32> {
    Tensor::from_slice(&ctx().gpu, shape, &f32s(v), "test input").unwrap()
}

pub fn zeros(shape: &[usize]) -> Tensor<f32> {
    Tensor::zeros(&ctx().gpu, shape, "test output").unwrap()
}

pub fn run(d: &[&Dispatch]) {
    ctx().gpu.submit(d);
}

pub fn read(t: &Tensor<f32>) -> Vec<f64> {
    pollster::block_on(t.read(&ctx().gpu))
        .unwrap()
        .into_iter()
        .map(|x| x as f64)
        .collect()
}

/// max |got − want| / max(max |want|, floor): error relative to the tensor's scale.
pub fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs())) / scale
}

#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let e = rel_err(got, want);
    assert!(e <= tol, "{what}: relative error {e:.3e} exceeds {tol:.0e}");
}

/// Batches with sparse structure (3 of 30 fixed directions per row, uniform
/// weights), rounded to f32 so GPU and reference see the same numbers.
pub fn sparse_batches(batch: usize, d: usize, count: usize, seed: u64) -> Vec<Vec<f64>> {
    let dirs = normals(30 * d, seed);
    let mut rng = Rng::new(seed + 1);
    (0..count)
        .map(|_| {
            let mut x = vec![0.0; batch * d];
            for row in x.chunks_mut(d) {
                for _ in 0..3 {
                    let f = rng.below(30);
                    let a = rng.uniform();
                    row.iter_mut()
                        .zip(&dirs[f * d..(f + 1) * d])
                        .for_each(|(v, dv)| *v += a * dv);
                }
            }
            rounded(&x)
        })
        .collect()
}

/// The `mfr-sae` binary of this build.
pub fn mfr_sae() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mfr-sae"))
}

/// A fresh, empty folder for one test: `mfr-sae-<test binary>-<name>-<pid>` in the temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mfr-sae-{}-{name}-{}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes data [rows, d] as `dir/name` in `.npy` format and returns the path.
pub fn npy(dir: &Path, name: &str, d: usize, data: &[f32]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, mfr_sae::data::activations::write_npy(d, data).unwrap()).unwrap();
    path
}

/// Part `part` of `v` cut into `parts` equal slices (one instance of a stacked tensor).
pub fn slice(v: &[f64], parts: usize, part: usize) -> &[f64] {
    let len = v.len() / parts;
    &v[part * len..(part + 1) * len]
}
