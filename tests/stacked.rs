//! The ensemble's stacked kernels: one dispatch computing N SAEs' products, each operand
//! either stacked ([N, …], one slice per SAE) or shared by all. Every stacked kernel is
//! checked per instance against the f64 reference and, bit for bit, against the same
//! kernel run on that instance alone (the ensemble's trajectory then repeats the
//! per-SAE one exactly: `tests/training.rs`).

mod common;

use common::*;
use mfr_sae::gpu::{Dispatch, Tensor};
use mfr_sae::kernels::{
    CodeOf, Csc, Deviation, MatmulVariant, MmcsForm, Op, SparseCode, StepMetrics, TopK, WindowSlots, SHAPE_CLASSES,
};
use mfr_sae::mfr::MfrConfig;
use mfr_sae::model::{Activation, Architecture, AuxK, SaeConfig, SaeWeights, StepPath};
use mfr_sae::reference as r;
use mfr_sae::sae::GpuSae;
use mfr_sae::train::{Ensemble, EnsembleConfig, LogRecord, ReinitConfig};

const TOL: f64 = 1e-5;

#[test]
fn stacked_matmul_matches_each_instance_alone_for_every_variant_and_transpose() {
    let c = ctx();
    let n_inst = 3;
    // (m, k, n): vec4-aligned and odd sizes (stacked operands need slices of 4k values:
    // m·k and k·n here are).
    for (seed, &(m, k, n)) in [(12usize, 8usize, 20usize), (37, 4, 16), (64, 32, 96)]
        .iter()
        .enumerate()
    {
        for variant in MatmulVariant::ALL {
            for (op_a, op_b) in SHAPE_CLASSES {
                let a_shape = if op_a == Op::N { [m, k] } else { [k, m] };
                let b_shape = if op_b == Op::N { [k, n] } else { [n, k] };
                // a shared by all instances (the ensemble's input), b and bias stacked.
                let a = rounded(&normals(m * k, seed as u64));
                let b = rounded(&normals(n_inst * k * n, 100 + seed as u64));
                let bias = rounded(&normals(n_inst * n, 200 + seed as u64));
                let ga = upload(&a_shape, &a);
                let gb = upload(&[n_inst, b_shape[0], b_shape[1]], &b);
                let gbias = upload(&[n_inst, n], &bias);
                let gc = zeros(&[n_inst, m, n]);
                let what = format!("stacked matmul[{variant}] {m}x{k}x{n} {op_a:?}{op_b:?}");
                run(&[&c
                    .k
                    .matmul_as(variant, &c.gpu, &ga, op_a, &gb, op_b, Some(&gbias), 0.5, &gc)
                    .unwrap()]);
                let got = read(&gc);
                for s in 0..n_inst {
                    let plain = r::matmul(
                        &a,
                        (a_shape[0], a_shape[1]),
                        op_a,
                        slice(&b, n_inst, s),
                        (b_shape[0], b_shape[1]),
                        op_b,
                    );
                    let scaled: Vec<f64> = plain.iter().map(|v| 0.5 * v).collect();
                    let want = r::add_row_vector(&scaled, slice(&bias, n_inst, s), 1.0);
                    assert_close(&format!("{what} instance {s}"), slice(&got, n_inst, s), &want, TOL);
                    // The same product on its own gives the same bits.
                    let alone_b = upload(&b_shape, slice(&b, n_inst, s));
                    let alone_bias = upload(&[n], slice(&bias, n_inst, s));
                    let alone = zeros(&[m, n]);
                    run(&[&c
                        .k
                        .matmul_as(
                            variant,
                            &c.gpu,
                            &ga,
                            op_a,
                            &alone_b,
                            op_b,
                            Some(&alone_bias),
                            0.5,
                            &alone,
                        )
                        .unwrap()]);
                    assert_eq!(read(&alone), slice(&got, n_inst, s), "{what} instance {s} alone");
                }
            }
        }
    }
}

