//! The native command line: the only place that blocks on futures (pollster)
//! and talks to the terminal. Everything it runs lives in the library.
//!
//! The CLI is native only: a wasm32 build of this crate is the browser's
//! library (`web.rs`), and this binary compiles there to an empty `main`.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use clap::{Args, Parser, Subcommand, ValueEnum};
    use indicatif::{ProgressBar, ProgressStyle};
    use mfr_sae::bench;
    use mfr_sae::checkpoint::{self, Checkpoint};
    use mfr_sae::data::synthetic::{Generator, PaperConfig, SharkeyConfig, SyntheticConfig};
    use mfr_sae::error::Error;
    use mfr_sae::experiment::{self, Preset};
    use mfr_sae::export;
    use mfr_sae::gpu::Gpu;
    use mfr_sae::kernels::matmul_cache;
    use mfr_sae::kernels::{KernelOptions, Kernels, MatmulVariant, MmcsForm};
    use mfr_sae::mfr::MfrConfig;
    use mfr_sae::model::{Activation, Architecture, AuxK, SaeConfig};
    use mfr_sae::train::{self, DataConfig, EnsembleConfig, FileConfig, LogRecord, ReinitConfig, RunDir, TrainConfig};
    use mfr_sae::Result;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Parser)]
    #[command(
        name = "mfr-sae",
        version,
        about = "Sparse autoencoders with Mutual Feature Regularization on any GPU (wgpu/WGSL)",
        long_about = "Trains sparse autoencoders (SAEs) with Mutual Feature Regularization \
    (Marks et al., arXiv:2411.01220) as WGSL compute shaders on any Vulkan, Metal, DX12 or GL adapter.\n\n\
    Try: `mfr-sae info`, `mfr-sae train`, `mfr-sae experiment synthetic --preset quick --seeds 3`.",
        after_help = "Exit codes: 0 success; 1 an error (the message names the value); 2 a usage error \
    (an unknown flag or a bad value); 128 + N a run stopped by signal N (130 Ctrl-C, 143 SIGTERM) after \
    checkpointing: continue it with the same command and --resume."
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
        /// Matmul variant for every product: `register` (CPU drivers), `texture` (llvmpipe;
        /// operands with rows of a multiple of 64 values, others fall back) or `tiled` (GPUs).
        /// Overrides MFR_SAE_MATMUL, which overrides a cached tune (`info --tune`), which
        /// overrides the device type's default.
        #[arg(long, global = true, value_name = "VARIANT")]
        matmul: Option<MatmulVariant>,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Print the GPU adapter (name, backend, device type, driver) and the limits in use.
        Info {
            /// Print JSON instead of text.
            #[arg(long)]
            json: bool,
            /// Time the matmul variants on this adapter (~2 s on a CPU adapter) and cache the
            /// winners for later runs (in $XDG_CACHE_HOME/mfr-sae or ~/.cache/mfr-sae).
            #[arg(long)]
            tune: bool,
        },
        /// Train an ensemble of SAEs (with MFR when λ > 0) and write a run folder.
        Train(Box<TrainArgs>),
        /// Reproduce one of the paper's experiments: baseline (λ = 0) against MFR.
        #[command(subcommand)]
        Experiment(ExperimentCommand),
        /// Draw SVG figures from experiment summaries: λ (log axis) against truth recovery, the
        /// loss and dead latents with ±sd error bars, one series per summary (e.g. one summary per
        /// MMCS form), and training curves per arm from the run folders beside each summary.
        Plot(PlotArgs),
        /// Time the whole ensemble step (no MFR, MFR match, MFR max) and its dominant products at the
        /// paper's shapes on this adapter.
        Bench(BenchArgs),
        /// Re-export a run folder's SAEs (from its checkpoint, or another checkpoint file) for SAELens.
        Export(ExportCommandArgs),
    }

    #[derive(Args)]
    struct ExportCommandArgs {
        /// The run folder (its config.json; its checkpoint/ unless --checkpoint is given).
        run: PathBuf,
        /// A one-file checkpoint (a checkpoint/tensors.safetensors, or the page's download) of
        /// this run's configuration, instead of the run folder's checkpoint.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// Folder for sae-<n>/ and held_out.npy (default: RUN/saelens, replacing its files).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        export: ExportArgs,
    }

    /// How a run's SAEs are written for SAELens (ARCHITECTURE.md §4). The hook metadata
    /// comes from these flags, else the data file's sidecar FILE.json (its `saelens`
    /// object), else an earlier export in the same folder.
    #[derive(Args)]
    struct ExportArgs {
        /// Float format of the exported weights.
        #[arg(long, default_value = "float32", value_name = "float32|float16|bfloat16")]
        dtype: export::ExportDtype,
        /// The TransformerLens model the activations came from (SAELens metadata.model_name), e.g. gpt2.
        #[arg(long)]
        model_name: Option<String>,
        /// The TransformerLens hook (metadata.hook_name), e.g. blocks.0.hook_mlp_out; without one,
        /// HookedSAETransformer.add_sae attaches nothing.
        #[arg(long)]
        hook_name: Option<String>,
        /// Tokens per context window of the activations (metadata.context_size).
        #[arg(long)]
        context_size: Option<usize>,
        /// Whether each window started with a BOS token (metadata.prepend_bos).
        #[arg(long, value_name = "true|false")]
        prepend_bos: Option<bool>,
    }

    #[derive(Args)]
    #[command(
        after_help = "Steps are wall time per step (each waited for); kernels use GPU timestamps where \
    the adapter has TIMESTAMP_QUERY, else wall time. Times are the median over --reps calls after one \
    warm-up call. On a software adapter, calls estimated above 250 GFLOP (gpt2's MFR steps) are skipped \
    and listed; --no-skip runs them."
    )]
    struct BenchArgs {
        /// quick (d 64, m 128, k 8, N 2, B 512), synthetic (d 256, m 512, k 32, N 2, B 1024),
        /// eeg (d 1792, m 512, k 6, N 5, B 1024), gpt2 (d 768, m 3072, k 6, N 10, B 500) or all.
        /// Default: quick, or none with --sweep.
        #[arg(long, value_enum)]
        shape: Option<BenchShapeArg>,
        /// Batch size B for the chosen shapes (e.g. the paper's synthetic 10000).
        #[arg(long)]
        batch: Option<usize>,
        /// Timed calls per measurement (default: 3 to 20, fewer for bigger shapes).
        #[arg(long)]
        reps: Option<u32>,
        /// Print one JSON document (progress goes to stderr).
        #[arg(long)]
        json: bool,
        /// Sweep m over 256…4096 at k 32 and k over 8…256 at m 1024 (d 256, B 1024, N 2, λ 0): the
        /// step, the encoder product and the step minus its N encoder products.
        #[arg(long)]
        sweep: bool,
        /// Steps to time, comma-separated: none (λ 0), match, max.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "none,match,max")]
        forms: Vec<BenchFormArg>,
        /// Only the step without MFR (same as --forms none).
        #[arg(long, conflicts_with = "forms")]
        no_mfr: bool,
        /// Parts to run, comma-separated: steps, encoder, similarity.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "steps,encoder,similarity")]
        parts: Vec<BenchPartArg>,
        /// Run on a software adapter what would be skipped as too slow.
        #[arg(long)]
        no_skip: bool,
        /// After timing each step, replay its recorded dispatches, each in its own compute pass
        /// with GPU timestamps (wall time per dispatch without TIMESTAMP_QUERY), and print per
        /// kernel its dispatches per step, GPU ms per step and share of the kernels' sum, beside
        /// the step's wall time; wall − Σ kernels is the per-dispatch overhead.
        #[arg(long)]
        profile: bool,
        /// Record each SAE's step by itself even where the ensemble would stack them (one
        /// dispatch per kernel for all N SAEs), to time what stacking saves.
        #[arg(long)]
        unstacked: bool,
    }

    #[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
    enum BenchShapeArg {
        Quick,
        Synthetic,
        Eeg,
        Gpt2,
        All,
    }

    #[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
    enum BenchFormArg {
        None,
        Match,
        Max,
    }

    #[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
    enum BenchPartArg {
        Steps,
        Encoder,
        Similarity,
    }

    #[derive(Args)]
    struct PlotArgs {
        /// summary.json files of `mfr-sae experiment` (synthetic or real-data).
        #[arg(required = true)]
        summaries: Vec<PathBuf>,
        /// Legend labels, comma-separated, one per summary (default: each summary's MMCS form).
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
        /// Output folder for the SVG files.
        #[arg(long)]
        out: PathBuf,
    }

    #[derive(Subcommand)]
    enum ExperimentCommand {
        /// The synthetic experiment: SAEs on data with known features, over seeds and λ.
        Synthetic(SyntheticArgs),
        /// The EEG experiment: SAEs on preprocessed EEG segments (EDF/EDF+), scored on held-out time.
        Eeg(EegArgs),
        /// The transformer-activation experiment: SAEs on LM activations (.npy or .safetensors [N, d]).
        Activations(ActivationArgs),
    }

    #[derive(Args)]
    struct RealArgs {
        #[arg(long, value_enum, default_value = "quick")]
        preset: Preset,
        /// How many seeds (S..S+N, S = --first-seed); each seeds the initial weights and the data
        /// or batch order (default: the preset's, quick 3, paper 5).
        #[arg(long)]
        seeds: Option<u64>,
        /// The first of the seeds (seeds S..S+N): a replication on seeds no earlier run used.
        #[arg(long, default_value_t = 0, value_name = "S")]
        first_seed: u64,
        /// λ values, comma-separated; 0 is the baseline. Default: the preset's (quick: 0 and the
        /// paper's λ; paper: a sweep from 0).
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        lambdas: Vec<f32>,
        #[arg(long, value_enum)]
        form: Option<MmcsForm>,
        /// BatchTopK instead of the preset's TopK, with the same k (on average per row): held-out
        /// rows are scored with JumpReLU at the threshold estimated during training.
        #[arg(long)]
        batch_topk: bool,
        /// AuxK (Gao et al. 2024) on every SAE: dead latents learn to reconstruct the residual
        /// (k_aux = d/2 of the data, coefficient 1/32); the presets have it off.
        #[arg(long)]
        auxk: bool,
        /// AuxK: rows without firing after which a latent is dead (Gao: 10M; short runs need
        /// fewer, e.g. a few batches' worth).
        #[arg(long, default_value_t = 10_000_000.0, value_name = "ROWS", requires = "auxk")]
        dead_after: f64,
        /// Override the preset's step count.
        #[arg(long)]
        steps: Option<u64>,
        /// Override the preset's batch size (rows a step).
        #[arg(long)]
        batch: Option<usize>,
        /// Override the preset's number of SAEs per ensemble N (the λ = 0 baseline gets the same N).
        #[arg(long, value_name = "N")]
        n: Option<usize>,
        /// Override the preset's log interval in steps (the training curves' resolution).
        #[arg(long)]
        log_every: Option<u64>,
        /// Output folder (default: runs/<experiment>-<preset>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue an interrupted experiment (run with the same flags): runs with a checkpoint
        /// continue from it, finished ones give back their result, the others start.
        #[arg(long)]
        resume: bool,
        /// Per run: a checkpoint at the first log step at least this many steps after the last
        /// one, and at its end. Ctrl-C or SIGTERM checkpoints the current run and exits.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        checkpoint_every: u64,
        /// Replace an earlier experiment's outputs in the output folder (else such a folder is refused).
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Print the summary as one JSON document on stdout (progress and log lines go to stderr).
        #[arg(long)]
        json: bool,
    }

    #[derive(Args)]
    struct SyntheticArgs {
        /// The data generator (default: the paper's); `sharkey` keeps the preset's d and number
        /// of true features.
        #[arg(long, value_enum)]
        generator: Option<Generator>,
        #[command(flatten)]
        common: RealArgs,
    }

    #[derive(Args)]
    struct EegArgs {
        /// An EDF/EDF+ recording (default: the shipped UCI EEG Eye State sample, 14 channels, 128 Hz).
        #[arg(long, default_value = "web/samples/eeg/eyes_open_shut.edf")]
        data: PathBuf,
        /// Segment stride in samples (default: the preset's; the segment length = non-overlapping).
        #[arg(long)]
        stride: Option<usize>,
        /// Denoising: Gaussian + blink-, line- and muscle-like noise on the input, the clean segment as target.
        #[arg(long)]
        denoise: bool,
        /// The fraction of the training part kept back as validation rows, whose MSE decides when
        /// a run stops under the preset's convergence rule (default: the preset's, paper 0.1,
        /// quick 0 = none).
        #[arg(long, value_name = "F")]
        validation: Option<f64>,
        #[command(flatten)]
        common: RealArgs,
    }

    #[derive(Args)]
    struct ActivationArgs {
        /// A .npy (f32/f16, C order, [N, d]) or .safetensors file of activations.
        #[arg(long)]
        data: PathBuf,
        /// The tensor to read from a .safetensors file with several.
        #[arg(long)]
        tensor: Option<String>,
        /// Keep the activations' own scale (default: mean row norm scaled to √d).
        #[arg(long)]
        no_normalise: bool,
        /// The fraction of the training part kept back as validation rows, whose MSE decides when
        /// a run stops under the preset's convergence rule (default: the preset's, paper 0.1,
        /// quick 0 = none).
        #[arg(long, value_name = "F")]
        validation: Option<f64>,
        #[command(flatten)]
        common: RealArgs,
    }

    #[derive(Args)]
    struct TrainArgs {
        /// A JSON file holding {"data": …, "ensemble": …}, as in a run folder's config.json.
        /// When given, the flags below (except --out) are ignored.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run folder for config.json, metrics.jsonl, events.jsonl, summary.json and checkpoint/.
        #[arg(long, default_value = "runs/train")]
        out: PathBuf,
        /// Continue the run in this folder from its checkpoint (or from its start if it has
        /// none yet), with the folder's config.json; every flag but --checkpoint-every is
        /// ignored. The result is the same, byte for byte, as a run never interrupted.
        #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "data_file"])]
        resume: Option<PathBuf>,
        /// Write a checkpoint (weights, Adam state, data position, RNG streams, matchings)
        /// at the first log step at least this many steps after the last one, and at the end.
        /// Ctrl-C or SIGTERM finishes the log window, checkpoints and exits; a second one
        /// exits at once (the last checkpoint stays).
        #[arg(long, default_value_t = 1000, value_name = "N")]
        checkpoint_every: u64,
        /// Replace an earlier run's outputs in --out (config, metrics, events, summary, saelens/,
        /// checkpoint/) instead of refusing the folder.
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Train on activations streamed from a .npy / .safetensors file [N, d] instead of
        /// synthetic data (d is taken from the file).
        #[arg(long)]
        data_file: Option<PathBuf>,
        /// The tensor to read from a .safetensors file with several.
        #[arg(long)]
        tensor: Option<String>,
        /// With --data-file: keep the activations' own scale (default: mean row norm √d).
        #[arg(long)]
        no_normalise: bool,
        /// With --data-file: rows held by the shuffling buffer.
        #[arg(long, default_value_t = 65_536)]
        shuffle_rows: usize,
        /// Synthetic data generator.
        #[arg(long, value_enum, default_value = "paper")]
        data: Generator,
        /// Input width d.
        #[arg(long, default_value_t = 64)]
        d: usize,
        /// Number of true features.
        #[arg(long, default_value_t = 128)]
        features: usize,
        /// paper generator: groups and features per group.
        #[arg(long, default_value_t = 6)]
        groups: usize,
        #[arg(long, default_value_t = 20)]
        group_size: usize,
        /// paper generator: features active per point.
        #[arg(long, default_value_t = 8)]
        active: usize,
        /// sharkey generator: mean number of active features per point.
        #[arg(long, default_value_t = 5.0)]
        mean_active: f64,
        #[arg(long, value_enum, default_value = "tied")]
        arch: Architecture,
        /// Latents kept per row (TopK; BatchTopK: on average, batch·k over the batch).
        #[arg(long, default_value_t = 8)]
        k: usize,
        /// Per-SAE k, comma-separated (one per SAE).
        #[arg(long, value_delimiter = ',')]
        ks: Vec<usize>,
        /// Use ReLU + L1 with this coefficient instead of TopK.
        #[arg(long, allow_negative_numbers = true)]
        l1: Option<f32>,
        /// Use BatchTopK instead of TopK (Bussmann et al. 2024): training keeps the batch·k
        /// largest pre-activations of the whole batch; the export and held-out scores use
        /// JumpReLU at the threshold estimated during training.
        #[arg(long, conflicts_with = "l1")]
        batch_topk: bool,
        /// TopK without the ReLU, as the paper's reference code.
        #[arg(long)]
        paper_exact: bool,
        /// Number of SAEs N.
        #[arg(long, default_value_t = 2)]
        n: usize,
        /// Dictionary size m.
        #[arg(long, default_value_t = 128)]
        m: usize,
        /// MFR weight λ (0: independent SAEs).
        #[arg(long, default_value_t = 3.0, allow_negative_numbers = true)]
        lambda: f32,
        /// MFR cosine ramp-up steps.
        #[arg(long, default_value_t = 100)]
        warmup: u64,
        /// Which MMCS the penalty uses (default: the authors' final one-to-one matching).
        #[arg(long, value_enum, default_value = "match")]
        form: MmcsForm,
        /// --form match: steps between recomputations of the optimal matching (a constant in between).
        #[arg(long, default_value_t = 100)]
        match_every: u64,
        #[arg(long, default_value_t = 1e-2, allow_negative_numbers = true)]
        lr: f32,
        /// Per-SAE learning rates, comma-separated.
        #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
        lrs: Vec<f32>,
        /// Linear learning-rate warm-up steps and decay-to-zero steps at the end.
        #[arg(long, default_value_t = 0)]
        lr_warmup: u64,
        #[arg(long, default_value_t = 0)]
        lr_decay: u64,
        #[arg(long, default_value_t = 512)]
        batch: usize,
        #[arg(long, default_value_t = 600)]
        steps: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Read metrics back every this many steps.
        #[arg(long, default_value_t = 100)]
        log_every: u64,
        /// Re-initialise an SAE whose firing statistic exceeds --reinit-threshold (reference code).
        #[arg(long)]
        reinit: bool,
        #[arg(long, default_value_t = 2.5)]
        reinit_threshold: f32,
        /// AuxK (Gao et al. 2024): dead latents learn to reconstruct the residual.
        #[arg(long)]
        auxk: bool,
        /// AuxK: dead latents kept per row (default d/2).
        #[arg(long)]
        k_aux: Option<usize>,
        /// AuxK: weight of the auxiliary loss.
        #[arg(long, default_value_t = 1.0 / 32.0)]
        aux_coef: f32,
        /// AuxK: tokens without firing after which a latent is dead (Gao: 10M; lower it for short runs).
        #[arg(long, default_value_t = 10_000_000.0)]
        dead_after: f64,
        #[command(flatten)]
        export: ExportArgs,
    }

    /// Set by the first SIGINT or SIGTERM; runs checkpoint at their next log step and stop.
    static STOP: AtomicBool = AtomicBool::new(false);
    /// The signal that set `STOP`.
    static SIGNAL: AtomicUsize = AtomicUsize::new(0);

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        MATMUL_FLAG.get_or_init(|| cli.matmul);
        if matches!(cli.command, Command::Train(_) | Command::Experiment(_)) {
            if let Err(e) = stop_on_signals() {
                return exit(Err(e));
            }
        }
        let result = match cli.command {
            Command::Train(args) => return exit(pollster::block_on(train_command(*args))),
            Command::Info { json, tune } => pollster::block_on(info(json, tune)),
            Command::Experiment(ExperimentCommand::Synthetic(args)) => pollster::block_on(synthetic(args)),
            Command::Experiment(ExperimentCommand::Eeg(args)) => pollster::block_on(eeg(args)),
            Command::Bench(args) => pollster::block_on(bench(args)),
            Command::Plot(args) => plot(args),
            Command::Experiment(ExperimentCommand::Activations(args)) => pollster::block_on(activations(args)),
            Command::Export(args) => export_command(args),
        };
        exit(result.map(|()| ExitCode::SUCCESS))
    }

    fn exit(result: Result<ExitCode>) -> ExitCode {
        result.unwrap_or_else(|e| match e {
            Error::Stopped(m) => {
                eprintln!("{m}. Continue with the same command and --resume");
                stopped_code()
            }
            e => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        })
    }

    /// 128 + the signal that stopped the run, as shells report a signal's end.
    fn stopped_code() -> ExitCode {
        ExitCode::from((128 + SIGNAL.load(Ordering::SeqCst)).min(255) as u8)
    }

    /// The `--matmul` flag, set once at start-up (the kernels are built deep in each command).
    static MATMUL_FLAG: std::sync::OnceLock<Option<MatmulVariant>> = std::sync::OnceLock::new();

    /// The kernel choices for this run: `--matmul`, else `MFR_SAE_MATMUL`, and the cached tune
    /// for this adapter (an unreadable cache is reported and ignored).
    fn kernel_options(gpu: &Gpu) -> Result<KernelOptions> {
        let env = match std::env::var("MFR_SAE_MATMUL") {
            Ok(v) if !v.is_empty() => Some(
                v.parse::<MatmulVariant>()
                    .map_err(|e| Error::Config(format!("MFR_SAE_MATMUL: {e}")))?,
            ),
            _ => None,
        };
        let tuned = matmul_cache::dir().and_then(|dir| {
            matmul_cache::load(&dir, &gpu.report).unwrap_or_else(|e| {
                eprintln!("warning: {e}; using the default matmul variants");
                None
            })
        });
        Ok(KernelOptions {
            matmul: MATMUL_FLAG.get().copied().flatten().or(env),
            tuned,
            sparse_width: None,
            textures: None,
        })
    }

    fn kernels(gpu: &Gpu) -> Result<Kernels> {
        Kernels::with_options(gpu, kernel_options(gpu)?)
    }

    async fn info(json: bool, tune: bool) -> Result<()> {
        let gpu = Gpu::new().await?;
        if tune {
            let clock = std::time::Instant::now();
            let now = || clock.elapsed().as_secs_f64();
            let shape = mfr_sae::kernels::TUNE_SHAPE;
            let t = mfr_sae::kernels::autotune_matmul(&gpu, &Kernels::new(&gpu)?, shape, &now).await?;
            let dir = matmul_cache::dir()
                .ok_or_else(|| Error::Config("no cache folder: set XDG_CACHE_HOME or HOME".into()))?;
            let path = matmul_cache::save(&dir, &gpu.report, &t)?;
            let (m, k, n) = t.shape;
            eprintln!("matmul tune ({m}×{k}×{n}, GFLOP/s) written to {}:", path.display());
            for ((a, b), row) in mfr_sae::kernels::SHAPE_CLASSES.iter().zip(&t.gflops) {
                let cells: Vec<String> = MatmulVariant::ALL
                    .iter()
                    .zip(row)
                    .map(|(v, g)| format!("{v} {g:.2}"))
                    .collect();
                eprintln!("  {a:?}{b:?}: {}", cells.join(", "));
            }
        }
        let kernels = kernels(&gpu)?;
        let r = &gpu.report;
        if json {
            #[derive(serde::Serialize)]
            struct Info<'a> {
                #[serde(flatten)]
                adapter: &'a mfr_sae::gpu::AdapterReport,
                matmul: &'a mfr_sae::kernels::MatmulChoice,
            }
            let info = Info {
                adapter: r,
                matmul: kernels.matmul_choice(),
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&info).expect("the report serialises")
            );
            return Ok(());
        }
        println!("adapter      {}", r.name);
        println!("backend      {}", r.backend);
        println!(
            "device type  {}{}",
            r.device_type,
            if r.is_software {
                " (software: correct but slow)"
            } else {
                ""
            }
        );
        println!("driver       {} {}", r.driver, r.driver_info);
        println!("matmul       {}", kernels.matmul_choice());
        let l = &r.limits;
        println!("limits in use:");
        println!(
            "  max storage binding      {} MiB",
            l.max_storage_buffer_binding_size >> 20
        );
        println!("  max buffer               {} MiB", l.max_buffer_size >> 20);
        println!(
            "  workgroup storage        {} KiB",
            l.max_compute_workgroup_storage_size >> 10
        );
        println!("  invocations / workgroup  {}", l.max_compute_invocations_per_workgroup);
        println!("  storage buffers / stage  {}", l.max_storage_buffers_per_shader_stage);
        println!("  workgroups / dimension   {}", l.max_compute_workgroups_per_dimension);
        println!("training step path: {}", mfr_sae::model::StepPath::rule());
        println!(
            "ensemble step: stacked (one dispatch per kernel for all N SAEs) for N ≥ 2 tied TopK SAEs \
             of one shape on the sparse path (AuxK or not) whose slices this adapter binds \
             (offsets a multiple of {} bytes), else one SAE at a time",
            l.min_storage_buffer_offset_alignment
        );
        if let Some(p) = mfr_sae::model::StepPath::from_env()? {
            println!("  forced by the environment: {p:?}");
        }
        Ok(())
    }

    fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
        if let Some(path) = &a.config {
            let io = |message: String| Error::Io {
                path: path.display().to_string(),
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
            let mut cfg: TrainConfig =
                serde_json::from_str(&text).map_err(|e| io(format!("not a training config: {e}")))?;
            // A relative data file is relative to the config file's folder, not to where one runs from.
            if let DataConfig::File(f) = &mut cfg.data {
                let file = Path::new(&f.file);
                if file.is_relative() {
                    let base = path.parent().unwrap_or(Path::new("."));
                    let joined = std::path::absolute(base.join(file)).map_err(|e| io(e.to_string()))?;
                    f.file = joined.display().to_string();
                }
            }
            return Ok(cfg);
        }
        let (data, d) = match &a.data_file {
            Some(path) => {
                let (file, d) = FileConfig::open(path, a.tensor.clone(), !a.no_normalise, a.shuffle_rows)?;
                (DataConfig::File(file), d)
            }
            None => (DataConfig::Synthetic(synthetic_config(a)), a.d),
        };
        let activation = match (a.l1, a.batch_topk) {
            (Some(l1), _) => Activation::ReluL1 { l1 },
            (None, true) => Activation::BatchTopK { k: a.k },
            (None, false) => Activation::TopK { k: a.k },
        };
        let sae = SaeConfig {
            paper_exact: a.paper_exact,
            auxk: a.auxk.then(|| AuxK {
                k_aux: a.k_aux.unwrap_or(AuxK::gao(d).k_aux),
                coef: a.aux_coef,
                dead_after_tokens: a.dead_after,
            }),
            ..SaeConfig::new(a.arch, activation, d, a.m, a.batch, a.lr)
        };
        let mfr = MfrConfig {
            lambda: a.lambda,
            warmup_steps: a.warmup,
            form: a.form,
            match_every: a.match_every,
        };
        let ensemble = EnsembleConfig {
            k_per_sae: a.ks.clone(),
            lr_per_sae: a.lrs.clone(),
            reinit: a.reinit.then_some(ReinitConfig {
                threshold: a.reinit_threshold,
            }),
            lr_warmup_steps: a.lr_warmup,
            lr_decay_steps: a.lr_decay,
            ..EnsembleConfig::new(sae, a.n, mfr, a.steps, a.log_every, a.seed)
        };
        Ok(TrainConfig { data, ensemble })
    }

    fn synthetic_config(a: &TrainArgs) -> SyntheticConfig {
        match a.data {
            Generator::Paper => SyntheticConfig::Paper(PaperConfig {
                d: a.d,
                n_features: a.features,
                n_groups: a.groups,
                group_size: a.group_size,
                active: a.active,
                ..PaperConfig::default()
            }),
            Generator::Sharkey => SyntheticConfig::Sharkey(SharkeyConfig {
                d: a.d,
                n_features: a.features,
                mean_active: a.mean_active,
                ..SharkeyConfig::default()
            }),
        }
    }

    fn progress_bar(total: u64) -> ProgressBar {
        ProgressBar::new(total).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}")
                .expect("valid template"),
        )
    }

    /// One line per SAE of a log record, on stdout (stderr with `to_stderr`).
    fn print_log(bar: &ProgressBar, label: &str, log: &LogRecord, to_stderr: bool) {
        let emit = |line: String| {
            if to_stderr {
                eprintln!("{line}")
            } else {
                println!("{line}")
            }
        };
        bar.suspend(|| {
            for s in &log.saes {
                let truth = s.truth.map_or(String::new(), |t| {
                    format!("  truth match {:.3} max {:.3} rec {:.2}", t.matched, t.max, t.recovered)
                });
                let others = s
                    .mmcs_match_to_others
                    .map_or(String::new(), |v| format!("  pair MMCS {v:.3}"));
                let aux = if s.window.aux_mse > 0.0 { format!("  aux {:.4}", s.window.aux_mse) } else { String::new() };
                emit(format!(
                    "{label}step {:>6} SAE {}  mse {:.5}  fvu {:.4}  L0 {:.2}  dead {:.1}%  L_mfr {:.4}{aux}{others}{truth}",
                    s.step,
                    s.sae,
                    s.window.mse,
                    s.window.fvu,
                    s.window.l0,
                    100.0 * s.window.dead_fraction,
                    s.mfr_loss
                ));
            }
            for e in &log.events {
                emit(format!("{label}step {:>6} SAE {}  {}: {}", e.step, e.sae, e.kind, e.detail));
            }
        });
        if let Some(s) = log.saes.first() {
            bar.set_message(format!("mse {:.4}  fvu {:.3}", s.window.mse, s.window.fvu));
        }
    }

    /// SIGINT and SIGTERM set `STOP` (the run checkpoints at the end of its log window
    /// and exits) and record which signal in `SIGNAL`; a second one, once `STOP` is
    /// set, exits at once with 128 + its number.
    fn stop_on_signals() -> Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        for sig in [SIGINT, SIGTERM] {
            let registered = signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, &STOP)
                .and_then(|_| signal_hook::flag::register_usize(sig, &SIGNAL, sig as usize))
                .and_then(|_| signal_hook::flag::register(sig, &STOP));
            registered.map_err(|e| Error::Device(format!("cannot install the handler of signal {sig}: {e}")))?;
        }
        Ok(())
    }

    async fn train_command(a: TrainArgs) -> Result<ExitCode> {
        let (cfg, out) = match &a.resume {
            Some(dir) => (run_folder_config(dir)?, dir.clone()),
            None => (train_config(&a)?, a.out.clone()),
        };
        cfg.ensemble.validate()?;
        let config_hash = checkpoint::config_hash(&cfg);
        let resume = match &a.resume {
            Some(dir) => Checkpoint::read(dir, &config_hash)?,
            None => None,
        };
        let gpu = Gpu::new().await?;
        mfr_sae::limits::check(
            &cfg.ensemble,
            cfg.data.true_features(),
            &gpu.report,
            mfr_sae::limits::host_budget(),
        )?;
        let (mut data, scale) = cfg.data.source(cfg.ensemble.seed)?;
        let kernels = kernels(&gpu)?;
        let mut dir = match &a.resume {
            Some(dir) => RunDir::reopen(dir, resume.as_ref().map_or(0, |c| c.step()))?,
            None => {
                if a.overwrite {
                    train::clear_run_outputs(&out)?;
                }
                RunDir::create(&out, &cfg)?
            }
        };
        let weights = match resume {
            Some(_) => Vec::new(),
            None => cfg.ensemble.initial_weights(),
        };
        let bar = progress_bar(cfg.ensemble.steps);
        if let Some(ck) = &resume {
            bar.set_position(ck.step());
            bar.suspend(|| println!("resuming {} at step {}", out.display(), ck.step()));
        }
        let control = train::Control {
            checkpoint_every: a.checkpoint_every,
            config_hash,
            resume,
            stop: Some(&STOP),
            finished: false,
            validate: None,
        };
        let outcome = train::run_with(
            &gpu,
            &kernels,
            &cfg.ensemble,
            &weights,
            data.as_mut(),
            Some(&mut dir),
            &mut |step, log| {
                bar.set_position(step);
                if let Some(log) = log {
                    print_log(&bar, "", log, false);
                }
            },
            control,
        )
        .await?;
        bar.finish_and_clear();
        if let Some(step) = outcome.stopped {
            let sig = SIGNAL.load(Ordering::SeqCst);
            let checkpointed = if a.checkpoint_every > 0 {
                format!("checkpoint written to {}", out.join(checkpoint::DIR).display())
            } else {
                "no checkpoint (--checkpoint-every 0)".to_string()
            };
            eprintln!(
                "stopped by signal {sig} at step {step} of {}; {checkpointed}. Continue with: mfr-sae train --resume {}",
                cfg.ensemble.steps,
                out.display()
            );
            return Ok(stopped_code());
        }
        let (logs, final_weights) = (outcome.logs, outcome.weights);
        let last = logs.last().expect("at least one log");
        dir.write_json("summary.json", last)?;
        let model = model_info(&a.export, &cfg, dir.path())?;
        let saelens = dir.path().join("saelens");
        let steps = Some(cfg.ensemble.steps);
        let warnings = export::write_run(&saelens, &cfg, &final_weights, scale, &model, a.export.dtype, steps)?;
        print_export_warnings(&warnings, &model, &cfg.data);
        println!("run folder: {} (SAELens export under saelens/)", dir.path().display());
        Ok(ExitCode::SUCCESS)
    }

    /// The hook metadata of a run's export: the flags, else the data file's sidecar, else
    /// the folder's earlier export (`ExportArgs`).
    fn model_info(a: &ExportArgs, cfg: &TrainConfig, run: &Path) -> Result<export::ModelInfo> {
        let flags = export::ModelInfo {
            model_name: a.model_name.clone(),
            hook_name: a.hook_name.clone(),
            context_size: a.context_size,
            prepend_bos: a.prepend_bos,
        };
        let sidecar = match &cfg.data {
            DataConfig::File(f) => export::ModelInfo::from_sidecar(Path::new(&f.file))?,
            DataConfig::Synthetic(_) => export::ModelInfo::default(),
        };
        let earlier = std::fs::read_to_string(run.join("saelens").join("sae-0").join("cfg.json"))
            .map(|text| export::ModelInfo::from_cfg_json(&text))
            .unwrap_or_default();
        Ok(flags.or(sidecar).or(earlier))
    }

    /// The export's warnings, and for activations without a hook name, what add_sae will do.
    fn print_export_warnings(warnings: &[(usize, String)], model: &export::ModelInfo, data: &DataConfig) {
        for (n, w) in warnings {
            eprintln!("warning: SAE {n}: {w}");
        }
        if model.hook_name.is_none() && matches!(data, DataConfig::File(_)) {
            eprintln!(
                "note: the SAELens export has no hook_name (no --hook-name, no `saelens` object in the data file's \
                 .json): HookedSAETransformer.add_sae will not attach it until metadata.hook_name is set"
            );
        }
    }

    /// `mfr-sae export`: a run's SAEs, from its (or another) checkpoint, written for SAELens again.
    fn export_command(a: ExportCommandArgs) -> Result<()> {
        let cfg = run_folder_config(&a.run)?;
        let hash = checkpoint::config_hash(&cfg);
        let ck = match &a.checkpoint {
            Some(file) => {
                let bytes = std::fs::read(file).map_err(|e| Error::Io {
                    path: file.display().to_string(),
                    message: e.to_string(),
                })?;
                Checkpoint::from_bytes(&file.display().to_string(), &bytes, Some(&hash))?
            }
            None => Checkpoint::read(&a.run, &hash)?.ok_or_else(|| Error::Io {
                path: a.run.join(checkpoint::DIR).display().to_string(),
                message: "no checkpoint to export from (the run used --checkpoint-every 0, or has not reached \
                          its first checkpoint); give one with --checkpoint FILE"
                    .into(),
            })?,
        };
        let weights = checkpoint::ensemble_weights(&cfg.ensemble, &ck.tensors, "")?;
        let scale = cfg.data.scale()?;
        let model = model_info(&a.export, &cfg, &a.run)?;
        let out = a.out.clone().unwrap_or_else(|| a.run.join("saelens"));
        let warnings = export::write_run(&out, &cfg, &weights, scale, &model, a.export.dtype, Some(ck.step()))?;
        print_export_warnings(&warnings, &model, &cfg.data);
        println!(
            "{} SAEs at step {} of {} exported as {} to {}",
            weights.len(),
            ck.step(),
            cfg.ensemble.steps,
            a.export.dtype.name(),
            out.display()
        );
        Ok(())
    }

    /// The configuration a run folder was started with (its config.json).
    fn run_folder_config(dir: &Path) -> Result<TrainConfig> {
        let path = dir.join("config.json");
        let io = |message: String| Error::Io {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            io(format!(
                "{e}: --resume continues a run folder that `mfr-sae train --out {}` started",
                dir.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| io(format!("not a training config: {e}")))
    }

    async fn synthetic(s: SyntheticArgs) -> Result<()> {
        let a = s.common;
        let (preset, name) = preset(a.preset);
        let mut exp = preset.synthetic();
        if let Some(Generator::Sharkey) = s.generator {
            exp.data = SyntheticConfig::Sharkey(SharkeyConfig {
                d: exp.data.d(),
                n_features: exp.data.n_features(),
                ..SharkeyConfig::default()
            });
        }
        apply_common(
            &a,
            &mut exp.seeds,
            &mut exp.first_seed,
            &mut exp.lambdas,
            &mut exp.ensemble,
        );
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(format!("synthetic-{name}")));
        let gpu = Gpu::new().await?;
        if gpu.report.is_software && preset == Preset::Paper {
            eprintln!(
                "note: {} is a software adapter; the paper preset is meant for GPUs",
                gpu.report.name
            );
        }
        let kernels = kernels(&gpu)?;
        if a.overwrite {
            train::clear_run_outputs(&out)?;
        }
        let total = exp.ensemble.steps * exp.seeds * exp.lambdas.len() as u64;
        let bar = progress_bar(total);
        let summary = experiment::run_synthetic_with(
            &gpu,
            &kernels,
            &exp,
            &out,
            &mut experiment_progress(&bar, a.json),
            &control(&a),
        )
        .await?;
        bar.finish_and_clear();
        print_summary(a.json, &summary, &format!("{}\n", experiment::table(&summary)), &out);
        Ok(())
    }

    fn plot(a: PlotArgs) -> Result<()> {
        if !a.labels.is_empty() && a.labels.len() != a.summaries.len() {
            return Err(Error::Config(format!(
                "--labels has {} labels for {} summaries",
                a.labels.len(),
                a.summaries.len()
            )));
        }
        let series = a
            .summaries
            .iter()
            .enumerate()
            .map(|(i, path)| mfr_sae::plot::Series::read(path, a.labels.get(i).cloned()))
            .collect::<Result<Vec<_>>>()?;
        for path in mfr_sae::plot::plot(&series, &a.out)? {
            println!("{}", path.display());
        }
        Ok(())
    }

    /// An experiment's result on stdout: the summary JSON alone with `--json`, else `text` and
    /// where the summary was written.
    fn print_summary(json: bool, summary: &impl serde::Serialize, text: &str, out: &Path) {
        if json {
            let doc = serde_json::to_string_pretty(summary).expect("the summary serialises");
            println!("{doc}");
        } else {
            print!("{text}");
            println!("summary: {}", out.join("summary.json").display());
        }
    }

    /// The preset and its name as `--preset` spells it (for the default output folder).
    fn preset(p: Preset) -> (Preset, String) {
        let name = p.to_possible_value().map(|v| v.get_name().to_string());
        (p, name.expect("every preset has a flag value"))
    }

    async fn eeg(a: EegArgs) -> Result<()> {
        let (p, name) = preset(a.common.preset);
        let mut exp = p.eeg(&a.data.display().to_string());
        if let experiment::RealData::Eeg { eeg, noise } = &mut exp.read {
            eeg.stride_samples = a.stride.or(eeg.stride_samples);
            eeg.validation_fraction = a.validation.unwrap_or(eeg.validation_fraction);
            if a.denoise {
                *noise = Some(mfr_sae::data::eeg::NoiseConfig::default());
            }
        }
        run_real(exp, a.common, &format!("eeg-{name}")).await.map(|_| ())
    }

    async fn activations(a: ActivationArgs) -> Result<()> {
        let (p, name) = preset(a.common.preset);
        let mut exp = p.activations(&a.data.display().to_string());
        if let experiment::RealData::Activations {
            tensor,
            normalise,
            validation_fraction,
            ..
        } = &mut exp.read
        {
            *tensor = a.tensor;
            *normalise = !a.no_normalise;
            *validation_fraction = a.validation.unwrap_or(*validation_fraction);
        }
        let json = a.common.json;
        let out = run_real(exp, a.common, &format!("activations-{name}")).await?;
        // With --json, stdout carries only the summary.
        if made_by_lm_activations(&a.data) && !json {
            println!(
                "downstream (each SAE spliced into SmolLM2, CE on held-out text), in the venv of \
                 scripts/lm_activations.py: python scripts/lm_eval.py {}",
                out.display()
            );
        }
        Ok(())
    }

    /// Whether an activation file is `scripts/lm_activations.py`'s (its `.json` beside it says so), so
    /// that `scripts/lm_eval.py` can splice the SAEs trained on it back into the model.
    fn made_by_lm_activations(data: &Path) -> bool {
        std::fs::read_to_string(data.with_extension("json"))
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|meta| meta["source"] == "scripts/lm_activations.py")
    }

    /// An experiment's progress: a tick per step, and each log record above the bar with its run's label.
    fn experiment_progress(bar: &ProgressBar, json: bool) -> impl FnMut(&str, u64, Option<&LogRecord>) + '_ {
        move |label, _, log| {
            bar.inc(1);
            if let Some(log) = log {
                print_log(bar, &format!("[{label}] "), log, json);
            }
        }
    }

    /// An experiment's checkpointing, from its flags and the signal flag.
    fn control(a: &RealArgs) -> experiment::Control<'static> {
        experiment::Control {
            checkpoint_every: a.checkpoint_every,
            resume: a.resume,
            stop: Some(&STOP),
        }
    }

    /// The flags every experiment shares: seeds, λ list, MMCS form, activation and step count.
    fn apply_common(
        a: &RealArgs,
        seeds: &mut u64,
        first_seed: &mut u64,
        lambdas: &mut Vec<f32>,
        ensemble: &mut EnsembleConfig,
    ) {
        *seeds = a.seeds.unwrap_or(*seeds);
        *first_seed = a.first_seed;
        if !a.lambdas.is_empty() {
            *lambdas = a.lambdas.clone();
        }
        if let Some(f) = a.form {
            ensemble.mfr.form = f;
        }
        if let (true, Some(k)) = (a.batch_topk, ensemble.sae.activation.k()) {
            ensemble.sae.activation = Activation::BatchTopK { k };
        }
        if a.auxk {
            // Real data's width is known once its file is read: until then k_aux 0 stands for
            // Gao's d/2 (`experiment::run_real_with` sets it).
            let k_aux = match ensemble.sae.d_in {
                0 => 0,
                d => AuxK::gao(d).k_aux,
            };
            ensemble.sae.auxk = Some(AuxK {
                k_aux,
                dead_after_tokens: a.dead_after,
                ..AuxK::gao(1)
            });
        }
        if let Some(steps) = a.steps {
            ensemble.steps = steps;
        }
        if let Some(batch) = a.batch {
            ensemble.sae.batch = batch;
        }
        if let Some(n) = a.n {
            ensemble.n_saes = n;
        }
        if let Some(log_every) = a.log_every {
            ensemble.log_every = log_every;
        }
    }

    /// Runs a real-data experiment and prints its table; returns its output folder.
    async fn run_real(mut exp: experiment::RealExperiment, a: RealArgs, default_out: &str) -> Result<PathBuf> {
        apply_common(
            &a,
            &mut exp.seeds,
            &mut exp.first_seed,
            &mut exp.lambdas,
            &mut exp.ensemble,
        );
        if let Some(steps) = a.steps {
            // The real-data presets log three times a run, and count steps, not epochs, once given.
            let logs = if exp.convergence.is_some() {
                experiment::CONVERGENCE_LOGS
            } else {
                3
            };
            exp.ensemble.log_every = a.log_every.unwrap_or((steps / logs).max(1));
            exp.epochs = None;
        }
        let out = a.out.clone().unwrap_or_else(|| Path::new("runs").join(default_out));
        let gpu = Gpu::new().await?;
        let kernels = kernels(&gpu)?;
        if a.overwrite {
            train::clear_run_outputs(&out)?;
        }
        // The step count can depend on the data (epochs), so the bar counts without a length.
        let bar = ProgressBar::no_length()
            .with_style(ProgressStyle::with_template("{pos} steps  {per_sec}  {msg}").expect("valid template"));
        let summary = experiment::run_real_with(
            &gpu,
            &kernels,
            &exp,
            &out,
            &mut experiment_progress(&bar, a.json),
            &control(&a),
        )
        .await?;
        bar.finish_and_clear();
        let text = format!("data: {}\n{}", summary.data, experiment::real_table(&summary));
        print_summary(a.json, &summary, &text, &out);
        Ok(out)
    }

    fn bench_config(a: &BenchArgs) -> Result<bench::Config> {
        use bench::{Shape, StepKind};
        let mut shapes = match a.shape {
            None if a.sweep => vec![],
            None | Some(BenchShapeArg::Quick) => vec![Shape::QUICK],
            Some(BenchShapeArg::Synthetic) => vec![Shape::SYNTHETIC],
            Some(BenchShapeArg::Eeg) => vec![Shape::EEG],
            Some(BenchShapeArg::Gpt2) => vec![Shape::GPT2],
            Some(BenchShapeArg::All) => Shape::ALL.to_vec(),
        };
        if let Some(batch) = a.batch {
            if batch == 0 {
                return Err(Error::Config("--batch must be at least 1".into()));
            }
            shapes.iter_mut().for_each(|s| *s = s.with_batch(batch));
        }
        if a.reps == Some(0) {
            return Err(Error::Config("--reps must be at least 1".into()));
        }
        let forms = if a.no_mfr { &[BenchFormArg::None][..] } else { &a.forms };
        let steps = forms
            .iter()
            .map(|f| match f {
                BenchFormArg::None => StepKind::NoMfr,
                BenchFormArg::Match => StepKind::Mfr(MmcsForm::Match),
                BenchFormArg::Max => StepKind::Mfr(MmcsForm::Max),
            })
            .collect();
        let part = |p| a.parts.contains(&p);
        Ok(bench::Config {
            shapes,
            steps: if part(BenchPartArg::Steps) { steps } else { vec![] },
            encoder: part(BenchPartArg::Encoder),
            similarity: part(BenchPartArg::Similarity),
            sweep: a.sweep,
            reps: a.reps,
            no_skip: a.no_skip,
            profile: a.profile,
            unstacked: a.unstacked,
        })
    }

    async fn bench(a: BenchArgs) -> Result<()> {
        let cfg = bench_config(&a)?;
        let gpu = Gpu::new().await?;
        let kernels = kernels(&gpu)?;
        let origin = std::time::Instant::now();
        let clock = move || origin.elapsed().as_secs_f64() * 1e3;
        let report = bench::run(&gpu, &kernels, &cfg, &clock, &mut |line| eprintln!("{line}")).await?;
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).expect("the report serialises")
            );
        } else {
            print_bench(&report);
        }
        Ok(())
    }

    fn print_bench(r: &bench::Report) {
        let a = &r.adapter;
        println!(
            "adapter   {} ({}, {}, driver {} {})",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
        let timer = match r.kernel_timer {
            bench::Timer::GpuTimestamps => "GPU timestamps (TIMESTAMP_QUERY) around one pass per call",
            bench::Timer::Wall => "wall time, submit to queue done (no TIMESTAMP_QUERY)",
        };
        println!("timing    steps: wall time per step, each waited for; kernels: {timer}; median over reps after a warm-up call");
        for (what, variant) in &r.kernels {
            println!("kernels   {what}: {variant}");
        }
        let (main, sweep): (Vec<_>, Vec<_>) = r.results.iter().partition(|x| x.shape.name != "sweep");
        if !main.is_empty() {
            println!();
            println!(
                "{:<10} {:>5} {:>5} {:>4} {:>3} {:>6}  {:<19} {:>10} {:>9} {:>9} {:>5}  variant",
                "shape", "d", "m", "k", "N", "B", "measurement", "ms", "steps/s", "GFLOP/s", "reps"
            );
            for x in main {
                let s = &x.shape;
                let opt = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
                println!(
                    "{:<10} {:>5} {:>5} {:>4} {:>3} {:>6}  {:<19} {:>10.3} {:>9} {:>9} {:>5}  {}",
                    s.name,
                    s.d,
                    s.m,
                    s.k,
                    s.n_saes,
                    s.batch,
                    x.name,
                    x.ms,
                    opt(x.steps_per_s, 2),
                    opt(x.gflops, 2),
                    x.reps,
                    x.variant.as_deref().unwrap_or("-")
                );
            }
        }
        if !sweep.is_empty() {
            println!();
            println!("sweep (d 256, B 1024, N 2, λ 0), ms: the step, one encoder product, step − N encoder products");
            println!("{:>5} {:>4} {:>10} {:>10} {:>10}", "m", "k", "step", "encoder", "rest");
            for chunk in sweep.chunks(3) {
                if let [step, enc, rest] = chunk {
                    let s = &step.shape;
                    println!(
                        "{:>5} {:>4} {:>10.3} {:>10.3} {:>10.3}",
                        s.m, s.k, step.ms, enc.ms, rest.ms
                    );
                }
            }
        }
        for p in &r.profiles {
            let s = &p.shape;
            println!();
            println!(
                "profile   {} {} (d {} m {} k {} N {} B {}, {}): wall {:.3} ms, Σ kernels {:.3} ms over {} dispatches, \
                 overhead {:.3} ms; mean of {} replays",
                s.name,
                p.name,
                s.d,
                s.m,
                s.k,
                s.n_saes,
                s.batch,
                p.variant.as_deref().unwrap_or("-"),
                p.step_wall_ms,
                p.kernels_ms,
                p.dispatches,
                p.overhead_ms,
                p.reps
            );
            println!("{:<32} {:>6} {:>10} {:>7}", "kernel", "count", "ms", "share");
            for k in &p.kernels {
                println!(
                    "{:<32} {:>6} {:>10.3} {:>6.1}%",
                    k.kernel,
                    k.count,
                    k.ms,
                    100.0 * k.share
                );
            }
        }
        for s in &r.skipped {
            println!("skipped   {} {}: {}", s.shape.name, s.name, s.reason);
        }
        if let Some(g) = r.encoder_matmul_gflops {
            println!("encoder product at the synthetic shape (B 1024 × d 256 × m 512): {g:.2} GFLOP/s");
        }
    }
}
