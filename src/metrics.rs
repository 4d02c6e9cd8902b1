//! Dictionary comparison metrics: cosine similarities between the features of
//! two dictionaries, the mean max cosine similarity (MMCS) in its best-match
//! and one-to-one forms, and how well a learned dictionary recovers known true
//! features. A dictionary is a row-major f32 slice [n, d], one feature per row;
//! rows need not be unit length, and a zero row has cosine 0 with everything.
//! All arithmetic is in f64.

use crate::assignment::max_similarity_matching;

/// Cosine similarities between the rows of `a` [na, d] and `b` [nb, d]: row-major [na, nb], f64.
pub fn cosine_matrix(a: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    let unit_a = unit_rows(a, d, "a");
    let unit_b = unit_rows(b, d, "b");
    unit_a
        .chunks_exact(d)
        .flat_map(|row_a| unit_b.chunks_exact(d).map(move |row_b| cosine_of_units(row_a, row_b)))
        .collect()
}

/// MMCS_max(a, b) = (1/nb) Σ_j max_i cos(a_i, b_j): for each row of b, its best match in a.
pub fn mmcs_max(a: &[f32], b: &[f32], d: usize) -> f64 {
    let (na, nb) = (row_count(a, d, "a"), row_count(b, d, "b"));
    assert!(
        na > 0 && nb > 0,
        "mmcs_max: both dictionaries need at least one row (na = {na}, nb = {nb})"
    );
    mean(&column_maxima(&cosine_matrix(a, b, d), nb))
}

/// MMCS_match(a, b): mean cosine over an optimal one-to-one matching (max_similarity_matching of the
/// cosine matrix), averaged over the min(na, nb) matched pairs. Also returns the pairs (row of a, row of b).
pub fn mmcs_match(a: &[f32], b: &[f32], d: usize) -> (f64, Vec<(usize, usize)>) {
    let (na, nb) = (row_count(a, d, "a"), row_count(b, d, "b"));
    assert!(
        na > 0 && nb > 0,
        "mmcs_match: both dictionaries need at least one row (na = {na}, nb = {nb})"
    );
    let cosines = cosine_matrix(a, b, d);
    let pairs = max_similarity_matching(&cosines, na, nb);
    let matched: Vec<f64> = pairs.iter().map(|&(i, j)| cosines[i * nb + j]).collect();
    (mean(&matched), pairs)
}

/// Both MMCS forms of two dictionaries a [na, _], b [nb, _], from their cosines.
#[derive(Clone, Debug, PartialEq)]
pub struct PairMmcs {
    /// MMCS_max(a, b): mean over the rows of b of their best cosine with a row of a.
    pub max_ab: f64,
    /// MMCS_max(b, a).
    pub max_ba: f64,
    /// MMCS_match(a, b), over `pairs` (row of a, row of b), an optimal one-to-one matching.
    pub matched: f64,
    pub pairs: Vec<(usize, usize)>,
}

/// `mmcs_max` both ways and `mmcs_match` from the cosine matrix [na, nb] row-major (as
/// `cosine_matrix` makes it, or as the GPU forms it), so the cosines are computed once.
pub fn mmcs_of_cosines(cosines: &[f64], na: usize, nb: usize) -> PairMmcs {
    assert!(
        na > 0 && nb > 0 && cosines.len() == na * nb,
        "mmcs_of_cosines: {} cosines for {na} × {nb} rows (both at least 1)",
        cosines.len()
    );
    let row_maxima: Vec<f64> = cosines
        .chunks_exact(nb)
        .map(|row| row.iter().copied().fold(f64::NEG_INFINITY, f64::max))
        .collect();
    let pairs = max_similarity_matching(cosines, na, nb);
    let matched: Vec<f64> = pairs.iter().map(|&(i, j)| cosines[i * nb + j]).collect();
    PairMmcs {
        max_ab: mean(&column_maxima(cosines, nb)),
        max_ba: mean(&row_maxima),
        matched: mean(&matched),
        pairs,
    }
}

/// How well a learned dictionary recovers known true features.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Recovery {
    /// Σ over an optimal one-to-one matching of cos(latent, true feature), divided by the number of TRUE features.
    pub matched: f64,
    /// Mean over true features of the max cosine over latents.
    pub max: f64,
    /// Fraction of true features whose max cosine over latents exceeds RECOVERED_COSINE.
    pub recovered: f64,
}

