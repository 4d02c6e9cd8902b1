//! SAELens export: the files hold exactly W_enc, b_enc, W_dec, b_dec, and
//! running them the way SAELens does reproduces our SAE's reconstruction; the
//! data scale folds into the encoder side with unit decoder rows; metadata,
//! sparsity file and dtypes.

use mfr_sae::data::activations;
use mfr_sae::export::{self, Densities, Export, ExportDtype, ModelInfo};
use mfr_sae::kernels::Op;
use mfr_sae::mfr::MfrConfig;
use mfr_sae::model::{Activation, Architecture, SaeConfig, SaeWeights};
use mfr_sae::reference::{self as r, RefSae};
use mfr_sae::rng::Rng;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

/// An export of SAE `index` of `n_saes` trained on data multiplied by `scale`, float32, no hook.
fn plain(index: usize, n_saes: usize, scale: f32) -> Export<'static> {
    static MFR: std::sync::OnceLock<MfrConfig> = std::sync::OnceLock::new();
    static MODEL: ModelInfo = ModelInfo {
        model_name: None,
        hook_name: None,
        context_size: None,
        prepend_bos: None,
    };
    Export {
        mfr: MFR.get_or_init(MfrConfig::default),
        n_saes,
        index,
        scale,
        model: &MODEL,
        dtype: ExportDtype::Float32,
        densities: None,
        steps: None,
    }
}

fn tensor(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f64>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let values = t
        .data()
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
        .collect();
    (t.shape().to_vec(), values)
}

#[test]
fn saelens_files_reconstruct_like_the_trained_sae() {
    for arch in [Architecture::Tied, Architecture::Standard] {
        let (d, m, k, batch) = (7, 12, 3, 5);
        let cfg = SaeConfig::new(arch, Activation::TopK { k }, d, m, batch, 1e-2);
        // Train a few reference steps so biases are non-zero.
        let mut sae = RefSae::new(cfg, &SaeWeights::init(&cfg, 1));
        let x = Rng::new(2).normals(batch * d);
        for _ in 0..5 {
            sae.step(&x, &x);
        }
        let weights = SaeWeights {
            arch,
            params: SaeWeights::init(&cfg, 1)
                .params
                .into_iter()
                .zip(&sae.params)
                .map(|(mut p, v)| {
                    p.data = v.iter().map(|&x| x as f32).collect();
                    p
                })
                .collect(),
            threshold: None,
        };
        let files = export::saelens(&cfg, &weights, &plain(1, 2, 1.0)).unwrap();
        let st = SafeTensors::deserialize(&files.weights).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(
            names,
            ["W_dec", "W_enc", "b_dec", "b_enc"],
            "SAELens rejects any other tensor"
        );
        let (s_enc, w_enc) = tensor(&st, "W_enc");
        let (s_dec, w_dec) = tensor(&st, "W_dec");
        let (_, b_enc) = tensor(&st, "b_enc");
        let (_, b_dec) = tensor(&st, "b_dec");
        assert_eq!((s_enc, s_dec), (vec![d, m], vec![m, d]));
        let cfg_json: serde_json::Value = serde_json::from_str(&files.cfg).unwrap();
        assert_eq!(cfg_json["architecture"], "topk");
        assert_eq!(
            (
                cfg_json["d_in"].as_u64(),
                cfg_json["d_sae"].as_u64(),
                cfg_json["k"].as_u64()
            ),
            (Some(7), Some(12), Some(3))
        );
        assert_eq!(cfg_json["normalize_activations"], "none");
        assert!(cfg_json["metadata"]["sae_lens_version"].is_string());
        assert_eq!(cfg_json["metadata"]["mfr"]["ensemble_index"], 1);
        // SAELens's TopK SAE: x' = x − b_dec if apply_b_dec_to_input; a = x' W_enc + b_enc;
        // z = ReLU(TopK(a)); x̂ = z W_dec + b_dec.
        let apply = cfg_json["apply_b_dec_to_input"].as_bool().unwrap();
        let input = if apply {
            r::add_row_vector(&x, &b_dec, -1.0)
        } else {
            x.clone()
        };
        let a = r::add_row_vector(
            &r::matmul(&input, (batch, d), Op::N, &w_enc, (d, m), Op::N),
            &b_enc,
            1.0,
        );
        let z = r::topk(&a, m, k, true).0;
        let xhat = r::add_row_vector(&r::matmul(&z, (batch, m), Op::N, &w_dec, (m, d), Op::N), &b_dec, 1.0);
        let ours = sae.pass(&x, &x).xhat;
        let err = xhat.iter().zip(&ours).fold(0.0f64, |e, (a, b)| e.max((a - b).abs()));
        assert!(err < 1e-5, "{arch:?}: SAELens-style reconstruction differs by {err}");
    }
}

