//! Seeded synthetic data with known ground-truth features, for training and
//! scoring sparse autoencoders: the configurations of the two generators, the
//! true features they draw, and the stream of batches built from them.
//!
//! - `paper` (Marks et al., arXiv:2411.01220, synthetic-data experiments):
//!   Gaussian features in groups; each point is a non-negative mixture of
//!   `active` features of one group, chosen with decaying weights.
//! - `sharkey` (Sharkey, Braun & Millidge 2022, "Taking features out of
//!   superposition with sparse autoencoders"): unit-norm features that fire
//!   independently with decaying probabilities, optionally in correlated pairs.
//!
//! Scoring recovered features against `truth()` is not here, and neither is
//! anything on the GPU. All randomness comes from `crate::rng::Rng`, so a seed
//! gives the same features and batches natively and in WebAssembly.

use crate::data::{Source, SourceState};
use crate::error::{Error, Result};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// Added (xor) to the seed to start the data stream, so that the features
/// (drawn from the seed itself) do not depend on how many batches are drawn.
const DATA_STREAM_OFFSET: u64 = 0x9E37_79B9_7F4A_7C15;

/// The MFR paper's generator. Features are `n_features` i.i.d. N(0, 1) vectors
/// in R^d (not normalised), split into `n_groups` consecutive groups of
/// `group_size`; feature `g·group_size + i` is feature `i` of group `g`, and
/// features past `n_groups·group_size` never occur. Each point picks a group
/// uniformly and `active` of its features without replacement, feature `i`
/// weighted by `decay^i`, each with a coefficient from U[0, 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperConfig {
    /// Dimension of a data point.
    pub d: usize,
    /// Number of true features drawn (only the first `n_groups·group_size` occur).
    pub n_features: usize,
    /// Number of feature groups; each point uses features of one group.
    pub n_groups: usize,
    /// Features per group.
    pub group_size: usize,
    /// Features of its group active in each point.
    pub active: usize,
    /// Weight ratio between consecutive features of a group when choosing the active ones.
    pub decay: f64,
}

impl Default for PaperConfig {
    /// The values of the paper's synthetic experiments (arXiv:2411.01220).
    fn default() -> PaperConfig {
        PaperConfig {
            d: 256,
            n_features: 512,
            n_groups: 12,
            group_size: 42,
            active: 32,
            decay: 0.99,
        }
    }
}

impl PaperConfig {
    fn validate(&self) -> Result<()> {
        validate_shape("paper", self.d, self.n_features)?;
        if self.n_groups == 0 || self.group_size == 0 {
            return Err(Error::Config(format!(
                "synthetic paper generator: n_groups ({}) and group_size ({}) must both be at least 1",
                self.n_groups, self.group_size
            )));
        }
        if self
            .n_groups
            .checked_mul(self.group_size)
            .is_none_or(|used| used > self.n_features)
        {
            return Err(Error::Config(format!(
                "synthetic paper generator: n_groups ({}) × group_size ({}) must not exceed n_features ({})",
                self.n_groups, self.group_size, self.n_features
            )));
        }
        if self.active == 0 || self.active > self.group_size {
            return Err(Error::Config(format!(
                "synthetic paper generator: active ({}) must be between 1 and group_size ({})",
                self.active, self.group_size
            )));
        }
        validate_decay("paper", self.decay)
    }
}

/// The generator of Sharkey et al. 2022. Features are `n_features` unit-norm
/// random directions in R^d; feature `i` fires independently with probability
/// `min(1, s·decay^i)`, `s` set so that on average `mean_active` fire, each
/// with a coefficient from U[0, 1). With `pair_correlation` > 0, whenever
/// feature 2j fires, feature 2j+1 is also switched on with that probability
/// (so the mean number active then exceeds `mean_active`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharkeyConfig {
    /// Dimension of a data point.
    pub d: usize,
    /// Number of true features.
    pub n_features: usize,
    /// Expected number of features firing independently per point.
    pub mean_active: f64,
    /// Ratio between the firing probabilities of consecutive features (below saturation).
    pub decay: f64,
    /// Probability that feature 2j+1 is switched on when feature 2j fires, in [0, 1].
    pub pair_correlation: f64,
}

impl Default for SharkeyConfig {
    /// The setting of Sharkey et al. 2022, without correlations.
    fn default() -> SharkeyConfig {
        SharkeyConfig {
            d: 256,
            n_features: 512,
            mean_active: 5.0,
            decay: 0.99,
            pair_correlation: 0.0,
        }
    }
}

