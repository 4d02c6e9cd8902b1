//! SAELens export (ARCHITECTURE.md §4): per SAE a `cfg.json`, a
//! `sae_weights.safetensors` holding exactly `W_enc` [d_in, d_sae], `b_enc`
//! [d_sae], `W_dec` [d_sae, d_in], `b_dec` [d_in] (SAELens rejects extra
//! tensors; BatchTopK adds `threshold` [d_sae], written as SAELens writes its own
//! `jumprelu` SAEs: for every latent the threshold estimated during training) and,
//! when held-out rows are given, a `sparsity.safetensors` with
//! `sparsity` [d_sae], the log10 feature densities dashboards read. The tied SAE
//! is written in the same layout: W_enc = Wᵀ, b_enc = b, W_dec = the
//! row-normalised W it decodes with, b_dec = 0.
//!
//! `W_dec` keeps unit rows, as SAELens and SAE dashboards assume. A model trained
//! on s·x (a normalised data file) is folded back to raw inputs on the encoder
//! side and in the latents: b_enc ← b_enc/s, b_dec ← b_dec/s, W_enc and W_dec
//! unchanged. Then the pre-activations are a/s, and since TopK (with or without
//! ReLU) and ReLU commute with a positive factor the latents are z/s and
//! x̂ = (z W_dec + b_dec)/s, the trained SAE's reconstruction of s·x at x's scale.
//! With unit decoder rows `rescale_acts_by_decoder_norm` changes nothing, and is
//! written `true` for TopK: the value SAELens's `TrainingSAE` defaults to, that
//! `SAE` then follows, and that `fold_W_dec_norm()` requires for TopK.
//!
//! `cfg.json`'s `metadata` carries the language-model hook (`ModelInfo`) and the
//! MFR provenance (`metadata.mfr`), so a SAELens re-save keeps both.
//!
//! Owns the format, and a finished run's `saelens/` folder (`write_run`: the
//! held-out rows it measures densities on). Does not own training, the run
//! folder's other files (`train::RunDir`) or browser downloads (`web.rs`).

use crate::data::activations;
use crate::data::synthetic::Synthetic;
use crate::error::{Error, Result};
use crate::mfr::MfrConfig;
use crate::model::{Activation, Architecture, SaeConfig, SaeWeights};
use crate::train::{DataConfig, TrainConfig};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::Path;

/// The SAELens version whose `cfg.json` keys these files follow.
pub const SAE_LENS_VERSION: &str = "6.0.0";

/// Held-out rows per run that feature densities are measured on (`write_run`).
pub const HELD_OUT_ROWS: usize = 2048;

/// Xor-ed into a synthetic run's seed for the held-out stream: the same features,
/// points the training never drew.
const HELD_OUT_STREAM: u64 = 0x48E1_D0D7_5EED_0001;

/// Added to a density before its log10, so that a latent that never fires gets
/// −10 instead of −∞ (SAELens's training code uses the same).
const DENSITY_FLOOR: f64 = 1e-10;

/// float16's largest finite value.
const F16_MAX: f32 = 65504.0;

/// The float format of the exported tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportDtype {
    #[default]
    Float32,
    Float16,
    Bfloat16,
}

impl ExportDtype {
    /// The name SAELens's `dtype` key uses.
    pub fn name(self) -> &'static str {
        match self {
            ExportDtype::Float32 => "float32",
            ExportDtype::Float16 => "float16",
            ExportDtype::Bfloat16 => "bfloat16",
        }
    }

    fn safetensors(self) -> Dtype {
        match self {
            ExportDtype::Float32 => Dtype::F32,
            ExportDtype::Float16 => Dtype::F16,
            ExportDtype::Bfloat16 => Dtype::BF16,
        }
    }

    /// `values` in this format, little-endian (rounded to nearest, ties to even).
    fn bytes(self, values: &[f32]) -> Vec<u8> {
        match self {
            ExportDtype::Float32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ExportDtype::Float16 => values.iter().flat_map(|&x| f32_to_f16(x).to_le_bytes()).collect(),
            ExportDtype::Bfloat16 => values.iter().flat_map(|&x| f32_to_bf16(x).to_le_bytes()).collect(),
        }
    }
}

