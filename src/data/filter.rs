//! Butterworth IIR filters (Butterworth 1930, "On the theory of filter amplifiers") as
//! cascades of second-order sections, designed here from the analog prototype, and their
//! zero-phase forward-backward application (`filtfilt`). What to filter and where the band
//! edges are for EEG is decided in `eeg.rs`.
//!
//! Design: the order-N analog prototype's poles lie on the unit circle at angles
//! π(2k + N + 1)/(2N); a low-pass scales them by the cutoff, a high-pass inverts them
//! (s → ω_c/s). The cutoff is pre-warped, ω_c = 2·fs·tan(π·f_c/fs), so that the bilinear
//! transform z = (2fs + s)/(2fs − s) puts the −3 dB point exactly at f_c and the digital
//! magnitude is the analog one at the warped frequency:
//! |H(f)| = 1/√(1 + (tan(πf/fs)/tan(πf_c/fs))^(±2N)) (+ for low-pass, − for high-pass).
//! Conjugate pole pairs make second-order sections, the real pole of an odd order one
//! first-order section; zeros sit at z = −1 (low-pass) or z = 1 (high-pass), and each section
//! has unit gain in its pass band (at DC or at Nyquist). A band-pass is the low-pass and the
//! high-pass in cascade, so its magnitude is the product of theirs.

use crate::error::{Error, Result};
use std::f64::consts::PI;

/// Edge-padding length per "tap" of the cascade, as scipy.signal.sosfiltfilt's default
/// (padlen = 3 · (2·sections + 1 − first-order sections)).
const PAD_PER_TAP: usize = 3;

/// One section, H(z) = (b0 + b1 z⁻¹ + b2 z⁻²)/(1 + a1 z⁻¹ + a2 z⁻²); a first-order section
/// has b2 = a2 = 0. Stored with a = [1, a1, a2].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Section {
    b: [f64; 3],
    a: [f64; 3],
}

impl Section {
    fn first_order(&self) -> bool {
        self.b[2] == 0.0 && self.a[2] == 0.0
    }

    /// H(e^{iω}) as (re, im).
    fn at(&self, omega: f64) -> (f64, f64) {
        // z⁻¹ = e^{−iω}, z⁻² = e^{−2iω}
        let poly = |c: &[f64; 3]| {
            (
                c[0] + c[1] * omega.cos() + c[2] * (2.0 * omega).cos(),
                -c[1] * omega.sin() - c[2] * (2.0 * omega).sin(),
            )
        };
        let (nr, ni) = poly(&self.b);
        let (dr, di) = poly(&self.a);
        let d = dr * dr + di * di;
        ((nr * dr + ni * di) / d, (ni * dr - nr * di) / d)
    }

    /// Gain for a constant input.
    fn dc_gain(&self) -> f64 {
        self.b.iter().sum::<f64>() / self.a.iter().sum::<f64>()
    }

    /// The transposed-direct-form-II state [s1, s2] that a constant unit input holds still.
    fn steady_state(&self) -> [f64; 2] {
        let g = self.dc_gain();
        let s2 = self.b[2] - self.a[2] * g;
        [self.b[1] - self.a[1] * g + s2, s2]
    }

    /// Filters `x` in place (transposed direct form II) from `state`.
    fn run(&self, x: &mut [f64], mut state: [f64; 2]) {
        let (b, a) = (self.b, self.a);
        for v in x.iter_mut() {
            let input = *v;
            let y = b[0] * input + state[0];
            state[0] = b[1] * input - a[1] * y + state[1];
            state[1] = b[2] * input - a[2] * y;
            *v = y;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Low,
    High,
}

/// A cascade of sections at one sampling rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    sample_rate: f64,
    sections: Vec<Section>,
}

impl Filter {
    /// Order-`order` Butterworth low-pass with −3 dB at `cutoff_hz`.
    pub fn lowpass(order: usize, cutoff_hz: f64, sample_rate: f64) -> Result<Filter> {
        butterworth(order, cutoff_hz, sample_rate, Pass::Low)
    }

    /// Order-`order` Butterworth high-pass with −3 dB at `cutoff_hz`.
    pub fn highpass(order: usize, cutoff_hz: f64, sample_rate: f64) -> Result<Filter> {
        butterworth(order, cutoff_hz, sample_rate, Pass::High)
    }