/// The cosine above which a true feature counts as recovered (0.9, as in the issue / Sharkey et al.).
pub const RECOVERED_COSINE: f64 = 0.9;

/// Recovery of `truth` [nf, d] by `learned` [m, d].
pub fn truth_recovery(learned: &[f32], truth: &[f32], d: usize) -> Recovery {
    let (latents, features) = (row_count(learned, d, "learned"), row_count(truth, d, "truth"));
    assert!(
        latents > 0 && features > 0,
        "truth_recovery: both dictionaries need at least one row (learned {latents}, truth {features})"
    );
    let cosines = cosine_matrix(learned, truth, d); // [latents, features]
    let matched_sum: f64 = max_similarity_matching(&cosines, latents, features)
        .iter()
        .map(|&(latent, feature)| cosines[latent * features + feature])
        .sum();
    let best_per_feature = column_maxima(&cosines, features);
    let recovered_count = best_per_feature
        .iter()
        .filter(|&&cosine| cosine > RECOVERED_COSINE)
        .count();
    Recovery {
        matched: matched_sum / features as f64,
        max: mean(&best_per_feature),
        recovered: recovered_count as f64 / features as f64,
    }
}

/// The number of rows of a dictionary, checking that its length is a whole number of rows of `d`.
fn row_count(dictionary: &[f32], d: usize, name: &str) -> usize {
    assert!(d > 0, "dictionary row length d must be positive");
    assert!(
        dictionary.len().is_multiple_of(d),
        "dictionary `{name}` has {} values, not a multiple of d = {d}",
        dictionary.len()
    );
    dictionary.len() / d
}

/// The rows of `dictionary` scaled to unit length, in f64; zero rows stay zero.
fn unit_rows(dictionary: &[f32], d: usize, name: &str) -> Vec<f64> {
    row_count(dictionary, d, name); // checks the shape
    dictionary
        .chunks_exact(d)
        .flat_map(|row| {
            let norm = row.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
            let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
            row.iter().map(move |&x| f64::from(x) * scale)
        })
        .collect()
}

/// The cosine of two unit (or zero) vectors, clamped to [-1, 1] against rounding.
fn cosine_of_units(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>().clamp(-1.0, 1.0)
}

