//! The same kernels and training step, checked against the reference inside a
//! real browser's WebGPU (headless Chromium: SwiftShader). Run with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test --target wasm32-unknown-unknown --test web`.
#![cfg(target_arch = "wasm32")]

use mfr_sae::gpu::{Gpu, Tensor};
use mfr_sae::kernels::{BatchTopKScratch, ColumnOp, Kernels, MaxPartials, MmcsForm, Op, SparseCode, TopK};
use mfr_sae::mfr::MfrConfig;
use mfr_sae::model::{Activation, Architecture, AuxK, SaeConfig, StepPath};
use mfr_sae::reference::{self as r, RefSae};
use mfr_sae::rng::Rng;
use mfr_sae::train::{Ensemble, EnsembleConfig};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn setup() -> (Gpu, Kernels) {
    let gpu = Gpu::new().await.expect("the browser offers a WebGPU adapter");
    let kernels = Kernels::new(&gpu).unwrap();
    (gpu, kernels)
}

fn data(n: usize, seed: u64) -> Vec<f64> {
    Rng::new(seed).normals(n).into_iter().map(|v| v as f32 as f64).collect()
}

fn up(gpu: &Gpu, shape: &[usize], v: &[f64]) -> Tensor<f32> {
    Tensor::from_slice(gpu, shape, &v.iter().map(|&x| x as f32).collect::<Vec<_>>(), "input").unwrap()
}

async fn down(gpu: &Gpu, t: &Tensor<f32>) -> Vec<f64> {
    t.read(gpu).await.unwrap().into_iter().map(|v| v as f64).collect()
}

fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let scale = want.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    let err = got.iter().zip(want).fold(0.0f64, |m, (g, w)| m.max((g - w).abs())) / scale;
    assert!(
        got.len() == want.len() && err <= tol,
        "{what}: relative error {err:.2e}"
    );
}

#[wasm_bindgen_test]
async fn kernels_match_the_reference_in_the_browser() {
    let (gpu, k) = setup().await;
    let (b, d, m, kk) = (37, 19, 53, 8);
    let x = data(b * d, 1);
    let w = data(m * d, 2);
    let bias = data(m, 3);
    let (gx, gw, gbias) = (up(&gpu, &[b, d], &x), up(&gpu, &[m, d], &w), up(&gpu, &[m], &bias));
    let a = Tensor::zeros(&gpu, &[b, m], "a").unwrap();
    gpu.submit(&[&k.matmul(&gpu, &gx, Op::N, &gw, Op::T, Some(&gbias), 1.0, &a).unwrap()]);
    let want_a = r::add_row_vector(&r::matmul(&x, (b, d), Op::N, &w, (m, d), Op::T), &bias, 1.0);
    let got_a = down(&gpu, &a).await;
    assert_close("matmul", &got_a, &want_a, 1e-5);

    let (z, idx, val) = (
        Tensor::zeros(&gpu, &[b, m], "z").unwrap(),
        Tensor::<u32>::zeros(&gpu, &[b, kk], "idx").unwrap(),
        Tensor::zeros(&gpu, &[b, kk], "val").unwrap(),
    );
    let ga = up(&gpu, &[b, m], &got_a);
    let plan = k
        .topk(
            &gpu,
            &ga,
            kk,
            true,
            TopK {
                instances: 1,
                z: Some(&z),
                sparse: Some(SparseCode { idx: &idx, val: &val }),
            },
        )
        .unwrap();
    gpu.submit(&plan.iter().collect::<Vec<_>>());
    let (wz, widx, _) = r::topk(&got_a.iter().map(|v| *v as f32 as f64).collect::<Vec<_>>(), m, kk, true);
    assert_eq!(idx.read(&gpu).await.unwrap(), widx, "topk indices");
    assert_close("topk code", &down(&gpu, &z).await, &wz, 1e-6);

    // BatchTopK: the batch·k largest over the whole batch, and its threshold.
    let (bz, theta) = (Tensor::zeros(&gpu, &[b, m], "z").unwrap(), up(&gpu, &[1], &[0.5]));
    let scratch = BatchTopKScratch::new(&gpu).unwrap();
    let plan = k.batch_topk(&gpu, &ga, kk, 0.25, &scratch, &bz, &theta).unwrap();
    gpu.submit(&plan.iter().collect::<Vec<_>>());
    let want_bz = r::batch_topk(&got_a.iter().map(|v| *v as f32 as f64).collect::<Vec<_>>(), m, kk);
    assert_eq!(down(&gpu, &bz).await, want_bz, "batch topk code");
    assert_close(
        "batch topk threshold",
        &down(&gpu, &theta).await,
        &[r::batch_topk_threshold(0.5, &want_bz, 0.25)],
        1e-6,
    );

    let (grad, row_sq) = (
        Tensor::zeros(&gpu, &[b, d], "g").unwrap(),
        Tensor::zeros(&gpu, &[b], "sq").unwrap(),
    );
    let t = data(b * d, 4);
    gpu.submit(&[&k.mse(&gpu, &gx, &up(&gpu, &[b, d], &t), 1.0, &grad, &row_sq).unwrap()]);
    assert_close("mse gradient", &down(&gpu, &grad).await, &r::mse(&x, &t, d).1, 1e-5);

    let (u, norms) = (
        Tensor::zeros(&gpu, &[m, d], "u").unwrap(),
        Tensor::zeros(&gpu, &[m], "n").unwrap(),
    );
    gpu.submit(&[&k.rows_normalise(&gpu, &gw, &u, &norms).unwrap()]);
    let (wu, _) = r::rows_normalise(&w, d);
    assert_close("row normalisation", &down(&gpu, &u).await, &wu, 1e-5);

    let sums = Tensor::zeros(&gpu, &[m], "sums").unwrap();
    gpu.submit(&[&k.columns(&gpu, &ga, ColumnOp::CenteredSquares, false, &sums).unwrap()]);
    let want = r::columns(
        &got_a.iter().map(|v| *v as f32 as f64).collect::<Vec<_>>(),
        m,
        ColumnOp::CenteredSquares,
    );
    assert_close("column reduction", &down(&gpu, &sums).await, &want, 1e-5);

    let ub = up(&gpu, &[m, d], &r::rows_normalise(&data(m * d, 5), d).0);
    let (assign, sim) = (
        Tensor::<u32>::zeros(&gpu, &[m], "assign").unwrap(),
        Tensor::zeros(&gpu, &[m], "sim").unwrap(),
    );
    let wub = r::rows_normalise(&data(m * d, 5), d).0;
    let (wsim, warg) = r::similarity(&down(&gpu, &u).await, &down(&gpu, &ub).await, d, MmcsForm::Max, &[]);
    // Both scratch forms of the max similarity: S by the matmul, and the chunked tiles.
    for partials in [
        MaxPartials::matrix(&gpu, m).unwrap(),
        MaxPartials::chunked(&gpu, m, d).unwrap(),
    ] {
        let plan = k
            .similarity(&gpu, &u, &ub, MmcsForm::Max, &partials, &assign, &sim)
            .unwrap();
        gpu.submit(&plan.iter().collect::<Vec<_>>());
        assert_eq!(assign.read(&gpu).await.unwrap(), warg, "MMCS argmax");
        assert_close("MMCS similarity", &down(&gpu, &sim).await, &wsim, 1e-5);
    }
    assert_eq!(wub.len(), m * d);
}

