//! A whole GPU training step against the reference: ten steps of each width class (odd,
//! and multiples of 4 for the kernels' vec4 paths) ×
//! architecture × activation, on the dense and (TopK) the sparse step path, under
//! every matmul variant, from the same weights and batches end within 1e-3 (relative
//! to each tensor's scale) of ten f64 reference steps.

mod common;

use common::*;
use mfr_sae::gpu::Tensor;
use mfr_sae::kernels::{KernelOptions, Kernels, MatmulVariant};
use mfr_sae::model::{Activation, Architecture, AuxK, SaeConfig, SaeWeights, StepPath};
use mfr_sae::reference::RefSae;
use mfr_sae::sae::GpuSae;

/// One SAE on its own input buffer, stepped the way the ensemble steps it.
struct Single {
    x: Tensor<f32>,
    sae: GpuSae,
}

impl Single {
    fn new(c: SaeConfig, w: &SaeWeights, kernels: &Kernels) -> Single {
        let gpu = &ctx().gpu;
        let x = Tensor::zeros(gpu, &[c.batch, c.d_in], "x").unwrap();
        let sae = GpuSae::new(gpu, kernels, c, w, &x, &x, 2.5, None).unwrap();
        Single { x, sae }
    }

    fn step(&mut self, batch: &[f64]) {
        let gpu = &ctx().gpu;
        self.x.write(gpu, &f32s(batch)).unwrap();
        self.sae.begin_step(gpu, 1.0);
        gpu.submit(
            &self
                .sae
                .gradient_plan()
                .iter()
                .chain(self.sae.update_plan())
                .collect::<Vec<_>>(),
        );
    }
}

const STEPS: u64 = 10;

/// (d, m): odd widths (every kernel's scalar path), and multiples of 4 (their vec4 paths;
/// m 56 ≥ 4k for TopK's vec4 candidate pass at k ≤ 14).
const WIDTHS: [(usize, usize); 2] = [(19, 53), (20, 56)];

fn configs() -> Vec<SaeConfig> {
    let mut v = Vec::new();
    for (arch, (d, m)) in [Architecture::Tied, Architecture::Standard]
        .into_iter()
        .flat_map(|a| WIDTHS.into_iter().map(move |w| (a, w)))
    {
        let base = |arch, activation, paper_exact| SaeConfig {
            paper_exact,
            ..SaeConfig::new(arch, activation, d, m, 37, 1e-3)
        };
        v.push(base(arch, Activation::TopK { k: 8 }, false));
        // k close to m so that negative pre-activations are kept (paper_exact keeps them).
        v.push(base(arch, Activation::TopK { k: 40 }, true));
        v.push(base(arch, Activation::ReluL1 { l1: 0.05 }, false));
        v.push(base(arch, Activation::BatchTopK { k: 8 }, false));
        // AuxK with latents going dead after two silent batches.
        let aux = AuxK {
            k_aux: 9,
            coef: 1.0 / 32.0,
            dead_after_tokens: 74.0,
        };
        v.push(SaeConfig {
            auxk: Some(aux),
            ..base(arch, Activation::TopK { k: 4 }, false)
        });
    }
    // Every TopK configuration on both step paths, forced; ReLU + L1 and BatchTopK are dense only.
    v.into_iter()
        .flat_map(|c| {
            let paths = match c.activation {
                Activation::TopK { .. } => vec![StepPath::Dense, StepPath::Sparse],
                Activation::ReluL1 { .. } | Activation::BatchTopK { .. } => vec![StepPath::Dense],
            };
            paths.into_iter().map(move |p| SaeConfig {
                step_path: Some(p),
                ..c
            })
        })
        .collect()
}

fn batches(c: &SaeConfig, seed: u64) -> Vec<Vec<f64>> {
    sparse_batches(c.batch, c.d_in, STEPS as usize, seed)
}

