//! The CPU reference: every kernel of `shaders/` and a whole SAE training step,
//! in plain f64, written to be read rather than to be fast. GPU kernels are
//! tested against these functions, and these functions are tested against
//! finite differences of the losses they differentiate.
//!
//! Layouts are the kernels' own: row-major matrices with explicit sizes.

use crate::kernels::{ColumnOp, MmcsForm, Op};
use crate::model::{Activation, AdamHyper, Architecture, AuxK, SaeConfig, SaeWeights, NORM_EPS};

/// The row normalisation is the model's own f64 function (`model::rows_normalise`),
/// the yardstick of `shaders/normalise.wgsl` as it is.
pub use crate::model::rows_normalise;

/// `op_a(a) · op_b(b)`; `a` is stored [ar, ac], `b` [br, bc].
pub fn matmul(
    a: &[f64],
    (ar, ac): (usize, usize),
    op_a: Op,
    b: &[f64],
    (br, bc): (usize, usize),
    op_b: Op,
) -> Vec<f64> {
    let at = |i: usize, k: usize| {
        if op_a == Op::N {
            a[i * ac + k]
        } else {
            a[k * ac + i]
        }
    };
    let bt = |k: usize, j: usize| {
        if op_b == Op::N {
            b[k * bc + j]
        } else {
            b[j * bc + k]
        }
    };
    let (m, k) = if op_a == Op::N { (ar, ac) } else { (ac, ar) };
    let (kb, n) = if op_b == Op::N { (br, bc) } else { (bc, br) };
    assert_eq!(k, kb, "reference matmul: inner sizes differ");
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|kk| at(i, kk) * bt(kk, j)).sum();
        }
    }
    c
}

/// x [rows, cols] + alpha · v [cols] on every row.
pub fn add_row_vector(x: &[f64], v: &[f64], alpha: f64) -> Vec<f64> {
    let cols = v.len();
    x.iter().enumerate().map(|(i, xi)| xi + alpha * v[i % cols]).collect()
}

/// TopK per row of a [rows, m]: (dense z, indices, values), kept latents ordered
/// by value descending then index ascending; `relu` clamps kept values at 0.
pub fn topk(a: &[f64], m: usize, k: usize, relu: bool) -> (Vec<f64>, Vec<u32>, Vec<f64>) {
    let rows = a.len() / m;
    let mut z = vec![0.0; a.len()];
    let (mut idx, mut val) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
    for r in 0..rows {
        let row = &a[r * m..(r + 1) * m];
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&i, &j| row[j].total_cmp(&row[i]).then(i.cmp(&j)));
        for &j in &order[..k] {
            let kept = if relu { row[j].max(0.0) } else { row[j] };
            z[r * m + j] = kept;
            idx.push(j as u32);
            val.push(kept);
        }
    }
    (z, idx, val)
}

/// BatchTopK over the whole batch a [rows, m]: z = relu(a) at the rows·k largest
/// values of relu(a), ordered by value descending then flat index ascending, else 0.
pub fn batch_topk(a: &[f64], m: usize, k: usize) -> Vec<f64> {
    let rows = a.len() / m;
    let relu = relu(a);
    let mut order: Vec<usize> = (0..a.len()).collect();
    order.sort_by(|&i, &j| relu[j].total_cmp(&relu[i]).then(i.cmp(&j)));
    let mut z = vec![0.0; a.len()];
    for &i in &order[..rows * k] {
        z[i] = relu[i];
    }
    z
}

/// BatchTopK's threshold after a step whose code was z (SAELens's
/// `BatchTopKTrainingSAE.update_topk_threshold`): θ ← (1 − lr)·θ + lr·min{z_i > 0},
/// unchanged when no value is positive.
pub fn batch_topk_threshold(theta: f64, z: &[f64], lr: f64) -> f64 {
    match z.iter().copied().filter(|&v| v > 0.0).reduce(f64::min) {
        Some(smallest) => (1.0 - lr) * theta + lr * smallest,
        None => theta,
    }
}

/// JumpReLU, BatchTopK's inference activation, as SAELens's `JumpReLUSAE.encode`
/// computes it: z = relu(a) · [a > relu(θ)].
pub fn jumprelu(a: &[f64], theta: f64) -> Vec<f64> {
    a.iter()
        .map(|&v| if v > theta.max(0.0) { v.max(0.0) } else { 0.0 })
        .collect()
}