#[test]
fn stacked_matmul_with_every_operand_stacked_and_a_shared_b() {
    let c = ctx();
    let (n_inst, m, k, n) = (2, 9, 12, 8);
    let a = rounded(&normals(n_inst * m * k, 7));
    let b = rounded(&normals(k * n, 8));
    let ga = upload(&[n_inst, m, k], &a);
    let gb = upload(&[k, n], &b);
    let gc = zeros(&[n_inst, m, n]);
    run(&[&c.k.matmul(&c.gpu, &ga, Op::N, &gb, Op::N, None, 1.0, &gc).unwrap()]);
    let got = read(&gc);
    for s in 0..n_inst {
        let want = r::matmul(slice(&a, n_inst, s), (m, k), Op::N, &b, (k, n), Op::N);
        assert_close(&format!("instance {s}"), slice(&got, n_inst, s), &want, TOL);
    }
}

#[test]
fn stacked_matmul_refuses_mismatched_instances_and_unaligned_slices() {
    let c = ctx();
    let out = zeros(&[3, 4, 4]);
    let a2 = zeros(&[2, 4, 4]);
    let b = zeros(&[4, 4]);
    let err =
        c.k.matmul(&c.gpu, &a2, Op::N, &b, Op::N, None, 1.0, &out)
            .err()
            .unwrap();
    assert!(err.to_string().contains("2 instances"), "{err}");
    // Slices of 3·3 = 9 values cannot start on a vec4.
    let a9 = zeros(&[3, 3, 3]);
    let b9 = zeros(&[3, 3]);
    let out9 = zeros(&[3, 3, 3]);
    let err =
        c.k.matmul(&c.gpu, &a9, Op::N, &b9, Op::N, None, 1.0, &out9)
            .err()
            .unwrap();
    assert!(err.to_string().contains("multiple of 4"), "{err}");
}

fn read_u32(t: &Tensor<u32>) -> Vec<u32> {
    pollster::block_on(t.read(&ctx().gpu)).unwrap()
}

/// A stacked TopK code of `pre` [n·rows, m] and its CSC index: (idx, val, index, the
/// TopK and index dispatches).
fn stacked_code(
    pre: &[f64],
    n: usize,
    rows: usize,
    m: usize,
    k: usize,
    relu: bool,
) -> (Tensor<u32>, Tensor<f32>, Csc, Vec<Dispatch>) {
    let c = ctx();
    let gpre = upload(&[n * rows, m], pre);
    let idx = Tensor::<u32>::zeros(&c.gpu, &[n * rows, k], "idx").unwrap();
    let val = zeros(&[n * rows, k]);
    let out = TopK {
        instances: n,
        z: None,
        sparse: Some(SparseCode { idx: &idx, val: &val }),
    };
    let csc = Csc::stacked(&c.gpu, n, rows, k, m).unwrap();
    let mut plan = c.k.topk(&c.gpu, &gpre, k, relu, out).unwrap();
    plan.extend(c.k.csc(&c.gpu, &idx, &csc).unwrap());
    (idx, val, csc, plan)
}

