//! Every WGSL kernel against its f64 reference on lavapipe, over shapes that
//! are not multiples of the tile sizes (e.g. batch 37, d 19, m 53).

mod common;

use common::*;
use mfr_sae::gpu::Tensor;
use mfr_sae::kernels::{
    autotune_matmul, matmul_cache, AdamSlot, BatchTopKScratch, CodeOf, ColumnOp, Deviation, KernelOptions, Kernels,
    MatmulReason, MatmulTune, MatmulVariant, Op, SparseCode, StepMetrics, TopK, WindowSlots, SHAPE_CLASSES,
    STEP_UNIFORM_BYTES,
};
use mfr_sae::model::AdamHyper;
use mfr_sae::reference as r;
use std::sync::OnceLock;

const TOL: f64 = 1e-5;

/// Shapes past the edges of the tiles: the register variant's 8×8 and 16×16 blocks (8·16
/// per workgroup; the 16×16 path needs vec4-aligned operands, as 68 and 132 are, and meets
/// K mod 4 ≠ 0 only when both operands run along M and N, as in TN with K = 19), and the
/// tiled variant's 64×64 tiles and 16-deep k steps.
const TILE_EDGES: &[(usize, usize, usize)] = &[(65, 17, 129), (68, 19, 132), (132, 20, 68)];

#[test]
fn matmul_matches_reference_for_every_variant_transpose_bias_and_shape() {
    let c = ctx();
    for variant in MatmulVariant::ALL {
        for (seed, &(m, k, n)) in SHAPES.iter().chain(TILE_EDGES).enumerate() {
            for (op_a, op_b) in SHAPE_CLASSES {
                let a_shape = if op_a == Op::N { [m, k] } else { [k, m] };
                let b_shape = if op_b == Op::N { [k, n] } else { [n, k] };
                let a = rounded(&normals(m * k, seed as u64));
                let b = rounded(&normals(k * n, 100 + seed as u64));
                let bias = rounded(&normals(n, 200 + seed as u64));
                let (ga, gb, gbias, gc) = (
                    upload(&a_shape, &a),
                    upload(&b_shape, &b),
                    upload(&[n], &bias),
                    zeros(&[m, n]),
                );
                let what = format!("matmul[{variant}] {m}x{k}x{n} {op_a:?}{op_b:?}");
                let plain = r::matmul(&a, (a_shape[0], a_shape[1]), op_a, &b, (b_shape[0], b_shape[1]), op_b);
                run(&[&c
                    .k
                    .matmul_as(variant, &c.gpu, &ga, op_a, &gb, op_b, None, 1.0, &gc)
                    .unwrap()]);
                assert_close(&what, &read(&gc), &plain, TOL);
                let alpha = -0.5;
                let scaled: Vec<f64> = plain.iter().map(|v| alpha * v).collect();
                let want = r::add_row_vector(&scaled, &bias, 1.0);
                run(&[&c
                    .k
                    .matmul_as(variant, &c.gpu, &ga, op_a, &gb, op_b, Some(&gbias), alpha as f32, &gc)
                    .unwrap()]);
                assert_close(&format!("{what} with bias and alpha"), &read(&gc), &want, TOL);
            }
        }
    }
}

/// The texture variant on the products it takes (every operand's rows a multiple of 64
/// values, K of 4; rows and columns of C past its 64×64 workgroup blocks, stacked operands
/// shared or not) and the fallback on those it does not, named by the dispatch.
#[test]
fn texture_matmul_matches_reference_where_it_applies_and_falls_back_elsewhere() {
    let c = ctx();
    let n_inst = 2;
    // (m, k, n): all aligned; M, then N, ragged where the class stores it as rows only; K
    // 20 and N 68 are not aligned for any class that stores them contiguously.
    for (seed, &(m, k, n)) in [
        (64usize, 64usize, 128usize),
        (128, 128, 64),
        (37, 64, 128),
        (64, 128, 68),
        (64, 20, 64),
    ]
    .iter()
    .enumerate()
    {
        for (op_a, op_b) in SHAPE_CLASSES {
            let a_shape = if op_a == Op::N { [m, k] } else { [k, m] };
            let b_shape = if op_b == Op::N { [k, n] } else { [n, k] };
            let fits = a_shape[1] % 64 == 0 && b_shape[1] % 64 == 0 && k % 4 == 0;
            let want_kernel = if fits {
                "matmul_texture".to_string()
            } else {
                format!("matmul_{}", MatmulVariant::fallback_for(&c.gpu.report, (op_a, op_b)))
            };
            // a shared by both instances, b and bias stacked; then a stacked and b shared.
            for a_stacked in [false, true] {
                let (a_inst, b_inst) = if a_stacked { (n_inst, 1) } else { (1, n_inst) };
                let a = rounded(&normals(a_inst * m * k, seed as u64));
                let b = rounded(&normals(b_inst * k * n, 100 + seed as u64));
                let bias = rounded(&normals(n_inst * n, 200 + seed as u64));
                let stack = |inst: usize, shape: [usize; 2]| {
                    if inst == 1 {
                        shape.to_vec()
                    } else {
                        vec![inst, shape[0], shape[1]]
                    }
                };
                let ga = upload(&stack(a_inst, a_shape), &a);
                let gb = upload(&stack(b_inst, b_shape), &b);
                let gbias = upload(&[n_inst, n], &bias);
                let gc = zeros(&[n_inst, m, n]);
                let what = format!("matmul[texture] {m}x{k}x{n} {op_a:?}{op_b:?} a stacked {a_stacked}");
                let d =
                    c.k.matmul_as(
                        MatmulVariant::Texture,
                        &c.gpu,
                        &ga,
                        op_a,
                        &gb,
                        op_b,
                        Some(&gbias),
                        0.5,
                        &gc,
                    )
                    .unwrap();
                assert_eq!(d.kernel(), want_kernel, "{what}");
                run(&[&d]);
                let got = read(&gc);
                for s in 0..n_inst {
                    let (sa, sb) = if a_stacked {
                        (slice(&a, n_inst, s), &b[..])
                    } else {
                        (&a[..], slice(&b, n_inst, s))
                    };
                    let plain = r::matmul(sa, (a_shape[0], a_shape[1]), op_a, sb, (b_shape[0], b_shape[1]), op_b);
                    let scaled: Vec<f64> = plain.iter().map(|v| 0.5 * v).collect();
                    let want = r::add_row_vector(&scaled, slice(&bias, n_inst, s), 1.0);
                    assert_close(&format!("{what} instance {s}"), slice(&got, n_inst, s), &want, TOL);
                }
            }
        }
    }
}