/// The maximum of each column of the row-major `matrix` [_, cols], cols > 0.
fn column_maxima(matrix: &[f64], cols: usize) -> Vec<f64> {
    let mut maxima = vec![f64::NEG_INFINITY; cols];
    for row in matrix.chunks_exact(cols) {
        for (maximum, &value) in maxima.iter_mut().zip(row) {
            *maximum = maximum.max(value);
        }
    }
    maxima
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test numbers from the crate's seeded generator.
    struct TestRng(crate::rng::Rng);

    impl TestRng {
        fn new(seed: u64) -> TestRng {
            TestRng(crate::rng::Rng::new(seed))
        }

        /// Uniform in [-1, 1).
        fn symmetric(&mut self) -> f32 {
            (2.0 * self.0.uniform() - 1.0) as f32
        }

        fn dictionary(&mut self, n: usize, d: usize) -> Vec<f32> {
            (0..n * d).map(|_| self.symmetric()).collect()
        }

        fn permutation(&mut self, n: usize) -> Vec<usize> {
            let mut order: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                order.swap(i, self.0.below(i + 1));
            }
            order
        }
    }

    fn assert_close(found: f64, expected: f64) {
        assert!((found - expected).abs() < 1e-9, "found {found}, expected {expected}");
    }

    fn assert_all_close(found: &[f64], expected: &[f64]) {
        assert_eq!(found.len(), expected.len());
        for (&f, &e) in found.iter().zip(expected) {
            assert_close(f, e);
        }
    }

    /// The 2-D unit vector at `degrees` from the x axis.
    fn at_angle(degrees: f64) -> [f32; 2] {
        let radians = degrees.to_radians();
        [radians.cos() as f32, radians.sin() as f32]
    }

    fn rows_in_order(dictionary: &[f32], d: usize, order: &[usize]) -> Vec<f32> {
        order
            .iter()
            .flat_map(|&i| dictionary[i * d..(i + 1) * d].iter().copied())
            .collect()
    }

    #[test]
    fn cosines_of_vectors_at_known_angles() {
        let a = [at_angle(0.0), at_angle(90.0)].concat();
        let b = [at_angle(60.0), at_angle(180.0), at_angle(45.0)].concat();
        let half_sqrt2 = 0.5f64.sqrt();
        let expected = [0.5, -1.0, half_sqrt2, 3f64.sqrt() / 2.0, 0.0, half_sqrt2];
        let found = cosine_matrix(&a, &b, 2);
        assert_eq!(found.len(), 6);
        for (&f, &e) in found.iter().zip(&expected) {
            assert!((f - e).abs() < 1e-6, "found {found:?}, expected {expected:?}");
            // inputs are f32
        }
    }

    #[test]
    fn rows_need_not_be_unit_length() {
        let a = [[3.0, 4.0], [0.0, -2.0]].concat();
        let b = [6.0, 0.0];
        assert_all_close(&cosine_matrix(&a, &b, 2), &[0.6, 0.0]);
    }

    #[test]
    fn zero_rows_have_cosine_zero() {
        let a = [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]].concat();
        let b = [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]].concat();
        assert_all_close(&cosine_matrix(&a, &b, 3), &[0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn mmcs_max_is_asymmetric() {
        // a holds one of b's two directions: b's rows find best matches 1 and 0, a's row finds 1.
        let a = [1.0, 0.0];
        let b = [[1.0, 0.0], [0.0, 1.0]].concat();
        assert_close(mmcs_max(&a, &b, 2), 0.5);
        assert_close(mmcs_max(&b, &a, 2), 1.0);
    }

    #[test]
    fn mmcs_match_can_be_far_below_mmcs_max() {
        // cos = [[1, √½], [-1, -√½]]: both rows of b prefer a's row 0, but the matching must use row 1 too.
        let a = [[1.0, 0.0], [-1.0, 0.0]].concat();
        let b = [[1.0, 0.0], [1.0, 1.0]].concat();
        let half_sqrt2 = 0.5f64.sqrt();
        assert_close(mmcs_max(&a, &b, 2), (1.0 + half_sqrt2) / 2.0);
        let (matched, pairs) = mmcs_match(&a, &b, 2);
        assert_close(matched, (1.0 - half_sqrt2) / 2.0);
        assert_eq!(pairs, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn mmcs_match_of_rectangular_dictionaries_averages_over_the_pairs() {
        let a = [at_angle(0.0), at_angle(90.0), at_angle(200.0)].concat();
        let b = [at_angle(10.0), at_angle(80.0)].concat();
        let cos10 = 10f64.to_radians().cos();
        let (matched, pairs) = mmcs_match(&a, &b, 2);
        assert!((matched - cos10).abs() < 1e-6, "matched {matched}");
        assert_eq!(pairs, vec![(0, 0), (1, 1)]);
        let (matched, pairs) = mmcs_match(&b, &a, 2);
        assert!((matched - cos10).abs() < 1e-6, "matched {matched}");
        assert_eq!(pairs, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn recovery_of_a_known_case() {
        // Truth: x and y. Latents: x, (3, 4) at cosine 0.8 with y, and -y.
        let truth = [[1.0, 0.0], [0.0, 1.0]].concat();
        let learned = [[1.0, 0.0], [3.0, 4.0], [0.0, -1.0]].concat();
        let recovery = truth_recovery(&learned, &truth, 2);
        assert_close(recovery.matched, (1.0 + 0.8) / 2.0);
        assert_close(recovery.max, (1.0 + 0.8) / 2.0);
        assert_close(recovery.recovered, 0.5);
    }

    #[test]
    fn recovery_with_fewer_latents_than_true_features_divides_by_the_true_count() {
        let truth = [[1.0, 0.0], [0.0, 1.0]].concat();
        let learned = [2.0, 0.0];
        let recovery = truth_recovery(&learned, &truth, 2);
        assert_close(recovery.matched, 0.5);
        assert_close(recovery.max, 0.5);
        assert_close(recovery.recovered, 0.5);
    }

    #[test]
    fn identical_dictionaries_in_permuted_order_match_perfectly() {
        let mut rng = TestRng::new(1);
        let (n, d) = (20, 8);
        let a = rng.dictionary(n, d);
        let order = rng.permutation(n);
        let b = rows_in_order(&a, d, &order);
        let (matched, pairs) = mmcs_match(&a, &b, d);
        assert_close(matched, 1.0);
        let expected: Vec<(usize, usize)> = {
            let mut inverse: Vec<(usize, usize)> = order.iter().enumerate().map(|(j, &i)| (i, j)).collect();
            inverse.sort_unstable();
            inverse
        };
        assert_eq!(pairs, expected);
        assert_close(mmcs_max(&a, &b, d), 1.0);
        assert_close(mmcs_max(&b, &a, d), 1.0);
        let recovery = truth_recovery(&b, &a, d);
        assert_close(recovery.matched, 1.0);
        assert_close(recovery.max, 1.0);
        assert_eq!(recovery.recovered, 1.0);
    }

    #[test]
    fn positive_row_scaling_changes_nothing() {
        let mut rng = TestRng::new(2);
        let d = 5;
        let a = rng.dictionary(6, d);
        let b = rng.dictionary(4, d);
        let scaled = |dictionary: &[f32]| -> Vec<f32> {
            dictionary
                .chunks_exact(d)
                .enumerate()
                .flat_map(|(i, row)| {
                    let factor = [0.0078125, 4.0, 256.0][i % 3]; // powers of two: exact in f32
                    row.iter().map(move |&x| x * factor)
                })
                .collect()
        };
        let (a_scaled, b_scaled) = (scaled(&a), scaled(&b));
        assert_all_close(&cosine_matrix(&a_scaled, &b_scaled, d), &cosine_matrix(&a, &b, d));
        assert_close(mmcs_max(&a_scaled, &b_scaled, d), mmcs_max(&a, &b, d));
        assert_close(mmcs_max(&b_scaled, &a_scaled, d), mmcs_max(&b, &a, d));
        let (matched_scaled, pairs_scaled) = mmcs_match(&a_scaled, &b_scaled, d);
        let (matched, pairs) = mmcs_match(&a, &b, d);
        assert_close(matched_scaled, matched);
        assert_eq!(pairs_scaled, pairs);
        let (recovery_scaled, recovery) = (truth_recovery(&a_scaled, &b_scaled, d), truth_recovery(&a, &b, d));
        assert_close(recovery_scaled.matched, recovery.matched);
        assert_close(recovery_scaled.max, recovery.max);
        assert_close(recovery_scaled.recovered, recovery.recovered);
    }

    #[test]
    fn matching_never_beats_best_matches() {
        // Each matched pair's cosine is at most its own row's best, for both rows of the pair. So the mean over
        // the pairs is at most the MMCS_max whose averaged side is the smaller dictionary (every row of it is
        // matched), which for equal sizes is both directions; and when every true feature is matched
        // (latents ≥ features), recovery.matched ≤ recovery.max.
        let mut rng = TestRng::new(3);
        let d = 3;
        for (na, nb) in [(5, 5), (8, 8), (3, 7), (7, 3)] {
            for _ in 0..20 {
                let a = rng.dictionary(na, d);
                let b = rng.dictionary(nb, d);
                let (matched, _) = mmcs_match(&a, &b, d);
                if na >= nb {
                    assert!(matched <= mmcs_max(&a, &b, d) + 1e-12);
                }
                if nb >= na {
                    assert!(matched <= mmcs_max(&b, &a, d) + 1e-12);
                }
                if na >= nb {
                    let recovery = truth_recovery(&a, &b, d);
                    assert!(recovery.matched <= recovery.max + 1e-12);
                }
            }
        }
    }

    #[test]
    fn independent_random_dictionaries_in_high_dimension_are_far_apart() {
        let mut rng = TestRng::new(4);
        let (n, d) = (32, 2048);
        let a = rng.dictionary(n, d);
        let b = rng.dictionary(n, d);
        // Cosines of independent random directions are about N(0, 1/d): std ≈ 0.022 here.
        assert!(mmcs_max(&a, &b, d) < 0.15);
        assert!(mmcs_match(&a, &b, d).0 < 0.15);
        let recovery = truth_recovery(&a, &b, d);
        assert!(recovery.matched < 0.15 && recovery.max < 0.15);
        assert_eq!(recovery.recovered, 0.0);
    }

    #[test]
    #[should_panic(expected = "not a multiple of d")]
    fn ragged_dictionary_panics() {
        cosine_matrix(&[1.0, 2.0, 3.0], &[1.0, 2.0], 2);
    }

    #[test]
    #[should_panic(expected = "must be positive")]
    fn zero_width_panics() {
        cosine_matrix(&[], &[], 0);
    }

    #[test]
    #[should_panic(expected = "at least one row")]
    fn empty_dictionary_panics_in_mmcs() {
        mmcs_max(&[], &[1.0, 0.0], 2);
    }
}