/// SAELens's forward on raw x [batch, d] from exported files, with `rescale` as
/// `rescale_acts_by_decoder_norm` (TopK: `topk`; else ReLU): (latents, reconstruction).
fn saelens_forward(files: &export::SaelensFiles, x: &[f64], rescale: bool) -> (Vec<f64>, Vec<f64>) {
    let st = SafeTensors::deserialize(&files.weights).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&files.cfg).unwrap();
    let (d, m) = (
        cfg["d_in"].as_u64().unwrap() as usize,
        cfg["d_sae"].as_u64().unwrap() as usize,
    );
    let batch = x.len() / d;
    let (w_enc, b_enc, w_dec, b_dec) = (
        tensor(&st, "W_enc").1,
        tensor(&st, "b_enc").1,
        tensor(&st, "W_dec").1,
        tensor(&st, "b_dec").1,
    );
    let norms: Vec<f64> = w_dec
        .chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
        .collect();
    let input = if cfg["apply_b_dec_to_input"].as_bool().unwrap() {
        r::add_row_vector(x, &b_dec, -1.0)
    } else {
        x.to_vec()
    };
    let mut a = r::add_row_vector(
        &r::matmul(&input, (batch, d), Op::N, &w_enc, (d, m), Op::N),
        &b_enc,
        1.0,
    );
    if rescale {
        a.iter_mut().enumerate().for_each(|(i, v)| *v *= norms[i % m]);
    }
    let mut z = match cfg["k"].as_u64() {
        Some(k) => r::topk(&a, m, k as usize, true).0,
        None => r::relu(&a),
    };
    let latents = z.clone();
    if rescale {
        z.iter_mut().enumerate().for_each(|(i, v)| *v /= norms[i % m]);
    }
    let xhat = r::add_row_vector(&r::matmul(&z, (batch, m), Op::N, &w_dec, (m, d), Op::N), &b_dec, 1.0);
    (latents, xhat)
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |e, (x, y)| e.max((x - y).abs()))
}

fn config(arch: Architecture, activation: Activation, d: usize, m: usize, paper_exact: bool) -> SaeConfig {
    SaeConfig {
        paper_exact,
        ..SaeConfig::new(arch, activation, d, m, 4, 1e-2)
    }
}

/// Weights with non-zero biases and, for tied, rows of non-unit norm.
fn weights(cfg: &SaeConfig, seed: u64) -> SaeWeights {
    let mut w = SaeWeights::init(cfg, seed);
    let mut rng = Rng::new(seed + 100);
    for p in w.params.iter_mut() {
        match p.name {
            "W" => p
                .data
                .iter_mut()
                .enumerate()
                .for_each(|(i, v)| *v *= 1.0 + (i / cfg.d_in) as f32 * 0.1),
            "b" | "b_enc" | "b_dec" => p.data = rng.normals(p.data.len()).iter().map(|v| 0.3 * *v as f32).collect(),
            _ => {}
        }
    }
    w
}

