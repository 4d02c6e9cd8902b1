//! The benchmark behind `mfr-sae bench`: the whole ensemble step (forward →
//! loss → backward → MFR → Adam → renormalise) with and without MFR, and the
//! two products that dominate it — the encoder product and the MFR pair
//! similarity — timed on their own, at the paper's shapes and over a sweep of
//! dictionary size m and sparsity k.
//!
//! Owns: the benchmark shapes, the FLOP model, the timing (GPU timestamps where
//! the adapter has `TIMESTAMP_QUERY`, else wall time around a finished queue)
//! and the report with its stable JSON schema. Does not own any kernel or the
//! step itself: it measures only through the public entry points
//! (`Kernels::matmul`, `Kernels::similarity`, `Ensemble::new` + `step`,
//! `Gpu::submit`), so it measures whatever variant those choose. Async and
//! target-independent: the caller passes the clock and the progress sink.

use crate::error::{Error, Result};
use crate::gpu::{read_buffer, AdapterReport, Dispatch, Gpu, Tensor};
use crate::kernels::{Kernels, MaxPartials, MmcsForm, Op, SHAPE_CLASSES};
use crate::mfr::{pairs, MfrConfig};
use crate::model::{Activation, Architecture, SaeConfig, StepPath};
use crate::rng::Rng;
use crate::train::{Ensemble, EnsembleConfig};
use serde::Serialize;
use std::collections::BTreeMap;

/// One benchmark shape: N tied TopK SAEs of m latents over d inputs, batch B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Shape {
    pub name: &'static str,
    pub d: usize,
    pub m: usize,
    pub k: usize,
    pub n_saes: usize,
    pub batch: usize,
}

impl Shape {
    /// Seconds on a CPU adapter: the quick presets' SAE.
    pub const QUICK: Shape = Shape::new("quick", 64, 128, 8, 2, 512);
    /// The paper's synthetic SAE (the paper's batch is 10 000; 1024 here unless `with_batch`).
    pub const SYNTHETIC: Shape = Shape::new("synthetic", 256, 512, 32, 2, 1024);
    /// The paper's EEG setting: 14 channels × 128 Hz (one second) = 1792 inputs, N = 5.
    pub const EEG: Shape = Shape::new("eeg", 14 * 128, 512, 6, 5, 1024);
    /// The paper's GPT-2 Small layer-0 MLP setting: N = 10, m = 3072.
    pub const GPT2: Shape = Shape::new("gpt2", 768, 3072, 6, 10, 500);
    pub const ALL: [Shape; 4] = [Shape::QUICK, Shape::SYNTHETIC, Shape::EEG, Shape::GPT2];

    const fn new(name: &'static str, d: usize, m: usize, k: usize, n_saes: usize, batch: usize) -> Shape {
        Shape {
            name,
            d,
            m,
            k,
            n_saes,
            batch,
        }
    }

    pub fn with_batch(self, batch: usize) -> Shape {
        Shape { batch, ..self }
    }

    /// The sweep's shapes at d 256, B 1024, N 2: m over 256…4096 at k 32, then k over
    /// 8…256 at m 1024 — two lines through the m × k plane, not the whole grid (which
    /// takes the better part of an hour on lavapipe).
    pub fn sweep() -> Vec<Shape> {
        const K: usize = 32;
        const M: usize = 1024;
        let at = |m, k| Shape::new("sweep", 256, m, k, 2, 1024);
        let over_m = [256, 512, 1024, 2048, 4096].map(|m| at(m, K));
        let over_k = [8, 64, 128, 256].map(|k| at(M, k));
        over_m.into_iter().chain(over_k).collect()
    }
}

/// The encoder product of one SAE, `a [B, m] = x [B, d] · Wᵀ + b`: 2·B·d·m.
pub fn encoder_flops(batch: usize, d: usize, m: usize) -> f64 {
    2.0 * batch as f64 * d as f64 * m as f64
}

/// One pair's full similarity `U_a U_bᵀ` [m, m] over d: 2·m²·d.
pub fn similarity_flops(m: usize, d: usize) -> f64 {
    2.0 * (m as f64).powi(2) * d as f64
}

/// Dense products of one tied SAE's step: the encoder, the decoder, the
/// decoder's input gradient and the two weight gradients, 2·B·d·m each.
const DENSE_PRODUCTS_PER_SAE: f64 = 5.0;