/// Trains on the GPU with `kernels` and returns the worst relative error of
/// any parameter tensor against the reference after `STEPS` steps.
fn worst_error(c: SaeConfig, kernels: &Kernels) -> (f64, String) {
    let gpu = &ctx().gpu;
    let w = SaeWeights::init(&c, 42);
    let mut reference = RefSae::new(c, &w);
    let mut single = Single::new(c, &w, kernels);
    for x in batches(&c, 7) {
        reference.step(&x, &x);
        single.step(&x);
    }
    let got = pollster::block_on(single.sae.weights(gpu)).unwrap();
    let mut worst = (0.0, String::new());
    // BatchTopK's threshold follows the reference's too.
    if let Some(t) = got.threshold {
        worst = (rel_err(&[t as f64], &[reference.threshold]), "threshold".to_string());
    }
    for (p, want) in got.params.iter().zip(&reference.params) {
        let e = rel_err(&p.data.iter().map(|&v| v as f64).collect::<Vec<_>>(), want);
        if e >= worst.0 {
            worst = (e, p.name.to_string());
        }
    }
    worst
}

#[test]
fn ten_gpu_steps_match_ten_reference_steps_for_every_matmul_variant_architecture_and_activation() {
    for variant in MatmulVariant::ALL {
        let options = KernelOptions {
            matmul: Some(variant),
            tuned: None,
            sparse_width: None,
            textures: None,
        };
        let kernels = Kernels::with_options(&ctx().gpu, options).unwrap();
        for c in configs() {
            let (e, name) = worst_error(c, &kernels);
            let what = format!(
                "[{variant}] {:?} {:?} paper_exact={} {:?}",
                c.arch, c.activation, c.paper_exact, c.step_path
            );
            println!("{what}: worst relative error {e:.2e} ({name})");
            assert!(e <= 1e-3, "{what}: {name} off by {e:.2e}");
        }
    }
}

/// A planted bug (the MSE gradient's sign flipped) must be caught.
#[test]
fn a_flipped_sign_in_the_mse_gradient_is_caught() {
    let gpu = &ctx().gpu;
    let broken = Kernels::with_sources(gpu, |name, src| {
        if name == "loss" {
            // Both paths' stores (whole vec4s, and single values where cols is not a multiple of 4).
            let bad = src.replace("= p.scale * e;", "= -p.scale * e;");
            assert_eq!(
                bad.matches("-p.scale * e;").count(),
                2,
                "the planted bug must hit both paths"
            );
            assert_ne!(bad, src, "the planted bug must change the shader");
            bad
        } else {
            src.to_string()
        }
    })
    .unwrap();
    for c in configs() {
        let (e, name) = worst_error(c, &broken);
        assert!(
            e > 1e-3,
            "{:?} {:?} {:?}: the broken shader went unnoticed ({name} off by {e:.2e})",
            c.arch,
            c.activation,
            c.step_path
        );
    }
}

#[test]
fn gpu_metrics_agree_with_the_reference_forward_pass() {
    let gpu = &ctx().gpu;
    for c in configs() {
        let w = SaeWeights::init(&c, 3);
        let reference = RefSae::new(c, &w);
        let x = batches(&c, 9).remove(0);
        let pass = reference.pass(&x, &x);
        let mut single = Single::new(c, &w, &ctx().k);
        single.step(&x);
        let m = pollster::block_on(single.sae.take_metrics(gpu)).unwrap();
        let mse: f64 = x.iter().zip(&pass.xhat).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / x.len() as f64;
        let l0 = pass.z.iter().filter(|v| **v != 0.0).count() as f64 / c.batch as f64;
        if c.paper_exact {
            assert!(
                pass.z.iter().any(|v| *v < 0.0),
                "paper_exact must be exercised with negative codes"
            );
        }
        let what = format!("{:?} {:?} {:?}", c.arch, c.activation, c.step_path);
        assert!((m.mse - mse).abs() <= 1e-4 * mse, "{what}: mse {} vs {mse}", m.mse);
        assert!((m.l0 - l0).abs() < 1e-9, "{what}: l0 {} vs {l0}", m.l0);
        let centered: f64 = mfr_sae::reference::columns(&x, c.d_in, mfr_sae::kernels::ColumnOp::CenteredSquares)
            .iter()
            .sum();
        let fvu = mse * x.len() as f64 / centered;
        assert!((m.fvu - fvu).abs() <= 1e-4 * fvu, "{what}: fvu {} vs {fvu}", m.fvu);
        assert_eq!(m.steps, 1);
        let fired: Vec<f64> = (0..c.d_sae)
            .map(|j| (0..c.batch).filter(|&b| pass.z[b * c.d_sae + j] != 0.0).count() as f64)
            .collect();
        assert_eq!(
            m.firing_counts.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            fired,
            "{what}: firing counts"
        );
        // The window restarts after a read.
        let again = pollster::block_on(single.sae.take_metrics(gpu)).unwrap();
        assert_eq!((again.steps, again.l0), (0, 0.0));
        // A second SAE on the same target reads the first's target statistics: the same
        // FVU denominator bit for bit; one on another target is refused.
        let second = GpuSae::new(gpu, &ctx().k, c, &w, &single.x, &single.x, 2.5, Some(&single.sae)).unwrap();
        single.sae.begin_step(gpu, 1.0);
        let mut sae2 = second;
        sae2.begin_step(gpu, 1.0);
        let plan: Vec<_> = single.sae.gradient_plan().iter().chain(sae2.gradient_plan()).collect();
        gpu.submit(&plan);
        let (m1, m2) = (
            pollster::block_on(single.sae.take_metrics(gpu)).unwrap(),
            pollster::block_on(sae2.take_metrics(gpu)).unwrap(),
        );
        let (v1, v2) = (m1.mse / m1.fvu, m2.mse / m2.fvu);
        assert!(
            (v1 - v2).abs() <= 1e-12 * v1,
            "{what}: shared target statistics {v1} vs {v2}"
        );
        let other = Tensor::zeros(gpu, &[c.batch, c.d_in], "another target").unwrap();
        assert!(GpuSae::new(gpu, &ctx().k, c, &w, &single.x, &other, 2.5, Some(&single.sae)).is_err());
    }
}