#[test]
fn matmul_uses_the_forced_then_the_tuned_then_the_default_variant() {
    let gpu = &ctx().gpu;
    let k = Kernels::new(gpu).unwrap();
    assert_eq!(k.matmul_choice().reason, MatmulReason::Default);
    for (a, b) in SHAPE_CLASSES {
        assert_eq!(k.matmul_variant(a, b), MatmulVariant::default_for(&gpu.report, (a, b)));
    }
    let tuned = MatmulTune {
        winners: [
            MatmulVariant::Tiled,
            MatmulVariant::Register,
            MatmulVariant::Tiled,
            MatmulVariant::Register,
        ],
        gflops: vec![],
        shape: (1, 1, 1),
    };
    let options = KernelOptions {
        matmul: None,
        tuned: Some(tuned.clone()),
        sparse_width: None,
        textures: None,
    };
    let k = Kernels::with_options(gpu, options).unwrap();
    assert_eq!(k.matmul_choice().reason, MatmulReason::Tuned);
    for (class, want) in SHAPE_CLASSES.into_iter().zip(tuned.winners) {
        assert_eq!(k.matmul_variant(class.0, class.1), want, "{class:?}");
    }
    for forced in MatmulVariant::ALL {
        let options = KernelOptions {
            matmul: Some(forced),
            tuned: Some(tuned.clone()),
            sparse_width: None,
            textures: None,
        };
        let k = Kernels::with_options(gpu, options).unwrap();
        assert_eq!(k.matmul_choice().reason, MatmulReason::Override);
        assert!(SHAPE_CLASSES.iter().all(|&(a, b)| k.matmul_variant(a, b) == forced));
    }
}

#[test]
fn matmul_variant_names_round_trip_and_unknown_names_are_refused() {
    for v in MatmulVariant::ALL {
        assert_eq!(v.name().parse::<MatmulVariant>().unwrap(), v);
    }
    let err = "fast".parse::<MatmulVariant>().unwrap_err().to_string();
    assert!(
        err.contains("`fast`") && err.contains("register") && err.contains("tiled"),
        "{err}"
    );
}

#[test]
fn matmul_refuses_mismatched_shapes() {
    let c = ctx();
    let (a, b, out) = (zeros(&[3, 4]), zeros(&[5, 2]), zeros(&[3, 2]));
    let err =
        c.k.matmul(&c.gpu, &a, Op::N, &b, Op::N, None, 1.0, &out)
            .err()
            .expect("must refuse");
    assert!(err.to_string().contains("inner sizes differ"), "{err}");
    let b = zeros(&[4, 2]);
    let wrong_out = zeros(&[2, 3]);
    assert!(c.k.matmul(&c.gpu, &a, Op::N, &b, Op::N, None, 1.0, &wrong_out).is_err());
}

#[test]
fn autotune_times_every_variant_per_shape_class_and_picks_the_fastest() {
    let c = ctx();
    let clock = std::time::Instant::now();
    let now = || clock.elapsed().as_secs_f64();
    let tune = pollster::block_on(autotune_matmul(&c.gpu, &c.k, (9, 7, 5), &now)).unwrap();
    assert_eq!(tune.shape, (9, 7, 5));
    assert_eq!(tune.gflops.len(), SHAPE_CLASSES.len());
    for (row, winner) in tune.gflops.iter().zip(tune.winners) {
        assert_eq!(row.len(), MatmulVariant::ALL.len());
        assert!(row.iter().all(|g| g.is_finite() && *g > 0.0), "{row:?}");
        let best = row.iter().cloned().fold(f64::MIN, f64::max);
        let at = MatmulVariant::ALL.iter().position(|&v| v == winner).unwrap();
        assert_eq!(row[at], best, "the winner is the fastest: {tune:?}");
    }
}