/// An upper bound on one call's arithmetic, the dense path's, used to choose
/// repetitions and what a software adapter skips (sparse paths do less).
/// `Match` counts the refresh of the matching (every pair's full similarity, on
/// the CPU), which the first step pays.
pub fn step_flops(s: &Shape, kind: StepKind) -> f64 {
    let saes = DENSE_PRODUCTS_PER_SAE * s.n_saes as f64 * encoder_flops(s.batch, s.d, s.m);
    let pair_count = pairs(s.n_saes).len() as f64;
    match kind {
        StepKind::NoMfr => saes,
        StepKind::Mfr(_) => saes + pair_count * similarity_flops(s.m, s.d),
    }
}

/// What a step measurement trains: independent SAEs (λ = 0) or MFR in one form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    NoMfr,
    Mfr(MmcsForm),
}

impl StepKind {
    pub const ALL: [StepKind; 3] = [
        StepKind::NoMfr,
        StepKind::Mfr(MmcsForm::Match),
        StepKind::Mfr(MmcsForm::Max),
    ];

    /// The record name: `step/none`, `step/match`, `step/max`.
    pub fn name(self) -> &'static str {
        match self {
            StepKind::NoMfr => "step/none",
            StepKind::Mfr(MmcsForm::Match) => "step/match",
            StepKind::Mfr(MmcsForm::Max) => "step/max",
        }
    }
}

/// Record names of the kernels timed on their own.
pub const ENCODER: &str = "encoder_matmul";
pub const SIMILARITY: &str = "mfr_similarity_max";
/// Sweep only: the step without MFR minus its N encoder products.
pub const STEP_MINUS_ENCODER: &str = "step_minus_encoder";

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    pub shapes: Vec<Shape>,
    /// The steps timed at every shape (none: no step).
    pub steps: Vec<StepKind>,
    pub encoder: bool,
    pub similarity: bool,
    /// Also run the m × k sweep (`Shape::sweep`, λ = 0).
    pub sweep: bool,
    /// Timed repetitions after one warm-up call; None: from the FLOP count (`default_reps`).
    pub reps: Option<u32>,
    /// Run what a software adapter would skip as too slow.
    pub no_skip: bool,
    /// After timing each step, replay its dispatches one timed pass each (`Profile`).
    pub profile: bool,
    /// Record every SAE's step by itself even where the ensemble stacks them
    /// (`Ensemble::new_unstacked`), to time what stacking saves.
    pub unstacked: bool,
}

/// A software adapter skips a call estimated above this (≈ a minute or more on lavapipe).
pub const SOFTWARE_SKIP_FLOPS: f64 = 250e9;

/// Repetitions that keep one measurement near a fixed arithmetic budget: 3 to 20.
pub fn default_reps(flops_per_call: f64, software: bool) -> u32 {
    let budget = if software { 20e9 } else { 2e12 };
    (budget / flops_per_call.max(1.0)).clamp(3.0, 20.0) as u32
}

/// How a time was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    /// `TIMESTAMP_QUERY` at the start and end of a compute pass holding the one dispatch.
    GpuTimestamps,
    /// The host clock around submit → the queue's work done (`device.poll(wait)`).
    Wall,
}

/// One measurement. Fields may be added; none will be renamed.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub name: String,
    pub shape: Shape,
    /// Median over `reps` calls after one warm-up call.
    pub ms: f64,
    pub ms_min: f64,
    pub ms_max: f64,
    /// The warm-up call (first use: pipelines, uploads, a `Match` form's first matching).
    pub warmup_ms: f64,
    pub reps: u32,
    /// Arithmetic rate of a kernel (its FLOP count / `ms`); null for steps.
    pub gflops: Option<f64>,
    /// Steps only: 1000 / `ms`.
    pub steps_per_s: Option<f64>,
    pub timer: Timer,
    /// What the code chose: the step path of a step and whether its SAEs ran stacked
    /// (`sparse, stacked`, `dense, one by one`), the matmul variant of the encoder product;
    /// null where the kernel has no variants.
    pub variant: Option<String>,
}

/// A measurement not taken, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub name: String,
    pub shape: Shape,
    pub reason: String,
}

