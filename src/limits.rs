//! Sizes before work: what a training run will allocate, on the GPU (the largest single
//! storage binding, against the adapter's limits) and on the host (initial weights, the
//! per-log readbacks and matchings, the synthetic truth; on a software adapter the GPU
//! buffers too, since they live in host memory), and the CPU work of the orthogonal
//! initialisation, all computed from the configuration alone and checked before anything
//! is allocated or initialised. A refusal names the size asked, the limit and what to change.
//!
//! Does not own the buffers themselves (`sae.rs`, `mfr.rs`, `train.rs`): the counts here
//! follow their allocations and are estimates on the safe side, not an allocator.

use crate::error::{Error, Result};
use crate::gpu::AdapterReport;
use crate::model::{Activation, Architecture};
use crate::train::EnsembleConfig;

/// The share of the host's available memory a run may plan to use.
const HOST_SHARE: f64 = 0.8;
/// Host memory assumed where it cannot be read (not Linux): a fixed, moderate cap.
const FALLBACK_HOST_BYTES: u64 = 8 << 30;
/// The browser: a wasm32 instance addresses at most 4 GiB; keep to half.
const WASM_HOST_BYTES: u64 = 2 << 30;
/// Floating-point operations the orthogonal initialisation of one SAE may take on the CPU
/// (modified Gram–Schmidt: 2·min(m, d)²·max(m, d); 10¹² is minutes on one core).
pub const MAX_INIT_FLOPS: f64 = 1e12;
const MIB: f64 = 1048576.0;
/// Output rows and columns per matmul workgroup: its grid is [⌈cols/32⌉, ⌈rows/32⌉, 1],
/// unfolded (`kernels/matmul.rs`), so every matrix dimension (m, d, batch) is bounded by
/// 32 × the adapter's workgroups per dimension (65 535 on WebGPU: 2 097 120).
const MATMUL_TILE: u64 = 32;
const SOFTWARE_NOTE: &str = " (the software adapter's buffers included)";

/// What a configuration needs, in bytes (and flops for the initialisation); f64 so that no
/// absurd size overflows the arithmetic (exact below 2⁵³).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Needs {
    /// The largest single GPU buffer, its label and element count.
    pub largest_buffer: (f64, &'static str),
    pub gpu_bytes: f64,
    pub host_bytes: f64,
    /// The largest part of `host_bytes`, in words.
    pub largest_host: &'static str,
    pub init_flops: f64,
}

/// The host memory a run may plan to use: on Linux a share of MemAvailable from
/// /proc/meminfo, elsewhere a fixed cap.
pub fn host_budget() -> u64 {
    if cfg!(target_arch = "wasm32") {
        return WASM_HOST_BYTES;
    }
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    (available.unwrap_or(FALLBACK_HOST_BYTES) as f64 * HOST_SHARE) as u64
}

