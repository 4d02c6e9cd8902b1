//! EEG segments as the MFR paper prepares them (arXiv:2411.01220, EEG experiments): from a
//! read EDF recording to rows [segments, channels · samples_per_segment], channel-major,
//! split by time into a training part and a held-out part; and the denoising mode's noisy
//! inputs. Reading EDF is `edf.rs`, the filter design `filter.rs`; segment arrays are
//! written and read as `.npy` [rows, channels · samples] by `activations::{write_npy, read}`.
//!
//! Preprocessing, in order:
//! 1. the signals at the most common sampling rate (ties: the rate met first); the EDF
//!    reader has already left out the annotations signal;
//! 2. the recording is split by time: the last `held_out_fraction` of the samples is the
//!    held-out part, the rest the training part, and, where `validation_fraction` is set,
//!    the last fraction of the training part a validation part (kept from training; it
//!    decides when a run stops); each part is filtered and segmented on its own, so no
//!    segment (overlapping or not) and no filter transient crosses a split;
//! 3. each channel is band-passed zero-phase (Butterworth 0.5–45 Hz, order 5, forward and
//!    backward); a high edge above 0.9 × Nyquist is lowered to 0.9 × Nyquist;
//! 4. segments of `segment_seconds` start every `stride_samples` (default: one segment,
//!    i.e. non-overlapping; a smaller stride gives overlapping windows for short recordings);
//! 5. each channel is z-scored inside each segment (population std); a channel whose
//!    filtered segment varies by less than 1e-6 of its raw range in that part (a flat or
//!    disconnected lead) becomes zeros instead of amplified rounding noise;
//! 6. the channels of a segment are laid end to end: row = [ch0 samples, ch1 samples, …].

use crate::data::edf::Edf;
use crate::data::filter::Filter;
use crate::error::{Error, Result};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::f64::consts::{PI, TAU};
use std::ops::Range;

/// The band-pass's high edge is kept at or below this fraction of the Nyquist frequency.
const MAX_HIGH_EDGE_OF_NYQUIST: f64 = 0.9;
/// A filtered segment with std below this fraction of the channel's raw range is flat.
const FLAT_RELATIVE_STD: f64 = 1e-6;
/// Eye blinks: a raised-cosine bump this long (blinks last about 0.1–0.4 s) …
const BLINK_SECONDS: f64 = 0.3;
/// … at full amplitude on frontal channels and this fraction of it elsewhere.
const BLINK_SPREAD: f64 = 0.2;
/// Muscle (EMG) bursts: this long.
const MUSCLE_SECONDS: f64 = 0.15;

/// How a recording becomes segments; the defaults are the paper's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EegConfig {
    /// Segment length in seconds (paper: 1 s).
    pub segment_seconds: f64,
    /// Samples between segment starts; None: one segment length (non-overlapping, as the paper).
    pub stride_samples: Option<usize>,
    /// Band-pass edges in Hz (paper: 0.5–45 Hz).
    pub low_hz: f64,
    pub high_hz: f64,
    /// Butterworth order of each edge (paper: 5).
    pub order: usize,
    /// The fraction of the recording, at its end, held out from training.
    pub held_out_fraction: f64,
    /// The fraction of the training part, at its end, kept back as validation rows
    /// (0: none; ours, not the paper's).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub validation_fraction: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Default for EegConfig {
    /// arXiv:2411.01220: zero-phase Butterworth 0.5–45 Hz order 5, non-overlapping 1 s
    /// segments; the held-out fraction (last 20 %) is ours.
    fn default() -> EegConfig {
        EegConfig {
            segment_seconds: 1.0,
            stride_samples: None,
            low_hz: 0.5,
            high_hz: 45.0,
            order: 5,
            held_out_fraction: 0.2,
            validation_fraction: 0.0,
        }
    }
}

