//! The sparse TopK kernels against their f64 references on odd shapes, with ties
//! and rows whose kept values a ReLU clipped to 0; the sparse references against
//! the dense ones (the same gradient); and a sparse against a dense training run.

mod common;

use common::*;
use mfr_sae::gpu::Tensor;
use mfr_sae::kernels::{CodeOf, ColumnOp, Csc, KernelOptions, Kernels, MmcsForm, Op, SparseCode, SparseWidth};
use mfr_sae::mfr::MfrConfig;
use mfr_sae::model::{Activation, Architecture, AuxK, SaeConfig, SaeWeights, StepPath};
use mfr_sae::reference::{self as r, RefSae};
use mfr_sae::train::{Ensemble, EnsembleConfig};

const TOL: f64 = 1e-5;

/// The kernels with each decode and scatter width forced (by shape, these small cases
/// would all take 16 columns an invocation).
fn width_kernels() -> &'static [(SparseWidth, Kernels)] {
    static K: std::sync::OnceLock<Vec<(SparseWidth, Kernels)>> = std::sync::OnceLock::new();
    K.get_or_init(|| {
        [SparseWidth::Sixteen, SparseWidth::ThirtyTwo]
            .into_iter()
            .map(|w| {
                let options = KernelOptions {
                    sparse_width: Some(w),
                    ..KernelOptions::default()
                };
                (w, Kernels::with_options(&ctx().gpu, options).unwrap())
            })
            .collect()
    })
}

#[test]
fn the_decode_and_scatter_width_follows_the_shape() {
    assert_eq!(
        SparseWidth::for_shape(128, 32),
        SparseWidth::Sixteen,
        "the page's default run"
    );
    assert_eq!(
        SparseWidth::for_shape(1024, 256),
        SparseWidth::ThirtyTwo,
        "the synthetic decode"
    );
    assert_eq!(
        SparseWidth::for_shape(512, 256),
        SparseWidth::ThirtyTwo,
        "the synthetic scatter"
    );
    assert_eq!(SparseWidth::for_shape(4095, 32), SparseWidth::Sixteen);
}

fn read_u32(t: &Tensor<u32>) -> Vec<u32> {
    pollster::block_on(t.read(&ctx().gpu)).unwrap()
}

/// Pre-activations [rows, m] with a row of ties (all equal) and a row of negatives
/// (every kept value clipped to 0 under ReLU), else Gaussian.
fn pre_activations(rows: usize, m: usize, seed: u64) -> Vec<f64> {
    let mut a = rounded(&normals(rows * m, seed));
    a[..m].iter_mut().for_each(|v| *v = 0.5);
    if rows > 1 {
        a[m..2 * m].iter_mut().for_each(|v| *v = -v.abs() - 0.1);
    }
    a
}

/// k values to try for m latents: 1, 5 and m.
fn ks(m: usize) -> Vec<usize> {
    let mut v = vec![1, 5.min(m), m];
    v.dedup();
    v
}

/// Every case: (rows, d, m, k, relu), with the TopK of `pre_activations`.
struct Case {
    rows: usize,
    d: usize,
    m: usize,
    k: usize,
    relu: bool,
    z: Vec<f64>,
    idx: Vec<u32>,
    val: Vec<f64>,
}

/// Shapes whose d is a multiple of 4 (the kernels' vec4 path) but not of 16 (a partial
/// last block of columns), beside `SHAPES` (one multiple of 16, the rest the scalar path).
const ALIGNED: &[(usize, usize, usize)] = &[(9, 20, 11), (3, 4, 5), (17, 52, 40)];

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (seed, &(rows, d, m)) in SHAPES.iter().chain(ALIGNED).enumerate() {
        for k in ks(m) {
            for relu in [true, false] {
                let (z, idx, val) = r::topk(&pre_activations(rows, m, 10 + seed as u64), m, k, relu);
                out.push(Case {
                    rows,
                    d,
                    m,
                    k,
                    relu,
                    z,
                    idx,
                    val,
                });
            }
        }
    }
    out
}

impl Case {
    fn what(&self) -> String {
        format!(
            "rows {} d {} m {} k {} relu {}",
            self.rows, self.d, self.m, self.k, self.relu
        )
    }

    fn upload(&self) -> (Tensor<u32>, Tensor<f32>) {
        let idx = Tensor::from_slice(&ctx().gpu, &[self.rows, self.k], &self.idx, "idx").unwrap();
        (idx, upload(&[self.rows, self.k], &self.val))
    }
}

