//! Mutual Feature Regularization: its kernels against the reference, the
//! reference's gradient against finite differences (both MMCS forms), a GPU
//! ensemble against the reference ensemble, and what λ does to agreement.

mod common;

use common::*;
use mfr_sae::gpu::Tensor;
use mfr_sae::kernels::{groups_of, GroupScratch, Groups, MaxPartials, MmcsForm, PairGradients, MFR_STEP_UNIFORM_BYTES};
use mfr_sae::mfr::MfrConfig;
use mfr_sae::model::{Activation, Architecture, SaeConfig, SaeWeights, StepPath};
use mfr_sae::reference::{self as r, RefSae};
use mfr_sae::train::{Ensemble, EnsembleConfig, ReinitConfig};

const TOL: f64 = 1e-5;

fn unit_rows(m: usize, d: usize, seed: u64) -> Vec<f64> {
    rounded(&r::rows_normalise(&normals(m * d, seed), d).0)
}

fn read_u32(t: &Tensor<u32>) -> Vec<u32> {
    pollster::block_on(t.read(&ctx().gpu)).unwrap()
}

/// Dictionary sizes m and widths d off every tile: a dispatch of the tiled kernels covers
/// 64 rows of ua (fewer for d > 512), a workgroup 64 latents of b, as do those of the 1-D kernels.
const DICT_SHAPES: &[(usize, usize)] = &[
    (53, 19),
    (1, 1),
    (130, 7),
    (65, 19),
    (129, 7),
    (7, 130),
    (300, 3),
    (65, 1100),
];

fn max_partials(m: usize, d: usize) -> MaxPartials {
    MaxPartials::new(&ctx().gpu, m, d).unwrap()
}