impl EegConfig {
    fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(Error::Config(format!("EEG preprocessing: {message}")));
        if !(self.segment_seconds.is_finite() && self.segment_seconds > 0.0) {
            return bad(format!(
                "segment_seconds ({}) must be a positive number",
                self.segment_seconds
            ));
        }
        if self.stride_samples == Some(0) {
            return bad("stride_samples must be at least 1".to_string());
        }
        if !(self.low_hz > 0.0 && self.low_hz < self.high_hz) {
            return bad(format!(
                "the band {}–{} Hz must have 0 < low_hz < high_hz",
                self.low_hz, self.high_hz
            ));
        }
        if self.order == 0 {
            return bad("the filter order must be at least 1".to_string());
        }
        if !(0.0..1.0).contains(&self.held_out_fraction) {
            return bad(format!(
                "held_out_fraction ({}) must be at least 0 and below 1",
                self.held_out_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return bad(format!(
                "validation_fraction ({}) must be at least 0 and below 1",
                self.validation_fraction
            ));
        }
        Ok(())
    }
}

/// What a segment row holds: [channels · samples_per_segment], channel-major.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentLayout {
    pub channels: usize,
    pub samples_per_segment: usize,
    pub sample_rate: f64,
    /// The label of each channel, in row order.
    pub labels: Vec<String>,
}

impl SegmentLayout {
    /// Values per row: channels · samples_per_segment.
    pub fn width(&self) -> usize {
        self.channels * self.samples_per_segment
    }
}

/// Preprocessed segments: rows [rows, channels · samples_per_segment], channel-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Segments {
    pub layout: SegmentLayout,
    /// Rows cut from the training part (the start of the recording), concatenated.
    pub train: Vec<f32>,
    /// Rows cut from the validation part (the end of the training part; empty without one).
    pub validation: Vec<f32>,
    /// Rows cut from the held-out part (the end of the recording), concatenated.
    pub held_out: Vec<f32>,
}

impl Segments {
    pub fn width(&self) -> usize {
        self.layout.width()
    }

    pub fn train_rows(&self) -> usize {
        self.train.len() / self.width()
    }

    pub fn held_out_rows(&self) -> usize {
        self.held_out.len() / self.width()
    }

    pub fn validation_rows(&self) -> usize {
        self.validation.len() / self.width()
    }
}

/// Cuts a recording into preprocessed segments (see the module comment for the steps).
pub fn segments(edf: &Edf, cfg: &EegConfig) -> Result<Segments> {
    cfg.validate()?;
    // Most common rate; ties go to the rate met first.
    let rates: Vec<f64> = edf.signals.iter().map(|s| s.sample_rate).collect();
    let sample_rate = rates
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|&(i, rate)| (rates.iter().filter(|&&r| r == rate).count(), std::cmp::Reverse(i)))
        .map(|(_, rate)| rate)
        .ok_or_else(|| {
            Error::Shape("EEG: the recording has no signals (the annotations signal is not one)".to_string())
        })?;
    let picked: Vec<&crate::data::edf::Signal> = edf.signals.iter().filter(|s| s.sample_rate == sample_rate).collect();
    let n = picked.iter().map(|s| s.samples.len()).min().unwrap_or(0);
    let samples_per_segment = (cfg.segment_seconds * sample_rate).round() as usize;
    if samples_per_segment == 0 {
        return Err(Error::Config(format!(
            "EEG preprocessing: a {} s segment at {sample_rate} Hz holds no samples",
            cfg.segment_seconds
        )));
    }
    let stride = cfg.stride_samples.unwrap_or(samples_per_segment);
    let high_hz = cfg.high_hz.min(MAX_HIGH_EDGE_OF_NYQUIST * sample_rate / 2.0);
    let filter = Filter::bandpass(cfg.order, cfg.low_hz, high_hz, sample_rate)?;

    let held_out_len = (n as f64 * cfg.held_out_fraction).round() as usize;
    let split = n - held_out_len;
    let validation_len = (split as f64 * cfg.validation_fraction).round() as usize;
    let train_end = split - validation_len;
    let cut = |part: Range<usize>, what: &str| -> Result<Vec<f32>> {
        let seconds = part.len() as f64 / sample_rate;
        if part.len() < samples_per_segment {
            return Err(Error::Shape(format!(
                "EEG: the {what} part is {seconds} s long, shorter than one {} s segment",
                cfg.segment_seconds
            )));
        }
        let starts: Vec<usize> = (0..=part.len() - samples_per_segment).step_by(stride).collect();
        let width = picked.len() * samples_per_segment;
        let mut rows = vec![0f32; starts.len() * width];
        for (c, signal) in picked.iter().enumerate() {
            let raw = &signal.samples[part.clone()];
            let filtered = filter.filtfilt(raw).map_err(|e| {
                Error::Shape(format!(
                    "EEG: the {what} part ({seconds} s) is too short to filter: {e}"
                ))
            })?;
            let (min, max) = raw.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
            let flat_below = if max > min {
                FLAT_RELATIVE_STD * f64::from(max - min)
            } else {
                f64::INFINITY
            };
            for (row, &start) in starts.iter().enumerate() {
                let at = row * width + c * samples_per_segment;
                z_score(
                    &filtered[start..start + samples_per_segment],
                    flat_below,
                    &mut rows[at..at + samples_per_segment],
                );
            }
        }
        Ok(rows)
    };
    let train = cut(0..train_end, "training")?;
    let validation = if validation_len == 0 {
        Vec::new()
    } else {
        cut(train_end..split, "validation")?
    };
    let held_out = if held_out_len == 0 {
        Vec::new()
    } else {
        cut(split..n, "held-out")?
    };
    Ok(Segments {
        layout: SegmentLayout {
            channels: picked.len(),
            samples_per_segment,
            sample_rate,
            labels: picked.iter().map(|s| s.label.clone()).collect(),
        },
        train,
        validation,
        held_out,
    })
}

