//! SAELens export: the files hold exactly W_enc, b_enc, W_dec, b_dec, and
//! running them the way SAELens does reproduces our SAE's reconstruction.

use mfr_sae::export;
use mfr_sae::kernels::Op;
use mfr_sae::mfr::MfrConfig;
use mfr_sae::model::{Activation, Architecture, SaeConfig, SaeWeights};
use mfr_sae::reference::{self as r, RefSae};
use mfr_sae::rng::Rng;
use safetensors::SafeTensors;

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
        };
        let files = export::saelens(&cfg, &weights, &MfrConfig::default(), 2, 1, 1.0).unwrap();
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
        assert_eq!(cfg_json["mfr"]["ensemble_index"], 1);
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

#[test]
fn a_normalisation_scale_is_folded_back_into_the_exported_weights() {
    let (d, m, k, batch, s) = (5, 9, 2, 4, 2.5);
    let cfg = SaeConfig::new(Architecture::Standard, Activation::TopK { k }, d, m, batch, 1e-2);
    let mut w = SaeWeights::init(&cfg, 4);
    w.params[3].data = vec![0.3; d]; // a non-zero b_dec
    let files = export::saelens(&cfg, &w, &MfrConfig::default(), 1, 0, s as f32).unwrap();
    let st = SafeTensors::deserialize(&files.weights).unwrap();
    let (w_enc, w_dec, b_enc, b_dec) = (
        tensor(&st, "W_enc").1,
        tensor(&st, "W_dec").1,
        tensor(&st, "b_enc").1,
        tensor(&st, "b_dec").1,
    );
    // Raw x through the exported SAE = (the trained SAE on s·x) / s.
    let x = Rng::new(5).normals(batch * d);
    let a = r::add_row_vector(
        &r::matmul(
            &r::add_row_vector(&x, &b_dec, -1.0),
            (batch, d),
            Op::N,
            &w_enc,
            (d, m),
            Op::N,
        ),
        &b_enc,
        1.0,
    );
    let xhat = r::add_row_vector(
        &r::matmul(&r::topk(&a, m, k, true).0, (batch, m), Op::N, &w_dec, (m, d), Op::N),
        &b_dec,
        1.0,
    );
    let scaled: Vec<f64> = x.iter().map(|v| s * v).collect();
    let trained = RefSae::new(cfg, &w).reconstruct(&scaled);
    let err = xhat
        .iter()
        .zip(&trained)
        .fold(0.0f64, |e, (a, b)| e.max((a - b / s).abs()));
    assert!(err < 1e-5, "folded-back export differs by {err}");
    assert!(export::saelens(&cfg, &w, &MfrConfig::default(), 1, 0, f32::NAN).is_err());
}