#[wasm_bindgen_test]
async fn training_steps_with_mfr_match_the_reference_in_the_browser() {
    let (gpu, k) = setup().await;
    // Both step paths: the sparse kernels must run in the browser too.
    for (arch, path) in [Architecture::Tied, Architecture::Standard]
        .into_iter()
        .flat_map(|a| [(a, StepPath::Dense), (a, StepPath::Sparse)])
    {
        let cfg = EnsembleConfig::new(
            SaeConfig {
                step_path: Some(path),
                ..SaeConfig::new(arch, Activation::TopK { k: 6 }, 19, 53, 37, 2e-3)
            },
            2,
            MfrConfig {
                lambda: 3.0,
                warmup_steps: 2,
                form: MmcsForm::Max,
                match_every: 100,
            },
            5,
            5,
            9,
        );
        let weights = cfg.initial_weights();
        let mut ens = Ensemble::new(&gpu, &k, cfg.clone(), &weights).unwrap();
        let mut refs: Vec<RefSae> = weights
            .iter()
            .enumerate()
            .map(|(n, w)| RefSae::new(cfg.sae_config(n), w))
            .collect();
        for t in 0..5u64 {
            let x = data(37 * 19, 100 + t);
            ens.step(&gpu, &x.iter().map(|&v| v as f32).collect::<Vec<_>>())
                .await
                .unwrap();
            r::ensemble_step(&mut refs, &x, &x, cfg.mfr.weight(t), MmcsForm::Max, &[]);
        }
        // The metrics kernels ran too (a shader the browser refuses never runs: zeros).
        let log = ens.log(&gpu, None).await.unwrap();
        for s in &log.saes {
            let w = &s.window;
            let what = format!("{arch:?} {path:?} metrics {w:?}");
            assert!(
                w.steps == 5 && w.mse > 0.0 && w.mse.is_finite() && w.fvu > 0.0,
                "{what}"
            );
            assert!(
                w.l0 > 0.0 && w.l0 <= 6.0 && w.l1 > 0.0 && w.reinit_stat_max > 0.0,
                "{what}"
            );
        }
        let got = ens.weights(&gpu).await.unwrap();
        for (g, want) in got.iter().zip(&refs) {
            for (p, wp) in g.params.iter().zip(&want.params) {
                let gp: Vec<f64> = p.data.iter().map(|&v| v as f64).collect();
                assert_close(&format!("{arch:?} {path:?} {}", p.name), &gp, wp, 1e-3);
            }
        }
    }
}

