//! SAELens export (ARCHITECTURE.md §4): per SAE a `cfg.json` and a
//! `sae_weights.safetensors` holding exactly `W_enc` [d_in, d_sae], `b_enc`
//! [d_sae], `W_dec` [d_sae, d_in], `b_dec` [d_in] (SAELens rejects extra
//! tensors). The tied SAE is written in the same layout: W_enc = Wᵀ, b_enc = b,
//! W_dec = the row-normalised W it decodes with, b_dec = 0.
//!
//! Owns the format only; where the files go (a folder, a browser download) is
//! the caller's business.

use crate::error::{Error, Result};
use crate::mfr::MfrConfig;
use crate::model::{Activation, Architecture, SaeConfig, SaeWeights};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::json;

/// The SAELens version whose `cfg.json` keys these files follow.
pub const SAE_LENS_VERSION: &str = "6.0.0";

/// One SAE in SAELens format.
pub struct SaelensFiles {
    /// `cfg.json` text.
    pub cfg: String,
    /// `sae_weights.safetensors` bytes.
    pub weights: Vec<u8>,
}

/// The SAELens files of SAE `index` of an ensemble trained with `mfr` on data
/// multiplied by `scale` (1 for raw data). The scale is folded back, so the
/// files take raw inputs: W_enc ← s·W_enc, W_dec ← W_dec/s, b_dec ← b_dec/s.
pub fn saelens(
    cfg: &SaeConfig,
    w: &SaeWeights,
    mfr: &MfrConfig,
    n_saes: usize,
    index: usize,
    scale: f32,
) -> Result<SaelensFiles> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Config(format!(
            "export: the data scale must be a finite number > 0, got {scale}"
        )));
    }
    w.check(cfg)?;
    let (d, m) = (cfg.d_in, cfg.d_sae);
    let (w_enc, b_enc, w_dec, b_dec) = match cfg.arch {
        Architecture::Standard => (
            w.params[0].data.clone(),
            w.params[1].data.clone(),
            w.params[2].data.clone(),
            w.params[3].data.clone(),
        ),
        Architecture::Tied => {
            let w_enc = crate::model::transpose(&w.params[0].data, m, d); // W [m, d] → [d, m]
            (w_enc, w.params[1].data.clone(), w.dictionary(), vec![0.0; d])
        }
    };
    let times = |v: Vec<f32>, f: f32| v.into_iter().map(|x| x * f).collect::<Vec<f32>>();
    let (w_enc, w_dec, b_dec) = (
        times(w_enc, scale),
        times(w_dec, 1.0 / scale),
        times(b_dec, 1.0 / scale),
    );
    // Non-finite weights (a diverged run, or a scale that overflows them) are never written.
    for (name, values) in [
        ("W_enc", &w_enc),
        ("b_enc", &b_enc),
        ("W_dec", &w_dec),
        ("b_dec", &b_dec),
    ] {
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "export: SAE {index}'s {name}[{at}] is {}: non-finite weights are not exported (the run diverged)",
                values[at]
            )));
        }
    }
    let (architecture, k) = match cfg.activation {
        Activation::TopK { k } => ("topk", Some(k)),
        Activation::ReluL1 { .. } => ("standard", None),
    };
    let mut cfg_json = json!({
        "architecture": architecture,
        "d_in": d,
        "d_sae": m,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": cfg.arch == Architecture::Standard,
        "normalize_activations": "none",
        "metadata": { "sae_lens_version": SAE_LENS_VERSION },
        "mfr": {
            "trained_by": "mfr-sae",
            "source_architecture": cfg.arch,
            "activation": cfg.activation,
            "paper_exact_topk_without_relu": cfg.paper_exact,
            "lambda": mfr.lambda,
            "warmup_steps": mfr.warmup_steps,
            "mmcs_form": mfr.form,
            "ensemble_size": n_saes,
            "ensemble_index": index,
            "input_scale_folded_back": scale,
        },
    });
    if let Some(k) = k {
        cfg_json["k"] = json!(k);
    }
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tensors = [
        ("W_enc", vec![d, m], bytes(&w_enc)),
        ("b_enc", vec![m], bytes(&b_enc)),
        ("W_dec", vec![m, d], bytes(&w_dec)),
        ("b_dec", vec![d], bytes(&b_dec)),
    ];
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::Shape(format!("export: tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let weights = safetensors::tensor::serialize(views, None)
        .map_err(|e| Error::Shape(format!("export: could not write safetensors: {e}")))?;
    Ok(SaelensFiles {
        cfg: serde_json::to_string_pretty(&cfg_json).expect("the config serialises"),
        weights,
    })
}

/// Writes `files` into `dir` (created) as `cfg.json` and `sae_weights.safetensors`, each atomically.
pub fn write_dir(dir: &std::path::Path, files: &SaelensFiles) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    crate::train::write_atomic(&dir.join("cfg.json"), files.cfg.as_bytes())?;
    crate::train::write_atomic(&dir.join("sae_weights.safetensors"), &files.weights)
}