#[test]
fn the_data_scale_folds_into_the_encoder_side_and_the_decoder_keeps_unit_rows() {
    let (d, m, batch, s) = (6, 11, 9, 2.5f64);
    for arch in [Architecture::Tied, Architecture::Standard] {
        for activation in [Activation::TopK { k: 3 }, Activation::ReluL1 { l1: 0.1 }] {
            let cfg = config(arch, activation, d, m, false);
            let w = weights(&cfg, 3);
            let files = export::saelens(&cfg, &w, &plain(0, 1, s as f32)).unwrap();
            let st = SafeTensors::deserialize(&files.weights).unwrap();
            let w_dec = tensor(&st, "W_dec").1;
            for (j, row) in w_dec.chunks(d).enumerate() {
                let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                assert!(
                    (norm - 1.0).abs() < 1e-6,
                    "{arch:?} {activation:?}: W_dec row {j} has norm {norm}"
                );
            }
            // Every input: the exported SAE on raw x = the trained SAE on s·x, at x's scale,
            // with rescale_acts_by_decoder_norm as written and the other way round.
            let x = Rng::new(5).normals(batch * d);
            let scaled: Vec<f64> = x.iter().map(|v| s * v).collect();
            let trained = RefSae::new(cfg, &w);
            let want_z: Vec<f64> = trained.encode(&scaled).iter().map(|v| v / s).collect();
            let want_xhat: Vec<f64> = trained.reconstruct(&scaled).iter().map(|v| v / s).collect();
            for rescale in [true, false] {
                let (z, xhat) = saelens_forward(&files, &x, rescale);
                let (ez, ex) = (max_diff(&z, &want_z), max_diff(&xhat, &want_xhat));
                assert!(
                    ez < 1e-5 && ex < 1e-5,
                    "{arch:?} {activation:?} rescale {rescale}: latents differ by {ez}, x̂ by {ex}"
                );
            }
        }
    }
    let cfg = config(Architecture::Standard, Activation::TopK { k: 2 }, d, m, false);
    assert!(export::saelens(&cfg, &weights(&cfg, 1), &plain(0, 1, f32::NAN)).is_err());
    assert!(export::saelens(&cfg, &weights(&cfg, 1), &plain(0, 1, 0.0)).is_err());
}

#[test]
fn metadata_carries_the_hook_the_mfr_provenance_and_the_paper_exact_warning() {
    let model = ModelInfo {
        model_name: Some("gpt2".into()),
        hook_name: Some("blocks.0.hook_mlp_out".into()),
        context_size: Some(128),
        prepend_bos: Some(false),
    };
    let mfr = MfrConfig {
        lambda: 2.5,
        ..MfrConfig::default()
    };
    for (activation, paper_exact) in [
        (Activation::TopK { k: 2 }, false),
        (Activation::TopK { k: 2 }, true),
        (Activation::ReluL1 { l1: 0.1 }, false),
    ] {
        let cfg = config(Architecture::Tied, activation, 5, 7, paper_exact);
        let export = Export {
            mfr: &mfr,
            model: &model,
            steps: Some(40),
            ..plain(2, 3, 1.0)
        };
        let files = export::saelens(&cfg, &weights(&cfg, 2), &export).unwrap();
        let v: serde_json::Value = serde_json::from_str(&files.cfg).unwrap();
        let meta = &v["metadata"];
        assert_eq!(
            (
                &meta["model_name"],
                &meta["hook_name"],
                &meta["context_size"],
                &meta["prepend_bos"]
            ),
            (
                &serde_json::json!("gpt2"),
                &serde_json::json!("blocks.0.hook_mlp_out"),
                &serde_json::json!(128),
                &serde_json::json!(false)
            )
        );
        assert_eq!(
            ModelInfo::from_cfg_json(&files.cfg),
            model,
            "an earlier export gives its hook back"
        );
        let provenance = &meta["mfr"];
        assert_eq!(
            (
                &provenance["lambda"],
                &provenance["ensemble_size"],
                &provenance["ensemble_index"]
            ),
            (&serde_json::json!(2.5), &serde_json::json!(3), &serde_json::json!(2))
        );
        assert_eq!(provenance["trained_steps"], 40);
        assert!(
            v.get("mfr").is_none(),
            "the provenance lives in metadata (SAELens re-saves keep it)"
        );
        match activation {
            Activation::TopK { .. } => {
                assert_eq!(
                    (&v["architecture"], &v["rescale_acts_by_decoder_norm"]),
                    (&"topk".into(), &true.into())
                )
            }
            Activation::ReluL1 { .. } | Activation::BatchTopK { .. } => {
                let architecture = if matches!(activation, Activation::ReluL1 { .. }) {
                    "standard"
                } else {
                    "jumprelu"
                };
                assert_eq!(v["architecture"], architecture);
                assert!(v.get("rescale_acts_by_decoder_norm").is_none());
            }
        }
        let warned = files
            .warnings
            .iter()
            .any(|w| w.contains("--paper-exact") && w.contains("ReLU"));
        assert_eq!(warned, paper_exact, "{:?}", files.warnings);
        assert_eq!(provenance["warnings"].as_array().unwrap().len(), files.warnings.len());
    }
    let partial = ModelInfo {
        hook_name: Some("blocks.3.hook_resid_post".into()),
        ..ModelInfo::default()
    };
    let merged = partial.or(model.clone());
    assert_eq!(merged.hook_name.as_deref(), Some("blocks.3.hook_resid_post"));
    assert_eq!(merged.model_name.as_deref(), Some("gpt2"));
}