/// Decode of a k-sparse code (TopK's idx, val [rows, k]) through dict [m, d]:
/// out [rows, d] = Σ_t val[r, t] · dict[idx[r, t], :] (+ bias [d]).
pub fn sparse_decode(idx: &[u32], val: &[f64], k: usize, dict: &[f64], d: usize, bias: Option<&[f64]>) -> Vec<f64> {
    let rows = idx.len() / k;
    let mut out = vec![0.0; rows * d];
    for (r, row) in out.chunks_mut(d).enumerate() {
        for t in r * k..(r + 1) * k {
            let j = idx[t] as usize;
            row.iter_mut()
                .zip(&dict[j * d..(j + 1) * d])
                .for_each(|(o, w)| *o += val[t] * w);
        }
        if let Some(b) = bias {
            row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
        }
    }
    out
}

/// The pre-activation gradient at the active latents, dval [rows, k]:
/// g[r, :] · dict[idx[r, t], :] where val[r, t] ≠ 0, else 0 (as `act_backward`).
pub fn sparse_code_gradient(idx: &[u32], val: &[f64], k: usize, dict: &[f64], g: &[f64], d: usize) -> Vec<f64> {
    (0..idx.len())
        .map(|e| {
            let (r, j) = (e / k, idx[e] as usize);
            match val[e] != 0.0 {
                true => (0..d).map(|c| g[r * d + c] * dict[j * d + c]).sum(),
                false => 0.0,
            }
        })
        .collect()
}

/// The latent-major index of idx [rows, k] (flattened) over m latents: (offsets [m + 1],
/// entries), where entries[offsets[j] .. offsets[j + 1]] are the e = r·k + t with
/// idx[e] = j, in row order.
pub fn csc(idx: &[u32], m: usize) -> (Vec<u32>, Vec<u32>) {
    let mut per_latent: Vec<Vec<u32>> = vec![Vec::new(); m];
    // Row-major order of e is row order; within a row each latent appears once.
    for (e, &j) in idx.iter().enumerate() {
        per_latent[j as usize].push(e as u32);
    }
    let mut offsets = vec![0u32];
    for l in &per_latent {
        offsets.push(offsets.last().unwrap() + l.len() as u32);
    }
    (offsets, per_latent.concat())
}

/// out[j, c] = Σ_{r, t: idx[r, t] = j} s[r, t] · y[r, c] for s [rows, k], y [rows, cols]:
/// [m, cols], or [cols, m] when `transposed`. (The dense equivalent is Sᵀ y with S
/// the [rows, m] scatter of s.)
pub fn sparse_scatter(
    idx: &[u32],
    s: &[f64],
    k: usize,
    y: &[f64],
    cols: usize,
    m: usize,
    transposed: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; m * cols];
    for (e, &j) in idx.iter().enumerate() {
        let r = e / k;
        for c in 0..cols {
            let at = if transposed {
                c * m + j as usize
            } else {
                j as usize * cols + c
            };
            out[at] += s[e] * y[r * cols + c];
        }
    }
    out
}

pub fn relu(a: &[f64]) -> Vec<f64> {
    a.iter().map(|v| v.max(0.0)).collect()
}

/// da = dz + l1 · sign(z) where z ≠ 0, else 0.
pub fn act_backward(z: &[f64], dz: &[f64], l1: f64) -> Vec<f64> {
    z.iter()
        .zip(dz)
        .map(|(&zi, &g)| if zi != 0.0 { g + l1 * zi.signum() } else { 0.0 })
        .collect()
}

/// Mean squared error over all values, its gradient, and per-row squared error.
pub fn mse(xhat: &[f64], target: &[f64], cols: usize) -> (f64, Vec<f64>, Vec<f64>) {
    let n = xhat.len() as f64;
    let grad = xhat.iter().zip(target).map(|(a, b)| 2.0 * (a - b) / n).collect();
    let row_sq: Vec<f64> = xhat
        .chunks(cols)
        .zip(target.chunks(cols))
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum())
        .collect();
    (row_sq.iter().sum::<f64>() / n, grad, row_sq)
}