/// The sizes `cfg` implies; `truth_features` is the synthetic generator's feature count.
pub fn needs(cfg: &EnsembleConfig, truth_features: Option<usize>) -> Needs {
    let w = |x: usize| x as f64;
    let (n, b, d, m) = (w(cfg.n_saes), w(cfg.sae.batch), w(cfg.sae.d_in), w(cfg.sae.d_sae));
    let k = (0..cfg.distinct_saes())
        .map(|i| match cfg.sae_config(i).activation {
            Activation::TopK { k } => w(k),
            // BatchTopK takes the dense path: no per-row sparse form.
            Activation::ReluL1 { .. } | Activation::BatchTopK { .. } => 0.0,
        })
        .fold(0.0, f64::max);
    let aux = cfg.sae.auxk.map(|a| w(a.k_aux));
    let standard = cfg.sae.arch == Architecture::Standard;
    // Parameters with gradient and both Adam moments.
    let params = if standard { 2.0 * m * d + m + d } else { m * d + m };
    let dictionary = m * d; // tied: the unit rows U; standard: the raw W_dec gradient
    let bm = b * m * if aux.is_some() { 9.0 } else { 4.0 };
    let bd = b * d * if aux.is_some() { 6.0 } else { 3.0 };
    let bk = 2.0 * b * (k + aux.unwrap_or(0.0));
    let per_sae = 4.0 * params + dictionary + bm + bd + bk;
    let mfr = if cfg.mfr.lambda > 0.0 && n >= 2.0 {
        n * m * d
    } else {
        0.0
    };
    let gpu_values = n * per_sae + mfr + 2.0 * b * d;
    let largest = [
        (m * d, "a weight matrix [m, d]"),
        (b * m, "a code [batch, m]"),
        (b * d, "a batch [batch, d]"),
    ]
    .into_iter()
    .fold((0.0, ""), |a, c| if c.0 > a.0 { c } else { a });
    // Host, in bytes: initial weights (f32, plus the f64 orthogonal work and its output for
    // one SAE at a time), the final weights, each log's weights and f64 dictionaries,
    // a pair's cosine and cost matrices (f64), the batch and the synthetic truth.
    let weights_f32 = 4.0 * n * params;
    let init = 16.0 * m * d;
    let log = n * (4.0 * params + 8.0 * m * d);
    let matching = if n >= 2.0 { 16.0 * m * m } else { 0.0 };
    let truth = truth_features.map_or(0.0, |f| {
        let f = w(f);
        12.0 * f * d + 16.0 * m * f
    });
    let host_parts = [
        (2.0 * weights_f32 + init + log, "the weights and their readbacks"),
        (matching, "the pairwise matching [m, m]"),
        (8.0 * b * d, "the batch"),
        (truth, "the synthetic truth [features, d]"),
    ];
    let host_bytes = host_parts.iter().map(|p| p.0).sum();
    let largest_host = host_parts
        .into_iter()
        .fold((0.0, ""), |a, c| if c.0 > a.0 { c } else { a })
        .1;
    let (lo, hi) = (d.min(m), d.max(m));
    Needs {
        largest_buffer: (largest.0, largest.1),
        gpu_bytes: 4.0 * gpu_values,
        host_bytes,
        largest_host,
        init_flops: if standard { 0.0 } else { 2.0 * lo * lo * hi },
    }
}

