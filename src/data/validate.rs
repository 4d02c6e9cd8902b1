//! The one check and normalisation every matrix of real rows passes before it trains:
//! `train --data-file` (streamed in chunks), the EEG and activation experiments and the
//! page (whole, `experiment::split_bytes`). Statistics are gathered in f64 over whole rows;
//! what is refused is what would make the f32 GPU sums train on infinities or zeros
//! without saying so: a non-finite value, a file of zero rows or zero norm, rows whose
//! squared norm (after scaling) overflows the f32 sums, a scale that makes most rows
//! vanish next to an outlier, and rows that are all the same (zero variance: FVU is 0/0).
//! Every refusal names the file and the row (or column) at fault.
//!
//! Reading the formats is `activations.rs` / `edf.rs`; this module only sees rows.

use crate::error::{Error, Result};

/// Largest squared row norm (after scaling) the f32 GPU sums can take: a batch of 10⁴ such
/// rows summed over a window of 10³ steps stays below f32::MAX ≈ 3.4·10³⁸.
pub const MAX_ROW_SQUARED_NORM: f64 = 1e30;
/// A non-zero row whose scaled norm is below this fraction of the mean scaled norm is lost
/// in f32 rounding next to the typical row (2⁻²⁰ ≈ 10⁻⁶, about 8 f32 ulps of headroom).
const VANISHING_RELATIVE: f64 = 1.0 / 1_048_576.0;
/// … or below this absolute norm, whose square nears f32's smallest normal number (10⁻³⁸).
const VANISHING_ABSOLUTE: f64 = 1e-15;
/// Bins of the row-norm histogram: floor(log₂ ‖row‖) over f64's whole exponent range.
const LOG2_MIN: i32 = -1075;
const LOG2_BINS: usize = 2100;

/// Statistics of a stream of rows [rows, d], in f64.
pub struct RowStats {
    name: String,
    d: usize,
    /// File row number of the first row added (held-out rows start after the training rows).
    first_row: usize,
    rows: usize,
    norm_sum: f64,
    /// Largest row norm and its row.
    max_norm: (f64, usize),
    /// Non-zero rows by floor(log₂ ‖row‖): count and first row of each bin.
    log2_bins: Vec<(u64, usize)>,
    nonzero_rows: u64,
    /// Welford per column: mean and sum of squared deviations.
    col_mean: Vec<f64>,
    col_m2: Vec<f64>,
}

impl RowStats {
    /// Statistics of rows that start at file row `first_row` of `name`.
    pub fn new(name: &str, d: usize, first_row: usize) -> RowStats {
        RowStats {
            name: name.to_string(),
            d,
            first_row,
            rows: 0,
            norm_sum: 0.0,
            max_norm: (0.0, first_row),
            log2_bins: vec![(0, 0); LOG2_BINS],
            nonzero_rows: 0,
            col_mean: vec![0.0; d],
            col_m2: vec![0.0; d],
        }
    }

    /// The statistics of `data` [rows, d] as one block.
    pub fn of(name: &str, d: usize, first_row: usize, data: &[f32]) -> Result<RowStats> {
        let mut s = RowStats::new(name, d, first_row);
        s.add(data)?;
        Ok(s)
    }

    fn fail(&self, message: String) -> Error {
        Error::Io {
            path: self.name.clone(),
            message,
        }
    }

    /// Adds whole rows [n, d]; a non-finite value is refused naming its row and column.
    pub fn add(&mut self, data: &[f32]) -> Result<()> {
        let d = self.d;
        if d == 0 || !data.len().is_multiple_of(d) {
            return Err(self.fail(format!("{} values do not make whole rows of width {d}", data.len())));
        }
        for row in data.chunks_exact(d) {
            let at = self.first_row + self.rows;
            if let Some(col) = row.iter().position(|v| !v.is_finite()) {
                return Err(self.fail(format!(
                    "row {at}, column {col} is {}: every value must be finite",
                    row[col]
                )));
            }
            let norm = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
            self.rows += 1;
            self.norm_sum += norm;
            if norm > self.max_norm.0 {
                self.max_norm = (norm, at);
            }
            if norm > 0.0 {
                self.nonzero_rows += 1;
                let bin = &mut self.log2_bins[Self::bin(norm)];
                if bin.0 == 0 {
                    bin.1 = at;
                }
                bin.0 += 1;
            }
            let n = self.rows as f64;
            for ((mean, m2), &v) in self.col_mean.iter_mut().zip(&mut self.col_m2).zip(row) {
                let delta = f64::from(v) - *mean;
                *mean += delta / n;
                *m2 += delta * (f64::from(v) - *mean);
            }
        }
        Ok(())
    }