impl std::str::FromStr for ExportDtype {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<ExportDtype, String> {
        match s {
            "float32" => Ok(ExportDtype::Float32),
            "float16" => Ok(ExportDtype::Float16),
            "bfloat16" => Ok(ExportDtype::Bfloat16),
            _ => Err(format!("export dtype `{s}`: expected float32, float16 or bfloat16")),
        }
    }
}

/// Where an SAE's inputs come from in a language model, in SAELens's `metadata`
/// keys. Without `hook_name`, `HookedSAETransformer.add_sae` attaches nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The TransformerLens model name, e.g. `gpt2`.
    pub model_name: Option<String>,
    /// The TransformerLens hook, e.g. `blocks.0.hook_mlp_out`.
    pub hook_name: Option<String>,
    /// Tokens per context window the activations were taken with.
    pub context_size: Option<usize>,
    /// Whether a BOS token was prepended to each window.
    pub prepend_bos: Option<bool>,
}

impl ModelInfo {
    /// Each field of `self`, else `other`'s.
    pub fn or(self, other: ModelInfo) -> ModelInfo {
        ModelInfo {
            model_name: self.model_name.or(other.model_name),
            hook_name: self.hook_name.or(other.hook_name),
            context_size: self.context_size.or(other.context_size),
            prepend_bos: self.prepend_bos.or(other.prepend_bos),
        }
    }

    /// The `saelens` object of an activations file's sidecar (`FILE.json` beside
    /// `FILE.npy`, as `scripts/lm_activations.py` writes it); empty without one.
    pub fn from_sidecar(data_file: &Path) -> Result<ModelInfo> {
        let path = data_file.with_extension("json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(ModelInfo::default());
        };
        let sidecar: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: format!("not JSON: {e}"),
        })?;
        match sidecar.get("saelens") {
            None => Ok(ModelInfo::default()),
            Some(block) => serde_json::from_value(block.clone()).map_err(|e| Error::Io {
                path: path.display().to_string(),
                message: format!(
                    "its `saelens` object is not {{model_name, hook_name, context_size, prepend_bos}}: {e}"
                ),
            }),
        }
    }

    /// The hook fields of an earlier export's `cfg.json` `metadata`.
    pub fn from_cfg_json(text: &str) -> ModelInfo {
        serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|cfg| serde_json::from_value(cfg.get("metadata")?.clone()).ok())
            .unwrap_or_default()
    }
}

/// Feature densities of one SAE, measured on held-out rows.
pub struct Densities {
    /// log10(fraction of rows where latent j is non-zero + 1e-10) [d_sae].
    pub log10: Vec<f32>,
    /// How many rows, and which (for the metadata).
    pub rows: usize,
    pub source: String,
}

/// Everything one SAE's export needs beside its configuration and weights.
pub struct Export<'a> {
    pub mfr: &'a MfrConfig,
    pub n_saes: usize,
    /// This SAE's place in the ensemble.
    pub index: usize,
    /// The factor the training data was multiplied by (1 for raw data).
    pub scale: f32,
    pub model: &'a ModelInfo,
    pub dtype: ExportDtype,
    /// For `sparsity.safetensors`; none: the file is not written.
    pub densities: Option<&'a Densities>,
    /// Training steps the weights had (recorded in the metadata), if known.
    pub steps: Option<u64>,
}

/// One SAE in SAELens format.
pub struct SaelensFiles {
    /// `cfg.json` text.
    pub cfg: String,
    /// `sae_weights.safetensors` bytes.
    pub weights: Vec<u8>,
    /// `sparsity.safetensors` bytes, when densities were given.
    pub sparsity: Option<Vec<u8>>,
    /// What a SAELens user must know about this export (also in `metadata.mfr.warnings`);
    /// the CLI prints them and the page must show them.
    pub warnings: Vec<String>,
}