    /// An order-`order` high-pass at `low_hz` followed by an order-`order` low-pass at `high_hz`.
    pub fn bandpass(order: usize, low_hz: f64, high_hz: f64, sample_rate: f64) -> Result<Filter> {
        if low_hz.is_nan() || high_hz.is_nan() || low_hz >= high_hz {
            return Err(Error::Config(format!(
                "band-pass filter: the low edge {low_hz} Hz must be below the high edge {high_hz} Hz"
            )));
        }
        let mut filter = Filter::highpass(order, low_hz, sample_rate)?;
        filter
            .sections
            .extend(Filter::lowpass(order, high_hz, sample_rate)?.sections);
        Ok(filter)
    }

    /// The one-way magnitude |H(e^{2πi·f/fs})| at `freq_hz`.
    pub fn response(&self, freq_hz: f64) -> f64 {
        let omega = 2.0 * PI * freq_hz / self.sample_rate;
        self.sections
            .iter()
            .map(|s| {
                let (re, im) = s.at(omega);
                re.hypot(im)
            })
            .product()
    }

    /// Samples of odd extension added at each end by `filtfilt`.
    pub fn padlen(&self) -> usize {
        let first_order = self.sections.iter().filter(|s| s.first_order()).count();
        PAD_PER_TAP * (2 * self.sections.len() + 1 - first_order)
    }

    /// Zero-phase filtering: forward, then backward, so the magnitude is |H|² and the phase 0.
    /// As scipy.signal.sosfiltfilt: `x` is extended at each end by `padlen()` samples of odd
    /// extension (2·x[0] − x[i], mirrored about the end point), each pass starts every
    /// section in the steady state of a constant input equal to the pass's first sample, and
    /// the extension is cut off again. x: [n] with n > padlen(); computed in f64.
    pub fn filtfilt(&self, x: &[f32]) -> Result<Vec<f32>> {
        let pad = self.padlen();
        let n = x.len();
        if n <= pad {
            return Err(Error::Shape(format!(
                "filtfilt: a signal of {n} samples is too short for this filter, which pads {pad} samples at each end \
                 and needs more than {pad}"
            )));
        }
        let first = f64::from(x[0]);
        let last = f64::from(x[n - 1]);
        let mut y: Vec<f64> = (1..=pad)
            .rev()
            .map(|i| 2.0 * first - f64::from(x[i]))
            .chain(x.iter().map(|&v| f64::from(v)))
            .chain((1..=pad).map(|i| 2.0 * last - f64::from(x[n - 1 - i])))
            .collect();
        self.run_from_steady_state(&mut y);
        y.reverse();
        self.run_from_steady_state(&mut y);
        y.reverse();
        Ok(y[pad..pad + n].iter().map(|&v| v as f32).collect())
    }