/// The whole benchmark: `{"tool":"mfr-sae","adapter":{…},"results":[…], …}`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub adapter: AdapterReport,
    /// How the kernels were timed (steps are always `wall`).
    pub kernel_timer: Timer,
    /// What the kernels report choosing, by name: the matmul variant of each transpose
    /// class and why, the rule that picks a step's path (each step record names its path).
    pub kernels: BTreeMap<String, String>,
    pub results: Vec<Record>,
    pub skipped: Vec<Skipped>,
    /// GFLOP/s of the encoder product at the synthetic shape (B 1024, d 256, m 512).
    pub encoder_matmul_gflops: Option<f64>,
    /// Per-kernel profiles of the timed steps (`--profile`; empty without it).
    pub profiles: Vec<Profile>,
}

/// Where one step's time goes: its recorded dispatches replayed one compute pass each,
/// every pass bracketed by GPU timestamps, summed per kernel. Fields may be added; none
/// will be renamed.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    /// The step's record name (`step/none`, …).
    pub name: String,
    pub shape: Shape,
    /// The step path (`dense`, `sparse`).
    pub variant: Option<String>,
    /// The step's median wall time (its `Record`'s `ms`).
    pub step_wall_ms: f64,
    /// Σ over the dispatches of their GPU time, per step (mean over the replays).
    pub kernels_ms: f64,
    /// step_wall_ms − kernels_ms: what the step spends outside its kernels (submission,
    /// barriers between dispatches, the wait for the queue).
    pub overhead_ms: f64,
    pub dispatches: u32,
    /// Replays averaged.
    pub reps: u32,
    /// Per kernel, most time first.
    pub kernels: Vec<KernelTime>,
}

/// One kernel's part of a profiled step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    /// `shader/entry` (`activation/topk`), or the shader alone for a `main` entry (`adam`).
    pub kernel: String,
    /// Dispatches of it per step.
    pub count: u32,
    /// GPU ms per step, summed over its dispatches (mean over the replays).
    pub ms: f64,
    /// ms / the profile's kernels_ms.
    pub share: f64,
}

/// Milliseconds from an arbitrary origin (native: `Instant`; web: `performance.now()`).
pub type Clock<'a> = &'a dyn Fn() -> f64;

/// Runs `cfg` on `gpu`, reporting each measurement's start to `progress`.
pub async fn run(
    gpu: &Gpu,
    kernels: &Kernels,
    cfg: &Config,
    clock: Clock<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let timestamps = gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let mut b = Bench {
        gpu,
        kernels,
        cfg,
        clock,
        progress,
        timer: if timestamps { Timer::GpuTimestamps } else { Timer::Wall },
        results: vec![],
        skipped: vec![],
        profiles: vec![],
    };
    for &shape in &cfg.shapes {
        b.shape(shape).await?;
    }
    let synthetic = Shape::SYNTHETIC;
    let at_synthetic = |r: &Record| {
        r.name == ENCODER && (r.shape.batch, r.shape.d, r.shape.m) == (synthetic.batch, synthetic.d, synthetic.m)
    };
    if cfg.encoder && !b.results.iter().any(at_synthetic) {
        let r = b.encoder(synthetic).await?;
        b.results.push(r);
    }
    if cfg.sweep {
        for shape in Shape::sweep() {
            b.sweep_point(shape).await?;
        }
    }
    let encoder_matmul_gflops = b.results.iter().find(|r| at_synthetic(r)).and_then(|r| r.gflops);
    Ok(Report {
        tool: "mfr-sae",
        version: env!("CARGO_PKG_VERSION"),
        adapter: gpu.report.clone(),
        kernel_timer: b.timer,
        kernels: kernel_report(kernels),
        results: b.results,
        skipped: b.skipped,
        encoder_matmul_gflops,
        profiles: b.profiles,
    })
}

fn kernel_report(kernels: &Kernels) -> BTreeMap<String, String> {
    let choice = kernels.matmul_choice();
    let variants: Vec<String> = SHAPE_CLASSES
        .iter()
        .zip(choice.variants)
        .map(|((a, b), v)| format!("{a:?}{b:?} {}", v.name()))
        .collect();
    BTreeMap::from([
        ("matmul_variants".to_string(), variants.join(", ")),
        (
            "matmul_reason".to_string(),
            format!("{:?}", choice.reason).to_lowercase(),
        ),
        ("step_path_rule".to_string(), StepPath::rule()),
    ])
}