/// TopK over a stack of N SAEs' pre-activations names the latents of the stacked
/// dictionary (j + s·m), and the stacked CSC index is exactly the reference index of those
/// stacked latents; the per-latent metrics over it are each SAE's, side by side. Rows per
/// SAE that are not a multiple of the CSC's 64-row blocks (70) and that are (128), and m
/// around the offsets scan's 256 runs.
#[test]
fn stacked_topk_csc_and_latent_metrics_match_each_instance_reference() {
    let c = ctx();
    for (seed, &(n, rows, m, k)) in [
        (3usize, 70usize, 37usize, 5usize),
        (2, 128, 300, 7),
        (4, 5, 8, 8),
        (2, 70, 128, 6),
    ]
    .iter()
    .enumerate()
    {
        let pre = rounded(&normals(n * rows * m, 40 + seed as u64));
        let (idx, val, csc, mut plan) = stacked_code(&pre, n, rows, m, k, true);
        let firing: Vec<f64> = (0..n * m).map(|j| (j % 5) as f64).collect();
        let since: Vec<f64> = (0..n * m).map(|j| (j % 3) as f64 * 10.0).collect();
        let (gstats, gfiring, gsince) = (zeros(&[2, n * m]), upload(&[n * m], &firing), upload(&[n * m], &since));
        plan.push(
            c.k.latent_stats(
                &c.gpu,
                CodeOf::Sparse { csc: &csc, val: &val },
                &gstats,
                &gfiring,
                &gsince,
            )
            .unwrap(),
        );
        // TopK and the index twice: a rebuild must not see the previous step's index.
        let twice: Vec<_> = plan[..plan.len() - 1].iter().chain(&plan).collect();
        run(&twice);
        let (got_idx, got_val) = (read_u32(&idx), read(&val));
        let (got_stats, got_firing, got_since) = (read(&gstats), read(&gfiring), read(&gsince));
        let mut want_idx = Vec::new();
        for s in 0..n {
            let what = format!("N {n} rows {rows} m {m} k {k} instance {s}");
            let (z, ref_idx, ref_val) = r::topk(slice(&pre, n, s), m, k, true);
            want_idx.extend(ref_idx.iter().map(|&j| j + (s * m) as u32));
            assert_eq!(slice(&got_val, n, s), &ref_val[..], "{what}: values");
            // The latent metrics of instance s: its latents' slices of stats, firing, since;
            // each SAE's firing clock advances by its own rows.
            let (st, fi, si) = r::latent_stats(&z, slice(&firing, n, s), slice(&since, n, s));
            assert_close(
                &format!("{what}: firing counts"),
                &got_stats[s * m..(s + 1) * m],
                &st[..m],
                TOL,
            );
            let abs = &got_stats[n * m + s * m..n * m + (s + 1) * m];
            assert_close(&format!("{what}: absolute sums"), abs, &st[m..], TOL);
            assert_eq!(slice(&got_firing, n, s), &fi[..], "{what}: window firing");
            assert_eq!(slice(&got_since, n, s), &si[..], "{what}: firing clock");
        }
        assert_eq!(got_idx, want_idx, "N {n}: stacked latent indices");
        let (offsets, entries) = r::csc(&want_idx, n * m);
        assert_eq!(read_u32(csc.offsets()), offsets, "N {n} rows {rows} m {m}: offsets");
        assert_eq!(read_u32(csc.entries()), entries, "N {n} rows {rows} m {m}: entries");
    }
}