/// Writes (x − mean)/std into `out`, or zeros when std ≤ `flat_below`.
fn z_score(x: &[f32], flat_below: f64, out: &mut [f32]) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let std = (x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt();
    if std <= flat_below {
        out.fill(0.0);
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = ((f64::from(v) - mean) / std) as f32;
        }
    }
}

/// The denoising mode's noise, in the units of z-scored segments (each channel's clean
/// std is 1). Every component is independent per segment; the defaults are ours (the
/// paper specifies input = segment + noise, not the noise).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseConfig {
    /// White Gaussian noise on every sample, this std.
    pub gaussian_std: f64,
    /// Probability that a segment holds an eye blink: a positive raised-cosine bump of
    /// BLINK_SECONDS at a uniform time (cut by the segment's edges), `blink_amplitude` high
    /// on frontal-like channels (labels starting Fp, AF or F, an "EEG " prefix ignored)
    /// and BLINK_SPREAD of that on the others.
    pub blink_probability: f64,
    pub blink_amplitude: f64,
    /// Mains interference: a sine at `line_hz` with a uniform random phase per segment,
    /// the same on all channels (aliased as sampled when above Nyquist).
    pub line_amplitude: f64,
    pub line_hz: f64,
    /// Probability per segment and channel of a muscle burst: first-differenced white noise
    /// (a high-frequency spectrum) under a raised-cosine window of MUSCLE_SECONDS at a
    /// uniform time, peak std `muscle_amplitude`.
    pub muscle_probability: f64,
    pub muscle_amplitude: f64,
}

impl Default for NoiseConfig {
    fn default() -> NoiseConfig {
        NoiseConfig {
            gaussian_std: 0.5,
            blink_probability: 0.3,
            blink_amplitude: 4.0,
            line_amplitude: 0.5,
            line_hz: 50.0,
            muscle_probability: 0.1,
            muscle_amplitude: 2.0,
        }
    }
}

impl NoiseConfig {
    fn validate(&self) -> Result<()> {
        let values = [
            ("gaussian_std", self.gaussian_std),
            ("blink_amplitude", self.blink_amplitude),
            ("line_amplitude", self.line_amplitude),
            ("line_hz", self.line_hz),
            ("muscle_amplitude", self.muscle_amplitude),
        ];
        if let Some((name, value)) = values.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::Config(format!(
                "EEG noise: {name} ({value}) must be a finite number ≥ 0"
            )));
        }
        for (name, p) in [
            ("blink_probability", self.blink_probability),
            ("muscle_probability", self.muscle_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::Config(format!(
                    "EEG noise: {name} ({p}) must be between 0 and 1"
                )));
            }
        }
        Ok(())
    }
}