#[test]
fn the_cases_include_ties_and_clipped_rows() {
    let cs = cases();
    assert!(cs
        .iter()
        .any(|c| c.relu && c.rows > 1 && c.val[c.k..2 * c.k].iter().all(|&v| v == 0.0)));
    let tie = cs.iter().find(|c| c.m > 5 && c.k == 5).unwrap();
    assert_eq!(&tie.idx[..5], &[0, 1, 2, 3, 4], "ties go to the lower index");
}

#[test]
fn sparse_decode_matches_its_reference_and_the_dense_product() {
    let c = ctx();
    for ((width, k), (n, case)) in width_kernels()
        .iter()
        .flat_map(|wk| cases().into_iter().enumerate().map(move |nc| (wk, nc)))
    {
        let (rows, d, m, kk) = (case.rows, case.d, case.m, case.k);
        let dict = rounded(&normals(m * d, 100 + n as u64));
        let bias = rounded(&normals(d, 200 + n as u64));
        let want = r::sparse_decode(&case.idx, &case.val, kk, &dict, d, Some(&bias));
        let dense = r::add_row_vector(&r::matmul(&case.z, (rows, m), Op::N, &dict, (m, d), Op::N), &bias, 1.0);
        assert_close(&format!("reference decode {}", case.what()), &want, &dense, 1e-12);
        let (idx, val) = case.upload();
        let code = SparseCode { idx: &idx, val: &val };
        let (gdict, out) = (upload(&[m, d], &dict), zeros(&[rows, d]));
        run(&[&k
            .sparse_decode(&c.gpu, code, &gdict, Some(&upload(&[d], &bias)), &out)
            .unwrap()]);
        assert_close(
            &format!("decode+bias {width:?} {}", case.what()),
            &read(&out),
            &want,
            TOL,
        );
        run(&[&k.sparse_decode(&c.gpu, code, &gdict, None, &out).unwrap()]);
        let plain = r::sparse_decode(&case.idx, &case.val, kk, &dict, d, None);
        assert_close(&format!("decode {width:?} {}", case.what()), &read(&out), &plain, TOL);
    }
}

#[test]
fn sparse_code_gradient_matches_its_reference_and_the_dense_backward() {
    let c = ctx();
    for (n, case) in cases().iter().enumerate() {
        let (rows, d, m, k) = (case.rows, case.d, case.m, case.k);
        let dict = rounded(&normals(m * d, 300 + n as u64));
        let g = rounded(&normals(rows * d, 400 + n as u64));
        let want = r::sparse_code_gradient(&case.idx, &case.val, k, &dict, &g, d);
        // The dense backward: dz = g · dictᵀ, masked by the code; zero off the active set.
        let dense = r::act_backward(&case.z, &r::matmul(&g, (rows, d), Op::N, &dict, (m, d), Op::T), 0.0);
        let gathered: Vec<f64> = (0..rows * k)
            .map(|e| dense[(e / k) * m + case.idx[e] as usize])
            .collect();
        assert_close(
            &format!("reference code gradient {}", case.what()),
            &want,
            &gathered,
            1e-12,
        );
        let scattered = r::sparse_scatter(&case.idx, &want, k, &vec![1.0; rows], 1, m, false);
        let per_latent = r::columns(&dense, m, ColumnOp::Sum);
        assert_close(
            "the dense gradient is zero off the active set",
            &scattered,
            &per_latent,
            1e-12,
        );
        let (idx, val) = case.upload();
        let dval = upload(&[rows, k], &vec![7.0; rows * k]); // stale values must be overwritten
        let d_ = c.k.sparse_code_gradient(
            &c.gpu,
            SparseCode { idx: &idx, val: &val },
            &upload(&[m, d], &dict),
            &upload(&[rows, d], &g),
            &dval,
        );
        run(&[&d_.unwrap()]);
        let got = read(&dval);
        assert_close(&format!("code gradient {}", case.what()), &got, &want, TOL);
        for (e, v) in case.val.iter().enumerate() {
            if *v == 0.0 {
                assert_eq!(got[e], 0.0, "{}: a clipped latent passes no gradient", case.what());
            }
        }
    }
}

#[test]
fn csc_index_matches_reference_exactly() {
    let c = ctx();
    for case in cases() {
        let (idx, _) = case.upload();
        let csc = Csc::new(&c.gpu, case.rows, case.k, case.m).unwrap();
        let build = c.k.csc(&c.gpu, &idx, &csc).unwrap();
        // Twice: a rebuild must not see the previous step's positions or counts.
        run(&build.iter().chain(&build).collect::<Vec<_>>());
        let (offsets, entries) = r::csc(&case.idx, case.m);
        assert_eq!(read_u32(csc.offsets()), offsets, "{}: offsets", case.what());
        assert_eq!(read_u32(csc.entries()), entries, "{}: entries", case.what());
    }
}

