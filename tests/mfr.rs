//! Mutual Feature Regularization: its kernels against the reference, the
//! reference's gradient against finite differences (both MMCS forms), a GPU
//! ensemble against the reference ensemble, and what λ does to agreement.

mod common;

use common::*;
use mfr_sae::gpu::Tensor;
use mfr_sae::kernels::{AdamHyper, MmcsForm, MFR_STEP_UNIFORM_BYTES};
use mfr_sae::mfr::MfrConfig;
use mfr_sae::reference::{self as r, RefSae};
use mfr_sae::sae::{Activation, Architecture, SaeConfig, SaeWeights, StepPath};
use mfr_sae::train::{Ensemble, EnsembleConfig, ReinitConfig};

const TOL: f64 = 1e-5;

fn unit_rows(m: usize, d: usize, seed: u64) -> Vec<f64> {
    rounded(&r::rows_normalise(&normals(m * d, seed), d).0)
}

fn read_u32(t: &Tensor<u32>) -> Vec<u32> {
    pollster::block_on(t.read(&ctx().gpu)).unwrap()
}

#[test]
fn similarity_kernel_matches_reference_in_both_forms() {
    let c = ctx();
    for (seed, &(_, d, m)) in SHAPES.iter().enumerate() {
        let (ua, ub) = (unit_rows(m, d, 10 + seed as u64), unit_rows(m, d, 20 + seed as u64));
        let (gua, gub) = (upload(&[m, d], &ua), upload(&[m, d], &ub));
        let assign = Tensor::<u32>::zeros(&c.gpu, &[m], "assign").unwrap();
        let sim = zeros(&[m]);
        run(&[&c
            .k
            .similarity(&c.gpu, &gua, &gub, MmcsForm::Max, &assign, &sim)
            .unwrap()]);
        let (want_sim, want_arg) = r::similarity(&ua, &ub, d, MmcsForm::Max, &[]);
        assert_close(&format!("max similarity m {m} d {d}"), &read(&sim), &want_sim, TOL);
        assert_eq!(read_u32(&assign), want_arg, "argmax m {m} d {d}");
        // A given matching: the reversed order.
        let matching: Vec<u32> = (0..m as u32).rev().collect();
        assign.write(&c.gpu, &matching).unwrap();
        run(&[&c
            .k
            .similarity(&c.gpu, &gua, &gub, MmcsForm::Match, &assign, &sim)
            .unwrap()]);
        let (want_sim, _) = r::similarity(&ua, &ub, d, MmcsForm::Match, &matching);
        assert_close(&format!("matched similarity m {m} d {d}"), &read(&sim), &want_sim, TOL);
        assert_eq!(read_u32(&assign), matching, "the match form leaves the matching alone");
    }
}

#[test]
fn similarity_ties_go_to_the_lowest_latent() {
    let c = ctx();
    let (m, d) = (9, 4);
    // Rows 0, 3 and 6 of ua are the same vector, as are 1, 4, 7 and 2, 5, 8.
    let base = unit_rows(3, d, 70);
    let ua: Vec<f64> = (0..m)
        .flat_map(|i| base[(i % 3) * d..(i % 3 + 1) * d].to_vec())
        .collect();
    let ub = unit_rows(m, d, 71);
    let assign = Tensor::<u32>::zeros(&c.gpu, &[m], "assign").unwrap();
    let sim = zeros(&[m]);
    run(&[&c
        .k
        .similarity(
            &c.gpu,
            &upload(&[m, d], &ua),
            &upload(&[m, d], &ub),
            MmcsForm::Max,
            &assign,
            &sim,
        )
        .unwrap()]);
    let got = read_u32(&assign);
    assert!(
        got.iter().all(|&i| i < 3),
        "ties must resolve to the first copy: {got:?}"
    );
    assert_eq!(got, r::similarity(&ua, &ub, d, MmcsForm::Max, &[]).1);
}