struct Bench<'a> {
    gpu: &'a Gpu,
    kernels: &'a Kernels,
    cfg: &'a Config,
    clock: Clock<'a>,
    progress: &'a mut dyn FnMut(&str),
    timer: Timer,
    results: Vec<Record>,
    skipped: Vec<Skipped>,
    profiles: Vec<Profile>,
}

/// Times of the warm-up call and of each timed call, in ms.
struct Times {
    warmup: f64,
    reps: Vec<f64>,
}

impl Times {
    fn record(mut self, name: &str, shape: Shape, timer: Timer, flops: Option<f64>, variant: Option<String>) -> Record {
        self.reps.sort_by(f64::total_cmp);
        let n = self.reps.len();
        let ms = if n % 2 == 1 {
            self.reps[n / 2]
        } else {
            0.5 * (self.reps[n / 2 - 1] + self.reps[n / 2])
        };
        let is_step = name.starts_with("step/");
        Record {
            name: name.to_string(),
            shape,
            ms,
            ms_min: self.reps[0],
            ms_max: self.reps[n - 1],
            warmup_ms: self.warmup,
            reps: n as u32,
            gflops: flops.map(|f| f / ms / 1e6),
            steps_per_s: is_step.then(|| 1e3 / ms),
            timer,
            variant,
        }
    }
}