impl SharkeyConfig {
    fn validate(&self) -> Result<()> {
        validate_shape("sharkey", self.d, self.n_features)?;
        if !(self.mean_active > 0.0 && self.mean_active <= self.n_features as f64) {
            return Err(Error::Config(format!(
                "synthetic sharkey generator: mean_active ({}) must be above 0 and at most n_features ({})",
                self.mean_active, self.n_features
            )));
        }
        validate_decay("sharkey", self.decay)?;
        if !(0.0..=1.0).contains(&self.pair_correlation) {
            return Err(Error::Config(format!(
                "synthetic sharkey generator: pair_correlation ({}) must be between 0 and 1",
                self.pair_correlation
            )));
        }
        Ok(())
    }
}

/// The generators, by name (`--data paper|sharkey` on the CLI; clap is native-only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum Generator {
    /// The MFR paper's: groups of correlated features, N(0,1) feature vectors.
    Paper,
    /// Sharkey et al. 2022: independent unit features with decaying probabilities.
    Sharkey,
}

/// Which generator, with its settings; in JSON, `"generator": "paper" | "sharkey"`
/// next to the generator's fields.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "generator")]
pub enum SyntheticConfig {
    Paper(PaperConfig),
    Sharkey(SharkeyConfig),
}

impl SyntheticConfig {
    /// Dimension of a data point.
    pub fn d(&self) -> usize {
        match self {
            SyntheticConfig::Paper(paper) => paper.d,
            SyntheticConfig::Sharkey(sharkey) => sharkey.d,
        }
    }

    /// Number of true features (paper: groups · group size).
    pub fn n_features(&self) -> usize {
        match self {
            SyntheticConfig::Paper(paper) => paper.n_groups.saturating_mul(paper.group_size),
            SyntheticConfig::Sharkey(sharkey) => sharkey.n_features,
        }
    }

    /// Refuses values no data can be generated with, naming the value.
    pub fn validate(&self) -> Result<()> {
        match self {
            SyntheticConfig::Paper(paper) => paper.validate(),
            SyntheticConfig::Sharkey(sharkey) => sharkey.validate(),
        }
    }
}

fn validate_shape(generator: &str, d: usize, n_features: usize) -> Result<()> {
    if d == 0 || n_features == 0 {
        return Err(Error::Config(format!(
            "synthetic {generator} generator: d ({d}) and n_features ({n_features}) must both be at least 1"
        )));
    }
    if d.checked_mul(n_features).is_none() {
        return Err(Error::Config(format!(
            "synthetic {generator} generator: d ({d}) × n_features ({n_features}) is too large to hold"
        )));
    }
    Ok(())
}

fn validate_decay(generator: &str, decay: f64) -> Result<()> {
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(Error::Config(format!(
            "synthetic {generator} generator: decay ({decay}) must be above 0 and at most 1"
        )));
    }
    Ok(())
}

/// How a point's active features are chosen, with what is precomputed for it.
enum Law {
    Paper {
        n_groups: usize,
        group_size: usize,
        active: usize,
        /// `decay^i` for feature `i` of a group.
        weights: Vec<f64>,
    },
    Sharkey {
        /// Probability that feature `i` fires on its own.
        firing: Vec<f64>,
        pair_correlation: f64,
    },
}

/// A seeded stream of batches with its ground truth.
pub struct Synthetic {
    d: usize,
    /// The true features, row-major [n_true, d], in f64 for building points.
    features: Vec<f64>,
    /// `features` rounded to f32, as handed out by `truth()`.
    truth: Vec<f32>,
    law: Law,
    data_rng: Rng,
}

impl Synthetic {
    /// Draws the true features from `seed`; batches continue the same seeded stream.
    pub fn new(cfg: SyntheticConfig, seed: u64) -> Result<Synthetic> {
        cfg.validate()?;
        let mut feature_rng = Rng::new(seed);
        let (d, features, law) = match cfg {
            SyntheticConfig::Paper(paper) => {
                let n_true = paper.n_groups * paper.group_size;
                let features = feature_rng.normals(n_true * paper.d);
                let weights = (0..paper.group_size).map(|i| paper.decay.powi(i as i32)).collect();
                let law = Law::Paper {
                    n_groups: paper.n_groups,
                    group_size: paper.group_size,
                    active: paper.active,
                    weights,
                };
                (paper.d, features, law)
            }
            SyntheticConfig::Sharkey(sharkey) => {
                let features = (0..sharkey.n_features)
                    .flat_map(|_| unit_vector(&mut feature_rng, sharkey.d))
                    .collect();
                let firing = firing_probabilities(sharkey.n_features, sharkey.mean_active, sharkey.decay);
                (
                    sharkey.d,
                    features,
                    Law::Sharkey {
                        firing,
                        pair_correlation: sharkey.pair_correlation,
                    },
                )
            }
        };
        let truth = features.iter().map(|&v| v as f32).collect();
        Ok(Synthetic {
            d,
            features,
            truth,
            law,
            data_rng: Rng::new(seed ^ DATA_STREAM_OFFSET),
        })
    }