/// The index is built per block of 64 rows: rows spanning several blocks, the last one
/// partial, keep each latent's entries in row order across the blocks. The offsets are
/// scanned in 256 runs of latents: m below 256 (empty runs), just above it (runs of 2, the
/// last short) and several times it.
#[test]
fn csc_index_spans_row_blocks_in_row_order() {
    let c = ctx();
    for (rows, m, k) in [(150, 23, 4), (129, 5, 5), (65, 1, 1), (70, 257, 9), (200, 1000, 33)] {
        let (_, idx, _) = r::topk(&pre_activations(rows, m, 31), m, k, true);
        let gidx = Tensor::from_slice(&c.gpu, &[rows, k], &idx, "idx").unwrap();
        let csc = Csc::new(&c.gpu, rows, k, m).unwrap();
        run(&c.k.csc(&c.gpu, &gidx, &csc).unwrap().iter().collect::<Vec<_>>());
        let (offsets, entries) = r::csc(&idx, m);
        assert_eq!(read_u32(csc.offsets()), offsets, "rows {rows} m {m} k {k}: offsets");
        assert_eq!(read_u32(csc.entries()), entries, "rows {rows} m {m} k {k}: entries");
    }
}

#[test]
fn sparse_scatter_matches_its_reference_and_the_dense_product() {
    let c = ctx();
    for ((width, kern), (n, case)) in width_kernels()
        .iter()
        .flat_map(|wk| cases().into_iter().enumerate().map(move |nc| (wk, nc)))
    {
        let (rows, d, m, k) = (case.rows, case.d, case.m, case.k);
        let s = rounded(&normals(rows * k, 500 + n as u64));
        let y = rounded(&normals(rows * d, 600 + n as u64));
        let prior = rounded(&normals(m * d, 700 + n as u64));
        // Dense: Sᵀ y with S [rows, m] holding s at the active entries.
        let mut dense_s = vec![0.0; rows * m];
        for e in 0..rows * k {
            dense_s[(e / k) * m + case.idx[e] as usize] = s[e];
        }
        let want = r::sparse_scatter(&case.idx, &s, k, &y, d, m, false);
        let dense = r::matmul(&dense_s, (rows, m), Op::T, &y, (rows, d), Op::N);
        assert_close(&format!("reference scatter {}", case.what()), &want, &dense, 1e-12);
        let want_t = r::sparse_scatter(&case.idx, &s, k, &y, d, m, true);
        let dense_t = r::matmul(&y, (rows, d), Op::T, &dense_s, (rows, m), Op::N);
        assert_close(
            &format!("reference scatter transposed {}", case.what()),
            &want_t,
            &dense_t,
            1e-12,
        );

        let (idx, _) = case.upload();
        let csc = Csc::new(&c.gpu, rows, k, m).unwrap();
        run(&c.k.csc(&c.gpu, &idx, &csc).unwrap().iter().collect::<Vec<_>>());
        let (gs, gy) = (upload(&[rows, k], &s), upload(&[rows, d], &y));
        let out = upload(&[m, d], &prior);
        run(&[&kern
            .sparse_scatter(&c.gpu, &csc, &gs, &gy, false, false, &out, None)
            .unwrap()]);
        assert_close(&format!("scatter {width:?} {}", case.what()), &read(&out), &want, TOL);
        run(&[&kern
            .sparse_scatter(&c.gpu, &csc, &gs, &gy, false, true, &out, None)
            .unwrap()]);
        let twice: Vec<f64> = want.iter().map(|v| 2.0 * v).collect();
        assert_close(
            &format!("scatter accumulated {width:?} {}", case.what()),
            &read(&out),
            &twice,
            TOL,
        );
        let out_t = zeros(&[d, m]);
        run(&[&kern
            .sparse_scatter(&c.gpu, &csc, &gs, &gy, true, false, &out_t, None)
            .unwrap()]);
        assert_close(
            &format!("scatter transposed {width:?} {}", case.what()),
            &read(&out_t),
            &want_t,
            TOL,
        );
        // With the bias sums: out as before, and sums [m] the dense code's column sums bit
        // for bit (the dense `columns` kernel's), overwritten and accumulated.
        let bias_prior = rounded(&normals(m, 710 + n as u64));
        let (sums, dense_sums) = (upload(&[m], &bias_prior), upload(&[m], &bias_prior));
        let g_dense_s = upload(&[rows, m], &dense_s);
        for accumulate in [false, true] {
            let out = upload(&[m, d], &prior);
            run(&[
                &kern
                    .sparse_scatter(&c.gpu, &csc, &gs, &gy, false, accumulate, &out, Some(&sums))
                    .unwrap(),
                &c.k.columns(&c.gpu, &g_dense_s, ColumnOp::Sum, accumulate, &dense_sums)
                    .unwrap(),
            ]);
            let what = format!("scatter with sums, accumulate {accumulate} {width:?} {}", case.what());
            let base: Vec<f64> = if accumulate {
                prior.iter().zip(&want).map(|(p, w)| p + w).collect()
            } else {
                want.clone()
            };
            assert_close(&what, &read(&out), &base, TOL);
            assert_eq!(read(&sums), read(&dense_sums), "{what}: sums, sparse vs dense");
            if !accumulate {
                assert_close(&what, &read(&sums), &r::columns(&dense_s, m, ColumnOp::Sum), TOL);
            }
        }
    }
}

