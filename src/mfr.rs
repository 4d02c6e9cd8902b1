//! Mutual Feature Regularization on the GPU: for N SAEs trained on the same
//! batches, the penalty λ·w(t)·mean over pairs (1 − MMCS) between their unit-row
//! decoder dictionaries, and its gradient into every SAE (ARCHITECTURE.md §1).
//!
//! Owns: the MFR configuration, the per-pair similarity/gradient dispatches, the
//! matchings of the `Match` form and the full pairwise similarity matrices
//! (`PairMatrices`) that refreshing a matching and the logs read. Does not own the
//! SAEs (`sae.rs`), the step loop or the metrics records (`train.rs`), nor the
//! assignment solver (`assignment.rs`).

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{groups_of, GroupScratch, Groups, Kernels, MaxPartials, MfrStep, MmcsForm, PairGradients};
use crate::sae::{GpuSae, StackedStep};
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
        self.lambda as f64 * warmup_weight(t, self.warmup_steps)
    }
}

/// MFR's cosine ramp-up: w(t) = ½(1 + cos(π (T − t) / T)) for t < T, then 1.
pub fn warmup_weight(t: u64, warmup_steps: u64) -> f64 {
    if t >= warmup_steps {
        1.0
    } else {
        let (t, big_t) = (t as f64, warmup_steps as f64);
        0.5 * (1.0 + (std::f64::consts::PI * (big_t - t) / big_t).cos())
    }
}

/// The pairs a < b of an ensemble of `n`, in the order metrics and matchings use.
pub fn pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect()
}

/// MFR's recorded part of an ensemble step, run between the SAEs' gradient and
/// update plans: every pair's similarity gradient into the per-SAE dictionary gradients
/// G_n (an SAE's first pair overwrites G_n, the others add), then G_n folded through
/// each SAE's normalisation into the gradient of its decoder parameter.
pub struct GpuMfr {
    pub cfg: MfrConfig,
    pairs: Vec<(usize, usize)>,
    /// Per pair: the latent of a assigned to each latent of b, [m] u32.
    assign: Vec<Tensor<u32>>,
    /// Recorded pair by pair: `Match`: per pair, the latents of b grouped by partner (the
    /// inverse permutation), written with the matching; `Max`: one grouping, rebuilt on the
    /// GPU for every pair. Empty where every pair is one dispatch (`inverse`).
    groups: Vec<Groups>,
    /// Stacked `Match` ensembles, all pairs in one dispatch per kernel: per pair, the inverse
    /// permutation of its matching (views of one [P·m] tensor, as `assign` then is), written
    /// with the matching. Empty otherwise.
    inverse: Vec<Tensor<u32>>,
    /// Per-step uniform: [λ·w(t), 0, 0, 0].
    step_uniform: wgpu::Buffer,
    plan: Vec<Dispatch>,
    /// Per pair: Σ over the window's steps of Σ_j sim[j].
    acc: Tensor<f32>,
    m: usize,
    window_steps: u64,
}