    /// Runs the cascade over `x` in place, each section starting as if `x[0]` had always been the input.
    fn run_from_steady_state(&self, x: &mut [f64]) {
        let mut level = x[0];
        for section in &self.sections {
            let [s1, s2] = section.steady_state();
            section.run(x, [s1 * level, s2 * level]);
            level *= section.dc_gain();
        }
    }
}

fn butterworth(order: usize, cutoff_hz: f64, sample_rate: f64, pass: Pass) -> Result<Filter> {
    if order == 0 {
        return Err(Error::Config(
            "Butterworth filter: the order must be at least 1".to_string(),
        ));
    }
    if !(sample_rate.is_finite() && sample_rate > 0.0) {
        return Err(Error::Config(format!(
            "Butterworth filter: the sampling rate {sample_rate} Hz must be positive"
        )));
    }
    let nyquist = sample_rate / 2.0;
    if !(cutoff_hz > 0.0 && cutoff_hz < nyquist) {
        return Err(Error::Config(format!(
            "Butterworth filter: the cutoff {cutoff_hz} Hz must lie strictly between 0 and the Nyquist frequency \
             {nyquist} Hz"
        )));
    }
    let fs2 = 2.0 * sample_rate;
    let warped = fs2 * (PI * cutoff_hz / sample_rate).tan();
    // Zeros at z = −1 (low-pass) or z = 1 (high-pass); the pass band's reference point is the other end.
    let zero_sign = match pass {
        Pass::Low => 1.0,
        Pass::High => -1.0,
    };
    let mut sections = Vec::new();
    for k in 0..order / 2 {
        let angle = PI * (2 * k + order + 1) as f64 / (2 * order) as f64;
        // Prototype pole on the unit circle; s → ω_c·s (low) or s → ω_c/s, i.e. ω_c·conj(p) since |p| = 1 (high).
        let (re, im) = match pass {
            Pass::Low => (warped * angle.cos(), warped * angle.sin()),
            Pass::High => (warped * angle.cos(), -warped * angle.sin()),
        };
        // Bilinear: z = (fs2 + s)/(fs2 − s).
        let (nr, ni, dr, di) = (fs2 + re, im, fs2 - re, -im);
        let d = dr * dr + di * di;
        let (zr, zi) = ((nr * dr + ni * di) / d, (ni * dr - nr * di) / d);
        let a = [1.0, -2.0 * zr, zr * zr + zi * zi];
        sections.push(normalised([1.0, 2.0 * zero_sign, 1.0], a, pass));
    }
    if order % 2 == 1 {
        // The real prototype pole −1 maps to s = −ω_c for both low- and high-pass.
        let z = (fs2 - warped) / (fs2 + warped);
        sections.push(normalised([1.0, zero_sign, 0.0], [1.0, -z, 0.0], pass));
    }
    Ok(Filter { sample_rate, sections })
}

/// The section with numerator scaled to unit gain at DC (low-pass) or Nyquist (high-pass).
fn normalised(b: [f64; 3], a: [f64; 3], pass: Pass) -> Section {
    // H(1) = Σb/Σa; H(−1) = (b0 − b1 + b2)/(a0 − a1 + a2).
    let alternate = |c: &[f64; 3]| c[0] - c[1] + c[2];
    let gain = match pass {
        Pass::Low => b.iter().sum::<f64>() / a.iter().sum::<f64>(),
        Pass::High => alternate(&b) / alternate(&a),
    };
    Section {
        b: b.map(|c| c / gain),
        a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paper's band (arXiv:2411.01220, EEG preprocessing): 0.5–45 Hz, order 5.
    const LOW_HZ: f64 = 0.5;
    const HIGH_HZ: f64 = 45.0;
    const ORDER: usize = 5;
    const FREQUENCIES: [f64; 7] = [0.1, 0.5, 1.0, 5.0, 10.0, 45.0, 60.0];

    /// The analog Butterworth magnitude at the pre-warped frequency.
    fn analytic(pass: Pass, order: usize, cutoff: f64, fs: f64, f: f64) -> f64 {
        let ratio = (PI * f / fs).tan() / (PI * cutoff / fs).tan();
        let ratio = if pass == Pass::Low { ratio } else { 1.0 / ratio };
        1.0 / (1.0 + ratio.powi(2 * order as i32)).sqrt()
    }

    fn close(a: f64, b: f64, relative: f64) -> bool {
        (a - b).abs() <= relative * b.abs().max(1e-12)
    }

    #[test]
    fn each_section_type_matches_the_analytic_butterworth_magnitude() {
        for fs in [128.0, 256.0] {
            for order in [1, 2, 5] {
                let low = Filter::lowpass(order, HIGH_HZ, fs).unwrap();
                let high = Filter::highpass(order, LOW_HZ, fs).unwrap();
                for f in FREQUENCIES {
                    let want_low = analytic(Pass::Low, order, HIGH_HZ, fs, f);
                    let want_high = analytic(Pass::High, order, LOW_HZ, fs, f);
                    assert!(
                        close(low.response(f), want_low, 1e-9),
                        "low-pass N={order} fs={fs} f={f}"
                    );
                    assert!(
                        close(high.response(f), want_high, 1e-9),
                        "high-pass N={order} fs={fs} f={f}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_band_pass_is_the_product_of_its_edges_and_3_db_down_at_each() {
        for fs in [128.0, 256.0] {
            let band = Filter::bandpass(ORDER, LOW_HZ, HIGH_HZ, fs).unwrap();
            for f in FREQUENCIES {
                let want = analytic(Pass::High, ORDER, LOW_HZ, fs, f) * analytic(Pass::Low, ORDER, HIGH_HZ, fs, f);
                assert!(close(band.response(f), want, 1e-9), "fs={fs} f={f}");
            }
            let half_power = std::f64::consts::FRAC_1_SQRT_2;
            assert!(close(
                Filter::lowpass(ORDER, HIGH_HZ, fs).unwrap().response(HIGH_HZ),
                half_power,
                1e-9
            ));
            assert!(close(
                Filter::highpass(ORDER, LOW_HZ, fs).unwrap().response(LOW_HZ),
                half_power,
                1e-9
            ));
            assert!(close(band.response(10.0), 1.0, 1e-6));
        }
    }

    #[test]
    fn an_order_5_band_pass_has_six_sections_and_pads_like_scipy() {
        let band = Filter::bandpass(ORDER, LOW_HZ, HIGH_HZ, 128.0).unwrap();
        assert_eq!(band.sections.len(), 6);
        assert_eq!(band.sections.iter().filter(|s| s.first_order()).count(), 2);
        assert_eq!(band.padlen(), 33);
    }

    fn sine(f: f64, fs: f64, n: usize) -> Vec<f32> {
        (0..n).map(|i| (2.0 * PI * f * i as f64 / fs).sin() as f32).collect()
    }

    /// Samples kept away from the ends, where the padding's transients live.
    fn interior<T: Copy>(x: &[T], fs: f64) -> &[T] {
        let margin = (20.0 * fs) as usize;
        &x[margin..x.len() - margin]
    }

    #[test]
    fn filtfilt_passes_a_sine_scaled_by_the_squared_magnitude_and_not_shifted() {
        for fs in [128.0, 256.0] {
            let band = Filter::bandpass(ORDER, LOW_HZ, HIGH_HZ, fs).unwrap();
            for f in [1.0, 10.0, 40.0, 50.0] {
                let x = sine(f, fs, (60.0 * fs) as usize);
                let y = band.filtfilt(&x).unwrap();
                let gain = band.response(f).powi(2);
                for (a, b) in interior(&y, fs).iter().zip(interior(&x, fs)) {
                    assert!((f64::from(*a) - gain * f64::from(*b)).abs() < 1e-3, "fs={fs} f={f}");
                }
            }
        }
    }

    #[test]
    fn filtfilt_has_zero_phase_a_10_hz_sine_correlates_best_at_lag_0() {
        let fs = 128.0;
        let band = Filter::bandpass(ORDER, LOW_HZ, HIGH_HZ, fs).unwrap();
        let x = sine(10.0, fs, (60.0 * fs) as usize);
        let y = band.filtfilt(&x).unwrap();
        let (x, y) = (interior(&x, fs), interior(&y, fs));
        let max_lag = 6i64; // under half a period (12.8 samples)
        let correlation = |lag: i64| -> f64 {
            let m = max_lag as usize;
            (m..x.len() - m)
                .map(|i| f64::from(x[i]) * f64::from(y[(i as i64 + lag) as usize]))
                .sum()
        };
        let best = (-max_lag..=max_lag)
            .max_by(|&a, &b| correlation(a).total_cmp(&correlation(b)))
            .unwrap();
        assert_eq!(best, 0);
        let amplitude = |v: &[f32]| v.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((f64::from(amplitude(y) / amplitude(x)) - band.response(10.0).powi(2)).abs() < 1e-4);
    }

    #[test]
    fn filtfilt_removes_a_constant() {
        let band = Filter::bandpass(ORDER, LOW_HZ, HIGH_HZ, 256.0).unwrap();
        let y = band.filtfilt(&[100.0; 1000]).unwrap();
        assert!(
            y.iter().all(|v| v.abs() < 1e-6),
            "{:?}",
            y.iter().fold(0f32, |m, v| m.max(v.abs()))
        );
    }

    #[test]
    fn impossible_designs_and_short_signals_are_refused() {
        assert!(Filter::lowpass(0, 10.0, 128.0).is_err());
        assert!(Filter::lowpass(5, 64.0, 128.0).is_err());
        assert!(Filter::highpass(5, 0.0, 128.0).is_err());
        assert!(Filter::bandpass(5, 45.0, 0.5, 128.0).is_err());
        assert!(Filter::lowpass(5, 10.0, f64::NAN).is_err());
        let band = Filter::bandpass(ORDER, LOW_HZ, HIGH_HZ, 128.0).unwrap();
        assert!(matches!(band.filtfilt(&[0.0; 33]), Err(Error::Shape(_))));
        assert!(band.filtfilt(&[0.0; 34]).is_ok());
    }
}