#[test]
fn auxk_trains_dead_latents_and_changes_the_run() {
    let gpu = &ctx().gpu;
    for c in configs().into_iter().filter(|c| c.auxk.is_some()) {
        let w = SaeWeights::init(&c, 42);
        let mut with = Single::new(c, &w, &ctx().k);
        let mut without = Single::new(SaeConfig { auxk: None, ..c }, &w, &ctx().k);
        for x in batches(&c, 7) {
            with.step(&x);
            without.step(&x);
        }
        let m = pollster::block_on(with.sae.take_metrics(gpu)).unwrap();
        assert!(
            m.aux_mse > 0.0,
            "{:?} {:?}: dead latents reconstructed nothing",
            c.arch,
            c.step_path
        );
        let (a, b) = (
            pollster::block_on(with.sae.weights(gpu)).unwrap(),
            pollster::block_on(without.sae.weights(gpu)).unwrap(),
        );
        let moved = rel_err(
            &a.params[0].data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &b.params[0].data.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        );
        assert!(
            moved > 1e-4,
            "{:?} {:?}: AuxK changed nothing ({moved:.1e})",
            c.arch,
            c.step_path
        );
    }
}

/// The texture matmul takes only operands whose rows are whole multiples of 64 values (and
/// K a multiple of 4), which the widths above never give: here every product of the step
/// (forward, the weight gradients, the dense path's decode) is one it takes.
#[test]
fn ten_gpu_steps_with_the_texture_matmul_match_the_reference_at_aligned_widths() {
    let options = KernelOptions {
        matmul: Some(MatmulVariant::Texture),
        tuned: None,
        sparse_width: None,
        textures: None,
    };
    let kernels = Kernels::with_options(&ctx().gpu, options).unwrap();
    for arch in [Architecture::Tied, Architecture::Standard] {
        for (activation, path) in [
            (Activation::TopK { k: 8 }, StepPath::Dense),
            (Activation::TopK { k: 8 }, StepPath::Sparse),
            (Activation::ReluL1 { l1: 0.05 }, StepPath::Dense),
        ] {
            let c = SaeConfig {
                step_path: Some(path),
                ..SaeConfig::new(arch, activation, 64, 128, 64, 1e-3)
            };
            let (e, name) = worst_error(c, &kernels);
            let what = format!("[texture] {arch:?} {activation:?} {path:?} d 64 m 128 batch 64");
            println!("{what}: worst relative error {e:.2e} ({name})");
            assert!(e <= 1e-3, "{what}: {name} off by {e:.2e}");
        }
    }
}