#[test]
fn a_cached_tune_is_found_for_its_adapter_only_and_a_corrupt_cache_is_named() {
    let dir = std::env::temp_dir().join(format!("mfr-sae-tune-test-{}", std::process::id()));
    let mut report = ctx().gpu.report.clone();
    let tune = MatmulTune {
        winners: [MatmulVariant::Tiled; 4],
        gflops: vec![vec![1.0; MatmulVariant::ALL.len()]; 4],
        shape: (1, 2, 3),
    };
    assert_eq!(matmul_cache::load(&dir, &report).unwrap(), None, "nothing cached yet");
    let stale = MatmulTune {
        gflops: vec![vec![1.0; MatmulVariant::ALL.len() - 1]; 4],
        ..tune.clone()
    };
    matmul_cache::save(&dir, &report, &stale).unwrap();
    assert_eq!(
        matmul_cache::load(&dir, &report).unwrap(),
        None,
        "a tune that did not time every variant is ignored"
    );
    let path = matmul_cache::save(&dir, &report, &tune).unwrap();
    assert_eq!(matmul_cache::load(&dir, &report).unwrap(), Some(tune.clone()));
    report.driver_info += " (another version)";
    assert_eq!(
        matmul_cache::load(&dir, &report).unwrap(),
        None,
        "another driver is another key"
    );
    std::fs::write(&path, "{ not json").unwrap();
    let err = matmul_cache::load(&dir, &report).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string()) && err.contains("--tune"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn read_u32(t: &Tensor<u32>) -> Vec<u32> {
    pollster::block_on(t.read(&ctx().gpu)).unwrap()
}

/// One of TopK's two flavours: every operand in storage buffers (one dispatch), or a and
/// the candidates read from textures (two dispatches; where m is a multiple of 64, else
/// the buffer kernel runs).
struct Flavour {
    name: &'static str,
    textures: bool,
    kernels: Kernels,
}

fn topk_flavours() -> &'static [Flavour; 2] {
    static FLAVOURS: OnceLock<[Flavour; 2]> = OnceLock::new();
    FLAVOURS.get_or_init(|| {
        let with = |name, textures| {
            let options = KernelOptions {
                textures: Some(textures),
                ..KernelOptions::default()
            };
            let kernels = Kernels::with_options(&ctx().gpu, options).unwrap();
            Flavour {
                name,
                textures,
                kernels,
            }
        };
        [with("buffers", false), with("textures", true)]
    })
}

/// What a TopK run read back: the dense code, indices and values, each where asked for,
/// and the dispatches it took.
struct TopKRun {
    z: Option<Vec<f64>>,
    idx: Option<Vec<u32>>,
    val: Option<Vec<f64>>,
    dispatches: usize,
}

/// Runs TopK of `a` [rows, m] in `flavour`; checks that the texture flavour ran where it
/// applies (m a multiple of 64, rows within one texture) and the buffer kernel elsewhere.
fn run_topk(flavour: &Flavour, a: &[f64], m: usize, k: usize, relu: bool, dense: bool, sparse: bool) -> TopKRun {
    let c = ctx();
    let rows = a.len() / m;
    let z = zeros(&[rows, m]);
    let (idx, val) = (
        Tensor::<u32>::zeros(&c.gpu, &[rows, k], "idx").unwrap(),
        zeros(&[rows, k]),
    );
    let out = TopK {
        instances: 1,
        z: dense.then_some(&z),
        sparse: sparse.then_some(SparseCode { idx: &idx, val: &val }),
    };
    let plan = flavour
        .kernels
        .topk(&c.gpu, &upload(&[rows, m], a), k, relu, out)
        .unwrap();
    let side = c.gpu.device.limits().max_texture_dimension_2d as usize;
    if flavour.textures && m.is_multiple_of(64) && rows <= side {
        assert_eq!(plan.len(), 2, "topk m {m}: the texture flavour's two dispatches");
    } else if !flavour.textures || !m.is_multiple_of(64) {
        assert_eq!(plan.len(), 1, "topk m {m}: the buffer kernel");
    }
    run(&plan.iter().collect::<Vec<_>>());
    TopKRun {
        z: dense.then(|| read(&z)),
        idx: sparse.then(|| read_u32(&idx)),
        val: sparse.then(|| read(&val)),
        dispatches: plan.len(),
    }
}

#[test]
fn topk_matches_reference_dense_and_sparse_with_and_without_relu() {
    // SHAPES, whose m are no multiples of 64, and two that are (the texture flavour).
    let shapes = SHAPES.iter().map(|&(rows, _, m)| (rows, m)).chain([(70, 64), (9, 128)]);
    for (seed, (rows, m)) in shapes.enumerate() {
        for k in [1, m.min(7), m.min(64), m] {
            for relu in [true, false] {
                let a = rounded(&normals(rows * m, 300 + seed as u64));
                let (wz, widx, wval) = r::topk(&a, m, k, relu);
                for flavour in topk_flavours() {
                    let what = format!("topk ({}) rows {rows} m {m} k {k} relu {relu}", flavour.name);
                    let both = run_topk(flavour, &a, m, k, relu, true, true);
                    assert_eq!(both.z.unwrap(), wz, "{what}: dense code");
                    assert_eq!(both.idx.unwrap(), widx, "{what}: indices");
                    assert_eq!(both.val.unwrap(), wval, "{what}: values");
                    // The dense path asks for the code alone: the same code, no sparse form.
                    let dense = run_topk(flavour, &a, m, k, relu, true, false);
                    assert_eq!(dense.z.unwrap(), wz, "{what}: dense code without the sparse form");
                    // The sparse path asks for the sparse form alone: the same form, no dense code.
                    let sparse = run_topk(flavour, &a, m, k, relu, false, true);
                    assert_eq!(sparse.idx.unwrap(), widx, "{what}: indices without the dense code");
                    assert_eq!(sparse.val.unwrap(), wval, "{what}: values without the dense code");
                }
            }
        }
    }
}

