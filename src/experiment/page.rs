//! What the browser page offers: its data sources (the two generators at a size a
//! software adapter trains at a readable pace, the shipped samples, the reader's own
//! file) with their descriptions, and the settings that suit each kind of data,
//! built from the generators' configs and the experiment presets where those exist.
//!
//! Owns no training and no page code: `web.rs` hands `page_defaults()` to `web/app.js`
//! as JSON; the page's lessons (`web/js/presets.js`) stay with the page.

use super::presets::{Preset, RealExperiment};
use crate::data::synthetic::{PaperConfig, SharkeyConfig, SyntheticConfig};
use serde_json::{json, Value};

/// The page's generators (d = 32, 64 features: small enough for a CPU adapter).
fn generators() -> (PaperConfig, SharkeyConfig) {
    let paper = PaperConfig {
        d: 32,
        n_features: 64,
        n_groups: 4,
        group_size: 16,
        active: 4,
        ..PaperConfig::default()
    };
    let sharkey = SharkeyConfig {
        d: 32,
        n_features: 64,
        mean_active: 4.0,
        ..SharkeyConfig::default()
    };
    (paper, sharkey)
}

/// An f32 setting as the decimal it was written as (0.005, not 0.004999999888).
fn decimal(x: f32) -> f64 {
    x.to_string().parse().expect("an f32 prints as a decimal")
}

/// m, k, batch, λ, lr and the MFR warm-up of a real-data preset.
fn settings(e: &RealExperiment) -> Value {
    let sae = &e.ensemble.sae;
    json!({
        "m": sae.d_sae,
        "k": sae.activation.k(),
        "batch": sae.batch,
        "lambda": decimal(e.ensemble.mfr.lambda),
        "lr": decimal(sae.lr),
        "warmup": e.ensemble.mfr.warmup_steps,
    })
}

/// The page's configuration, as one JSON object:
/// - `data`: generator → its `SyntheticConfig` (as the trainer config takes it);
/// - `sources`: data source → `{ kind, url?, meta?, desc }` (`kind` null for a file,
///   whose kind comes from its name);
/// - `defaults`: kind → `{ m, k, batch, lambda, lr, warmup }`, applied when the data
///   source changes;
/// - `software_defaults`: kind → the settings a software (CPU) adapter replaces (fewer
///   latents, a shorter warm-up, so a minute of training shows the losses fall).
///
/// EEG: the CPU-sized EEG preset (the paper's k = 6, λ = 0.5, lr 1e-3, 100 warm-up
/// steps, at m = 128 and batch 32). Activations: the paper's k, λ = 0.005, lr and
/// warm-up at m = 256 and batch 32.
pub fn page_defaults() -> Value {
    let (paper, sharkey) = generators();
    let eeg = settings(&Preset::Quick.eeg(""));
    let mut activations = settings(&Preset::Paper.activations(""));
    activations["m"] = json!(256);
    activations["batch"] = json!(32);
    let synthetic = Preset::Quick.synthetic();
    json!({
        "data": {
            "paper": SyntheticConfig::Paper(paper),
            "sharkey": SyntheticConfig::Sharkey(sharkey),
        },
        "sources": {
            "paper": {
                "kind": "synthetic",
                "desc": format!(
                    "d = {}; {} true features (N(0,1) directions) in {} groups of {}; each point picks a group and {} of its features, weights U[0,1).",
                    paper.d, paper.n_features, paper.n_groups, paper.group_size, paper.active
                ),
            },
            "sharkey": {
                "kind": "synthetic",
                "desc": format!(
                    "d = {}; {} unit-norm true features, feature i active with probability ∝ {}^i, {} active on average.",
                    sharkey.d, sharkey.n_features, sharkey.decay, sharkey.mean_active
                ),
            },
            "eeg-eyes": {
                "kind": "eeg",
                "url": "samples/eeg/eyes_open_shut.edf",
                "desc": "One real recording, 14 scalp channels, eyes open and shut. As in the paper: band-pass 0.5–45 Hz, 1 s segments, \
                         each channel z-scored; a segment starts every 32 samples; the last 20 % of the recording is held out.",
            },
            "eeg-scp1": {
                "kind": "eeg",
                "url": "samples/eeg/scp1_channel0.edf",
                "desc": "Slow cortical potentials (BCI Competition II), the one genuine channel. Same preprocessing: 0.5–45 Hz, 1 s \
                         segments z-scored, a segment every 32 samples, the last 20 % held out.",
            },
            "lm": {
                "kind": "activations",
                "url": "samples/lm/smollm2_135m_resid.npy",
                "meta": "samples/lm/smollm2_135m_resid.json",
                "desc": "SmolLM2-135M-Instruct (Q4_1 GGUF), residual stream after block 15 of 30, on 20 windows of 128 tokens of the \
                         Python 3.11 tutorial (Debian python3.11-doc): one row per token (the first of each window left out), d = 576, \
                         scaled to mean row norm √d; the last 20 % of the rows are held out.",
            },
            "file": {
                "kind": null,
                "desc": "An EDF/EDF+ recording (EEG preprocessing as for the samples) or activations [N, d] as .npy (f32/f16, C order) or \
                         .safetensors (one 2-D tensor). The file never leaves this tab.",
            },
        },
        "defaults": {
            "synthetic": {
                "m": paper.n_features,
                "k": paper.active,
                "batch": 128,
                "lambda": 1.0,
                "lr": decimal(synthetic.ensemble.sae.lr),
                "warmup": synthetic.ensemble.mfr.warmup_steps,
            },
            "eeg": eeg,
            "activations": activations,
        },
        "software_defaults": {
            "eeg": { "m": 32, "k": 4, "batch": 32, "lr": 0.003, "warmup": 20 },
            "activations": { "m": 64, "k": 6, "batch": 32, "lr": 0.003, "warmup": 20 },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_defaults_follow_the_presets_and_match_the_mock() {
        let page = page_defaults();
        let eeg = Preset::Paper.eeg("");
        assert_eq!(
            page["defaults"]["eeg"]["lambda"],
            json!(decimal(eeg.ensemble.mfr.lambda))
        );
        assert_eq!(page["defaults"]["eeg"]["lambda"], json!(0.5));
        assert_eq!(page["defaults"]["activations"]["lambda"], json!(0.005));
        assert_eq!(page["defaults"]["eeg"]["k"], json!(6));
        assert_eq!(page["defaults"]["synthetic"]["lr"], json!(0.01));
        let paper: SyntheticConfig = serde_json::from_value(page["data"]["paper"].clone()).unwrap();
        assert_eq!(paper, SyntheticConfig::Paper(generators().0));
        assert!(page["sources"]["paper"]["desc"]
            .as_str()
            .unwrap()
            .starts_with("d = 32; 64 true features"));
        // web/dev/mock_pkg.js serves this file as its pageDefaults(): it must be the library's object.
        let mock: Value = serde_json::from_str(include_str!("../../web/dev/page_defaults.json")).unwrap();
        assert_eq!(
            mock,
            page,
            "web/dev/page_defaults.json differs from page_defaults(); regenerate it: {}",
            serde_json::to_string_pretty(&page).unwrap()
        );
    }
}
