//! Mutual Feature Regularization on the GPU: for N SAEs trained on the same
//! batches, the penalty λ·w(t)·mean over pairs (1 − MMCS) between their unit-row
//! decoder dictionaries, and its gradient into every SAE (DESIGN.md §1).
//!
//! Owns: the MFR configuration, the per-pair similarity/gradient dispatches and
//! the matchings of the `Match` form. Does not own the SAEs (`sae.rs`), the step
//! loop or the metrics records (`train.rs`).

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{Kernels, MmcsForm, MFR_STEP_UNIFORM_BYTES};
use crate::sae::GpuSae;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfrConfig {
    /// Penalty weight λ (0 trains the SAEs independently: the baseline).
    pub lambda: f32,
    /// Steps T of the cosine ramp-up w(t) (the paper: 100).
    pub warmup_steps: u64,
    /// Which MMCS the penalty uses. `Match` (the default) is the authors' final form: their
    /// `calculate_MMCS` took the optimal one-to-one assignment from 2024-09-24 on (commit "fix
    /// feature correlation exp"); `Max`, the earlier per-column max, is directional.
    pub form: MmcsForm,
    /// `Match` only: steps between recomputations of the optimal matching.
    pub match_every: u64,
}

impl Default for MfrConfig {
    fn default() -> Self {
        // Paper's synthetic setting: λ = 3 (reference config of 2024-10-24), 100 warm-up steps,
        // the one-to-one matching of the authors' final `calculate_MMCS`.
        MfrConfig {
            lambda: 3.0,
            warmup_steps: 100,
            form: MmcsForm::Match,
            match_every: 100,
        }
    }
}

impl MfrConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            return Err(Error::Config(format!(
                "λ (lambda) must be a finite number ≥ 0, got {}",
                self.lambda
            )));
        }
        if self.form == MmcsForm::Match && self.match_every == 0 {
            return Err(Error::Config("match_every must be at least 1".into()));
        }
        Ok(())
    }

    /// λ·w(t) for the step that follows `t` completed steps.
    pub fn weight(&self, t: u64) -> f64 {
        self.lambda as f64 * crate::reference::warmup_weight(t, self.warmup_steps)
    }
}

/// The pairs a < b of an ensemble of `n`, in the order metrics and matchings use.
pub fn pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect()
}

/// MFR's recorded part of an ensemble step, run between the SAEs' gradient and
/// update plans: zero the per-SAE dictionary gradients G_n, add every pair's
/// similarity gradient, and fold G_n through each SAE's normalisation into the
/// gradient of its decoder parameter.
pub struct GpuMfr {
    pub cfg: MfrConfig,
    pairs: Vec<(usize, usize)>,
    /// Per pair: the latent of a assigned to each latent of b, [m] u32.
    assign: Vec<Tensor<u32>>,
    /// Per-step uniform: [λ·w(t), 0, 0, 0].
    step_uniform: wgpu::Buffer,
    plan: Vec<Dispatch>,
    /// Per pair: Σ over the window's steps of Σ_j sim[j].
    acc: Tensor<f32>,
    m: usize,
    window_steps: u64,
}

impl GpuMfr {
    pub fn new(gpu: &Gpu, kernels: &Kernels, cfg: MfrConfig, saes: &[GpuSae]) -> Result<GpuMfr> {
        cfg.validate()?;
        if saes.len() < 2 {
            return Err(Error::Config(format!("MFR needs at least 2 SAEs, got {}", saes.len())));
        }
        let (m, d) = (saes[0].cfg.d_sae, saes[0].cfg.d_in);
        if saes.iter().any(|s| (s.cfg.d_sae, s.cfg.d_in) != (m, d)) {
            return Err(Error::Config("MFR needs SAEs of one shape (d_in and d_sae)".into()));
        }
        let pairs = pairs(saes.len());
        let step_uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("mfr step"),
            size: MFR_STEP_UNIFORM_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let grads: Vec<Tensor<f32>> = (0..saes.len())
            .map(|_| Tensor::zeros(gpu, &[m, d], "MFR dictionary gradient"))
            .collect::<Result<_>>()?;
        let acc = Tensor::zeros(gpu, &[pairs.len()], "MFR similarity sums")?;
        let sim = Tensor::zeros(gpu, &[m], "pair similarity")?;
        // gradient of −λw/(P·m) · Σ_pairs Σ_j S[assign[j], j] = of λw · mean_pairs (1 − MMCS)
        let scale = -1.0 / (pairs.len() as f32 * m as f32);
        let mut plan = Vec::new();
        for g in &grads {
            plan.push(kernels.fill(gpu, g, 0.0)?);
        }
        let mut assign = Vec::new();
        for (p, &(a, b)) in pairs.iter().enumerate() {
            let pair_assign = Tensor::<u32>::zeros(gpu, &[m], "pair assignment")?;
            let (ua, ub) = (saes[a].dictionary().0, saes[b].dictionary().0);
            plan.push(kernels.similarity(gpu, ua, ub, cfg.form, &pair_assign, &sim)?);
            plan.push(kernels.total(gpu, &sim, &acc, p)?);
            plan.push(kernels.mfr_gradient(gpu, &step_uniform, scale, ua, ub, &pair_assign, &grads[a], &grads[b])?);
            assign.push(pair_assign);
        }
        for (sae, g) in saes.iter().zip(&grads) {
            let (u, norms) = sae.dictionary();
            plan.push(kernels.project(gpu, g, u, norms, true, sae.dictionary_param_grad())?);
        }
        Ok(GpuMfr {
            cfg,
            pairs,
            assign,
            step_uniform,
            plan,
            acc,
            m,
            window_steps: 0,
        })
    }

    /// Queues this step's λ·w(t), t = steps completed before it.
    pub fn begin_step(&mut self, gpu: &Gpu, t: u64) {
        self.window_steps += 1;
        let w = [self.cfg.weight(t) as f32, 0.0, 0.0, 0.0];
        gpu.queue.write_buffer(&self.step_uniform, 0, bytemuck::cast_slice(&w));
    }

    pub fn plan(&self) -> &[Dispatch] {
        &self.plan
    }

    pub fn pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// `Match` form: sets pair p's matching; `assign[j]` is the latent of SAE a matched to latent j of b.
    pub fn set_matching(&self, gpu: &Gpu, pair: usize, assign: &[u32]) -> Result<()> {
        if assign.len() != self.m || assign.iter().any(|&i| i as usize >= self.m) {
            return Err(Error::Shape(format!(
                "a matching of {} latents must map into 0..{}",
                self.m, self.m
            )));
        }
        self.assign[pair].write(gpu, assign)
    }

    /// The matching (or, for `Max`, the argmax) each pair used at the last step.
    pub async fn assignments(&self, gpu: &Gpu) -> Result<Vec<Vec<u32>>> {
        let mut out = Vec::new();
        for a in &self.assign {
            out.push(a.read(gpu).await?);
        }
        Ok(out)
    }

    /// Mean over the window of each pair's MMCS in the penalty's form, and restarts the window.
    pub async fn take_pair_mmcs(&mut self, gpu: &Gpu) -> Result<Vec<f64>> {
        let sums = self.acc.read(gpu).await?;
        self.acc.write(gpu, &vec![0.0; self.pairs.len()])?;
        let steps = std::mem::take(&mut self.window_steps).max(1) as f64;
        Ok(sums.iter().map(|&s| s as f64 / (steps * self.m as f64)).collect())
    }
}