/// Rows beyond the device's texture height go into layers of a texture array: TopK there
/// is still exact, and a row count that no layer count divides runs the buffer kernel.
#[test]
fn topk_reads_rows_beyond_one_texture_from_layers() {
    let c = ctx();
    let side = c.gpu.device.limits().max_texture_dimension_2d as usize;
    let prime = (side + 1..)
        .find(|&n| (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0))
        .unwrap();
    let (m, k) = (64, 5);
    for (rows, dispatches) in [(2 * (side / 2 + 1), 2), (prime, 1)] {
        let a = rounded(&normals(rows * m, 330));
        let (wz, widx, wval) = r::topk(&a, m, k, true);
        let got = run_topk(&topk_flavours()[1], &a, m, k, true, true, true);
        assert_eq!(got.dispatches, dispatches, "rows {rows}: dispatches");
        assert!(got.z.unwrap() == wz, "rows {rows}: dense code");
        assert!(got.idx.unwrap() == widx, "rows {rows}: indices");
        assert!(got.val.unwrap() == wval, "rows {rows}: values");
    }
}

#[test]
fn topk_breaks_ties_towards_the_lower_index() {
    // m 70: the scalar candidate pass; m 72, k 16: the vec4 one (m a multiple of 4, ≥ 4k);
    // m 128: the texture flavour's vec4 pass, m 64 with k 64 its scalar one.
    for (m, k) in [(70, 64), (72, 16), (128, 30), (64, 64)] {
        // Row 0: all equal; row 1: a plateau of ties around the k-th place; row 2: all zero.
        let mut a = vec![0.5; m];
        a.extend((0..m).map(|j| if j % 3 == 0 { 1.0 } else { 0.25 }));
        a.extend(vec![0.0; m]);
        let (wz, widx, _) = r::topk(&a, m, k, true);
        for flavour in topk_flavours() {
            let name = flavour.name;
            let run = run_topk(flavour, &a, m, k, true, true, true);
            let got = run.idx.unwrap();
            assert_eq!(
                &got[..k],
                (0..k as u32).collect::<Vec<_>>().as_slice(),
                "{name} m {m}: equal values, lowest indices first"
            );
            assert_eq!(got, widx, "{name} m {m}: indices");
            assert_eq!(run.z.unwrap(), wz, "{name} m {m}: dense code");
        }
    }
}

/// The kernel first bounds the kept values from below by the least of some groups'
/// largest values (of k groups' maxima, or, where m is a multiple of 4 and m ≥ 4k, of
/// ceil(k / 4) groups' fourth-largest values); rows whose largest values crowd into one
/// group (ascending, descending, a block of large values) or sit exactly at that bound
/// must still come out exact.
#[test]
fn topk_is_exact_wherever_the_kept_values_sit_in_the_row() {
    // m 45: the scalar candidate pass; m 48: the vec4 one for k ≤ 12; m 64 and 128 the
    // texture flavour (vec4 for k ≤ 16 and 32).
    for m in [45, 48, 64, 128] {
        let mut a: Vec<f64> = (0..m).map(|j| j as f64).collect();
        a.extend((0..m).map(|j| -(j as f64)));
        a.extend((0..m).map(|j| if (20..29).contains(&j) { 5.0 + j as f64 } else { -1.0 }));
        a.extend((0..m).map(|j| if j % 9 == 0 { 2.0 } else { 1.0 }));
        a.extend((0..m).map(|j| if j % 16 < 4 { 3.0 } else { (j % 5) as f64 }));
        for k in [1, 4, 5, 9, 10, 12, 13, 16, 31, 32, 44, m] {
            let k = k.min(m);
            let (wz, widx, wval) = r::topk(&a, m, k, false);
            for flavour in topk_flavours() {
                let (name, got) = (flavour.name, run_topk(flavour, &a, m, k, false, true, true));
                assert_eq!(got.idx.unwrap(), widx, "{name} m {m} k {k}: indices");
                assert_eq!(got.val.unwrap(), wval, "{name} m {m} k {k}: values");
                assert_eq!(got.z.unwrap(), wz, "{name} m {m} k {k}: dense code");
            }
        }
    }
}