#[test]
fn mfr_gradient_kernel_matches_reference_and_accumulates() {
    let c = ctx();
    for (seed, &(_, d, m)) in SHAPES.iter().enumerate() {
        let (ua, ub) = (unit_rows(m, d, 30 + seed as u64), unit_rows(m, d, 40 + seed as u64));
        let (_, assign) = r::similarity(&ua, &ub, d, MmcsForm::Max, &[]); // many-to-one: collisions in ga
        let (ga0, gb0) = (rounded(&normals(m * d, 50)), rounded(&normals(m * d, 60)));
        let (ga, gb) = (upload(&[m, d], &ga0), upload(&[m, d], &gb0));
        let gassign = Tensor::<u32>::from_slice(&c.gpu, &[m], &assign, "assign").unwrap();
        let step = c.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: MFR_STEP_UNIFORM_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        c.gpu
            .queue
            .write_buffer(&step, 0, bytemuck::cast_slice(&[1.5f32, 0.0, 0.0, 0.0]));
        let scale = -0.25f32;
        let dsp = c.k.mfr_gradient(
            &c.gpu,
            &step,
            scale,
            &upload(&[m, d], &ua),
            &upload(&[m, d], &ub),
            &gassign,
            &ga,
            &gb,
        );
        run(&[&dsp.unwrap()]);
        let (wa, wb) = r::similarity_gradient(&ua, &ub, &assign, d, 1.5 * scale as f64);
        let plus = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<_>>();
        assert_close(&format!("mfr grad a m {m} d {d}"), &read(&ga), &plus(&wa, &ga0), TOL);
        assert_close(&format!("mfr grad b m {m} d {d}"), &read(&gb), &plus(&wb, &gb0), TOL);
    }
}

#[test]
fn fill_and_reinit_statistic_kernels_match_reference() {
    let c = ctx();
    let t = upload(&[37, 5], &normals(185, 1));
    run(&[&c.k.fill(&c.gpu, &t, 0.5).unwrap()]);
    assert!(read(&t).iter().all(|&v| v == 0.5));
    for (m, batch, k) in [(53, 37, 8), (7, 100, 1), (64, 64, 64)] {
        let counts: Vec<f64> = (0..m).map(|j| ((j * 7919) % (batch + 1)) as f64).collect();
        let acc = zeros(&[8]);
        let rate = k as f32 / m as f32;
        let stat = r::reinit_statistic(&counts, batch, rate as f64);
        let dsp =
            c.k.deviation(&c.gpu, &upload(&[m], &counts), batch, rate, 2.5, &acc, 4)
                .unwrap();
        run(&[&dsp, &dsp]);
        let got = read(&acc);
        assert!(
            (got[4] - stat).abs() <= 1e-5 * stat.max(1.0),
            "stat {} vs {stat}",
            got[4]
        );
        assert_eq!(
            got[5],
            if stat > 2.5 { 2.0 } else { 0.0 },
            "steps over the threshold (m {m})"
        );
    }
}

fn cfg(arch: Architecture) -> SaeConfig {
    SaeConfig {
        arch,
        activation: Activation::TopK { k: 4 },
        d_in: 5,
        d_sae: 7,
        batch: 6,
        lr: 1e-3,
        paper_exact: false,
        adam: AdamHyper::default(),
        auxk: None,
        step_path: None,
    }
}

/// The MFR penalty as a function of the raw parameters of SAE `n`.
fn penalty_of(saes: &[RefSae], n: usize, param: usize, value: &[f64], form: MmcsForm, assigns: &[Vec<u32>]) -> f64 {
    let dicts: Vec<Vec<f64>> = saes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s2 = RefSae::new(s.cfg, &SaeWeights::init(&s.cfg, 0));
            s2.params = s.params.clone();
            if i == n {
                s2.params[param] = value.to_vec();
            }
            // The standard decoder is a unit-row matrix; the tied one is normalised in `dictionary`.
            if s.cfg.arch == Architecture::Standard {
                s2.params[2] = r::rows_normalise(&s2.params[2], s.cfg.d_in).0;
            }
            s2.dictionary().0
        })
        .collect();
    r::mfr_penalty(&dicts, saes[0].cfg.d_in, 0.7, form, assigns).0
}