/// The decode and the code gradient reading the dictionary (and g) and the scatter reading y
/// from textures (where their rows are multiples of 64 values) give the storage-buffer
/// kernels' bits — the decode with and without bias; the code gradient with clipped
/// entries; the scatter plain, accumulated, transposed and with the bias sums — at both
/// widths; where the operands do not fit a texture they run the buffer kernels.
#[test]
fn the_texture_sparse_kernels_give_the_buffer_kernels_bits() {
    let c = ctx();
    let with = |texture: bool, width: SparseWidth| {
        let options = KernelOptions {
            sparse_width: Some(width),
            textures: Some(texture),
            ..KernelOptions::default()
        };
        Kernels::with_options(&c.gpu, options).unwrap()
    };
    for width in [SparseWidth::Sixteen, SparseWidth::ThirtyTwo] {
        let (buffer, texture) = (with(false, width), with(true, width));
        for (n, &(rows, d, m, k)) in [(37usize, 64usize, 53usize, 5usize), (70, 128, 40, 8), (9, 20, 11, 3)]
            .iter()
            .enumerate()
        {
            let (_, idx, _) = r::topk(&pre_activations(rows, m, 80 + n as u64), m, k, true);
            let s = rounded(&normals(rows * k, 800 + n as u64));
            let y = rounded(&normals(rows * d, 810 + n as u64));
            let prior = rounded(&normals(m * d, 820 + n as u64));
            let gidx = Tensor::from_slice(&c.gpu, &[rows, k], &idx, "idx").unwrap();
            let csc = Csc::new(&c.gpu, rows, k, m).unwrap();
            run(&c.k.csc(&c.gpu, &gidx, &csc).unwrap().iter().collect::<Vec<_>>());
            let (gs, gy) = (upload(&[rows, k], &s), upload(&[rows, d], &y));
            let what = format!("{width:?} rows {rows} d {d} m {m} k {k}");
            let (gdict, gbias) = (upload(&[m, d], &prior), upload(&[d], &y[..d]));
            let (kernel_buffer, kernel_texture) = if d % 64 == 0 {
                ("sparse/decode", "sparse_texture/decode")
            } else {
                ("sparse/decode", "sparse/decode")
            };
            // The code gradient: g [rows, d], some kept values 0 (they pass nothing).
            let clipped: Vec<f64> = s
                .iter()
                .enumerate()
                .map(|(e, &v)| if e % 3 == 0 { 0.0 } else { v })
                .collect();
            let gval = upload(&[rows, k], &clipped);
            let mut got = Vec::new();
            for kern in [&buffer, &texture] {
                let dval = zeros(&[rows, k]);
                let code = SparseCode { idx: &gidx, val: &gval };
                let dispatch = kern.sparse_code_gradient(&c.gpu, code, &gdict, &gy, &dval).unwrap();
                run(&[&dispatch]);
                got.push((dispatch.kernel(), read(&dval)));
            }
            let case = format!("code gradient {what}");
            let texture_kernel = if d % 64 == 0 {
                "sparse_code_gradient_texture/code_gradient"
            } else {
                "sparse_code_gradient/code_gradient"
            };
            assert_eq!(
                (got[0].0.as_str(), got[1].0.as_str()),
                ("sparse_code_gradient/code_gradient", texture_kernel),
                "{case}"
            );
            assert_eq!(got[0].1, got[1].1, "{case}: buffer vs texture");
            let want: Vec<f64> = (0..rows * k)
                .map(|e| {
                    let (row, j) = (e / k, idx[e] as usize);
                    let dot: f64 = (0..d).map(|c| y[row * d + c] * prior[j * d + c]).sum();
                    if clipped[e] == 0.0 {
                        0.0
                    } else {
                        dot
                    }
                })
                .collect();
            assert_close(&case, &got[1].1, &want, TOL);
            for bias in [None, Some(&gbias)] {
                let mut got = Vec::new();
                for kern in [&buffer, &texture] {
                    let out = zeros(&[rows, d]);
                    let code = SparseCode { idx: &gidx, val: &gs };
                    let dispatch = kern.sparse_decode(&c.gpu, code, &gdict, bias, &out).unwrap();
                    run(&[&dispatch]);
                    got.push((dispatch.kernel(), read(&out)));
                }
                let case = format!("decode {what} bias {}", bias.is_some());
                assert_eq!(
                    (got[0].0.as_str(), got[1].0.as_str()),
                    (kernel_buffer, kernel_texture),
                    "{case}"
                );
                assert_eq!(got[0].1, got[1].1, "{case}: buffer vs texture");
                let want = r::sparse_decode(&idx, &s, k, &prior, d, bias.map(|_| &y[..d]));
                assert_close(&case, &got[1].1, &want, TOL);
            }
            for (transposed, accumulate, with_sums) in [
                (false, false, false),
                (false, true, true),
                (true, false, false),
                (true, true, false),
            ] {
                let out_shape = if transposed { [d, m] } else { [m, d] };
                let mut got = Vec::new();
                for kern in [&buffer, &texture] {
                    let (out, sums) = (upload(&out_shape, &prior), upload(&[m], &prior[..m]));
                    let dispatch = kern
                        .sparse_scatter(
                            &c.gpu,
                            &csc,
                            &gs,
                            &gy,
                            transposed,
                            accumulate,
                            &out,
                            with_sums.then_some(&sums),
                        )
                        .unwrap();
                    run(&[&dispatch]);
                    got.push((dispatch.kernel(), read(&out), read(&sums)));
                }
                let case = format!("{what} transposed {transposed} accumulate {accumulate} sums {with_sums}");
                let texture_kernel = if d % 64 == 0 {
                    "sparse_scatter_texture/scatter"
                } else {
                    "sparse_scatter/scatter"
                };
                assert_eq!(got[0].0, "sparse_scatter/scatter", "{case}");
                assert_eq!(got[1].0, texture_kernel, "{case}");
                assert_eq!(got[0].1, got[1].1, "{case}: out, buffer vs texture");
                assert_eq!(got[0].2, got[1].2, "{case}: sums, buffer vs texture");
                let want = r::sparse_scatter(&idx, &s, k, &y, d, m, transposed);
                let want: Vec<f64> = if accumulate {
                    prior.iter().zip(&want).map(|(p, w)| p + w).collect()
                } else {
                    want
                };
                assert_close(&case, &got[1].1, &want, TOL);
            }
        }
    }
}