#[test]
fn topk_refuses_k_outside_one_to_m() {
    let c = ctx();
    let (a, z) = (zeros(&[2, 5]), zeros(&[2, 5]));
    let idx = Tensor::<u32>::zeros(&c.gpu, &[2, 6], "idx").unwrap();
    let val = zeros(&[2, 6]);
    assert!(c
        .k
        .topk(
            &c.gpu,
            &a,
            6,
            true,
            TopK {
                instances: 1,
                z: Some(&z),
                sparse: Some(SparseCode { idx: &idx, val: &val }),
            }
        )
        .is_err());
    let nothing = TopK {
        instances: 1,
        z: None,
        sparse: None,
    };
    assert!(
        c.k.topk(&c.gpu, &a, 2, true, nothing).is_err(),
        "a TopK that writes nothing"
    );
}

/// Runs BatchTopK on a [rows, m] from threshold `theta0` twice (the second run checks
/// that the select's state restarts) and compares z and both thresholds with the reference.
fn check_batch_topk(what: &str, a: &[f64], rows: usize, m: usize, k: usize, theta0: f64) {
    let c = ctx();
    let lr = 0.25;
    let (ga, z, theta) = (upload(&[rows, m], a), zeros(&[rows, m]), upload(&[1], &[theta0]));
    let scratch = BatchTopKScratch::new(&c.gpu).unwrap();
    let plan = c.k.batch_topk(&c.gpu, &ga, k, lr as f32, &scratch, &z, &theta).unwrap();
    let want = r::batch_topk(a, m, k);
    let mut want_theta = theta0;
    for run_no in 0..2 {
        run(&plan.iter().collect::<Vec<_>>());
        want_theta = r::batch_topk_threshold(want_theta, &want, lr);
        assert_eq!(read(&z), want, "{what}: code after run {run_no}");
        let got_theta = read(&theta)[0];
        assert!(
            (got_theta - want_theta).abs() <= 1e-6 * want_theta.abs().max(1.0),
            "{what}: threshold {got_theta} after run {run_no}, reference {want_theta}"
        );
    }
}

#[test]
fn batch_topk_matches_reference_on_odd_shapes_and_updates_the_threshold() {
    // (70, 130) spans three of the kernel's 4096-value tiles.
    let shapes = SHAPES.iter().map(|&(rows, _, m)| (rows, m)).chain([(70, 130)]);
    for (seed, (rows, m)) in shapes.enumerate() {
        for k in [1, m.min(3), m.min(40), m] {
            let a = rounded(&normals(rows * m, 600 + seed as u64));
            check_batch_topk(&format!("batch_topk rows {rows} m {m} k {k}"), &a, rows, m, k, 0.3);
        }
    }
}

#[test]
fn batch_topk_breaks_ties_towards_the_lower_flat_index() {
    let (rows, m, k) = (3, 70, 20);
    let n = rows * m;
    // All equal: the first rows·k flat indices are kept.
    check_batch_topk("all equal", &vec![0.5; n], rows, m, k, 0.0);
    let first: Vec<f64> = (0..n).map(|i| if i < rows * k { 0.5 } else { 0.0 }).collect();
    assert_eq!(r::batch_topk(&vec![0.5; n], m, k), first, "the reference's tie rule");
    // A plateau of ties across the rows·k-th place, with larger values spread around it.
    let plateau: Vec<f64> = (0..n).map(|i| if i % 7 == 0 { 2.0 } else { 0.75 }).collect();
    check_batch_topk("plateau", &plateau, rows, m, k, 0.1);
    // Fewer positive values than rows·k (negatives and −0 among them): all positives kept,
    // the threshold moves to the smallest one.
    let few: Vec<f64> = (0..n)
        .map(|i| match i % 9 {
            0 => 0.125 + i as f64 / 64.0,
            1 => -0.0,
            _ => -1.0,
        })
        .collect();
    check_batch_topk("fewer positives than rows·k", &few, rows, m, k, 0.2);
    // Nothing positive: z = 0 and the threshold stays where it was.
    check_batch_topk("nothing positive", &vec![-1.0; n], rows, m, k, 0.2);
}

#[test]
fn batch_topk_refuses_k_outside_one_to_m() {
    let c = ctx();
    let (a, z, theta) = (zeros(&[2, 5]), zeros(&[2, 5]), zeros(&[1]));
    let scratch = BatchTopKScratch::new(&c.gpu).unwrap();
    for k in [0, 6] {
        assert!(
            c.k.batch_topk(&c.gpu, &a, k, 0.01, &scratch, &z, &theta).is_err(),
            "k = {k}"
        );
    }
}

#[test]
fn relu_and_activation_backward_match_reference() {
    let c = ctx();
    for (seed, &(rows, _, m)) in SHAPES.iter().enumerate() {
        let a = rounded(&normals(rows * m, 400 + seed as u64));
        let dz = rounded(&normals(rows * m, 500 + seed as u64));
        let (ga, gz, gdz, gda) = (
            upload(&[rows, m], &a),
            zeros(&[rows, m]),
            upload(&[rows, m], &dz),
            zeros(&[rows, m]),
        );
        run(&[&c.k.relu(&c.gpu, &ga, &gz).unwrap()]);
        assert_eq!(read(&gz), r::relu(&a), "relu {rows}x{m}");
        // The backward pass of ReLU + L1, and of TopK without ReLU (negative codes).
        for (z, l1) in [(r::relu(&a), 0.25), (r::topk(&a, m, m.min(3), false).0, 0.0)] {
            let gz = upload(&[rows, m], &z);
            run(&[&c.k.act_backward(&c.gpu, &gz, &gdz, l1 as f32, &gda).unwrap()]);
            assert_close(
                &format!("act_backward {rows}x{m} l1 {l1}"),
                &read(&gda),
                &r::act_backward(&z, &dz, l1),
                TOL,
            );
        }
    }
}