#[test]
fn mfr_gradient_matches_finite_differences_in_both_forms_and_architectures() {
    for arch in [Architecture::Tied, Architecture::Standard] {
        let c = cfg(arch);
        let saes: Vec<RefSae> = (0..3).map(|n| RefSae::new(c, &SaeWeights::init(&c, 100 + n))).collect();
        let dicts: Vec<Vec<f64>> = saes.iter().map(|s| s.dictionary().0).collect();
        let m = c.d_sae as u32;
        let assigns: Vec<Vec<u32>> = (0..3).map(|p| (0..m).map(|j| (j + p) % m).collect()).collect();
        for form in [MmcsForm::Max, MmcsForm::Match] {
            let (_, g_u) = r::mfr_penalty(&dicts, c.d_in, 0.7, form, &assigns);
            for (n, sae) in saes.iter().enumerate() {
                let mut analytic: Vec<Vec<f64>> = sae.params.iter().map(|p| vec![0.0; p.len()]).collect();
                sae.add_dictionary_gradient(&mut analytic, &g_u[n]);
                let param = if arch == Architecture::Tied { 0 } else { 2 };
                let mut grad = analytic[param].clone();
                if arch == Architecture::Standard {
                    // On the unit sphere only the tangent part of the gradient is defined.
                    grad = r::project(&grad, &sae.params[2], None, c.d_in);
                }
                let h = 1e-6;
                let mut p = sae.params[param].clone();
                for i in 0..p.len() {
                    let keep = p[i];
                    p[i] = keep + h;
                    let up = penalty_of(&saes, n, param, &p, form, &assigns);
                    p[i] = keep - h;
                    let down = penalty_of(&saes, n, param, &p, form, &assigns);
                    p[i] = keep;
                    let numeric = (up - down) / (2.0 * h);
                    assert!(
                        (grad[i] - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                        "{arch:?} {form:?} SAE {n} [{i}]: analytic {} vs finite difference {numeric}",
                        grad[i]
                    );
                }
            }
        }
    }
}

fn ensemble_cfg(arch: Architecture, lambda: f32, form: MmcsForm, steps: u64) -> EnsembleConfig {
    EnsembleConfig {
        sae: SaeConfig {
            arch,
            activation: Activation::TopK { k: 6 },
            d_in: 19,
            d_sae: 53,
            batch: 37,
            lr: 2e-3,
            paper_exact: false,
            adam: AdamHyper::default(),
            auxk: None,
            step_path: None,
        },
        n_saes: 3,
        k_per_sae: vec![],
        lr_per_sae: vec![],
        mfr: MfrConfig {
            lambda,
            warmup_steps: 4,
            form,
            match_every: 1000,
        },
        reinit: None,
        lr_warmup_steps: 0,
        lr_decay_steps: 0,
        steps,
        log_every: steps,
        seed: 5,
        denoising: false,
    }
}

#[test]
fn ten_gpu_ensemble_steps_with_mfr_match_the_reference_ensemble() {
    let gpu = &ctx().gpu;
    for (arch, path) in [Architecture::Tied, Architecture::Standard]
        .into_iter()
        .flat_map(|a| [(a, StepPath::Dense), (a, StepPath::Sparse)])
    {
        for form in [MmcsForm::Max, MmcsForm::Match] {
            let mut cfg = ensemble_cfg(arch, 3.0, form, 10);
            cfg.sae.step_path = Some(path);
            let weights = cfg.initial_weights();
            let mut ens = Ensemble::new(gpu, &ctx().k, cfg.clone(), &weights).unwrap();
            let mut refs: Vec<RefSae> = weights
                .iter()
                .enumerate()
                .map(|(n, w)| RefSae::new(cfg.sae_config(n), w))
                .collect();
            let mut assigns = Vec::new();
            for (t, x) in sparse_batches(37, 19, 10, 3).into_iter().enumerate() {
                pollster::block_on(ens.step(gpu, &f32s(&x))).unwrap();
                if t == 0 {
                    // The match form's matching, computed by the trainer from the initial weights.
                    assigns = pollster::block_on(ens.mfr().unwrap().assignments(gpu)).unwrap();
                }
                r::ensemble_step(&mut refs, &x, &x, cfg.mfr.weight(t as u64), form, &assigns);
            }
            let got = pollster::block_on(ens.weights(gpu)).unwrap();
            for (n, (g, want)) in got.iter().zip(&refs).enumerate() {
                for (p, wp) in g.params.iter().zip(&want.params) {
                    let e = rel_err(&p.data.iter().map(|&v| v as f64).collect::<Vec<_>>(), wp);
                    assert!(
                        e <= 1e-3,
                        "{arch:?} {path:?} {form:?} SAE {n} {}: relative error {e:.2e}",
                        p.name
                    );
                }
            }
            // And MFR did something: the ensemble differs from independent training.
            let mut alone: Vec<RefSae> = weights
                .iter()
                .enumerate()
                .map(|(n, w)| RefSae::new(cfg.sae_config(n), w))
                .collect();
            for x in sparse_batches(37, 19, 10, 3) {
                r::ensemble_step(&mut alone, &x, &x, 0.0, form, &[]);
            }
            let dec = if arch == Architecture::Tied { 0 } else { 2 };
            let moved = rel_err(&refs[0].params[dec], &alone[0].params[dec]);
            assert!(
                moved > 1e-3,
                "{arch:?} {form:?}: the penalty changed nothing ({moved:.1e})"
            );
        }
    }
}

#[test]
fn a_positive_lambda_raises_pairwise_mmcs_above_the_baseline() {
    let gpu = &ctx().gpu;
    let batches = sparse_batches(37, 19, 150, 11);
    let final_mmcs = |lambda: f32| {
        let cfg = ensemble_cfg(Architecture::Tied, lambda, MmcsForm::Max, 150);
        let weights = cfg.initial_weights();
        let mut ens = Ensemble::new(gpu, &ctx().k, cfg, &weights).unwrap();
        for x in &batches {
            pollster::block_on(ens.step(gpu, &f32s(x))).unwrap();
        }
        let log = pollster::block_on(ens.log(gpu, None)).unwrap();
        let n = log.pairs.len() as f64;
        let matched = log.pairs.iter().map(|p| p.matched).sum::<f64>() / n;
        let max = log.pairs.iter().map(|p| 0.5 * (p.max_ab + p.max_ba)).sum::<f64>() / n;
        (matched, max)
    };
    let (base_match, base_max) = final_mmcs(0.0);
    let (mfr_match, mfr_max) = final_mmcs(1.0);
    println!("pairwise MMCS matched {base_match:.3} → {mfr_match:.3}, max {base_max:.3} → {mfr_max:.3}");
    assert!(
        mfr_max > base_max + 0.05,
        "MMCS_max {base_max:.3} (λ = 0) vs {mfr_max:.3} (λ = 1)"
    );
    assert!(
        mfr_match > base_match,
        "MMCS_match {base_match:.3} (λ = 0) vs {mfr_match:.3} (λ = 1)"
    );
}

#[test]
fn bad_ensemble_values_are_refused_with_a_clear_message() {
    let base = ensemble_cfg(Architecture::Tied, 1.0, MmcsForm::Max, 10);
    let mut cases: Vec<(EnsembleConfig, &str)> = Vec::new();
    let mut c = base.clone();
    c.sae.activation = Activation::TopK { k: 54 };
    cases.push((c, "k = 54 must be between 1 and the dictionary size m = 53"));
    let mut c = base.clone();
    c.n_saes = 0;
    cases.push((c, "at least 1 SAE"));
    let mut c = base.clone();
    c.sae.lr = -1e-3;
    cases.push((c, "learning rate must be a finite number > 0"));
    let mut c = base.clone();
    c.mfr.lambda = f32::NAN;
    cases.push((c, "λ (lambda) must be a finite number ≥ 0, got NaN"));
    let mut c = base.clone();
    c.k_per_sae = vec![3, 4];
    cases.push((c, "k_per_sae has 2 values for 3 SAEs"));
    let mut c = base.clone();
    c.k_per_sae = vec![3, 4, 60];
    cases.push((c, "k = 60"));
    for (c, needle) in cases {
        let err = c
            .validate()
            .err()
            .unwrap_or_else(|| panic!("accepted a config that should fail with {needle:?}"));
        assert!(err.to_string().contains(needle), "{err} does not say {needle:?}");
        let weights = base.initial_weights();
        assert!(Ensemble::new(&ctx().gpu, &ctx().k, c, &weights).is_err());
    }
}

#[test]
fn the_reinit_rule_resets_an_sae_and_logs_the_event() {
    let gpu = &ctx().gpu;
    let mut cfg = ensemble_cfg(Architecture::Tied, 0.0, MmcsForm::Max, 6);
    // Any non-uniform firing exceeds this threshold, so every window triggers.
    cfg.reinit = Some(ReinitConfig { threshold: 1e-6 });
    let weights = cfg.initial_weights();
    let mut ens = Ensemble::new(gpu, &ctx().k, cfg.clone(), &weights).unwrap();
    for x in sparse_batches(37, 19, 3, 5) {
        pollster::block_on(ens.step(gpu, &f32s(&x))).unwrap();
    }
    let before = pollster::block_on(ens.weights(gpu)).unwrap();
    let log = pollster::block_on(ens.log(gpu, None)).unwrap();
    assert_eq!(log.events.len(), cfg.n_saes, "one event per SAE: {:?}", log.events);
    assert!(log
        .events
        .iter()
        .all(|e| e.kind == "reinit" && e.step == 3 && e.detail.contains("statistic")));
    let after = pollster::block_on(ens.weights(gpu)).unwrap();
    for (n, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_ne!(b.params[0].data, a.params[0].data, "SAE {n} kept its weights");
        assert!(
            a.params[1].data.iter().all(|&v| v == 0.0),
            "SAE {n}: a fresh init has zero biases"
        );
        assert_eq!(ens.saes()[n].adam_steps(), 0, "SAE {n}: Adam's step count restarts");
    }
    // Without the rule, the same statistic is only reported.
    cfg.reinit = None;
    let mut ens = Ensemble::new(gpu, &ctx().k, cfg, &weights).unwrap();
    pollster::block_on(ens.step(gpu, &f32s(&sparse_batches(37, 19, 1, 5)[0]))).unwrap();
    let log = pollster::block_on(ens.log(gpu, None)).unwrap();
    assert!(log.events.is_empty() && log.saes[0].window.reinit_stat_max > 0.0);
}