#[test]
fn sparse_latent_metrics_equal_the_dense_codes_bit_for_bit() {
    let c = ctx();
    for case in cases() {
        let (rows, m, k) = (case.rows, case.m, case.k);
        let (idx, val) = case.upload();
        let csc = Csc::new(&c.gpu, rows, k, m).unwrap();
        run(&c.k.csc(&c.gpu, &idx, &csc).unwrap().iter().collect::<Vec<_>>());
        let z = upload(&[rows, m], &case.z);
        // The step's per-latent metrics and firing clock from the sparse form, twice (the
        // second step sees the first's clock), against the dense code's.
        let since: Vec<f64> = (0..m).map(|j| (j % 3) as f64 * 50.0).collect();
        let firing = rounded(&normals(m, 810));
        let sparse = (zeros(&[2, m]), upload(&[m], &firing), upload(&[m], &since));
        let dense = (zeros(&[2, m]), upload(&[m], &firing), upload(&[m], &since));
        for _ in 0..2 {
            run(&[
                &c.k.latent_stats(
                    &c.gpu,
                    CodeOf::Sparse { csc: &csc, val: &val },
                    &sparse.0,
                    &sparse.1,
                    &sparse.2,
                )
                .unwrap(),
                &c.k.latent_stats(&c.gpu, CodeOf::Dense(&z), &dense.0, &dense.1, &dense.2)
                    .unwrap(),
            ]);
            let what = format!("latent stats {}", case.what());
            assert_eq!(read(&sparse.0), read(&dense.0), "{what}: sparse vs dense");
            assert_eq!(read(&sparse.1), read(&dense.1), "{what}: firing, sparse vs dense");
            assert_eq!(read(&sparse.2), read(&dense.2), "{what}: clock, sparse vs dense");
        }
        let (stats, f, once) = r::latent_stats(&case.z, &firing, &since);
        let (_, f, twice) = r::latent_stats(&case.z, &f, &once);
        assert_close(&format!("latent stats {}", case.what()), &read(&sparse.0), &stats, TOL);
        assert_close(&format!("firing {}", case.what()), &read(&sparse.1), &f, TOL);
        assert_eq!(read(&sparse.2), twice, "firing clock {}", case.what());
    }
}