/// The warning of a `paper_exact` export: SAELens's TopK always applies a ReLU.
pub const PAPER_EXACT_WARNING: &str = "this SAE was trained with --paper-exact (TopK without ReLU): \
SAELens has no such activation and runs it as TopK followed by ReLU, so latents that the trained SAE \
keeps negative are zero in SAELens and its reconstructions differ wherever a kept pre-activation is negative";

/// An activation as SAELens knows it: `architecture` and the `cfg.json` keys it adds.
/// The one place that maps our activations to SAELens's architectures.
fn saelens_architecture(activation: Activation) -> (&'static str, serde_json::Value) {
    match activation {
        Activation::TopK { k } => ("topk", json!({ "k": k, "rescale_acts_by_decoder_norm": true })),
        Activation::ReluL1 { .. } => ("standard", json!({})),
        Activation::BatchTopK { .. } => ("jumprelu", json!({})),
    }
}

/// The SAELens files of one SAE of an ensemble (module comment: the scale fold).
pub fn saelens(cfg: &SaeConfig, w: &SaeWeights, e: &Export) -> Result<SaelensFiles> {
    let (scale, index) = (e.scale, e.index);
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
    let over_scale = |v: Vec<f32>| v.into_iter().map(|x| x / scale).collect::<Vec<f32>>();
    let (b_enc, b_dec) = (over_scale(b_enc), over_scale(b_dec));
    let mut tensors = vec![
        ("W_enc", vec![d, m], w_enc),
        ("b_enc", vec![m], b_enc),
        ("W_dec", vec![m, d], w_dec),
        ("b_dec", vec![d], b_dec),
    ];
    // JumpReLU compares the pre-activations, which the fold divides by s, with θ: θ/s.
    match (cfg.activation, w.threshold) {
        (Activation::BatchTopK { .. }, Some(t)) if t.is_finite() => {
            tensors.push(("threshold", vec![m], vec![t / scale; m]));
        }
        (Activation::BatchTopK { .. }, t) => {
            return Err(Error::Config(format!(
                "export: SAE {index}'s BatchTopK threshold is {t:?}: only a finite threshold is exported"
            )))
        }
        _ => {}
    }
    // Non-finite weights (a diverged run, or a scale that overflows them) are never written,
    // nor weights the chosen dtype cannot hold.
    for (name, _, values) in &tensors {
        if let Some(at) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "export: SAE {index}'s {name}[{at}] is {}: non-finite weights are not exported (the run diverged)",
                values[at]
            )));
        }
        if e.dtype == ExportDtype::Float16 {
            if let Some(at) = values.iter().position(|v| v.abs() > F16_MAX) {
                return Err(Error::Config(format!(
                    "export: SAE {index}'s {name}[{at}] = {} exceeds float16's largest value 65504; export as float32 or bfloat16",
                    values[at]
                )));
            }
        }
    }
    let (architecture, activation_keys) = saelens_architecture(cfg.activation);
    let warnings: Vec<String> = if cfg.paper_exact {
        vec![PAPER_EXACT_WARNING.to_string()]
    } else {
        Vec::new()
    };
    let mut cfg_json = json!({
        "architecture": architecture,
        "d_in": d,
        "d_sae": m,
        "dtype": e.dtype.name(),
        "device": "cpu",
        "apply_b_dec_to_input": cfg.arch == Architecture::Standard,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAE_LENS_VERSION,
            "model_name": e.model.model_name,
            "hook_name": e.model.hook_name,
            "context_size": e.model.context_size,
            "prepend_bos": e.model.prepend_bos,
            "mfr": {
                "trained_by": "mfr-sae",
                "source_architecture": cfg.arch,
                "activation": cfg.activation,
                "paper_exact_topk_without_relu": cfg.paper_exact,
                "lambda": e.mfr.lambda,
                "warmup_steps": e.mfr.warmup_steps,
                "mmcs_form": e.mfr.form,
                "ensemble_size": e.n_saes,
                "ensemble_index": index,
                "trained_steps": e.steps,
                "input_scale_folded_back": scale,
                "sparsity_rows": e.densities.map(|s| json!({ "rows": s.rows, "source": s.source })),
                "warnings": warnings,
            },
        },
    });
    for (key, value) in activation_keys.as_object().expect("an object") {
        cfg_json[key] = value.clone();
    }
    let weights = safetensors_bytes(
        tensors
            .iter()
            .map(|(name, shape, values)| (*name, shape.clone(), e.dtype.bytes(values))),
        e.dtype,
    )?;
    let sparsity = match e.densities {
        None => None,
        Some(s) if s.log10.len() != m => {
            return Err(Error::Shape(format!(
                "export: {} feature densities for an SAE of {m} latents",
                s.log10.len()
            )))
        }
        Some(s) => Some(safetensors_bytes(
            [("sparsity", vec![m], ExportDtype::Float32.bytes(&s.log10))],
            ExportDtype::Float32,
        )?),
    };
    Ok(SaelensFiles {
        cfg: serde_json::to_string_pretty(&cfg_json).expect("the config serialises"),
        weights,
        sparsity,
        warnings,
    })
}

