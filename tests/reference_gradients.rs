//! The reference differentiates what it claims to: its analytic gradients
//! against central finite differences of its own losses, in f64.

mod common;

use common::normals;
use mfr_sae::model::{Activation, Architecture, AuxK, SaeConfig, SaeWeights};
use mfr_sae::reference::{self as r, RefSae};

const H: f64 = 1e-6;

/// Central difference of `f` at `x` along every coordinate.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let keep = x[i];
            x[i] = keep + H;
            let up = f(&x);
            x[i] = keep - H;
            let down = f(&x);
            x[i] = keep;
            (up - down) / (2.0 * H)
        })
        .collect()
}

#[track_caller]
fn assert_grad(what: &str, analytic: &[f64], numeric: &[f64]) {
    let scale = numeric.iter().fold(1e-8f64, |m, v| m.max(v.abs()));
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= 1e-5 * scale + 1e-9,
            "{what}[{i}]: analytic {a:.9e}, finite difference {n:.9e}"
        );
    }
}

#[test]
fn mse_gradient_is_the_derivative_of_mse() {
    let (rows, cols) = (7, 5);
    let (xhat, tgt) = (normals(rows * cols, 1), normals(rows * cols, 2));
    let (_, grad, _) = r::mse(&xhat, &tgt, cols);
    assert_grad("mse", &grad, &numeric_grad(&xhat, |x| r::mse(x, &tgt, cols).0));
}

#[test]
fn projection_is_the_gradient_through_row_normalisation() {
    // f(W) = Σ G ⊙ (W / ‖W_j‖): its gradient is project(G, U, norms).
    let (rows, cols) = (4, 6);
    let (w, g) = (normals(rows * cols, 3), normals(rows * cols, 4));
    let f = |w: &[f64]| {
        r::rows_normalise(w, cols)
            .0
            .iter()
            .zip(&g)
            .map(|(a, b)| a * b)
            .sum::<f64>()
    };
    let (u, norms) = r::rows_normalise(&w, cols);
    assert_grad("project", &r::project(&g, &u, Some(&norms), cols), &numeric_grad(&w, f));
}

#[test]
fn unit_projection_removes_exactly_the_radial_component() {
    let cols = 6;
    let (u, _) = r::rows_normalise(&normals(3 * cols, 5), cols);
    let g = normals(3 * cols, 6);
    let p = r::project(&g, &u, None, cols);
    for (pr, ur) in p.chunks(cols).zip(u.chunks(cols)) {
        let along: f64 = pr.iter().zip(ur).map(|(a, b)| a * b).sum();
        assert!(along.abs() < 1e-12, "projected gradient keeps a radial part {along}");
    }
    // Projecting twice changes nothing.
    assert!(r::project(&p, &u, None, cols)
        .iter()
        .zip(&p)
        .all(|(a, b)| (a - b).abs() < 1e-12));
}

fn cfg(arch: Architecture, activation: Activation, paper_exact: bool) -> SaeConfig {
    SaeConfig {
        paper_exact,
        ..SaeConfig::new(arch, activation, 6, 9, 5, 1e-3)
    }
}

/// Every (architecture, activation) the trainer supports.
fn all_configs() -> Vec<SaeConfig> {
    let mut v = Vec::new();
    for arch in [Architecture::Tied, Architecture::Standard] {
        v.push(cfg(arch, Activation::TopK { k: 3 }, false));
        v.push(cfg(arch, Activation::TopK { k: 7 }, true)); // k near m: negative codes kept
        v.push(cfg(arch, Activation::ReluL1 { l1: 0.1 }, false));
        // The gradient passes only through the batch·k kept entries, like TopK's.
        v.push(cfg(arch, Activation::BatchTopK { k: 3 }, false));
    }
    v
}

#[test]
fn batch_topk_keeps_batch_times_k_over_the_batch_not_k_per_row() {
    let (rows, m, k) = (6, 9, 2);
    // Row r's values grow with r, so the later rows take more than k each.
    let a: Vec<f64> = normals(rows * m, 31)
        .iter()
        .enumerate()
        .map(|(i, v)| v.abs() * (1 + i / m) as f64)
        .collect();
    let z = r::batch_topk(&a, m, k);
    let per_row: Vec<usize> = z
        .chunks(m)
        .map(|row| row.iter().filter(|v| **v != 0.0).count())
        .collect();
    assert_eq!(per_row.iter().sum::<usize>(), rows * k, "{per_row:?}");
    assert!(per_row.iter().any(|&c| c != k), "every row kept exactly k: {per_row:?}");
    let kept_min = z.iter().copied().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
    let dropped_max = a
        .iter()
        .zip(&z)
        .filter(|(_, z)| **z == 0.0)
        .map(|(a, _)| *a)
        .fold(0.0, f64::max);
    assert!(kept_min >= dropped_max, "kept {kept_min} < dropped {dropped_max}");
    // The threshold's running average moves lr of the way to the smallest kept value.
    assert_eq!(r::batch_topk_threshold(1.0, &z, 0.25), 0.75 + 0.25 * kept_min);
    assert_eq!(r::batch_topk_threshold(1.0, &vec![0.0; z.len()], 0.25), 1.0);
}