/// The weight-gradient scatter of a stacked index reads one y shared by the instances (the
/// ensemble's batch) or a stacked y, both per instance the reference's; the MSE of stacked
/// reconstructions against one shared target is each block's MSE (its mean per block when
/// scaled by N).
#[test]
fn stacked_scatter_and_mse_read_a_shared_batch() {
    let c = ctx();
    // cols 20 (vec4 path) and 7 (scalar path).
    for (seed, &(n, rows, m, k, cols)) in [(3usize, 70usize, 37usize, 5usize, 20usize), (2, 64, 64, 4, 7)]
        .iter()
        .enumerate()
    {
        let seed = seed as u64;
        let pre = rounded(&normals(n * rows * m, 60 + seed));
        let (_, val, csc, mut plan) = stacked_code(&pre, n, rows, m, k, false);
        let y = rounded(&normals(rows * cols, 70 + seed));
        let stacked_y = rounded(&normals(n * rows * cols, 80 + seed));
        let (gy, gsy) = (upload(&[rows, cols], &y), upload(&[n * rows, cols], &stacked_y));
        let (shared_out, stacked_out, sums) = (zeros(&[cols, n * m]), zeros(&[n * m, cols]), zeros(&[n * m]));
        plan.push(
            c.k.sparse_scatter(&c.gpu, &csc, &val, &gy, true, false, &shared_out, Some(&sums))
                .unwrap(),
        );
        plan.push(
            c.k.sparse_scatter(&c.gpu, &csc, &val, &gsy, false, false, &stacked_out, None)
                .unwrap(),
        );
        // MSE: stacked xhat [n·rows, cols] against the shared y as the target.
        let xhat = rounded(&normals(n * rows * cols, 90 + seed));
        let (gxhat, grad, row_sq) = (
            upload(&[n * rows, cols], &xhat),
            zeros(&[n * rows, cols]),
            zeros(&[n * rows]),
        );
        plan.push(c.k.mse(&c.gpu, &gxhat, &gy, n as f32, &grad, &row_sq).unwrap());
        run(&plan.iter().collect::<Vec<_>>());
        let (got_shared, got_stacked, got_sums) = (read(&shared_out), read(&stacked_out), read(&sums));
        let (got_grad, got_sq) = (read(&grad), read(&row_sq));
        for s in 0..n {
            let what = format!("N {n} rows {rows} m {m} k {k} cols {cols} instance {s}");
            let (_, ref_idx, ref_val) = r::topk(slice(&pre, n, s), m, k, false);
            // Transposed [cols, n·m]: instance s's latents are columns s·m … of each row.
            let want = r::sparse_scatter(&ref_idx, &ref_val, k, &y, cols, m, true);
            for col in 0..cols {
                let got_row = &got_shared[col * n * m + s * m..col * n * m + (s + 1) * m];
                assert_close(
                    &format!("{what}: shared y, column {col}"),
                    got_row,
                    &want[col * m..(col + 1) * m],
                    TOL,
                );
            }
            let want = r::sparse_scatter(&ref_idx, &ref_val, k, slice(&stacked_y, n, s), cols, m, false);
            assert_close(&format!("{what}: stacked y"), slice(&got_stacked, n, s), &want, TOL);
            let mut bias = vec![0.0; m];
            for (&j, &v) in ref_idx.iter().zip(&ref_val) {
                bias[j as usize] += v;
            }
            assert_close(&format!("{what}: sums"), slice(&got_sums, n, s), &bias, TOL);
            let (_, g, sq) = r::mse(slice(&xhat, n, s), &y, cols);
            assert_close(&format!("{what}: mse gradient"), slice(&got_grad, n, s), &g, TOL);
            assert_close(&format!("{what}: row errors"), slice(&got_sq, n, s), &sq, TOL);
        }
    }
    // A target whose rows do not divide the reconstruction's is refused.
    let (xhat, target) = (zeros(&[6, 4]), zeros(&[4, 4]));
    let (grad, sq) = (zeros(&[6, 4]), zeros(&[6]));
    let err = c.k.mse(&c.gpu, &xhat, &target, 1.0, &grad, &sq).err().unwrap();
    assert!(err.to_string().contains("target"), "{err}");
}