#[test]
fn sparse_kernels_refuse_mismatched_shapes() {
    let c = ctx();
    let idx = Tensor::<u32>::zeros(&c.gpu, &[4, 2], "idx").unwrap();
    let (val, bad_val) = (zeros(&[4, 2]), zeros(&[4, 3]));
    let dict = zeros(&[6, 3]);
    let err =
        c.k.sparse_decode(
            &c.gpu,
            SparseCode {
                idx: &idx,
                val: &bad_val,
            },
            &dict,
            None,
            &zeros(&[4, 3]),
        )
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("val"), "{err}");
    let code = SparseCode { idx: &idx, val: &val };
    assert!(c.k.sparse_decode(&c.gpu, code, &dict, None, &zeros(&[4, 4])).is_err());
    assert!(c
        .k
        .sparse_code_gradient(&c.gpu, code, &dict, &zeros(&[3, 3]), &val)
        .is_err());
    let csc = Csc::new(&c.gpu, 4, 2, 6).unwrap();
    assert!(c
        .k
        .csc(&c.gpu, &Tensor::<u32>::zeros(&c.gpu, &[4, 3], "idx").unwrap(), &csc)
        .is_err());
    assert!(c
        .k
        .sparse_scatter(&c.gpu, &csc, &val, &zeros(&[5, 3]), false, false, &dict, None)
        .is_err());
    assert!(c
        .k
        .sparse_scatter(&c.gpu, &csc, &val, &zeros(&[4, 3]), true, false, &dict, None)
        .is_err());
}

fn topk_cfg(arch: Architecture, k: usize, paper_exact: bool) -> SaeConfig {
    SaeConfig {
        paper_exact,
        ..SaeConfig::new(arch, Activation::TopK { k }, 19, 53, 37, 1e-3)
    }
}

/// The reference pass's gradients rebuilt from the sparse reference functions only:
/// decode by gather, the code gradient at the active latents, weight gradients by scatter.
fn sparse_reference_gradients(sae: &RefSae, x: &[f64]) -> Vec<Vec<f64>> {
    let c = sae.cfg;
    let (b, d, m) = (c.batch, c.d_in, c.d_sae);
    let Activation::TopK { k } = c.activation else {
        unreachable!("TopK only")
    };
    let (_, idx, val) = r::topk(&sae.pre_activation(x), m, k, !c.paper_exact);
    let (dict, norms) = sae.dictionary();
    let ones = vec![1.0; b];
    let p = &sae.params;
    match c.arch {
        Architecture::Tied => {
            let xhat = r::sparse_decode(&idx, &val, k, &dict, d, None);
            let (_, g, _) = r::mse(&xhat, x, d);
            let dval = r::sparse_code_gradient(&idx, &val, k, &dict, &g, d);
            let du = r::sparse_scatter(&idx, &val, k, &g, d, m, false);
            let through = r::project(&du, &dict, norms.as_deref(), d);
            let dw = r::sparse_scatter(&idx, &dval, k, x, d, m, false);
            let dw: Vec<f64> = dw.iter().zip(&through).map(|(a, b)| a + b).collect();
            vec![dw, r::sparse_scatter(&idx, &dval, k, &ones, 1, m, false)]
        }
        Architecture::Standard => {
            let xc = r::add_row_vector(x, &p[3], -1.0);
            let xhat = r::sparse_decode(&idx, &val, k, &dict, d, Some(&p[3]));
            let (_, g, _) = r::mse(&xhat, x, d);
            let dval = r::sparse_code_gradient(&idx, &val, k, &dict, &g, d);
            let d_b_enc = r::sparse_scatter(&idx, &dval, k, &ones, 1, m, false);
            let through_enc = r::matmul(&d_b_enc, (1, m), Op::N, &p[0], (d, m), Op::T);
            vec![
                r::sparse_scatter(&idx, &dval, k, &xc, d, m, true),
                d_b_enc,
                r::sparse_scatter(&idx, &val, k, &g, d, m, false),
                r::add_row_vector(&r::columns(&g, d, ColumnOp::Sum), &through_enc, -1.0),
            ]
        }
    }
}