    /// Dimension of a data point.
    pub fn d(&self) -> usize {
        self.d
    }

    /// The true features that can occur in the data, row-major [n_true, d], as drawn (paper: not normalised).
    pub fn truth(&self) -> &[f32] {
        &self.truth
    }

    /// Where the stream of points stands (the features follow from the seed).
    pub fn stream_state(&self) -> crate::data::SourceState {
        crate::data::SourceState {
            rng: self.data_rng.state(),
            position: 0,
            rows: Vec::new(),
        }
    }

    /// Continues the stream of points from `state` (from `stream_state` of a generator
    /// with the same configuration and seed).
    pub fn restore_stream(&mut self, state: &crate::data::SourceState) -> Result<()> {
        self.data_rng = Rng::from_state(&state.rng)?;
        Ok(())
    }

    /// Number of true features: `n_groups·group_size` (paper) or `n_features` (sharkey).
    pub fn n_true(&self) -> usize {
        self.truth.len() / self.d
    }

    /// The next `rows` data points, row-major [rows, d], f32 (accumulate in f64, round once).
    pub fn batch(&mut self, rows: usize) -> Vec<f32> {
        let mut points = vec![0.0f32; rows * self.d];
        let mut support = Vec::new();
        let mut sum = vec![0.0f64; self.d];
        for point in points.chunks_exact_mut(self.d) {
            self.draw_support(&mut support);
            self.superpose(&support, &mut sum, point);
        }
        points
    }

    /// Draws the next point's active features as (feature index, coefficient)
    /// pairs into `support` (cleared first).
    fn draw_support(&mut self, support: &mut Vec<(usize, f64)>) {
        support.clear();
        let rng = &mut self.data_rng;
        match &self.law {
            Law::Paper {
                n_groups,
                group_size,
                active,
                weights,
            } => {
                let first = rng.below(*n_groups) * group_size;
                // Sequential draws without replacement, each proportional to the remaining weights.
                let mut remaining: Vec<usize> = (0..*group_size).collect();
                for _ in 0..*active {
                    let total: f64 = remaining.iter().map(|&i| weights[i]).sum();
                    let mut target = rng.uniform() * total;
                    // Rounding can leave `target` just short of the last weight: it is then the last.
                    let mut slot = remaining.len() - 1;
                    for (candidate, &i) in remaining.iter().enumerate() {
                        target -= weights[i];
                        if target < 0.0 {
                            slot = candidate;
                            break;
                        }
                    }
                    let chosen = remaining.remove(slot);
                    support.push((first + chosen, rng.uniform()));
                }
            }
            Law::Sharkey {
                firing,
                pair_correlation,
            } => {
                let mut even_fired = false;
                for (i, &probability) in firing.iter().enumerate() {
                    let fires = rng.uniform() < probability;
                    let pulled_in = i % 2 == 1 && even_fired && !fires && rng.uniform() < *pair_correlation;
                    if fires || pulled_in {
                        support.push((i, rng.uniform()));
                    }
                    even_fired = fires;
                }
            }
        }
    }

    /// Writes Σ c·f over `support` into `point`, summing in `sum` (f64, length d).
    fn superpose(&self, support: &[(usize, f64)], sum: &mut [f64], point: &mut [f32]) {
        debug_assert_eq!(sum.len(), self.d);
        debug_assert_eq!(point.len(), self.d);
        sum.fill(0.0);
        for &(feature, coefficient) in support {
            let row = &self.features[feature * self.d..(feature + 1) * self.d];
            for (s, &f) in sum.iter_mut().zip(row) {
                *s += coefficient * f;
            }
        }
        for (p, &s) in point.iter_mut().zip(sum.iter()) {
            *p = s as f32;
        }
    }
}

/// A uniformly random direction in R^d: a Gaussian vector, normalised (redrawn
/// in the probability-zero case that it is exactly zero).
fn unit_vector(rng: &mut Rng, d: usize) -> Vec<f64> {
    loop {
        let v = rng.normals(d);
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 0.0 {
            return v.into_iter().map(|x| x / norm).collect();
        }
    }
}