/// AuxK's kernels on a stack: each SAE's rows masked by its own clocks, the residual of the
/// one target against every SAE's x̂, and the MSE with each block's own mean.
#[test]
fn stacked_auxk_mask_residual_and_block_mse_match_each_instance_reference() {
    let c = ctx();
    let (n, rows, m, d) = (3usize, 10usize, 13usize, 7usize);
    let pre = rounded(&normals(n * rows * m, 110));
    // SAE s's latent j has been silent for 100·((j + 5s) mod m) tokens; dead from 300 on.
    let since: Vec<f64> = (0..n * m).map(|e| 100.0 * ((e % m + 5 * (e / m)) % m) as f64).collect();
    let masked = zeros(&[n * rows, m]);
    let gpre = upload(&[n * rows, m], &pre);
    let x = rounded(&normals(rows * d, 111));
    let xhat = rounded(&normals(n * rows * d, 112));
    let (gx, gxhat) = (upload(&[rows, d], &x), upload(&[n * rows, d], &xhat));
    let resid = zeros(&[n * rows, d]);
    let (grad, row_sq) = (zeros(&[n * rows, d]), zeros(&[n * rows]));
    let (shared_grad, shared_sq) = (zeros(&[n * rows, d]), zeros(&[n * rows]));
    let coef = 0.3;
    run(&[
        &c.k.mask_dead(&c.gpu, &gpre, &upload(&[n * m], &since), 300.0, &masked)
            .unwrap(),
        &c.k.axpby(&c.gpu, 1.0, &gx, -1.0, &gxhat, &resid).unwrap(),
        // The residual as a stacked target, and the one x as a shared one.
        &c.k.mse_blocks(&c.gpu, &gxhat, &resid, coef, n, &grad, &row_sq).unwrap(),
        &c.k.mse_blocks(&c.gpu, &gxhat, &gx, coef, n, &shared_grad, &shared_sq)
            .unwrap(),
    ]);
    let (got_mask, got_resid) = (read(&masked), read(&resid));
    let (got_grad, got_sq) = (read(&grad), read(&row_sq));
    let (got_shared, got_shared_sq) = (read(&shared_grad), read(&shared_sq));
    let scaled = |g: Vec<f64>| g.iter().map(|v| coef as f64 * v).collect::<Vec<_>>();
    for s in 0..n {
        let what = format!("N {n} rows {rows} m {m} d {d} instance {s}");
        let want: Vec<f64> = r::mask_dead(slice(&pre, n, s), slice(&since, n, s), 300.0)
            .iter()
            .map(|&v| v as f32 as f64)
            .collect();
        assert_eq!(slice(&got_mask, n, s), &want[..], "{what}: masked");
        let xs = slice(&xhat, n, s);
        let want: Vec<f64> = x.iter().zip(xs).map(|(a, b)| a - b).collect();
        assert_close(&format!("{what}: residual"), slice(&got_resid, n, s), &want, TOL);
        let (_, g, sq) = r::mse(xs, &want, d);
        assert_close(
            &format!("{what}: block mse gradient"),
            slice(&got_grad, n, s),
            &scaled(g),
            TOL,
        );
        assert_close(&format!("{what}: block row errors"), slice(&got_sq, n, s), &sq, TOL);
        let (_, g, sq) = r::mse(xs, &x, d);
        assert_close(
            &format!("{what}: shared-target gradient"),
            slice(&got_shared, n, s),
            &scaled(g),
            TOL,
        );
        assert_close(
            &format!("{what}: shared-target row errors"),
            slice(&got_shared_sq, n, s),
            &sq,
            TOL,
        );
    }
    // Clocks that are not N·m, an x that does not repeat across y, blocks that do not divide.
    let err =
        c.k.mask_dead(&c.gpu, &gpre, &zeros(&[m + 1]), 300.0, &masked)
            .err()
            .unwrap();
    assert!(err.to_string().contains("clocks"), "{err}");
    let err =
        c.k.axpby(&c.gpu, 1.0, &zeros(&[4]), -1.0, &gxhat, &resid)
            .err()
            .unwrap();
    assert!(err.to_string().contains("repeats"), "{err}");
    let err =
        c.k.mse_blocks(&c.gpu, &gxhat, &resid, 1.0, 4, &grad, &row_sq)
            .err()
            .unwrap();
    assert!(err.to_string().contains("blocks"), "{err}");
}

/// The step's totals of N SAEs in one dispatch are each SAE's totals in its accumulator.
#[test]
fn stacked_window_totals_match_each_instance_reference() {
    let c = ctx();
    let slots = WindowSlots {
        squared_error: 3,
        aux_squared_error: 0,
        target_variance: 6,
        active: 1,
        abs_code: 2,
        reinit: 4,
    };
    // Rows a multiple of 4 (the vec4 loads) and not.
    for rows in [70, 72] {
        let (n, d, m, k, len) = (3, 9, 37, 5, 16);
        let row_sq: Vec<f64> = rounded(&normals(n * rows, 50)).iter().map(|v| v * v).collect();
        let aux_sq: Vec<f64> = rounded(&normals(n * rows, 51)).iter().map(|v| v * v).collect();
        let col_sq: Vec<f64> = rounded(&normals(d, 52)).iter().map(|v| v * v).collect();
        let counts: Vec<f64> = (0..n * m).map(|j| ((j * 7919) % (rows + 1)) as f64).collect();
        let sums: Vec<f64> = rounded(&normals(n * m, 53)).iter().map(|v| v.abs()).collect();
        let stats: Vec<f64> = counts.iter().chain(&sums).copied().collect();
        let prior: Vec<f64> = rounded(&normals(n * len, 54)).iter().map(|v| v.abs()).collect();
        let acc = upload(&[n * len], &prior);
        let (g_row, g_aux, g_col, g_stats) = (
            upload(&[n * rows], &row_sq),
            upload(&[n * rows], &aux_sq),
            upload(&[d], &col_sq),
            upload(&[2, n * m], &stats),
        );
        let step = StepMetrics {
            instances: n,
            row_sq: &g_row,
            aux_sq: Some(&g_aux),
            col_sq: &g_col,
            stats: &g_stats,
        };
        let rate = k as f32 / m as f32;
        let dev = Deviation {
            batch: rows,
            rate,
            threshold: 2.5,
        };
        run(&[&c.k.window_totals(&c.gpu, step, Some(dev), slots, &acc).unwrap()]);
        let got = read(&acc);
        for s in 0..n {
            let mut own = slice(&counts, n, s).to_vec();
            own.extend_from_slice(slice(&sums, n, s));
            let want_step = r::StepTotals {
                row_sq: slice(&row_sq, n, s),
                aux_sq: Some(slice(&aux_sq, n, s)),
                col_sq: &col_sq,
                stats: &own,
                deviation: Some((rows, rate as f64, 2.5)),
            };
            let want = r::window_totals(slice(&prior, n, s), &want_step, slots);
            assert_close(&format!("rows {rows} instance {s}"), slice(&got, n, s), &want, TOL);
        }
    }
}