#[test]
fn sparse_reference_gradients_equal_the_dense_reference_pass() {
    for arch in [Architecture::Tied, Architecture::Standard] {
        for (k, paper_exact) in [(1, false), (5, false), (40, true), (53, false)] {
            let c = topk_cfg(arch, k, paper_exact);
            let mut w = SaeWeights::init(&c, 5);
            // Non-zero biases so that b_dec's and b's paths are exercised.
            for p in w.params.iter_mut().filter(|p| p.name.starts_with('b')) {
                p.data
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = 0.01 * (i % 7) as f32 - 0.03);
            }
            let sae = RefSae::new(c, &w);
            let x = sparse_batches(c.batch, c.d_in, 1, 3).remove(0);
            let dense = sae.pass(&x, &x).grads;
            for (i, (got, want)) in sparse_reference_gradients(&sae, &x).iter().zip(&dense).enumerate() {
                assert_close(
                    &format!("{arch:?} k {k} paper_exact {paper_exact}: grad {i}"),
                    got,
                    want,
                    1e-12,
                );
            }
        }
    }
}

#[test]
fn the_step_path_is_chosen_from_k_and_m_and_can_be_forced() {
    let c = topk_cfg(Architecture::Tied, 5, false);
    if std::env::var("MFR_SAE_STEP").is_err() {
        assert_eq!(c.resolved_step_path().unwrap(), StepPath::Sparse, "k = 5 of m = 53");
        let near_m = SaeConfig {
            activation: Activation::TopK { k: 40 },
            ..c
        };
        assert_eq!(
            near_m.resolved_step_path().unwrap(),
            StepPath::Dense,
            "k = 40 of m = 53"
        );
    }
    let forced = SaeConfig {
        step_path: Some(StepPath::Dense),
        ..c
    };
    assert_eq!(forced.resolved_step_path().unwrap(), StepPath::Dense);
    let relu = SaeConfig {
        activation: Activation::ReluL1 { l1: 0.1 },
        ..c
    };
    assert_eq!(relu.resolved_step_path().unwrap(), StepPath::Dense);
    let bad = SaeConfig {
        step_path: Some(StepPath::Sparse),
        ..relu
    };
    let err = bad.validate().expect_err("ReLU + L1 cannot take the sparse path");
    assert!(err.to_string().contains("TopK"), "{err}");
}

/// A sparse and a dense run of a 3-SAE MFR ensemble from the same seed and batches.
fn sparse_and_dense_runs(sae: SaeConfig, form: MmcsForm) -> (Vec<SaeWeights>, Vec<SaeWeights>) {
    let gpu = &ctx().gpu;
    let cfg = |path| {
        EnsembleConfig::new(
            SaeConfig {
                step_path: Some(path),
                ..sae
            },
            3,
            MfrConfig {
                lambda: 3.0,
                warmup_steps: 4,
                form,
                match_every: 5,
            },
            10,
            10,
            9,
        )
    };
    let batches = sparse_batches(sae.batch, sae.d_in, 10, 13);
    let run = |path| {
        let cfg = cfg(path);
        let mut ens = Ensemble::new(gpu, &ctx().k, cfg.clone(), &cfg.initial_weights()).unwrap();
        assert!(ens.saes().iter().all(|s| s.step_path() == path));
        for x in &batches {
            pollster::block_on(ens.step(gpu, &f32s(x))).unwrap();
        }
        pollster::block_on(ens.weights(gpu)).unwrap()
    };
    (run(StepPath::Sparse), run(StepPath::Dense))
}