#[test]
fn mse_gradient_and_row_errors_match_reference() {
    let c = ctx();
    for (seed, &(rows, cols, _)) in SHAPES.iter().enumerate() {
        let xhat = rounded(&normals(rows * cols, 600 + seed as u64));
        let tgt = rounded(&normals(rows * cols, 700 + seed as u64));
        let (grad, row_sq) = (zeros(&[rows, cols]), zeros(&[rows]));
        for coef in [1.0, 0.25] {
            let (gx, gt) = (upload(&[rows, cols], &xhat), upload(&[rows, cols], &tgt));
            run(&[&c.k.mse(&c.gpu, &gx, &gt, coef as f32, &grad, &row_sq).unwrap()]);
            let (_, wgrad, wsq) = r::mse(&xhat, &tgt, cols);
            let wgrad: Vec<f64> = wgrad.iter().map(|g| coef * g).collect();
            assert_close(
                &format!("mse grad {rows}x{cols} coef {coef}"),
                &read(&grad),
                &wgrad,
                TOL,
            );
            assert_close(&format!("mse rows {rows}x{cols}"), &read(&row_sq), &wsq, TOL);
        }
    }
}

#[test]
fn column_reductions_and_totals_match_reference() {
    let c = ctx();
    // SHAPES, and widths that are multiples of 4 but not of 16 (the vec4 path's edges).
    for (seed, &(rows, cols, _)) in SHAPES.iter().chain(&[(9, 20, 0), (3, 4, 0)]).enumerate() {
        // Sparse input, as a code's columns are.
        let src: Vec<f64> = rounded(&normals(rows * cols, 800 + seed as u64))
            .into_iter()
            .map(|v| if v > 0.3 { v } else { 0.0 })
            .collect();
        let gsrc = upload(&[rows, cols], &src);
        for op in [ColumnOp::Sum, ColumnOp::CenteredSquares] {
            let dst = zeros(&[cols]);
            let d = c.k.columns(&c.gpu, &gsrc, op, false, &dst).unwrap();
            run(&[&d]);
            let want = r::columns(&src, cols, op);
            assert_close(&format!("columns {op:?} {rows}x{cols}"), &read(&dst), &want, TOL);
            run(&[&d]);
            let acc = c.k.columns(&c.gpu, &gsrc, op, true, &dst).unwrap();
            run(&[&acc]);
            let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
            assert_close(&format!("columns {op:?} accumulated"), &read(&dst), &twice, TOL);
            let acc = zeros(&[8]);
            let t = c.k.total(&c.gpu, &dst, &acc, 3).unwrap();
            run(&[&t, &t]);
            let mut want_acc = vec![0.0; 8];
            want_acc[3] = 2.0 * twice.iter().sum::<f64>();
            assert_close(&format!("total {op:?}"), &read(&acc), &want_acc, TOL);
        }
    }
    // `totals`: slices that do not divide the values, run past the accumulator, or need more
    // workgroups than one dimension allows are refused, not dispatched.
    let (src, acc) = (zeros(&[12]), zeros(&[4]));
    for (slices, first) in [(5, 0), (4, 1), (0, 0)] {
        let err = c.k.totals(&c.gpu, &src, slices, &acc, first).err();
        assert!(err.is_some(), "{slices} slices from slot {first} were accepted");
    }
    let max = c.gpu.report.limits.max_compute_workgroups_per_dimension as usize;
    let (src, acc) = (zeros(&[max + 1]), zeros(&[max + 1]));
    let err = c.k.totals(&c.gpu, &src, max + 1, &acc, 0).err().unwrap().to_string();
    assert!(err.contains("fewer SAEs"), "{err}");
}