#[test]
fn sparsity_file_holds_the_log10_densities_of_the_held_out_rows() {
    let (d, m, rows) = (4, 6, 50);
    let cfg = config(Architecture::Standard, Activation::ReluL1 { l1: 0.1 }, d, m, false);
    let mut w = weights(&cfg, 7);
    w.params[1].data[0] = -1e3; // latent 0 never fires
    w.params[1].data[1] = 1e3; // latent 1 always fires
    let x: Vec<f32> = Rng::new(9).normals(rows * d).iter().map(|&v| v as f32).collect();
    let log10 = export::log10_densities(&cfg, &w, &x);
    let z = RefSae::new(cfg, &w).encode(&x.iter().map(|&v| v as f64).collect::<Vec<_>>());
    for (j, &l) in log10.iter().enumerate() {
        let fired = z.chunks(m).filter(|row| row[j] != 0.0).count() as f64;
        let want = (fired / rows as f64 + 1e-10).log10();
        assert!((l as f64 - want).abs() < 1e-6, "latent {j}: {l} vs {want}");
    }
    assert_eq!(log10[0], -10.0, "never fires: log10(1e-10)");
    assert!(log10[1].abs() < 1e-9, "always fires: log10(1) = {}", log10[1]);
    let densities = Densities {
        log10: log10.clone(),
        rows,
        source: "test rows".into(),
    };
    let export = Export {
        densities: Some(&densities),
        ..plain(0, 1, 1.0)
    };
    let files = export::saelens(&cfg, &w, &export).unwrap();
    let bytes = files.sparsity.expect("densities given: sparsity.safetensors written");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.names(), ["sparsity"]);
    let (shape, stored) = tensor(&st, "sparsity");
    assert_eq!(shape, vec![m]);
    assert_eq!(stored, log10.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_str(&files.cfg).unwrap();
    assert_eq!(v["metadata"]["mfr"]["sparsity_rows"]["rows"], rows);
    assert!(export::saelens(&cfg, &w, &plain(0, 1, 1.0)).unwrap().sparsity.is_none());
    let short = Densities {
        log10: vec![0.0; m - 1],
        rows,
        source: String::new(),
    };
    let export = Export {
        densities: Some(&short),
        ..plain(0, 1, 1.0)
    };
    assert!(
        export::saelens(&cfg, &w, &export).is_err(),
        "densities of the wrong length"
    );
}