/// The stacked ensemble step (one dispatch per kernel for all N SAEs, per-SAE views of
/// stacked buffers) runs in the browser too, and repeats the one-by-one step bit for bit: with
/// the max form's pair kernels, and with the matched form's all-pairs kernels and AuxK.
#[wasm_bindgen_test]
async fn a_stacked_ensemble_repeats_the_one_by_one_run_in_the_browser() {
    let (gpu, k) = setup().await;
    let auxk = AuxK {
        k_aux: 8,
        coef: 0.03,
        dead_after_tokens: 128.0,
    };
    for (form, auxk) in [(MmcsForm::Max, None), (MmcsForm::Match, Some(auxk))] {
        let cfg = EnsembleConfig::new(
            SaeConfig {
                auxk,
                ..SaeConfig::new(Architecture::Tied, Activation::TopK { k: 4 }, 16, 64, 64, 3e-3)
            },
            3,
            MfrConfig {
                lambda: 1.0,
                warmup_steps: 2,
                form,
                match_every: 100,
            },
            6,
            6,
            11,
        );
        let weights = cfg.initial_weights();
        let mut runs = Vec::new();
        for stacked in [true, false] {
            let mut ens = match stacked {
                true => Ensemble::new(&gpu, &k, cfg.clone(), &weights).unwrap(),
                false => Ensemble::new_unstacked(&gpu, &k, cfg.clone(), &weights).unwrap(),
            };
            assert_eq!(ens.stacking().is_ok(), stacked, "{:?}", ens.stacking());
            for t in 0..6u64 {
                let x = data(64 * 16, 300 + t);
                ens.step(&gpu, &x.iter().map(|&v| v as f32).collect::<Vec<_>>())
                    .await
                    .unwrap();
            }
            let log = ens.log(&gpu, None).await.unwrap();
            runs.push((ens.weights(&gpu).await.unwrap(), log));
        }
        let (stacked, alone) = (&runs[0], &runs[1]);
        assert!(
            stacked.0 == alone.0,
            "{form:?}: the stacked run's weights differ from the one-by-one run's"
        );
        assert!(
            stacked.1 == alone.1,
            "{form:?}: the stacked run's metrics differ:\n{:?}\n{:?}",
            stacked.1,
            alone.1
        );
        assert!(
            stacked.0[0].params[0].data != weights[0].params[0].data,
            "{form:?}: the weights moved"
        );
        // The pairs' similarities and sums ran (a shader the browser refuses never runs: zeros).
        for s in &stacked.1.saes {
            assert!(s.penalty_mmcs.is_some_and(|v| v > 0.0), "{form:?}: {s:?}");
        }
        if auxk.is_some() {
            assert!(
                stacked.1.saes.iter().all(|s| s.window.aux_mse > 0.0),
                "{form:?}: AuxK ran"
            );
        }
    }
}

/// Awaits a promise of a `Trainer` method.
async fn settle(p: js_sys::Promise) -> wasm_bindgen::JsValue {
    wasm_bindgen_futures::JsFuture::from(p)
        .await
        .expect("the call resolves")
}

/// SAE 0 of run 0 in SAELens format: its weight file's bytes.
async fn exported(t: &mfr_sae::web::Trainer) -> Vec<u8> {
    let out = settle(t.export_saelens(0, 0)).await;
    let weights = js_sys::Reflect::get(&out, &"weights".into()).unwrap();
    js_sys::Uint8Array::new(&weights).to_vec()
}

#[wasm_bindgen_test]
async fn a_trainer_reloaded_from_its_checkpoint_continues_to_the_same_weights() {
    use mfr_sae::web::Trainer;
    let config = r#"{"data": {"generator": "paper", "d": 8, "n_features": 16, "n_groups": 2, "group_size": 8,
        "active": 3, "decay": 0.99}, "arch": "tied", "n_saes": 2, "m": 16, "k": 3, "lambda": 3.0,
        "warmup_steps": 4, "form": "match", "lr": 0.01, "batch": 16, "seed": 3, "compare": true}"#;
    let a = Trainer::create(config.into()).await.unwrap();
    settle(a.step(6)).await;
    let saved = js_sys::Uint8Array::new(&settle(a.save_checkpoint()).await).to_vec();
    settle(a.step(5)).await;
    let b = Trainer::from_checkpoint(saved.clone()).await.unwrap();
    assert_eq!(b.steps(), 6.0);
    settle(b.step(5)).await;
    assert_eq!(
        exported(&a).await,
        exported(&b).await,
        "the reloaded trainer's weights after 5 more steps"
    );
    let err = Trainer::from_checkpoint(saved[..saved.len() / 2].to_vec())
        .await
        .err()
        .unwrap();
    let message = js_sys::Error::from(err).message().as_string().unwrap();
    assert!(message.contains("not a complete checkpoint"), "{message}");
}
