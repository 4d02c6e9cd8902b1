//! A real-data file as the SAEs see it: training rows and held-out rows, with
//! the scale applied to them and their layout (plain rows, or EEG segments for
//! the noise model). The browser's file trainer calls `split_bytes` too.
//!
//! Owns the split; reading files is `data::{edf, eeg, activations}`, checking
//! rows `data::validate`.

use super::presets::{RealData, RealExperiment};
use crate::data::eeg::SegmentLayout;
use crate::error::{Error, Result};
use std::sync::Arc;

/// Rows an activation file needs for a split: 2 to train on and 2 held out.
pub const MIN_SPLIT_ROWS: usize = 4;

/// How the rows of a split are laid out.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    /// Activation rows [rows, d].
    Rows,
    /// EEG segments [rows, channels · samples], channel-major.
    Segments(SegmentLayout),
}

/// Training and held-out rows of one data file, as the SAEs see them (scaled).
pub struct Split {
    pub d: usize,
    /// [train_rows, d] row-major; shared by every run of an experiment.
    pub train: Arc<[f32]>,
    /// [held_out_rows, d] row-major.
    pub held_out: Vec<f32>,
    /// [validation_rows, d] row-major: kept from training, scored at log steps to decide
    /// when a run stops (empty without a validation part).
    pub validation: Vec<f32>,
    /// The factor every value was multiplied by (1: as read).
    pub scale: f32,
    pub layout: Layout,
    /// What the loader did, for the summary (rows, channels, scale, …).
    pub description: serde_json::Value,
}

impl Split {
    /// Rows of each part: (training, held out).
    pub fn rows(&self) -> (usize, usize) {
        (self.train.len() / self.d, self.held_out.len() / self.d)
    }
}

/// Loads and splits the experiment's data: EEG through the paper's
/// preprocessing (held out by time), activations by file order.
pub fn load_split(exp: &RealExperiment) -> Result<Split> {
    let io = |e: std::io::Error| Error::Io {
        path: exp.data.clone(),
        message: e.to_string(),
    };
    // The file's bytes, its rows and (briefly) their shared copy are in memory at once:
    // size it before reading.
    let len = std::fs::metadata(&exp.data).map_err(io)?.len();
    let budget = crate::limits::host_budget();
    if len.saturating_mul(3) > budget {
        return Err(Error::Io {
            path: exp.data.clone(),
            message: format!(
                "{} MiB: an experiment holds the file and its rows in memory (about {} MiB) but {} MiB is \
                 available; `mfr-sae train --data-file` streams it instead",
                len >> 20,
                len.saturating_mul(3) >> 20,
                budget >> 20
            ),
        });
    }
    let bytes = std::fs::read(&exp.data).map_err(io)?;
    split_bytes(exp, &bytes)
}

/// `load_split` on the file's bytes (the browser passes what the reader chose).
pub fn split_bytes(exp: &RealExperiment, bytes: &[u8]) -> Result<Split> {
    match &exp.read {
        RealData::Eeg { eeg, .. } => {
            let edf = crate::data::edf::parse(&exp.data, bytes)?;
            let seg = crate::data::eeg::segments(&edf, eeg)?;
            let l = &seg.layout;
            let description = serde_json::json!({
                "channels": l.channels, "labels": l.labels, "sample_rate": l.sample_rate,
                "samples_per_segment": l.samples_per_segment, "train_rows": seg.train_rows(),
                "held_out_rows": seg.held_out_rows(), "validation_rows": seg.validation_rows(),
                "stride_samples": eeg.stride_samples,
            });
            let d = seg.width();
            crate::data::validate::check_split(&exp.data, d, &seg.train, &seg.held_out, false)?;
            if !seg.validation.is_empty() {
                crate::data::validate::check_split(&exp.data, d, &seg.train, &seg.validation, false)?;
            }
            Ok(Split {
                d,
                train: seg.train.into(),
                held_out: seg.held_out,
                validation: seg.validation,
                scale: 1.0,
                layout: Layout::Segments(seg.layout),
                description,
            })
        }
        RealData::Activations {
            tensor,
            held_out_fraction,
            validation_fraction,
            normalise,
        } => {
            let matrix = crate::data::activations::read(&exp.data, bytes, tensor.as_deref())?;
            let (rows, d) = (matrix.rows, matrix.d);
            // At least 2 training and 2 held-out rows: each part needs a variance (FVU's denominator).
            if rows < MIN_SPLIT_ROWS {
                return Err(Error::Io {
                    path: exp.data.clone(),
                    message: format!(
                        "{rows} rows: a split needs at least {MIN_SPLIT_ROWS} (2 to train on, 2 held out)"
                    ),
                });
            }
            let held = ((rows as f64 * held_out_fraction).round() as usize).clamp(2, rows - 2);
            // A validation part, where asked for, takes at least 2 rows and leaves 2 to train on.
            let validated = match *validation_fraction {
                f if !(0.0..1.0).contains(&f) => {
                    return Err(Error::Config(format!(
                        "validation_fraction ({f}) must be at least 0 and below 1"
                    )))
                }
                f if f > 0.0 && rows - held < MIN_SPLIT_ROWS => {
                    return Err(Error::Io {
                        path: exp.data.clone(),
                        message: format!(
                            "{} training rows: a validation part needs at least {MIN_SPLIT_ROWS} (2 to \
                             train on, 2 to validate)",
                            rows - held
                        ),
                    })
                }
                f if f > 0.0 => (((rows - held) as f64 * f).round() as usize).clamp(2, rows - held - 2),
                _ => 0,
            };
            let mut data = matrix.data;
            let held_out_start = (rows - held) * d;
            let validation_start = held_out_start - validated * d;
            let scale = crate::data::validate::check_split(
                &exp.data,
                d,
                &data[..validation_start],
                &data[validation_start..],
                *normalise,
            )?;
            if scale != 1.0 {
                // Mean row norm → √d, measured on the training rows only (in f64; the product is f32).
                data.iter_mut()
                    .for_each(|v| *v = (f64::from(*v) * f64::from(scale)) as f32);
            }
            let held_out = data.split_off(held_out_start);
            let validation = data.split_off(validation_start);
            let description = serde_json::json!({
                "rows": rows, "d": d, "train_rows": rows - held - validated, "validation_rows": validated,
                "held_out_rows": held, "scale": scale,
            });
            Ok(Split {
                d,
                train: data.into(),
                held_out,
                validation,
                scale,
                layout: Layout::Rows,
                description,
            })
        }
    }
}