#[test]
fn step_totals_match_reference() {
    let c = ctx();
    // Slots in another order than the SAE's, so that a swapped slot shows.
    let slots = WindowSlots {
        squared_error: 3,
        aux_squared_error: 0,
        target_variance: 6,
        active: 1,
        abs_code: 2,
        reinit: 4,
    };
    // Lengths around the workgroup's 64 (strides, the tree's edges); counts whose statistic
    // lies on both sides of the threshold.
    for (seed, (rows, d, m, k)) in [(37, 5, 53, 8), (100, 64, 7, 1), (64, 130, 64, 64), (129, 1, 200, 3)]
        .into_iter()
        .enumerate()
    {
        let s = seed as u64;
        let row_sq: Vec<f64> = rounded(&normals(rows, 1900 + s)).iter().map(|v| v * v).collect();
        let aux_sq: Vec<f64> = rounded(&normals(rows, 2000 + s)).iter().map(|v| v * v).collect();
        let col_sq: Vec<f64> = rounded(&normals(d, 2100 + s)).iter().map(|v| v * v).collect();
        let mut stats: Vec<f64> = (0..m).map(|j| ((j * 7919 + seed) % (rows + 1)) as f64).collect();
        stats.extend(rounded(&normals(m, 2200 + s)).iter().map(|v| v.abs()));
        let (g_row, g_aux) = (upload(&[rows], &row_sq), upload(&[rows], &aux_sq));
        let (g_col, g_stats) = (upload(&[d], &col_sq), upload(&[2, m], &stats));
        let rate = k as f32 / m as f32;
        for (aux, deviation) in [(false, false), (true, true), (false, true)] {
            let mut prior = rounded(&normals(8, 2300 + s))
                .iter()
                .map(|v| v.abs())
                .collect::<Vec<_>>();
            prior[5] = 2.0;
            let acc = upload(&[8], &prior);
            let step = StepMetrics {
                instances: 1,
                row_sq: &g_row,
                aux_sq: aux.then_some(&g_aux),
                col_sq: &g_col,
                stats: &g_stats,
            };
            let dev = deviation.then_some(Deviation {
                batch: rows,
                rate,
                threshold: 2.5,
            });
            let dsp = c.k.window_totals(&c.gpu, step, dev, slots, &acc).unwrap();
            run(&[&dsp, &dsp]);
            let want_step = r::StepTotals {
                row_sq: &row_sq,
                aux_sq: aux.then_some(&aux_sq[..]),
                col_sq: &col_sq,
                stats: &stats,
                deviation: deviation.then_some((rows, rate as f64, 2.5)),
            };
            let want = r::window_totals(&r::window_totals(&prior, &want_step, slots), &want_step, slots);
            let what = format!("window totals rows {rows} d {d} m {m} aux {aux} deviation {deviation}");
            assert_close(&what, &read(&acc), &want, TOL);
            let got = read(&acc);
            assert!(
                (got[4] - want[4]).abs() <= TOL * want[4].max(1.0),
                "{what}: reinit statistic {} vs {}",
                got[4],
                want[4]
            );
            assert_eq!(got[5], want[5], "{what}: steps over the threshold");
        }
        // A slot outside the accumulator is refused.
        let step = StepMetrics {
            instances: 1,
            row_sq: &g_row,
            aux_sq: None,
            col_sq: &g_col,
            stats: &g_stats,
        };
        let far = WindowSlots { reinit: 7, ..slots };
        assert!(c.k.window_totals(&c.gpu, step, None, far, &zeros(&[8])).is_err());
    }
}

#[test]
fn row_normalisation_renormalisation_and_projection_match_reference() {
    let c = ctx();
    for (seed, &(_, cols, rows)) in SHAPES.iter().enumerate() {
        let mut w = rounded(&normals(rows * cols, 900 + seed as u64));
        w[..cols].iter_mut().for_each(|v| *v = 0.0); // a dead (zero) row stays zero
        let src = rounded(&normals(rows * cols, 1000 + seed as u64));
        let prior = rounded(&normals(rows * cols, 1100 + seed as u64));
        let gw = upload(&[rows, cols], &w);
        let (u, norms) = (zeros(&[rows, cols]), zeros(&[rows]));
        run(&[&c.k.rows_normalise(&c.gpu, &gw, &u, &norms).unwrap()]);
        let (wu, wn) = r::rows_normalise(&w, cols);
        assert_close(&format!("rows_normalise u {rows}x{cols}"), &read(&u), &wu, TOL);
        assert_close(&format!("rows_normalise norms {rows}x{cols}"), &read(&norms), &wn, TOL);
        // project with norms, accumulating onto a prior gradient (the tied case)
        let dst = upload(&[rows, cols], &prior);
        let gsrc = upload(&[rows, cols], &src);
        let uu = upload(&[rows, cols], &rounded(&wu));
        let nn = upload(&[rows], &rounded(&wn));
        run(&[&c.k.project(&c.gpu, &gsrc, &uu, Some(&nn), true, &dst).unwrap()]);
        let proj = r::project(&src, &rounded(&wu), Some(&rounded(&wn)), cols);
        let want: Vec<f64> = proj.iter().zip(&prior).map(|(a, b)| a + b).collect();
        assert_close(&format!("project+norms {rows}x{cols}"), &read(&dst), &want, TOL);
        // project onto the tangent space of unit rows, overwriting (the standard case)
        run(&[&c.k.project(&c.gpu, &gsrc, &uu, None, false, &dst).unwrap()]);
        assert_close(
            &format!("project unit {rows}x{cols}"),
            &read(&dst),
            &r::project(&src, &rounded(&wu), None, cols),
            TOL,
        );
        run(&[&c.k.renormalise(&c.gpu, &gw).unwrap()]);
        assert_close(&format!("renormalise {rows}x{cols}"), &read(&gw), &wu, TOL);
    }
}