/// p_i = min(1, s·decay^i) for i < n, with s such that Σ p_i = mean_active
/// (0 < mean_active ≤ n, 0 < decay ≤ 1), found by bisection on ln s.
fn firing_probabilities(n: usize, mean_active: f64, decay: f64) -> Vec<f64> {
    let ln_decay = decay.ln();
    let probabilities = |ln_s: f64| (0..n).map(move |i| (ln_s + i as f64 * ln_decay).exp().min(1.0));
    // Σ p_i ≤ n·s, so at ln s = ln(mean_active / n) the sum is at most mean_active;
    // at ln s = −(n−1)·ln decay every p_i is 1 and the sum is n ≥ mean_active.
    let mut low = (mean_active / n as f64).ln();
    let mut high = -((n - 1) as f64) * ln_decay;
    for _ in 0..200 {
        let middle = 0.5 * (low + high);
        if middle <= low || middle >= high {
            break;
        }
        if probabilities(middle).sum::<f64>() < mean_active {
            low = middle;
        } else {
            high = middle;
        }
    }
    probabilities(high).collect()
}

/// A synthetic stream is a training source that knows its true features.
impl Source for Synthetic {
    fn d(&self) -> usize {
        Synthetic::d(self)
    }

    fn next_batch(&mut self, rows: usize) -> Result<Vec<f32>> {
        Ok(self.batch(rows))
    }

    fn truth(&self) -> Option<&[f32]> {
        Some(Synthetic::truth(self))
    }

    fn state(&self) -> Option<SourceState> {
        Some(self.stream_state())
    }

    fn restore(&mut self, state: &SourceState) -> Result<()> {
        self.restore_stream(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn paper(cfg: PaperConfig, seed: u64) -> Synthetic {
        Synthetic::new(SyntheticConfig::Paper(cfg), seed).expect("valid paper config")
    }

    fn sharkey(cfg: SharkeyConfig, seed: u64) -> Synthetic {
        Synthetic::new(SyntheticConfig::Sharkey(cfg), seed).expect("valid sharkey config")
    }

    /// The supports of the next `n` points, each sorted by feature index.
    fn supports(synthetic: &mut Synthetic, n: usize) -> Vec<Vec<(usize, f64)>> {
        (0..n)
            .map(|_| {
                let mut support = Vec::new();
                synthetic.draw_support(&mut support);
                support.sort_by_key(|&(feature, _)| feature);
                support
            })
            .collect()
    }

    fn features_of(support: &[(usize, f64)]) -> Vec<usize> {
        support.iter().map(|&(feature, _)| feature).collect()
    }

    /// Solves the square system A x = b (A row-major n × n) by Gaussian elimination with partial pivoting.
    fn solve(mut a: Vec<f64>, mut b: Vec<f64>) -> Vec<f64> {
        let n = b.len();
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&r, &s| a[r * n + col].abs().total_cmp(&a[s * n + col].abs()))
                .unwrap();
            for k in 0..n {
                a.swap(col * n + k, pivot * n + k);
            }
            b.swap(col, pivot);
            for row in col + 1..n {
                let factor = a[row * n + col] / a[col * n + col];
                for k in col..n {
                    a[row * n + k] -= factor * a[col * n + k];
                }
                b[row] -= factor * b[col];
            }
        }
        let mut x = vec![0.0; n];
        for row in (0..n).rev() {
            let rest: f64 = (row + 1..n).map(|k| a[row * n + k] * x[k]).sum();
            x[row] = (b[row] - rest) / a[row * n + row];
        }
        x
    }

    #[test]
    fn defaults_are_the_published_settings_and_valid() {
        let p = PaperConfig::default();
        assert_eq!(
            (p.d, p.n_features, p.n_groups, p.group_size, p.active, p.decay),
            (256, 512, 12, 42, 32, 0.99)
        );
        let s = SharkeyConfig::default();
        assert_eq!(
            (s.d, s.n_features, s.mean_active, s.decay, s.pair_correlation),
            (256, 512, 5.0, 0.99, 0.0)
        );
        assert!(SyntheticConfig::Paper(p).validate().is_ok());
        assert!(SyntheticConfig::Sharkey(s).validate().is_ok());
        assert_eq!(SyntheticConfig::Paper(p).d(), 256);
        assert_eq!(SyntheticConfig::Sharkey(SharkeyConfig { d: 7, ..s }).d(), 7);
    }

    #[test]
    fn config_json_names_the_generator() {
        let cfg = SyntheticConfig::Paper(PaperConfig::default());
        let json = serde_json::to_value(cfg).unwrap();
        assert_eq!(json["generator"], "paper");
        assert_eq!(json["group_size"], 42);
        assert_eq!(serde_json::from_value::<SyntheticConfig>(json).unwrap(), cfg);
        let json =
            r#"{"generator":"sharkey","d":8,"n_features":16,"mean_active":2.0,"decay":0.9,"pair_correlation":0.5}"#;
        let parsed: SyntheticConfig = serde_json::from_str(json).unwrap();
        let expected = SharkeyConfig {
            d: 8,
            n_features: 16,
            mean_active: 2.0,
            decay: 0.9,
            pair_correlation: 0.5,
        };
        assert_eq!(parsed, SyntheticConfig::Sharkey(expected));
    }