/// A safetensors file of `tensors` (name, shape, little-endian bytes) all of `dtype`.
fn safetensors_bytes<'a>(
    tensors: impl IntoIterator<Item = (&'a str, Vec<usize>, Vec<u8>)>,
    dtype: ExportDtype,
) -> Result<Vec<u8>> {
    let tensors: Vec<_> = tensors.into_iter().collect();
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(dtype.safetensors(), shape.clone(), data)
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::Shape(format!("export: tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, None)
        .map_err(|e| Error::Shape(format!("export: could not write safetensors: {e}")))
}

/// The log10 feature densities of the SAE `cfg`/`w` on `rows` [n, d] at the scale it
/// was trained on: per latent, the fraction of rows where it is non-zero (f64 reference forward).
pub fn log10_densities(cfg: &SaeConfig, w: &SaeWeights, rows: &[f32]) -> Vec<f32> {
    let x: Vec<f64> = rows.iter().map(|&v| v as f64).collect();
    let n = (rows.len() / cfg.d_in).max(1) as f64;
    let z = crate::model::eval::encode(cfg, w, &x);
    let mut fired = vec![0usize; cfg.d_sae];
    for row in z.chunks(cfg.d_sae) {
        for (f, &v) in fired.iter_mut().zip(row) {
            *f += (v != 0.0) as usize;
        }
    }
    fired
        .iter()
        .map(|&f| (f as f64 / n + DENSITY_FLOOR).log10() as f32)
        .collect()
}

/// Held-out rows of a run's data at its raw scale [n, d], and where they come from:
/// synthetic data: `HELD_OUT_ROWS` fresh points of the same features; a data file:
/// its last `HELD_OUT_ROWS` rows (`train --data-file` trains on every row, so these
/// were seen in training: the file has no held-out part).
pub fn held_out_rows(data: &DataConfig, seed: u64) -> Result<(Vec<f32>, String)> {
    match data {
        DataConfig::Synthetic(s) => {
            let mut generator = Synthetic::new(*s, seed)?;
            generator.restore_stream(&crate::data::SourceState {
                rng: crate::rng::Rng::new(seed ^ HELD_OUT_STREAM).state(),
                position: 0,
                rows: Vec::new(),
            })?;
            Ok((
                generator.batch(HELD_OUT_ROWS),
                format!("{HELD_OUT_ROWS} fresh points of the synthetic generator (features of seed {seed}, a stream the training never drew)"),
            ))
        }
        DataConfig::File(f) => {
            let mut reader = activations::open(Path::new(&f.file), f.tensor.as_deref())?;
            let n = HELD_OUT_ROWS.min(reader.rows());
            reader.seek_row(reader.rows() - n)?;
            let rows = reader.next_chunk(n)?.map_or(Vec::new(), |c| c.data);
            Ok((
                rows,
                format!(
                    "the last {n} rows of {} (seen in training: train --data-file trains on every row)",
                    f.file
                ),
            ))
        }
    }
}

/// Exports every SAE of a run into `dir` (a run folder's `saelens/`): `sae-<n>/` with
/// `cfg.json`, `sae_weights.safetensors` and `sparsity.safetensors` (densities on
/// `held_out_rows`), and `held_out.npy`, those rows at the data's raw scale (for
/// `scripts/check_saelens.py`).
/// `weights` are the SAEs after `steps` steps on data multiplied by `scale`. Returns
/// each SAE's warnings, with its index.
pub fn write_run(
    dir: &Path,
    cfg: &TrainConfig,
    weights: &[SaeWeights],
    scale: f32,
    model: &ModelInfo,
    dtype: ExportDtype,
    steps: Option<u64>,
) -> Result<Vec<(usize, String)>> {
    let ens = &cfg.ensemble;
    let (raw, source) = held_out_rows(&cfg.data, ens.seed)?;
    let scaled: Vec<f32> = raw.iter().map(|v| v * scale).collect();
    let mut warnings = Vec::new();
    for (n, w) in weights.iter().enumerate() {
        let sae = ens.sae_config(n);
        let densities = Densities {
            log10: log10_densities(&sae, w, &scaled),
            rows: raw.len() / sae.d_in,
            source: source.clone(),
        };
        let export = Export {
            mfr: &ens.mfr,
            n_saes: ens.n_saes,
            index: n,
            scale,
            model,
            dtype,
            densities: Some(&densities),
            steps,
        };
        let files = saelens(&sae, w, &export)?;
        write_dir(&dir.join(format!("sae-{n}")), &files)?;
        warnings.extend(files.warnings.into_iter().map(|w| (n, w)));
    }
    crate::train::write_atomic(&dir.join("held_out.npy"), &activations::write_npy(ens.sae.d_in, &raw)?)?;
    Ok(warnings)
}

/// Writes `files` into `dir` (created) as `cfg.json`, `sae_weights.safetensors` and,
/// when present, `sparsity.safetensors`, each atomically.
pub fn write_dir(dir: &Path, files: &SaelensFiles) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    crate::train::write_atomic(&dir.join("cfg.json"), files.cfg.as_bytes())?;
    crate::train::write_atomic(&dir.join("sae_weights.safetensors"), &files.weights)?;
    match &files.sparsity {
        Some(bytes) => crate::train::write_atomic(&dir.join("sparsity.safetensors"), bytes),
        None => Ok(()),
    }
}

/// `x` as IEEE binary16 bits, rounded to nearest, ties to even (overflow → ±∞).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    // Drops the low `shift` bits of `m` with round-to-nearest-even (a carry may reach the exponent).
    let round = |m: u32, shift: u32| {
        let (q, rem, half) = (m >> shift, m & ((1 << shift) - 1), 1 << (shift - 1));
        q + (rem > half || (rem == half && q & 1 == 1)) as u32
    };
    if e <= 0 {
        // Subnormal: value = q · 2^-24 with q = (2^23 + man) · 2^(e - 14); below 2^-25 it rounds to 0.
        if e < -10 {
            return sign;
        }
        return sign | round(man | 0x80_0000, (14 - e) as u32) as u16;
    }
    sign | round(((e as u32) << 23) | man, 13) as u16
}

/// `x` as bfloat16 bits, rounded to nearest, ties to even (NaN stays NaN).
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}