impl Bench<'_> {
    async fn shape(&mut self, s: Shape) -> Result<()> {
        for &kind in &self.cfg.steps {
            if self.allowed(kind.name(), s, step_flops(&s, kind)) {
                let r = self.step(s, kind).await?;
                self.results.push(r);
            }
        }
        if self.cfg.encoder {
            let r = self.encoder(s).await?;
            self.results.push(r);
        }
        if self.cfg.similarity && s.n_saes >= 2 && self.allowed(SIMILARITY, s, similarity_flops(s.m, s.d)) {
            let r = self.similarity(s).await?;
            self.results.push(r);
        }
        Ok(())
    }

    /// A step without MFR, the encoder product and their difference (step − N encoder products).
    async fn sweep_point(&mut self, s: Shape) -> Result<()> {
        let step = self.step(s, StepKind::NoMfr).await?;
        let enc = self.encoder(s).await?;
        let rest = step.ms - s.n_saes as f64 * enc.ms;
        let difference = Record {
            name: STEP_MINUS_ENCODER.into(),
            ms: rest,
            ms_min: rest,
            ms_max: rest,
            warmup_ms: 0.0,
            gflops: None,
            steps_per_s: None,
            timer: Timer::Wall,
            ..step.clone()
        };
        self.results.extend([step, enc, difference]);
        Ok(())
    }

    /// False (and the skip noted) when a software adapter would spend too long on it.
    fn allowed(&mut self, name: &str, s: Shape, flops: f64) -> bool {
        if self.cfg.no_skip || !self.gpu.report.is_software || flops <= SOFTWARE_SKIP_FLOPS {
            return true;
        }
        let reason = format!(
            "≈ {:.0} GFLOP per call on the software adapter {} (limit {:.0}); --no-skip runs it",
            flops / 1e9,
            self.gpu.report.name,
            SOFTWARE_SKIP_FLOPS / 1e9
        );
        (self.progress)(&format!("[{}] {name}: skipped, {reason}", s.name));
        self.skipped.push(Skipped {
            name: name.into(),
            shape: s,
            reason,
        });
        false
    }

    fn reps(&self, flops: f64) -> u32 {
        self.cfg
            .reps
            .unwrap_or_else(|| default_reps(flops, self.gpu.report.is_software))
            .max(1)
    }

    fn announce(&mut self, name: &str, s: Shape, reps: u32) {
        (self.progress)(&format!(
            "[{}] {name}: d {} m {} k {} N {} B {}, warm-up + {reps} reps",
            s.name, s.d, s.m, s.k, s.n_saes, s.batch
        ));
    }

    /// The whole ensemble step, wall time per step (each step waited for).
    async fn step(&mut self, s: Shape, kind: StepKind) -> Result<Record> {
        let reps = self.reps(step_flops(&s, kind));
        self.announce(kind.name(), s, reps);
        let cfg = ensemble_config(s, kind);
        let path = cfg.sae.resolved_step_path()?;
        let weights = cfg.initial_weights();
        let mut ens = match self.cfg.unstacked {
            false => Ensemble::new(self.gpu, self.kernels, cfg, &weights)?,
            true => Ensemble::new_unstacked(self.gpu, self.kernels, cfg, &weights)?,
        };
        let batch = normals(1, s.batch * s.d);
        let mut times = vec![];
        for _ in 0..=reps {
            let t0 = (self.clock)();
            ens.step(self.gpu, &batch).await?;
            self.gpu.finish().await?;
            times.push((self.clock)() - t0);
        }
        let warmup = times.remove(0);
        let path = match path {
            StepPath::Dense => "dense",
            StepPath::Sparse => "sparse",
        };
        let recorded = if ens.stacking().is_ok() {
            "stacked"
        } else {
            "one by one"
        };
        let variant = format!("{path}, {recorded}");
        let record = Times { warmup, reps: times }.record(kind.name(), s, Timer::Wall, None, Some(variant));
        if self.cfg.profile {
            let profile = self.profile(&ens, &record, reps).await?;
            self.profiles.push(profile);
        }
        Ok(record)
    }

    /// Replays the step's dispatches `reps` times, one timestamped pass each (wall-clock
    /// passes where the adapter has no timestamps: then each kernel's time includes its
    /// submission), and sums the times per kernel.
    async fn profile(&mut self, ens: &Ensemble, step: &Record, reps: u32) -> Result<Profile> {
        (self.progress)(&format!("[{}] {}: profile, {reps} replays", step.shape.name, step.name));
        let plan = ens.step_plan();
        let mut per_dispatch = vec![0.0; plan.len()];
        for _ in 0..reps {
            let times = match self.timer {
                Timer::GpuTimestamps => timestamped_dispatches(self.gpu, &plan).await?,
                Timer::Wall => {
                    let mut out = vec![];
                    for d in &plan {
                        let t0 = (self.clock)();
                        self.gpu.submit(&[d]);
                        self.gpu.finish().await?;
                        out.push((self.clock)() - t0);
                    }
                    out
                }
            };
            per_dispatch
                .iter_mut()
                .zip(times)
                .for_each(|(sum, t)| *sum += t / reps as f64);
        }
        let mut by_kernel: BTreeMap<String, (u32, f64)> = BTreeMap::new();
        for (d, ms) in plan.iter().zip(&per_dispatch) {
            let e = by_kernel.entry(d.kernel()).or_default();
            e.0 += 1;
            e.1 += ms;
        }
        let kernels_ms: f64 = per_dispatch.iter().sum();
        let mut kernels: Vec<KernelTime> = by_kernel
            .into_iter()
            .map(|(kernel, (count, ms))| KernelTime {
                kernel,
                count,
                ms,
                share: ms / kernels_ms.max(f64::MIN_POSITIVE),
            })
            .collect();
        kernels.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.kernel.cmp(&b.kernel)));
        Ok(Profile {
            name: step.name.clone(),
            shape: step.shape,
            variant: step.variant.clone(),
            step_wall_ms: step.ms,
            kernels_ms,
            overhead_ms: step.ms - kernels_ms,
            dispatches: plan.len() as u32,
            reps,
            kernels,
        })
    }

    /// One SAE's encoder product `x [B, d] · Wᵀ [d, m] + b [m]`, as the SAE forms it.
    async fn encoder(&mut self, s: Shape) -> Result<Record> {
        let flops = encoder_flops(s.batch, s.d, s.m);
        let reps = self.reps(flops);
        self.announce(ENCODER, s, reps);
        let gpu = self.gpu;
        let x = Tensor::from_slice(gpu, &[s.batch, s.d], &normals(1, s.batch * s.d), "bench x")?;
        let w = Tensor::from_slice(gpu, &[s.m, s.d], &normals(2, s.m * s.d), "bench W")?;
        let bias = Tensor::from_slice(gpu, &[s.m], &normals(3, s.m), "bench b")?;
        let a = Tensor::<f32>::zeros(gpu, &[s.batch, s.m], "bench a")?;
        let dispatch = self.kernels.matmul(gpu, &x, Op::N, &w, Op::T, Some(&bias), 1.0, &a)?;
        let variant = self.kernels.matmul_variant(Op::N, Op::T).name().to_string();
        let times = self.time_dispatches(std::slice::from_ref(&dispatch), reps).await?;
        Ok(times.record(ENCODER, s, self.timer, Some(flops), Some(variant)))
    }

    /// One pair's similarity in the `Max` form: every latent of b against every latent of a.
    async fn similarity(&mut self, s: Shape) -> Result<Record> {
        let flops = similarity_flops(s.m, s.d);
        let reps = self.reps(flops);
        self.announce(SIMILARITY, s, reps);
        let gpu = self.gpu;
        let ua = Tensor::from_slice(gpu, &[s.m, s.d], &normals(4, s.m * s.d), "bench U_a")?;
        let ub = Tensor::from_slice(gpu, &[s.m, s.d], &normals(5, s.m * s.d), "bench U_b")?;
        let assign = Tensor::<u32>::zeros(gpu, &[s.m], "bench assign")?;
        let sim = Tensor::<f32>::zeros(gpu, &[s.m], "bench sim")?;
        let partials = MaxPartials::new(gpu, s.m, s.d)?;
        let dispatches = self
            .kernels
            .similarity(gpu, &ua, &ub, MmcsForm::Max, &partials, &assign, &sim)?;
        let times = self.time_dispatches(&dispatches, reps).await?;
        Ok(times.record(SIMILARITY, s, self.timer, Some(flops), None))
    }

    /// One warm-up submission (wall), then `reps` timed calls of `dispatches` (one pass each).
    async fn time_dispatches(&self, dispatches: &[Dispatch], reps: u32) -> Result<Times> {
        let gpu = self.gpu;
        let pass: Vec<&Dispatch> = dispatches.iter().collect();
        let t0 = (self.clock)();
        gpu.submit(&pass);
        gpu.finish().await?;
        let warmup = (self.clock)() - t0;
        let reps = match self.timer {
            Timer::GpuTimestamps => timestamped(gpu, &pass, reps).await?,
            Timer::Wall => {
                let mut out = vec![];
                for _ in 0..reps {
                    let t0 = (self.clock)();
                    gpu.submit(&pass);
                    gpu.finish().await?;
                    out.push((self.clock)() - t0);
                }
                out
            }
        };
        Ok(Times { warmup, reps })
    }
}

