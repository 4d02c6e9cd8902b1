//! The λ × seed grid of every experiment kind: for each point its ensemble
//! configuration (λ and seed set, validated, sized against the adapter), its run
//! folder and its label — all planned, and so all refused or accepted, before
//! the first run trains.
//!
//! Owns the grid; training a point is `mod.rs`, summarising it `report.rs`.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::train::EnsembleConfig;
use std::path::{Path, PathBuf};

/// One run of an experiment: the ensemble at one λ and one seed.
pub struct Point {
    pub lambda: f32,
    pub seed: u64,
    /// `base` with this λ and seed.
    pub cfg: EnsembleConfig,
    /// `out/seed-S/lambda-L`.
    pub dir: PathBuf,
    /// "λ=L seed S", for progress lines.
    pub label: String,
}

/// Every (λ, seed) for the seeds `first_seed .. first_seed + seeds`, λ-major: every λ
/// of a seed trains from the same initial weights on the same batches. `n_features`: the data's true features, where it has them
/// (the limits check sizes their recovery scores).
pub fn plan(
    gpu: &Gpu,
    base: &EnsembleConfig,
    lambdas: &[f32],
    first_seed: u64,
    seeds: u64,
    n_features: Option<usize>,
    out: &Path,
) -> Result<Vec<Point>> {
    if lambdas.is_empty() || seeds == 0 {
        return Err(Error::Config("an experiment needs at least one λ and one seed".into()));
    }
    let mut points = Vec::new();
    for &lambda in lambdas {
        for seed in first_seed..first_seed + seeds {
            let mut cfg = base.clone();
            cfg.mfr.lambda = lambda;
            cfg.seed = seed;
            cfg.validate()?;
            crate::limits::check(&cfg, n_features, &gpu.report, crate::limits::host_budget())?;
            points.push(Point {
                lambda,
                seed,
                cfg,
                dir: out.join(format!("seed-{seed}")).join(format!("lambda-{lambda}")),
                label: format!("λ={lambda} seed {seed}"),
            });
        }
    }
    Ok(points)
}