/// Per column of src [rows, cols], the reduction `op` over the rows.
pub fn columns(src: &[f64], cols: usize, op: ColumnOp) -> Vec<f64> {
    let rows = src.len() / cols;
    (0..cols)
        .map(|j| {
            let col = (0..rows).map(|r| src[r * cols + j]);
            match op {
                ColumnOp::Sum => col.sum(),
                ColumnOp::CenteredSquares => {
                    let mean = col.clone().sum::<f64>() / rows.max(1) as f64;
                    col.map(|v| (v - mean) * (v - mean)).sum()
                }
            }
        })
        .collect()
}

/// (src_r − (src_r·u_r) u_r) / n_r per row, n_r = norms[r] or 1.
pub fn project(src: &[f64], u: &[f64], norms: Option<&[f64]>, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; src.len()];
    for (r, (s, ur)) in src.chunks(cols).zip(u.chunks(cols)).enumerate() {
        let along: f64 = s.iter().zip(ur).map(|(a, b)| a * b).sum();
        let inv = norms.map_or(1.0, |n| 1.0 / n[r].max(NORM_EPS));
        for c in 0..cols {
            out[r * cols + c] = (s[c] - along * ur[c]) * inv;
        }
    }
    out
}

/// One Adam update in place; `t` counts from 1.
pub fn adam(p: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64], t: u64, lr: f64, h: AdamHyper) {
    let (b1, b2, eps) = (h.beta1 as f64, h.beta2 as f64, h.eps as f64);
    for i in 0..p.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        let mhat = m[i] / (1.0 - b1.powi(t as i32));
        let vhat = v[i] / (1.0 - b2.powi(t as i32));
        p[i] -= lr * mhat / (vhat.sqrt() + eps);
    }
}

/// Pairwise similarity of unit-row dictionaries ua, ub [m, d]: per latent j of b,
/// (sim[j], assign[j]) = (max_i ua_i·ub_j, argmax with ties to the lowest i) for
/// `Max`, or (ua_{assign[j]}·ub_j, assign[j]) for `Match` with `assign` given.
pub fn similarity(ua: &[f64], ub: &[f64], d: usize, form: MmcsForm, assign: &[u32]) -> (Vec<f64>, Vec<u32>) {
    let m = ua.len() / d;
    let dot = |i: usize, j: usize| (0..d).map(|c| ua[i * d + c] * ub[j * d + c]).sum::<f64>();
    (0..m)
        .map(|j| match form {
            MmcsForm::Match => (dot(assign[j] as usize, j), assign[j]),
            MmcsForm::Max => (1..m).fold((dot(0, j), 0u32), |best, i| {
                let s = dot(i, j);
                if s > best.0 {
                    (s, i as u32)
                } else {
                    best
                }
            }),
        })
        .unzip()
}

/// The gradient of c · Σ_j ua_{assign[j]}·ub_j with respect to ua and ub.
pub fn similarity_gradient(ua: &[f64], ub: &[f64], assign: &[u32], d: usize, c: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut ga, mut gb) = (vec![0.0; ua.len()], vec![0.0; ub.len()]);
    for (j, &i) in assign.iter().enumerate() {
        let i = i as usize;
        for k in 0..d {
            ga[i * d + k] += c * ub[j * d + k];
            gb[j * d + k] += c * ua[i * d + k];
        }
    }
    (ga, gb)
}

/// The MFR penalty λw · mean over pairs a < b of (1 − MMCS(a, b)) for unit-row
/// dictionaries `us`, and its gradient with respect to each dictionary.
/// `assigns` holds, per pair in (0,1), (0,2), …, (1,2), … order, the matching
/// used by `Match` (ignored by `Max`).
pub fn mfr_penalty(
    us: &[Vec<f64>],
    d: usize,
    weight: f64,
    form: MmcsForm,
    assigns: &[Vec<u32>],
) -> (f64, Vec<Vec<f64>>) {
    let n = us.len();
    let m = us[0].len() / d;
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect();
    let scale = 1.0 / (pairs.len() as f64 * m as f64);
    let mut grads: Vec<Vec<f64>> = us.iter().map(|u| vec![0.0; u.len()]).collect();
    let mut penalty = 0.0;
    for (p, &(a, b)) in pairs.iter().enumerate() {
        let given = assigns.get(p).map_or(&[][..], |v| &v[..]);
        let (sim, assign) = similarity(&us[a], &us[b], d, form, given);
        penalty += weight * (1.0 - sim.iter().sum::<f64>() / m as f64) / pairs.len() as f64;
        let (ga, gb) = similarity_gradient(&us[a], &us[b], &assign, d, -weight * scale);
        grads[a].iter_mut().zip(ga).for_each(|(g, v)| *g += v);
        grads[b].iter_mut().zip(gb).for_each(|(g, v)| *g += v);
    }
    (penalty, grads)
}