impl GpuMfr {
    /// With `stack` (the SAEs' stacked step, `GpuSae::stack`) the dictionary gradients are
    /// one stacked tensor and are folded into all N SAEs' parameter gradients in one dispatch;
    /// in the `Match` form every pair's similarity, sum and gradient are then one dispatch each
    /// too (4 dispatches for any N, not 4 per pair and the projection).
    pub fn new(
        gpu: &Gpu,
        kernels: &Kernels,
        cfg: MfrConfig,
        saes: &[GpuSae],
        stack: Option<&StackedStep>,
    ) -> Result<GpuMfr> {
        cfg.validate()?;
        if saes.len() < 2 {
            return Err(Error::Config(format!("MFR needs at least 2 SAEs, got {}", saes.len())));
        }
        let (m, d) = (saes[0].cfg.d_sae, saes[0].cfg.d_in);
        if saes.iter().any(|s| (s.cfg.d_sae, s.cfg.d_in) != (m, d)) {
            return Err(Error::Config("MFR needs SAEs of one shape (d_in and d_sae)".into()));
        }
        let pairs = pairs(saes.len());
        let step_uniform = MfrStep::buffer(gpu);
        let n = saes.len();
        let stacked_grads = match stack {
            Some(_) => Some(Tensor::zeros(gpu, &[n * m, d], "MFR dictionary gradients")?),
            None => None,
        };
        let grads: Vec<Tensor<f32>> = (0..n)
            .map(|s| match &stacked_grads {
                Some(all) => all.view(gpu, n, s, &[m, d], "MFR dictionary gradient"),
                None => Tensor::zeros(gpu, &[m, d], "MFR dictionary gradient"),
            })
            .collect::<Result<_>>()?;
        let acc = Tensor::zeros(gpu, &[pairs.len()], "MFR similarity sums")?;
        // gradient of −λw/(P·m) · Σ_pairs Σ_j S[assign[j], j] = of λw · mean_pairs (1 − MMCS)
        let scale = -1.0 / (pairs.len() as f32 * m as f32);
        let mut plan = Vec::new();
        let (mut assign, mut groups, mut inverse) = (Vec::new(), Vec::new(), Vec::new());
        // Stacked and matched: every pair's similarity, sum and gradient in one dispatch each,
        // over the stacked dictionaries (the matchings' slices must bind).
        let all_pairs = match (stack, &stacked_grads) {
            (Some(stack), Some(all)) if cfg.form == MmcsForm::Match && Tensor::<u32>::view_aligned(gpu, m) => {
                Some((stack.dictionaries().0, all))
            }
            _ => None,
        };
        if let Some((u, all)) = all_pairs {
            let p = pairs.len();
            let assign_all = Tensor::<u32>::zeros(gpu, &[p * m], "pair assignments")?;
            let inverse_all = Tensor::<u32>::zeros(gpu, &[p * m], "pair inverse assignments")?;
            for pair in 0..p {
                assign.push(assign_all.view(gpu, p, pair, &[m], "pair assignment")?);
                inverse.push(inverse_all.view(gpu, p, pair, &[m], "pair inverse assignment")?);
            }
            let sim = Tensor::zeros(gpu, &[p * m], "pair similarities")?;
            plan.push(kernels.matched_pairs(gpu, n, u, &assign_all, &sim)?);
            plan.push(kernels.totals(gpu, &sim, p, &acc, 0)?);
            plan.push(kernels.mfr_gradient_pairs(gpu, &step_uniform, scale, n, u, &assign_all, &inverse_all, all)?);
        } else {
            let sim = Tensor::zeros(gpu, &[m], "pair similarity")?;
            // Each SAE's gradient is overwritten by its first pair, then added to: no zeroing pass.
            let mut written = vec![false; saes.len()];
            let partials = MaxPartials::new(gpu, if cfg.form == MmcsForm::Max { m } else { 1 }, d)?;
            let scratch = GroupScratch::new(gpu, m)?;
            let group_count = if cfg.form == MmcsForm::Max { 1 } else { pairs.len() };
            groups = (0..group_count).map(|_| Groups::new(gpu, m)).collect::<Result<_>>()?;
            for (p, &(a, b)) in pairs.iter().enumerate() {
                let pair_assign = Tensor::<u32>::zeros(gpu, &[m], "pair assignment")?;
                let (ua, ub) = (saes[a].dictionary().0, saes[b].dictionary().0);
                plan.extend(kernels.similarity(gpu, ua, ub, cfg.form, &partials, &pair_assign, &sim)?);
                plan.push(kernels.total(gpu, &sim, &acc, p)?);
                let pair_groups = match cfg.form {
                    MmcsForm::Max => {
                        plan.extend(kernels.group_by_partner(gpu, &pair_assign, &scratch, &groups[0])?);
                        &groups[0]
                    }
                    MmcsForm::Match => &groups[p],
                };
                let into = PairGradients {
                    a: &grads[a],
                    b: &grads[b],
                    overwrite_a: !std::mem::replace(&mut written[a], true),
                    overwrite_b: !std::mem::replace(&mut written[b], true),
                };
                plan.extend(kernels.mfr_gradient(
                    gpu,
                    &step_uniform,
                    scale,
                    ua,
                    ub,
                    &pair_assign,
                    pair_groups,
                    into,
                )?);
                assign.push(pair_assign);
            }
        }
        match (stack, &stacked_grads) {
            (Some(stack), Some(all)) => {
                let (u, norms, param_grads) = stack.dictionaries();
                plan.push(kernels.project(gpu, all, u, Some(norms), true, param_grads)?);
            }
            _ => {
                for (sae, g) in saes.iter().zip(&grads) {
                    let (u, norms) = sae.dictionary();
                    plan.push(kernels.project(gpu, g, u, norms, true, sae.dictionary_param_grad())?);
                }
            }
        }
        Ok(GpuMfr {
            cfg,
            pairs,
            assign,
            groups,
            inverse,
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
        MfrStep::write(gpu, &self.step_uniform, self.cfg.weight(t) as f32);
    }

    pub fn plan(&self) -> &[Dispatch] {
        &self.plan
    }

    pub fn pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// `Match` form: sets pair p's matching; `assign[j]` is the latent of SAE a matched to
    /// latent j of b, a permutation of 0..m.
    pub fn set_matching(&self, gpu: &Gpu, pair: usize, assign: &[u32]) -> Result<()> {
        let mut seen = vec![false; self.m];
        let one_to_one = assign.len() == self.m
            && assign
                .iter()
                .all(|&i| (i as usize) < self.m && !std::mem::replace(&mut seen[i as usize], true));
        if self.cfg.form != MmcsForm::Match || !one_to_one {
            return Err(Error::Shape(format!(
                "a matching must be a permutation of 0..{} (and the MMCS form `match`)",
                self.m
            )));
        }
        self.assign[pair].write(gpu, assign)?;
        match self.inverse.get(pair) {
            Some(inverse) => inverse.write(gpu, &groups_of(assign, self.m).1),
            None => self.groups[pair].write(gpu, assign),
        }
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

/// The full similarity matrices S = U_a U_bᵀ [m, m] of the pairs of an ensemble, formed on
/// the GPU from dictionaries the caller uploads and read back one pair at a time: what
/// refreshing the matchings and the logs' pairwise MMCS read. S lives in one storage binding,
/// so m² f32 must fit the device's binding limit (m = 3072: 36 MiB).
pub struct PairMatrices {
    /// Per SAE: its unit-row dictionary [m, d].
    dicts: Vec<Tensor<f32>>,
    /// S of the last pair formed: [m, m].
    s: Tensor<f32>,
    /// Per pair: S = U_a U_bᵀ into `s`.
    plan: Vec<Vec<Dispatch>>,
}

impl PairMatrices {
    pub fn new(gpu: &Gpu, kernels: &Kernels, n: usize, m: usize, d: usize) -> Result<PairMatrices> {
        let (need, limit) = ((m * m) as u64, gpu.max_binding_elements());
        if need > limit {
            return Err(Error::Shape(format!(
                "the pairwise similarity matrix of m = {m} latents needs {} MiB, above this adapter's \
                 storage binding limit of {} MiB: use a dictionary of at most {} latents",
                (need * 4) >> 20,
                (limit * 4) >> 20,
                (limit as f64).sqrt() as u64
            )));
        }
        let dicts: Vec<Tensor<f32>> = (0..n)
            .map(|_| Tensor::zeros(gpu, &[m, d], "dictionary for S"))
            .collect::<Result<_>>()?;
        let s = Tensor::zeros(gpu, &[m, m], "pair similarity matrix")?;
        let plan = pairs(n)
            .into_iter()
            .map(|(a, b)| kernels.similarity_matrix(gpu, &dicts[a], &dicts[b], &s))
            .collect::<Result<_>>()?;
        Ok(PairMatrices { dicts, s, plan })
    }

    /// Uploads every SAE's unit-row dictionary [m, d] (from `SaeWeights::dictionary`).
    pub fn upload(&self, gpu: &Gpu, dicts: &[Vec<f32>]) -> Result<()> {
        if dicts.len() != self.dicts.len() {
            return Err(Error::Shape(format!(
                "{} dictionaries for an ensemble of {}",
                dicts.len(),
                self.dicts.len()
            )));
        }
        self.dicts.iter().zip(dicts).try_for_each(|(t, u)| t.write(gpu, u))
    }

    /// S [m, m] row-major of pair p (in `pairs` order) from the uploaded dictionaries:
    /// S[i, j] = U_a[i]·U_b[j].
    pub async fn matrix(&self, gpu: &Gpu, pair: usize) -> Result<Vec<f32>> {
        let dispatch = self
            .plan
            .get(pair)
            .ok_or_else(|| Error::Shape(format!("pair {pair} of an ensemble with {} pairs", self.plan.len())))?;
        gpu.submit(&dispatch.iter().collect::<Vec<_>>());
        self.s.read(gpu).await
    }
}

/// One pair's MFR kernels on two random unit-row dictionaries [m, d], recorded once, for
/// timing (`examples/mfr_timing.rs`, `mfr-sae bench`): each plan is one stage of a step or
/// of a refresh, to be submitted and waited for with `Gpu::finish` (the caller keeps the clock,
/// which the browser build does not have in `std`). The bind groups keep their buffers alive.
pub struct PairKernels {
    /// `Max` similarity: tiles + reduction (2·m²·d FLOPs).
    pub max_similarity: Vec<Dispatch>,
    /// `Match` similarity for a fixed matching (2·m·d FLOPs).
    pub matched_similarity: Vec<Dispatch>,
    /// The full S [m, m] (2·m²·d FLOPs), as a refresh or a log forms it (without the read-back).
    pub matrix: Vec<Dispatch>,
    /// `Max` gradient: grouping the argmax on the GPU, then both dictionaries' gradients.
    pub max_gradient: Vec<Dispatch>,
    /// `Match` gradient with uploaded groups.
    pub match_gradient: Vec<Dispatch>,
    pub m: usize,
    pub d: usize,
}

impl PairKernels {
    pub fn new(gpu: &Gpu, kernels: &Kernels, m: usize, d: usize, seed: u64) -> Result<PairKernels> {
        let mut rng = crate::rng::Rng::new(seed);
        let mut unit = || -> Result<Tensor<f32>> {
            let (u, _) = crate::model::rows_normalise(&rng.normals(m * d), d);
            Tensor::from_slice(
                gpu,
                &[m, d],
                &u.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                "dictionary",
            )
        };
        let (ua, ub) = (unit()?, unit()?);
        let zeros = |shape: &[usize]| Tensor::<f32>::zeros(gpu, shape, "timing output");
        let (sim, s, ga, gb) = (zeros(&[m])?, zeros(&[m, m])?, zeros(&[m, d])?, zeros(&[m, d])?);
        let argmax = Tensor::<u32>::zeros(gpu, &[m], "argmax")?;
        let rotation: Vec<u32> = (0..m as u32).map(|j| (j + 1) % m as u32).collect();
        let matching = Tensor::from_slice(gpu, &[m], &rotation, "matching")?;
        let partials = MaxPartials::new(gpu, m, d)?;
        let scratch = GroupScratch::new(gpu, m)?;
        let groups = [Groups::new(gpu, m)?, Groups::new(gpu, m)?];
        groups[1].write(gpu, &rotation)?;
        let step = MfrStep::buffer(gpu);
        let max_similarity = kernels.similarity(gpu, &ua, &ub, MmcsForm::Max, &partials, &argmax, &sim)?;
        let matched_similarity = kernels.similarity(gpu, &ua, &ub, MmcsForm::Match, &partials, &matching, &sim)?;
        let matrix = kernels.similarity_matrix(gpu, &ua, &ub, &s)?;
        let mut max_gradient = kernels.group_by_partner(gpu, &argmax, &scratch, &groups[0])?;
        let into = || PairGradients {
            a: &ga,
            b: &gb,
            overwrite_a: false,
            overwrite_b: false,
        };
        max_gradient.extend(kernels.mfr_gradient(gpu, &step, -1.0, &ua, &ub, &argmax, &groups[0], into())?);
        let match_gradient = kernels.mfr_gradient(gpu, &step, -1.0, &ua, &ub, &matching, &groups[1], into())?;
        Ok(PairKernels {
            max_similarity,
            matched_similarity,
            matrix,
            max_gradient,
            match_gradient,
            m,
            d,
        })
    }
}