/// Most timed passes in one query set (two timestamps each, wgpu's 4096-query limit).
const MAX_TIMESTAMPED_REPS: u32 = wgpu::QUERY_SET_MAX_QUERIES / 2;

/// `reps` compute passes of `pass` in one submission, each bracketed by GPU
/// timestamps; the ms of each.
async fn timestamped(gpu: &Gpu, pass: &[&Dispatch], reps: u32) -> Result<Vec<f64>> {
    let reps = reps.min(MAX_TIMESTAMPED_REPS);
    timestamped_passes(gpu, vec![pass.to_vec(); reps as usize]).await
}

/// `passes` (at most `MAX_TIMESTAMPED_REPS`) in one submission, one compute pass each,
/// bracketed by GPU timestamps; the ms of each.
async fn timestamped_passes(gpu: &Gpu, passes: Vec<Vec<&Dispatch>>) -> Result<Vec<f64>> {
    let n = passes.len() as u32;
    let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("bench timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count: 2 * n,
    });
    // timestamps: [n, 2] u64 ticks (pass start, pass end).
    let resolved = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("bench timestamps resolved"),
        size: (2 * n as u64 * wgpu::QUERY_SIZE as u64).next_multiple_of(wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT),
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    for (i, pass) in (0..n).zip(&passes) {
        // A dispatch that uploads textures (the texture kernels) starts a compute pass of its
        // own after its copies; an empty pass takes the start time first, so that the time
        // includes every copy, and the last pass the end time.
        drop(encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("bench start"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * i),
                end_of_pass_write_index: None,
            }),
        }));
        Dispatch::encode_all(&mut encoder, pass, |last| wgpu::ComputePassDescriptor {
            label: Some("bench"),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: None,
                end_of_pass_write_index: last.then_some(2 * i + 1),
            }),
        });
    }
    encoder.resolve_query_set(&queries, 0..2 * n, &resolved, 0);
    gpu.queue.submit([encoder.finish()]);
    let bytes = read_buffer(gpu, &resolved).await?;
    let ticks: &[u64] = bytemuck::cast_slice(&bytes[..2 * n as usize * 8]);
    let ns_per_tick = gpu.queue.get_timestamp_period() as f64;
    let ms: Vec<f64> = ticks
        .chunks_exact(2)
        .map(|t| t[1].saturating_sub(t[0]) as f64 * ns_per_tick / 1e6)
        .collect();
    if ms.iter().all(|&t| t == 0.0) {
        return Err(Error::Device(format!(
            "the adapter `{}` offers TIMESTAMP_QUERY but wrote only zero durations",
            gpu.report.name
        )));
    }
    Ok(ms)
}