/// The reference code's re-initialisation statistic for one step: with p_j the
/// fraction of the batch where latent j fired and rate = k/m,
/// mean_j (|p_j − rate| / rate)³.
/// AuxK's mask: a where latent j is dead (since[j] ≥ threshold), else a very
/// negative number that TopK with ReLU never keeps.
pub fn mask_dead(a: &[f64], since: &[f64], threshold: f64) -> Vec<f64> {
    let m = since.len();
    a.iter()
        .enumerate()
        .map(|(i, &v)| if since[i % m] >= threshold { v } else { MASKED })
        .collect()
}

/// The value `mask_dead` gives live latents (the shader's −BIG).
const MASKED: f64 = -3.0e38;

/// `Kernels::latent_stats` for a step whose code is z [batch, m]: per latent its firing count
/// and absolute sum ([2, m]: counts, then sums), `firing` plus the counts, and the firing
/// clock after the step.
pub fn latent_stats(z: &[f64], firing: &[f64], since: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let m = since.len();
    let counts = firing_counts(z, m);
    let mut stats = counts.clone();
    stats.extend(columns(
        &z.iter().map(|v| v.abs()).collect::<Vec<_>>(),
        m,
        ColumnOp::Sum,
    ));
    let firing = firing.iter().zip(&counts).map(|(f, c)| f + c).collect();
    (stats, firing, since_fired(since, z))
}

/// Per latent of a code z [batch, m], the rows where it is non-zero.
fn firing_counts(z: &[f64], m: usize) -> Vec<f64> {
    let nonzero: Vec<f64> = z.iter().map(|&v| if v != 0.0 { 1.0 } else { 0.0 }).collect();
    columns(&nonzero, m, ColumnOp::Sum)
}

/// One step's metrics as `Kernels::window_totals` adds them.
pub struct StepTotals<'a> {
    pub row_sq: &'a [f64],
    pub aux_sq: Option<&'a [f64]>,
    pub col_sq: &'a [f64],
    /// [2, m]: firing counts, then absolute sums.
    pub stats: &'a [f64],
    /// (batch, rate, threshold) of the re-initialisation statistic, where there is one.
    pub deviation: Option<(usize, f64, f64)>,
}

/// `acc` after `Kernels::window_totals` added `step` at `slots`.
pub fn window_totals(acc: &[f64], step: &StepTotals<'_>, slots: crate::kernels::WindowSlots) -> Vec<f64> {
    let mut acc = acc.to_vec();
    let m = step.stats.len() / 2;
    acc[slots.squared_error] += step.row_sq.iter().sum::<f64>();
    if let Some(aux) = step.aux_sq {
        acc[slots.aux_squared_error] += aux.iter().sum::<f64>();
    }
    acc[slots.target_variance] += step.col_sq.iter().sum::<f64>();
    acc[slots.active] += step.stats[..m].iter().sum::<f64>();
    acc[slots.abs_code] += step.stats[m..].iter().sum::<f64>();
    if let Some((batch, rate, threshold)) = step.deviation {
        let stat = reinit_statistic(&step.stats[..m], batch, rate);
        acc[slots.reinit] = acc[slots.reinit].max(stat);
        if stat > threshold {
            acc[slots.reinit + 1] += 1.0;
        }
    }
    acc
}

/// Tokens since each latent fired, after a step whose code is z [batch, m].
pub fn since_fired(since: &[f64], z: &[f64]) -> Vec<f64> {
    let m = since.len();
    let batch = z.len() / m;
    let counts = firing_counts(z, m);
    since
        .iter()
        .zip(counts)
        .map(|(s, c)| if c > 0.0 { 0.0 } else { s + batch as f64 })
        .collect()
}