#[test]
fn batch_topk_infers_with_jumprelu_at_the_trained_threshold() {
    let c = cfg(Architecture::Standard, Activation::BatchTopK { k: 3 }, false);
    let mut sae = RefSae::new(c, &SaeWeights::init(&c, 41));
    let x = normals(c.batch * c.d_in, 42);
    for _ in 0..5 {
        sae.step(&x, &x);
    }
    assert!(sae.threshold > 0.0, "training moved the threshold");
    let a = sae.pre_activation(&x);
    let z = sae.encode(&x);
    for (&ai, &zi) in a.iter().zip(&z) {
        assert_eq!(
            zi,
            if ai > sae.threshold { ai } else { 0.0 },
            "JumpReLU at θ = {}",
            sae.threshold
        );
    }
    assert_eq!(z, r::jumprelu(&a, sae.threshold));
}

#[test]
fn sae_gradients_match_finite_differences_for_every_architecture_and_activation() {
    for c in all_configs() {
        let mut w = SaeWeights::init(&c, 7);
        // Non-zero biases so that their gradients are exercised away from 0.
        for p in &mut w.params {
            if p.shape.len() == 1 {
                let noise = normals(p.data.len(), 8);
                p.data.iter_mut().zip(noise).for_each(|(v, n)| *v = (0.1 * n) as f32);
            }
        }
        let sae = RefSae::new(c, &w);
        let x = normals(c.batch * c.d_in, 9);
        let pass = sae.pass(&x, &x);
        if c.paper_exact {
            assert!(
                pass.z.iter().any(|v| *v < 0.0),
                "paper_exact must be exercised with negative codes"
            );
        }
        for (i, analytic) in pass.grads.iter().enumerate() {
            let numeric = numeric_grad(&sae.params[i], |p| {
                let mut s = RefSae::new(c, &w);
                s.params = sae.params.clone();
                s.params[i] = p.to_vec();
                s.pass(&x, &x).loss
            });
            let what = format!(
                "{:?} {:?} paper_exact={} {}",
                c.arch, c.activation, c.paper_exact, w.params[i].name
            );
            assert_grad(&what, analytic, &numeric);
        }
    }
}

#[test]
fn reference_training_reduces_the_loss() {
    for c in all_configs() {
        let mut sae = RefSae::new(SaeConfig { lr: 1e-2, ..c }, &SaeWeights::init(&c, 11));
        let x = normals(c.batch * c.d_in, 12);
        let first = sae.step(&x, &x);
        let last = (0..50).map(|_| sae.step(&x, &x)).last().unwrap();
        assert!(
            last < 0.8 * first,
            "{:?} {:?}: loss {first} → {last}",
            c.arch,
            c.activation
        );
    }
}

#[test]
fn auxk_gradient_matches_finite_differences_with_the_residual_held_constant() {
    for arch in [Architecture::Tied, Architecture::Standard] {
        let aux = AuxK {
            k_aux: 3,
            coef: 0.5,
            dead_after_tokens: 10.0,
        };
        let c = SaeConfig {
            auxk: Some(aux),
            ..cfg(arch, Activation::TopK { k: 2 }, false)
        };
        let w = SaeWeights::init(&c, 21);
        let mut sae = RefSae::new(c, &w);
        // Latents 0..5 are dead (silent for 20 tokens), 5..9 alive.
        sae.since_fired = (0..c.d_sae).map(|j| if j < 5 { 20.0 } else { 0.0 }).collect();
        let x = normals(c.batch * c.d_in, 22);
        let with = sae.pass(&x, &x);
        let mut plain = RefSae::new(SaeConfig { auxk: None, ..c }, &w);
        plain.params = sae.params.clone();
        let without = plain.pass(&x, &x);
        let resid: Vec<f64> = x.iter().zip(&with.xhat).map(|(a, b)| a - b).collect();
        let (aux_loss, z_aux, _, _) = r::auxk(
            &sae.pre_activation(&x),
            &sae.since_fired,
            &sae.dictionary().0,
            &resid,
            aux,
        );
        assert!(
            aux_loss > 0.0 && z_aux.iter().any(|v| *v != 0.0),
            "{arch:?}: AuxK must be exercised"
        );
        assert!(
            z_aux.chunks(c.d_sae).all(|row| row[5..].iter().all(|v| *v == 0.0)),
            "only dead latents take part"
        );
        for (i, (g_with, g_without)) in with.grads.iter().zip(&without.grads).enumerate() {
            let analytic: Vec<f64> = g_with.iter().zip(g_without).map(|(a, b)| a - b).collect();
            let numeric = numeric_grad(&sae.params[i], |p| {
                let mut s = RefSae::new(c, &w);
                s.params = sae.params.clone();
                s.params[i] = p.to_vec();
                s.since_fired = sae.since_fired.clone();
                let dec = s.dictionary().0;
                r::auxk(&s.pre_activation(&x), &s.since_fired, &dec, &resid, aux).0
            });
            assert_grad(&format!("{arch:?} AuxK {}", w.params[i].name), &analytic, &numeric);
        }
    }
}
