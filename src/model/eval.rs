//! The CPU forward pass production code scores with: an SAE's reconstruction of
//! held-out rows in f64 (the experiments' held-out MSE and FVU, the page's
//! held-out view) and the centred sum of squares FVU divides by.
//!
//! Does not own training (the GPU, `sae.rs`) or the test oracle
//! (`reference::RefSae`, whose forward pass tests compare this one with).

use super::{rows_normalise, transpose, Activation, Architecture, SaeConfig, SaeWeights};

/// The reconstruction x̂ [batch, d] of x [batch, d] by an SAE with weights `w`
/// (ARCHITECTURE.md §1), from its inference code (`encode`).
pub fn reconstruct(cfg: &SaeConfig, w: &SaeWeights, x: &[f64]) -> Vec<f64> {
    let (d, m) = (cfg.d_in, cfg.d_sae);
    let p = params(w);
    let (dict, b_out) = match cfg.arch {
        Architecture::Tied => (rows_normalise(&p[0], d).0, None),
        Architecture::Standard => (p[2].clone(), Some(&p[3])),
    };
    let z = encode(cfg, w, x);
    let mut out = Vec::with_capacity(x.len());
    let mut active = Vec::with_capacity(m);
    for zr in z.chunks(m) {
        // Only the latents that fired: a zero term leaves a sum as it was, so the
        // sums below are the dense ones (j ascending) to the bit, k terms instead of m.
        active.clear();
        active.extend((0..m).filter(|&j| zr[j] != 0.0));
        for c in 0..d {
            let v: f64 = active.iter().map(|&j| zr[j] * dict[j * d + c]).sum();
            out.push(b_out.map_or(v, |b| v + b[c]));
        }
    }
    out
}

/// The inference code z [batch, m] of x [batch, d]: TopK keeps the k largest
/// pre-activations per row (ties → lower index; clamped at 0 unless `paper_exact`),
/// ReLU + L1 keeps the positive ones, BatchTopK is JumpReLU at its trained threshold.
pub fn encode(cfg: &SaeConfig, w: &SaeWeights, x: &[f64]) -> Vec<f64> {
    let (d, m) = (cfg.d_in, cfg.d_sae);
    let p = params(w);
    // The encoder as rows [m, d] (one latent's weights contiguous), its bias [m]
    // and the input offset [d], per architecture.
    let (enc, offset) = match cfg.arch {
        Architecture::Tied => (p[0].clone(), None),
        Architecture::Standard => (transpose(&p[0], d, m), Some(&p[3])),
    };
    let b_enc = &p[1];
    let theta = w.threshold.map_or(0.0, f64::from);
    let mut out = Vec::with_capacity(x.len() / d * m);
    for row in x.chunks(d) {
        let input: Vec<f64> = match offset {
            Some(o) => row.iter().zip(o.iter()).map(|(v, o)| v - o).collect(),
            None => row.to_vec(),
        };
        let a: Vec<f64> = enc
            .chunks(d)
            .zip(b_enc)
            .map(|(e, b)| input.iter().zip(e).map(|(v, w)| v * w).sum::<f64>() + b)
            .collect();
        out.extend(activate(cfg, theta, &a));
    }
    out
}

fn params(w: &SaeWeights) -> Vec<Vec<f64>> {
    w.params
        .iter()
        .map(|p| p.data.iter().map(|&v| v as f64).collect())
        .collect()
}

/// The inference code z [m] of one row's pre-activations a [m] (`theta`: BatchTopK's threshold).
fn activate(cfg: &SaeConfig, theta: f64, a: &[f64]) -> Vec<f64> {
    match cfg.activation {
        Activation::ReluL1 { .. } => a.iter().map(|v| v.max(0.0)).collect(),
        Activation::BatchTopK { .. } => a
            .iter()
            .map(|&v| if v > theta.max(0.0) { v.max(0.0) } else { 0.0 })
            .collect(),
        Activation::TopK { k } => {
            let mut order: Vec<usize> = (0..a.len()).collect();
            order.sort_by(|&i, &j| a[j].total_cmp(&a[i]).then(i.cmp(&j)));
            let mut z = vec![0.0; a.len()];
            for &j in &order[..k] {
                z[j] = if cfg.paper_exact { a[j] } else { a[j].max(0.0) };
            }
            z
        }
    }
}

/// Σ over columns of t [rows, cols] of Σ_r (t_rc − mean_c)²: what FVU divides by.
pub fn centered_squares(t: &[f64], cols: usize) -> f64 {
    let rows = t.len() / cols;
    (0..cols)
        .map(|c| {
            let col = (0..rows).map(|r| t[r * cols + c]);
            let mean = col.clone().sum::<f64>() / rows.max(1) as f64;
            col.map(|v| (v - mean) * (v - mean)).sum::<f64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{columns, RefSae};
    use crate::rng::Rng;

    /// Both architectures, TopK with and without the ReLU, ReLU + L1 and BatchTopK, on odd shapes:
    /// the same numbers as the oracle's forward pass, to the last bit (same operations
    /// in the same order).
    #[test]
    fn reconstruction_equals_the_reference_forward_pass() {
        for (d, m, rows) in [(7usize, 19usize, 5usize), (1, 1, 1), (5, 13, 3)] {
            let x = Rng::new(4).normals(rows * d);
            for arch in [Architecture::Tied, Architecture::Standard] {
                for (activation, paper_exact) in [
                    (Activation::TopK { k: m.div_ceil(3) }, false),
                    // k = m keeps negative pre-activations, where the ReLU makes a difference.
                    (Activation::TopK { k: m }, true),
                    (Activation::TopK { k: m }, false),
                    (Activation::ReluL1 { l1: 0.1 }, false),
                    (Activation::BatchTopK { k: m.div_ceil(3) }, false),
                ] {
                    let cfg = SaeConfig {
                        paper_exact,
                        ..SaeConfig::new(arch, activation, d, m, rows, 1e-3)
                    };
                    let mut w = SaeWeights::init(&cfg, 9);
                    // Non-zero biases, so that every term of the forward pass counts.
                    for p in w.params.iter_mut().filter(|p| p.shape.len() == 1) {
                        p.data
                            .iter_mut()
                            .enumerate()
                            .for_each(|(i, v)| *v = 0.1 * i as f32 - 0.2);
                    }
                    // A threshold some pre-activations pass and some do not.
                    w.threshold = w.threshold.map(|_| 0.05);
                    let oracle = RefSae::new(cfg, &w);
                    assert_eq!(encode(&cfg, &w, &x), oracle.encode(&x), "{arch:?} {activation:?} code");
                    let want = oracle.reconstruct(&x);
                    assert_eq!(
                        reconstruct(&cfg, &w, &x),
                        want,
                        "{arch:?} {activation:?} {d}/{m}/{rows}"
                    );
                }
            }
            let want: f64 = columns(&x, d, crate::kernels::ColumnOp::CenteredSquares).iter().sum();
            assert_eq!(centered_squares(&x, d), want, "{d}/{rows}");
        }
    }
}