/// AuxK's loss and gradients for fixed residual `resid` = target − x̂ (treated as
/// a constant, as in Gao et al.): the dead latents of `a` [batch, m] keep their
/// top `k_aux` (with ReLU), reconstruct through `dec` [m, d] without bias, and
/// `coef · MSE(ê, resid)` is the loss. Returns (loss, z_aux, dL/dê, dL/da).
pub fn auxk(a: &[f64], since: &[f64], dec: &[f64], resid: &[f64], aux: AuxK) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (m, d) = (since.len(), resid.len() / (a.len() / since.len()));
    let batch = a.len() / m;
    let z_aux = topk(&mask_dead(a, since, aux.dead_after_tokens), m, aux.k_aux, true).0;
    let ehat = matmul(&z_aux, (batch, m), Op::N, dec, (m, d), Op::N);
    let (mse_aux, g, _) = mse(&ehat, resid, d);
    let g: Vec<f64> = g.iter().map(|v| v * aux.coef as f64).collect();
    let dz = matmul(&g, (batch, d), Op::N, dec, (m, d), Op::T);
    let da = act_backward(&z_aux, &dz, 0.0);
    (aux.coef as f64 * mse_aux, z_aux, g, da)
}

pub fn reinit_statistic(counts: &[f64], batch: usize, rate: f64) -> f64 {
    counts
        .iter()
        .map(|c| ((c / batch as f64 - rate).abs() / rate).powi(3))
        .sum::<f64>()
        / counts.len() as f64
}

/// What one forward and backward pass of an SAE produced.
pub struct Pass {
    /// Loss: MSE (+ L1 term).
    pub loss: f64,
    /// The code z [batch, m].
    pub z: Vec<f64>,
    /// Reconstruction x̂ [batch, d].
    pub xhat: Vec<f64>,
    /// dLoss/dparam for each parameter, in `SaeWeights` order, before any
    /// projection onto the unit-row constraint.
    pub grads: Vec<Vec<f64>>,
}

/// An SAE in f64 with its Adam state: the model the GPU is checked against.
pub struct RefSae {
    pub cfg: SaeConfig,
    /// Parameters in `SaeWeights` order (tied: W, b; standard: W_enc, b_enc, W_dec, b_dec).
    pub params: Vec<Vec<f64>>,
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    t: u64,
    /// Tokens since each latent last fired (AuxK).
    pub since_fired: Vec<f64>,
    /// BatchTopK's inference threshold θ (0 for other activations).
    pub threshold: f64,
}

impl RefSae {
    pub fn new(cfg: SaeConfig, w: &SaeWeights) -> RefSae {
        let params: Vec<Vec<f64>> = w
            .params
            .iter()
            .map(|p| p.data.iter().map(|&v| v as f64).collect())
            .collect();
        let zeros: Vec<Vec<f64>> = params.iter().map(|p| vec![0.0; p.len()]).collect();
        RefSae {
            cfg,
            params,
            m: zeros.clone(),
            v: zeros,
            t: 0,
            since_fired: vec![0.0; cfg.d_sae],
            threshold: w.threshold.unwrap_or(0.0) as f64,
        }
    }

    /// The training activation.
    fn activate(&self, a: &[f64]) -> Vec<f64> {
        match self.cfg.activation {
            Activation::TopK { k } => topk(a, self.cfg.d_sae, k, !self.cfg.paper_exact).0,
            Activation::ReluL1 { .. } => relu(a),
            Activation::BatchTopK { k } => batch_topk(a, self.cfg.d_sae, k),
        }
    }

    /// The inference activation: the training one, except BatchTopK's JumpReLU at θ.
    fn infer(&self, a: &[f64]) -> Vec<f64> {
        match self.cfg.activation {
            Activation::BatchTopK { .. } => jumprelu(a, self.threshold),
            _ => self.activate(a),
        }
    }

    /// The pre-activations a [batch, m] for x [batch, d].
    pub fn pre_activation(&self, x: &[f64]) -> Vec<f64> {
        let (d, m) = (self.cfg.d_in, self.cfg.d_sae);
        let batch = x.len() / d;
        let p = &self.params;
        match self.cfg.arch {
            Architecture::Standard => {
                let xc = add_row_vector(x, &p[3], -1.0);
                add_row_vector(&matmul(&xc, (batch, d), Op::N, &p[0], (d, m), Op::N), &p[1], 1.0)
            }
            Architecture::Tied => add_row_vector(&matmul(x, (batch, d), Op::N, &p[0], (m, d), Op::T), &p[1], 1.0),
        }
    }

    /// The code z [batch, m] of x [batch, d] at inference (held-out evaluation, SAELens):
    /// for BatchTopK, JumpReLU at θ; otherwise the training activation.
    pub fn encode(&self, x: &[f64]) -> Vec<f64> {
        self.infer(&self.pre_activation(x))
    }