#[test]
fn adam_matches_reference_over_several_steps() {
    let c = ctx();
    let h = AdamHyper::default();
    let step = c.gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: STEP_UNIFORM_BYTES,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    // One tensor alone, and two in one dispatch: sizes that are and are not multiples of 4
    // (the second tensor starts at the first's last vec4, padded or not).
    let sizes: Vec<Vec<usize>> = SHAPES
        .iter()
        .map(|&(rows, cols, _)| vec![rows * cols])
        .chain([vec![37, 5], vec![20, 53], vec![1, 8], vec![64, 3]])
        .collect();
    for (seed, ns) in sizes.iter().enumerate() {
        struct One {
            p: Vec<f64>,
            m: Vec<f64>,
            v: Vec<f64>,
            gpu: [Tensor<f32>; 4],
        }
        let mut ts: Vec<One> = ns
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let p = rounded(&normals(n, 1200 + 10 * seed as u64 + i as u64));
                let gpu = [upload(&[n], &p), zeros(&[n]), zeros(&[n]), zeros(&[n])];
                One {
                    p,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                    gpu,
                }
            })
            .collect();
        fn slot(o: &One) -> AdamSlot<'_> {
            AdamSlot {
                param: &o.gpu[0],
                grad: &o.gpu[1],
                m: &o.gpu[2],
                v: &o.gpu[3],
            }
        }
        let d = c.k.adam(&c.gpu, h, &step, slot(&ts[0]), ts.get(1).map(slot)).unwrap();
        let lr = 0.01;
        for t in 1..=5u64 {
            c.gpu
                .queue
                .write_buffer(&step, 0, bytemuck::cast_slice(&[t as f32, lr as f32, 0.0, 0.0]));
            for (i, o) in ts.iter_mut().enumerate() {
                let g = rounded(&normals(o.p.len(), 1300 + 100 * seed as u64 + 10 * i as u64 + t));
                o.gpu[1].write(&c.gpu, &f32s(&g)).unwrap();
                r::adam(&mut o.p, &g, &mut o.m, &mut o.v, t, lr, h);
            }
            run(&[&d]);
        }
        for (i, o) in ts.iter().enumerate() {
            let what = format!("adam sizes {ns:?} tensor {i}");
            assert_close(&format!("{what} param"), &read(&o.gpu[0]), &o.p, TOL);
            assert_close(&format!("{what} m"), &read(&o.gpu[2]), &o.m, TOL);
            assert_close(&format!("{what} v"), &read(&o.gpu[3]), &o.v, 1e-4);
        }
    }
}

#[test]
fn add_row_vector_matches_reference() {
    let c = ctx();
    for (seed, &(rows, cols, _)) in SHAPES.iter().enumerate() {
        let x = rounded(&normals(rows * cols, 1400 + seed as u64));
        let v = rounded(&normals(cols, 1500 + seed as u64));
        let out = zeros(&[rows, cols]);
        run(&[&c
            .k
            .add_row_vector(&c.gpu, &upload(&[rows, cols], &x), &upload(&[cols], &v), -1.0, &out)
            .unwrap()]);
        assert_close(
            &format!("add_row_vector {rows}x{cols}"),
            &read(&out),
            &r::add_row_vector(&x, &v, -1.0),
            TOL,
        );
    }
}

#[test]
fn axpby_dead_latent_mask_latent_metrics_and_firing_clock_match_reference() {
    let c = ctx();
    for (seed, &(rows, _, m)) in SHAPES.iter().enumerate() {
        let a = rounded(&normals(rows * m, 1600 + seed as u64));
        let b = rounded(&normals(rows * m, 1700 + seed as u64));
        let out = zeros(&[rows, m]);
        run(&[&c
            .k
            .axpby(
                &c.gpu,
                0.5,
                &upload(&[rows, m], &a),
                -2.0,
                &upload(&[rows, m], &b),
                &out,
            )
            .unwrap()]);
        let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| 0.5 * x - 2.0 * y).collect();
        assert_close(&format!("axpby {rows}x{m}"), &read(&out), &want, TOL);
        // Latent j has been silent for 100·j tokens; dead from 300 on.
        let since: Vec<f64> = (0..m).map(|j| 100.0 * j as f64).collect();
        let gsince = upload(&[m], &since);
        run(&[&c
            .k
            .mask_dead(&c.gpu, &upload(&[rows, m], &a), &gsince, 300.0, &out)
            .unwrap()]);
        assert_eq!(
            read(&out),
            r::mask_dead(&a, &since, 300.0)
                .iter()
                .map(|&v| v as f32 as f64)
                .collect::<Vec<_>>()
        );
        // A step where latents with even index fired (with values of both signs), then one
        // where none did: the per-latent metrics and the firing clock.
        let fired: Vec<f64> = (0..rows * m)
            .map(|i| if (i % m) % 2 == 0 { a[i] } else { 0.0 })
            .collect();
        let firing = rounded(&normals(m, 1800 + seed as u64));
        let (gstats, gfiring) = (zeros(&[2, m]), upload(&[m], &firing));
        let (mut since, mut firing) = (since, firing);
        for z in [fired, vec![0.0; rows * m]] {
            let gz = upload(&[rows, m], &z);
            run(&[&c
                .k
                .latent_stats(&c.gpu, CodeOf::Dense(&gz), &gstats, &gfiring, &gsince)
                .unwrap()]);
            let (stats, f, s) = r::latent_stats(&z, &firing, &since);
            assert_close(&format!("latent stats {rows}x{m}"), &read(&gstats), &stats, TOL);
            assert_close(&format!("firing counts {rows}x{m}"), &read(&gfiring), &f, TOL);
            assert_eq!(read(&gsince), s, "firing clock {rows}x{m}");
            (firing, since) = (f, s);
        }
    }
}