/// Refuses a configuration whose buffers do not fit `gpu`'s limits, whose host memory
/// exceeds `host_bytes` (a software adapter's buffers count there too) or whose
/// initialisation would take more than `MAX_INIT_FLOPS`; each sentence names the size,
/// the limit and what to change.
pub fn check(cfg: &EnsembleConfig, truth_features: Option<usize>, gpu: &AdapterReport, host_bytes: u64) -> Result<()> {
    let needs = needs(cfg, truth_features);
    let shape = format!(
        "N = {}, m = {}, d = {}, batch = {}",
        cfg.n_saes, cfg.sae.d_sae, cfg.sae.d_in, cfg.sae.batch
    );
    let binding = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size);
    let (values, what) = needs.largest_buffer;
    if 4.0 * values > binding as f64 {
        return Err(Error::Config(format!(
            "{shape}: {what} needs {:.0} bytes ({values:.0} f32) but the adapter `{}` binds at most {binding} \
             bytes per buffer: use a smaller {}",
            4.0 * values,
            gpu.name,
            match what {
                "a weight matrix [m, d]" => "m (the dictionary size; the activation experiments set it from d)",
                "a code [batch, m]" => "batch or m",
                _ => "batch",
            }
        )));
    }
    let max_groups = u64::from(gpu.limits.max_compute_workgroups_per_dimension);
    for (what, dim) in [("m", cfg.sae.d_sae), ("d", cfg.sae.d_in), ("batch", cfg.sae.batch)] {
        let groups = (dim as u64).div_ceil(MATMUL_TILE);
        if groups > max_groups {
            return Err(Error::Config(format!(
                "{shape}: {what} = {dim} needs {groups} matmul workgroups along one dimension but the adapter \
                 `{}` allows {max_groups} ({what} ≤ {}): use a smaller {what}",
                gpu.name,
                max_groups * MATMUL_TILE
            )));
        }
    }
    let host = needs.host_bytes + if gpu.is_software { needs.gpu_bytes } else { 0.0 };
    if host > host_bytes as f64 {
        let (software, most) = match gpu.is_software {
            true if needs.gpu_bytes > needs.host_bytes => (SOFTWARE_NOTE, "the GPU buffers"),
            true => (SOFTWARE_NOTE, needs.largest_host),
            false => ("", needs.largest_host),
        };
        return Err(Error::Config(format!(
            "{shape}: the run needs about {:.0} MiB of host memory{software}, most of it for {most}, but {} MiB \
             is available to it: use a smaller m, N or batch{}",
            host / MIB,
            host_bytes >> 20,
            if truth_features.is_some() {
                ", or fewer synthetic features"
            } else {
                ""
            }
        )));
    }
    if needs.init_flops > MAX_INIT_FLOPS {
        return Err(Error::Config(format!(
            "{shape}: the orthogonal initialisation of W [{}, {}] takes about {:.1e} operations on the CPU \
             (limit {MAX_INIT_FLOPS:.0e}, minutes on one core): use a smaller m",
            cfg.sae.d_sae, cfg.sae.d_in, needs.init_flops
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::LimitsReport;

    fn adapter(binding: u64, software: bool) -> AdapterReport {
        AdapterReport {
            name: "test".into(),
            backend: "none".into(),
            device_type: "Cpu".into(),
            driver: String::new(),
            driver_info: String::new(),
            is_software: software,
            limits: LimitsReport {
                max_storage_buffer_binding_size: binding,
                max_buffer_size: 2 * binding,
                max_compute_workgroup_storage_size: 16384,
                max_compute_invocations_per_workgroup: 256,
                max_storage_buffers_per_shader_stage: 8,
                max_compute_workgroups_per_dimension: 65535,
                min_storage_buffer_offset_alignment: 256,
            },
        }
    }

    fn config(m: usize, d: usize, batch: usize) -> EnsembleConfig {
        let mut cfg = crate::experiment::Preset::Quick.synthetic().ensemble;
        (cfg.sae.d_sae, cfg.sae.d_in, cfg.sae.batch) = (m, d, batch);
        cfg
    }

    #[test]
    fn the_quick_preset_fits_and_the_largest_buffer_is_named() {
        let cfg = config(128, 64, 512);
        check(&cfg, Some(128), &adapter(128 << 20, true), 1 << 30).unwrap();
        assert_eq!(needs(&cfg, None).largest_buffer, (512.0 * 128.0, "a code [batch, m]"));
    }

    #[test]
    fn a_dictionary_beyond_the_binding_limit_is_refused_with_its_size() {
        let e = check(&config(10_000_000, 64, 16), None, &adapter(128 << 20, false), u64::MAX)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a weight matrix [m, d] needs 2560000000 bytes"), "{e}");
        assert!(e.contains("binds at most 134217728 bytes"), "{e}");
        assert!(e.contains("smaller m"), "{e}");
    }

    #[test]
    fn a_dimension_beyond_the_matmul_grid_is_refused() {
        let e = check(&config(20_000_000, 1, 1), None, &adapter(1 << 30, false), u64::MAX)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m = 20000000 needs 625000 matmul workgroups") && e.contains("m ≤ 2097120"),
            "{e}"
        );
    }

    #[test]
    fn host_memory_and_initialisation_work_are_bounded() {
        let e = check(&config(100_000, 64, 64), None, &adapter(u64::MAX / 4, false), 1 << 30)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("MiB of host memory") && e.contains("1024 MiB is available"),
            "{e}"
        );
        let e = check(
            &config(20_000, 20_000, 4),
            None,
            &adapter(u64::MAX / 4, false),
            u64::MAX,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("orthogonal initialisation of W [20000, 20000]"), "{e}");
    }

    #[test]
    fn absurd_sizes_do_not_overflow_the_arithmetic() {
        let cfg = config(usize::MAX / 2, usize::MAX / 2, usize::MAX / 2);
        assert!(check(&cfg, Some(usize::MAX), &adapter(1 << 30, false), u64::MAX).is_err());
        assert!(host_budget() > 0);
    }
}