/// `plan` in one submission, each dispatch in its own compute pass bracketed by GPU
/// timestamps; the ms of each dispatch.
async fn timestamped_dispatches(gpu: &Gpu, plan: &[&Dispatch]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(plan.len());
    // wgpu's query-set limit bounds the passes of one submission.
    for chunk in plan.chunks(MAX_TIMESTAMPED_REPS as usize) {
        out.extend(timestamped_passes(gpu, chunk.iter().map(|&d| vec![d]).collect()).await?);
    }
    Ok(out)
}

/// The paper's tied TopK ensemble at `s`: lr 1e-3, Adam, no reinit; λ 1 with MFR
/// (λ's value does not change the work), matchings refreshed every 100 steps.
fn ensemble_config(s: Shape, kind: StepKind) -> EnsembleConfig {
    let (lambda, form) = match kind {
        StepKind::NoMfr => (0.0, MmcsForm::Match),
        StepKind::Mfr(form) => (1.0, form),
    };
    EnsembleConfig {
        sae: SaeConfig::new(Architecture::Tied, Activation::TopK { k: s.k }, s.d, s.m, s.batch, 1e-3),
        n_saes: s.n_saes,
        k_per_sae: vec![],
        lr_per_sae: vec![],
        mfr: MfrConfig {
            lambda,
            warmup_steps: 100,
            form,
            match_every: 100,
        },
        reinit: None,
        lr_warmup_steps: 0,
        lr_decay_steps: 0,
        steps: u64::MAX,
        log_every: u64::MAX,
        seed: 0,
        denoising: false,
    }
}

fn normals(seed: u64, n: usize) -> Vec<f32> {
    Rng::new(seed).normals(n).into_iter().map(|v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoder_product_counts_two_flops_per_multiply_add() {
        // 1024 × 256 × 512 multiply-adds at the synthetic shape.
        assert_eq!(encoder_flops(1024, 256, 512), 268_435_456.0);
        assert_eq!(encoder_flops(1, 1, 1), 2.0);
    }

    #[test]
    fn the_similarity_counts_every_latent_pair_over_d() {
        assert_eq!(similarity_flops(512, 256), 2.0 * 512.0 * 512.0 * 256.0);
        assert_eq!(similarity_flops(3, 5), 90.0);
    }

    #[test]
    fn gpt2s_mfr_step_is_dominated_by_the_45_pair_similarities() {
        let s = Shape::GPT2;
        let saes = 5.0 * 10.0 * encoder_flops(500, 768, 3072);
        let mfr = 45.0 * similarity_flops(3072, 768);
        assert_eq!(step_flops(&s, StepKind::NoMfr), saes);
        assert_eq!(step_flops(&s, StepKind::Mfr(MmcsForm::Max)), saes + mfr);
        // ARCHITECTURE.md §5: ≈ 650 GFLOP of similarity per step at the paper's GPT-2 setting.
        assert!((mfr / 1e9 - 652.0).abs() < 1.0, "{}", mfr / 1e9);
    }

    #[test]
    fn repetitions_shrink_with_the_work_between_three_and_twenty() {
        assert_eq!(default_reps(1e6, true), 20);
        assert_eq!(default_reps(4e9, true), 5);
        assert_eq!(default_reps(1e12, true), 3);
        assert_eq!(default_reps(4e9, false), 20);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let t = Times {
            warmup: 9.0,
            reps: vec![4.0, 1.0, 3.0, 2.0],
        };
        let r = t.record("step/none", Shape::QUICK, Timer::Wall, None, None);
        assert_eq!((r.ms, r.ms_min, r.ms_max, r.reps), (2.5, 1.0, 4.0, 4));
        assert_eq!(r.steps_per_s, Some(400.0));
        let k = Times {
            warmup: 1.0,
            reps: vec![2.0, 1.0, 3.0],
        }
        .record(ENCODER, Shape::QUICK, Timer::Wall, Some(4e6), None);
        assert_eq!((k.ms, k.gflops, k.steps_per_s), (2.0, Some(2.0), None));
    }
}