/// The noisy inputs for clean `rows` (laid out as `layout`'s rows): clean + noise, drawn
/// from `seed`. The clean rows are the denoising targets.
pub fn add_noise(rows: &[f32], layout: &SegmentLayout, noise: &NoiseConfig, seed: u64) -> Result<Vec<f32>> {
    noise.validate()?;
    let (channels, len, fs) = (layout.channels, layout.samples_per_segment, layout.sample_rate);
    let width = layout.width();
    if width == 0 || !rows.len().is_multiple_of(width) || layout.labels.len() != channels {
        return Err(Error::Shape(format!(
            "EEG noise: {} values are not whole rows of {channels} channels × {len} samples",
            rows.len()
        )));
    }
    let blink_weight: Vec<f64> = layout
        .labels
        .iter()
        .map(|l| if frontal(l) { 1.0 } else { BLINK_SPREAD })
        .collect();
    let blink_len = ((BLINK_SECONDS * fs).round() as usize).max(1);
    let muscle_len = ((MUSCLE_SECONDS * fs).round() as usize).max(1);
    let mut rng = Rng::new(seed);
    let mut noisy = rows.to_vec();
    for row in noisy.chunks_exact_mut(width) {
        let mut added = vec![0f64; width];
        for v in added.iter_mut() {
            *v = noise.gaussian_std * rng.normal();
        }
        let phase = TAU * rng.uniform();
        for (t, v) in added.iter_mut().enumerate() {
            *v += noise.line_amplitude * (TAU * noise.line_hz * (t % len) as f64 / fs + phase).sin();
        }
        if rng.uniform() < noise.blink_probability {
            // Centre anywhere in the segment; the bump may run past either edge.
            let centre = rng.uniform() * len as f64;
            for (c, &weight) in blink_weight.iter().enumerate() {
                for t in 0..len {
                    let x = (t as f64 - centre) / blink_len as f64; // in bump lengths, bump on [−½, ½]
                    if x.abs() < 0.5 {
                        added[c * len + t] += noise.blink_amplitude * weight * hann(x);
                    }
                }
            }
        }
        for c in 0..channels {
            if rng.uniform() < noise.muscle_probability {
                let start = rng.below(len);
                let mut previous = rng.normal();
                for t in start..(start + muscle_len).min(len) {
                    let white = rng.normal();
                    let x = (t - start) as f64 / muscle_len as f64 - 0.5;
                    // Differenced unit white noise has std √2.
                    added[c * len + t] += noise.muscle_amplitude * hann(x) * (white - previous) / 2f64.sqrt();
                    previous = white;
                }
            }
        }
        for (v, a) in row.iter_mut().zip(added) {
            *v += a as f32;
        }
    }
    Ok(noisy)
}

/// Raised cosine on x ∈ [−½, ½], 1 at 0 and 0 at the ends.
fn hann(x: f64) -> f64 {
    0.5 * (1.0 + (2.0 * PI * x).cos())
}