    /// The reconstruction x̂ [batch, d] of x [batch, d] at inference (forward only).
    pub fn reconstruct(&self, x: &[f64]) -> Vec<f64> {
        let (d, m) = (self.cfg.d_in, self.cfg.d_sae);
        let batch = x.len() / d;
        let z = self.encode(x);
        let (dec, _) = self.dictionary();
        let xhat = matmul(&z, (batch, m), Op::N, &dec, (m, d), Op::N);
        match self.cfg.arch {
            Architecture::Standard => add_row_vector(&xhat, &self.params[3], 1.0),
            Architecture::Tied => xhat,
        }
    }

    /// Forward and backward on x [batch, d] against `target`.
    pub fn pass(&self, x: &[f64], target: &[f64]) -> Pass {
        let (d, m) = (self.cfg.d_in, self.cfg.d_sae);
        let batch = x.len() / d;
        let l1 = self.cfg.l1() as f64;
        let p = &self.params;
        match self.cfg.arch {
            Architecture::Standard => {
                let (w_enc, w_dec, b_dec) = (&p[0], &p[2], &p[3]);
                let xc = add_row_vector(x, b_dec, -1.0);
                let a = self.pre_activation(x);
                let z = self.activate(&a);
                let xhat = add_row_vector(&matmul(&z, (batch, m), Op::N, w_dec, (m, d), Op::N), b_dec, 1.0);
                let (mse, g, _) = mse(&xhat, target, d);
                let dz = matmul(&g, (batch, d), Op::N, w_dec, (m, d), Op::T);
                let mut da = act_backward(&z, &dz, l1 / batch as f64);
                let mut d_w_dec = matmul(&z, (batch, m), Op::T, &g, (batch, d), Op::N);
                let aux_loss = self.add_auxk(&a, target, &xhat, w_dec, &mut da, &mut d_w_dec);
                let d_w_enc = matmul(&xc, (batch, d), Op::T, &da, (batch, m), Op::N);
                let d_b_enc = columns(&da, m, ColumnOp::Sum);
                let through_enc = matmul(&d_b_enc, (1, m), Op::N, w_enc, (d, m), Op::T);
                let d_b_dec = add_row_vector(&columns(&g, d, ColumnOp::Sum), &through_enc, -1.0);
                let loss = mse + aux_loss + l1 * z.iter().map(|v| v.abs()).sum::<f64>() / batch as f64;
                Pass {
                    loss,
                    z,
                    xhat,
                    grads: vec![d_w_enc, d_b_enc, d_w_dec, d_b_dec],
                }
            }
            Architecture::Tied => {
                let w = &p[0];
                let a = self.pre_activation(x);
                let z = self.activate(&a);
                let (u, norms) = rows_normalise(w, d);
                let xhat = matmul(&z, (batch, m), Op::N, &u, (m, d), Op::N);
                let (mse, g, _) = mse(&xhat, target, d);
                let dz = matmul(&g, (batch, d), Op::N, &u, (m, d), Op::T);
                let mut da = act_backward(&z, &dz, l1 / batch as f64);
                let mut d_u = matmul(&z, (batch, m), Op::T, &g, (batch, d), Op::N);
                let aux_loss = self.add_auxk(&a, target, &xhat, &u, &mut da, &mut d_u);
                let through_norm = project(&d_u, &u, Some(&norms), d);
                let d_w: Vec<f64> = matmul(&da, (batch, m), Op::T, x, (batch, d), Op::N)
                    .iter()
                    .zip(&through_norm)
                    .map(|(a, b)| a + b)
                    .collect();
                let d_b = columns(&da, m, ColumnOp::Sum);
                let loss = mse + aux_loss + l1 * z.iter().map(|v| v.abs()).sum::<f64>() / batch as f64;
                Pass {
                    loss,
                    z,
                    xhat,
                    grads: vec![d_w, d_b],
                }
            }
        }
    }

