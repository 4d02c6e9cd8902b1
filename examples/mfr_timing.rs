//! Times MFR's pair kernels and the matching on this machine's adapter:
//!   cargo run --release --example mfr_timing [-- m d reps]
//! Default: m 512, d 256 and m 3072, d 768 (the paper's GPT-2 setting), 3 repetitions, medians
//! reported. The shipped matmul on the same product is timed beside them, to calibrate a
//! shared CPU. With `MFR_PREVIOUS_WGSL=file` (e.g. `git show 96aa300:shaders/mfr.wgsl`) the
//! previous kernels — one invocation per latent — are timed too. The matching is timed on
//! 1 − cos of two random dictionaries and of a dictionary and a noisy copy of it (trained SAEs
//! of one ensemble are nearer the latter); `NO_MATCHING=1` skips it.

use mfr_sae::assignment::max_similarity_matching;
use mfr_sae::gpu::{Dispatch, Gpu, Program, Tensor};
use mfr_sae::kernels::{Kernels, Op};
use mfr_sae::mfr::PairKernels;
use mfr_sae::rng::Rng;
use std::time::Instant;

fn time(gpu: &Gpu, plan: &[Dispatch], reps: usize) -> f64 {
    let plan: Vec<&Dispatch> = plan.iter().collect();
    let mut times = Vec::new();
    for _ in 0..=reps {
        let start = Instant::now();
        gpu.submit(&plan);
        pollster::block_on(gpu.finish()).expect("the device stays up");
        times.push(start.elapsed().as_secs_f64());
    }
    times.remove(0); // warm-up
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Unit rows [m, d] in f64: random, or `base` plus noise of norm `noise` per row.
fn unit_rows(m: usize, d: usize, rng: &mut Rng, base: Option<(&[f64], f64)>) -> Vec<f64> {
    let mut v = rng.normals(m * d);
    if let Some((b, noise)) = base {
        let scale = noise / (d as f64).sqrt();
        v.iter_mut().zip(b).for_each(|(x, &y)| *x = y + scale * *x);
    }
    mfr_sae::reference::rows_normalise(&v, d).0
}

fn cosines(a: &[f64], b: &[f64], m: usize, d: usize) -> Vec<f64> {
    (0..m * m)
        .map(|e| {
            let (x, y) = (&a[e / m * d..][..d], &b[e % m * d..][..d]);
            x.iter().zip(y).map(|(p, q)| p * q).sum()
        })
        .collect()
}

/// The previous `similarity` (max form) and `gradient` kernels of `src`, on random inputs.
fn time_previous(gpu: &Gpu, src: &str, m: usize, d: usize, reps: usize) -> (f64, f64) {
    let mut rng = Rng::new(3);
    let mut t = |n: usize| {
        let v: Vec<f32> = rng.normals(n).iter().map(|&x| x as f32).collect();
        Tensor::from_slice(gpu, &[n], &v, "input").expect("fits")
    };
    let (ua, ub, sim, ga, gb) = (t(m * d), t(m * d), t(m), t(m * d), t(m * d));
    let rotation: Vec<u32> = (0..m as u32).map(|j| (j + 1) % m as u32).collect();
    let assign = Tensor::from_slice(gpu, &[m], &rotation, "assign").expect("fits");
    let params = gpu.uniform(&[m as u32, d as u32, 0, 0]);
    let similarity = Program::new(gpu, "previous", src, "similarity").bind(
        gpu,
        &[&params, &ua.buffer, &ub.buffer, &assign.buffer, &sim.buffer],
        gpu.grid_1d(m, 64),
    );
    let ts = time(gpu, std::slice::from_ref(&similarity), reps);
    assign.write(gpu, &rotation).expect("fits"); // a one-to-one assignment for the gradient
    let grad_params = gpu.uniform(&[m as u32, d as u32, (-1.0f32).to_bits(), 0]);
    let step = gpu.uniform(&[1.0f32, 0.0, 0.0, 0.0]);
    let buffers = [
        &grad_params,
        &step,
        &ua.buffer,
        &ub.buffer,
        &assign.buffer,
        &ga.buffer,
        &gb.buffer,
    ];
    let gradient = Program::new(gpu, "previous", src, "gradient").bind(gpu, &buffers, gpu.grid_1d(m, 64));
    (ts, time(gpu, std::slice::from_ref(&gradient), reps))
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: m d reps"))
        .collect();
    let shapes = match args.as_slice() {
        [m, d, ..] => vec![(*m, *d)],
        _ => vec![(512, 256), (3072, 768)],
    };
    let reps = args.get(2).copied().unwrap_or(3);
    let gpu = pollster::block_on(Gpu::new()).expect("a wgpu adapter");
    let kernels = Kernels::new(&gpu).expect("kernels compile");
    let previous = std::env::var("MFR_PREVIOUS_WGSL")
        .ok()
        .map(|p| std::fs::read_to_string(p).expect("readable"));
    println!("adapter: {}", gpu.report.name);
    for (m, d) in shapes {
        let pk = PairKernels::new(&gpu, &kernels, m, d, 1).expect("fits the adapter");
        let product = 2.0 * (m * m * d) as f64;
        let (ua, ub, s) = (
            Tensor::<f32>::zeros(&gpu, &[m, d], "ua").expect("fits"),
            Tensor::<f32>::zeros(&gpu, &[m, d], "ub").expect("fits"),
            Tensor::<f32>::zeros(&gpu, &[m, m], "s").expect("fits"),
        );
        let matmul = vec![kernels
            .matmul(&gpu, &ua, Op::N, &ub, Op::T, None, 1.0, &s)
            .expect("shapes")];
        for (what, plan, flops) in [
            ("max similarity", &pk.max_similarity, product),
            ("S matrix", &pk.matrix, product),
            ("matmul U_a U_bᵀ (calibration)", &matmul, product),
            ("match similarity", &pk.matched_similarity, 2.0 * (m * d) as f64),
            (
                "max gradient (GPU grouping + gradient)",
                &pk.max_gradient,
                4.0 * (m * d) as f64,
            ),
            ("match gradient", &pk.match_gradient, 4.0 * (m * d) as f64),
        ] {
            let t = time(&gpu, plan, reps);
            println!("m {m} d {d} {what}: {:.2} ms, {:.2} GFLOP/s", t * 1e3, flops / t / 1e9);
        }
        if let Some(src) = &previous {
            let (ts, tg) = time_previous(&gpu, src, m, d, reps);
            println!(
                "m {m} d {d} previous max similarity: {:.2} ms, {:.2} GFLOP/s",
                ts * 1e3,
                product / ts / 1e9
            );
            println!("m {m} d {d} previous gradient (one-to-one): {:.2} ms", tg * 1e3);
        }
        if std::env::var("NO_MATCHING").is_ok() {
            continue;
        }
        let mut rng = Rng::new(2);
        let a = unit_rows(m, d, &mut rng, None);
        for (what, b) in [
            ("random", unit_rows(m, d, &mut rng, None)),
            ("noisy copy (noise 0.5)", unit_rows(m, d, &mut rng, Some((&a, 0.5)))),
        ] {
            let cos = cosines(&a, &b, m, d);
            let start = Instant::now();
            let pairs = max_similarity_matching(&cos, m, m);
            let t = start.elapsed().as_secs_f64();
            let mean = pairs.iter().map(|&(i, j)| cos[i * m + j]).sum::<f64>() / m as f64;
            println!(
                "m {m} matching, {what}: {:.1} ms per refresh and pair ({:.3} ms a step at match_every 100), MMCS {mean:.3}",
                t * 1e3,
                t * 10.0
            );
        }
    }
}