    fn bin(norm: f64) -> usize {
        (norm.log2().floor() as i64 - i64::from(LOG2_MIN)).clamp(0, LOG2_BINS as i64 - 1) as usize
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Σ over columns of the population variance.
    pub fn total_variance(&self) -> f64 {
        self.col_m2.iter().sum::<f64>() / self.rows.max(1) as f64
    }

    /// Checks the rows for training and returns the factor they are multiplied by: with
    /// `normalise`, s = √d / mean ‖row‖ (the mean row norm becomes √d), else 1.
    pub fn scale(&self, normalise: bool) -> Result<f32> {
        if self.rows == 0 {
            return Err(self.fail("the file holds no rows".to_string()));
        }
        if self.nonzero_rows == 0 {
            return Err(self.fail(format!(
                "every one of the {} rows is zero: there is nothing to reconstruct",
                self.rows
            )));
        }
        self.check_variance("rows")?;
        let scale = if normalise {
            let mean = self.norm_sum / self.rows as f64;
            let s = ((self.d as f64).sqrt() / mean) as f32;
            if !(s.is_finite() && s > 0.0) {
                return Err(self.fail(format!(
                    "the mean row norm is {mean:.3e}: scaling it to √{} needs the factor {s:.3e}, which f32 cannot hold",
                    self.d
                )));
            }
            s
        } else {
            1.0
        };
        self.check_scale(scale)?;
        Ok(scale)
    }

    /// Refuses rows that are all the same (their variance, FVU's denominator, is 0).
    pub fn check_variance(&self, what: &str) -> Result<()> {
        if self.total_variance() > 0.0 {
            return Ok(());
        }
        let rows = self.rows;
        Err(self.fail(if rows < 2 {
            format!("{rows} {what}: at least 2 are needed for a variance (FVU's denominator)")
        } else {
            format!("all {rows} {what} are the same: their variance is 0, so FVU is undefined")
        }))
    }

    /// Refuses rows that, multiplied by `scale`, overflow the f32 sums, and a scale under
    /// which most non-zero rows vanish next to the largest (an outlier sets the scale).
    pub fn check_scale(&self, scale: f32) -> Result<()> {
        let s = f64::from(scale);
        let (max, max_row) = self.max_norm;
        if (s * max).powi(2) > MAX_ROW_SQUARED_NORM {
            return Err(self.fail(format!(
                "row {max_row} has norm {max:.3e} (× scale {s:.3e}): its squared norm {:.3e} overflows the f32 \
                 sums of training (limit {MAX_ROW_SQUARED_NORM:e}); rescale the data or clip that row",
                (s * max).powi(2)
            )));
        }
        let mean_scaled = s * self.norm_sum / self.rows.max(1) as f64;
        let threshold = (mean_scaled * VANISHING_RELATIVE).max(VANISHING_ABSOLUTE) / s;
        // Rows in bins wholly below the threshold: ‖row‖ < 2^(bin + 1) ≤ threshold.
        let mut vanishing = 0;
        let mut example = None;
        for (i, &(count, first)) in self.log2_bins.iter().enumerate() {
            let upper = 2f64.powi(i as i32 + LOG2_MIN + 1);
            if upper > threshold {
                break;
            }
            vanishing += count;
            if count > 0 && example.is_none() {
                example = Some(first);
            }
        }
        if 2 * vanishing > self.nonzero_rows {
            let row = example.expect("some row vanishes");
            return Err(self.fail(format!(
                "{vanishing} of the {} non-zero rows (e.g. row {row}) have norm below {threshold:.3e}: next to row \
                 {max_row} (norm {max:.3e}) they vanish in f32 after scaling by {s:.3e}; remove or clip the outlier",
                self.nonzero_rows
            )));
        }
        Ok(())
    }
}

/// Checks a training/held-out split of one file: training rows as `RowStats::scale`, the
/// held-out rows against the training scale and for a non-zero variance (held-out FVU).
pub fn check_split(name: &str, d: usize, train: &[f32], held_out: &[f32], normalise: bool) -> Result<f32> {
    let train_stats = RowStats::of(name, d, 0, train)?;
    let scale = train_stats.scale(normalise)?;
    let held = RowStats::of(name, d, train_stats.rows(), held_out)?;
    held.check_variance("held-out rows")?;
    held.check_scale(scale)?;
    Ok(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<f32>) -> String {
        r.unwrap_err().to_string()
    }

    fn ramp(rows: usize, d: usize) -> Vec<f32> {
        (0..rows * d).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.5).collect()
    }