/// Frontal-like electrode labels (10–20 system): Fp…, AF…, F… (F, FC, FT, F3, …).
fn frontal(label: &str) -> bool {
    let name = label.trim();
    let name = name.strip_prefix("EEG ").unwrap_or(name).to_ascii_uppercase();
    name.starts_with("FP") || name.starts_with("AF") || name.starts_with('F')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::activations;
    use crate::data::edf::tests::signal;
    use crate::data::edf::{self, Signal};

    fn recording(signals: Vec<Signal>) -> Edf {
        Edf {
            kind: edf::Kind::Edf,
            patient: String::new(),
            recording: String::new(),
            start_date: String::new(),
            start_time: String::new(),
            record_duration: 1.0,
            records: 0,
            signals,
            headers: Vec::new(),
        }
    }

    /// A sum of sines (Hz, amplitude) plus an offset, `seconds` long.
    fn tones(fs: f64, seconds: f64, offset: f64, parts: &[(f64, f64)]) -> Vec<f32> {
        (0..(fs * seconds) as usize)
            .map(|i| {
                let t = i as f64 / fs;
                (offset + parts.iter().map(|(f, a)| a * (TAU * f * t).sin()).sum::<f64>()) as f32
            })
            .collect()
    }

    fn mean_std(x: &[f32]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        (
            mean,
            (x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n).sqrt(),
        )
    }

    #[test]
    fn the_default_config_is_the_papers_preprocessing() {
        let cfg = EegConfig::default();
        assert_eq!((cfg.segment_seconds, cfg.stride_samples), (1.0, None));
        assert_eq!((cfg.low_hz, cfg.high_hz, cfg.order), (0.5, 45.0, 5));
    }

    #[test]
    fn channels_at_the_most_common_rate_become_channel_major_z_scored_rows() {
        let edf = recording(vec![
            signal("Fp1", 128.0, tones(128.0, 20.0, 4000.0, &[(10.0, 30.0)])),
            signal("ECG", 64.0, tones(64.0, 20.0, 0.0, &[(1.0, 1.0)])),
            signal("O2", 128.0, tones(128.0, 20.0, -50.0, &[(6.0, 5.0)])),
        ]);
        let s = segments(&edf, &EegConfig::default()).unwrap();
        assert_eq!(
            (s.layout.channels, s.layout.samples_per_segment, s.layout.sample_rate),
            (2, 128, 128.0)
        );
        assert_eq!(s.layout.labels, vec!["Fp1", "O2"]);
        assert_eq!((s.width(), s.train_rows(), s.held_out_rows()), (256, 16, 4));
        for row in s
            .train
            .chunks_exact(s.width())
            .chain(s.held_out.chunks_exact(s.width()))
        {
            for channel in row.chunks_exact(s.layout.samples_per_segment) {
                let (mean, std) = mean_std(channel);
                assert!(mean.abs() < 1e-5 && (std - 1.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn the_band_pass_removes_the_offset_and_out_of_band_tones() {
        // 10 Hz in band; DC, 0.05 Hz drift and 60 Hz out of band (fs = 256: Nyquist 128).
        let fs = 256.0;
        let raw = tones(fs, 30.0, 4000.0, &[(10.0, 20.0), (0.05, 200.0), (60.0, 20.0)]);
        let clean = tones(fs, 30.0, 0.0, &[(10.0, 1.0)]);
        let cfg = EegConfig {
            held_out_fraction: 0.0,
            ..EegConfig::default()
        };
        let s = segments(&recording(vec![signal("Cz", fs, raw)]), &cfg).unwrap();
        let reference = segments(&recording(vec![signal("Cz", fs, clean)]), &cfg).unwrap();
        assert!(s.held_out.is_empty());
        // Away from the recording's ends, where the filter's start-up lives.
        let middle = 5 * s.width()..25 * s.width();
        let worst = s.train[middle.clone()]
            .iter()
            .zip(&reference.train[middle])
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst < 0.05, "{worst}");
    }

    #[test]
    fn overlapping_windows_never_cross_the_time_split() {
        let fs = 128.0;
        let base = tones(fs, 50.0, 0.0, &[(7.0, 10.0), (13.0, 4.0)]);
        let cfg = EegConfig {
            stride_samples: Some(32),
            ..EegConfig::default()
        };
        let s = segments(&recording(vec![signal("C3", fs, base.clone())]), &cfg).unwrap();
        // 50 s · 128 = 6400 samples: training 5120 → (5120 − 128)/32 + 1 windows, held-out 1280 → 37.
        assert_eq!((s.train_rows(), s.held_out_rows()), (157, 37));
        // Changing the held-out end changes no training row, and vice versa.
        let mut changed_end = base.clone();
        changed_end[5120..].iter_mut().for_each(|v| *v = -*v * 3.0 + 1.0);
        let t = segments(&recording(vec![signal("C3", fs, changed_end)]), &cfg).unwrap();
        assert_eq!(s.train, t.train);
        assert_ne!(s.held_out, t.held_out);
        let mut changed_start = base;
        changed_start[..5120].iter_mut().for_each(|v| *v *= 0.5);
        let u = segments(&recording(vec![signal("C3", fs, changed_start)]), &cfg).unwrap();
        assert_eq!(s.held_out, u.held_out);
    }

    #[test]
    fn a_validation_part_is_cut_from_the_end_of_the_training_part_on_its_own() {
        let fs = 128.0;
        let base = tones(fs, 50.0, 0.0, &[(7.0, 10.0), (13.0, 4.0)]);
        let cfg = EegConfig {
            stride_samples: Some(32),
            validation_fraction: 0.25,
            ..EegConfig::default()
        };
        let s = segments(&recording(vec![signal("C3", fs, base.clone())]), &cfg).unwrap();
        // 6400 samples: held out 1280 (37 windows); of the 5120 before them the last 1280
        // validate (37 windows), the first 3840 train ((3840 − 128)/32 + 1 = 117).
        assert_eq!((s.train_rows(), s.validation_rows(), s.held_out_rows()), (117, 37, 37));
        let without = segments(
            &recording(vec![signal("C3", fs, base.clone())]),
            &EegConfig {
                validation_fraction: 0.0,
                ..cfg
            },
        )
        .unwrap();
        assert_eq!(s.held_out, without.held_out);
        assert!(without.validation.is_empty());
        // Changing the validation part changes neither the training nor the held-out rows.
        let mut changed = base;
        changed[3840..5120].iter_mut().for_each(|v| *v = -*v * 2.0 + 3.0);
        let t = segments(&recording(vec![signal("C3", fs, changed)]), &cfg).unwrap();
        assert_eq!((&s.train, &s.held_out), (&t.train, &t.held_out));
        assert_ne!(s.validation, t.validation);
    }

    #[test]
    fn a_flat_channel_becomes_zeros() {
        let edf = recording(vec![
            signal("Fz", 128.0, vec![12.5; 128 * 10]),
            signal("Pz", 128.0, tones(128.0, 10.0, 0.0, &[(9.0, 3.0)])),
        ]);
        let s = segments(&edf, &EegConfig::default()).unwrap();
        for row in s.train.chunks_exact(s.width()) {
            assert!(row[..128].iter().all(|&v| v == 0.0));
            assert!(row[128..].iter().any(|&v| v != 0.0));
        }
    }

    #[test]
    fn a_high_edge_above_nyquist_is_lowered_rather_than_refused() {
        // fs = 64 Hz: Nyquist 32 Hz, so 45 Hz becomes 28.8 Hz.
        let s = segments(
            &recording(vec![signal("Cz", 64.0, tones(64.0, 10.0, 0.0, &[(5.0, 1.0)]))]),
            &EegConfig::default(),
        );
        assert_eq!(s.unwrap().layout.samples_per_segment, 64);
    }

    #[test]
    fn recordings_without_signals_or_too_short_and_bad_configs_are_refused() {
        assert!(matches!(
            segments(&recording(vec![]), &EegConfig::default()),
            Err(Error::Shape(_))
        ));
        let short = recording(vec![signal("Cz", 128.0, vec![0.5; 100])]);
        assert!(matches!(segments(&short, &EegConfig::default()), Err(Error::Shape(_))));
        let edf = recording(vec![signal("Cz", 128.0, tones(128.0, 10.0, 0.0, &[(5.0, 1.0)]))]);
        for cfg in [
            EegConfig {
                stride_samples: Some(0),
                ..EegConfig::default()
            },
            EegConfig {
                segment_seconds: 0.0,
                ..EegConfig::default()
            },
            EegConfig {
                low_hz: 50.0,
                ..EegConfig::default()
            },
            EegConfig {
                held_out_fraction: 1.0,
                ..EegConfig::default()
            },
            EegConfig {
                validation_fraction: -0.1,
                ..EegConfig::default()
            },
            EegConfig {
                order: 0,
                ..EegConfig::default()
            },
        ] {
            assert!(matches!(segments(&edf, &cfg), Err(Error::Config(_))), "{cfg:?}");
        }
    }

    #[test]
    fn the_shipped_sample_gives_78_training_and_19_held_out_rows_of_14_channels() {
        let edf = edf::parse(
            "eyes_open_shut.edf",
            include_bytes!("../../web/samples/eeg/eyes_open_shut.edf"),
        )
        .unwrap();
        let s = segments(&edf, &EegConfig::default()).unwrap();
        // 98 s · 128 Hz = 12544 samples: 10035 for training (78 whole seconds), 2509 held out (19).
        assert_eq!(
            (s.layout.channels, s.width(), s.train_rows(), s.held_out_rows()),
            (14, 14 * 128, 78, 19)
        );
        assert!(s.train.iter().chain(&s.held_out).all(|v| v.is_finite()));
    }

    #[test]
    fn segments_round_trip_through_npy() {
        let edf = recording(vec![signal("Cz", 128.0, tones(128.0, 10.0, 0.0, &[(5.0, 1.0)]))]);
        let s = segments(&edf, &EegConfig::default()).unwrap();
        let bytes = activations::write_npy(s.width(), &s.train).unwrap();
        let m = activations::read("train.npy", &bytes, None).unwrap();
        assert_eq!((m.rows, m.d, m.data), (s.train_rows(), s.width(), s.train));
    }

    fn layout(labels: &[&str], fs: f64) -> SegmentLayout {
        SegmentLayout {
            channels: labels.len(),
            samples_per_segment: fs as usize,
            sample_rate: fs,
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    const SILENT: NoiseConfig = NoiseConfig {
        gaussian_std: 0.0,
        blink_probability: 0.0,
        blink_amplitude: 0.0,
        line_amplitude: 0.0,
        line_hz: 50.0,
        muscle_probability: 0.0,
        muscle_amplitude: 0.0,
    };

    #[test]
    fn noise_is_seeded_and_silent_noise_changes_nothing() {
        let l = layout(&["Fp1", "O1"], 128.0);
        let clean: Vec<f32> = (0..4 * l.width()).map(|i| (i as f32 * 0.01).sin()).collect();
        let a = add_noise(&clean, &l, &NoiseConfig::default(), 3).unwrap();
        assert_eq!(a, add_noise(&clean, &l, &NoiseConfig::default(), 3).unwrap());
        assert_ne!(a, add_noise(&clean, &l, &NoiseConfig::default(), 4).unwrap());
        assert_eq!(add_noise(&clean, &l, &SILENT, 3).unwrap(), clean);
        assert!(add_noise(&clean[1..], &l, &SILENT, 3).is_err());
        assert!(add_noise(
            &clean,
            &l,
            &NoiseConfig {
                blink_probability: 2.0,
                ..SILENT
            },
            3
        )
        .is_err());
    }

    #[test]
    fn gaussian_noise_has_the_given_std() {
        let l = layout(&["Cz"], 256.0);
        let noisy = add_noise(
            &vec![0.0; 200 * 256],
            &l,
            &NoiseConfig {
                gaussian_std: 0.3,
                ..SILENT
            },
            1,
        )
        .unwrap();
        let (mean, std) = mean_std(&noisy);
        assert!(mean.abs() < 0.01 && (std - 0.3).abs() < 0.01, "{mean} {std}");
    }

    #[test]
    fn line_noise_is_a_50_hz_sine_on_every_channel() {
        let l = layout(&["Fp1", "O1"], 256.0);
        let noisy = add_noise(
            &vec![0.0; l.width()],
            &l,
            &NoiseConfig {
                line_amplitude: 0.5,
                ..SILENT
            },
            1,
        )
        .unwrap();
        let (first, second) = noisy.split_at(256);
        assert_eq!(first, second, "the same on all channels");
        // Period 256/50 samples: x[t] and x[t + 128] (25 periods) agree.
        assert!((0..128).all(|t| (first[t] - first[t + 128]).abs() < 1e-5));
        assert!((mean_std(first).1 - 0.5 / 2f64.sqrt()).abs() < 1e-3);
    }

    #[test]
    fn blinks_are_slow_bumps_strongest_on_frontal_channels() {
        let l = layout(&["EEG Fp1", "O1"], 128.0);
        let blink = NoiseConfig {
            blink_probability: 1.0,
            blink_amplitude: 4.0,
            ..SILENT
        };
        let noisy = add_noise(&vec![0.0; 50 * l.width()], &l, &blink, 9).unwrap();
        for row in noisy.chunks_exact(l.width()) {
            let (frontal, other) = row.split_at(128);
            assert!(frontal.iter().all(|&v| v >= 0.0) && frontal.iter().cloned().fold(0.0, f32::max) <= 4.0);
            for (f, o) in frontal.iter().zip(other) {
                assert!((o - f * BLINK_SPREAD as f32).abs() < 1e-6);
            }
        }
        assert!(
            noisy.iter().cloned().fold(0.0, f32::max) > 3.9,
            "some bump is centred inside its segment"
        );
    }

    #[test]
    fn muscle_bursts_are_short_and_high_frequency() {
        let l = layout(&["T7"], 256.0);
        let muscle = NoiseConfig {
            muscle_probability: 1.0,
            muscle_amplitude: 2.0,
            ..SILENT
        };
        let noisy = add_noise(&vec![0.0; 100 * 256], &l, &muscle, 5).unwrap();
        let burst = (MUSCLE_SECONDS * 256.0).round() as usize;
        for row in noisy.chunks_exact(256) {
            let touched: Vec<usize> = (0..256).filter(|&t| row[t] != 0.0).collect();
            if let (Some(first), Some(last)) = (touched.first(), touched.last()) {
                assert!(last - first < burst);
            }
        }
        // High-frequency: neighbouring samples are anti-correlated (lag-1 autocorrelation of differenced noise is −½).
        let lag1: f64 = noisy.windows(2).map(|w| f64::from(w[0]) * f64::from(w[1])).sum::<f64>();
        let power: f64 = noisy.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>();
        assert!(lag1 / power < -0.3, "{}", lag1 / power);
    }
}