/// Both scratch forms of the max similarity: S by the matmul, and the chunked tiles.
fn both_scratches(m: usize, d: usize) -> [(&'static str, MaxPartials); 2] {
    let gpu = &ctx().gpu;
    [
        ("matrix", MaxPartials::matrix(gpu, m).unwrap()),
        ("chunks", MaxPartials::chunked(gpu, m, d).unwrap()),
    ]
}

#[test]
fn similarity_kernel_matches_reference_in_both_forms() {
    let c = ctx();
    for (seed, &(m, d)) in DICT_SHAPES.iter().enumerate() {
        let (ua, ub) = (unit_rows(m, d, 10 + seed as u64), unit_rows(m, d, 20 + seed as u64));
        let (gua, gub) = (upload(&[m, d], &ua), upload(&[m, d], &ub));
        let assign = Tensor::<u32>::zeros(&c.gpu, &[m], "assign").unwrap();
        let sim = zeros(&[m]);
        let (want_sim, want_arg) = r::similarity(&ua, &ub, d, MmcsForm::Max, &[]);
        for (kind, partials) in both_scratches(m, d) {
            let plan =
                c.k.similarity(&c.gpu, &gua, &gub, MmcsForm::Max, &partials, &assign, &sim)
                    .unwrap();
            run(&plan.iter().collect::<Vec<_>>());
            assert_close(
                &format!("max similarity ({kind}) m {m} d {d}"),
                &read(&sim),
                &want_sim,
                TOL,
            );
            assert_eq!(read_u32(&assign), want_arg, "argmax ({kind}) m {m} d {d}");
        }
        let partials = max_partials(m, d);
        // A given matching: the reversed order.
        let matching: Vec<u32> = (0..m as u32).rev().collect();
        assign.write(&c.gpu, &matching).unwrap();
        let plan =
            c.k.similarity(&c.gpu, &gua, &gub, MmcsForm::Match, &partials, &assign, &sim)
                .unwrap();
        run(&plan.iter().collect::<Vec<_>>());
        let (want_sim, _) = r::similarity(&ua, &ub, d, MmcsForm::Match, &matching);
        assert_close(&format!("matched similarity m {m} d {d}"), &read(&sim), &want_sim, TOL);
        assert_eq!(read_u32(&assign), matching, "the match form leaves the matching alone");
    }
}

#[test]
fn similarity_ties_go_to_the_lowest_latent() {
    let c = ctx();
    for (m, d, copies) in [(9, 4, 3), (130, 7, 5), (53, 19, 11), (65, 1, 2), (300, 3, 17)] {
        // Row i of ua is base row i % copies: every direction has copies later in its 64-row
        // chunk and in later chunks, so ties arise within and across chunks.
        let base = unit_rows(copies, d, 70 + m as u64);
        let ua: Vec<f64> = (0..m)
            .flat_map(|i| base[(i % copies) * d..(i % copies + 1) * d].to_vec())
            .collect();
        let ub = unit_rows(m, d, 71);
        let assign = Tensor::<u32>::zeros(&c.gpu, &[m], "assign").unwrap();
        let sim = zeros(&[m]);
        for (kind, partials) in both_scratches(m, d) {
            let plan =
                c.k.similarity(
                    &c.gpu,
                    &upload(&[m, d], &ua),
                    &upload(&[m, d], &ub),
                    MmcsForm::Max,
                    &partials,
                    &assign,
                    &sim,
                )
                .unwrap();
            run(&plan.iter().collect::<Vec<_>>());
            let got = read_u32(&assign);
            assert!(
                got.iter().all(|&i| (i as usize) < copies),
                "m {m} ({kind}): ties must resolve to the first copy: {got:?}"
            );
            assert_eq!(
                got,
                r::similarity(&ua, &ub, d, MmcsForm::Max, &[]).1,
                "m {m} d {d} ({kind})"
            );
        }
    }
}

#[test]
fn similarity_matrix_kernel_matches_the_cosine_matrix() {
    let c = ctx();
    for (seed, &(ma, mb, d)) in [(53, 19, 7), (1, 1, 1), (130, 65, 7), (65, 300, 19), (7, 53, 130)]
        .iter()
        .enumerate()
    {
        let (ua, ub) = (unit_rows(ma, d, 80 + seed as u64), unit_rows(mb, d, 90 + seed as u64));
        let s = zeros(&[ma, mb]);
        let dsp =
            c.k.similarity_matrix(&c.gpu, &upload(&[ma, d], &ua), &upload(&[mb, d], &ub), &s);
        run(&dsp.unwrap().iter().collect::<Vec<_>>());
        let want = mfr_sae::metrics::cosine_matrix(&f32s(&ua), &f32s(&ub), d);
        assert_close(&format!("S {ma}×{mb} d {d}"), &read(&s), &want, TOL);
    }
}

/// Assignments of b's m latents to a's: many-to-one (everything on latent 0; a random map
/// with collisions and unused latents) and one-to-one (a rotation).
fn assignments(m: usize, seed: u64) -> Vec<(&'static str, Vec<u32>)> {
    let mut rng = mfr_sae::rng::Rng::new(seed);
    vec![
        ("all onto latent 0", vec![0; m]),
        (
            "random, many-to-one",
            (0..m).map(|_| rng.below(m.div_ceil(3)) as u32).collect(),
        ),
        (
            "rotation, one-to-one",
            (0..m as u32).map(|j| (j + 5) % m as u32).collect(),
        ),
    ]
}

#[test]
fn gpu_grouping_by_partner_is_the_stable_grouping() {
    let c = ctx();
    for &(m, _) in DICT_SHAPES {
        let scratch = GroupScratch::new(&c.gpu, m).unwrap();
        let groups = Groups::new(&c.gpu, m).unwrap();
        for (what, assign) in assignments(m, m as u64) {
            let gassign = Tensor::<u32>::from_slice(&c.gpu, &[m], &assign, "assign").unwrap();
            let plan = c.k.group_by_partner(&c.gpu, &gassign, &scratch, &groups).unwrap();
            // Twice: the scratch is left ready for the next use.
            run(&plan.iter().chain(&plan).collect::<Vec<_>>());
            let (offsets, members) = groups_of(&assign, m);
            assert_eq!(read_u32(&groups.offsets), offsets, "m {m} {what}: offsets");
            assert_eq!(read_u32(&groups.members), members, "m {m} {what}: members");
        }
    }
}

#[test]
fn mfr_gradient_kernel_matches_reference_and_accumulates() {
    let c = ctx();
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
    for (seed, &(m, d)) in DICT_SHAPES.iter().enumerate() {
        let (ua, ub) = (unit_rows(m, d, 30 + seed as u64), unit_rows(m, d, 40 + seed as u64));
        let (gua, gub) = (upload(&[m, d], &ua), upload(&[m, d], &ub));
        let (_, argmax) = r::similarity(&ua, &ub, d, MmcsForm::Max, &[]);
        let mut cases = assignments(m, 100 + seed as u64);
        cases.push(("the argmax", argmax));
        let scratch = GroupScratch::new(&c.gpu, m).unwrap();
        for (what, assign) in cases {
            let (ga0, gb0) = (rounded(&normals(m * d, 50)), rounded(&normals(m * d, 60)));
            let (ga, gb) = (upload(&[m, d], &ga0), upload(&[m, d], &gb0));
            let gassign = Tensor::<u32>::from_slice(&c.gpu, &[m], &assign, "assign").unwrap();
            // The Max form groups on the GPU every step; the Match form uploads its groups.
            let groups = Groups::new(&c.gpu, m).unwrap();
            let mut plan = c.k.group_by_partner(&c.gpu, &gassign, &scratch, &groups).unwrap();
            let uploaded = Groups::new(&c.gpu, m).unwrap();
            uploaded.write(&c.gpu, &assign).unwrap();
            let into = |overwrite_a, overwrite_b| PairGradients {
                a: &ga,
                b: &gb,
                overwrite_a,
                overwrite_b,
            };
            for g in [&groups, &uploaded] {
                plan.extend(
                    c.k.mfr_gradient(&c.gpu, &step, scale, &gua, &gub, &gassign, g, into(false, false))
                        .unwrap(),
                );
            }
            run(&plan.iter().collect::<Vec<_>>());
            let (wa, wb) = r::similarity_gradient(&ua, &ub, &assign, d, 1.5 * scale as f64);
            let plus = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + 2.0 * y).collect::<Vec<_>>();
            let label = format!("m {m} d {d} {what}");
            assert_close(&format!("mfr grad a {label}"), &read(&ga), &plus(&ga0, &wa), TOL);
            assert_close(&format!("mfr grad b {label}"), &read(&gb), &plus(&gb0, &wb), TOL);
            // An SAE's first pair overwrites its gradient (what was there is ignored), each
            // side on its own.
            for (oa, ob) in [(true, false), (false, true), (true, true)] {
                let (ga_in, gb_in) = (read(&ga), read(&gb));
                let fresh =
                    c.k.mfr_gradient(&c.gpu, &step, scale, &gua, &gub, &gassign, &uploaded, into(oa, ob));
                run(&fresh.unwrap().iter().collect::<Vec<_>>());
                let after = |was: &[f64], w: &[f64], over: bool| -> Vec<f64> {
                    was.iter().zip(w).map(|(x, y)| if over { *y } else { x + y }).collect()
                };
                let what = format!("mfr grad overwrite a {oa} b {ob} {label}");
                assert_close(&what, &read(&ga), &after(&ga_in, &wa, oa), TOL);
                assert_close(&what, &read(&gb), &after(&gb_in, &wb, ob), TOL);
            }
        }
    }
}