/// The dispatches of one TopK over [rows, m] with the test's kernels.
fn topk_dispatches(m: usize, rows: usize) -> usize {
    let c = ctx();
    let (a, z) = (zeros(&[rows, m]), zeros(&[rows, m]));
    let out = TopK {
        instances: 1,
        z: Some(&z),
        sparse: None,
    };
    c.k.topk(&c.gpu, &a, 1, true, out).unwrap().len()
}

/// A tied TopK SAE whose per-SAE slices bind anywhere (m 64, d 16, batch 64).
fn stackable_sae(k: usize) -> SaeConfig {
    SaeConfig::new(Architecture::Tied, Activation::TopK { k }, 16, 64, 64, 3e-3)
}

struct Run {
    weights: Vec<SaeWeights>,
    logs: Vec<LogRecord>,
    adam: Vec<Vec<Vec<f32>>>,
    /// Dispatches of each step, and whether the SAEs' Adam step counts and lrs agreed.
    dispatches: Vec<(usize, bool)>,
}

/// `steps` steps of `cfg` (logged every 4), stacked or SAE by SAE, from the same batches.
fn train(cfg: &EnsembleConfig, stacked: bool, steps: usize) -> Run {
    let gpu = &ctx().gpu;
    let w = cfg.initial_weights();
    let mut ens = match stacked {
        true => Ensemble::new(gpu, &ctx().k, cfg.clone(), &w).unwrap(),
        false => Ensemble::new_unstacked(gpu, &ctx().k, cfg.clone(), &w).unwrap(),
    };
    assert_eq!(ens.stacking().is_ok(), stacked, "{:?}", ens.stacking());
    let batches = sparse_batches(cfg.sae.batch, cfg.sae.d_in, steps, 21);
    let clean = sparse_batches(cfg.sae.batch, cfg.sae.d_in, steps, 22);
    let (mut logs, mut dispatches) = (Vec::new(), Vec::new());
    for (t, x) in batches.iter().enumerate() {
        let target = cfg.denoising.then(|| f32s(&clean[t]));
        pollster::block_on(ens.step_with_target(gpu, &f32s(x), target.as_deref())).unwrap();
        let steps: Vec<u64> = ens.saes().iter().map(|s| s.adam_steps()).collect();
        let agree = steps.iter().all(|&s| s == steps[0]) && cfg.lr_per_sae.is_empty();
        dispatches.push((ens.step_plan().len(), agree));
        if (t + 1) % 4 == 0 {
            logs.push(pollster::block_on(ens.log(gpu, None)).unwrap());
        }
    }
    let adam = ens
        .saes()
        .iter()
        .map(|s| {
            let st = pollster::block_on(s.training_state(gpu)).unwrap();
            let mut all = st.adam_m;
            all.extend(st.adam_v);
            all.push(st.since_fired);
            all
        })
        .collect();
    Run {
        weights: pollster::block_on(ens.weights(gpu)).unwrap(),
        logs,
        adam,
        dispatches,
    }
}