    #[test]
    fn the_scale_brings_the_mean_row_norm_to_sqrt_d() {
        let (rows, d) = (30, 7);
        let data = ramp(rows, d);
        let s = RowStats::of("a.npy", d, 0, &data).unwrap().scale(true).unwrap();
        let mean: f64 = data
            .chunks(d)
            .map(|r| r.iter().map(|&v| (f64::from(v * s)).powi(2)).sum::<f64>().sqrt())
            .sum::<f64>()
            / rows as f64;
        assert!((mean - (d as f64).sqrt()).abs() < 1e-5, "{mean}");
        assert_eq!(RowStats::of("a.npy", d, 0, &data).unwrap().scale(false).unwrap(), 1.0);
    }

    #[test]
    fn one_huge_value_is_refused_with_or_without_normalising() {
        let mut data = ramp(50, 4);
        data[4 * 17 + 2] = 1e30;
        let stats = RowStats::of("big.npy", 4, 0, &data).unwrap();
        let normalised = err(stats.scale(true));
        assert!(normalised.starts_with("big.npy: "), "{normalised}");
        assert!(normalised.contains("next to row 17"), "{normalised}");
        let raw = err(stats.scale(false));
        assert!(raw.contains("row 17 has norm 1.000e30"), "{raw}");
    }

    #[test]
    fn zero_constant_short_and_non_finite_data_are_refused() {
        let zero = err(RowStats::of("z.npy", 3, 0, &[0.0; 12]).unwrap().scale(true));
        assert!(zero.contains("every one of the 4 rows is zero"), "{zero}");
        let same = err(RowStats::of("c.npy", 2, 0, &[1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
            .unwrap()
            .scale(true));
        assert!(same.contains("all 3 rows are the same"), "{same}");
        let one = err(RowStats::of("o.npy", 2, 0, &[1.0, 2.0]).unwrap().scale(true));
        assert!(one.contains("1 rows: at least 2"), "{one}");
        let nan = RowStats::of("n.npy", 2, 5, &[1.0, 2.0, 3.0, f32::NAN])
            .err()
            .unwrap()
            .to_string();
        assert_eq!(nan, "n.npy: row 6, column 1 is NaN: every value must be finite");
        assert!(err(RowStats::new("e.npy", 2, 0).scale(true)).contains("no rows"));
    }

    #[test]
    fn a_split_checks_the_held_out_rows_against_the_training_scale() {
        let train = ramp(20, 3);
        assert!(check_split("s.npy", 3, &train, &ramp(4, 3), true).is_ok());
        let same = check_split("s.npy", 3, &train, &[1.0; 6], true)
            .unwrap_err()
            .to_string();
        assert!(same.contains("all 2 held-out rows are the same"), "{same}");
        let huge = check_split("s.npy", 3, &train, &[1e20, 0.0, 0.0, 1.0, 2.0, 3.0], false)
            .unwrap_err()
            .to_string();
        assert!(huge.contains("row 20 has norm"), "{huge}");
    }

    #[test]
    fn a_few_tiny_rows_beside_normal_ones_are_kept() {
        let mut data = ramp(10, 2);
        data[0] = 1e-30;
        data[1] = 0.0;
        assert!(RowStats::of("t.npy", 2, 0, &data).unwrap().scale(true).is_ok());
        let tiny = err(RowStats::of("t.npy", 2, 0, &[1e-20, 2e-20, 3e-20, 1e-20])
            .unwrap()
            .scale(false));
        assert!(tiny.contains("vanish"), "{tiny}");
    }
}