/// A random permutation of 0..m.
fn permutation(m: usize, rng: &mut mfr_sae::rng::Rng) -> Vec<u32> {
    let mut p: Vec<u32> = (0..m as u32).collect();
    for i in (1..m).rev() {
        p.swap(i, rng.below(i + 1));
    }
    p
}

#[test]
fn every_matched_pair_in_one_dispatch_matches_the_reference_and_the_pair_by_pair_kernels() {
    let c = ctx();
    let step = mfr_sae::kernels::MfrStep::buffer(&c.gpu);
    let weight = 0.7f32;
    mfr_sae::kernels::MfrStep::write(&c.gpu, &step, weight);
    let u32s = |v: &[u32]| Tensor::<u32>::from_slice(&c.gpu, &[v.len()], v, "u32s").unwrap();
    // d 19, 130, 1: the value-by-value path; 16 and 12: the vec4 path.
    for (case, &(n, m, d)) in [(2, 53, 19), (3, 64, 16), (4, 7, 130), (5, 9, 12), (3, 5, 1)]
        .iter()
        .enumerate()
    {
        let mut rng = mfr_sae::rng::Rng::new(70 + case as u64);
        let us: Vec<Vec<f64>> = (0..n)
            .map(|s| unit_rows(m, d, 80 + 10 * case as u64 + s as u64))
            .collect();
        let pairs = mfr_sae::mfr::pairs(n);
        let assigns: Vec<Vec<u32>> = pairs.iter().map(|_| permutation(m, &mut rng)).collect();
        let inverses: Vec<Vec<u32>> = assigns.iter().map(|a| groups_of(a, m).1).collect();
        let label = format!("N {n} m {m} d {d}");

        let stacked = upload(&[n * m, d], &us.concat());
        let (assign_all, inverse_all) = (u32s(&assigns.concat()), u32s(&inverses.concat()));
        let p = pairs.len();
        let sim = zeros(&[p * m]);
        // Sums land on what the accumulator held; the gradient overwrites what was there.
        let acc0 = rounded(&normals(p + 1, 90));
        let acc = upload(&[p + 1], &acc0);
        let grads = upload(&[n * m, d], &rounded(&normals(n * m * d, 91)));
        let scale = -1.0 / (p as f32 * m as f32);
        let plan = [
            c.k.matched_pairs(&c.gpu, n, &stacked, &assign_all, &sim).unwrap(),
            c.k.totals(&c.gpu, &sim, p, &acc, 1).unwrap(),
            c.k.mfr_gradient_pairs(&c.gpu, &step, scale, n, &stacked, &assign_all, &inverse_all, &grads)
                .unwrap(),
        ];
        run(&plan.iter().collect::<Vec<_>>());

        // Against the reference: each pair's similarities and sum, and the penalty's gradient.
        let got_sim = read(&sim);
        let mut want_acc = acc0.clone();
        for (q, &(a, b)) in pairs.iter().enumerate() {
            let (want, _) = r::similarity(&us[a], &us[b], d, MmcsForm::Match, &assigns[q]);
            assert_close(
                &format!("{label} pair {q} similarity"),
                &got_sim[q * m..(q + 1) * m],
                &want,
                TOL,
            );
            want_acc[1 + q] += want.iter().sum::<f64>();
        }
        assert_close(&format!("{label} sums"), &read(&acc), &want_acc, TOL);
        let (_, want_grads) = r::mfr_penalty(&us, d, weight as f64, MmcsForm::Match, &assigns);
        let got_grads = read(&grads);
        assert_close(&format!("{label} gradients"), &got_grads, &want_grads.concat(), TOL);
        // … and the reference penalty's finite differences (it is linear in each value).
        let h = 1e-4;
        for e in (0..n * m * d).step_by((n * m * d / 7).max(1)) {
            let (s, k) = (e / (m * d), e % (m * d));
            let at = |delta: f64| {
                let mut v = us.clone();
                v[s][k] += delta;
                r::mfr_penalty(&v, d, weight as f64, MmcsForm::Match, &assigns).0
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (got_grads[e] - numeric).abs() <= 1e-6 + 1e-4 * numeric.abs(),
                "{label} gradient [{e}]: {} vs finite difference {numeric}",
                got_grads[e]
            );
        }

        // The same bits as the pair-by-pair kernels, run pair after pair as an unstacked step does.
        let dicts: Vec<Tensor<f32>> = us.iter().map(|u| upload(&[m, d], u)).collect();
        let pair_grads: Vec<Tensor<f32>> = (0..n).map(|_| zeros(&[m, d])).collect();
        let partials = MaxPartials::new(&c.gpu, 1, d).unwrap();
        let mut written = vec![false; n];
        let mut pair_plan = Vec::new();
        let pair_sims: Vec<Tensor<f32>> = pairs.iter().map(|_| zeros(&[m])).collect();
        let groups: Vec<Groups> = assigns
            .iter()
            .map(|a| {
                let g = Groups::new(&c.gpu, m).unwrap();
                g.write(&c.gpu, a).unwrap();
                g
            })
            .collect();
        let pair_assigns: Vec<Tensor<u32>> = assigns.iter().map(|a| u32s(a)).collect();
        for (q, &(a, b)) in pairs.iter().enumerate() {
            pair_plan.extend(
                c.k.similarity(
                    &c.gpu,
                    &dicts[a],
                    &dicts[b],
                    MmcsForm::Match,
                    &partials,
                    &pair_assigns[q],
                    &pair_sims[q],
                )
                .unwrap(),
            );
            let into = PairGradients {
                a: &pair_grads[a],
                b: &pair_grads[b],
                overwrite_a: !std::mem::replace(&mut written[a], true),
                overwrite_b: !std::mem::replace(&mut written[b], true),
            };
            pair_plan.extend(
                c.k.mfr_gradient(
                    &c.gpu,
                    &step,
                    scale,
                    &dicts[a],
                    &dicts[b],
                    &pair_assigns[q],
                    &groups[q],
                    into,
                )
                .unwrap(),
            );
        }
        run(&pair_plan.iter().collect::<Vec<_>>());
        let same_bits = |what: String, all: &[f64], one: &[f64]| {
            let differs = (0..one.len()).find(|&i| (all[i] as f32).to_bits() != (one[i] as f32).to_bits());
            if let Some(i) = differs {
                panic!(
                    "{what}: value {i} is {} in one dispatch, {} pair by pair",
                    all[i], one[i]
                );
            }
        };
        for (q, one) in pair_sims.iter().enumerate() {
            same_bits(format!("{label} pair {q} similarity"), &got_sim[q * m..], &read(one));
        }
        for (s, one) in pair_grads.iter().enumerate() {
            same_bits(format!("{label} SAE {s} gradient"), &got_grads[s * m * d..], &read(one));
        }
    }
}

