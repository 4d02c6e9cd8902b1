//! The native command line: the only place that blocks on futures (pollster)
//! and talks to the terminal. Everything it runs lives in the library.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mfr_sae::gpu::Gpu;
use mfr_sae::kernels::{AdamHyper, Kernels};
use mfr_sae::rng::Rng;
use mfr_sae::sae::{Activation, Architecture, GpuSae, SaeConfig, SaeWeights};
use mfr_sae::Result;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mfr-sae",
    version,
    about = "Sparse autoencoders with Mutual Feature Regularization on any GPU (wgpu/WGSL)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the GPU adapter (name, backend, device type, driver) and the limits in use.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Train one SAE on random sparse data and print its metrics.
    Train(TrainArgs),
}

#[derive(clap::Args)]
struct TrainArgs {
    /// SAE layout: `tied` (the paper's) or `standard` (SAELens).
    #[arg(long, default_value = "tied", value_parser = ["tied", "standard"])]
    arch: String,
    /// Latents kept per row (TopK). Ignored with --l1.
    #[arg(long, default_value_t = 8)]
    k: usize,
    /// Use ReLU + L1 with this coefficient instead of TopK.
    #[arg(long, allow_negative_numbers = true)]
    l1: Option<f32>,
    /// Input width d.
    #[arg(long, default_value_t = 64)]
    d: usize,
    /// Dictionary size m.
    #[arg(long, default_value_t = 256)]
    m: usize,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 500)]
    steps: u64,
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    lr: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Read metrics back every this many steps.
    #[arg(long, default_value_t = 50)]
    log_every: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { json } => pollster::block_on(info(json)),
        Command::Train(args) => pollster::block_on(train(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn info(json: bool) -> Result<()> {
    let gpu = Gpu::new().await?;
    let r = &gpu.report;
    if json {
        println!("{}", serde_json::to_string_pretty(r).expect("the report serialises"));
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
    Ok(())
}

async fn train(a: TrainArgs) -> Result<()> {
    let cfg = SaeConfig {
        arch: if a.arch == "tied" {
            Architecture::Tied
        } else {
            Architecture::Standard
        },
        activation: match a.l1 {
            Some(l1) => Activation::ReluL1 { l1 },
            None => Activation::TopK { k: a.k },
        },
        d_in: a.d,
        d_sae: a.m,
        batch: a.batch,
        lr: a.lr,
        paper_exact: false,
        adam: AdamHyper::default(),
    };
    cfg.validate()?;
    let gpu = Gpu::new().await?;
    let kernels = Kernels::new(&gpu)?;
    let mut sae = GpuSae::new(&gpu, &kernels, cfg, &SaeWeights::init(&cfg, a.seed))?;
    let mut data = SparseData::new(a.d, 4 * a.d, 4, a.seed.wrapping_add(1));
    let bar = ProgressBar::new(a.steps).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  {msg}").expect("valid template"),
    );
    bar.set_message("first metrics after the first log window");
    for step in 1..=a.steps {
        sae.step(&gpu, &data.batch(a.batch))?;
        if step % a.log_every == 0 || step == a.steps {
            let m = sae.take_metrics(&gpu).await?;
            bar.set_message(format!(
                "mse {:.4}  fvu {:.3}  L0 {:.1}  dead {:.1}%",
                m.mse,
                m.fvu,
                m.l0,
                100.0 * m.dead_fraction
            ));
            bar.suspend(|| {
                println!(
                    "step {step:>6}  mse {:.5}  fvu {:.4}  L0 {:.2}  dead {:.1}%",
                    m.mse,
                    m.fvu,
                    m.l0,
                    100.0 * m.dead_fraction
                )
            });
        }
        bar.inc(1);
    }
    bar.finish();
    Ok(())
}

/// Rows made of a few of `n` fixed random directions with uniform weights: the
/// simplest data on which an SAE has features to find.
struct SparseData {
    d: usize,
    dirs: Vec<f64>,
    active: usize,
    rng: Rng,
}

impl SparseData {
    fn new(d: usize, n: usize, active: usize, seed: u64) -> SparseData {
        let mut rng = Rng::new(seed);
        let dirs = rng.normals(n * d);
        SparseData { d, dirs, active, rng }
    }

    fn batch(&mut self, rows: usize) -> Vec<f32> {
        let n = self.dirs.len() / self.d;
        let mut x = vec![0.0f32; rows * self.d];
        for row in x.chunks_mut(self.d) {
            for _ in 0..self.active {
                let f = self.rng.below(n);
                let c = self.rng.uniform();
                for (v, dv) in row.iter_mut().zip(&self.dirs[f * self.d..(f + 1) * self.d]) {
                    *v += (c * dv) as f32;
                }
            }
        }
        x
    }
}
