// The k-sparse products of a TopK training step. A row's active latents are TopK's
// sparse form: idx [rows, k] (u32) and val [rows, k] (the kept values, possibly 0
// where a ReLU clipped them); entry e = r·k + t is the t-th active latent of row r.
// Every sum runs in a fixed order and nothing is accumulated atomically, so results
// are bit-reproducible.
//
// The other entry points of the step are one file per binding layout: `sparse_*.wgsl`.
//
// `decode`: out[r, c] = Σ_t val[r, t] · dict[idx[r, t], c] (+ bias[c]);
//   dict [m, cols] (bound as vec4s: tensors are padded to 16 bytes), out [rows, cols].
//   Bindings: 0 p, 1 idx, 2 val, 3 dict, 4 bias, 5 out.
//   One invocation per `width` (16 or 32, `SparseWidth`) columns of a row (index i → row
//   i / ceil(cols / width)): the index and value loads are shared by `width` products,
//   and where cols is a multiple of 4
//   the dictionary comes in whole vec4s. Work rows·k·cols.
// 1-D grids may be folded into 2-D: index = (wg.y·nwg.x + wg.x)·64 + local.

struct Params {
    rows: u32, k: u32, cols: u32, m: u32, has_bias: u32, accumulate: u32, transposed: u32, op: u32,
    width: u32, _p0: u32, _p1: u32, _p2: u32,
}

const WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> idx: array<u32>;
@group(0) @binding(2) var<storage, read> val: array<f32>;
@group(0) @binding(3) var<storage, read> dict: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn linear(wg: vec3<u32>, nwg: vec3<u32>, local: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + local;
}

// Indices of columns c0 .. c0 + 3 of the row starting at `base` of a [.., cols] matrix;
// columns past the end read the last one (their results are never stored).
fn cols4(base: u32, c0: u32) -> vec4<u32> {
    let last = p.cols - 1u;
    return vec4<u32>(base + min(c0, last), base + min(c0 + 1u, last), base + min(c0 + 2u, last), base + min(c0 + 3u, last));
}

// out[base + c·stride] (+)= v for the columns c = c0 .. c0 + 3 that exist.
fn store4(base: u32, stride: u32, c0: u32, v: vec4<f32>) {
    for (var q = 0u; q < 4u; q++) {
        if (c0 + q < p.cols) {
            var value = v[q];
            if (p.accumulate != 0u) { value += out[base + (c0 + q) * stride]; }
            out[base + (c0 + q) * stride] = value;
        }
    }
}

// dict[e] of the dictionary viewed as scalars.
fn dict_at(e: u32) -> f32 {
    return dict[e / 4u][e % 4u];
}

// The sums of one invocation: columns c0 .. c0 + 15 (lo) and c0 + 16 .. c0 + 31 (hi), a
// vec4 a column of each matrix (matrices and structs stay in registers on SwiftShader,
// where a private array spills to memory).
struct Acc { lo: mat4x4<f32>, hi: mat4x4<f32> }

// Σ_t val[r, t] · dict[idx[r, t], c0 .. c0 + 31] as eight vec4s, for cols a multiple of 4:
// each term is eight whole-vec4 loads (lavapipe loads storage lane by lane, so one vec4
// costs about what one scalar does). vec4s past the row's end repeat its last one (never
// stored).
fn gather_vec4(r: u32, c0: u32) -> Acc {
    let q = p.cols / 4u;
    let last = q - 1u;
    let v0 = c0 / 4u;
    let s = vec4<u32>(min(v0, last), min(v0 + 1u, last), min(v0 + 2u, last), min(v0 + 3u, last));
    let s2 = vec4<u32>(min(v0 + 4u, last), min(v0 + 5u, last), min(v0 + 6u, last), min(v0 + 7u, last));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var t = 0u; t < p.k; t++) {
        let e = r * p.k + t;
        let base = idx[e] * q;
        let v = val[e];
        acc0 += v * dict[base + s.x];
        acc1 += v * dict[base + s.y];
        acc2 += v * dict[base + s.z];
        acc3 += v * dict[base + s.w];
        acc4 += v * dict[base + s2.x];
        acc5 += v * dict[base + s2.y];
        acc6 += v * dict[base + s2.z];
        acc7 += v * dict[base + s2.w];
    }
    return Acc(mat4x4<f32>(acc0, acc1, acc2, acc3), mat4x4<f32>(acc4, acc5, acc6, acc7));
}