    #[test]
    fn each_bad_value_is_refused_by_name() {
        let p = PaperConfig::default();
        let s = SharkeyConfig::default();
        let cases = [
            (SyntheticConfig::Paper(PaperConfig { d: 0, ..p }), "d (0)"),
            (
                SyntheticConfig::Paper(PaperConfig { n_features: 0, ..p }),
                "n_features (0)",
            ),
            (SyntheticConfig::Paper(PaperConfig { n_groups: 0, ..p }), "n_groups (0)"),
            (
                SyntheticConfig::Paper(PaperConfig { group_size: 0, ..p }),
                "group_size (0)",
            ),
            (
                SyntheticConfig::Paper(PaperConfig { n_groups: 13, ..p }),
                "n_features (512)",
            ),
            (
                SyntheticConfig::Paper(PaperConfig {
                    n_groups: usize::MAX,
                    ..p
                }),
                "n_groups",
            ),
            (SyntheticConfig::Paper(PaperConfig { active: 0, ..p }), "active (0)"),
            (SyntheticConfig::Paper(PaperConfig { active: 43, ..p }), "active (43)"),
            (SyntheticConfig::Paper(PaperConfig { decay: 0.0, ..p }), "decay (0)"),
            (SyntheticConfig::Paper(PaperConfig { decay: 1.5, ..p }), "decay (1.5)"),
            (
                SyntheticConfig::Paper(PaperConfig { decay: f64::NAN, ..p }),
                "decay (NaN)",
            ),
            (
                SyntheticConfig::Paper(PaperConfig {
                    decay: f64::INFINITY,
                    ..p
                }),
                "decay (inf)",
            ),
            (SyntheticConfig::Sharkey(SharkeyConfig { d: 0, ..s }), "d (0)"),
            (
                SyntheticConfig::Sharkey(SharkeyConfig { n_features: 0, ..s }),
                "n_features (0)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig { d: usize::MAX, ..s }),
                "too large",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig { mean_active: 0.0, ..s }),
                "mean_active (0)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig {
                    mean_active: 513.0,
                    ..s
                }),
                "mean_active (513)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig {
                    mean_active: f64::NAN,
                    ..s
                }),
                "mean_active (NaN)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig { decay: -0.5, ..s }),
                "decay (-0.5)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig { decay: f64::NAN, ..s }),
                "decay (NaN)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig {
                    pair_correlation: -0.1,
                    ..s
                }),
                "pair_correlation (-0.1)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig {
                    pair_correlation: 1.1,
                    ..s
                }),
                "pair_correlation (1.1)",
            ),
            (
                SyntheticConfig::Sharkey(SharkeyConfig {
                    pair_correlation: f64::NAN,
                    ..s
                }),
                "pair_correlation (NaN)",
            ),
        ];
        for (cfg, named) in cases {
            match cfg.validate() {
                Err(Error::Config(message)) => assert!(message.contains(named), "{message:?} should name {named}"),
                other => panic!("{cfg:?} gave {other:?}, expected a Config error naming {named}"),
            }
            assert!(
                matches!(Synthetic::new(cfg, 1), Err(Error::Config(_))),
                "new must validate {cfg:?}"
            );
        }
    }

    #[test]
    fn edge_values_are_accepted() {
        let p = PaperConfig {
            d: 1,
            n_features: 6,
            n_groups: 2,
            group_size: 3,
            active: 3,
            decay: 1.0,
        };
        assert!(SyntheticConfig::Paper(p).validate().is_ok());
        let s = SharkeyConfig {
            d: 1,
            n_features: 3,
            mean_active: 3.0,
            decay: 1.0,
            pair_correlation: 1.0,
        };
        assert!(SyntheticConfig::Sharkey(s).validate().is_ok());
    }

    #[test]
    fn truth_holds_the_features_that_can_occur() {
        let small = PaperConfig {
            d: 5,
            n_features: 20,
            n_groups: 3,
            group_size: 6,
            active: 2,
            decay: 0.99,
        };
        let synthetic = paper(small, 3);
        assert_eq!(
            (synthetic.d(), synthetic.n_true()),
            (5, 18),
            "features past n_groups·group_size never occur"
        );
        assert_eq!(synthetic.truth().len(), 18 * 5);
        let synthetic = sharkey(
            SharkeyConfig {
                d: 6,
                n_features: 11,
                ..SharkeyConfig::default()
            },
            3,
        );
        assert_eq!(
            (synthetic.d(), synthetic.n_true(), synthetic.truth().len()),
            (6, 11, 66)
        );
    }

    #[test]
    fn same_seed_gives_the_same_truth_and_batches() {
        for cfg in [
            SyntheticConfig::Paper(PaperConfig::default()),
            SyntheticConfig::Sharkey(SharkeyConfig::default()),
        ] {
            let mut a = Synthetic::new(cfg, 42).unwrap();
            let mut b = Synthetic::new(cfg, 42).unwrap();
            assert_eq!(a.truth(), b.truth());
            assert_eq!(a.batch(20), b.batch(20));
            assert_eq!(a.batch(7), b.batch(7));
        }
    }

    #[test]
    fn different_seeds_give_different_truth_and_batches() {
        for cfg in [
            SyntheticConfig::Paper(PaperConfig::default()),
            SyntheticConfig::Sharkey(SharkeyConfig::default()),
        ] {
            let mut a = Synthetic::new(cfg, 1).unwrap();
            let mut b = Synthetic::new(cfg, 2).unwrap();
            assert_ne!(a.truth(), b.truth());
            assert_ne!(a.batch(20), b.batch(20));
        }
    }

    #[test]
    fn batches_continue_one_stream_and_leave_the_truth_alone() {
        let cfg = SyntheticConfig::Paper(PaperConfig::default());
        let mut whole = Synthetic::new(cfg, 9).unwrap();
        let mut pieces = Synthetic::new(cfg, 9).unwrap();
        let truth_before = pieces.truth().to_vec();
        let mut joined = pieces.batch(3);
        joined.extend(pieces.batch(0));
        joined.extend(pieces.batch(5));
        assert_eq!(whole.batch(8), joined);
        assert_eq!(pieces.truth(), &truth_before[..]);
        assert_eq!(Synthetic::new(cfg, 9).unwrap().truth(), &truth_before[..]);
        assert!(pieces.batch(0).is_empty());
        assert_eq!(pieces.batch(4).len(), 4 * 256);
    }

    #[test]
    fn paper_features_are_unnormalised_standard_normals() {
        let synthetic = paper(PaperConfig::default(), 5);
        let truth = synthetic.truth();
        let mean = truth.iter().map(|&v| v as f64).sum::<f64>() / truth.len() as f64;
        let second_moment = truth.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / truth.len() as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((second_moment - 1.0).abs() < 0.02, "E[f²] {second_moment}");
        let first_norm = truth[..256].iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
        assert!(
            (first_norm - 16.0).abs() < 4.0,
            "norm of a 256-dim Gaussian is about 16, got {first_norm}"
        );
    }

    #[test]
    fn points_are_the_coefficient_weighted_sums_of_their_supports() {
        for cfg in [
            SyntheticConfig::Paper(PaperConfig::default()),
            SyntheticConfig::Sharkey(SharkeyConfig {
                pair_correlation: 0.5,
                ..SharkeyConfig::default()
            }),
        ] {
            let mut drawn = Synthetic::new(cfg, 11).unwrap();
            let mut twin = Synthetic::new(cfg, 11).unwrap();
            let points = drawn.batch(50);
            let d = cfg.d();
            for (point, support) in points.chunks_exact(d).zip(supports(&mut twin, 50)) {
                for (k, &value) in point.iter().enumerate() {
                    let expected: f64 = support.iter().map(|&(f, c)| c * twin.truth()[f * d + k] as f64).sum();
                    assert!((value as f64 - expected).abs() < 1e-4 * (1.0 + expected.abs()));
                }
            }
        }
    }

    #[test]
    fn paper_point_decomposes_into_active_features_of_one_group() {
        // d = n_true: the features form a basis, so a point's coefficients are unique.
        let cfg = PaperConfig {
            d: 12,
            n_features: 13,
            n_groups: 3,
            group_size: 4,
            active: 2,
            decay: 0.9,
        };
        let mut drawn = paper(cfg, 21);
        let mut twin = paper(cfg, 21);
        let points = drawn.batch(200);
        // Solve Fᵀ c = x: column j of Fᵀ is feature j.
        let basis_t: Vec<f64> = (0..12 * 12)
            .map(|at| drawn.truth()[(at % 12) * 12 + at / 12] as f64)
            .collect();
        for (point, support) in points.chunks_exact(12).zip(supports(&mut twin, 200)) {
            let coefficients = solve(basis_t.clone(), point.iter().map(|&v| v as f64).collect());
            let group = support[0].0 / 4;
            assert_eq!(support.len(), 2);
            assert!(support.iter().all(|&(f, c)| f / 4 == group && (0.0..1.0).contains(&c)));
            for (feature, &c) in coefficients.iter().enumerate() {
                let drawn_c = support.iter().find(|&&(f, _)| f == feature).map_or(0.0, |&(_, c)| c);
                assert!(
                    (c - drawn_c).abs() < 1e-3,
                    "feature {feature}: recovered {c}, drawn {drawn_c}"
                );
            }
        }
    }

    #[test]
    fn paper_supports_are_active_distinct_features_of_one_group() {
        let cfg = PaperConfig::default();
        let mut synthetic = paper(cfg, 4);
        for support in supports(&mut synthetic, 2000) {
            let features = features_of(&support);
            assert_eq!(features.len(), cfg.active);
            assert!(features.windows(2).all(|w| w[0] < w[1]), "without replacement");
            assert!(features
                .iter()
                .all(|&f| f / cfg.group_size == features[0] / cfg.group_size));
            assert!(features.iter().all(|&f| f < cfg.n_groups * cfg.group_size));
            assert!(support.iter().all(|&(_, c)| (0.0..1.0).contains(&c)));
        }
    }

    #[test]
    fn paper_supports_are_drawn_per_point_not_per_group() {
        // The authors' code shared one support per group per batch; here every point draws its own.
        let mut synthetic = paper(PaperConfig::default(), 6);
        let drawn = supports(&mut synthetic, 300);
        let distinct: HashSet<Vec<usize>> = drawn.iter().map(|support| features_of(support)).collect();
        assert_eq!(distinct.len(), drawn.len(), "repeated supports within one batch");
        let coefficient_sets: HashSet<Vec<u64>> = drawn
            .iter()
            .map(|support| support.iter().map(|&(_, c)| c.to_bits()).collect())
            .collect();
        assert_eq!(coefficient_sets.len(), drawn.len());
    }

    #[test]
    fn paper_groups_are_chosen_uniformly() {
        let cfg = PaperConfig::default();
        let mut synthetic = paper(cfg, 8);
        let mut counts = vec![0usize; cfg.n_groups];
        for support in supports(&mut synthetic, 12_000) {
            counts[support[0].0 / cfg.group_size] += 1;
        }
        // 1000 expected per group, standard deviation about 29.
        assert!(counts.iter().all(|&n| n.abs_diff(1000) < 120), "{counts:?}");
    }

    #[test]
    fn paper_single_draw_is_proportional_to_decay_weights() {
        let cfg = PaperConfig {
            d: 2,
            n_features: 8,
            n_groups: 2,
            group_size: 4,
            active: 1,
            decay: 0.5,
        };
        let mut synthetic = paper(cfg, 13);
        let n = 40_000;
        let mut counts = [0usize; 4];
        for support in supports(&mut synthetic, n) {
            counts[support[0].0 % 4] += 1;
        }
        for (i, expected) in [8.0, 4.0, 2.0, 1.0].iter().map(|w| w / 15.0).enumerate() {
            let frequency = counts[i] as f64 / n as f64;
            assert!(
                (frequency - expected).abs() < 0.01,
                "position {i}: {frequency} vs {expected}"
            );
        }
    }

    #[test]
    fn paper_selection_frequency_decreases_along_a_group() {
        let cfg = PaperConfig {
            d: 2,
            n_features: 20,
            n_groups: 2,
            group_size: 10,
            active: 3,
            decay: 0.8,
        };
        let mut synthetic = paper(cfg, 17);
        let n = 20_000;
        let mut counts = [0usize; 10];
        for support in supports(&mut synthetic, n) {
            for (feature, _) in support {
                counts[feature % 10] += 1;
            }
        }
        assert!(counts.windows(2).all(|w| w[0] > w[1]), "{counts:?}");
        // With the paper's settings the decline is gentle but present.
        let cfg = PaperConfig::default();
        let mut synthetic = paper(cfg, 17);
        let mut counts = vec![0usize; cfg.group_size];
        for support in supports(&mut synthetic, n) {
            for (feature, _) in support {
                counts[feature % cfg.group_size] += 1;
            }
        }
        let block = |i: usize| counts[i * 7..(i + 1) * 7].iter().sum::<usize>();
        assert!((0..5).all(|i| block(i) > block(i + 1)), "{counts:?}");
    }

    #[test]
    fn sharkey_features_are_unit_directions() {
        let synthetic = sharkey(SharkeyConfig::default(), 2);
        for feature in synthetic.truth().chunks_exact(256) {
            let norm = feature.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
        assert_ne!(synthetic.truth()[..256], synthetic.truth()[256..512]);
    }

    #[test]
    fn sharkey_firing_probabilities_decay_and_sum_to_mean_active() {
        for (n, mean_active, decay) in [
            (512, 5.0, 0.99),
            (512, 400.0, 0.99),
            (100, 100.0, 0.5),
            (10, 2.5, 1.0),
            (3, 1.0, 1e-300),
        ] {
            let firing = firing_probabilities(n, mean_active, decay);
            let sum: f64 = firing.iter().sum();
            assert_eq!(firing.len(), n);
            assert!(
                (sum - mean_active).abs() < 1e-9 * mean_active.max(1.0),
                "{n} {mean_active} {decay}: Σp = {sum}"
            );
            assert!(firing.iter().all(|&p| (0.0..=1.0).contains(&p)));
            assert!(firing.windows(2).all(|w| w[0] >= w[1]));
            let unsaturated: Vec<f64> = firing.iter().copied().filter(|&p| p < 1.0).collect();
            for w in unsaturated.windows(2) {
                assert!(
                    (w[1] / w[0] - decay).abs() < 1e-9,
                    "ratio {} vs decay {decay}",
                    w[1] / w[0]
                );
            }
        }
        assert!(
            firing_probabilities(512, 5.0, 0.99).iter().all(|&p| p > 0.0),
            "every feature can fire"
        );
        assert!(
            firing_probabilities(512, 400.0, 0.99)[0] == 1.0,
            "large mean_active saturates the first features"
        );
        assert!(firing_probabilities(10, 2.5, 1.0)
            .iter()
            .all(|&p| (p - 0.25).abs() < 1e-12));
    }

    #[test]
    fn sharkey_points_have_mean_active_features_on_average() {
        let cfg = SharkeyConfig::default();
        let mut synthetic = sharkey(cfg, 10);
        let n = 20_000;
        let drawn = supports(&mut synthetic, n);
        // Count per point has variance at most mean_active, so the mean's deviation is about 0.016.
        let mean_count = drawn.iter().map(Vec::len).sum::<usize>() as f64 / n as f64;
        assert!((mean_count - cfg.mean_active).abs() < 0.08, "mean active {mean_count}");
        let firing = firing_probabilities(cfg.n_features, cfg.mean_active, cfg.decay);
        let first = drawn
            .iter()
            .filter(|support| support.iter().any(|&(f, _)| f == 0))
            .count() as f64
            / n as f64;
        assert!(
            (first - firing[0]).abs() < 0.006,
            "feature 0 fires at {first}, expected {}",
            firing[0]
        );
        let last_half = drawn.iter().flatten().filter(|&&(f, _)| f >= 256).count() as f64 / n as f64;
        let expected_last_half: f64 = firing[256..].iter().sum();
        assert!(
            (last_half - expected_last_half).abs() < 0.05,
            "{last_half} vs {expected_last_half}"
        );
        assert!(drawn.iter().flatten().all(|&(_, c)| (0.0..1.0).contains(&c)));
    }

    #[test]
    fn sharkey_full_pair_correlation_switches_on_the_partner() {
        let base = SharkeyConfig {
            mean_active: 50.0,
            ..SharkeyConfig::default()
        };
        let mut correlated = sharkey(
            SharkeyConfig {
                pair_correlation: 1.0,
                ..base
            },
            12,
        );
        let mut evens_seen = 0;
        for support in supports(&mut correlated, 2000) {
            let features: HashSet<usize> = features_of(&support).into_iter().collect();
            for &f in features.iter().filter(|&&f| f % 2 == 0) {
                evens_seen += 1;
                assert!(features.contains(&(f + 1)), "feature {f} fired without {}", f + 1);
            }
        }
        assert!(evens_seen > 1000);
        let mut independent = sharkey(base, 12);
        let lonely_even = supports(&mut independent, 2000).iter().any(|support| {
            let features: HashSet<usize> = features_of(support).into_iter().collect();
            features.iter().any(|&f| f % 2 == 0 && !features.contains(&(f + 1)))
        });
        assert!(lonely_even, "without correlation, 2j fires alone sometimes");
    }

    #[test]
    fn sharkey_partial_pair_correlation_raises_the_partner_rate() {
        let cfg = SharkeyConfig {
            mean_active: 50.0,
            pair_correlation: 0.5,
            ..SharkeyConfig::default()
        };
        let mut synthetic = sharkey(cfg, 14);
        let firing = firing_probabilities(cfg.n_features, cfg.mean_active, cfg.decay);
        let (mut with_even, mut both) = (0usize, 0usize);
        for support in supports(&mut synthetic, 20_000) {
            let features = features_of(&support);
            if features.contains(&0) {
                with_even += 1;
                both += usize::from(features.contains(&1));
            }
        }
        let conditional = both as f64 / with_even as f64;
        let expected = firing[1] + (1.0 - firing[1]) * cfg.pair_correlation;
        assert!(
            (conditional - expected).abs() < 0.02,
            "P(1 | 0) = {conditional}, expected {expected}"
        );
    }
}