/// Panics naming the first value where `a` and `b` differ in any bit.
fn same_bits(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some(i) = (0..a.len()).find(|&i| a[i].to_bits() != b[i].to_bits()) {
        panic!(
            "{what}: value {i} of {} is {} stacked, {} one by one",
            a.len(),
            a[i],
            b[i]
        );
    }
}

#[test]
fn a_stacked_ensemble_repeats_the_one_by_one_run_bit_for_bit() {
    let mfr = |lambda, form| MfrConfig {
        lambda,
        warmup_steps: 3,
        form,
        match_every: 5,
    };
    let mut cases = vec![
        (
            "no MFR, N 2",
            EnsembleConfig::new(stackable_sae(4), 2, mfr(0.0, MmcsForm::Match), 12, 4, 3),
        ),
        (
            "matched MFR, N 3",
            EnsembleConfig::new(stackable_sae(6), 3, mfr(1.0, MmcsForm::Match), 12, 4, 5),
        ),
        (
            // d 13: the matched pair kernels' value-by-value path; N 4: SAEs in 3 pairs each.
            "matched MFR, N 4, d 13",
            EnsembleConfig::new(
                SaeConfig::new(Architecture::Tied, Activation::TopK { k: 5 }, 13, 64, 64, 3e-3),
                4,
                mfr(1.0, MmcsForm::Match),
                12,
                4,
                11,
            ),
        ),
        (
            "max MFR, N 3",
            EnsembleConfig::new(stackable_sae(6), 3, mfr(1.0, MmcsForm::Max), 12, 4, 7),
        ),
        (
            // d 64: rows of 64 values, so on llvmpipe the matmul and the sparse kernels read
            // their operands from textures (a 3-layer stack for the encoder's weights).
            "matched MFR, N 3, d 64",
            EnsembleConfig::new(
                SaeConfig::new(Architecture::Tied, Activation::TopK { k: 5 }, 64, 64, 64, 3e-3),
                3,
                mfr(1.0, MmcsForm::Match),
                12,
                4,
                13,
            ),
        ),
    ];
    // Per-SAE learning rates, a low reinit threshold (so SAEs restart and Adam's step counts
    // part), denoising, and the reference code's negative kept values.
    let mut varied = EnsembleConfig::new(
        SaeConfig {
            paper_exact: true,
            ..stackable_sae(5)
        },
        3,
        mfr(0.5, MmcsForm::Match),
        12,
        4,
        9,
    );
    varied.lr_per_sae = vec![3e-3, 1e-3, 5e-3];
    varied.reinit = Some(ReinitConfig { threshold: 0.5 });
    varied.denoising = true;
    cases.push(("per-SAE lr, reinit, denoising, paper_exact", varied));
    // AuxK (a latent is dead after 2 batches without firing), with matched MFR.
    let aux = AuxK {
        k_aux: 8,
        coef: 0.03,
        dead_after_tokens: 128.0,
    };
    let auxk = EnsembleConfig::new(
        SaeConfig {
            auxk: Some(aux),
            ..stackable_sae(4)
        },
        3,
        mfr(0.5, MmcsForm::Match),
        12,
        4,
        15,
    );
    cases.push(("AuxK, matched MFR, N 3", auxk));
    // One lr and reinits: Adam runs stacked until an SAE restarts its step count.
    let mut restarts = EnsembleConfig::new(stackable_sae(4), 2, mfr(0.0, MmcsForm::Match), 12, 4, 13);
    restarts.reinit = Some(ReinitConfig { threshold: 0.5 });
    cases.push(("one lr, reinit", restarts));
    for (what, cfg) in cases {
        let (a, b) = (train(&cfg, true, 12), train(&cfg, false, 12));
        // One by one: 15 dispatches per SAE (Adam included; AuxK adds 12: mask, TopK, CSC
        // ×3, residual, decode, MSE, code gradient, two scatters, projection) and the
        // target's statistics once, then MFR's pair dispatches (4 a pair matched) and a
        // projection per SAE. Stacked: as many as one SAE's for all N (the target's
        // statistics included), MFR's stage (matched: similarity, sums, gradient and
        // projection for all pairs; max: its pair dispatches and one projection), and Adam
        // once (one step count and lr) or per SAE.
        // TopK is two dispatches where it reads textures (llvmpipe, m a multiple of 64).
        let topk = topk_dispatches(cfg.sae.d_sae, cfg.sae.batch);
        let n = cfg.n_saes;
        let per_sae = if cfg.sae.auxk.is_some() {
            14 + topk + 11 + topk
        } else {
            14 + topk
        };
        let mfr_one_by_one = b.dispatches[0].0 - (per_sae * n + 1);
        let pairs = n * (n - 1) / 2;
        let mfr_stacked = match (cfg.mfr.lambda > 0.0, cfg.mfr.form) {
            (false, _) => 0,
            (true, MmcsForm::Match) => {
                assert_eq!(mfr_one_by_one, 4 * pairs + n, "{what}: matched MFR one by one");
                4
            }
            (true, MmcsForm::Max) => mfr_one_by_one - n + 1,
        };
        let stacked_adam = per_sae + mfr_stacked + 1;
        for (t, &(count, agree)) in a.dispatches.iter().enumerate() {
            let want = if agree { stacked_adam } else { stacked_adam - 1 + n };
            assert_eq!(
                count, want,
                "{what}: step {t} dispatches (Adam step counts agree: {agree})"
            );
        }
        if cfg.sae.auxk.is_some() {
            let aux: Vec<f64> = a
                .logs
                .iter()
                .flat_map(|l| l.saes.iter().map(|s| s.window.aux_mse))
                .collect();
            assert!(aux.iter().any(|&v| v > 0.0), "{what}: dead latents took part: {aux:?}");
        }
        if what == "one lr, reinit" {
            assert!(
                a.logs.iter().any(|l| !l.events.is_empty()),
                "{what}: an SAE was re-initialised"
            );
        }
        for (s, (wa, wb)) in a.weights.iter().zip(&b.weights).enumerate() {
            for (pa, pb) in wa.params.iter().zip(&wb.params) {
                same_bits(&format!("{what}: SAE {s} {}", pa.name), &pa.data, &pb.data);
            }
        }
        for (s, (ta, tb)) in a.adam.iter().zip(&b.adam).enumerate() {
            for (i, (va, vb)) in ta.iter().zip(tb).enumerate() {
                same_bits(&format!("{what}: SAE {s} Adam moment / firing clock {i}"), va, vb);
            }
        }
        assert!(
            a.logs == b.logs,
            "{what}: logged metrics differ:\n{:?}\n{:?}",
            a.logs,
            b.logs
        );
        let moved = a.weights[0].params[0].data != cfg.initial_weights()[0].params[0].data;
        assert!(moved, "{what}: the weights moved");
    }
}