// The same sum over columns c0 .. c0 + 15 as four vec4s (width 16).
fn gather_vec4_16(r: u32, c0: u32) -> mat4x4<f32> {
    let q = p.cols / 4u;
    let last = q - 1u;
    let v0 = c0 / 4u;
    let s = vec4<u32>(min(v0, last), min(v0 + 1u, last), min(v0 + 2u, last), min(v0 + 3u, last));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = 0u; t < p.k; t++) {
        let e = r * p.k + t;
        let base = idx[e] * q;
        let v = val[e];
        acc0 += v * dict[base + s.x];
        acc1 += v * dict[base + s.y];
        acc2 += v * dict[base + s.z];
        acc3 += v * dict[base + s.w];
    }
    return mat4x4<f32>(acc0, acc1, acc2, acc3);
}

// The same sum for any cols, one scalar load per value.
fn gather_scalar(r: u32, c0: u32) -> mat4x4<f32> {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var t = 0u; t < p.k; t++) {
        let e = r * p.k + t;
        let base = idx[e] * p.cols;
        let v = val[e];
        let a0 = cols4(base, c0);
        let a1 = cols4(base, c0 + 4u);
        let a2 = cols4(base, c0 + 8u);
        let a3 = cols4(base, c0 + 12u);
        acc0 += v * vec4<f32>(dict_at(a0.x), dict_at(a0.y), dict_at(a0.z), dict_at(a0.w));
        acc1 += v * vec4<f32>(dict_at(a1.x), dict_at(a1.y), dict_at(a1.z), dict_at(a1.w));
        acc2 += v * vec4<f32>(dict_at(a2.x), dict_at(a2.y), dict_at(a2.z), dict_at(a2.w));
        acc3 += v * vec4<f32>(dict_at(a3.x), dict_at(a3.y), dict_at(a3.z), dict_at(a3.w));
    }
    return mat4x4<f32>(acc0, acc1, acc2, acc3);
}

@compute @workgroup_size(64)
fn decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let blocks = (p.cols + p.width - 1u) / p.width;
    let i = linear(wg, nwg, li);
    let r = i / blocks;
    let c0 = (i % blocks) * p.width;
    if (r >= p.rows) { return; }
    // Uniform branches outside the loops: each path keeps its loop free of branches.
    var acc = Acc(mat4x4<f32>(), mat4x4<f32>());
    if (p.cols % 4u == 0u && p.width == 32u) {
        acc = gather_vec4(r, c0);
    } else if (p.cols % 4u == 0u) {
        acc.lo = gather_vec4_16(r, c0);
    } else {
        acc.lo = gather_scalar(r, c0);
        if (p.width == 32u) { acc.hi = gather_scalar(r, c0 + 16u); }
    }
    let base = r * p.cols;
    store_biased(base, c0, acc.lo[0]);
    store_biased(base, c0 + 4u, acc.lo[1]);
    store_biased(base, c0 + 8u, acc.lo[2]);
    store_biased(base, c0 + 12u, acc.lo[3]);
    if (p.width == 32u) {
        store_biased(base, c0 + 16u, acc.hi[0]);
        store_biased(base, c0 + 20u, acc.hi[1]);
        store_biased(base, c0 + 24u, acc.hi[2]);
        store_biased(base, c0 + 28u, acc.hi[3]);
    }
}

// out[base + c0 .. c0 + 3] = v (+ bias[c0 .. c0 + 3]) for the columns that exist.
fn store_biased(base: u32, c0: u32, v: vec4<f32>) {
    var w = v;
    if (p.has_bias != 0u) {
        let a = cols4(0u, c0);
        w += vec4<f32>(bias[a.x], bias[a.y], bias[a.z], bias[a.w]);
    }
    store4(base, 1u, c0, w);
}