#[test]
fn sparse_and_dense_runs_agree_after_ten_steps_with_mfr() {
    let aux = AuxK {
        k_aux: 9,
        coef: 1.0 / 32.0,
        dead_after_tokens: 74.0,
    };
    for arch in [Architecture::Tied, Architecture::Standard] {
        let cases = [
            (topk_cfg(arch, 6, false), MmcsForm::Match),
            (topk_cfg(arch, 40, true), MmcsForm::Max),
            (
                SaeConfig {
                    auxk: Some(aux),
                    ..topk_cfg(arch, 4, false)
                },
                MmcsForm::Match,
            ),
        ];
        for (c, form) in cases {
            let c = SaeConfig { lr: 2e-3, ..c };
            let (sparse, dense) = sparse_and_dense_runs(c, form);
            for (n, (s, d)) in sparse.iter().zip(&dense).enumerate() {
                for (ps, pd) in s.params.iter().zip(&d.params) {
                    let f = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
                    let e = rel_err(&f(&ps.data), &f(&pd.data));
                    let what = format!(
                        "{arch:?} {:?} paper_exact {} AuxK {}",
                        c.activation,
                        c.paper_exact,
                        c.auxk.is_some()
                    );
                    assert!(
                        e <= 1e-4,
                        "{what} {form:?} SAE {n} {}: sparse vs dense {e:.2e}",
                        ps.name
                    );
                }
            }
        }
    }
}

/// ms per step of a 2-SAE tied TopK ensemble with MFR on each path, timed back to
/// back in rounds (dense, sparse, dense, …) so that a shared CPU's load hits both
/// alike. Run: `cargo test --test sparse step_time -- --ignored --nocapture`.
#[test]
#[ignore = "a timing harness, not a check: minutes on lavapipe"]
fn step_time_dense_vs_sparse() {
    let gpu = &ctx().gpu;
    let (rounds, steps) = (3, 3);
    // (d, m, k, batch, form, AuxK with Gao's k_aux = d/2)
    let shapes = [
        (256, 512, 32, 1024, MmcsForm::Max, false),
        (256, 512, 32, 1024, MmcsForm::Match, false),
        (64, 128, 8, 512, MmcsForm::Max, false),
        (64, 128, 8, 512, MmcsForm::Match, false),
        (256, 512, 64, 1024, MmcsForm::Max, false),
        (256, 512, 128, 1024, MmcsForm::Max, false),
        (256, 512, 32, 1024, MmcsForm::Max, true),
    ];
    for (d, m, k, batch, form, with_auxk) in shapes {
        let cfg = |path| {
            EnsembleConfig::new(
                SaeConfig {
                    d_in: d,
                    d_sae: m,
                    batch,
                    step_path: Some(path),
                    // Dead after one silent batch, so that AuxK's code has values to work on.
                    auxk: with_auxk.then(|| AuxK {
                        dead_after_tokens: 1.0,
                        ..AuxK::gao(d)
                    }),
                    ..topk_cfg(Architecture::Tied, k, false)
                },
                2,
                MfrConfig {
                    lambda: 3.0,
                    warmup_steps: 100,
                    form,
                    match_every: 1000,
                },
                1000,
                1000,
                1,
            )
        };
        let x = f32s(&sparse_batches(batch, d, 1, 2)[0]);
        let mut ens: Vec<Ensemble> = [StepPath::Dense, StepPath::Sparse]
            .into_iter()
            .map(|p| {
                let c = cfg(p);
                let mut e = Ensemble::new(gpu, &ctx().k, c.clone(), &c.initial_weights()).unwrap();
                pollster::block_on(e.step(gpu, &x)).unwrap(); // warm-up (and the match form's matching)
                e
            })
            .collect();
        pollster::block_on(gpu.finish()).unwrap();
        let mut ms = [Vec::new(), Vec::new()];
        for _ in 0..rounds {
            for (i, e) in ens.iter_mut().enumerate() {
                let start = std::time::Instant::now();
                for _ in 0..steps {
                    pollster::block_on(e.step(gpu, &x)).unwrap();
                }
                pollster::block_on(gpu.finish()).unwrap();
                ms[i].push(1e3 * start.elapsed().as_secs_f64() / steps as f64);
            }
        }
        let show = |v: &[f64]| v.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" ");
        println!(
            "d {d} m {m} k {k} batch {batch} {form:?} AuxK {with_auxk}: dense {} ms/step, sparse {} ms/step",
            show(&ms[0]),
            show(&ms[1])
        );
    }
}

#[test]
fn sparse_runs_are_bit_reproducible() {
    let c = SaeConfig {
        auxk: Some(AuxK {
            k_aux: 9,
            coef: 1.0 / 32.0,
            dead_after_tokens: 74.0,
        }),
        ..topk_cfg(Architecture::Standard, 4, false)
    };
    let (first, _) = sparse_and_dense_runs(c, MmcsForm::Max);
    let (again, _) = sparse_and_dense_runs(c, MmcsForm::Max);
    assert_eq!(first, again, "two sparse runs from one seed must agree bit for bit");
}