#[test]
fn float16_and_bfloat16_exports_round_every_weight_to_nearest() {
    let cfg = config(Architecture::Standard, Activation::TopK { k: 2 }, 5, 8, false);
    let w = weights(&cfg, 11);
    let f32_files = export::saelens(&cfg, &w, &plain(0, 1, 1.0)).unwrap();
    for (dtype, name, dt, ulp) in [
        (ExportDtype::Float16, "float16", safetensors::Dtype::F16, 2f64.powi(-11)),
        (
            ExportDtype::Bfloat16,
            "bfloat16",
            safetensors::Dtype::BF16,
            2f64.powi(-8),
        ),
    ] {
        let files = export::saelens(
            &cfg,
            &w,
            &Export {
                dtype,
                ..plain(0, 1, 1.0)
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&files.cfg).unwrap();
        assert_eq!(v["dtype"], name);
        let st = SafeTensors::deserialize(&files.weights).unwrap();
        let full = SafeTensors::deserialize(&f32_files.weights).unwrap();
        for t in ["W_enc", "b_enc", "W_dec", "b_dec"] {
            assert_eq!(st.tensor(t).unwrap().dtype(), dt, "{t}");
            // Read back as f32 by the activations reader (its own f16/bf16 decoding).
            let shape = st.tensor(t).unwrap().shape().to_vec();
            let as_matrix = safetensors::tensor::serialize(
                [(
                    t,
                    TensorView::new(dt, vec![1, shape.iter().product()], st.tensor(t).unwrap().data()).unwrap(),
                )],
                None,
            )
            .unwrap();
            let back = activations::read("t.safetensors", &as_matrix, None).unwrap().data;
            for (b, f) in back.iter().zip(tensor(&full, t).1) {
                assert!(
                    (*b as f64 - f).abs() <= ulp * f.abs() + 1e-30,
                    "{name} {t}: {b} is not {f} rounded"
                );
            }
        }
    }
    let mut big = w.clone();
    big.params[0].data[3] = 1e5;
    let err = export::saelens(
        &cfg,
        &big,
        &Export {
            dtype: ExportDtype::Float16,
            ..plain(0, 1, 1.0)
        },
    )
    .err()
    .expect("1e5 does not fit float16");
    assert!(
        err.to_string().contains("W_enc[3]") && err.to_string().contains("float16"),
        "{err}"
    );
}

/// Every finite float16 / bfloat16 value converts back to its own bits, and the
/// midpoint between two neighbours rounds to the even one.
#[test]
fn the_f32_to_half_conversions_round_to_nearest_even() {
    let finite: Vec<u16> = (0..=u16::MAX).filter(|h| (h >> 10) & 0x1f != 0x1f).collect();
    let bytes: Vec<u8> = finite.iter().flat_map(|h| h.to_le_bytes()).collect();
    let file = safetensors::tensor::serialize(
        [(
            "h",
            TensorView::new(safetensors::Dtype::F16, vec![finite.len(), 1], &bytes).unwrap(),
        )],
        None,
    )
    .unwrap();
    let values = activations::read("h.safetensors", &file, None).unwrap().data;
    for (&h, &v) in finite.iter().zip(&values) {
        assert_eq!(export::f32_to_f16(v), h, "{v} (f16 {h:#06x})");
    }
    for pair in finite
        .windows(2)
        .filter(|p| p[0] & 0x8000 == 0 && p[1] == p[0] + 1 && p[1] < 0x7c00)
    {
        let (a, b) = (values[pair[0] as usize], values[pair[1] as usize]);
        let even = if pair[0] % 2 == 0 { pair[0] } else { pair[1] };
        assert_eq!(export::f32_to_f16((a + b) / 2.0), even, "midpoint of {a} and {b}");
    }
    assert_eq!(export::f32_to_f16(65520.0), 0x7c00, "past the largest float16: ∞");
    for b in (0..=u16::MAX).filter(|b| (b >> 7) & 0xff != 0xff) {
        let v = f32::from_bits((b as u32) << 16);
        assert_eq!(export::f32_to_bf16(v), b);
        let mid = f32::from_bits(((b as u32) << 16) | 0x8000);
        let even = if b % 2 == 0 { b } else { b + 1 }; // b + 1 may be ±∞: correct rounding
        assert_eq!(export::f32_to_bf16(mid), even, "midpoint above {v}");
    }
}

#[test]
fn batch_topk_exports_as_a_jumprelu_sae_that_encodes_like_our_inference() {
    for arch in [Architecture::Tied, Architecture::Standard] {
        let (d, m, k, batch, s) = (7, 12, 3, 5, 2.0);
        let cfg = SaeConfig::new(arch, Activation::BatchTopK { k }, d, m, batch, 1e-2);
        let init = SaeWeights::init(&cfg, 1);
        assert_eq!(init.threshold, Some(0.0), "SAELens starts the threshold at 0");
        let mut sae = RefSae::new(cfg, &init);
        let x = Rng::new(2).normals(batch * d);
        for _ in 0..5 {
            sae.step(&x, &x);
        }
        assert!(sae.threshold > 0.0, "{arch:?}: training moved the threshold");
        let mut weights = init.clone();
        for (p, v) in weights.params.iter_mut().zip(&sae.params) {
            p.data = v.iter().map(|&x| x as f32).collect();
        }
        weights.threshold = Some(sae.threshold as f32);
        // Exported with a data scale s folded back: the files take raw inputs x / s.
        let files = export::saelens(&cfg, &weights, &plain(0, 1, s as f32)).unwrap();
        let cfg_json: serde_json::Value = serde_json::from_str(&files.cfg).unwrap();
        assert_eq!(cfg_json["architecture"], "jumprelu");
        assert!(cfg_json.get("k").is_none(), "a JumpReLU SAE has no k");
        let st = SafeTensors::deserialize(&files.weights).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names, ["W_dec", "W_enc", "b_dec", "b_enc", "threshold"]);
        let (shape, threshold) = tensor(&st, "threshold");
        assert_eq!(shape, vec![m]);
        // The fold divides the pre-activations by s, and the threshold with them.
        assert!(
            threshold.iter().all(|&t| t == (sae.threshold as f32 / s as f32) as f64),
            "{threshold:?}"
        );
        let (w_enc, w_dec, b_enc, b_dec) = (
            tensor(&st, "W_enc").1,
            tensor(&st, "W_dec").1,
            tensor(&st, "b_enc").1,
            tensor(&st, "b_dec").1,
        );
        // SAELens's JumpReLUSAE: h = x' W_enc + b_enc; z = ReLU(h) · [h > ReLU(threshold)];
        // x̂ = z W_dec + b_dec, with x' = x − b_dec when apply_b_dec_to_input.
        let raw: Vec<f64> = x.iter().map(|v| v / s).collect();
        let input = match cfg_json["apply_b_dec_to_input"].as_bool().unwrap() {
            true => r::add_row_vector(&raw, &b_dec, -1.0),
            false => raw.clone(),
        };
        let h = r::add_row_vector(
            &r::matmul(&input, (batch, d), Op::N, &w_enc, (d, m), Op::N),
            &b_enc,
            1.0,
        );
        let z: Vec<f64> = h
            .iter()
            .zip(threshold.iter().cycle())
            .map(|(&h, &t)| if h > t.max(0.0) { h.max(0.0) } else { 0.0 })
            .collect();
        let xhat = r::add_row_vector(&r::matmul(&z, (batch, m), Op::N, &w_dec, (m, d), Op::N), &b_dec, 1.0);
        let ours = RefSae::new(cfg, &weights);
        assert!(z.iter().any(|v| *v != 0.0), "{arch:?}: some latents fire");
        let code_err = z
            .iter()
            .zip(ours.encode(&x))
            .fold(0.0f64, |e, (a, b)| e.max((a - b / s).abs()));
        let err = xhat
            .iter()
            .zip(ours.reconstruct(&x))
            .fold(0.0f64, |e, (a, b)| e.max((a - b / s).abs()));
        assert!(
            code_err < 1e-5 && err < 1e-5,
            "{arch:?}: SAELens-style JumpReLU differs by {code_err} (code), {err} (x̂)"
        );
        weights.threshold = Some(f32::NAN);
        assert!(export::saelens(&cfg, &weights, &plain(0, 1, 1.0)).is_err());
    }
}