#[test]
fn ensembles_that_cannot_stack_say_why_and_train_one_by_one() {
    let gpu = &ctx().gpu;
    let base = stackable_sae(4);
    let cases: [(SaeConfig, usize, &str); 5] = [
        (base, 1, "one SAE"),
        (
            SaeConfig {
                arch: Architecture::Standard,
                ..base
            },
            2,
            "tied TopK",
        ),
        (
            SaeConfig {
                activation: Activation::ReluL1 { l1: 0.1 },
                ..base
            },
            2,
            "tied TopK",
        ),
        (
            SaeConfig {
                step_path: Some(StepPath::Dense),
                ..base
            },
            2,
            "sparse step path",
        ),
        // m 60: a slice of 60·16 values starts at byte 3 840, not a multiple of 256.
        (
            SaeConfig { d_sae: 60, ..base },
            2,
            "does not start where this adapter binds",
        ),
    ];
    for (sae, n, why) in cases {
        let cfgs = vec![sae; n];
        let err = GpuSae::stackable(gpu, &cfgs).expect_err(why);
        assert!(err.contains(why), "{why}: {err}");
    }
    let mut per_k = EnsembleConfig::new(base, 2, MfrConfig::default(), 4, 4, 1);
    per_k.k_per_sae = vec![4, 5];
    let ens = Ensemble::new(gpu, &ctx().k, per_k.clone(), &per_k.initial_weights()).unwrap();
    assert!(ens.stacking().unwrap_err().contains("differ"));
}
