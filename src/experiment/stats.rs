//! The statistics an experiment reports: mean ± sd over seeds and the paired
//! t-test of per-seed differences (MFR − baseline on the same seed). The Student-t
//! distribution is computed here (regularised incomplete beta by its continued
//! fraction, Numerical Recipes §6.4) instead of a statistics crate: it is one
//! function, and the wasm build stays free of a dependency for it.

use serde::{Deserialize, Serialize};

/// mean ± sd (sample sd; 0 for one value).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub sd: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Stat {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        Stat { mean, sd: var.sqrt() }
    }
}

/// A paired t-test of differences: their mean ± sd, t = mean / (sd / √n) and the
/// two-sided p-value with n − 1 degrees of freedom (NaN below two pairs; 0 or 1
/// for differences without spread).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    pub difference: Stat,
    pub pairs: usize,
    /// JSON writes a NaN or infinite t (and a NaN p) as null; it reads back as NaN.
    #[serde(deserialize_with = "nan_if_null")]
    pub t: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

impl PairedTest {
    pub fn of(differences: &[f64]) -> PairedTest {
        let difference = Stat::of(differences);
        let n = differences.len();
        let (t, p) = match (n, difference.sd) {
            (0 | 1, _) => (f64::NAN, f64::NAN),
            (_, 0.0) => match difference.mean == 0.0 {
                true => (0.0, 1.0),
                false => (difference.mean.signum() * f64::INFINITY, 0.0),
            },
            (_, sd) => {
                let t = difference.mean / (sd / (n as f64).sqrt());
                (t, student_t_two_sided(t, (n - 1) as f64))
            }
        };
        PairedTest {
            difference,
            pairs: n,
            t,
            p,
        }
    }
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2).
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
}

/// The regularised incomplete beta function I_x(a, b), a, b > 0, x in [0, 1].
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a + 1)/(a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

/// The continued fraction of I_x(a, b) by the modified Lentz method.
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ] {
            d = 1.0 + aa * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + aa / c;
            c = if c.abs() < TINY { TINY } else { c };
            h *= d * c;
        }
        if (d * c - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-13).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + G + 0.5;
    let sum = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |s, (i, c)| s + c / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sided_t_p_values_match_the_tables() {
        // Critical values of Student's t (two-sided 5 % and 1 %), and t = 2 with 5 df.
        for (t, df, p) in [
            (12.7062, 1.0, 0.05),
            (2.7764, 4.0, 0.05),
            (4.6041, 4.0, 0.01),
            (2.2281, 10.0, 0.05),
            (2.0, 5.0, 0.101_939),
            (0.0, 3.0, 1.0),
        ] {
            let got = student_t_two_sided(t, df);
            assert!((got - p).abs() < 2e-5, "t {t}, df {df}: p {got}, expected {p}");
        }
    }

    #[test]
    fn a_paired_test_of_consistent_differences_is_significant_and_of_noise_is_not() {
        let clear = PairedTest::of(&[-0.10, -0.11, -0.09, -0.10, -0.12]);
        assert!(clear.p < 1e-4 && clear.t < 0.0, "{clear:?}");
        let noise = PairedTest::of(&[0.1, -0.1, 0.05, -0.04, 0.0]);
        assert!(noise.p > 0.5, "{noise:?}");
        assert!(PairedTest::of(&[0.3]).p.is_nan());
        assert_eq!(PairedTest::of(&[0.0, 0.0]).p, 1.0);
    }
}