    /// With AuxK: adds the dead latents' gradients to da and to the decoder
    /// dictionary's gradient `d_dec`, and returns the auxiliary loss (else 0).
    fn add_auxk(&self, a: &[f64], target: &[f64], xhat: &[f64], dec: &[f64], da: &mut [f64], d_dec: &mut [f64]) -> f64 {
        let Some(aux) = self.cfg.auxk else { return 0.0 };
        let (m, d) = (self.cfg.d_sae, self.cfg.d_in);
        let resid: Vec<f64> = target.iter().zip(xhat).map(|(t, x)| t - x).collect();
        let (loss, z_aux, g_aux, da_aux) = auxk(a, &self.since_fired, dec, &resid, aux);
        da.iter_mut().zip(da_aux).for_each(|(x, y)| *x += y);
        let batch = a.len() / m;
        let dd = matmul(&z_aux, (batch, m), Op::T, &g_aux, (batch, d), Op::N);
        d_dec.iter_mut().zip(dd).for_each(|(x, y)| *x += y);
        loss
    }

    /// Advances the dead-latent clock (and BatchTopK's threshold) after a step whose code was z.
    pub fn observe(&mut self, z: &[f64]) {
        self.since_fired = since_fired(&self.since_fired, z);
        if let Activation::BatchTopK { .. } = self.cfg.activation {
            self.threshold = batch_topk_threshold(self.threshold, z, crate::kernels::BATCH_TOPK_THRESHOLD_LR as f64);
        }
    }

    /// The unit-row decoder dictionary U [m, d] and, for `tied`, the row norms of W.
    pub fn dictionary(&self) -> (Vec<f64>, Option<Vec<f64>>) {
        match self.cfg.arch {
            Architecture::Tied => {
                let (u, norms) = rows_normalise(&self.params[0], self.cfg.d_in);
                (u, Some(norms))
            }
            Architecture::Standard => (self.params[2].clone(), None),
        }
    }

    /// Adds a gradient with respect to the dictionary U to the raw parameter
    /// gradients: through the normalisation into W (tied), or onto W_dec, whose
    /// tangent projection `update` applies (standard).
    pub fn add_dictionary_gradient(&self, grads: &mut [Vec<f64>], g_u: &[f64]) {
        let (u, norms) = self.dictionary();
        let (i, g) = match self.cfg.arch {
            Architecture::Tied => (0, project(g_u, &u, norms.as_deref(), self.cfg.d_in)),
            Architecture::Standard => (2, g_u.to_vec()),
        };
        grads[i].iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }

    /// One training step: `pass`, then `update`. Returns the loss before the update.
    pub fn step(&mut self, x: &[f64], target: &[f64]) -> f64 {
        let pass = self.pass(x, target);
        self.observe(&pass.z);
        self.update(pass.grads);
        pass.loss
    }

    /// The standard decoder's tangent projection, Adam on every parameter, then
    /// the standard decoder's renormalisation.
    pub fn update(&mut self, mut grads: Vec<Vec<f64>>) {
        let d = self.cfg.d_in;
        if self.cfg.arch == Architecture::Standard {
            grads[2] = project(&grads[2], &self.params[2], None, d);
        }
        self.t += 1;
        for (i, g) in grads.iter().enumerate() {
            adam(
                &mut self.params[i],
                g,
                &mut self.m[i],
                &mut self.v[i],
                self.t,
                self.cfg.lr as f64,
                self.cfg.adam,
            );
        }
        if self.cfg.arch == Architecture::Standard {
            self.params[2] = rows_normalise(&self.params[2], d).0;
        }
    }
}

/// One MFR ensemble step in the reference: every SAE's pass on the same batch,
/// the MFR gradient (at weight λ·w(t), in `form`, with `assigns` for `Match`)
/// added through each SAE's normalisation, then every SAE's update.
/// Returns the MFR penalty before the update.
pub fn ensemble_step(
    saes: &mut [RefSae],
    x: &[f64],
    target: &[f64],
    weight: f64,
    form: MmcsForm,
    assigns: &[Vec<u32>],
) -> f64 {
    let d = saes[0].cfg.d_in;
    let passes: Vec<Pass> = saes.iter().map(|s| s.pass(x, target)).collect();
    let dicts: Vec<Vec<f64>> = saes.iter().map(|s| s.dictionary().0).collect();
    let (penalty, g_u) = if saes.len() >= 2 && weight != 0.0 {
        mfr_penalty(&dicts, d, weight, form, assigns)
    } else {
        (0.0, dicts.iter().map(|u| vec![0.0; u.len()]).collect())
    };
    for ((sae, pass), g) in saes.iter_mut().zip(passes).zip(g_u) {
        sae.observe(&pass.z);
        let mut grads = pass.grads;
        sae.add_dictionary_gradient(&mut grads, &g);
        sae.update(grads);
    }
    penalty
}