fn cfg(arch: Architecture) -> SaeConfig {
    SaeConfig::new(arch, Activation::TopK { k: 4 }, 5, 7, 6, 1e-3)
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
    EnsembleConfig::new(
        SaeConfig::new(arch, Activation::TopK { k: 6 }, 19, 53, 37, 2e-3),
        3,
        MfrConfig {
            lambda,
            warmup_steps: 4,
            form,
            match_every: 1000,
        },
        steps,
        steps,
        5,
    )
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

#[test]
fn matchings_and_logged_pair_mmcs_agree_with_the_cpu_metrics() {
    // The trainer forms S on the GPU; the CPU metrics compute the cosines themselves.
    let gpu = &ctx().gpu;
    let cfg = ensemble_cfg(Architecture::Tied, 3.0, MmcsForm::Match, 3);
    let weights = cfg.initial_weights();
    let mut ens = Ensemble::new(gpu, &ctx().k, cfg.clone(), &weights).unwrap();
    let (m, d) = (cfg.sae.d_sae, cfg.sae.d_in);
    let initial: Vec<Vec<f32>> = weights.iter().map(|w| w.dictionary()).collect();
    for x in sparse_batches(37, 19, 3, 9) {
        pollster::block_on(ens.step(gpu, &f32s(&x))).unwrap();
    }
    let assigns = pollster::block_on(ens.mfr().unwrap().assignments(gpu)).unwrap();
    for (p, &(a, b)) in mfr_sae::mfr::pairs(cfg.n_saes).iter().enumerate() {
        let (_, pairs) = mfr_sae::metrics::mmcs_match(&initial[a], &initial[b], d);
        let mut want = vec![0u32; m];
        pairs.iter().for_each(|&(i, j)| want[j] = i as u32);
        assert_eq!(assigns[p], want, "pair ({a}, {b}): the matching of the initial weights");
    }
    let dicts = pollster::block_on(ens.dictionaries(gpu)).unwrap();
    let log = pollster::block_on(ens.log(gpu, None)).unwrap();
    for rec in &log.pairs {
        let (da, db) = (&dicts[rec.a], &dicts[rec.b]);
        let close = |what: &str, got: f64, want: f64| {
            assert!(
                (got - want).abs() < 1e-6,
                "pair ({}, {}) {what}: {got} vs {want}",
                rec.a,
                rec.b
            )
        };
        close("max_ab", rec.max_ab, mfr_sae::metrics::mmcs_max(da, db, d));
        close("max_ba", rec.max_ba, mfr_sae::metrics::mmcs_max(db, da, d));
        close("matched", rec.matched, mfr_sae::metrics::mmcs_match(da, db, d).0);
    }
}
